"""Dispatch timings: the default site at 96 × 15 min, and the share of modelling overhead.

Prints medians of several runs: build (Pyomo), hand-over (standard form → highspy),
HiGHS's own run time as HiGHS reports it, extraction, and the total; the overhead ratio
is everything but HiGHS divided by HiGHS.

Run: python benchmarks/bench_dispatch.py [--repeats N] [--scale K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from dispatch import SolverSettings, problem_from_site, solve_dispatch
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import TimeGrid, load_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--date", default="2026-03-20", help="local day to dispatch")
    args = parser.parse_args()
    site = load_site()
    grid = TimeGrid.from_days(args.date, 1, site.location.timezone)
    forecast = forecast_site(site, grid, synthetic_weather(grid.index, site.location, seed=3))
    demand = {c: forecast.demand_kw[c].to_numpy() for c in forecast.demand_kw.columns}
    problem = problem_from_site(
        site,
        grid,
        forecast.pv_kw["p50"].to_numpy(),
        forecast.pv_kw["p10"].to_numpy(),
        demand,
        soc_kwh=30.0,
    )
    settings = SolverSettings(mip_rel_gap=1e-3)
    solve_dispatch(problem, settings)  # warm-up: imports, first-call caches
    runs = [solve_dispatch(problem, settings).solver for _ in range(args.repeats)]

    def median(key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]

    overhead = [
        (float(r["total_s"]) - float(r["highs_s"])) / float(r["highs_s"])
        for r in runs  # type: ignore[arg-type]
    ]
    print(f"machine: {machine()}")
    print(f"default site, {grid.periods} periods × 15 min, {args.date}, {args.repeats} runs")
    for key in ("build_s", "compile_s", "highs_s", "load_s", "extract_s", "total_s"):
        print(f"  {key:<10} median {median(key):.3f} s")
    print(f"  MIP gap    median {median('mip_gap'):.4%}")
    print(f"  overhead / HiGHS run time: median {statistics.median(overhead):.0%}")


if __name__ == "__main__":
    main()
