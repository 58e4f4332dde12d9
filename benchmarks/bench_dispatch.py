"""Dispatch timings: the default site at 96 × 15 min, 10× the community, and a week at 1 h.

For the default site, six days of different weather (date, weather seed) are each solved
several times; per day it prints the median of build (Pyomo), hand-over (standard form
→ highspy), HiGHS's own run time as HiGHS reports it, extraction and total, and the
modelling overhead (everything but HiGHS) as a share of HiGHS's time; then the medians
over the days. HiGHS's time varies several-fold from day to day (and with its random
seed), the overhead hardly at all, so one day's ratio says little.

Run: python benchmarks/bench_dispatch.py [--repeats N] [--skip-scale]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from dispatch import SolverSettings, problem_from_site, solve_dispatch
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import Site, TimeGrid, load_site
from microgrid.scaling import replicate_site

DAYS = [
    ("2026-01-10", 1),
    ("2026-03-20", 3),
    ("2026-06-15", 2),
    ("2026-08-01", 0),
    ("2026-08-20", 5),
    ("2026-10-05", 4),
]
PHASES = ("build_s", "compile_s", "highs_s", "extract_s", "total_s")


def problem_for(site: Site, grid: TimeGrid, seed: int):
    forecast = forecast_site(site, grid, synthetic_weather(grid.index, site.location, seed=seed))
    demand = {c: forecast.demand_kw[c].to_numpy() for c in forecast.demand_kw.columns}
    soc = 0.5 * site.battery.energy_capacity_kwh
    p50, p10 = forecast.pv_kw["p50"].to_numpy(), forecast.pv_kw["p10"].to_numpy()
    return problem_from_site(site, grid, p50, p10, demand, soc_kwh=soc)


def timings(problem, settings: SolverSettings, repeats: int) -> dict[str, float]:
    solve_dispatch(problem, settings)  # warm-up: imports, first-call caches
    runs = [solve_dispatch(problem, settings).solver for _ in range(repeats)]
    out = {key: statistics.median(float(r[key]) for r in runs) for key in PHASES}
    out["overhead_s"] = out["total_s"] - out["highs_s"]
    out["mip_gap"] = statistics.median(float(r["mip_gap"]) for r in runs)
    return out


def line(label: str, t: dict[str, float]) -> str:
    return (
        f"  {label:<22} build {t['build_s']:.3f}  hand-over {t['compile_s']:.3f}  "
        f"HiGHS {t['highs_s']:.3f}  extract {t['extract_s']:.3f}  total {t['total_s']:.3f} s  "
        f"overhead {t['overhead_s']:.3f} s = {t['overhead_s'] / t['highs_s']:.0%} of HiGHS  "
        f"gap {t['mip_gap']:.3%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-scale", action="store_true", help="only the default site")
    args = parser.parse_args()
    site = load_site()
    settings = SolverSettings(mip_rel_gap=1e-3, time_limit_s=60.0)
    print(f"machine: {machine()}")
    print(f"default site, 96 periods × 15 min, MIP gap ≤ 0.1 %, median of {args.repeats} runs")
    per_day = []
    for date, seed in DAYS:
        grid = TimeGrid.from_days(date, 1, site.location.timezone)
        per_day.append(timings(problem_for(site, grid, seed), settings, args.repeats))
        print(line(f"{date} (seed {seed})", per_day[-1]))
    median = {k: statistics.median(d[k] for d in per_day) for k in per_day[0]}
    print(line("median over the days", median))
    ratios = [d["overhead_s"] / d["highs_s"] for d in per_day]
    print(
        f"  overhead ÷ HiGHS per day: median {statistics.median(ratios):.0%}, max {max(ratios):.0%}"
    )
    if args.skip_scale:
        return
    print("scale (one run each after a warm-up):")
    big = replicate_site(site, 10)
    grid = TimeGrid.from_days("2026-03-20", 1, site.location.timezone)
    label = f"10× ({len(big.connections)} conn.)"
    print(line(label, timings(problem_for(big, grid, 3), settings, 1)))
    day = TimeGrid.from_days("2026-03-20", 7, site.location.timezone)
    week = TimeGrid(start=day.start, periods=7 * 24, step=pd.Timedelta("1h"))
    print(line("one week at 1 h", timings(problem_for(site, week, 3), settings, 1)))


if __name__ == "__main__":
    main()
