"""Scenario engine: one simulated year of the default community, and a 2-core sweep.

- **year**: the bundled ``seeds_year`` scenario (default site, daily staking rounds,
  15-minute dispatch re-planned daily by the MILP at 1 % gap on one thread, η measured
  on every 14th day, daily settlement batches) — target ≤ 120 s on one core;
- the same year with the seeds' proportional rule, for η MILP vs proportional;
- **sweep**: 4 runs of 14 days on both cores vs one core.

Prints wall times (median of ``--repeats``), η, stake convergence and the step timings.

Run: python benchmarks/bench_scenarios.py [--repeats 1] [--days 365]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from scenarios import bundled_scenario, run_scenario, with_parameter
from scenarios.kpis import run_kpis
from scenarios.montecarlo import run_many


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    year = with_parameter(bundled_scenario("seeds_year"), "horizon.days", args.days)
    for policy in ("milp", "proportional"):
        scenario = with_parameter(year, "policy.dispatch", policy)
        times, result = [], None
        for _ in range(args.repeats):
            result = run_scenario(scenario)
            times.append(result.seconds)
        assert result is not None
        k = run_kpis(result)
        steps = ", ".join(f"{n} {s:.1f}" for n, s in result.timings.items())
        print(
            f"{policy:<13} {args.days} days: median {statistics.median(times):.1f} s ({steps}); "
            f"eta {k['eta']:.3f} on {k['eta_days']:.0f} days; rounds_to_settle "
            f"{k['rounds_to_settle']}; stake share on valuable "
            f"{k['stake_share_valuable_final']:.3f}; "
            f"household served {k['household_served_fraction']:.3f}; unserved priority "
            f"{k['unserved_priority_kwh']:.0f} kWh; business {k['business_kwh']:.0f} kWh; "
            f"ledger verified {k['ledger_verified']:.0f}; "
            f"planner retries {k['ledger_planner_retries']:.0f}"
        )
    short = with_parameter(year, "horizon.days", 14)
    jobs = [(short, r) for r in range(4)]
    for workers in (1, 2):
        begin = time.perf_counter()
        run_many(jobs, workers=workers)
        print(f"sweep 4 × 14 days on {workers} process(es): {time.perf_counter() - begin:.1f} s")


if __name__ == "__main__":
    main()
