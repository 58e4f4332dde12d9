"""Service plans in dispatch: hand-solvable cases, one per rule the tiers promise.

Tiers: priority ≻ household lifeline (demand within the plan, evening first) ≻ reserve ≻
businesses (I of N by community value) ≻ household use beyond the plan.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import DispatchPolicy, HouseholdGroupLoad, solve_dispatch
from dispatch.problem import TIER_ORDER, household_lifeline, household_lifelines
from dispatch.schedule import Reason, household_access
from dispatch.setpoints import Setpoints
from microgrid.physics import BatteryLimits, ContainerState, StepInputs, step
from microgrid.site import ServicePlan
from tests.dispatch.test_dispatch import battery, business, energy, problem

VALUE = DispatchPolicy(reserve=False, business_objective="community_value", stake_weight=0.0)


def order(*swap: str) -> tuple[str, ...]:
    """The default tier order with two tiers swapped."""
    tiers = list(TIER_ORDER)
    i, j = tiers.index(swap[0]), tiers.index(swap[1])
    tiers[i], tiers[j] = tiers[j], tiers[i]
    return tuple(tiers)


def group(lifeline: list[float], demand: list[float], **kw: object) -> HouseholdGroupLoad:
    """A group whose lifeline (within plans) and total demand are given per period [kW]."""
    return HouseholdGroupLoad(
        "HG1",
        np.asarray(demand, dtype=float),
        lifeline_kw=np.asarray(lifeline, dtype=float),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("lifeline_first", [True, False])
def test_lifeline_before_reserve(lifeline_first):
    # 2 kWh in the battery and 1 kW of median sun at t2 (none at P10); the clinic needs
    # 1 kW at t2 and t3. The median plan has 1 kWh to spare, which the group's 1 kW
    # lifeline at t1 takes — leaving the reserve (on P10, 2 kWh for the clinic) 1 kWh
    # short. With the reserve ranked above the lifeline the group is shed instead.
    p = problem(
        pv=[0.0, 0.0, 1.0, 0.0],
        pv10=[0.0, 0.0, 0.0, 0.0],
        priority=[0.0, 0.0, 1.0, 1.0],
        households=(group([0.0, 1.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0]),),
        bat=battery(soc=2.0, capacity=10.0, power=10.0),
        policy=DispatchPolicy(
            reserve=True,
            tier_order=TIER_ORDER if lifeline_first else order("household", "reserve"),
        ),
    )
    s = solve_dispatch(p)
    assert s.plan["served_priority_kw"].to_numpy() == pytest.approx([0, 0, 1, 1], abs=1e-6)
    assert energy(s, "HG1") == pytest.approx(1.0 if lifeline_first else 0.0, abs=1e-6)
    assert bool(s.relays["HG1"].iloc[1]) is lifeline_first
    # Use beyond plan (0.5 kW at t1) is last: never bought from the reserve.
    assert s.household_free is not None
    assert not s.household_free["HG1"].any()


@pytest.mark.parametrize("beyond_last", [True, False])
def test_use_beyond_plan_comes_after_businesses(beyond_last):
    # 2 kW of PV; the group's lifeline is 0.5 kW and it would use 1 kW more beyond its
    # plan; a business wants 1 kW. Lifeline, then the business: 0.5 kW is left, too
    # little for the group's use beyond plan (all or nothing per group). Ranked above
    # the business, the beyond-plan use takes 1 kW and the business gets the 0.5 left.
    p = problem(
        pv=2.0,
        periods=1,
        households=(group([0.5], [1.5]),),
        businesses=(business("A", stake=1, demand=1.0, periods=1),),
        policy=DispatchPolicy(
            reserve=False,
            business_objective="community_value",
            tier_order=TIER_ORDER if beyond_last else order("business", "beyond_plan"),
        ),
    )
    s = solve_dispatch(p)
    assert energy(s, "A") == pytest.approx(1.0 if beyond_last else 0.5, abs=1e-6)
    assert energy(s, "HG1") == pytest.approx(0.5 if beyond_last else 1.5, abs=1e-6)
    assert s.household_free is not None
    assert bool(s.household_free["HG1"].iloc[0]) is not beyond_last
    if beyond_last:
        held = s.reasons[(s.reasons.unit == "HG1")]
        assert set(held["reason"]) == {Reason.HELD_TO_PLAN}


def test_the_evening_lifeline_is_shed_last():
    # 1 kWh in the battery, no sun; the group's lifeline is 1 kW at 17:00 and at 18:00,
    # the second in its evening window. Only one hour can be served: the evening one
    # (without the evening weight, the time preference would serve 17:00).
    p = problem(
        pv=0.0,
        periods=2,
        households=(group([1.0, 1.0], [1.0, 1.0], evening=np.array([False, True])),),
        bat=battery(soc=1.0, capacity=10.0, power=10.0),
    )
    s = solve_dispatch(p)
    assert s.relays["HG1"].tolist() == [False, True]


def test_an_exhausted_budget_keeps_the_load_off_until_the_next_budget_period():
    # A 100 W / 300 Wh plan, a household that wants 100 W from 20:00 to 02:00 local
    # (Niamey, UTC+1). Its budget lasts three hours (20–23 h); 23:00 stays dark; the
    # new budget period at local midnight serves it again.
    index = pd.date_range("2026-03-20T19:00Z", periods=6, freq="1h")
    local = index.tz_convert("Africa/Niamey")
    plan = ServicePlan(power_limit_w=100, daily_energy_wh=300)
    demand = np.full(6, 0.1)
    days = np.asarray(local.normalize().asi8)
    lifeline = household_lifeline(demand, plan, np.asarray(local.hour), days, 1.0)
    assert lifeline.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.0, 0.1, 0.1])
    # Dispatch follows it: the group is off at 23:00 (budget used), on again after.
    p = problem(
        pv=0.0,
        periods=6,
        households=(
            HouseholdGroupLoad(
                "HG1",
                demand,
                members=("H1",),
                lifeline_kw=lifeline,
                member_plans=((0.1, 300),),
                member_lifeline_kw=lifeline[None, :],
                member_demand_kw=demand[None, :],
            ),
        ),
        bat=battery(soc=10.0, capacity=10.0, power=10.0),
    )
    p = replace(p, timezone="Africa/Niamey")
    s = solve_dispatch(p)
    assert s.relays["HG1"].tolist() == [True, True, True, False, True, True]
    assert set(s.reasons.loc[s.reasons.unit == "HG1", "reason"]) == {Reason.BUDGET_USED}
    # The setpoints carry the meter's limit and budget; the one physics enforces them.
    sp = Setpoints.from_schedule(s)
    assert sp.energy_budget_wh == {"H1": 300}
    assert sp.power_limit_kw["H1"].tolist() == pytest.approx([0.1, 0.1, 0.1, 0.0, 0.1, 0.1])
    state = ContainerState.new(soc_kwh=10.0, connections=1)
    limits = BatteryLimits(10.0, 0.0, 10.0, 10.0, 1.0, 1.0)
    drawn = []
    for t in range(6):
        if t > 0 and days[t] != days[t - 1]:
            state.start_budget_period()
        # The meter alone (its relay closed throughout, no limit): the budget stops it.
        flows = step(
            state,
            limits,
            StepInputs(
                dt_h=1.0,
                pv_available_kw=0.0,
                pv_limit_kw=0.0,
                charge_limit_kw=10.0,
                discharge_limit_kw=10.0,
                demand_kw=np.array([0.15]),
                closed=np.array([True]),
                power_limit_kw=np.array([np.inf]),
                energy_budget_wh=np.array([float(sp.energy_budget_wh["H1"])]),
            ),
        )
        drawn.append(float(flows.drawn_kw[0]))
    assert drawn == pytest.approx([0.15, 0.15, 0.0, 0.0, 0.15, 0.15])


@pytest.mark.parametrize("best", ["A", "C"])
def test_i_of_n_by_value_when_minimums_bind(best):
    # 3 kW of PV, three businesses each needing at least 2 kW: only one fits. Equal
    # stakes; the community's value score decides, and the others are told why.
    scores = {"A": 4.0, "B": 6.0, "C": 4.0} | {best: 8.0}
    p = problem(
        pv=3.0,
        periods=1,
        businesses=tuple(
            business(name, stake=1, demand=2.0, periods=1, pmin=2.0, score=scores[name])
            for name in ("A", "B", "C")
        ),
        policy=VALUE,
    )
    s = solve_dispatch(p)
    served = {name: energy(s, name) for name in ("A", "B", "C")}
    assert served == pytest.approx({name: 2.0 if name == best else 0.0 for name in served})
    choice = s.business_choice
    assert choice is not None
    assert choice.loc[best, "reason"] == Reason.CHOSEN
    others = [name for name in ("A", "B", "C") if name != best]
    assert set(choice.loc[others, "reason"]) == {Reason.LOWER_VALUE}
    assert choice.loc[best, "weight"] == pytest.approx(1.0)


def test_household_access_reports_mtf_tiers_per_household():
    # One household held to a 100 W / 400 Wh plan, served 18:00–22:00 local: capacity
    # 100 W (tier 2), 400 Wh (tier 2), 4 h a day (tier 1 needs 4 h), 4 evening hours.
    index = pd.date_range("2026-03-20T00:00Z", periods=24, freq="1h")
    local = index.tz_convert("Africa/Niamey")
    evening = np.asarray((local.hour >= 18) & (local.hour < 22))
    demand = np.where(evening, 0.1, 0.0)
    p = problem(
        pv=0.0,
        periods=24,
        households=(
            HouseholdGroupLoad(
                "HG1",
                demand,
                members=("H1",),
                lifeline_kw=demand,
                evening=evening,
                member_plans=((0.1, 400),),
                member_lifeline_kw=demand[None, :],
                member_demand_kw=demand[None, :],
            ),
        ),
        bat=battery(soc=10.0, capacity=10.0, power=10.0),
    )
    s = solve_dispatch(p)
    access = household_access(s, replace(p, timezone="Africa/Niamey"))
    day = access.loc[(local[0].date(), "H1")]
    assert day["capacity_w"] == pytest.approx(100.0)
    assert day["daily_energy_wh"] == pytest.approx(400.0)
    assert day["evening_hours"] == pytest.approx(4.0)


def test_plans_in_the_site_file_are_checked_with_clear_messages():
    from microgrid import load_site

    site = load_site()
    data = site.model_dump()
    household = data["connections"][20]
    assert household["kind"] == "household"
    household["service_plan"] = "gold"
    data["service_plan_defaults"] = {"priority": "basic", "household": "silver"}
    with pytest.raises(ValueError, match="unknown service plan 'gold'; defined: basic") as err:
        type(site).model_validate(data)
    text = str(err.value)
    assert "service_plan_defaults.household: unknown service plan 'silver'" in text
    assert "service_plan_defaults.priority: priority users are never limited" in text
    with pytest.raises(ValueError, match=r"evening_end_hour .* must be after"):
        ServicePlan(power_limit_w=50, daily_energy_wh=200, evening_start_hour=22,
                    evening_end_hour=18)  # fmt: skip
    with pytest.raises(ValueError, match="give both evening_start_hour and evening_end_hour"):
        ServicePlan(power_limit_w=50, daily_energy_wh=200, evening_start_hour=18)
    with pytest.raises(ValueError, match="tier_order"):
        type(site.policy)(tier_order=("priority", "household"))
    # The default site: households on the sweep's plan, priority users on none.
    assert site.service_plan_of(site.households[0].id) == site.service_plans["basic"]
    assert site.service_plan_of(site.priority_users[0].id) is None


def _one_household_budget(
    demand: np.ndarray,
    plan: ServicePlan,
    hours: np.ndarray,
    days: np.ndarray,
    step: float,
    used: float,
) -> list[float]:
    """The lifeline rule written the plain way, one household and one period at a time."""
    capped = [min(max(float(d), 0.0), plan.power_limit_kw) for d in demand]
    evening = plan.evening_mask(hours)
    out = [0.0] * len(capped)
    for n, day in enumerate(dict.fromkeys(days.tolist())):
        room = (
            max(plan.daily_energy_wh - used, 0.0) / 1000.0
            if n == 0
            else plan.daily_energy_wh / 1000.0
        )
        in_day = [t for t in range(len(capped)) if days[t] == day]
        for t in [t for t in in_day if evening[t]] + [t for t in in_day if not evening[t]]:
            out[t] = min(capped[t], room / step)
            room = max(room - out[t] * step, 0.0)
    return out


PLANS = (
    ServicePlan(power_limit_w=30, daily_energy_wh=150, evening_start_hour=18, evening_end_hour=22),
    ServicePlan(power_limit_w=100, daily_energy_wh=400, evening_start_hour=17, evening_end_hour=23),
    ServicePlan(power_limit_w=500, daily_energy_wh=1000),
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    households=st.integers(1, 12),
    periods=st.integers(1, 60),
    step=st.sampled_from([0.25, 0.5, 1.0]),
    start_hour=st.integers(0, 23),
)
def test_many_households_get_exactly_their_one_household_budgets(
    data: st.DataObject, households: int, periods: int, step: float, start_hour: int
):
    # Building a problem runs the lifeline for every household at once; each row must be
    # bit for bit the plain one-household loop, whatever its neighbours' plans and meters.
    hours = (start_hour + np.arange(periods) * step).astype(int)
    demand = np.array(
        data.draw(
            st.lists(
                st.lists(st.floats(-0.05, 0.6), min_size=periods, max_size=periods),
                min_size=households,
                max_size=households,
            )
        )
    )
    plans = data.draw(st.lists(st.sampled_from(PLANS), min_size=households, max_size=households))
    used = np.array(
        data.draw(st.lists(st.floats(0.0, 1500.0), min_size=households, max_size=households))
    )
    got = household_lifelines(demand, plans, hours % 24, hours // 24, step, used)
    for i in range(households):
        expected = _one_household_budget(
            demand[i], plans[i], hours % 24, hours // 24, step, used[i]
        )
        assert got[i].tolist() == expected
