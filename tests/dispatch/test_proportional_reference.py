"""The proportional rule, run on arrays, is bit for bit the rule written period by period.

``_scalar_rule`` is the rule as it was first written (one unit at a time, plain Python
floats, one ``sum`` over every unit's allotment); it is kept here only as the reference
the array version must match exactly, including the order of every floating-point sum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch import HouseholdGroupLoad, proportional_rule
from dispatch.problem import DispatchPolicy, DispatchProblem
from dispatch.reserve import reserve_requirement_kwh
from tests.dispatch.test_dispatch import battery, business, problem


def _scalar_rule(problem: DispatchProblem) -> tuple[np.ndarray, ...]:
    n = problem.periods
    step = problem.step_hours
    bat = problem.battery
    k = max(1, round(problem.policy.relay_step_hours / step))
    reserve = reserve_requirement_kwh(problem)
    soc = np.empty(n + 1)
    soc[0] = bat.soc_kwh
    pv_used, charge, discharge = np.zeros(n), np.zeros(n), np.zeros(n)
    ids = (
        [p.id for p in problem.priority]
        + [g.id for g in problem.households]
        + [b.id for b in problem.businesses]
    )
    allotment = {u: np.zeros(n) for u in ids}
    group_on = np.ones((len(problem.households), n), dtype=bool)
    business_on = np.zeros((len(problem.businesses), n), dtype=bool)
    shed_so_far = np.array([g.shed_hours for g in problem.households], dtype=float)
    stakes = np.array([max(b.stake, 0) for b in problem.businesses], dtype=float)
    for t in range(n):
        pv = max(float(problem.pv_p50_kw[t]), 0.0)
        battery_out = min(
            bat.power_kw_max, max(soc[t] - bat.soc_kwh_min, 0.0) * bat.discharge_efficiency / step
        )
        available = pv + battery_out
        for p in problem.priority:
            served = min(max(float(p.demand_kw[t]), 0.0), available)
            allotment[p.id][t] = served
            available -= served
        if t % k == 0:
            order = np.argsort(-shed_so_far, kind="stable")
            budget = available
            on = np.zeros(len(problem.households), dtype=bool)
            for g in order:
                need = float(problem.households[g].demand_kw[t])
                if need <= budget:
                    on[g] = True
                    budget -= need
            group_on[:, t : t + k] = on[:, None]
            shed_so_far += np.where(on, 0.0, problem.policy.relay_step_hours)
        for g, group in enumerate(problem.households):
            served = min(float(group.demand_kw[t]) * group_on[g, t], available)
            allotment[group.id][t] = served
            available -= served
        upper_use = pv + battery_out - available
        above = max(soc[t] - reserve[t], 0.0) * bat.discharge_efficiency / step
        from_battery_upper = max(upper_use - pv, 0.0)
        business_budget = max(pv - upper_use, 0.0) + max(
            min(battery_out, above) - from_battery_upper, 0.0
        )
        business_budget = min(business_budget, available)
        total_stake = stakes.sum()
        for b, load in enumerate(problem.businesses):
            if total_stake <= 0 or not load.has_credit:
                continue
            share = business_budget * stakes[b] / total_stake
            cap = min(float(load.demand_kw[t]), load.power_kw_max)
            give = min(share, cap)
            if give + 1e-9 < min(load.power_kw_min, cap) or give <= 0:
                continue
            allotment[load.id][t] = give
            business_on[b, t] = True
        used = sum(allotment[u][t] for u in allotment)
        if used <= pv:
            room = (bat.soc_kwh_max - soc[t]) / (bat.charge_efficiency * step)
            charge[t] = min(pv - used, bat.power_kw_max, max(room, 0.0))
            pv_used[t] = used + charge[t]
        else:
            pv_used[t] = pv
            discharge[t] = used - pv
        soc[t + 1] = soc[t] + step * (
            bat.charge_efficiency * charge[t] - discharge[t] / bat.discharge_efficiency
        )
    frame = np.array([allotment[u] for u in ids])
    return frame, group_on, business_on, pv_used, charge, discharge, soc


powers = st.floats(0, 6, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    periods=st.integers(1, 9),
    data=st.data(),
    groups=st.integers(0, 4),
    businesses=st.integers(0, 6),
    soc=st.floats(0, 10),
    reserve=st.booleans(),
)
def test_the_array_rule_matches_the_scalar_rule_bit_for_bit(
    periods, data, groups, businesses, soc, reserve
):
    series = st.lists(powers, min_size=periods, max_size=periods)
    households = tuple(
        HouseholdGroupLoad(
            f"HG{g}",
            np.array(data.draw(series)),
            shed_hours=data.draw(st.sampled_from([0.0, 1.0, 2.5])),
        )
        for g in range(groups)
    )
    loads = tuple(
        business(
            f"B{b}",
            stake=data.draw(st.integers(0, 7)),
            demand=data.draw(series),
            periods=periods,
            pmin=data.draw(st.sampled_from([0.0, 0.3, 1.0, 2.0])),
            pmax=data.draw(st.sampled_from([0.5, 2.0, 100.0])),
            credit=data.draw(st.booleans()),
        )
        for b in range(businesses)
    )
    p = problem(
        pv=data.draw(series),
        periods=periods,
        priority=data.draw(series),
        households=households,
        businesses=loads,
        bat=battery(soc=soc, capacity=10.0, power=3.0, soc_min=1.0, eta=0.95),
        policy=DispatchPolicy(reserve=reserve),
    )
    expected = _scalar_rule(p)
    for with_reasons in (True, False):
        s = proportional_rule(p, reasons=with_reasons)
        ids = list(s.allotment_kw.columns)
        np.testing.assert_array_equal(s.allotment_kw[ids].to_numpy().T, expected[0])
        relays = s.relays
        np.testing.assert_array_equal(
            relays[[g.id for g in households]].to_numpy(bool).T.reshape(groups, periods),
            expected[1],
        )
        np.testing.assert_array_equal(
            relays[[b.id for b in loads]].to_numpy(bool).T.reshape(businesses, periods),
            expected[2],
        )
        np.testing.assert_array_equal(s.plan["pv_used_kw"].to_numpy(), expected[3])
        np.testing.assert_array_equal(
            s.plan["battery_power_kw"].to_numpy(), expected[5] - expected[4]
        )
        np.testing.assert_array_equal(s.plan["soc_kwh"].to_numpy(), expected[6][1:])
    # Without reasons the plan is the same, only unexplained.
    with_, without = proportional_rule(p), proportional_rule(p, reasons=False)
    pd.testing.assert_frame_equal(with_.plan, without.plan)
    assert without.reasons.empty
    assert list(without.reasons.columns) == list(with_.reasons.columns)
