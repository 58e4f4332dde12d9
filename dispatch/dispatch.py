"""One dispatch, end to end: build the MILP, solve it, read the schedule, or fall back."""

from __future__ import annotations

import time
from dataclasses import replace

import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC

from dispatch.baselines import proportional_rule
from dispatch.model import build_model
from dispatch.problem import DispatchProblem, SolverSettings
from dispatch.schedule import DispatchStatus, Schedule, extract_schedule
from dispatch.solve import SolverStatus, solve_model

__all__ = ["solve_dispatch"]


def solve_dispatch(
    problem: DispatchProblem,
    settings: SolverSettings | None = None,
    warm_start: Schedule | None = None,
) -> Schedule:
    """Dispatch the site: the tiered MILP, or the proportional rule if the solver fails.

    Parameters
    ----------
    problem : DispatchProblem
        Forecasts, measured state and policy.
    settings : SolverSettings, optional
        Time limit and gaps.
    warm_start : Schedule, optional
        The previous plan; its relay states for the periods both plans share become a
        MIP start.

    Returns
    -------
    Schedule
        Never raises for a hard case: violations are priced and reported, and a solver
        failure yields the rule-based plan with status ``fallback``.
    """
    settings = settings or SolverSettings()
    # Pyomo allocates tens of thousands of small objects; the cyclic garbage collector
    # would walk them all several times over (half the build time) and finds nothing.
    with PauseGC():
        return _solve(problem, settings, warm_start)


def _solve(
    problem: DispatchProblem, settings: SolverSettings, warm_start: Schedule | None
) -> Schedule:
    begin = time.perf_counter()
    model, data = build_model(problem)
    built = time.perf_counter()
    start = _relay_start(model, problem, data.periods_per_block, warm_start)
    outcome = solve_model(model, settings, start)
    solved = time.perf_counter()
    timing: dict[str, float | str] = {
        "build_s": built - begin,
        "compile_s": outcome.compile_s,
        "highs_s": outcome.highs_s,
        "load_s": outcome.load_s,
        "objective": outcome.objective,
        "mip_gap": outcome.mip_gap,
        "highs_status": outcome.highs_status,
    }
    if not outcome.has_solution:
        timing["total_s"] = time.perf_counter() - begin
        return replace(proportional_rule(problem), status=DispatchStatus.FALLBACK, solver=timing)
    status = (
        DispatchStatus.OPTIMAL
        if outcome.status == SolverStatus.OPTIMAL
        else DispatchStatus.TIME_LIMIT
    )
    schedule = extract_schedule(model, problem, data, status, timing)
    timing["extract_s"] = time.perf_counter() - solved
    timing["total_s"] = time.perf_counter() - begin
    return schedule


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
