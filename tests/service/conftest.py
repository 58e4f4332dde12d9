"""Helpers: a small site on free loopback ports, a service and a simulated container on it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from controllers.control import ControllerSettings
from controllers.failsafe import FailsafeSettings
from controllers.modbus import ModbusSettings
from controllers.simulator import ManualClock, SimulatedContainer, SimulatorSettings
from lastwatt.auth import Credentials, init_credentials, load_credentials
from lastwatt.jobs import SimulatedRunner
from lastwatt.service import Service, ServiceConfig
from microgrid import Site
from microgrid.site import ConnectionKind
from settlement import CreditPolicy
from tests.controllers.conftest import on_free_ports, small_site

# Local 07:00 in Niamey (UTC+1): a morning, so households draw and meters move.
MORNING = dt.datetime(2026, 8, 1, 6, 0, tzinfo=dt.UTC)
NO_FRIENDLY_HOURS = CreditPolicy(friendly_hours=(0, 0))


def service_site() -> Site:
    """The controllers' small site with a larger array, so that households are served."""
    site = small_site()
    pv = site.pv.model_copy(update={"dc_capacity_kwp": 10.0, "inverter_ac_capacity_kw": 9.0})
    return on_free_ports(Site.model_validate(site.model_copy(update={"pv": pv}).model_dump()))


def config(data_dir: Path, **overrides: Any) -> ServiceConfig:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "cycle_s": 60.0,
        "reading_interval_s": 300.0,
        "dispatch_period": dt.timedelta(minutes=30),
        "credit_policy": NO_FRIENDLY_HOURS,
        "controller": ControllerSettings(
            modbus=ModbusSettings(timeout_s=0.5, retries=0, connect_timeout_s=0.5),
            failsafe=FailsafeSettings(device_timeout_s=600.0),
        ),
    }
    values.update(overrides)
    return ServiceConfig(**values)


class Rig:
    """A simulated container and a service on one manual clock, credentials included."""

    def __init__(
        self,
        data_dir: Path,
        site: Site | None = None,
        start: dt.datetime = MORNING,
        opening: dict[ConnectionKind, int] | None = None,
        reserve: bool = True,
        **overrides: Any,
    ) -> None:
        self.site = site or service_site()
        self.data_dir = data_dir
        self.clock = ManualClock(start)
        if not (data_dir / "credentials.json").exists():
            self.passwords = init_credentials(
                data_dir, {"amina": self.site.households[0].id, "bala": self.site.households[1].id}
            )
        self.credentials: Credentials = load_credentials(data_dir)
        self.sim = SimulatedContainer(self.site, self.clock, SimulatorSettings(seed=3))
        self.service = Service(
            self.site, config(data_dir, **overrides), self.clock, self.credentials.webhook_secret
        )
        self.opening = opening
        self.service.set_reserve(reserve)
        self.runner = SimulatedRunner(self.service.jobs(), self.clock, record=self.service.state)

    async def __aenter__(self) -> Rig:
        await self.sim.start()
        if self.opening:
            self.service.open_credit(self.opening)
        await self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.shutdown()
        await self.sim.stop()

    async def run_for(self, hours: float) -> None:
        await self.runner.run_until(self.clock.now() + dt.timedelta(hours=hours))


def run_api(tmp_path: Path, calls: Any) -> tuple[Rig, Any]:
    """Run ``await calls(rig, client)`` against the API of a rig with opening credit."""
    import asyncio

    import httpx

    from lastwatt.api import create_app

    async def scenario() -> tuple[Rig, Any]:
        opening = {ConnectionKind.HOUSEHOLD: 2_000_000, ConnectionKind.BUSINESS: 5_000_000}
        async with Rig(tmp_path, opening=opening) as rig:
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                return rig, await calls(rig, client)

    return asyncio.run(scenario())
