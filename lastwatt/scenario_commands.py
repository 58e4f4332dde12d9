"""The ``lastwatt`` scenario subcommands: ``simulate`` and ``sweep``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lastwatt.commands import Subcommands, UsageError, command

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    simulate = command(
        commands,
        "simulate",
        "simulate a planner scenario (Monte Carlo over its seeds) and write an HTML report",
        "lastwatt simulate seeds_year --days 30 --runs 2 --out report.html",
        _simulate,
    )
    sweep = command(
        commands,
        "sweep",
        "sweep scenario parameters (cartesian product) and write an HTML report",
        "lastwatt sweep sizing_sweep --param equipment.pv_kwp=22,33 --days 7 --out sizing.html",
        _sweep,
    )
    for parser in (simulate, sweep):
        parser.add_argument("scenario", help="scenario TOML file, or the name of a bundled one")
        parser.add_argument("--days", type=int, default=None, help="override horizon.days")
        parser.add_argument("--runs", type=int, default=None, help="override seeds.runs")
        parser.add_argument(
            "--workers", type=int, default=None, help="processes (default: all cores)"
        )
        parser.add_argument(
            "--backend",
            choices=("processes", "dask"),
            default="processes",
            help="run on a process pool or on Dask (a local cluster of --workers processes)",
        )
        parser.add_argument(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="run on the Dask cluster of this scheduler (tcp://host:8786); implies dask",
        )
        parser.add_argument(
            "--out", type=Path, default=Path("report.html"), help="HTML report path"
        )
        parser.add_argument(
            "--data", type=Path, default=None, help="write tidy results (.parquet or .csv)"
        )
    sweep.add_argument(
        "--param", action="append", default=[], metavar="NAME=V1,V2,…", help="repeatable"
    )


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from scenarios import ScenarioFileError, bundled_scenarios, load_scenario, with_parameter

    bundled = bundled_scenarios()
    path = bundled.get(args.scenario, Path(args.scenario))
    try:
        scenario = load_scenario(path)
        if args.days is not None:
            scenario = with_parameter(scenario, "horizon.days", args.days)
        if args.runs is not None:
            scenario = with_parameter(scenario, "seeds.runs", args.runs)
    except ScenarioFileError as exc:
        raise UsageError(str(exc)) from None
    return scenario


def _run(args: argparse.Namespace, params: dict[str, list[object]]) -> int:
    from tqdm import tqdm

    from scenarios.config import ScenarioFileError
    from scenarios.montecarlo import sweep_scenarios, tidy_runs
    from scenarios.report import summary_table, write_report

    _check_outputs(args)
    scenario = _load(args)
    try:
        jobs = sweep_scenarios(scenario, params)
    except ScenarioFileError as exc:
        raise UsageError(str(exc)) from None
    total = sum(s.horizon.days for s, _, _ in jobs)
    # tqdm switches itself off when stderr is not a terminal (disable=None): no bar in logs.
    with tqdm(total=total, unit="day", desc="simulated", disable=None, file=sys.stderr) as bar:

        def progress(days: int) -> None:
            bar.update(days)

        parameters = {k: p for k, (_, _, p) in enumerate(jobs)}
        try:
            daily, kpis = tidy_runs(
                [(s, k) for k, (s, _, _) in enumerate(jobs)],
                parameters,
                workers=args.workers,
                backend=args.backend,
                scheduler=args.scheduler,
                progress=progress,
            )
        except OSError as exc:  # only a scheduler address can fail to connect
            msg = f"cannot reach the Dask scheduler at {args.scheduler}: {exc}; check --scheduler"
            raise UsageError(msg) from None
    assert daily is not None  # not streamed to a file
    if args.data is not None:
        frame = daily.assign(date=daily["date"].astype(str))
        if args.data.suffix == ".parquet":
            frame.to_parquet(args.data)
        else:
            frame.to_csv(args.data, index=False)
        kpis.to_csv(args.data.with_name(args.data.stem + "_kpis.csv"), index=False)
    write_report(args.out, f"Scenario {scenario.name}", daily, kpis, scenario.description)
    headline = ("eta", "business_kwh", "household_kwh", "unserved_priority_kwh", "rounds_to_settle")
    table = summary_table(kpis[kpis["metric"].isin(headline)]).drop(columns="meaning")
    print(table.to_string(index=False))
    print(f"report: {args.out}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable output paths before hours of simulation, not after."""
    outputs = [(args.out, "--out", (".html", ".htm"))]
    if args.data is not None:
        outputs.append((args.data, "--data", (".parquet", ".csv")))
    for path, option, suffixes in outputs:
        if path.suffix.lower() not in suffixes:
            msg = f"{option} {path}: write to a {' or '.join(suffixes)} file"
            raise UsageError(msg)
        folder = path.parent if str(path.parent) else Path()
        if not folder.is_dir():
            msg = f"{option} {path}: folder {folder} does not exist; create it first"
            raise UsageError(msg)
        if not os.access(folder, os.W_OK):
            msg = f"{option} {path}: folder {folder} is not writable"
            raise UsageError(msg)
        if path.is_dir():
            msg = f"{option} {path} is a folder; name a file"
            raise UsageError(msg)


def _simulate(args: argparse.Namespace) -> int:
    return _run(args, {})


def _sweep(args: argparse.Namespace) -> int:
    from scenarios.montecarlo import parse_param

    if not args.param:
        msg = "sweep needs at least one --param NAME=V1,V2,…"
        raise UsageError(msg)
    try:
        params = dict(parse_param(p) for p in args.param)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return _run(args, params)
