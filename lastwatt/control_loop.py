"""The control loop's own OS process, where no request can delay it.

The HTTP API, dispatch, settlement and whatever else the service runs share one event loop;
a slow handler (a ledger verify, a password hash, a large query) stalls every coroutine on
it. Measured: four verify calls left the control loop idle for 149 s and the devices' own
fail-safes dropped the inverter's limit and the battery's control mode. A dedicated thread
with its own event loop (:class:`ControlThread`, still what the simulated container runs on)
helped but still shares the interpreter's lock with the API: measured under 50 clients, the
fast path's p99 was 0.47–1.1 s. So the live service runs the control job in **its own OS
process** (:class:`ControlProcess`, ``multiprocessing`` with *spawn*): the child opens its
own store connections, drives the devices, writes readings, alarms, credit and telemetry
(SQLite in WAL mode with a busy timeout, or PostgreSQL, take both processes' writes) and
sends the service a :class:`ControlSnapshot` after every cycle. The service sends it the
typed :class:`~dispatch.setpoints.Setpoints` of every plan, the operator's holds and clock
steps. Both directions go through a pipe; each side writes from a sender thread
(:class:`_Outbox`), so a slow or stalled peer never blocks the loop that sends. The child
ends itself, leaving the devices in their safe state, when asked, on SIGTERM/SIGINT, or when
the service's end of the pipe closes (the service died: no second controller may ever drive
the devices beside a restarted one). The service restarts a child that died, with a critical
alarm (:meth:`ControlProcess.supervise`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import datetime as dt
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from controllers.simulator import AcceleratedClock
from lastwatt.logs import TEMPLATE_ATTR, TRACEBACK_ATTR

if TYPE_CHECKING:
    from controllers.control import Clock, CycleResult
    from lastwatt.relay_history import RelayHistory
    from lastwatt.service import Service, ServiceConfig
    from microgrid import Site
    from settlement import CreditStatus

__all__ = ["ControlProcess", "ControlSnapshot", "ControlThread", "LinkedClock"]

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


# --- the control loop in its own process --------------------------------------------------

CONTROL_NICE = -10
"""The control process's scheduling priority (module docstring)."""
CONTROL_SWITCH_INTERVAL_S = 0.0005
"""The control process's thread switch interval [s] (the interpreter's default is 5 ms)."""

Message = tuple[Any, ...]
"""A pipe message: ``(verb, *arguments)``."""


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    """What the control process hands the service after each cycle (replaced whole).

    Attributes
    ----------
    cycle : CycleResult
        The cycle (mode, measured state, readings, faults, fast-path time).
    credit : dict of str to CreditStatus
        The credit decided from the balances after the cycle.
    soc_kwh : float or None
        The last measured state of charge [kWh] (dispatch starts from it).
    relays : RelayHistory
        Relay states and shed hours (dispatch's minimum on/off times and rotation).
    censored : dict of datetime to frozenset of str
        Per hour: connections seen off or limited (the demand model leaves them out).
    """

    cycle: CycleResult
    credit: dict[str, CreditStatus]
    soc_kwh: float | None
    relays: RelayHistory
    censored: dict[dt.datetime, frozenset[str]]


