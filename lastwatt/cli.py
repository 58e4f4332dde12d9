"""The ``lastwatt`` command line: wiring only; the work is in the packages."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lastwatt import (
    alarm_commands,
    contract_commands,
    device_commands,
    fleet_commands,
    ledger_commands,
    market_commands,
    ops_commands,
    scenario_commands,
    service_commands,
    site_commands,
    storage_commands,
)
from lastwatt.commands import Handler, Subcommands, UsageError, add_site_option, command

# Only what `lastwatt --help` needs is imported here: the MILP stack, pandas and
# matplotlib cost seconds, so every handler imports what it uses when it runs.
if TYPE_CHECKING:
    import pandas as pd

    from dispatch import Schedule
    from forecasts.forecast import Forecast
    from microgrid import Site, TimeGrid

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (UsageError, ValueError) as exc:
        # SiteFileError and WeatherDataError are ValueErrors: named without importing them.
        print(f"lastwatt {args.command}: error: {exc}", file=sys.stderr)
        return 2


def version() -> str:
    """The installed version of lastwatt (the package metadata's, set in pyproject)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lastwatt")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: reads the package metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"lastwatt {version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lastwatt",
        description="Dispatch and control for an off-grid solar container mini-grid.",
        epilog="Run 'lastwatt COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_forecast(commands)
    _add_dispatch(commands)
    _add_demo(commands)
    ledger_commands.add_commands(commands)
    device_commands.add_commands(commands)
    scenario_commands.add_commands(commands)
    fleet_commands.add_commands(commands)
    service_commands.add_commands(commands)
    site_commands.add_commands(commands)
    ops_commands.add_commands(commands)
    contract_commands.add_commands(commands)
    market_commands.add_commands(commands)
    storage_commands.add_commands(commands)
    alarm_commands.add_commands(commands)
    return parser


def _add_weather_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weather",
        type=Path,
        metavar="FILE",
        help="weather file: CSV (see forecasts.weather.read_weather_csv) or EPW",
    )
    source.add_argument(
        "--feed", type=Path, metavar="FILE", help="forecast-feed JSON payload (Open-Meteo hourly)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the synthetic weather used when no file is given (default 0)",
    )


def _add_output_options(parser: argparse.ArgumentParser, stem: str) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path(f"out/{stem}.csv"), help="table: .csv or .parquet"
    )
    parser.add_argument("--plot", type=Path, default=Path(f"out/{stem}.png"), help="PNG plot")


def _write_forecast(forecast: Forecast, table_path: Path, plot_path: Path) -> None:
    from lastwatt.outputs import plot_forecast, write_table

    table = write_table(forecast.table(), table_path)
    plot = plot_forecast(forecast, plot_path)
    print(f"\nwrote {table} and {plot}")


def _write_schedule(site: Site, schedule: Schedule, table_path: Path, plot_path: Path) -> None:
    from lastwatt.outputs import plot_schedule, write_table

    plan = schedule.plan.join(schedule.allotment_kw.add_suffix("_kw"))
    table = write_table(plan, table_path)
    plot = plot_schedule(schedule, site.location.timezone, site.name, plot_path)
    print(f"\nwrote {table} and {plot}")


# --- forecast -------------------------------------------------------------------------------


def _add_forecast(commands: Subcommands) -> None:
    parser = command(
        commands,
        "forecast",
        "Forecast PV (P10/P50/P90) and demand per tier; write a table and a plot.",
        "lastwatt forecast --start 2026-08-01 --days 3 --out out/forecast.parquet",
        _run_forecast,
    )
    add_site_option(parser)
    parser.add_argument(
        "--start",
        default=None,
        metavar="DATE",
        help="first local day, ISO 8601 (default: today at the site)",
    )
    parser.add_argument("--days", type=int, default=2, help="number of days (default 2)")
    parser.add_argument("--step", default="15min", help="period length (default 15min)")
    _add_weather_options(parser)
    _add_output_options(parser, "forecast")


def _run_forecast(args: argparse.Namespace) -> int:
    from microgrid import load_site

    site = load_site(args.site)
    forecast = _forecast(site, args.start, args.days, args.step, args)
    print(_forecast_summary(forecast))
    _write_forecast(forecast, args.out, args.plot)
    return 0


def _forecast(
    site: Site, start: str | None, days: int, step: str, args: argparse.Namespace
) -> Forecast:
    import pandas as pd

    from forecasts.forecast import forecast_site
    from microgrid import TimeGrid

    if days < 1:
        msg = f"--days must be at least 1, got {days}"
        raise UsageError(msg)
    tz = site.location.timezone
    first_day = start or pd.Timestamp.now(tz=tz).date().isoformat()
    grid = TimeGrid.from_days(first_day, days, tz, step=step)
    weather = _weather(site, grid, args)
    return forecast_site(site, grid, weather)


