"""Forecast one year at 15 min for the default site; print median times.

Run: python benchmarks/bench_forecast.py [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, median_seconds

from forecasts.demand import demand_kw
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import TimeGrid, load_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    site = load_site()
    grid = TimeGrid.from_days("2026-01-01", 365, site.location.timezone)
    weather = synthetic_weather(grid.index, site.location, seed=1)
    print(f"machine: {machine()}")
    print(f"grid: {grid.periods} periods × 15 min, {len(site.connections)} connections")
    w = median_seconds(lambda: synthetic_weather(grid.index, site.location, seed=1), args.repeats)
    d = median_seconds(lambda: demand_kw(site, grid), args.repeats)
    f = median_seconds(lambda: forecast_site(site, grid, weather), args.repeats)
    print(f"synthetic weather, 1 year : median {w:.3f} s")
    print(f"demand, 1 year            : median {d:.3f} s")
    print(f"forecast (PV P10/50/90 + demand), 1 year: median {f:.3f} s")


if __name__ == "__main__":
    main()
