"""One dispatch, end to end: check, build, solve the tiers in order, polish, read — or fall back.

The tiers are solved lexicographically (DESIGN.md §5): each tier's optimum, within an
absolute tolerance in its own units, is fixed before the next is solved, so no lower
tier can buy anything from a higher one — not even where a household group's all-or-
nothing relay makes a weighted single objective trade priority kWh for a whole block.
A tier with relays starts from its relaxed plan packed into whole relays; over several
days that start is improved one day at a time before branch and bound proves the tier.
Then the binaries are fixed and the same stages run again as LPs (the polish): the
delivered plan is exactly tier-ordered and work-conserving for its relay decisions,
whatever gap the MILP stages stopped at.

Everything runs against one wall-clock deadline (the earlier of the settings' time limit
and the caller's deadline): a stage cut short keeps the best plan found, later stages
are skipped, and without any plan the proportional rule is returned as ``fallback``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace

import numpy as np
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC

from dispatch.baselines import proportional_rule
from dispatch.model import (
    BUSINESS_LEVEL,
    CONSERVATION,
    TIER_TOLERANCE_KWH,
    ModelData,
    build_model,
    column_blocks,
    community_value,
    household_demand_kw,
    tier_binaries,
    tier_tolerance,
    valued_businesses,
)
from dispatch.problem import (
    DispatchProblem,
    ProblemError,
    SolverSettings,
    business_weights,
    check_problem,
    check_settings,
)
from dispatch.schedule import (
    AUXILIARY_STAGES,
    DispatchStatus,
    Schedule,
    SolverReport,
    SolverStatus,
    StageReport,
    extract_schedule,
)
from dispatch.solve import INTERRUPT_GRACE_S, LexicographicSolver

__all__ = ["FINISH_RESERVE_S", "MIN_TIME_LIMIT_S", "POLISH_RESERVE_S", "solve_dispatch"]

FINISH_RESERVE_S = 0.5
"""Wall time kept before the deadline for reading the schedule or building the rule plan
[s]: 0.1 s on the default site (96 periods, 400 connections) on an idle machine, 0.3 s
measured while the shared 2-core machine was busy."""

POLISH_RESERVE_S = 0.2
"""Wall time kept for the polishing LPs [s]; they take ≈ 0.05 s on the default site."""

NOTHING_FOR_BUSINESSES_KWH = 1e-3
"""A relaxed business level at most this is nothing to give [kWh] (1 Wh: a meter's step)."""

MIN_TIME_LIMIT_S = FINISH_RESERVE_S + INTERRUPT_GRACE_S + POLISH_RESERVE_S + 0.3
"""Smallest ``time_limit_s`` a solve accepts [s]: the reserves above plus 0.3 s for the
MILP. Below it every plan would silently be the rule plan (a 1 s planner limit did exactly
that), so it is refused instead; a tight *deadline* still falls back, as it must live."""

STAGE_SHARE = 2.0
"""A MILP stage may use ``STAGE_SHARE / (stages left + 1)`` of the time left (40 % with
four stages left, all of it for the last): a hard tier cut short keeps its best plan
and fixes that, instead of starving the tiers after it."""

POLISH_TOLERANCE = 1e-7
"""Slack a polished tier is fixed with, in its own units: the LP optimum itself, within
HiGHS's primal feasibility tolerance (1e-7)."""

RELEVEL_RATIO = 1.6
"""The model is rebuilt with fair-share layers centred on what the upper tiers leave
when that differs from the first estimate by more than this factor (one coarse layer)."""


def solve_dispatch(
    problem: DispatchProblem,
    settings: SolverSettings | None = None,
    warm_start: Schedule | None = None,
    deadline: dt.datetime | None = None,
) -> Schedule:
    """Dispatch the site: the tiered MILP, polished, or the proportional rule.

    Parameters
    ----------
    problem : DispatchProblem
        Forecasts, measured state and policy; checked by
        :func:`dispatch.problem.check_problem` first.
    settings : SolverSettings, optional
        Time limit (the whole dispatch's budget) and threads.
    warm_start : Schedule, optional
        The previous plan; its relay states for the periods both plans share become a
        MIP start.
    deadline : datetime.datetime, optional
        Timezone-aware wall-clock time by which the plan must be returned; the earlier
        of it and ``settings.time_limit_s`` from now applies.

    Returns
    -------
    Schedule
        ``optimal`` when every tier was proven within its tolerance, ``time_limit`` for
        the best plan found when the deadline struck, ``fallback`` for the rule's plan
        when none was found; ``schedule.solver`` says what happened per tier.

    Raises
    ------
    ProblemError
        For inputs that cannot be planned with (named unit and field); never for a
        hard or infeasible case.
    """
    settings = settings or SolverSettings()
    check_problem(problem)
    check_settings(settings)
    if settings.time_limit_s < MIN_TIME_LIMIT_S:
        msg = (
            f"must be at least {MIN_TIME_LIMIT_S:g} s (the deadline's reserves for stopping "
            f"HiGHS, polishing and the rule plan), got {settings.time_limit_s:g}"
        )
        raise ProblemError(msg, unit="settings", field="time_limit_s")
    begin = time.monotonic()
    finish_by = begin + settings.time_limit_s
    if deadline is not None:
        if deadline.tzinfo is None:
            msg = "must be timezone-aware (e.g. datetime.now(UTC) + timedelta(seconds=10))"
            raise ProblemError(msg, unit="settings", field="deadline")
        left = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
        finish_by = min(finish_by, begin + left)
    # Pyomo allocates tens of thousands of small objects; the cyclic garbage collector
    # would walk them all several times over (half the build time) and finds nothing.
    with PauseGC():
        return _solve(problem, settings, warm_start, begin, finish_by)


def _solve(
    problem: DispatchProblem,
    settings: SolverSettings,
    warm_start: Schedule | None,
    begin: float,
    finish_by: float,
) -> Schedule:
    # A run is interrupted at its deadline and waited for up to INTERRUPT_GRACE_S more.
    polish_by = finish_by - FINISH_RESERVE_S - INTERRUPT_GRACE_S
    mip_by = polish_by - POLISH_RESERVE_S
    stages: list[StageReport] = []
    build_s = compile_s = highs_s = 0.0

    def fallback(note: str, status: SolverStatus, highs_s: float = 0.0) -> Schedule:
        report = SolverReport(
            status=status,
            stages=tuple(stages),
            build_s=build_s,
            compile_s=compile_s,
            highs_s=highs_s,
            total_s=time.monotonic() - begin,
            deadline_hit=time.monotonic() >= mip_by,
            note=note,
        )
        rule = proportional_rule(problem)
        return replace(rule, status=DispatchStatus.FALLBACK, solver=report)

    if time.monotonic() >= mip_by:
        return fallback("no time left for the MILP before the deadline", SolverStatus.NO_SOLUTION)
    built = time.monotonic()
    model, data = build_model(problem)
    build_s += time.monotonic() - built
    solver = LexicographicSolver(model, settings, mip_by)
    compile_s += solver.compile_s
    solver.start(_relay_start(model, problem, data.periods_per_block, warm_start))

    cut_short = False
    sequence = (*problem.policy.tier_order, CONSERVATION)
    mip_left = [t for t in sequence if tier_binaries(model, problem, t)]
    for tier in sequence:
        # The tiers after this one keep their units off while it is solved: its optimum
        # is the same (tier_binaries), HiGHS branches on this tier's relays only, and a
        # tier without relays of its own is a plain LP with an integral solution.
        later = sequence[sequence.index(tier) + 1 :]
        solver.unpin()
        solver.pin_off([v for t in later for v in tier_binaries(model, problem, t)])
        if tier == "business":
            solver.deadline = mip_by
            level = solver.solve(BUSINESS_LEVEL, tier_tolerance(tier, data), relax=True, fix=False)
            stages.append(replace(level, name=f"level:{BUSINESS_LEVEL}"))
            if solver.abandoned or solver.solution is None or not np.isfinite(level.value):
                cut_short = True
                break
            level_kwh = max(-level.value, 0.0)
            if level_kwh <= NOTHING_FOR_BUSINESSES_KWH:
                # Even relaxed, the businesses could get nothing: the stage is proven by
                # that bound. (Not below the tier's 0.1 kWh tolerance: a business that
                # could take 0.06 kWh of PV that is otherwise curtailed was left off, and
                # the polish, relays fixed, could not give it back. The packed plan below
                # switches it on and is still proven without branching.)
                incumbent = solver.value_of(tier, solver.solution)
                solver.fix_value(tier, incumbent, tier_tolerance(tier, data))
                solver.fix_integers(tier_binaries(model, problem, tier))
                stages.append(replace(level, name=tier, value=incumbent, bound=incumbent))
                continue
            ratio = max(level_kwh, 1e-3) / data.business_level_kwh
            # Community value has no fair-share layers to centre: nothing to rebuild.
            if not community_value(problem) and not 1 / RELEVEL_RATIO <= ratio <= RELEVEL_RATIO:
                built = time.monotonic()
                model, data, solver = _relevel(problem, settings, solver, level_kwh, mip_by)
                build_s += time.monotonic() - built - solver.compile_s
                compile_s += solver.compile_s
                solver.pin_off([v for t in later for v in tier_binaries(model, problem, t)])
        binaries = tier_binaries(model, problem, tier)
        tolerance = tier_tolerance(tier, data)
        if not binaries and tolerance <= TIER_TOLERANCE_KWH:
            # A 1 Wh tier without relays of its own is an LP: fix it at its optimum.
            # Within its 1 Wh a lower tier's relays could take that Wh, and the polish,
            # relays fixed, cannot give it back: on the week at 1 h the households kept
            # 1.8 Wh of the clinic's energy (the SoC window's Wh and the priority
            # tier's). The block tiers' 0.1 kWh stays: with the reserve exact, a
            # business's minimum power could not run on the surplus that charges it.
            tolerance = POLISH_TOLERANCE
        left = max(mip_by - time.monotonic(), 0.0)
        share = STAGE_SHARE / (len(mip_left) + 1) if binaries else 1.0
        solver.deadline = time.monotonic() + left * min(share, 1.0)
        if binaries:
            mip_left.remove(tier)
            if solver.solution is None and warm_start is None:
                solver.plan_pinned()
            # The relaxed optimum bounds the tier; its relays, rounded (or, if that plan
            # is infeasible, rounded down), give a plan that is often within the
            # tolerance of it: then branch and bound, whose root alone takes seconds
            # here, has nothing to find. Otherwise that plan is its start.
            bound = solver.solve(tier, tolerance, relax=True, fix=False)
            relaxed = solver.relaxed
            if bound.status is SolverStatus.OPTIMAL and relaxed is not None:
                # Packing (business relays) keeps what rounding down keeps and more, and
                # rounding up rarely fits: try it first, the two roundings only without it.
                packed = [
                    _packed_relays(model, problem, data, solver, tier, relaxed),
                    _packed_groups(model, problem, data, solver, tier, relaxed, joint=True),
                    _packed_groups(model, problem, data, solver, tier, relaxed, joint=False),
                ]
                # Try every one: each replaces the plan in hand only if it is better.
                tried = [solver.plan_pinned(tier, p) for p in packed if p is not None]
                taken = any(tried)
                if not taken and not solver.plan_pinned(tier, np.round(relaxed)):
                    solver.plan_pinned(tier, np.floor(relaxed + 1e-6))
                if solver.solution is not None and solver.own_solution:
                    incumbent = solver.value_of(tier, solver.solution)
                    if incumbent - bound.value > tolerance and tier in WINDOW_TIERS:
                        # Over several days, improve the start one day at a time first.
                        by_days = _improve_by_days(model, problem, data, solver, bound, relaxed)
                        stages.extend(by_days)
                        if solver.abandoned:
                            cut_short = True
                            break
                        incumbent = solver.value_of(tier, solver.solution)
                    if incumbent - bound.value <= tolerance:
                        solver.fix_value(tier, incumbent, tolerance)
                        solver.fix_integers(binaries)
                        stages.append(replace(bound, value=incumbent, bound=bound.value))
                        continue
        # Without binaries of its own the tier's relaxation is exact (tier_binaries).
        report = solver.solve(tier, tolerance, relax=not binaries)
        stages.append(report)
        if solver.abandoned or report.status not in (SolverStatus.OPTIMAL, SolverStatus.TIME_LIMIT):
            cut_short = True
            break
        # Decided: the tier's relays stay as they are for every tier after it.
        solver.fix_integers(binaries)
    solver.unpin()
    highs_s += solver.highs_s
    if solver.solution is None:
        worst = stages[-1].status if stages else SolverStatus.NO_SOLUTION
        return fallback("no plan found before the deadline", worst, highs_s)

    # Polish: binaries fixed, every stage again as an LP; exact whatever the MIP gap.
    unpolished = solver.solution.copy()
    polished = False
    if not solver.abandoned:
        before = solver.highs_s
        solver.deadline = polish_by
        solver.fix_integers()
        # The MILP stages' rows carry their tolerances; a lower tier may have used a
        # higher one's. With the relays fixed, every tier is fixed again, exactly.
        solver.release_values()
        polished = True
        for tier in (*problem.policy.tier_order, CONSERVATION):
            # An LP's optimum is exact: each tier is fixed at it, not within the MILP's
            # tolerance, so no lower tier can take back what the tolerance allowed.
            report = solver.solve(tier, POLISH_TOLERANCE)
            stages.append(replace(report, name=f"polish:{tier}"))
            if solver.abandoned or report.status is not SolverStatus.OPTIMAL:
                polished = False
                break
        highs_s += solver.highs_s - before
        if not polished:
            solver.solution = unpolished
    solver.load(model)

    mip_stages = [s for s in stages if not s.name.startswith(AUXILIARY_STAGES)]
    proven = all(s.status is SolverStatus.OPTIMAL for s in mip_stages) and not cut_short
    # A plan is in hand, so anything short of proven is a time limit (never "no solution").
    status = SolverStatus.OPTIMAL if proven else SolverStatus.TIME_LIMIT
    read = time.monotonic()
    schedule = extract_schedule(
        model,
        problem,
        data,
        DispatchStatus.OPTIMAL if status is SolverStatus.OPTIMAL else DispatchStatus.TIME_LIMIT,
        None,
    )
    now = time.monotonic()
    summary = SolverReport(
        status=status,
        stages=tuple(stages),
        polished=polished,
        build_s=build_s,
        compile_s=compile_s,
        highs_s=highs_s,
        extract_s=now - read,
        total_s=now - begin,
        deadline_hit=not proven,
        note="" if proven else "the deadline cut tiers short; the best plan found is kept",
    )
    return replace(schedule, solver=summary)


def _relevel(
    problem: DispatchProblem,
    settings: SolverSettings,
    solver: LexicographicSolver,
    level_kwh: float,
    deadline: float,
) -> tuple[pyo.ConcreteModel, ModelData, LexicographicSolver]:
    """Rebuild with the fair-share layers centred on ``level_kwh``; carry the solved tiers.

    The upper tiers' objectives do not involve the layers, so their accepted values
    stay valid and become rows at once; the upper tiers' solution is the MIP start.
    """
    model, data = build_model(problem, business_level_kwh=level_kwh)
    again = LexicographicSolver(model, settings, deadline)
    for tier, value in solver.values.items():
        again.fix_value(tier, value, solver.tolerances[tier])
    if solver.solution is not None:
        by_name = {var.name: x for var, x in zip(solver.columns, solver.solution, strict=True)}
        known = [(var, by_name[var.name]) for var in again.columns if var.name in by_name]
        again.start(known)
        # The upper tiers' plan (the new layer columns at 0) stays the plan to fall
        # back on if the business stage finds nothing in time; its decided relays stay.
        again.solution = np.array([by_name.get(var.name, 0.0) for var in again.columns])
        for tier in solver.values:
            again.fix_integers(tier_binaries(model, problem, tier))
    again.highs_s = solver.highs_s  # HiGHS's time is counted across the rebuild
    return model, data, again


WINDOW_TIME_SHARE = 0.5
"""Share of a stage's time the day windows may use; the rest is the proof's."""

WINDOW_TIERS = ("household", "business")
"""The tiers whose start is improved day by day, each day's window within one day's
tolerance (:func:`dispatch.model.tier_tolerance`). On the five weeks at 1 h of
``benchmarks/bench_dispatch.py --week`` the business windows took 0.2–0.9 s, and no
business tier needed branching after them; within a twentieth of a day's tolerance (the
share needed while a whole week was held to one day's tolerance) they took 0.2–2.0 s,
for plans whose polished business value was at most 0.19 greater. The households'
windows are knapsacks whose proofs are slow: within 5 Wh they took 3.1 s of a 48 h plan
(15 min, from 10:15 on 2026-07-02) whose household stage had taken 0.75 s, within a
day's 0.1 kWh 0.09 s of a 72 h plan."""


def _improve_by_days(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    data: ModelData,
    solver: LexicographicSolver,
    bound: StageReport,
    relaxed: np.ndarray,
) -> list[StageReport]:
    """Improve a tier's start day by day (:func:`_day_windows`); its report, if any ran.

    ``bound`` is the tier's relaxed stage: the report keeps its bound, with the improved
    start's value and the windows' time.
    """
    windows = _day_windows(model, problem, data, solver, relaxed)
    if not windows:
        return []
    before, now = solver.highs_s, time.monotonic()
    until = now + (solver.deadline - now) * WINDOW_TIME_SHARE
    tolerance = bound.tolerance / data.days_planned  # a window is one day
    solver.improve_in_windows(bound.name, windows, tolerance, until)
    assert solver.solution is not None  # the caller's plan in hand, or a better one
    value = solver.value_of(bound.name, solver.solution)
    ran = solver.highs_s - before
    name = f"windows:{bound.name}"
    return [replace(bound, name=name, value=value, iterations=0, nodes=0, highs_s=ran)]


def _day_windows(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    data: ModelData,
    solver: LexicographicSolver,
    relaxed: np.ndarray,
) -> list[np.ndarray]:
    """Columns of each local day holding a relay the relaxed plan left fractional.

    A plan over several days is improved one day at a time
    (:meth:`LexicographicSolver.improve_in_windows`): days meet at night, when few
    relays are open and the battery alone carries energy across. A day whose relays
    the relaxed plan decided is as good as the relaxed plan there already; a horizon of
    a day or less has no windows (its whole MIP is a window's size: the live service's
    rolling day, which crosses midnight, is solved as before).

    Returns
    -------
    list of numpy.ndarray
        Column indices per window, each with the columns spanning the horizon.
    """
    if data.days_planned <= 1.0:
        return []
    k = data.periods_per_block
    block_day = problem.grid.index[::k].normalize()
    blocks = column_blocks(model, solver.columns, k)
    fractional = solver.integer & (relaxed > PACK_SLACK) & (relaxed < 1.0 - PACK_SLACK)
    day_of = np.where(blocks >= 0, block_day.asi8[np.maximum(blocks, 0)], 0)
    windows = []
    for day in np.unique(block_day.asi8):
        inside = (blocks >= 0) & (day_of == day)
        if (fractional & inside).any():
            windows.append(np.flatnonzero(inside | (blocks < 0)))
    return windows


PACK_SLACK = 1e-6
"""A relaxed binary within this of 0 or 1 counts as decided when packing [-]."""


def _packed_relays(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    data: ModelData,
    solver: LexicographicSolver,
    tier: str,
    relaxed: np.ndarray,
) -> np.ndarray | None:
    """The relaxed plan's undecided business relays, packed block by block (a start).

    Rounding a relaxed plan drops (or cannot feed) the units it serves in part, about
    one marginal business per relay block: on the one-week-at-1-h benchmark the
    rounded plan was worth 51.95 value units against a relaxed bound of 62.35. Packing
    keeps the relaxed plan's battery and gives the power it hands to the undecided
    relays of a block to as many of them as their minimum power allows, the most
    valuable first (a knapsack's greedy); the pinned LP then re-optimises the powers:
    60.11 there, and on the default site's business days it lands within the tier's
    tolerance often enough to skip branch and bound (2026-12-20: stage 0.19 → 0.01 s).

    Returns
    -------
    numpy.ndarray or None
        A solution vector whose tier binaries are the packed relays (the others the
        relaxed plan rounded down); None for a tier without business relays.
    """
    if tier != "business" or not problem.businesses:
        return None
    value = (
        business_weights(problem.businesses, problem.policy.stake_weight)
        if community_value(problem)
        else np.array([float(b.stake) for b in problem.businesses])
    )
    pins = np.floor(relaxed + PACK_SLACK)
    floor, cap = data.business_floor_kw, data.business_cap_kw
    valued = valued_businesses(problem)
    order = sorted(valued, key=lambda b: -value[b])
    for h in model.H:
        on = solver.positions([model.business_on[b, h] for b in order])
        extra = solver.positions([model.business_extra[b, h] for b in order])
        undecided = [
            (b, i, j)
            for b, i, j in zip(order, on, extra, strict=True)
            if i >= 0 and relaxed[i] < 1.0 - PACK_SLACK
        ]
        budget = sum(floor[b, h] * relaxed[i] + relaxed[j] for b, i, j in undecided)
        for b, i, _ in undecided:
            if cap[b, h] > 0.0 and floor[b, h] <= budget + PACK_SLACK:
                pins[i] = 1.0
                budget -= min(cap[b, h], budget)
    return pins


PACK_RESOLUTION_WH = 0.1
"""Energy unit of the household knapsack [Wh]: each group's energy is rounded up to it,
so a chosen set of 40 block-groups may leave up to 4 Wh unused (0.04 value units in the
evening, under the tier's 0.1 tolerance); with 1 Wh units day 19 of the dispatch
benchmark left 38 Wh, and branch and bound had to close the gap."""


PACK_CELLS = 1e8
"""Largest knapsack table [cells, one bit each]: 12.5 MB and ≈ 0.2 s. The default site's
evening runs take up to ≈ 5e7 cells at 0.1 Wh; the 10× community's would take 1e10."""


def _packed_groups(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    data: ModelData,
    solver: LexicographicSolver,
    tier: str,
    relaxed: np.ndarray,
    *,
    joint: bool,
) -> np.ndarray | None:
    """Household groups chosen by a knapsack on the relaxed plan's energy (a start).

    The relaxed plan switches a group on in part where the household energy of a block
    is not a sum of whole groups; rounding it drops that group, and in an evening block
    (10× dearer) the energy left over is worth more than the tier's 0.1 tolerance. The
    knapsack chooses the set worth most at the tier's own prices (rotation, evening,
    time preference) whose energy, in units of :data:`PACK_RESOLUTION_WH`, fits in what
    the relaxed plan gave those groups. With ``joint`` its groups are those of every
    block the battery feeds on end around a block with a partial group (the battery
    moves energy freely between them); otherwise a block's own, which keeps each
    block's own supply. The pinned LP then checks the set against each period's supply
    and the battery's power.

    Returns
    -------
    numpy.ndarray or None
        A solution vector whose household relays are the chosen sets (the other
        binaries the relaxed plan rounded down); None for another tier or a relaxed
        plan without partial groups.
    """
    if tier != "household" or not problem.households:
        return None
    k = data.periods_per_block
    blocks = len(model.H)
    demand_wh = household_demand_kw(problem) * problem.step_hours * 1e3
    price = -solver.cost(tier)
    discharge = relaxed[solver.positions([model.battery_discharge[t] for t in model.T])]
    fed = [bool(np.all(discharge[h * k : (h + 1) * k] > PACK_SLACK)) for h in model.H]
    columns = np.array(
        [solver.positions([model.household_on[g, h] for g in model.G]) for h in model.H]
    )  # (blocks, groups)
    share = np.where(columns >= 0, relaxed[columns], 0.0)
    partial = (share > PACK_SLACK) & (share < 1.0 - PACK_SLACK) & (columns >= 0)
    pins = np.floor(relaxed + PACK_SLACK)
    packed = np.zeros(blocks, dtype=bool)
    for h in np.flatnonzero(partial.any(axis=1)).tolist():
        if packed[h]:
            continue
        first, last = h, h
        while joint and fed[h] and first > 0 and fed[first - 1]:
            first -= 1
        while joint and fed[h] and last < blocks - 1 and fed[last + 1]:
            last += 1
        run = range(first, last + 1)
        items = [(b, g) for b in run for g in np.flatnonzero(columns[b] >= 0).tolist()]
        energy = np.array([demand_wh[g, b * k : (b + 1) * k].sum() for b, g in items])
        at = np.array([columns[b, g] for b, g in items], dtype=np.int64)
        budget_wh = float(relaxed[at] @ energy)
        # Whole units, rounded up so the chosen set fits; coarser than
        # PACK_RESOLUTION_WH where the table would outgrow PACK_CELLS.
        unit_wh = max(PACK_RESOLUTION_WH, budget_wh * len(items) / PACK_CELLS)
        chosen = _knapsack(
            np.ceil(energy / unit_wh - PACK_SLACK).astype(int), price[at], budget_wh / unit_wh
        )
        pins[at] = chosen
        packed[first : last + 1] = True
    return pins if packed.any() else None


def _knapsack(weights: np.ndarray, values: np.ndarray, capacity: float) -> np.ndarray:
    """The 0/1 knapsack's best set (as 0/1 floats): ``weights`` whole units, dynamic programme.

    Which items improved each capacity is kept one bit per cell (``numpy.packbits``):
    the table of :data:`PACK_CELLS` cells takes an eighth of its size in bytes.
    """
    size = int(np.floor(capacity + PACK_SLACK))
    best = np.zeros(size + 1)
    took = np.zeros((weights.size, (size + 8) // 8), dtype=np.uint8)
    for i, (w, v) in enumerate(zip(weights.tolist(), values.tolist(), strict=True)):
        if w > size or v <= 0.0:
            continue
        with_item = np.concatenate((np.full(w, -np.inf), best[: size + 1 - w] + v))
        took[i] = np.packbits(with_item > best)
        np.maximum(best, with_item, out=best)
    chosen = np.zeros(weights.size)
    room = size
    for i in range(weights.size - 1, -1, -1):
        if took[i, room >> 3] >> (7 - (room & 7)) & 1:
            chosen[i] = 1.0
            room -= int(weights[i])
    return chosen


def _relay_start(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    periods_per_block: int,
    previous: Schedule | None,
) -> list[tuple[pyo.Var, float]]:
    """Relay binaries of the previous plan, for the blocks both plans cover."""
    if previous is None:
        return []
    start: list[tuple[pyo.Var, float]] = []
    relays = previous.relays
    block_starts = problem.grid.index[::periods_per_block]
    for h, moment in enumerate(block_starts):
        if moment not in relays.index:
            continue
        row = relays.loc[moment]
        for g, group in enumerate(problem.households):
            if group.id in row.index:
                start.append((model.household_on[g, h], float(bool(row[group.id]))))
        for b, business in enumerate(problem.businesses):
            if business.id in row.index:
                start.append((model.business_on[b, h], float(bool(row[business.id]))))
    return start
