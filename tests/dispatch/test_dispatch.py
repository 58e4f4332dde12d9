"""Dispatch: small hand-solvable cases, one per property the tiers promise."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatch import (
    BatteryState,
    BusinessLoad,
    DispatchPolicy,
    DispatchProblem,
    DispatchStatus,
    HouseholdGroupLoad,
    PriorityLoad,
    Reason,
    RelayState,
    proportional_rule,
    solve_dispatch,
)
from dispatch.problem import TIER_ORDER
from dispatch.schedule import SolverStatus
from microgrid import TimeGrid

START = "2026-03-20T00:00+00:00"


def grid(*, periods: int = 4, step: str = "1h") -> TimeGrid:
    return TimeGrid(start=START, periods=periods, step=step)


def battery(
    *,
    soc: float = 0.0,
    capacity: float = 0.0,
    power: float = 0.0,
    soc_min: float = 0.0,
    eta: float = 1.0,
    end: float | None = None,
) -> BatteryState:
    return BatteryState(
        soc_kwh=soc,
        soc_kwh_min=soc_min,
        soc_kwh_max=capacity,
        power_kw_max=power,
        charge_efficiency=eta,
        discharge_efficiency=eta,
        soc_kwh_end_min=end,
    )


def business(
    name: str,
    *,
    stake: int,
    demand: float | list[float],
    periods: int = 4,
    score: float = 5.0,
    pmin: float = 0.0,
    pmax: float = 100.0,
    credit: bool = True,
    relay: RelayState | None = None,
) -> BusinessLoad:
    return BusinessLoad(
        id=name,
        stake=stake,
        value_score=score,
        power_kw_min=pmin,
        power_kw_max=pmax,
        demand_kw=np.broadcast_to(np.asarray(demand, dtype=float), (periods,)).copy(),
        has_credit=credit,
        relay=relay or RelayState(),
    )


def problem(
    *,
    pv: float | list[float],
    pv10: float | list[float] | None = None,
    periods: int = 4,
    priority: float | list[float] = 0.0,
    households: tuple[HouseholdGroupLoad, ...] = (),
    businesses: tuple[BusinessLoad, ...] = (),
    bat: BatteryState | None = None,
    policy: DispatchPolicy | None = None,
) -> DispatchProblem:
    def series(x: float | list[float]) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=float), (periods,)).copy()

    return DispatchProblem(
        grid=grid(periods=periods),
        pv_p50_kw=series(pv),
        pv_p10_kw=series(pv if pv10 is None else pv10),
        battery=bat or battery(),
        priority=(PriorityLoad("clinic", series(priority)),),
        households=households,
        businesses=businesses,
        policy=policy or DispatchPolicy(reserve=False),
    )


def energy(schedule, unit: str) -> float:
    return float(schedule.allotment_kw[unit].sum() * schedule.grid.step_hours)


def test_shares_are_proportional_to_stake_when_nothing_binds():
    # 4 h of 4 kW = 16 kWh for two businesses staked 3:1, both able to take it all.
    p = problem(
        pv=4.0,
        businesses=(business("A", stake=3, demand=10.0), business("B", stake=1, demand=10.0)),
    )
    s = solve_dispatch(p)
    assert s.status is DispatchStatus.OPTIMAL
    assert energy(s, "A") == pytest.approx(12.0, rel=0.03)
    assert energy(s, "B") == pytest.approx(4.0, rel=0.06)
    assert s.curtailed_kwh == pytest.approx(0.0, abs=1e-6)


def test_water_filling_passes_a_capped_share_on():
    # A is staked 3:1 but can only take 1 kW: B gets everything A cannot use.
    p = problem(
        pv=4.0, businesses=(business("A", stake=3, demand=1.0), business("B", stake=1, demand=10.0))
    )
    s = solve_dispatch(p)
    assert energy(s, "A") == pytest.approx(4.0, rel=1e-6)
    assert energy(s, "B") == pytest.approx(12.0, rel=1e-6)


def test_minimum_power_selects_a_subset():
    # 3 kW of PV, three mills needing at least 2 kW each: only one can run at a time.
    mills = tuple(business(f"M{i}", stake=1, demand=2.5, pmin=2.0) for i in range(3))
    s = solve_dispatch(problem(pv=3.0, businesses=mills))
    on = s.relays[[m.id for m in mills]].sum(axis=1)
    assert (on == 1).all()
    for m in mills:
        given = s.allotment_kw[m.id]
        assert ((given <= 1e-9) | (given >= 2.0 - 1e-6)).all()
    assert set(s.reasons.loc[s.reasons.tier == "business", "reason"]) <= {
        Reason.NOT_SELECTED,
        Reason.PARTIAL,
    }


def test_work_conserving_no_curtailment_while_a_load_is_unmet():
    # Zero-stake business: surplus-only, but the surplus would otherwise be curtailed.
    p = problem(
        pv=5.0, businesses=(business("A", stake=2, demand=3.0), business("Z", stake=0, demand=10.0))
    )
    s = solve_dispatch(p)
    assert s.curtailed_kwh == pytest.approx(0.0, abs=1e-6)
    assert energy(s, "A") == pytest.approx(12.0, rel=1e-6)
    assert energy(s, "Z") == pytest.approx(8.0, rel=1e-6)


@pytest.mark.parametrize(
    "outsider",
    [
        pytest.param({"stake": 0}, id="zero-stake"),
        pytest.param({"stake": 5, "score": -4.0}, id="negative-score"),
    ],
)
def test_surplus_only_businesses_never_take_what_others_could_use(outsider):
    # The battery can store what A cannot use now for A later: Z must not get it.
    stake = outsider.pop("stake")
    z = business("Z", stake=stake, demand=10.0, **outsider)
    a = BusinessLoad(
        id="A",
        stake=1,
        value_score=5.0,
        power_kw_min=0.0,
        power_kw_max=100.0,
        demand_kw=np.array([0.0, 0.0, 6.0, 6.0]),
    )
    p = problem(
        pv=[6.0, 6.0, 0.0, 0.0], businesses=(a, z), bat=battery(soc=0.0, capacity=20.0, power=10.0)
    )
    s = solve_dispatch(p)
    assert energy(s, "A") == pytest.approx(12.0, rel=1e-6)
    assert energy(s, "Z") == pytest.approx(0.0, abs=1e-6)
    assert Reason.SURPLUS_ONLY in set(s.reasons.loc[s.reasons.unit == "Z", "reason"])


@pytest.mark.parametrize("surplus_only", [True, False])
def test_surplus_only_policy_can_be_switched_off(surplus_only):
    # 8 kWh of daytime PV, a 20 kWh battery; A (staked) needs 2 kWh at night, Z (no
    # stake) would take anything by day. Surplus-only, Z gets nothing: the battery can
    # store it all, so none would be curtailed. Switched off, Z is an ordinary business
    # without stake and takes the 6 kWh no staked business needs.
    a = business("A", stake=1, demand=[0.0, 0.0, 1.0, 1.0])
    z = business("Z", stake=0, demand=10.0)
    policy = DispatchPolicy(reserve=False, surplus_only_zero_stake=surplus_only)
    p = problem(
        pv=[4.0, 4.0, 0.0, 0.0],
        businesses=(a, z),
        bat=battery(capacity=20.0, power=10.0),
        policy=policy,
    )
    s = solve_dispatch(p)
    assert energy(s, "A") == pytest.approx(2.0, abs=1e-6)
    assert energy(s, "Z") == pytest.approx(0.0 if surplus_only else 6.0, abs=1e-6)


def test_tier_order_households_before_businesses_even_when_business_is_bigger():
    # 4 kW: a household group of 3 kW and a business that would use all 4 kW.
    # Serving the business would use more energy; the tier order forbids it.
    group = HouseholdGroupLoad("HG1", np.full(4, 3.0))
    s = solve_dispatch(
        problem(pv=4.0, households=(group,), businesses=(business("A", stake=10, demand=4.0),))
    )
    assert s.relays["HG1"].all()
    assert energy(s, "HG1") == pytest.approx(12.0)
    assert energy(s, "A") == pytest.approx(4.0, rel=1e-6)  # only the 1 kW left over


def test_tier_order_priority_before_households():
    group = HouseholdGroupLoad("HG1", np.full(4, 2.0))
    # PV 3 kW: priority 2 kW is served; the group (2 kW) does not fit and is shed.
    s = solve_dispatch(problem(pv=3.0, priority=2.0, households=(group,)))
    assert s.plan["served_priority_kw"].to_numpy() == pytest.approx(np.full(4, 2.0))
    assert not s.relays["HG1"].any()
    assert set(s.reasons.loc[s.reasons.unit == "HG1", "reason"]) == {Reason.SHED_SHORTAGE}


@pytest.mark.parametrize("priority_first", [True, False])
def test_priority_is_never_traded_for_a_whole_household_block(priority_first):
    # The case: 1 kW of PV, a 0.5 kW clinic, a 0.7 kW group. A weighted single
    # solve gave the clinic 0.3 kW to keep the group on; lexicographic tiers cannot.
    # With the order switched (households first) the clinic does get 0.3 kW.
    order = TIER_ORDER
    if not priority_first:
        order = ("soc_window", "household", "priority", "reserve", "business", "beyond_plan")
    group = HouseholdGroupLoad("HG1", np.full(1, 0.7))
    p = problem(
        pv=1.0,
        periods=1,
        priority=0.5,
        households=(group,),
        businesses=(business("A", stake=1, demand=1.0, periods=1),),
        policy=DispatchPolicy(reserve=False, tier_order=order),
    )
    s = solve_dispatch(p)
    clinic = float(s.plan["served_priority_kw"].iloc[0])
    assert clinic == pytest.approx(0.5 if priority_first else 0.3, abs=1e-6)
    assert bool(s.relays["HG1"].iloc[0]) is not priority_first
    # What the upper tiers leave goes to the business: nothing is curtailed.
    assert energy(s, "A") == pytest.approx(0.5 if priority_first else 0.0, abs=1e-6)
    assert s.curtailed_kwh == pytest.approx(0.0, abs=1e-6)


def test_a_household_block_cannot_keep_the_upper_tiers_tolerance():
    # 1.5 kWh in the battery, its window's floor at 0.5 kWh, no sun: after the 0.5 kW
    # clinic 0.5 kWh is left, 1.5 Wh short of the 0.5015 kW group. Had the SoC window
    # and priority tiers been fixed within their 1 Wh, the household stage could switch
    # the group on with 1 Wh below the floor and 0.5 Wh of the clinic's, and the
    # polish, the relay fixed, would have had to take all 1.5 Wh from the clinic.
    group = HouseholdGroupLoad("HG1", np.full(1, 0.5015))
    p = problem(
        pv=0.0,
        periods=1,
        priority=0.5,
        households=(group,),
        bat=battery(soc=1.5, soc_min=0.5, capacity=10.0, power=10.0),
    )
    s = solve_dispatch(p)
    assert float(s.plan["served_priority_kw"].iloc[0]) == pytest.approx(0.5, abs=1e-6)
    assert not bool(s.relays["HG1"].iloc[0])


@pytest.mark.parametrize("reserve", [True, False])
def test_reserve_is_kept_from_businesses(reserve):
    # A business that can only use daytime power, a clinic on at t2 and t3. The median
    # forecast has 2 kW of PV at t2, the pessimistic one none: the reserve (on P10)
    # keeps 2 kWh for the clinic; without it the plan counts on the t2 sun to charge 1.
    clinic = [0.0, 0.0, 1.0, 1.0]
    p = problem(
        pv=[5.0, 5.0, 2.0, 0.0],
        pv10=[5.0, 5.0, 0.0, 0.0],
        priority=clinic,
        businesses=(business("A", stake=1, demand=[10.0, 10.0, 0.0, 0.0]),),
        bat=battery(capacity=20.0, power=10.0),
        policy=DispatchPolicy(reserve=reserve),
    )
    s = solve_dispatch(p)
    assert s.plan["served_priority_kw"].to_numpy() == pytest.approx(clinic)
    assert energy(s, "A") == pytest.approx(8.0 if reserve else 10.0, abs=1e-3)
    assert s.solver is not None
    assert s.solver.polished


def test_measured_soc_below_its_window_gives_a_plan_with_a_named_violation():
    p = problem(pv=0.0, priority=1.0, bat=battery(soc=1.0, capacity=20.0, power=5.0, soc_min=4.0))
    s = solve_dispatch(p)
    assert s.status is DispatchStatus.OPTIMAL
    assert s.violations_kwh["soc_below_min"] > 0
    assert s.violations_kwh["priority_unserved"] == pytest.approx(4.0)


def test_priority_load_above_supply_is_a_priced_violation_not_a_crash():
    p = problem(pv=1.0, priority=3.0, bat=battery(soc=2.0, capacity=10.0, power=1.0))
    s = solve_dispatch(p)
    # 1 kW PV + 1 kW battery for 2 h: 2 kW of 3 for two hours, then 1 of 3.
    assert s.violations_kwh["priority_unserved"] == pytest.approx(12.0 - 6.0, rel=1e-6)
    assert Reason.PRIORITY_SHORT in set(s.reasons["reason"])


def test_unreachable_end_soc_is_reported():
    p = problem(pv=1.0, bat=battery(soc=0.0, capacity=50.0, power=10.0, end=40.0))
    s = solve_dispatch(p)
    assert s.violations_kwh["end_soc_short"] == pytest.approx(36.0, rel=1e-6)


def test_minimum_off_time_holds_a_relay_that_just_opened():
    # The relay opened 0 h ago with a 2 h minimum off time: it stays open for 2 h.
    recent = RelayState(closed=False, hours_in_state=0.0)
    policy = DispatchPolicy(reserve=False, min_off_hours=2.0, min_on_hours=2.0)
    a = business("A", stake=1, demand=4.0, relay=recent)
    s = solve_dispatch(problem(pv=4.0, businesses=(a,), policy=policy))
    assert s.relays["A"].tolist() == [False, False, True, True]


def test_minimum_on_time_prevents_chatter():
    # PV flickers; with a 2 h minimum on time the relay never closes for one hour only.
    policy = DispatchPolicy(reserve=False, min_on_hours=2.0, min_off_hours=2.0)
    a = business("A", stake=1, demand=2.0, pmin=2.0, periods=6, relay=RelayState(False, 10.0))
    pv = [2.0, 0.0, 2.0, 2.0, 0.0, 2.0]
    s = solve_dispatch(problem(pv=pv, periods=6, businesses=(a,), policy=policy))
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, s.relays["A"].to_numpy(int), 0])))[::2]
    assert (runs >= 2).all()


def test_no_credit_means_no_energy():
    a = business("A", stake=5, demand=10.0, credit=False)
    s = solve_dispatch(problem(pv=4.0, businesses=(a, business("B", stake=1, demand=10.0))))
    assert energy(s, "A") == 0.0
    assert energy(s, "B") == pytest.approx(16.0, rel=1e-6)
    assert set(s.reasons.loc[s.reasons.unit == "A", "reason"]) == {Reason.NO_CREDIT}


def test_household_shedding_rotates_by_past_shed_hours():
    # Room for one of two equal groups; the one shed more in the past is served.
    groups = (
        HouseholdGroupLoad("HG1", np.full(4, 2.0), shed_hours=10.0),
        HouseholdGroupLoad("HG2", np.full(4, 2.0), shed_hours=0.0),
    )
    s = solve_dispatch(problem(pv=2.0, households=groups))
    assert s.relays["HG1"].all()
    assert not s.relays["HG2"].any()


def test_proportional_rule_splits_by_stake_without_water_filling():
    p = problem(
        pv=4.0, businesses=(business("A", stake=3, demand=1.0), business("B", stake=1, demand=10.0))
    )
    s = proportional_rule(p)
    assert s.status is DispatchStatus.BASELINE
    assert energy(s, "A") == pytest.approx(4.0)
    assert energy(s, "B") == pytest.approx(4.0)  # A's unused share is not passed on
    milp = solve_dispatch(p)
    assert energy(milp, "B") > energy(s, "B")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pv=st.lists(st.floats(0, 8), min_size=4, max_size=4),
    soc=st.floats(0, 10),
    priority=st.floats(0, 3),
    group_demand=st.floats(0, 4),
    stakes=st.lists(st.integers(0, 5), min_size=2, max_size=2),
)
def test_energy_is_conserved_and_soc_stays_physical(pv, soc, priority, group_demand, stakes):
    p = problem(
        pv=pv,
        priority=priority,
        households=(HouseholdGroupLoad("HG1", np.full(4, group_demand)),),
        businesses=(
            business("A", stake=stakes[0], demand=3.0),
            business("B", stake=stakes[1], demand=2.0, pmin=1.0),
        ),
        bat=battery(soc=soc, capacity=10.0, power=4.0, eta=0.95),
    )
    s = solve_dispatch(p)
    plan = s.plan
    supply = plan["pv_used_kw"] + plan["battery_power_kw"]
    served = plan[["served_priority_kw", "served_household_kw", "served_business_kw"]].sum(axis=1)
    assert supply.to_numpy() == pytest.approx(served.to_numpy(), abs=1e-6)
    assert (plan["pv_used_kw"] <= np.asarray(pv) + 1e-6).all()
    assert (plan["soc_kwh"] >= -1e-6).all()
    assert (plan["soc_kwh"] <= 10.0 + 1e-6).all()
    for tier in ("priority", "household", "business"):
        assert (plan[f"served_{tier}_kw"] <= plan[f"demand_{tier}_kw"] + 1e-6).all()


def test_no_time_before_the_deadline_gives_the_rule_plan_with_its_violations():
    groups = tuple(HouseholdGroupLoad(f"HG{i}", np.full(4, 1.0 + i / 10)) for i in range(6))
    p = problem(
        pv=1.0,
        priority=3.0,
        households=groups,
        businesses=(business("A", stake=1, demand=2.0, pmin=1.5),),
    )
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    s = solve_dispatch(p, deadline=past)
    # No time for the MILP: the rule's plan, saying so, and reporting what it leaves
    # unserved through the same function as the MILP's plan (3 − 1 kW for 4 h).
    assert s.status is DispatchStatus.FALLBACK
    assert s.solver is not None
    assert s.solver.status is SolverStatus.NO_SOLUTION
    assert s.solver.note
    assert s.violations_kwh["priority_unserved"] == pytest.approx(8.0)
    assert len(s.plan) == 4
    assert s.household_groups == tuple(g.id for g in groups)
    assert s.shed_hours().index.tolist() == [g.id for g in groups]


@settings(max_examples=60, deadline=None)
@given(
    stakes=st.lists(st.integers(1, 10_000), min_size=2, max_size=6),
    demand=st.lists(st.floats(0.01, 5.0), min_size=6, max_size=6),
)
# The smallest stake's reach, 854.618…64 kWh per share, rounds one ulp above the last
# layer's end computed the other way round (…63): without the clip, an IndexError.
@example(stakes=[2878, 5324, 418, 221, 1082, 1135], demand=[1.27, 1.43, 3.71, 4.27, 4.31, 1.86])
def test_any_stakes_build_a_model(stakes, demand):
    # Regression: a small stake's E / share could round a hair above the last layer's
    # end and index past the layers (found by the planners' year simulation).
    from dispatch.model import build_model

    loads = tuple(business(f"B{i}", stake=s, demand=demand[i]) for i, s in enumerate(stakes))
    model, data = build_model(problem(pv=3.0, businesses=loads))
    assert len(model.business_layer) >= len(stakes)
    assert data.layers.widths_kwh.size > 0