def _weather(site: Site, grid: TimeGrid, args: argparse.Namespace) -> pd.DataFrame:
    from forecasts.weather import parse_forecast_feed, read_epw, read_weather_csv, synthetic_weather

    if args.feed is not None:
        return parse_forecast_feed(Path(args.feed).read_bytes())
    if args.weather is not None:
        path = Path(args.weather)
        if path.suffix.lower() == ".epw":
            return read_epw(path)
        return read_weather_csv(path)
    return synthetic_weather(grid.index, site.location, seed=args.seed)


def _forecast_summary(forecast: Forecast) -> str:
    daily = forecast.daily_energy_kwh()
    columns = {
        "pv_p10_kwh": "PV P10",
        "pv_p50_kwh": "PV P50",
        "pv_p90_kwh": "PV P90",
        "demand_priority_kwh": "priority",
        "demand_household_kwh": "households",
        "demand_business_kwh": "businesses",
    }
    shown = daily[list(columns)].rename(columns=columns)
    header = (
        f"{forecast.site.name}: {forecast.site.pv.dc_capacity_kwp:g} kWp, "
        f"{forecast.site.battery.energy_capacity_kwh:g} kWh battery, "
        f"{len(forecast.site.connections)} connections — energy per day [kWh]"
    )
    return header + "\n" + shown.round(1).to_string()


# --- dispatch -------------------------------------------------------------------------------


def _add_dispatch(commands: Subcommands) -> None:
    parser = command(
        commands,
        "dispatch",
        "Plan the next 24 h: the tiered MILP on the forecast; print per tier, write the plan.",
        "lastwatt dispatch --start 2026-08-01T06:00 --stakes stakes.toml --soc-kwh 30",
        _run_dispatch,
    )
    add_site_option(parser)
    parser.add_argument(
        "--stakes",
        type=Path,
        metavar="FILE",
        help="stakes per business: TOML [stakes] table or CSV business_id,stake "
        "(default: tokens split by value score)",
    )
    parser.add_argument(
        "--start",
        default=None,
        metavar="DATETIME",
        help="start of the horizon, ISO 8601; local time if no offset (default: now)",
    )
    parser.add_argument("--hours", type=int, default=24, help="horizon length (default 24)")
    parser.add_argument(
        "--soc-kwh", type=float, default=None, help="measured battery SoC (default: half full)"
    )
    parser.add_argument("--time-limit", type=float, default=10.0, help="solver limit [s]")
    _add_weather_options(parser)
    _add_output_options(parser, "schedule")


def _run_dispatch(args: argparse.Namespace) -> int:
    from microgrid import load_site

    site = load_site(args.site)
    schedule = _dispatch(site, args)
    print(_schedule_summary(site, schedule))
    _write_schedule(site, schedule, args.out, args.plot)
    return 0


MAX_DISPATCH_HOURS = 168
"""Longest horizon `lastwatt dispatch` plans [h]: a week, the longest the dispatch
benchmark measures (at 15 min, 672 periods, the default site's plan is cut short by the
default 10 s budget and arrives within it). 100 000 h was accepted before and the
model's build ran the 24 GiB machine out of memory."""


def _dispatch(site: Site, args: argparse.Namespace) -> Schedule:
    import pandas as pd

    from dispatch import problem_from_site, solve_dispatch
    from dispatch.problem import SolverSettings
    from forecasts.forecast import forecast_site
    from lastwatt.inputs import read_stakes
    from microgrid import TimeGrid, parse_datetime

    tz = site.location.timezone
    now = pd.Timestamp.now(tz="UTC").floor("15min")
    start = now if args.start is None else parse_datetime(args.start, tz)
    if not 1 <= args.hours <= MAX_DISPATCH_HOURS:
        msg = f"--hours must be from 1 to {MAX_DISPATCH_HOURS} (a week), got {args.hours}"
        if args.hours > MAX_DISPATCH_HOURS:
            msg += "; simulate longer periods with `lastwatt simulate`, which replans day by day"
        raise UsageError(msg)
    grid = TimeGrid(start=start, periods=args.hours * 4)
    forecast = forecast_site(site, grid, _weather(site, grid, args), issued=start)
    stakes = None if args.stakes is None else read_stakes(args.stakes, site)
    soc = site.battery.energy_capacity_kwh / 2 if args.soc_kwh is None else args.soc_kwh
    _check_dispatch_args(site, soc, args.time_limit)
    problem = problem_from_site(
        site,
        grid,
        forecast.pv_kw["p50"].to_numpy(),
        forecast.pv_kw["p10"].to_numpy(),
        {str(c): v.to_numpy() for c, v in forecast.grid_demand_kw().items()},
        soc_kwh=soc,
        stakes=stakes,
        export_kw={str(c): v.to_numpy() for c, v in forecast.prosumer_export_kw().items()},
    )
    return solve_dispatch(problem, SolverSettings(time_limit_s=args.time_limit))


