"""Logs: one format, JSON lines, per-area levels, rotation, repeated warnings summarised."""

from __future__ import annotations

import json
import logging

import pytest

from lastwatt.config import LoggingSettings
from lastwatt.logs import RepeatFilter, setup_logging


@pytest.fixture
def clean_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logging.getLogger("lastwatt_test_area").setLevel(logging.NOTSET)


def test_repeated_warnings_pass_once_per_window_then_say_how_many(clean_root):
    now = [0.0]
    f = RepeatFilter(60.0, clock=lambda: now[0])

    def record(gateway):
        return logging.LogRecord("g", logging.WARNING, "", 0, "gateway %s down", (gateway,), None)

    passed = []
    for second in range(0, 300, 5):  # a gateway down for 5 minutes, a warning per 5-s cycle
        now[0] = float(second)
        r = record("meters-a")
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 5
    assert passed[0] == "gateway meters-a down"
    assert passed[1] == "gateway meters-a down [11 more like this in the last 60 s suppressed]"
    # Errors with a traceback always pass.
    try:
        raise RuntimeError("x")
    except RuntimeError:
        import sys

        exc = logging.LogRecord("g", logging.ERROR, "", 0, "boom", (), sys.exc_info())
    assert f.filter(exc)
    assert f.filter(exc)


def test_json_lines_to_a_rotated_file_with_area_levels(tmp_path, clean_root):
    path = tmp_path / "logs" / "lastwatt.log"
    settings = LoggingSettings(
        level="INFO",
        areas={"lastwatt_test_area": "ERROR"},
        json=True,
        file=path,
        max_bytes=2_000,
        backups=2,
        repeat_window_s=0,
    )
    setup_logging(settings)
    setup_logging(settings)  # idempotent: one set of handlers
    log = logging.getLogger("lastwatt_test_main")
    for k in range(100):
        log.info("line %d with some padding to fill the file quickly", k)
    logging.getLogger("lastwatt_test_area").warning("quiet area: not logged")
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries[-1]["message"] == "line 99 with some padding to fill the file quickly"
    assert {"time", "level", "logger", "message"} <= set(entries[-1])
    assert all("quiet area" not in e["message"] for e in entries)
    rotated = sorted(p.name for p in path.parent.iterdir())
    assert rotated == ["lastwatt.log", "lastwatt.log.1", "lastwatt.log.2"]


def test_a_shared_filter_gives_every_handler_the_same_record(tmp_path, clean_root):
    path = tmp_path / "l.log"
    setup_logging(LoggingSettings(file=path, repeat_window_s=60))
    log = logging.getLogger("lastwatt_test_main")
    for _ in range(3):
        log.warning("skipped %s", "x")
    assert path.read_text().count("skipped x") == 1


def test_a_bad_level_is_named():
    with pytest.raises(ValueError, match=r"logging.areas.controllers = 'LOUD' is not a level"):
        setup_logging(LoggingSettings(areas={"controllers": "LOUD"}))
