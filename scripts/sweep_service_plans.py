"""Planner sweep for the default policy: household lifeline size on the bundled year's weather.

Each point runs the scenario engine (``scenarios.engine.run_scenario``: forecast with
error → staking round → MILP dispatch → delivery by the one physics → settlement) on the
seeds' community, with every household held to one plan class, and the strict-tier policy
of before (no plans: households served to demand above businesses, stake-weighted
fairness) as the reference. A full year per point takes ≈ 2 min of MILP per simulated
week on a loaded 2-core machine, so the sweep runs a stated subset of days: ``--windows``
weeks spread over the year (dry season, rainy-season start, rainy season).

Run ``python scripts/sweep_service_plans.py --out sweep.csv --report sweep.html``; it
prints one row per point: share of days with business energy, business kWh/day, the
business share of the delivered energy, household kWh/day, unserved priority kWh/day, the
households' evening lifeline and MTF tier 1+ shares (:func:`scenarios.kpis.access_kpis`)
and η (community value ÷ the oracle's, on the oracle days). ``--report`` writes the
planner report (:func:`scenarios.report.write_report`, each window a run of its point)
with the trade-off curve: the business share against the lifeline size (daily budget, Wh;
the strict tiers of before are drawn at 0 Wh — no plan).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

import pandas as pd

from microgrid import load_site
from microgrid.site import ConnectionKind, ServicePlan, Site, SitePolicy
from scenarios.config import Scenario, parse_scenario
from scenarios.engine import RunResult, run_scenario
from scenarios.kpis import access_kpis, tidy, tidy_kpis
from scenarios.report import write_report

POINTS: dict[str, tuple[int, int] | None] = {
    "strict_tiers (old)": None,
    "lifeline 30 W/120 Wh": (30, 120),
    "lifeline 50 W/200 Wh": (50, 200),
    "lifeline 80 W/300 Wh": (80, 300),
}
WINDOWS = (dt.date(2026, 1, 10), dt.date(2026, 4, 10), dt.date(2026, 8, 10))
"""Week starts: the dry season's clear sky, the hot season, the rainy season's clouds."""


def variant(site: Site, plan: tuple[int, int] | None) -> Site:
    """The default site with every household on one plan, or the old strict-tier policy."""
    if plan is None:
        return site.model_copy(
            update={
                "service_plans": {},
                "service_plan_defaults": {},
                "policy": SitePolicy(business_objective="stake_fairness"),
            }
        )
    watts, wh = plan
    plans = {"sweep": ServicePlan(power_limit_w=watts, daily_energy_wh=wh,
                                  evening_start_hour=18, evening_end_hour=22)}  # fmt: skip
    return site.model_copy(
        update={
            "service_plans": plans,
            "service_plan_defaults": {ConnectionKind.HOUSEHOLD: "sweep"},
        }
    )


def run_point(site: Site, start: dt.date, days: int) -> RunResult:
    """One window for one site variant."""
    text = "\n".join(
        [
            'name = "plan_sweep"',
            "[horizon]",
            f'start = "{start.isoformat()}"',
            f"days = {days}",
            "[policy]",
            'dispatch = "milp"',
            "oracle_every_days = 3",
            # The scenario default (1 s) is below dispatch's own reserves (0.5 s to read the
            # plan + 1 s interrupt grace): every plan would be the rule's fallback.
            "time_limit_s = 20.0",
        ]
    )
    scenario = parse_scenario(text)
    original = Scenario.load_site
    Scenario.load_site = lambda self: site  # type: ignore[method-assign]
    try:
        result = run_scenario(scenario)
    finally:
        Scenario.load_site = original  # type: ignore[method-assign]
    return result


def summarise(daily: pd.DataFrame) -> dict[str, float]:
    """The figures the issue asks for, per day, over the sweep's days."""
    oracle = daily["oracle_value"].notna()
    access = access_kpis(daily)
    return {
        "days": float(len(daily)),
        "days_with_business_share": access["business_day_share"],
        "business_kwh_per_day": float(daily["business_kwh"].mean()),
        "business_share": access["business_share"],
        "evening_lifeline_share": access.get("evening_lifeline_share", float("nan")),
        "mtf_tier_1_or_more_share": 1.0 - access.get("mtf_tier_0_share", float("nan")),
        "household_kwh_per_day": float(daily["household_kwh"].mean()),
        "priority_unserved_kwh_per_day": float(daily["unserved_priority_kwh"].mean()),
        "curtailed_kwh_per_day": float(daily["curtailed_kwh"].mean()),
        "eta": float(
            daily.loc[oracle, "community_value"].sum() / daily.loc[oracle, "oracle_value"].sum()
        )
        if oracle.any()
        else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days per window (default 7)")
    parser.add_argument("--windows", type=int, default=len(WINDOWS), help="windows (≤ 3)")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the summary")
    parser.add_argument("--report", type=Path, default=None, help="HTML planner report")
    args = parser.parse_args(argv)
    for flag, path, suffix in (("--out", args.out, ".csv"), ("--report", args.report, ".html")):
        if path is not None and not path.parent.is_dir():
            print(f"{flag}: folder {path.parent} does not exist; create it", file=sys.stderr)
            return 2
        if path is not None and path.suffix != suffix:
            print(f"{flag}: {path} must end in {suffix}", file=sys.stderr)
            return 2
    base = load_site()
    rows = {}
    results: list[RunResult] = []
    parameters: dict[int, dict[str, object]] = {}
    for name, plan in POINTS.items():
        begin = time.perf_counter()
        runs = []
        for start in WINDOWS[: args.windows]:
            run = dataclasses.replace(
                run_point(variant(base, plan), start, args.days), run=len(results)
            )
            parameters[run.run] = {"policy": name, "lifeline_wh_per_day": plan[1] if plan else 0}
            results.append(run)
            runs.append(run)
        daily = pd.concat([r.daily for r in runs])
        rows[name] = summarise(daily) | {"seconds": time.perf_counter() - begin}
        print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    table = pd.DataFrame(rows).T
    print(table.round(3).to_string())
    if args.out is not None:
        table.to_csv(args.out)
    if args.report is not None:
        write_report(
            args.report,
            "Service-plan sweep: lifeline size against business share",
            tidy(results, parameters),
            tidy_kpis(results, parameters),
            notes=f"{args.windows} window(s) of {args.days} days each (a run per window), "
            "default site, MILP dispatch with forecast error; lifeline 0 Wh = the strict "
            "tiers of before (no plans).",
        )
        print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
