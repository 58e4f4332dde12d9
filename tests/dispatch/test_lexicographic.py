"""Tier order checked against an independent lexicographic model, and properties of the plan.

The oracle is a few dozen lines of highspy written from the rules, not from
``dispatch.model``: energy balance, a lossless battery, household groups on or off per
hour, businesses without minimum power; then tier by tier, each optimum fixed before
the next — priority energy, time-weighted household energy, total business energy. With
a lossless battery every Pareto-optimal business allocation has the same total (the
feasible energies form a polymatroid), so the total is comparable whatever the split.
"""

from __future__ import annotations

import highspy
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatch import DispatchPolicy, HouseholdGroupLoad, solve_dispatch
from dispatch.model import BLOCK_TOLERANCE_KWH, TIER_TOLERANCE_KWH, TIME_PREFERENCE
from tests.dispatch.test_dispatch import battery, business, energy, problem

PERIODS = 4
INF = highspy.kHighsInf


def oracle(
    *,
    pv: np.ndarray,
    priority: np.ndarray,
    groups: list[np.ndarray],
    businesses: list[np.ndarray],
    soc: float,
    capacity: float,
    power: float,
    household_floor: float | None = None,
) -> dict[str, float]:
    """Lexicographic optimum [kWh]: priority, then weighted households, then businesses.

    With ``household_floor`` the households are held at that weighted energy instead of
    their optimum (the business optimum a household plan within its tolerance leaves).
    """
    n = len(pv)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-9)

    def columns(count: int, upper: np.ndarray | float, integer: bool = False) -> list[int]:
        first = h.getNumCol()
        ub = np.broadcast_to(np.asarray(upper, dtype=float), (count,))
        for i in range(count):
            h.addCol(0.0, 0.0, float(ub[i]), 0, np.array([], np.int32), np.array([]))
            if integer:
                h.changeColIntegrality(first + i, highspy.HighsVarType.kInteger)
        return list(range(first, first + count))

    pv_used = columns(n, pv)
    charge = columns(n, power)
    discharge = columns(n, power)
    served = columns(n, priority)
    on = [columns(n, 1.0, integer=True) for _ in groups]
    given_ = [columns(n, d) for d in businesses]
    level = columns(n, capacity)  # state of charge at the end of each period

    def row(lower: float, upper: float, entries: dict[int, float]) -> None:
        index = np.array(list(entries), dtype=np.int32)
        h.addRow(lower, upper, index.size, index, np.array(list(entries.values())))

    for t in range(n):
        balance = {pv_used[t]: 1.0, discharge[t]: 1.0, charge[t]: -1.0, served[t]: -1.0}
        for g, demand in enumerate(groups):
            balance[on[g][t]] = -float(demand[t])
        for b in range(len(businesses)):
            balance[given_[b][t]] = -1.0
        row(0.0, 0.0, balance)
        dynamics = {level[t]: 1.0, charge[t]: -1.0, discharge[t]: 1.0}
        if t > 0:
            dynamics[level[t - 1]] = -1.0
        start = soc if t == 0 else 0.0
        row(start, start, dynamics)

    def stage(weights: dict[int, float]) -> float:
        cost = np.zeros(h.getNumCol())
        for column, w in weights.items():
            cost[column] = -w
        h.changeColsCost(cost.size, np.arange(cost.size, dtype=np.int32), cost)
        h.run()
        best = -h.getInfo().objective_function_value
        row(best - 1e-7, INF, weights)
        return best

    result = {"priority": stage(dict.fromkeys(served, 1.0))}
    weighted = {
        on[g][t]: float(d[t]) * (1.0 + TIME_PREFERENCE * (1.0 - t / n))
        for g, d in enumerate(groups)
        for t in range(n)
        if d[t] > 0
    }
    if household_floor is not None:
        row(household_floor, INF, weighted)
        result["household"] = household_floor
    else:
        result["household"] = stage(weighted) if weighted else 0.0
    result["business"] = stage({c: 1.0 for cols in given_ for c in cols}) if businesses else 0.0
    return result


instances = st.fixed_dictionaries(
    {
        "pv": st.lists(st.floats(0, 6).map(lambda x: round(x, 2)), min_size=4, max_size=4),
        "priority": st.lists(st.floats(0, 2).map(lambda x: round(x, 2)), min_size=4, max_size=4),
        "groups": st.lists(
            st.lists(st.floats(0.1, 2).map(lambda x: round(x, 2)), min_size=4, max_size=4),
            min_size=0,
            max_size=3,
        ),
        "businesses": st.lists(
            st.tuples(
                st.integers(1, 9),
                st.lists(st.floats(0, 3).map(lambda x: round(x, 2)), min_size=4, max_size=4),
            ),
            min_size=1,
            max_size=3,
        ),
        "soc": st.floats(0, 4).map(lambda x: round(x, 2)),
    }
)


def dispatch_problem(case: dict, *, extra: tuple = ()):
    groups = tuple(
        HouseholdGroupLoad(f"HG{g}", np.array(d, dtype=float)) for g, d in enumerate(case["groups"])
    )
    loads = tuple(
        business(f"B{i}", stake=stake, demand=demand)
        for i, (stake, demand) in enumerate(case["businesses"])
    )
    return problem(
        pv=case["pv"],
        priority=case["priority"],
        households=groups,
        businesses=loads + extra,
        bat=battery(soc=case["soc"], capacity=8.0, power=3.0),
        policy=DispatchPolicy(reserve=False),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=instances)
