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

from dispatch.problem import DispatchProblem, firm_demand_kw
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


def proportional_rule(problem: DispatchProblem, *, reasons: bool = True) -> Schedule:
    """Dispatch by the seeds' rule, period by period.

    Order within each period: priority users from PV then battery; household groups from
    what remains (a whole relay block is shed, groups with most past shed hours last);
    contracted bands' lower edges (the contract tier, before the reserve whatever the
    site's tier order); the battery keeps the reserve requirement from businesses;
    businesses share the rest in proportion to stake, each taking at most its demand (a
    contracted one at most its band's upper edge) and nothing below its minimum power;
    what is left charges the battery, and the rest is curtailed.

    Parameters
    ----------
    problem : DispatchProblem
        What to dispatch.
    reasons : bool
        Explain every unit that is off or short (:func:`dispatch.schedule.explain`). A
        simulation that never reads the reasons passes False: explaining costs about
        as much as the rule itself, and the plan is the same either way.
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
    units = _unit_ids(problem)
    allotment_kw = np.zeros((len(units), n))
    group_on = np.ones((len(problem.households), n), dtype=bool)
    business_on = np.zeros((len(problem.businesses), n), dtype=bool)
    shed_so_far = np.array([g.shed_hours for g in problem.households], dtype=float)
    stakes = np.array([max(b.stake, 0) for b in problem.businesses], dtype=float)
    # The loop runs once per period over every unit: it reads plain floats from lists
    # and treats the businesses as arrays. Every operation, and the order of every sum,
    # is the scalar rule's, so the plan is bit for bit the same.
    first_group = len(problem.priority)
    first_business = first_group + len(problem.households)
    pv_kw = problem.pv_p50_kw.tolist()
    priority_kw = [p.demand_kw.tolist() for p in problem.priority]
    group_kw = [g.demand_kw.tolist() for g in problem.households]
    business_kw = np.array([b.demand_kw for b in problem.businesses], dtype=float).reshape(
        len(problem.businesses), n
    )
    business_max = np.array([b.power_kw_max for b in problem.businesses], dtype=float)
    business_min = np.array([b.power_kw_min for b in problem.businesses], dtype=float)
    credit = np.array([b.has_credit for b in problem.businesses], dtype=bool)
    reserve_kwh = reserve.tolist()
    total_stake = stakes.sum()
    # Contracted bands, as the MILP's contract tier: a band's lower edge is served after
    # the households and before the reserve, and the consumer's draw is capped at the
    # upper edge (firm_demand_kw). Without bands the rule is exactly the seeds'.
    bands = [problem.band_of(b.id) for b in problem.businesses]
    banded = any(band is not None for band in bands)
    firm = np.zeros(len(problem.businesses))
    if banded:
        business_kw = np.array(
            [firm_demand_kw(b, band) for b, band in zip(problem.businesses, bands, strict=True)]
        ).reshape(len(problem.businesses), n)
        band_lower = np.array(
            [np.zeros(n) if band is None else band.lower_kw for band in bands], dtype=float
        ).reshape(len(problem.businesses), n)
        band_lower = np.minimum(band_lower, np.minimum(business_kw, business_max[:, None]))

    for t in range(n):
        pv = max(float(pv_kw[t]), 0.0)
        battery_out = min(
            battery.power_kw_max,
            max(soc[t] - battery.soc_kwh_min, 0.0) * battery.discharge_efficiency / step,
        )
        available = pv + battery_out
        used = 0.0  # the allotments' sum, added in unit order as the scalar rule adds them
        for i, demand in enumerate(priority_kw):
            served = min(max(float(demand[t]), 0.0), available)
            allotment_kw[i, t] = served
            used += served
            available -= served
        if t % k == 0:
            # Decide the block's groups once, on this period's power, as a relay would.
            order = np.argsort(-shed_so_far, kind="stable")  # most shed → served first
            budget = available
            on = np.zeros(len(problem.households), dtype=bool)
            for g in order:
                need = float(group_kw[g][t])
                if need <= budget:
                    on[g] = True
                    budget -= need
            group_on[:, t : t + k] = on[:, None]
            shed_so_far += np.where(on, 0.0, problem.policy.relay_step_hours)
        for g, demand in enumerate(group_kw):
            served = min(float(demand[t]) * group_on[g, t], available)
            allotment_kw[first_group + g, t] = served
            used += served
            available -= served
        if banded:
            firm[:] = 0.0
            for b in np.flatnonzero(credit & (band_lower[:, t] > 0)).tolist():
                # To draw its lower edge it must run, so at least at its minimum power.
                running = min(float(business_min[b]), float(business_kw[b, t]), business_max[b])
                give = min(max(float(band_lower[b, t]), running), available)
                if give + 1e-9 < running or give <= 0:
                    continue
                firm[b] = give
                used += give
                available -= give
        # Businesses get PV left over and battery energy above the reserve only.
        upper_use = pv + battery_out - available
        battery_above_reserve = (
            max(soc[t] - reserve_kwh[t], 0.0) * battery.discharge_efficiency / step
        )
        from_battery_upper = max(upper_use - pv, 0.0)
        business_budget = max(pv - upper_use, 0.0) + max(
            min(battery_out, battery_above_reserve) - from_battery_upper, 0.0
        )
        business_budget = min(business_budget, available)
        if total_stake > 0 and len(stakes):
            share = business_budget * stakes / total_stake
            cap = np.minimum(business_kw[:, t], business_max)
            give = np.minimum(share, cap - firm) + firm  # firm is 0 without bands: exact
            given = credit & ~((give + 1e-9 < np.minimum(business_min, cap)) | (give <= 0))
            allotment_kw[first_business:, t] = np.where(given, give, 0.0)
            business_on[:, t] = given
            for value in (give - firm)[given].tolist():
                used += value
        elif banded:
            allotment_kw[first_business:, t] = firm
            business_on[:, t] = firm > 0
        if used <= pv:
            room = (battery.soc_kwh_max - soc[t]) / (battery.charge_efficiency * step)
            charge[t] = min(pv - used, battery.power_kw_max, max(room, 0.0))
            pv_used[t] = used + charge[t]
        else:
            pv_used[t] = pv
            discharge[t] = used - pv
        soc[t + 1] = soc[t] + step * (
            battery.charge_efficiency * charge[t] - discharge[t] / battery.discharge_efficiency
        )
    allotment = dict(zip(units, allotment_kw, strict=True))

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
        reasons=explain(problem, relays, allotment_frame) if reasons else _NO_REASONS.copy(),
        violations_kwh=violations_kwh(problem, plan, soc, allotment_frame),
        household_groups=tuple(g.id for g in problem.households),
    )


# What explain returns when nothing is off or short: its columns and dtypes, no rows.
_NO_REASONS = pd.DataFrame([], columns=["time", "unit", "tier", "reason"])
_NO_REASONS["reason"] = _NO_REASONS["reason"].astype(str)


def _unit_ids(problem: DispatchProblem) -> list[str]:
    return (
        [p.id for p in problem.priority]
        + [g.id for g in problem.households]
        + [b.id for b in problem.businesses]
    )
