"""Baselines the MILP must beat: the seeds' proportional rule, and a perfect-foresight oracle.

The proportional rule is what the hackathon proposed (seed 000/001): serve the upper
tiers as a simple controller would, period by period, and give each business energy in
proportion to its stake of whatever is left. It has no look-ahead, no minimum-power
selection and no water-filling: a business's share it cannot use is not passed on.

The oracle is the MILP itself, told the PV that actually came: the best any forecast
could have done, for measuring what forecasting costs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from dispatch.problem import DispatchProblem
from dispatch.reserve import reserve_requirement_kwh
from dispatch.schedule import DispatchStatus, Schedule, explain, plan_table, violations_kwh

__all__ = ["oracle_problem", "proportional_rule"]


def oracle_problem(problem: DispatchProblem, actual_pv_kw: np.ndarray) -> DispatchProblem:
    """The same problem with the PV that was actually produced as its certain forecast.

    Solve it with :func:`dispatch.solve_dispatch` to get the perfect-foresight plan.
    """
    actual = np.asarray(actual_pv_kw, dtype=float)
    if actual.shape != (problem.periods,):
        msg = f"actual PV has {actual.shape} values; the problem has {problem.periods} periods"
        raise ValueError(msg)
    return replace(problem, pv_p50_kw=actual, pv_p10_kw=actual)


def proportional_rule(problem: DispatchProblem) -> Schedule:
    """Dispatch by the seeds' rule, period by period.

    Order within each period: priority users from PV then battery; household groups from
    what remains (a whole relay block is shed, groups with most past shed hours last);
    the battery keeps the reserve requirement from businesses; businesses share the rest
    in proportion to stake, each taking at most its demand and nothing below its minimum
    power; what is left charges the battery, and the rest is curtailed.
    """
    n = problem.periods
    step = problem.step_hours
    battery = problem.battery
    k = max(1, round(problem.policy.relay_step_hours / step))
    reserve = reserve_requirement_kwh(problem)
    soc = np.empty(n + 1)
    soc[0] = battery.soc_kwh
    pv_used = np.zeros(n)
    charge = np.zeros(n)
    discharge = np.zeros(n)
    allotment = {u: np.zeros(n) for u in _unit_ids(problem)}
    group_on = np.ones((len(problem.households), n), dtype=bool)
    business_on = np.zeros((len(problem.businesses), n), dtype=bool)
    shed_so_far = np.array([g.shed_hours for g in problem.households], dtype=float)
    stakes = np.array([max(b.stake, 0) for b in problem.businesses], dtype=float)

    for t in range(n):
        pv = max(float(problem.pv_p50_kw[t]), 0.0)
        battery_out = min(
            battery.power_kw_max,
            max(soc[t] - battery.soc_kwh_min, 0.0) * battery.discharge_efficiency / step,
        )
        available = pv + battery_out
        for p in problem.priority:
            served = min(max(float(p.demand_kw[t]), 0.0), available)
            allotment[p.id][t] = served
            available -= served
        if t % k == 0:
            # Decide the block's groups once, on this period's power, as a relay would.
            order = np.argsort(-shed_so_far, kind="stable")  # most shed → served first
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
        # Businesses get PV left over and battery energy above the reserve only.
        upper_use = pv + battery_out - available
        battery_above_reserve = max(soc[t] - reserve[t], 0.0) * battery.discharge_efficiency / step
        from_battery_upper = max(upper_use - pv, 0.0)
        business_budget = max(pv - upper_use, 0.0) + max(
            min(battery_out, battery_above_reserve) - from_battery_upper, 0.0
        )
        business_budget = min(business_budget, available)
        total_stake = stakes.sum()
        for b, business in enumerate(problem.businesses):
            if total_stake <= 0 or not business.has_credit:
                continue
            share = business_budget * stakes[b] / total_stake
            cap = min(float(business.demand_kw[t]), business.power_kw_max)
            give = min(share, cap)
            if give + 1e-9 < min(business.power_kw_min, cap) or give <= 0:
                continue
            allotment[business.id][t] = give
            business_on[b, t] = True
        used = sum(allotment[u][t] for u in allotment)
        if used <= pv:
            pv_used[t] = pv
            room = (battery.soc_kwh_max - soc[t]) / (battery.charge_efficiency * step)
            charge[t] = min(pv - used, battery.power_kw_max, max(room, 0.0))
            pv_used[t] = used + charge[t]
        else:
            pv_used[t] = pv
            discharge[t] = used - pv
        soc[t + 1] = soc[t] + step * (
            battery.charge_efficiency * charge[t] - discharge[t] / battery.discharge_efficiency
        )

    index = problem.grid.index
    allotment_frame = pd.DataFrame(allotment, index=index)
    relays = pd.DataFrame(
        {g.id: group_on[i] for i, g in enumerate(problem.households)}
        | {b.id: business_on[i] for i, b in enumerate(problem.businesses)},
        index=index,
    )
    plan = plan_table(problem, pv_used, charge, discharge, soc, allotment_frame, reserve)
    return Schedule(
        status=DispatchStatus.BASELINE,
        grid=problem.grid,
        plan=plan,
        relays=relays,
        allotment_kw=allotment_frame,
        reasons=explain(problem, relays, allotment_frame),
        violations_kwh=violations_kwh(problem, plan, soc, allotment_frame),
        household_groups=tuple(g.id for g in problem.households),
    )


def _unit_ids(problem: DispatchProblem) -> list[str]:
    return (
        [p.id for p in problem.priority]
        + [g.id for g in problem.households]
        + [b.id for b in problem.businesses]
    )
