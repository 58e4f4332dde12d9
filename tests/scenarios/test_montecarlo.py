"""Planners on Dask: the same results as the process pool, gathered as runs finish."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from scenarios.kpis import tidy, tidy_kpis
from scenarios.montecarlo import map_runs, run_many, tidy_runs


def _without_timing(kpis: pd.DataFrame) -> pd.DataFrame:
    return kpis[kpis["metric"] != "seconds"].reset_index(drop=True)


@pytest.fixture(scope="module")
def scheduler_address():
    """A separate Dask cluster, reached by its scheduler's address like a remote one."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


# Starting a Dask cluster (scheduler and two worker processes) takes seconds here.
@pytest.mark.slow
def test_dask_local_cluster_gives_the_process_pools_results(make_scenario):
    scenario = make_scenario(days=2)
    jobs = [(scenario, 0), (scenario, 1), (scenario, 2)]
    pooled = run_many(jobs, workers=2)
    on_dask = run_many(jobs, workers=2, backend="dask")
    for x, y in zip(pooled, on_dask, strict=True):
        pd.testing.assert_frame_equal(x.daily, y.daily)
        assert (x.run, x.seed, x.ledger) == (y.run, y.seed, y.ledger)


@pytest.mark.slow
def test_tidy_results_streamed_from_a_scheduler_equal_the_pools(
    make_scenario, scheduler_address, tmp_path
):
    scenario = make_scenario(days=2)
    jobs = [(scenario, 0), (scenario, 1), (scenario, 2)]
    pooled = run_many(jobs, workers=1)
    parameters = {k: {"variant": "a" if k % 2 else "b"} for k in range(3)}
    sink = tmp_path / "daily.parquet"
    daily, kpis = tidy_runs(jobs, parameters, sink, scheduler=scheduler_address)
    assert daily is None  # streamed, not held
    # Row groups arrive in completion order; within a run, rows keep their order.
    streamed = pd.read_parquet(sink).sort_values("run", kind="stable", ignore_index=True)
    expected = tidy(pooled, parameters)
    pd.testing.assert_frame_equal(
        streamed, expected.assign(date=expected["date"].astype(str)), check_dtype=False
    )
    pd.testing.assert_frame_equal(
        _without_timing(kpis), _without_timing(tidy_kpis(pooled, parameters))
    )
    held, _ = tidy_runs(jobs, parameters, scheduler=scheduler_address)
    pd.testing.assert_frame_equal(held, expected, check_dtype=False)


def test_map_runs_yields_each_job_once_as_it_finishes(make_scenario):
    scenario = make_scenario(days=1)
    jobs = [(scenario, r) for r in range(3)]
    days: list[int] = []
    seen = dict(map_runs(jobs, _seed_of, workers=1, progress=days.append))
    assert seen == {0: 1, 1: 2, 2: 3}  # seeds.base + run, base 1
    assert sum(days) == 3


def _seed_of(result) -> int:
    return result.seed


def test_unknown_backend_is_named(make_scenario):
    with pytest.raises(ValueError, match="backend must be one of processes, dask; got 'spark'"):
        list(map_runs([(make_scenario(days=1), 0)], _seed_of, backend="spark"))  # type: ignore[arg-type]
