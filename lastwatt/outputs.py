"""Writing results: tables as CSV or Parquet, plots as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # files only; the service and CI have no display

import matplotlib.pyplot as plt
import pandas as pd

from dispatch.schedule import Schedule
from forecasts.forecast import Forecast

__all__ = ["plot_forecast", "plot_schedule", "write_table"]

TIER_COLOURS = {
    "priority": "#c0392b",
    "household": "#2e86c1",
    "reserve": "#7d3c98",
    "business": "#d68910",
}


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV or Parquet, chosen by the file suffix.

    Times are written in ISO 8601 with their UTC offset, so nothing is lost on reading.

    Raises
    ------
    ValueError
        If the suffix is neither ``.csv`` nor ``.parquet``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        msg = f"cannot write {path}: use a .csv or .parquet file name"
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, date_format="%Y-%m-%dT%H:%M:%S%z")
    else:
        table.to_parquet(path)
    return path


def plot_forecast(forecast: Forecast, path: str | Path) -> Path:
    """PNG plot: PV P10–P90 band and P50 over stacked demand per tier, in local time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tz = forecast.site.location.timezone
    pv = forecast.pv_kw.tz_convert(tz)
    demand = forecast.demand_by_tier_kw().tz_convert(tz)
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    ax.stackplot(
        demand.index,
        *(demand[tier] for tier in demand.columns),
        labels=[f"demand: {tier}" for tier in demand.columns],
        colors=[TIER_COLOURS[tier] for tier in demand.columns],
        alpha=0.55,
        step="post",
    )
    ax.fill_between(pv.index, pv["p10"], pv["p90"], color="#f4d03f", alpha=0.5, label="PV P10–P90")
    ax.plot(pv.index, pv["p50"], color="#b7950b", lw=1.5, label="PV P50")
    ax.plot(pv.index, pv["clear_sky"], color="#7f8c8d", lw=0.8, ls="--", label="PV clear sky")
    ax.set_ylabel("power [kW]")
    ax.set_xlabel(f"local time ({tz})")
    ax.set_title(f"{forecast.site.name}: PV forecast and demand")
    ax.legend(loc="upper left", ncols=4, fontsize="small")
    ax.margins(x=0)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_schedule(schedule: Schedule, timezone: str, title: str, path: str | Path) -> Path:
    """PNG plot: served power stacked per tier against PV and demand, with the battery SoC."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = schedule.plan.tz_convert(timezone)
    tiers = ["priority", "household", "business"]
    fig, (ax, soc_ax) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1), layout="constrained"
    )
    ax.stackplot(
        plan.index,
        *(plan[f"served_{tier}_kw"] for tier in tiers),
        labels=[f"served: {tier}" for tier in tiers],
        colors=[TIER_COLOURS[tier] for tier in tiers],
        alpha=0.75,
        step="post",
    )
    demand = plan[[f"demand_{tier}_kw" for tier in tiers]].sum(axis=1)
    ax.step(plan.index, demand, where="post", color="black", lw=0.8, label="demand, all tiers")
    ax.step(
        plan.index,
        plan["pv_forecast_kw"],
        where="post",
        color="#b7950b",
        lw=1.5,
        label="PV forecast (P50)",
    )
    ax.set_ylabel("power [kW]")
    ax.set_title(f"{title} — status {schedule.status.value}")
    ax.legend(loc="upper left", ncols=3, fontsize="small")
    soc_ax.plot(plan.index, plan["soc_kwh"], color=TIER_COLOURS["reserve"], label="SoC")
    soc_ax.plot(plan.index, plan["reserve_kwh"], color="grey", ls="--", label="reserve")
    soc_ax.set_ylabel("battery [kWh]")
    soc_ax.set_xlabel(f"local time ({timezone})")
    soc_ax.legend(loc="upper left", fontsize="small")
    ax.margins(x=0)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