class _Outbox:
    """A sender thread for one end of a pipe: ``put`` never blocks the caller.

    ``maxlen`` bounds what waits (the oldest is dropped: snapshots are replaced whole, so
    only the latest matters); None keeps everything (the service's commands, which are
    rare and must all arrive).
    """

    def __init__(self, connection: multiprocessing.connection.Connection, maxlen: int | None):
        self._connection = connection
        # Messages, or log records on a logs pipe (ChildLogs); None ends the thread.
        self._queue: collections.deque[object] = collections.deque(maxlen=maxlen)
        self._ready = threading.Condition()
        self.dropped = 0
        self._thread = threading.Thread(target=self._send, name="lastwatt-ctl-pipe", daemon=True)
        self._thread.start()

    def put(self, message: object) -> None:
        with self._ready:
            if self._queue.maxlen is not None and len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(message)
            self._ready.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what waits, then stop the thread (the pipe stays open)."""
        with self._ready:
            self._queue.append(None)
            self._ready.notify()
        self._thread.join(timeout_s)

    def _send(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                message = self._queue.popleft()
            if message is None:
                return
            try:
                self._connection.send(message)
            except (OSError, ValueError):  # the peer is gone; its supervisor sees to it
                return


class LinkedClock(AcceleratedClock):
    """An accelerated clock whose steps (``advance``) also reach the control process.

    The API's simulated-clock step (``POST /api/sim/advance``) moves the service's time,
    the simulated devices' (same object) and, through ``listeners``, the control
    process's copy.
    """

    def __init__(self, start: dt.datetime, speed: float = 1.0, epoch_s: float | None = None):
        super().__init__(start, speed, epoch_s)
        self.listeners: list[Callable[[float], None]] = []

    def advance(self, seconds: float) -> None:
        """Step the clock ahead by ``seconds`` [s], here and in the control process."""
        super().advance(seconds)
        for listener in self.listeners:
            listener(seconds)


def _unlinked(clock: Any) -> Any:
    """A copy of ``clock`` to hand to a child process (without the listeners)."""
    if isinstance(clock, AcceleratedClock):
        return AcceleratedClock(clock.start, clock.speed, clock.epoch_s)
    return copy.copy(clock)


class ControlProcess:
    """The control loop in a child process, started, supervised and stopped by the service.

    Parameters
    ----------
    site : Site
        The site.
    config : ServiceConfig
        The service's settings (the child opens the same store and state).
    clock : Clock
        The service's clock (system or accelerated; copied to the child at each start).
    on_snapshot : callable
        Called on the service's event loop with each :class:`ControlSnapshot`.
    on_death : callable
        Called with the exit code when the child died unasked (before it is restarted).
    on_start : callable
        Called after each (re)start once the child is ready: re-send what it must know.
    restart_backoff_s : tuple of float
        Waits before successive restarts [s]; the last repeats. Reset by a child that
        ran for a minute.
    """

    def __init__(
        self,
        site: Site,
        config: ServiceConfig,
        clock: Clock,
        on_snapshot: Callable[[ControlSnapshot], None],
        on_death: Callable[[int | None], None],
        on_start: Callable[[], None],
        restart_backoff_s: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0, 30.0),
    ) -> None:
        self.site = site
        self.config = config
        self.clock = clock
        self.on_snapshot = on_snapshot
        self.on_death = on_death
        self.on_start = on_start
        self.restart_backoff_s = restart_backoff_s
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self.snapshots = 0
        self._connection: multiprocessing.connection.Connection | None = None
        self._outbox: _Outbox | None = None
        self._ready: asyncio.Event | None = None
        self._stopping = False
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child_logs: ChildLogs | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first start)."""
        return None if self.process is None else self.process.pid

    async def start(self, timeout_s: float = 120.0) -> None:
        """Spawn the child and wait until its first cycle is reported (or ``timeout_s``)."""
        self._loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=True)
        if self._child_logs is not None:
            self._child_logs.close()
        self._child_logs = ChildLogs(context)
        process = context.Process(
            target=_child_main,
            args=(
                child_end,
                self.site,
                self.config,
                _unlinked(self.clock),
                self._child_logs.child_end,
                logger_levels(),
            ),
            name="lastwatt-control",
            daemon=False,  # it must outlive nothing, but leave the devices safe on its own
        )
        self._ready = asyncio.Event()
        process.start()
        child_end.close()
        self._child_logs.child_started()
        self.process = process
        self._connection = parent_end
        self._outbox = _Outbox(parent_end, None)
        self._started_at = time.monotonic()
        self._loop.add_reader(parent_end.fileno(), self._readable, parent_end)
        log.info("control process %d started", process.pid)
        deadline = time.monotonic() + timeout_s
        while not self._ready.is_set() and process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 0.1)
        if not self._ready.is_set():  # the supervisor restarts a child that died
            log.error("the control process reported no cycle (alive: %s)", process.is_alive())
        self.on_start()

    def send(self, message: Message) -> None:
        """Queue ``message`` for the child; never blocks.

        Lost if the child is restarting, which is why ``on_start`` re-sends the plan.
        """
        if self._outbox is not None:
            self._outbox.put(message)

    def _readable(self, connection: multiprocessing.connection.Connection) -> None:
        try:
            while connection.poll():
                message = connection.recv()
                if message[0] == "snapshot":
                    self.snapshots += 1
                    self.on_snapshot(message[1])
                    if self._ready is not None:
                        self._ready.set()
        except (EOFError, OSError):  # the child is gone: the supervisor restarts it
            self._detach(connection)
        except Exception:  # a snapshot the service could not take must not stop the reader
            log.exception("could not take the control process's snapshot")

    def _detach(self, connection: multiprocessing.connection.Connection) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(connection.fileno())
        if self._outbox is not None:
            self._outbox.close(timeout_s=0.1)
            self._outbox = None
        with contextlib.suppress(OSError):
            connection.close()
        if connection is self._connection:
            self._connection = None

    async def supervise(self, stop: asyncio.Event, poll_s: float = 0.2) -> None:
        """Restart the child whenever it dies unasked, until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            process = self.process
            if process is not None and not process.is_alive() and not self._stopping:
                code = process.exitcode
                ran_s = time.monotonic() - self._started_at
                log.error(
                    "the control process %d died (exit code %s) after %.0f s; restarting it",
                    process.pid,
                    code,
                    ran_s,
                )
                if self._connection is not None:
                    self._detach(self._connection)
                try:
                    self.on_death(code)
                except Exception:
                    log.exception("could not raise the control process's alarm")
                failures = 0 if ran_s > 60.0 else failures + 1
                backoff = self.restart_backoff_s[min(failures, len(self.restart_backoff_s)) - 1]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff if failures else 0)
                if stop.is_set() or self._stopping:
                    return
                self.restarts += 1
                await self.start()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the child to leave the devices safe and exit; kill it after ``timeout_s``."""
        self._stopping = True
        process = self.process
        if process is None:
            return
        self.send(("stop",))
        deadline = time.monotonic() + timeout_s
        while process.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.is_alive():
            log.error("the control process did not stop within %.0f s; killing it", timeout_s)
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        else:
            process.join(0)
        if self._connection is not None:
            self._detach(self._connection)
        if self._child_logs is not None:
            self._child_logs.close()
            self._child_logs = None


