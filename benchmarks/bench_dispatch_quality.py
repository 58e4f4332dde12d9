"""Dispatch quality on the bundled week: the MILP vs the seeds' proportional rule and the oracle.

Six days of the bundled rainy-season week are delivered at 1 h steps, with a rolling
24 h horizon replanned every hour (the seventh day is the last plans' look-ahead):

- **MILP**: plans on a forecast that knows each day's cloudiness but not its timing
  (:func:`forecasts.samples.smoothed_forecast`), delivered on the actual weather and on
  demand with ±15 % noise per connection-hour;
- **proportional rule**: the seeds' rule on the same forecasts;
- **oracle**: the MILP told the actual PV and demand (perfect foresight over each
  horizon).

Prints each policy's community value (:func:`dispatch.rolling.community_value`),
energy per tier, unserved priority energy, curtailment and the spread of household shed
hours, then the ratios MILP ÷ proportional and MILP ÷ oracle, and the median time per
plan.

Run: python benchmarks/bench_dispatch_quality.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from dispatch import SolverSettings, proportional_rule, solve_dispatch
from dispatch.rolling import Delivery, community_value, roll
from forecasts.forecast import forecast_site
from forecasts.samples import bundled_week_weather, smoothed_forecast
from microgrid import TimeGrid, load_site

DAYS_DELIVERED = 6
HORIZON = 24
DEMAND_NOISE = 0.15
SEED = 7


def main() -> None:
    site = load_site()
    actual_weather = bundled_week_weather()
    week = TimeGrid(start=actual_weather.index[0], periods=7 * 24, step=pd.Timedelta("1h"))
    run_grid = TimeGrid(start=week.start, periods=DAYS_DELIVERED * 24, step=week.step)
    forecast = forecast_site(site, week, smoothed_forecast(actual_weather), issued=week.start)
    actual = forecast_site(site, week, actual_weather)
    rng = np.random.default_rng(SEED)
    demand_fc = {c: forecast.demand_kw[c].to_numpy() for c in forecast.demand_kw.columns}
    demand_actual = {c: d * rng.lognormal(0.0, DEMAND_NOISE, d.size) for c, d in demand_fc.items()}
    n = run_grid.periods
    actual_pv = actual.pv_kw["p50"].to_numpy()
    settings = SolverSettings(mip_rel_gap=1e-3, time_limit_s=10.0)
    plan_times: dict[str, list[float]] = {}

    def timed(name, planner):
        def run(problem, previous):
            begin = time.perf_counter()
            schedule = planner(problem, previous)
            plan_times.setdefault(name, []).append(time.perf_counter() - begin)
            return schedule

        return run

    soc0 = 0.5 * site.battery.energy_capacity_kwh
    common = {"site": site, "grid": run_grid, "soc_kwh": soc0, "horizon_periods": HORIZON}
    milp = lambda p, prev: solve_dispatch(p, settings, warm_start=prev)  # noqa: E731
    results: dict[str, Delivery] = {
        "MILP": roll(
            forecast_pv_kw=(forecast.pv_kw["p50"].to_numpy(), forecast.pv_kw["p10"].to_numpy()),
            forecast_demand_kw=demand_fc,
            actual_pv_kw=actual_pv[:n],
            actual_demand_kw={c: d[:n] for c, d in demand_actual.items()},
            planner=timed("MILP", milp),
            **common,
        ),
        "proportional": roll(
            forecast_pv_kw=(forecast.pv_kw["p50"].to_numpy(), forecast.pv_kw["p10"].to_numpy()),
            forecast_demand_kw=demand_fc,
            actual_pv_kw=actual_pv[:n],
            actual_demand_kw={c: d[:n] for c, d in demand_actual.items()},
            planner=timed("proportional", lambda p, prev: proportional_rule(p)),
            **common,
        ),
        "oracle": roll(
            forecast_pv_kw=(actual_pv, actual_pv),
            forecast_demand_kw=demand_actual,
            actual_pv_kw=actual_pv[:n],
            actual_demand_kw={c: d[:n] for c, d in demand_actual.items()},
            planner=timed("oracle", milp),
            **common,
        ),
    }
    print(f"machine: {machine()}")
    print(
        f"default site, bundled week {week.start:%Y-%m-%d}: {DAYS_DELIVERED} days delivered "
        f"at 1 h, {HORIZON} h horizon, replanned hourly; PV available "
        f"{actual_pv[:n].sum():.0f} kWh, forecast {forecast.pv_kw['p50'].iloc[:n].sum():.0f} kWh"
    )
    values = {}
    for name, delivery in results.items():
        values[name] = community_value(delivery, site)
        tiers = delivery.tier_energy_kwh()
        priority_demand = sum(demand_actual[c.id][:n].sum() for c in site.priority_users)
        shed = delivery.shed_hours
        print(
            f"  {name:<13} value {values[name]:>9.0f}   priority {tiers['priority']:6.1f} kWh "
            f"(unserved {priority_demand - tiers['priority']:5.1f})   households "
            f"{tiers['household']:6.1f}   businesses {tiers['business']:6.1f}   curtailed "
            f"{delivery.flows['curtailed_kw'].sum():6.1f} kWh   shed h/group "
            f"min {shed.min():.0f} max {shed.max():.0f} (spread {delivery.shed_spread_hours:.0f})"
            f"   median plan {statistics.median(plan_times[name]) * 1e3:.0f} ms"
        )
    print(f"  MILP ÷ proportional rule: {values['MILP'] / values['proportional']:.3f}")
    print(f"  MILP ÷ oracle:            {values['MILP'] / values['oracle']:.3f}")


if __name__ == "__main__":
    main()
