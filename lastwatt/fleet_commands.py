"""The ``lastwatt fleet`` subcommand: N sites of a scenario in one planner run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lastwatt.commands import Subcommands, UsageError, command

__all__ = ["add_commands"]

# What the command prints for the fleet (median over the Monte Carlo runs).
_SHOWN = (
    "household_served_fraction",
    "worst_site_household_served_fraction",
    "eta",
    "unserved_priority_kwh",
    "sites_unserved_priority",
    "curtailed_kwh",
    "value",
)


def add_commands(commands: Subcommands) -> None:
    """Register ``fleet`` on the ``lastwatt`` parser."""
    fleet = command(
        commands,
        "fleet",
        "simulate a fleet of sites derived from one scenario: per-site and fleet KPIs",
        "lastwatt fleet seeds_year --sites 20 --days 7 --backend dask --out fleet.csv",
        _fleet,
    )
    fleet.add_argument("scenario", help="scenario TOML file, or the name of a bundled one")
    fleet.add_argument("--sites", type=int, default=10, help="how many sites (default 10)")
    fleet.add_argument("--seed", type=int, default=0, help="seed of the sites' differences")
    fleet.add_argument("--days", type=int, default=None, help="override horizon.days")
    fleet.add_argument("--runs", type=int, default=None, help="override seeds.runs")
    fleet.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    fleet.add_argument("--backend", choices=("processes", "dask"), default="processes")
    fleet.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="a Dask scheduler; implies dask"
    )
    fleet.add_argument(
        "--out",
        type=Path,
        default=Path("fleet.csv"),
        help="per-site KPIs (CSV); the fleet's go next to it as *_fleet.csv",
    )


def _fleet(args: argparse.Namespace) -> int:
    from lastwatt.scenario_commands import _load
    from scenarios.fleet import fleet_scenarios, run_fleet

    if args.sites < 1:
        msg = f"--sites must be at least 1, got {args.sites}"
        raise UsageError(msg)
    sites = fleet_scenarios(_load(args), args.sites, seed=args.seed)
    try:
        result = run_fleet(sites, args.workers, args.backend, args.scheduler)
    except OSError as exc:
        msg = f"cannot reach the Dask scheduler at {args.scheduler}: {exc}; check --scheduler"
        raise UsageError(msg) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.per_site.to_csv(args.out, index=False)
    fleet_path = args.out.with_name(args.out.stem + "_fleet.csv")
    result.fleet.to_csv(fleet_path, index=False)
    runs = len(result.fleet)
    for metric in _SHOWN:
        median = float(result.fleet[metric].median())
        sys.stdout.write(f"{metric}: {median:.4g} (fleet of {args.sites}, median of {runs} runs)\n")
    sys.stdout.write(f"per-site KPIs: {args.out}\nfleet KPIs: {fleet_path}\n")
    return 0
