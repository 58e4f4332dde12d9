"""Per-household access of a simulated day: delivered MTF tiers and the evening lifeline.

A day of 96 × 15 min in Niamey (UTC+1), one relay group of two households on a
30 W / 120 Wh plan with the evening window 18–22 local, solved by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dispatch.problem import BatteryState, HouseholdGroupLoad
from scenarios.household_access import DayAccess
from scenarios.kpis import access_kpis

TZ = "Africa/Niamey"
INDEX = pd.date_range("2026-03-01 23:00", periods=96, freq="15min", tz="UTC")  # local midnight
LOCAL_HOUR = INDEX.tz_convert(TZ).hour.to_numpy()
EVENING = (LOCAL_HOUR >= 18) & (LOCAL_HOUR < 22)
BATTERY = BatteryState(
    soc_kwh=30.0,
    soc_kwh_min=10.0,
    soc_kwh_max=60.0,
    power_kw_max=20.0,
    charge_efficiency=0.95,
    discharge_efficiency=0.9,
)


def one_day(relay: np.ndarray, short_kw: np.ndarray) -> DayAccess:
    """H1 wants 50 W, H2 10 W all day; both meters held at 30 W; the group is served
    min(demand, limit) summed = 40 W whenever its relay is closed and the container lit."""
    group = HouseholdGroupLoad(
        id="G1",
        demand_kw=np.full(96, 0.06),
        members=("H1", "H2"),
        evening=EVENING,
        member_plans=((0.03, 120), (0.03, 120)),
    )
    problem = SimpleNamespace(
        grid=SimpleNamespace(index=INDEX), step_hours=0.25, households=(group,)
    )
    plan = SimpleNamespace(
        relays=pd.DataFrame({"G1": relay}, index=INDEX),
        meter_limit_kw=pd.DataFrame({"H1": 0.03, "H2": 0.03}, index=INDEX),
    )
    lit = relay & (short_kw <= 0)
    served = np.where(lit, 0.04, 0.0)[:, None]
    demand = np.tile([0.05, 0.01], (96, 1))
    access = DayAccess(["H1", "H2", "H3"], TZ)  # H3 has no credit: not counted
    access.add_block(plan, problem, ["G1"], served, short_kw, demand, ["H1", "H2"])
    return access


def end(access: DayAccess, soc_kwh: float = 30.0, priority_kw: float = 0.5) -> dict[str, float]:
    return access.end_day(
        np.zeros(96), np.full(96, soc_kwh), soc_kwh, np.full(96, priority_kw), BATTERY, 0.25
    )


def test_a_lit_day_gives_both_households_their_lifeline_at_tier_1():
    """Capacity 30 W (tier 1: ≥ 3 W, < 50 W) bounds both; 24 h supplied, 4 evening hours."""
    access = one_day(np.ones(96, dtype=bool), np.zeros(96))
    supply = pd.concat(access._supply)
    energy = pd.concat(access._energy)
    # H1 drew 30 of the 40 W: 7.5 Wh a period, 720 Wh a day; H2 10 W: 240 Wh.
    assert energy["H1"].sum() == pytest.approx(720.0)
    assert energy["H2"].sum() == pytest.approx(240.0)
    assert (supply[["H1", "H2"]] == 30.0).all().all()
    row = end(access)
    assert row["mtf_tier_1"] == 2.0
    assert sum(row[f"mtf_tier_{k}"] for k in range(6)) == 2.0
    assert row["lifeline_households"] == 2.0
    assert row["lifeline_delivered"] == 2.0


@pytest.mark.parametrize("dark", ["relay", "trip"])
def test_one_dark_evening_period_loses_the_lifeline(dark):
    """One quarter hour dark at 19:00 local (relay open, or the inverter tripped)."""
    relay = np.ones(96, dtype=bool)
    short = np.zeros(96)
    at = int(np.flatnonzero(LOCAL_HOUR == 19)[0])
    if dark == "relay":
        relay[at] = False
    else:
        short[at] = 0.04
    row = end(one_day(relay, short))
    assert row["lifeline_delivered"] == 0.0
    assert row["lifeline_households"] == 2.0


def test_physics_allows_by_the_evening_energy_balance():
    """Evening 4 h: priority 0.5 kW → 2 kWh, lifelines 2 × min(0.03 kW · 4 h, 0.12 kWh)
    = 0.24 kWh; no PV. 2.24 kWh needs (2.24 / 0.9) + 10 = 12.49 kWh of charge."""
    assert end(one_day(np.ones(96, dtype=bool), np.zeros(96)), soc_kwh=12.5)["physics_allows"]
    assert not end(one_day(np.ones(96, dtype=bool), np.zeros(96)), soc_kwh=12.4)["physics_allows"]


def test_run_kpis_count_the_lifeline_on_days_physics_allows():
    days = pd.DataFrame(
        [
            end(one_day(np.ones(96, dtype=bool), np.zeros(96))),
            end(one_day(~EVENING, np.zeros(96)), soc_kwh=11.0),  # dark evening, flat battery
        ]
    ).assign(business_kwh=[0.0, 3.0])
    k = access_kpis(days)
    assert k["evening_lifeline_share"] == 0.5
    assert k["physics_allows_day_share"] == 0.5
    assert k["evening_lifeline_share_physics_allows"] == 1.0
    assert k["business_day_share"] == 0.5
    assert k["business_kwh_on_business_days"] == 3.0
