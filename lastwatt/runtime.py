"""Putting a service on the air: clock, simulated container, jobs and the HTTP server.

Three ways to keep time:

- **live** (``speed=None``): the system clock; APScheduler fires the jobs;
- **accelerated** (``speed > 0``): :class:`~controllers.simulator.AcceleratedClock`, simulated time
  running ``speed`` times faster than real time from an anchor stored in the data
  directory, so a restarted service continues the same simulated day; the jobs run in
  simulated time;
- **fast-forward** (``speed == 0``, needs ``simulate``): a manual clock stepped from due
  time to due time as fast as the jobs run (the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from controllers.control import Clock, SystemClock
from controllers.simulator import (
    AcceleratedClock,
    ManualClock,
    SimulatedContainer,
    SimulatorSettings,
)
from lastwatt.api import ApiSettings, create_app
from lastwatt.auth import Credentials
from lastwatt.control_loop import (
    CONTROL_SWITCH_INTERVAL_S,
    ControlProcess,
    ControlThread,
    LinkedClock,
)
from lastwatt.jobs import LiveRunner, SimulatedRunner
from lastwatt.service import Service, ServiceConfig
from microgrid import Site
from microgrid.site import ConnectionKind

__all__ = ["RunOptions", "Runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run the service.

    Attributes
    ----------
    host, port : str, int
        Where the API listens (port 0: any free port).
    simulate : bool
        Run the simulated container in this process, on the site's gateway ports.
    sim_seed, sim_soc : int, float
        Simulator weather seed and initial state of charge [-].
    speed : float or None
        None live; > 0 accelerated; 0 fast-forward (module docstring).
    start : datetime or None
        Simulated start (accelerated and fast-forward; default now).
    epoch_s : float or None
        Unix time at which simulated time was ``start`` (accelerated; default now).
    opening_credit_minor : mapping or None
        Opening credit per connection kind through the fiat bridge (once per meter).
    api : ApiSettings
        The API's noticeboard and limits (:mod:`lastwatt.api`).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    simulate: bool = False
    sim_seed: int = 0
    sim_soc: float = 0.5
    speed: float | None = None
    start: dt.datetime | None = None
    epoch_s: float | None = None
    opening_credit_minor: Mapping[ConnectionKind, int] | None = None
    api: ApiSettings = field(default_factory=ApiSettings)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Runtime:
    """A started service with its clock, runner, HTTP server and optional simulator."""

    def __init__(
        self, site: Site, config: ServiceConfig, credentials: Credentials, options: RunOptions
    ) -> None:
        self.site = site
        self.config = config
        self.credentials = credentials
        self.options = options
        self.clock: Clock = SystemClock()
        self.sim: SimulatedContainer | None = None
        self.service: Service | None = None
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None  # the API's listening socket: ours to close
        self._live: LiveRunner | None = None
        self.runner: SimulatedRunner | None = None
        self.control: ControlThread | None = None  # the simulated container's thread
        self.control_process: ControlProcess | None = None
        self._supervise_stop = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    def _make_clock(self, service_state_anchor: dict[str, float | str] | None) -> Clock:
        o = self.options
        if o.speed is None:
            return SystemClock()
        start = o.start or dt.datetime.now(dt.UTC)
        if o.speed == 0:
            if not o.simulate:
                msg = "fast-forward (speed 0) needs the in-process simulated container"
                raise ValueError(msg)
            return ManualClock(start)
        if service_state_anchor is not None:
            return AcceleratedClock(
                dt.datetime.fromisoformat(str(service_state_anchor["start"])),
                float(service_state_anchor["speed"]),
                float(service_state_anchor["epoch_s"]),
            )
        return AcceleratedClock(start, o.speed, o.epoch_s)

    async def start(self) -> None:
        """Start the simulator (if asked), the service, its first plan and the API."""
        from lastwatt.state import ServiceState

        o = self.options
        # The API's port first: taken, nothing else has started (no simulator, control
        # process or first plan left running behind the error).
        sock = self._socket = _listen(o.host, o.port)
        anchor = None
        if o.speed:
            probe = ServiceState(self.config.data_dir / "service.sqlite")
            anchor = probe.get("clock_anchor")
            probe.close()
        self.clock = self._make_clock(anchor)
        # Live and accelerated: the control loop runs in its own process (no request can
        # delay it, lastwatt.control_loop); fast-forward steps it here, deterministically.
        own_process = not isinstance(self.clock, ManualClock)
        if isinstance(self.clock, AcceleratedClock):
            self.clock = LinkedClock(self.clock.start, self.clock.speed, self.clock.epoch_s)
        if own_process and o.simulate:
            # The simulated devices get their own thread and event loop here.
            self.control = ControlThread()
            self.control.start()
            # Each time the devices' loop wakes for a Modbus request it must win the GIL
            # from whatever thread computes (the API): hand it over after 0.5 ms, not 5 ms.
            sys.setswitchinterval(min(sys.getswitchinterval(), CONTROL_SWITCH_INTERVAL_S))
        if o.simulate:
            self.sim = SimulatedContainer(
                self.site, self.clock, SimulatorSettings(seed=o.sim_seed, soc_fraction=o.sim_soc)
            )
            await self._on_control_loop(self.sim.start())
        service = Service(self.site, self.config, self.clock, self.credentials.webhook_secret)
        self.service = service
        if isinstance(self.clock, AcceleratedClock) and anchor is None:
            service.state.set(
                "clock_anchor",
                {
                    "start": self.clock.start.isoformat(),
                    "speed": self.clock.speed,
                    "epoch_s": self.clock.epoch_s,
                },
            )
        if o.opening_credit_minor:
            credited = service.open_credit(o.opening_credit_minor)
            if credited:
                log.info("opening credit for %d meters", credited)
        if own_process:
            await self._start_control_process(service)
        await service.start()
        port = sock.getsockname()[1]
        self.url = f"http://{o.host}:{port}/"
        app = create_app(service, self.credentials, self.options.api)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._server_task.done():
            await asyncio.sleep(0.01)
        if self._server_task.done():
            self._server_task.result()
        jobs = service.jobs()
        if own_process:
            jobs = [j for j in jobs if j.id != "control"]
        if isinstance(self.clock, SystemClock):
            self._live = LiveRunner(jobs, self.clock, service.state)
            self._live.start()
        else:
            speed = self.clock.speed if isinstance(self.clock, AcceleratedClock) else 1.0
            self.runner = SimulatedRunner(jobs, self.clock, speed, service.state)

    async def _start_control_process(self, service: Service) -> None:
        """Spawn the control process, wait for its first cycle, and supervise it."""
        process = ControlProcess(
            self.site,
            self.config,
            self.clock,
            service.take_snapshot,
            service.control_process_died,
            service.control_process_started,
        )
        service.use_control_process(process)
        if isinstance(self.clock, LinkedClock):  # the operator's clock steps reach it
            self.clock.listeners.append(lambda seconds: process.send(("advance", seconds)))
        self.control_process = process
        await process.start()
        self._supervisor = asyncio.create_task(process.supervise(self._supervise_stop))

    async def _on_control_loop(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self.control is None:
            await coroutine
        else:
            await self.control.run(coroutine)

    async def run(
        self, until: dt.datetime | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Run the jobs until simulated ``until`` or until ``stop`` is set."""
        stop = stop or asyncio.Event()
        if self.runner is not None:
            await self.runner.run_until(until, stop)
        else:
            await stop.wait()

    async def stop(self) -> None:
        """Stop the jobs and the API, leave the devices safe, stop the simulator."""
        if self._live is not None:
            self._live.shutdown()
        self._supervise_stop.set()  # no restart while stopping
        if self._supervisor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._supervisor, timeout=30)
        if self._server is not None:
            self._server.should_exit = True
        if self._server_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server_task, timeout=5)
        if self._socket is not None:  # uvicorn closes its servers, not a socket handed to it
            self._socket.close()
            self._socket = None
        if self.service is not None:
            await self.service.shutdown()
        if self.sim is not None:
            await self._on_control_loop(self.sim.stop())
        if self.control is not None:
            self.control.stop()