class _LogRelay(logging.Handler):
    """In the service: hand each record the child sent to the logger it was made for.

    So the control process's lines go through the service's own handlers (format, JSON,
    rotated file, repeat filter, per-area levels: :mod:`lastwatt.logs`), and one file has
    one writer; the child never opens the log file itself.
    """

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


class ChildLogs:
    """The service's end of a child's logs: a one-way pipe and a thread writing what arrives.

    A pipe of its own rather than a ``multiprocessing.Queue``: a queue's writers share a
    lock, and a child killed while holding it would hang the service's next write. The
    thread ends when the child's end closes (the child exited or was killed).

    Parameters
    ----------
    context : multiprocessing context
        The context the child is spawned from.
    """

    def __init__(self, context: Any) -> None:
        self._reader, self.child_end = context.Pipe(duplex=False)
        self._thread = threading.Thread(target=self._relay, name="lastwatt-ctl-logs", daemon=True)
        self._thread.start()

    def child_started(self) -> None:
        """Drop the service's copy of the child's end, so the child's exit ends the thread."""
        self.child_end.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what the (exited) child sent, then stop."""
        self.child_end.close()
        self._thread.join(timeout_s)
        self._reader.close()

    def _relay(self) -> None:
        relay = _LogRelay()
        while True:
            try:
                record = self._reader.recv()
            except (EOFError, OSError):
                return
            except Exception:  # a record cut short by a killed child: the stream is gone
                log.exception("could not read the control process's log record")
                return
            relay.handle(record)


class _ToService(logging.Handler):
    """In the child: pass records to a sender thread (never blocks the control loop).

    The message is filled in here (arguments need not pickle); the template and whether a
    traceback came with it travel along for the service's repeat filter.
    """

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self._outbox = outbox
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prepared = copy.copy(record)
            prepared.msg = self.format(record)  # with the traceback's text
            prepared.message = prepared.msg
            prepared.args = None
            prepared.exc_info = None
            prepared.exc_text = None
            setattr(prepared, TEMPLATE_ATTR, str(record.msg))
            setattr(prepared, TRACEBACK_ATTR, bool(record.exc_info))
            self._outbox.put(prepared)
        except Exception:
            self.handleError(record)


def send_logs_to_service(
    connection: multiprocessing.connection.Connection, levels: dict[str, int]
) -> _Outbox:
    """In a child process: log only to the service (``ChildLogs``), at its ``levels``.

    At most 1 000 records wait for the pipe; beyond that the oldest are dropped, so a
    stalled service costs the control loop neither time nor memory. Close the returned
    sender before the process exits, so that its last records arrive.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    outbox = _Outbox(connection, maxlen=1_000)
    root.addHandler(_ToService(outbox))
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    return outbox


