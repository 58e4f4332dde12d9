"""The service's logs: one format, per-area levels, JSON lines, file rotation, rate limits.

:func:`setup_logging` configures the root logger once per process from
:class:`lastwatt.config.LoggingSettings`:

- one text format everywhere (``time level logger: message``) or, with ``json``, one
  JSON object a line (``time``, ``level``, ``logger``, ``message``, ``exc``) for a
  log collector;
- per-area levels: ``{"controllers": "WARNING"}`` quiets the Modbus client without
  losing the service's own INFO lines;
- an optional file, rotated by size (:class:`logging.handlers.RotatingFileHandler`);
- repeated warnings rate-limited: a record with the same logger, level and message
  *template* (``record.msg`` before its arguments are filled in) passes once per window;
  the next one to pass says how many were suppressed meanwhile. A gateway that is down
  then logs once a minute, not at every cycle, and a fast-forward's "skipped" warnings
  are summarised. Errors with a traceback are never suppressed.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lastwatt.config import LoggingSettings

__all__ = ["TEXT_FORMAT", "JsonFormatter", "RepeatFilter", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_MARK = "_lastwatt_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Pass a repeated warning once per window; the next one says how many were dropped.

    Parameters
    ----------
    window_s : float
        Window length [s]; 0 disables the filter.
    clock : callable, optional
        Monotonic seconds (tests pass their own).

    Examples
    --------
    >>> f = RepeatFilter(60.0, clock=lambda: 0.0)
    >>> rec = lambda: logging.LogRecord("x", logging.WARNING, "", 0, "down %s", ("a",), None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record is logged (module docstring)."""
        if self.window_s <= 0 or record.levelno < logging.WARNING or record.exc_info:
            return True
        # One filter serves every handler: the first decides, the others reuse it.
        decided: bool | None = getattr(record, "_lastwatt_passed", None)
        if decided is not None:
            return decided
        passed = self._decide(record)
        record._lastwatt_passed = passed
        return passed

    def _decide(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            last, suppressed = self._seen.get(key, (-float("inf"), 0))
            if now - last < self.window_s:
                self._seen[key] = (last, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:  # bounded: forget the oldest templates
                for stale in sorted(self._seen, key=lambda k: self._seen[k][0])[:5_000]:
                    del self._seen[stale]
        if suppressed:
            record.msg = f"{record.msg} [{suppressed} more like this in the last "
            record.msg += f"{self.window_s:.0f} s suppressed]"
        return True


def setup_logging(settings: LoggingSettings) -> None:
    """Configure the root logger from ``settings`` (module docstring); idempotent.

    Raises
    ------
    ValueError
        If a level is not a logging level name, or the log file cannot be opened.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    formatter: logging.Formatter = (
        JsonFormatter() if settings.json_lines else logging.Formatter(TEXT_FORMAT)
    )
    repeat = RepeatFilter(settings.repeat_window_s)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.file is not None:
        try:
            settings.file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    settings.file,
                    maxBytes=settings.max_bytes,
                    backupCount=settings.backups,
                    encoding="utf-8",
                )
            )
        except OSError as exc:
            msg = f"log file {settings.file}: {exc.strerror}"
            raise ValueError(msg) from None
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(repeat)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(_level(settings.level, "logging.level"))
    for area, level in settings.areas.items():
        logging.getLogger(area).setLevel(_level(level, f"logging.areas.{area}"))


def _level(name: str, key: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        msg = f"{key} = {name!r} is not a level; use DEBUG, INFO, WARNING or ERROR"
        raise ValueError(msg)
    return level
