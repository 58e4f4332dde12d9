"""Planners at scale: Monte Carlo on a local Dask cluster vs the process pool, and a fleet.

- **Monte Carlo**: ``--runs`` runs × ``--days`` days of the bundled ``seeds_year``
  scenario (``--policy``) on a process pool of 2 and on a Dask LocalCluster of 2
  single-threaded workers (startup included); the KPIs of both must be identical
  (the ``seconds`` timing KPI aside). Prints the median wall time of ``--repeats`` and
  the Dask / pool ratio. The issue's size is 100 runs × 365 days.
- **fleet**: ``--fleet-sites`` sites derived from ``seeds_year`` (each its own equipment,
  weather and community), ``--fleet-days`` days, one run each, on the Dask cluster;
  prints its wall time and the fleet KPIs (``--fleet-sites 0`` skips it).

The box the figures come from is shared: the load average is printed before and after
each measurement, and the pool's CPU seconds per run-year (summed over the runs' own
``seconds``, which are wall times inside a worker) give a figure less sensitive to it.

Run: python benchmarks/bench_planners.py [--runs 100] [--days 365] [--repeats 3]
     [--policy proportional] [--fleet-sites 100] [--fleet-days 7]
(``--runs 0``: the fleet only; ``--fleet-sites 0``: the Monte Carlo only.)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from scenarios import Scenario, bundled_scenario, with_parameter
from scenarios.fleet import fleet_scenarios, run_fleet
from scenarios.kpis import run_kpis
from scenarios.montecarlo import map_runs

WORKERS = 2


def scenario_of(days: int, policy: str) -> Scenario:
    """``seeds_year`` for ``days`` with ``policy``, its MILP never stopped by the clock.

    The scenario's 1 s MILP time limit makes a plan depend on how busy the machine is
    (a limit hit on a loaded core returns another incumbent): two runs of the same seed
    could then differ on any backend. Without it HiGHS (one thread) is deterministic.
    """
    scenario = with_parameter(bundled_scenario("seeds_year"), "horizon.days", days)
    scenario = with_parameter(scenario, "policy.time_limit_s", 600.0)
    return with_parameter(scenario, "policy.dispatch", policy)


def monte_carlo(
    runs: int, days: int, policy: str, backend: str
) -> tuple[float, float, dict[int, dict[str, float]]]:
    """Wall time [s], the runs' summed own seconds [s] and each run's KPIs but ``seconds``."""
    scenario = scenario_of(days, policy)
    jobs = [(scenario, r) for r in range(runs)]
    begin = time.perf_counter()
    kpis = dict(map_runs(jobs, run_kpis, WORKERS, backend))  # type: ignore[arg-type]
    seconds = time.perf_counter() - begin
    run_seconds = sum(k["seconds"] for k in kpis.values())
    return (
        seconds,
        run_seconds,
        {k: {m: v for m, v in kpis[k].items() if m != "seconds"} for k in kpis},
    )


def load() -> str:
    """The 1, 5 and 15 min load averages, for judging a figure from a shared box."""
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policy", default="proportional", choices=("proportional", "milp"))
    parser.add_argument("--fleet-sites", type=int, default=100)
    parser.add_argument("--fleet-days", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    times: dict[str, list[float]] = {"processes": [], "dask": []}
    run_times: dict[str, list[float]] = {"processes": [], "dask": []}
    reference = None
    for repeat in range(args.repeats if args.runs > 0 else 0):  # --runs 0: the fleet only
        for backend in ("processes", "dask"):
            before = load()
            seconds, run_seconds, kpis = monte_carlo(args.runs, args.days, args.policy, backend)
            print(
                f"  repeat {repeat + 1} {backend}: {seconds:.1f} s wall, runs' own "
                f"{run_seconds:.1f} s ({before}; after: {load()})",
                flush=True,
            )
            times[backend].append(seconds)
            run_times[backend].append(run_seconds)
            if reference is None:
                reference = kpis
            differing = [
                (k, m)
                for k in reference
                for m, v in reference[k].items()
                if not (v == kpis[k][m] or (math.isnan(v) and math.isnan(kpis[k][m])))
            ]
            assert not differing, f"{backend}: KPIs differ from the first run's: {differing}"
    if args.runs > 0:
        monte_carlo_summary(args, times, run_times, len(reference or {}))
    if args.fleet_sites > 0:
        fleet(args)


def monte_carlo_summary(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    run_times: dict[str, list[float]],
    runs_compared: int,
) -> None:
    """Median wall times of both backends, their ratio and the per-run-day cost."""
    pool, dask = statistics.median(times["processes"]), statistics.median(times["dask"])
    print(
        f"Monte Carlo {args.runs} runs x {args.days} days ({args.policy}), {WORKERS} workers, "
        f"median of {args.repeats}:"
    )
    print(f"  process pool:              {pool:8.1f} s")
    print(f"  Dask LocalCluster:         {dask:8.1f} s (cluster startup included)")
    print(f"  Dask / pool:               {dask / pool:8.2f}")
    print(f"  KPIs identical on both backends and every repeat: yes ({runs_compared} runs)")
    per_run_day = pool * WORKERS / (args.runs * args.days)
    own_per_run_day = statistics.median(run_times["processes"]) / (args.runs * args.days)
    print(
        f"  => {per_run_day:.3f} worker-s per run-day ({own_per_run_day:.3f} s inside the "
        f"runs); 100 runs x 365 days on {WORKERS} workers would take "
        f"~{per_run_day * 100 * 365 / WORKERS / 60:.0f} min on the pool at this load"
    )


def fleet(args: argparse.Namespace) -> None:
    """One run of a fleet of ``--fleet-sites`` sites on the Dask cluster, timed."""
    base = scenario_of(args.fleet_days, args.policy)
    sites = fleet_scenarios(base, args.fleet_sites, seed=0)
    begin = time.perf_counter()
    result = run_fleet(sites, workers=WORKERS, backend="dask")
    seconds = time.perf_counter() - begin
    totals = result.fleet.iloc[0]
    print(
        f"fleet of {args.fleet_sites} sites x {args.fleet_days} days ({args.policy}) on Dask, "
        f"{WORKERS} workers: {seconds:.1f} s; household served "
        f"{totals['household_served_fraction']:.3f} (worst site "
        f"{totals['worst_site_household_served_fraction']:.3f}), unserved priority "
        f"{totals['unserved_priority_kwh']:.1f} kWh at {totals['sites_unserved_priority']:.0f} "
        f"sites, curtailed {totals['curtailed_kwh']:.0f} kWh"
    )


if __name__ == "__main__":
    main()