def _check_dispatch_args(site: Site, soc_kwh: float, time_limit_s: float) -> None:
    """The dispatch options checked against the site, before any forecast is made."""
    capacity = site.battery.energy_capacity_kwh
    if not (math.isfinite(soc_kwh) and 0 <= soc_kwh <= capacity):
        msg = (
            f"--soc-kwh {soc_kwh:g} is outside the battery's 0–{capacity:g} kWh "
            f"(the site's battery holds {capacity:g} kWh; give kWh, not %)"
        )
        raise UsageError(msg)
    from dispatch.dispatch import MIN_TIME_LIMIT_S

    if not (math.isfinite(time_limit_s) and time_limit_s >= MIN_TIME_LIMIT_S):
        msg = (
            f"--time-limit must be at least {MIN_TIME_LIMIT_S:g} seconds (the solve keeps "
            f"reserves to stop HiGHS and polish the plan), got {time_limit_s:g}"
        )
        raise UsageError(msg)


def _schedule_summary(site: Site, schedule: Schedule) -> str:
    tiers = schedule.tier_energy_kwh().round(1)
    report = schedule.solver
    lines = [
        f"{site.name}: dispatch of {schedule.grid.periods} periods from "
        f"{schedule.grid.start.tz_convert(site.location.timezone)} — status "
        f"{schedule.status.value}",
        "energy per tier [kWh]:",
        tiers.to_string(),
        f"PV forecast {schedule.plan['pv_forecast_kw'].sum() * schedule.grid.step_hours:.1f} kWh,"
        f" curtailed {schedule.curtailed_kwh:.1f} kWh",
    ]
    shed = schedule.shed_hours()
    if len(shed):
        lines.append(
            f"household groups shed: {shed.min():.2f}–{shed.max():.2f} h each "
            f"(mean {shed.mean():.2f} h)"
        )
    served = schedule.allotment_kw[[c.id for c in site.businesses]]
    running = (served.sum() * schedule.grid.step_hours).loc[lambda e: e > 0]
    lines.append(f"businesses served: {len(running)} ({running.sum():.1f} kWh)")
    if schedule.violations_kwh:
        named = ", ".join(f"{k} {v:.2f} kWh" for k, v in schedule.violations_kwh.items())
        lines.append(f"violations (priced): {named}")
    counts = schedule.reasons["reason"].value_counts()
    if len(counts):
        lines.append("reasons (unit-periods): " + ", ".join(f"{r} {n}" for r, n in counts.items()))
    if report is not None:
        gaps = ", ".join(f"{tier} {gap:.3g}" for tier, gap in report.gaps.items())
        lines.append(
            f"solver: {report.status.value}, HiGHS {report.highs_s:.2f} s, total "
            f"{report.total_s:.2f} s; absolute gap per tier (kWh; value for business): {gaps}"
        )
        if report.note:
            lines.append(f"solver note: {report.note}")
    return "\n".join(lines)


# --- demo (the README's main job) -----------------------------------------------------------


def _add_demo(commands: Subcommands) -> None:
    parser = command(
        commands,
        "demo",
        "The main job: the simulated container and the service on the default site, "
        "fast-forwarded through a day; prints a per-tier summary, writes a report.",
        "lastwatt demo --out-dir out\nlastwatt demo --hours 6 --keep-serving",
        _run_demo,
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--start", default="2026-08-01", help="local day (rainy season)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic weather seed")
    parser.add_argument(
        "--replan-minutes",
        type=int,
        default=30,
        help="re-plan period in the fast-forward (default 30; the live service: 15)",
    )
    parser.add_argument(
        "--keep-serving", action="store_true", help="keep the dashboard up until Ctrl-C"
    )
    parser.add_argument("--port", type=int, default=0, help="dashboard port (default: any free)")


def _run_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from lastwatt.demo import run_demo

    if args.hours <= 0:
        msg = f"--hours must be positive, got {args.hours}"
        raise UsageError(msg)
    try:
        pd.Timestamp(args.start)
    except ValueError:
        msg = f"--start {args.start!r} is not an ISO 8601 date"
        raise UsageError(msg) from None
    result = run_demo(
        args.out_dir,
        args.start,
        args.hours,
        args.seed,
        args.replan_minutes,
        args.keep_serving,
        args.port,
    )
    return 0 if result.ledger_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
