"""The service's stored schedule keeps the one typed Setpoints, and a restart applies them."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pytest

from dispatch.setpoints import Setpoints
from lastwatt.jobs import SimulatedRunner
from lastwatt.state import ServiceState
from tests.service.conftest import MORNING, Rig, service_site

INDEX = pd.date_range(MORNING, periods=8, freq="15min")


def _setpoints(site) -> Setpoints:
    """Businesses on and limited to 0.3 kW with a 1 234 Wh budget; groups switched."""
    groups = [g.id for g in site.relay_groups]
    businesses = [b.id for b in site.businesses]
    return Setpoints(
        inverters=pd.DataFrame(
            {"pv_limit_kw": np.inf, "charge_limit_kw": np.inf, "discharge_limit_kw": 1.5},
            index=INDEX,
        ),
        relays=pd.DataFrame(True, index=INDEX, columns=[*groups, *businesses]),
        power_limit_kw=pd.DataFrame(0.3, index=INDEX, columns=businesses),
        switch_only=tuple(groups),
        energy_budget_wh=dict.fromkeys(businesses, 1234),
    )


def _save(state: ServiceState, setpoints: Setpoints) -> None:
    plan = pd.DataFrame({"pv_used_kw": 1.0}, index=setpoints.index)
    reasons = pd.DataFrame(columns=["time", "unit", "tier", "reason"])
    state.save_schedule(
        MORNING, "optimal", setpoints, plan, setpoints.power_limit_kw, reasons, {"status": "x"}
    )


def test_the_stored_schedule_round_trips_its_setpoints_inf_and_budgets_included(tmp_path):
    setpoints = _setpoints(service_site())
    state = ServiceState(tmp_path / "service.sqlite")
    _save(state, setpoints)
    state.close()
    stored = ServiceState(tmp_path / "service.sqlite").last_schedule()
    assert stored is not None
    back = stored.setpoints
    assert isinstance(back, Setpoints)
    period = back.at(INDEX[3])
    assert period == setpoints.at(INDEX[3])
    assert period is not None
    assert period.pv_limit_kw == np.inf  # "no limit" survives JSON, which has no infinity
    assert set(period.energy_budget_wh.values()) == {1234}
    assert back.switch_only == setpoints.switch_only
    assert list(back.power_limit_kw.columns) == list(setpoints.power_limit_kw.columns)


def test_a_state_file_from_before_setpoints_opens_and_shows_but_never_applies(tmp_path):
    path = tmp_path / "service.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE schedules (id INTEGER PRIMARY KEY AUTOINCREMENT, issued_at TEXT NOT NULL,"
        " status TEXT NOT NULL, plan TEXT NOT NULL, relays TEXT NOT NULL,"
        " allotment TEXT NOT NULL, reasons TEXT NOT NULL, summary TEXT NOT NULL);"
    )
    frame = pd.DataFrame({"B1": [1.0]}, index=INDEX[:1]).to_json(
        orient="split", date_format="iso", date_unit="s"
    )
    reasons = pd.DataFrame(columns=["time", "unit", "tier", "reason"]).to_json(orient="split")
    old.execute(
        "INSERT INTO schedules (issued_at, status, plan, relays, allotment, reasons, summary)"
        " VALUES (?, 'optimal', ?, ?, ?, ?, '{}')",
        (MORNING.isoformat(), frame, frame, frame, reasons),
    )
    old.commit()
    old.close()
    state = ServiceState(path)
    stored = state.last_schedule()
    assert stored is not None
    assert stored.setpoints is None  # shown (plan, reasons), never applied
    assert list(stored.allotment_kw.columns) == ["B1"]


def _meter_settings(rig: Rig) -> dict[str, tuple[float, float]]:
    """Each business meter's power limit [kW] and budget [Wh] in the simulated container."""
    limits, budgets, _ = rig.sim._meter_settings()
    ids = [c.id for c in rig.site.connections]
    return {b.id: (limits[ids.index(b.id)], budgets[ids.index(b.id)]) for b in rig.site.businesses}


def test_a_restart_applies_the_stored_setpoints_limits_and_budgets_over_modbus(tmp_path):
    # The restarted service applies what was stored before its first dispatch; that
    # dispatch is held back here, so what the meters hold is the stored setpoints' doing.
    async def scenario() -> tuple[dict[str, tuple[float, float]], Setpoints | None]:
        rig = Rig(tmp_path)
        setpoints = _setpoints(rig.site)
        _save(rig.service.state, setpoints)

        async def no_dispatch(now: dt.datetime) -> None:
            return None

        rig.service.dispatch_job = no_dispatch  # type: ignore[method-assign]
        rig.runner = SimulatedRunner(rig.service.jobs(), rig.clock, record=rig.service.state)
        async with rig:
            await rig.run_for(0.05)
            return _meter_settings(rig), rig.service.setpoints

    meters, in_force = asyncio.run(scenario())
    assert in_force is not None
    assert in_force.energy_budget_wh
    for business, (limit_kw, budget_wh) in meters.items():
        assert limit_kw == pytest.approx(0.3), business
        assert budget_wh == 1234, business
