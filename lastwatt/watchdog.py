"""systemd's notify protocol: READY, STATUS, STOPPING and a watchdog tied to the control loop.

Under ``Type=notify`` with ``WatchdogSec=``, systemd sets ``NOTIFY_SOCKET`` and
``WATCHDOG_USEC``; the service must send ``WATCHDOG=1`` more often than that or be
restarted (``Restart=``). A process that is alive but whose control loop has stalled is
no better than a dead one for the devices (their fail-safes drop the setpoints), so the
ping is sent only while control cycles keep completing: :class:`Watchdog` watches the
service's ``last_cycle`` and stops pinging once none has completed for ``stall_s``
seconds of wall time. With the control loop in its own process, ``last_cycle`` is the
latest snapshot it sent; the service restarts a dead control process itself
(:class:`lastwatt.control_loop.ControlProcess`), and a child that cannot stay up long
enough to report cycles ends the pings, so systemd restarts the whole service. Without
``NOTIFY_SOCKET`` (not under systemd) everything here is a
no-op. The protocol is a datagram on a Unix socket (``sd_notify(3)``), a few lines, so no
library is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["Watchdog", "notify", "watchdog_interval_s"]

log = logging.getLogger(__name__)


class _HasCycle(Protocol):
    @property
    def last_cycle(self) -> Any:
        """The last completed control cycle (any object; a new one each cycle)."""


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; whether it was sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Systemd's watchdog period [s] (``WATCHDOG_USEC``), or None when there is none."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID")
    if not usec.isdigit() or (pid is not None and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class Watchdog:
    """Pings systemd while the control loop makes progress (module docstring).

    Parameters
    ----------
    service : object with ``last_cycle``
        The running service.
    stall_s : float
        Wall seconds without a new control cycle after which pings stop [s].
    period_s : float
        How often to check and ping [s] (half systemd's watchdog period or less).
    environ : mapping, optional
        The environment (``NOTIFY_SOCKET``); default ``os.environ``.
    clock : callable, optional
        Monotonic seconds.
    """

    def __init__(
        self,
        service: _HasCycle,
        stall_s: float,
        period_s: float,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.stall_s = stall_s
        self.period_s = period_s
        self.environ = os.environ if environ is None else environ
        self._clock = clock
        self._seen: object = None
        self._progress = clock()
        self.pings = 0
        self.withheld = 0

    def healthy(self) -> bool:
        """Whether a control cycle completed within the last ``stall_s`` seconds."""
        now = self._clock()
        cycle = self.service.last_cycle
        if cycle is not None and cycle is not self._seen:
            self._seen = cycle
            self._progress = now
        return now - self._progress <= self.stall_s

    def tick(self) -> bool:
        """Check once; ping if healthy. Returns whether it pinged."""
        if self.healthy():
            self.pings += notify("WATCHDOG=1", self.environ)
            return True
        self.withheld += 1
        if self.withheld == 1:
            log.error(
                "control loop stalled for more than %.0f s: withholding the watchdog ping "
                "(systemd restarts the service)",
                self.stall_s,
            )
            notify("STATUS=control loop stalled", self.environ)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``period_s`` until ``stop`` is set."""
        while not stop.is_set():
            self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.period_s)
