"""Inputs dispatch cannot plan with are refused up front, naming unit and field; deadlines hold."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace

import numpy as np
import pytest

from dispatch import (
    DispatchPolicy,
    DispatchStatus,
    HouseholdGroupLoad,
    SolverSettings,
    problem_from_site,
    solve_dispatch,
)
from dispatch.problem import ProblemError, check_problem
from dispatch.schedule import SolverStatus
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import TimeGrid, load_site
from tests.dispatch.test_dispatch import battery, business, problem


def good():
    return problem(
        pv=[0.0, 2.0, 4.0, 1.0],
        priority=0.5,
        households=(HouseholdGroupLoad("HG1", np.full(4, 1.0)),),
        businesses=(business("A", stake=2, demand=1.0),),
        bat=battery(soc=5.0, capacity=10.0, power=3.0),
    )


BAD = {
    "short demand": (
        lambda p: replace(
            p, businesses=(business("A", stake=2, demand=[1.0, 1.0, 1.0], periods=3),)
        ),
        "A.demand_kw: has shape (3,); the grid has 4 periods",
    ),
    "nan pv": (
        lambda p: replace(p, pv_p50_kw=np.array([0.0, np.nan, 1.0, 1.0])),
        "pv.pv_p50_kw: is not a finite number in period 1",
    ),
    "negative demand": (
        lambda p: replace(p, households=(HouseholdGroupLoad("HG1", np.array([1, -1, 1, 1.0])),)),
        "HG1.demand_kw: is negative in period 1",
    ),
    "p10 above p50": (
        lambda p: replace(p, pv_p10_kw=p.pv_p50_kw + 1.0),
        "pv.pv_p10_kw: the pessimistic forecast exceeds the median",
    ),
    "soc above capacity": (
        lambda p: replace(p, battery=battery(soc=500.0, capacity=10.0, power=3.0)),
        "battery.soc_kwh: 500.0 kWh is outside what the battery can hold [0, 10.0] kWh",
    ),
    "negative soc": (
        lambda p: replace(p, battery=battery(soc=-3.0, capacity=10.0, power=3.0)),
        "battery.soc_kwh: -3.0 kWh is outside",
    ),
    "efficiency above 1": (
        lambda p: replace(p, battery=battery(soc=1.0, capacity=10.0, power=3.0, eta=1.2)),
        "battery.charge_efficiency: must lie in (0, 1]",
    ),
    "window upside down": (
        lambda p: replace(p, battery=battery(soc=1.0, capacity=2.0, power=3.0, soc_min=4.0)),
        "battery.soc_kwh_max: 2.0 kWh is below soc_kwh_min",
    ),
    "duplicate id": (
        lambda p: replace(p, businesses=(business("HG1", stake=1, demand=1.0),)),
        "HG1.id: appears twice",
    ),
    "pmax below pmin": (
        lambda p: replace(p, businesses=(business("A", stake=1, demand=1.0, pmin=2.0, pmax=1.0),)),
        "A.power_kw_max: 1.0 kW is below power_kw_min",
    ),
    "score out of range": (
        lambda p: replace(p, businesses=(business("A", stake=1, demand=1.0, score=11.0),)),
        "A.value_score: must lie in [−10, +10]",
    ),
    "negative stake": (
        lambda p: replace(p, businesses=(business("A", stake=-1, demand=1.0),)),
        "A.stake: must be a whole number of tokens",
    ),
    "relay step not a multiple": (
        lambda p: replace(p, policy=DispatchPolicy(relay_step_hours=1.5)),
        "policy.relay_step_hours: 1.5 h must be a whole multiple of the period length",
    ),
    "unknown tier": (
        lambda p: replace(p, policy=DispatchPolicy(tier_order=("priority", "household"))),
        "policy.tier_order:",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_refused_with_unit_and_field(case):
    spoil, message = BAD[case]
    check_problem(good())  # the unspoilt problem passes
    bad = spoil(good())
    with pytest.raises(ProblemError) as caught:
        solve_dispatch(bad)
    assert message in str(caught.value)
    unit, field = message.split(":")[0].split(".", 1)
    assert (caught.value.unit, caught.value.field) == (unit, field)


@pytest.mark.parametrize(
    ("settings", "deadline", "message"),
    [
        (SolverSettings(time_limit_s=0.0), None, "settings.time_limit_s: must be a positive"),
        (SolverSettings(time_limit_s=float("nan")), None, "settings.time_limit_s"),
        (SolverSettings(threads=0), None, "settings.threads"),
        # Below the deadline's reserves every plan would silently be the rule plan.
        (SolverSettings(time_limit_s=1.0), None, "settings.time_limit_s: must be at least 2 s"),
        (
            SolverSettings(),
            dt.datetime(2026, 1, 1, 12),  # noqa: DTZ001  (naive on purpose)
            "settings.deadline: must be timezone-aware",
        ),
    ],
)
def test_bad_settings_are_refused(settings, deadline, message):
    with pytest.raises(ProblemError, match=message.replace("(", r"\(")):
        solve_dispatch(good(), settings, deadline=deadline)


@pytest.fixture(scope="module")
def hard_problem():
    """The default site with relays decided per 15 min: ≈ 3 000 household binaries."""
    site = load_site()
    grid = TimeGrid.from_days("2026-03-20", 1, site.location.timezone)
    forecast = forecast_site(site, grid, synthetic_weather(grid.index, site.location, seed=3))
    demand = {c: forecast.demand_kw[c].to_numpy() for c in forecast.demand_kw.columns}
    return problem_from_site(
        site,
        grid,
        forecast.pv_kw["p50"].to_numpy(),
        forecast.pv_kw["p10"].to_numpy(),
        demand,
        soc_kwh=30.0,
        policy=DispatchPolicy(relay_step_hours=0.25, min_on_hours=0.25, min_off_hours=0.25),
    )


@pytest.mark.parametrize(
    "budget_s", [0.5, pytest.param(4.0, marks=pytest.mark.slow)], ids=["0.5s", "4s"]
)
def test_a_hard_instance_gets_a_plan_within_the_deadline(hard_problem, budget_s):
    # 0.5 s: no time for the MILP at all, the rule's plan. 4 s: building takes 1–2 s
    # on the shared machine and the household tier (≈ 3 000 binaries) 2–4 s more, so
    # the deadline usually strikes inside it. Either way the plan arrives in time and
    # its status says how it was made.
    begin = time.monotonic()
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=budget_s)
    s = solve_dispatch(hard_problem, deadline=deadline)
    elapsed = time.monotonic() - begin
    assert elapsed <= budget_s + 0.1
    report = s.solver
    assert report is not None
    if budget_s < 1.0:
        assert s.status is DispatchStatus.FALLBACK
        assert report.status is SolverStatus.NO_SOLUTION
    mip = [stage for stage in report.stages if ":" not in stage.name]
    if s.status is DispatchStatus.OPTIMAL:
        assert report.status is SolverStatus.OPTIMAL
        assert all(stage.status is SolverStatus.OPTIMAL for stage in mip)
    elif s.status is DispatchStatus.TIME_LIMIT:
        assert report.status is SolverStatus.TIME_LIMIT
        assert report.deadline_hit
        assert any(stage.status is not SolverStatus.OPTIMAL for stage in mip) or len(mip) < 6
    else:
        assert s.status is DispatchStatus.FALLBACK
        assert report.status in (SolverStatus.NO_SOLUTION, SolverStatus.FAILED)
        assert report.note
    supply = s.plan["pv_used_kw"] + s.plan["battery_power_kw"]
    served = s.plan[["served_priority_kw", "served_household_kw", "served_business_kw"]]
    assert supply.to_numpy() == pytest.approx(served.sum(axis=1).to_numpy(), abs=1e-6)
