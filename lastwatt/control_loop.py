"""The control loop's own thread and event loop, where no request can delay it.

The HTTP API, dispatch, settlement and whatever else the service runs share one event
loop; a slow handler (a ledger verify, a password hash, a large query) stalls every
coroutine on it. Measured: four verify calls left the control loop idle for 149 s and
the devices' own fail-safes dropped the inverter's limit and the battery's control mode.
So the control job runs on a dedicated thread with its own event loop: the Modbus
clients live there, it has its own SQLite connections (the ledger in WAL mode lets it
write while the API reads), and it exchanges state with the rest of the service only
through the store and a few atomically replaced attributes (see
:meth:`lastwatt.service.Service.use_control_loop`).

The thread holds the GIL only while it computes (a few milliseconds a cycle); Python
switches threads every 5 ms, so CPU-bound work elsewhere delays a cycle by at most a few
switch intervals, not by the length of the work — provided the OS runs the thread: it
asks for a higher scheduling priority (nice −10 by default; granted to root or with
CAP_SYS_NICE, e.g. systemd's ``Nice=``/``AmbientCapabilities=``), because the API's
threads (password hashing above all) can keep every core busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ControlThread"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ControlThread:
    """A daemon thread running an event loop for the control job.

    Examples
    --------
    ::

        thread = ControlThread()
        thread.start()
        result = await thread.run(controller.cycle())   # awaited from another loop
        thread.stop()
    """

    def __init__(self, name: str = "lastwatt-control", nice: int = -10) -> None:
        self.name = name
        self.nice = nice
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def ident(self) -> int | None:
        """The thread's identifier once started."""
        return None if self._thread is None else self._thread.ident

    def start(self) -> None:
        """Start the thread and its loop; returns once the loop runs."""
        if self._thread is not None:
            msg = "the control thread is already started"
            raise RuntimeError(msg)
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        self._raise_priority()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _raise_priority(self) -> None:
        """Ask the OS to schedule this thread before the API's (needs CAP_SYS_NICE or root).

        Other threads of the service (the API, password hashing, dispatch) may keep both
        cores busy; the control thread needs a few milliseconds of CPU a cycle, on time.
        Without the privilege it runs at normal priority and says so.
        """
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (PermissionError, OSError, AttributeError) as exc:
            log.info("control thread at normal priority (nice %d refused: %s)", self.nice, exc)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the control loop (from any thread)."""
        if self.loop is None:
            coroutine.close()
            msg = "the control thread is not started"
            raise RuntimeError(msg)
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the control loop and await its result from the caller's loop."""
        return await asyncio.wrap_future(self.submit(coroutine))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (tasks still running are cancelled) and join the thread."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("the control thread did not stop within %.0f s", timeout_s)