def logger_levels() -> dict[str, int]:
    """The levels set in the service: the root's ("") and each area's (``[logging] areas``)."""
    levels = {"": logging.getLogger().getEffectiveLevel()}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _child_main(
    connection: multiprocessing.connection.Connection,
    site: Site,
    config: ServiceConfig,
    clock: Clock,
    log_connection: multiprocessing.connection.Connection,
    log_levels: dict[str, int],
) -> None:
    """The control process: run the control job until told to stop (module docstring)."""
    logs = send_logs_to_service(log_connection, log_levels)
    # Above the API's threads: the devices' timers do not wait (CAP_SYS_NICE or root;
    # systemd: AmbientCapabilities=CAP_SYS_NICE). Measured on a loaded 2-core box under 50
    # API clients: fast-path p99 63 ms at nice -10, 204 ms at normal priority.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, CONTROL_NICE)
    except (PermissionError, OSError) as exc:
        logging.getLogger(__name__).info(
            "control process at normal priority (nice %d refused: %s)", CONTROL_NICE, exc
        )
    # The control job's SQLite worker and pipe sender are threads of this process: after
    # each Modbus reply the loop must win the interpreter back within 0.5 ms, not 5 ms.
    sys.setswitchinterval(CONTROL_SWITCH_INTERVAL_S)
    try:
        asyncio.run(_child(connection, site, config, clock))
    finally:
        logs.close()


async def _child(
    connection: multiprocessing.connection.Connection,
    site: Site,
    config: ServiceConfig,
    clock: Clock,
) -> None:
    from lastwatt.jobs import Job, SimulatedRunner
    from lastwatt.service import Service

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    outbox = _Outbox(connection, maxlen=64)
    service = Service(site, config, clock)
    service.run_control_here(lambda snapshot: outbox.put(("snapshot", snapshot)))

    def on_message() -> None:
        try:
            while connection.poll():
                _obey(service, clock, stop, connection.recv())
        except (EOFError, OSError):
            # The service is gone: stop, so that a restarted service's controller is the
            # only one driving the devices.
            log.error("the service's end of the pipe closed; leaving the devices safe")
            loop.remove_reader(connection.fileno())
            stop.set()

    loop.add_reader(connection.fileno(), on_message)
    speed = clock.speed if isinstance(clock, AcceleratedClock) else 1.0
    cycle = dt.timedelta(seconds=config.cycle_s)
    job = Job("control", cycle, dt.timedelta(0), service.control_job, grace=max(cycle, _QUARTER))
    runner = SimulatedRunner([job], clock, speed, record=service)
    try:
        await service.control_job(clock.now())  # the first measurement, at once
        await runner.run_until(None, stop)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(connection.fileno())
        await service.leave_control()
        outbox.close()
        log.info("control process stopped")


_QUARTER = dt.timedelta(minutes=15)


def _obey(service: Service, clock: Any, stop: asyncio.Event, message: Message) -> None:
    """Carry out one message from the service (in the control process)."""
    verb = message[0]
    if verb == "setpoints":
        service.apply(message[1])
    elif verb == "hold":
        service.controller.operator_switch(message[1], message[2], reason=message[3])
    elif verb == "release":
        service.controller.operator_release(message[1])
    elif verb == "advance":
        clock.advance(message[1])
    elif verb == "stop":
        stop.set()
    else:
        log.error("unknown message from the service: %r", verb)
