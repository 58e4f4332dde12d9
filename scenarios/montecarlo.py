"""Monte Carlo runs and cartesian sweeps, on a process pool or a Dask cluster.

Each run is independent and seeded (``seeds.base + run``), so the results do not depend
on how runs are spread over processes or machines. Two backends run them:

- ``"processes"``: the standard library's :class:`concurrent.futures.ProcessPoolExecutor`
  (spawn context, so HiGHS and SQLite state are never forked), one machine;
- ``"dask"``: :mod:`dask.distributed` — a :class:`~dask.distributed.LocalCluster` of
  single-threaded worker processes on 127.0.0.1 by default, or the cluster of a
  scheduler address (``tcp://host:8786``) to spread runs over machines (DESIGN.md §8).

:func:`map_runs` hands each run's result to a ``summarise`` function *where the run ran*
and yields only its output, as runs finish: a year-long :class:`RunResult` never
crosses the network, and the caller never holds every run (:func:`tidy_runs` streams
the daily metrics to Parquet and keeps only the KPIs).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import pandas as pd

from scenarios.config import Scenario, with_parameter
from scenarios.engine import RunResult, run_scenario

__all__ = [
    "BACKENDS",
    "Backend",
    "Batch",
    "map_runs",
    "parse_param",
    "run_many",
    "sweep_scenarios",
    "tidy_runs",
]

T = TypeVar("T")
Backend = Literal["processes", "dask"]
BACKENDS: tuple[Backend, ...] = ("processes", "dask")


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


def _summarised(summarise: Callable[[RunResult], T], scenario: Scenario, run: int) -> T:
    return summarise(run_scenario(scenario, run))


def _identity(result: RunResult) -> RunResult:
    return result


def map_runs(
    jobs: Sequence[tuple[Scenario, int]],
    summarise: Callable[[RunResult], T],
    workers: int | None = None,
    backend: Backend = "processes",
    scheduler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, T]]:
    """Run ``(scenario, run)`` jobs and yield ``(job index, summarise(result))`` as they finish.

    Parameters
    ----------
    jobs : sequence of (Scenario, int)
        What to run; each result is identical to running it alone, on any backend.
    summarise : callable
        Applied to each result where it was computed (a module-level function, so it
        pickles); only its output comes back.
    workers : int, optional
        Processes (``"processes"``) or LocalCluster workers (``"dask"``); all cores by
        default. Ignored with ``scheduler``, whose cluster has its own workers.
    backend : {"processes", "dask"}
        Module docstring.
    scheduler : str, optional
        A Dask scheduler address; implies ``backend="dask"``.
    progress : callable, optional
        Called with each finished job's simulated days.

    Raises
    ------
    ValueError
        For an unknown backend.
    """
    if backend not in BACKENDS:
        msg = f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}"
        raise ValueError(msg)
    if not jobs:
        return
    if scheduler is not None or backend == "dask":
        yield from _map_dask(jobs, summarise, workers, scheduler, progress)
        return
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        for k, (scenario, run) in enumerate(jobs):
            yield k, summarise(run_scenario(scenario, run, progress))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_summarised, summarise, s, r): k for k, (s, r) in enumerate(jobs)}
        for future in as_completed(futures):
            k = futures.pop(future)
            if progress is not None:
                progress(jobs[k][0].horizon.days)
            yield k, future.result()


def _map_dask(
    jobs: Sequence[tuple[Scenario, int]],
    summarise: Callable[[RunResult], T],
    workers: int | None,
    scheduler: str | None,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[int, T]]:
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # One single-threaded process per worker (the MILP runs on one thread and
            # Pyomo is not thread-safe); loopback only, no dashboard port to collide on.
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=min(workers or os.cpu_count() or 1, len(jobs)),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler, timeout="10s"))
        futures = {
            client.submit(_summarised, summarise, s, r, pure=False): k
            for k, (s, r) in enumerate(jobs)
        }
        for future in dask_completed(list(futures)):
            k = futures.pop(future)
            value = future.result()
            future.release()  # the cluster forgets the result as soon as we have it
            if progress is not None:
                progress(jobs[k][0].horizon.days)
            yield k, value


def run_many(
    jobs: Sequence[tuple[Scenario, int]],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: Backend = "processes",
    scheduler: str | None = None,
) -> list[RunResult]:
    """Run ``(scenario, run)`` jobs on ``workers`` processes (all cores by default).

    Results come back in job order; each is identical to running it alone. See
    :func:`map_runs` for the backends, and for not holding every result.
    """
    results = dict(map_runs(jobs, _identity, workers, backend, scheduler, progress))
    return [results[k] for k in range(len(jobs))]


def _tidy_pieces(result: RunResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scenarios.kpis import tidy, tidy_kpis

    return tidy([result]), tidy_kpis([result])


def tidy_runs(
    jobs: Sequence[tuple[Scenario, int]],
    parameters: Mapping[int, Mapping[str, object]] | None = None,
    daily_parquet: Path | None = None,
    workers: int | None = None,
    backend: Backend = "processes",
    scheduler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Tidy daily metrics and KPIs of many runs, gathered as runs finish.

    Job ``k`` is reported as run ``k`` (with ``parameters[k]`` as columns), as
    :func:`scenarios.kpis.tidy` and :func:`~scenarios.kpis.tidy_kpis` do.

    Parameters
    ----------
    daily_parquet : Path, optional
        Stream the daily metrics there, one row group per run in the order runs finish
        (sort by ``run`` when reading), and return None for them: memory then holds one
        run's days at a time, not every run's.

    Returns
    -------
    daily : pandas.DataFrame or None
        ``run, seed, parameters…, day, date, metric, value``, by run then day.
    kpis : pandas.DataFrame
        ``run, seed, parameters…, metric, value``, by run.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parameters = parameters or {}
    daily_parts: dict[int, pd.DataFrame] = {}
    kpi_parts: dict[int, pd.DataFrame] = {}
    with contextlib.ExitStack() as stack:
        writer: pq.ParquetWriter | None = None
        for k, (daily, kpis) in map_runs(jobs, _tidy_pieces, workers, backend, scheduler, progress):
            daily = _as_run(daily, k, parameters.get(k, {}), after_seed=False)
            kpi_parts[k] = _as_run(kpis, k, parameters.get(k, {}), after_seed=True)
            if daily_parquet is None:
                daily_parts[k] = daily
                continue
            table = pa.Table.from_pandas(
                daily.assign(date=daily["date"].astype(str)), preserve_index=False
            )
            if writer is None:
                writer = stack.enter_context(pq.ParquetWriter(daily_parquet, table.schema))
            writer.write_table(table)
    kpis_all = pd.concat([kpi_parts[k] for k in sorted(kpi_parts)], ignore_index=True)
    if daily_parquet is not None:
        return None, kpis_all
    return pd.concat([daily_parts[k] for k in sorted(daily_parts)], ignore_index=True), kpis_all


def _as_run(
    frame: pd.DataFrame, run: int, parameters: Mapping[str, object], after_seed: bool
) -> pd.DataFrame:
    """A one-run tidy frame renumbered as job ``run``, with its sweep parameters.

    They go where :func:`~scenarios.kpis.tidy` (last) or ``tidy_kpis`` (after ``seed``)
    puts them, so the frames equal theirs.
    """
    frame = frame.assign(run=run)
    at = list(frame.columns).index("seed") + 1 if after_seed else len(frame.columns)
    for offset, (name, value) in enumerate(parameters.items()):
        # tidy() stores parameters as objects; tidy_kpis() lets pandas infer their dtype.
        column = pd.Series(
            [value] * len(frame), index=frame.index, dtype=None if after_seed else object
        )
        frame.insert(at + offset, name, column)
    return frame


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