@example(  # households 0.081 weighted kWh short of their optimum, 0.11 kWh to the business
    case={
        "pv": [0.0, 0.0, 1.69, 1.62],
        "priority": [0.0, 0.56, 1.56, 0.38],
        "groups": [[1.0, 1.0, 1.0, 0.5], [1.0, 1.0, 0.69, 1.88], [1.03, 1.0, 0.25, 0.45]],
        "businesses": [(1, [0.0, 0.0, 0.0, 1.0])],
        "soc": 2.21,
    }
)
def test_dispatch_agrees_with_an_independent_lexicographic_model(case):
    s = solve_dispatch(dispatch_problem(case))
    site = {
        "pv": np.array(case["pv"]),
        "priority": np.array(case["priority"]),
        "groups": [np.array(d) for d in case["groups"]],
        "businesses": [np.array(d) for _, d in case["businesses"]],
        "soc": case["soc"],
        "capacity": 8.0,
        "power": 3.0,
    }
    best = oracle(**site)
    tiers = s.tier_energy_kwh()["served"]
    # Priority: exact (it has no relays). Households: the MILP may stop within its
    # absolute tolerance. Businesses: the same total up to what that tolerance moves.
    assert tiers["priority"] == pytest.approx(best["priority"], abs=TIER_TOLERANCE_KWH)
    weights = 1.0 + TIME_PREFERENCE * (1.0 - np.arange(PERIODS) / PERIODS)
    weighted = sum(
        float((s.allotment_kw[f"HG{g}"].to_numpy() * weights).sum())
        for g in range(len(case["groups"]))
    )
    assert weighted >= best["household"] - BLOCK_TOLERANCE_KWH - 1e-6
    assert weighted <= best["household"] + 1e-6
    assert tiers["business"] >= best["business"] - BLOCK_TOLERANCE_KWH - TIER_TOLERANCE_KWH
    # The household tolerance is in time-weighted kWh: a plan within it may serve dearer
    # early hours and fewer kWh (found by Hypothesis: 0.081 weighted, 0.11 kWh), which the
    # businesses may take, but never more than the best that household level leaves.
    left = oracle(**site, household_floor=weighted - 1e-6)
    assert tiers["business"] <= left["business"] + TIER_TOLERANCE_KWH


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=instances)
# Found by Hypothesis: a business that could take 0.06 kWh of otherwise curtailed PV was
# left off (the business stage was "proven" below its 0.1 kWh tolerance, relays off).
@example(
    case={
        "pv": [0.0, 4.0, 0.0, 0.0],
        "priority": [0.0, 0.0, 0.0, 0.0],
        "groups": [],
        "businesses": [(1, [0.0, 0.06, 0.0, 0.0])],
        "soc": 0.0,
    }
)
def test_the_polished_plan_is_work_conserving(case):
    # Businesses here have no minimum power: PV may only be curtailed in a period where
    # every business gets all it wants and the battery takes all it can — it charges
    # flat out, or it is full then or later (so storing more would only move the
    # curtailment to a later period).
    s = solve_dispatch(dispatch_problem(case))
    plan = s.plan
    soc = plan["soc_kwh"].to_numpy()
    for t in np.flatnonzero(plan["curtailed_kw"].to_numpy() > 1e-6):
        for i, (_, demand) in enumerate(case["businesses"]):
            assert s.allotment_kw[f"B{i}"].iloc[t] == pytest.approx(demand[t], abs=1e-6)
        full_later = bool((soc[t:] >= 8.0 - 1e-6).any())
        charging_flat_out = -plan["battery_power_kw"].iloc[t] >= 3.0 - 1e-6
        assert full_later or charging_flat_out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stakes=st.lists(st.integers(1, 20), min_size=2, max_size=4),
    pv=st.floats(1, 8).map(lambda x: round(x, 2)),
)
def test_shares_follow_stakes_when_nothing_binds(stakes, pv):
    loads = tuple(business(f"B{i}", stake=k, demand=100.0) for i, k in enumerate(stakes))
    s = solve_dispatch(problem(pv=pv, businesses=loads))
    total = sum(energy(s, b.id) for b in loads)
    assert total == pytest.approx(4 * pv, abs=1e-6)
    for b in loads:
        # Within one fine fair-share layer (DispatchPolicy.fair_share_tolerance, 3 %).
        assert energy(s, b.id) == pytest.approx(total * b.stake / sum(stakes), rel=0.035)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=instances, outsider=st.sampled_from([{"stake": 0}, {"stake": 3, "score": -5.0}]))
def test_a_surplus_only_business_never_reduces_what_staked_ones_get(case, outsider):
    without = solve_dispatch(dispatch_problem(case))
    z = business("Z", demand=4.0, **outsider)
    with_z = solve_dispatch(dispatch_problem(case, extra=(z,)))
    # The staked businesses' energy (their split may differ between equal optima, and
    # the relay choices within the households' tolerance).
    staked = [f"B{i}" for i in range(len(case["businesses"]))]
    before = sum(energy(without, b) for b in staked)
    after = sum(energy(with_z, b) for b in staked)
    assert after >= before - BLOCK_TOLERANCE_KWH - 1e-6
    # And it takes only what would otherwise be curtailed.
    assert energy(with_z, "Z") <= without.curtailed_kwh + BLOCK_TOLERANCE_KWH + 1e-6
