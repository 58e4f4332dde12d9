"""Monte Carlo runs and cartesian sweeps, on several processes.

Each run is independent and seeded (``seeds.base + run``), so the results do not depend
on how runs are spread over processes. We use the standard library's
:class:`concurrent.futures.ProcessPoolExecutor` (spawn context, so HiGHS and SQLite
state are never forked): a year-long run is tens of seconds, far above any scheduling
overhead, and no dependency is needed for two cores. DESIGN.md §8's Dask is the next
step for sweeps across machines.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from scenarios.config import Scenario, with_parameter
from scenarios.engine import RunResult, run_scenario

__all__ = ["Batch", "parse_param", "run_many", "sweep_scenarios"]


@dataclass(frozen=True)
class Batch:
    """Results of many runs.

    Attributes
    ----------
    results : list of RunResult
        In run order.
    parameters : dict of int to dict
        Each run's sweep parameters (empty for plain Monte Carlo).
    """

    results: list[RunResult]
    parameters: dict[int, dict[str, object]]


def parse_param(text: str) -> tuple[str, list[object]]:
    """``NAME=V1,V2,…`` → (name, values as numbers where they are numbers).

    Examples
    --------
    >>> parse_param("equipment.pv_kwp=22,33,44")
    ('equipment.pv_kwp', [22, 33, 44])
    >>> parse_param("policy.dispatch=milp,proportional")
    ('policy.dispatch', ['milp', 'proportional'])
    """
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        msg = f"--param needs NAME=V1,V2,…, got {text!r}"
        raise ValueError(msg)
    parsed: list[object] = []
    for raw in values.split(","):
        item = raw.strip()
        for cast in (int, float):
            try:
                parsed.append(cast(item))
                break
            except ValueError:
                continue
        else:
            lowered = item.lower()
            parsed.append({"true": True, "false": False}.get(lowered, item))
    return name.strip(), parsed


def _job(scenario: Scenario, run: int) -> RunResult:
    return run_scenario(scenario, run)


def run_many(
    jobs: Sequence[tuple[Scenario, int]],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Run ``(scenario, run)`` jobs on ``workers`` processes (all cores by default).

    Results come back in job order; each is identical to running it alone.
    """
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        out = []
        for scenario, run in jobs:
            out.append(run_scenario(scenario, run, progress))
        return out
    results: dict[int, RunResult] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_job, s, r): k for k, (s, r) in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                scenario = jobs[futures[future]][0]
                progress(scenario.horizon.days)
    return [results[k] for k in range(len(jobs))]


def sweep_scenarios(
    scenario: Scenario, params: Mapping[str, Sequence[object]]
) -> list[tuple[Scenario, int, dict[str, object]]]:
    """The cartesian product of parameter values × Monte Carlo runs.

    Returns ``(scenario, run, parameters)`` with runs numbered across the whole sweep;
    every combination uses the same seeds (common random numbers), so differences between
    combinations are the parameters', not the dice's.
    """
    names = list(params)
    out: list[tuple[Scenario, int, dict[str, object]]] = []
    for values in itertools.product(*(params[n] for n in names)):
        varied = scenario
        for name, value in zip(names, values, strict=True):
            varied = with_parameter(varied, name, value)
        for run in range(scenario.seeds.runs):
            out.append((varied, run, dict(zip(names, values, strict=True))))
    return out
