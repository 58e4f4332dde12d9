"""Shared helpers: a small site on free loopback ports, and a running simulated container."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from controllers.control import Controller, ControllerSettings
from controllers.failsafe import FailsafeSettings
from controllers.modbus import ModbusSettings
from controllers.simulator import ManualClock, SimulatedContainer, SimulatorSettings
from microgrid import Site
from tests.sites import village

START = dt.datetime(2026, 3, 19, 23, 0, tzinfo=dt.UTC)  # local midnight, Africa/Niamey
DEVICE_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_free_ports(site: Site) -> Site:
    gateways = {
        name: g.model_copy(update={"port": free_port()}) for name, g in site.gateways.items()
    }
    return site.model_copy(update={"gateways": gateways})


def small_site() -> Site:
    """3 priority users, 20 households in 2 relay groups, 4 businesses; a 4 kWp container.

    Scaled down so that energy is short (rationing happens) and dispatch solves fast.
    Priority users are on gateway meters-a, businesses on meters-b: two meter buses.
    """
    small = village(
        ("HG01", "HG02"),
        lambda all_: tuple(c for c in all_ if c.id.startswith(("B01_", "B02_", "B17_", "B18_"))),
        priority=3,
        pv_kwp=4.0,
        inverter_kw=3.5,
        battery_kwh=12.0,
        battery_kw=5.0,
    )
    return on_free_ports(small.model_copy(update={"name": "small test site"}))


def settings(
    timeout_s: float = 0.3, device_timeout_s: float = DEVICE_TIMEOUT_S
) -> ControllerSettings:
    return ControllerSettings(
        modbus=ModbusSettings(
            timeout_s=timeout_s, retries=0, connect_timeout_s=0.5, reconnect_backoff_s=0.0
        ),
        failsafe=FailsafeSettings(device_timeout_s=device_timeout_s),
        backoff_initial_s=10.0,
        backoff_max_s=40.0,
    )


class Rig:
    """A simulated container and a controller on a manual clock."""

    def __init__(
        self,
        site: Site,
        sim_settings: SimulatorSettings | None = None,
        ctl_settings: ControllerSettings | None = None,
        start: dt.datetime = START,
    ):
        self.site = site
        self.clock = ManualClock(start)
        self.sim = SimulatedContainer(site, self.clock, sim_settings)
        self.controller = Controller(site, ctl_settings or settings(), clock=self.clock)

    async def __aenter__(self) -> Rig:
        await self.sim.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.controller.close()
        await self.sim.stop()

    async def step(self, seconds: float) -> Any:
        self.clock.advance(seconds)
        return await self.controller.cycle()


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


@pytest.fixture
def site() -> Site:
    return on_free_ports(small_site())
