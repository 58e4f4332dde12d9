"""Dispatch wall time with and without a band contract (the ``contract`` tier).

The default site, a few days spread over the year (synthetic weather), planned once
without contracts and once with a band on each of its three largest businesses (lower
edge half, upper edge all of its maximum power in its opening hours). Prints the median
wall time per plan of each, and the median grid's shortfall (``contract_short``).

Run: python benchmarks/bench_contract_tier.py [--days N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine
from bench_dispatch import days, problem_for

from dispatch import SolverSettings, solve_dispatch
from dispatch.problem import contract_band
from microgrid import TimeGrid, load_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    site = load_site()
    largest = sorted(
        (c for c in site.businesses if c.business is not None),
        key=lambda c: -c.business.power_kw_max,  # type: ignore[union-attr]
    )[:3]
    settings = SolverSettings(time_limit_s=10.0)
    times: dict[str, list[float]] = {"without": [], "with": []}
    short: list[float] = []
    for date, seed in days(args.days):
        grid = TimeGrid.from_days(date, 1, site.location.timezone)
        problem = problem_for(site, grid, seed)
        local_hours = grid.index.tz_convert(site.location.timezone).hour
        bands = []
        for c in largest:
            b = c.business
            assert b is not None
            open_ = [b.opening_hour <= h < b.closing_hour for h in local_hours]
            per_period = [(b.power_kw_max / 2, b.power_kw_max) if o else None for o in open_]
            bands.append(contract_band(f"band-{c.id}", c.id, per_period, 0.0))
        for label, p in (("without", problem), ("with", replace(problem, contracts=tuple(bands)))):
            schedule = solve_dispatch(p, settings)
            assert schedule.solver is not None
            times[label].append(schedule.solver.total_s)
            if label == "with":
                short.append(schedule.violations_kwh.get("contract_short", 0.0))
    for label, values in times.items():
        print(f"  {label} contracts: {len(values)} plans, median {statistics.median(values):.2f} s")
    print(f"  median contract_short with contracts: {statistics.median(short):.2f} kWh")


if __name__ == "__main__":
    main()
