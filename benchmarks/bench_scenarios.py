"""Scenario engine: one simulated year of the default community, and a 2-core sweep.

- **year**: the bundled ``seeds_year`` scenario (default site, daily staking rounds,
  15-minute dispatch re-planned daily by the MILP at 1 % gap on one thread, η measured
  on every 14th day, daily settlement batches) — target ≤ 120 s on one core;
- the same year with the seeds' proportional rule, for η MILP vs proportional;
- **sweep**: 4 runs of 14 days on both cores vs one core.

Prints wall times (median of ``--repeats``), η, stake convergence, the step timings and
the year's report figures: share of days with business energy and the kWh on them, the
households' delivered MTF tiers, the evening lifeline's share (over all household-days and
over the days physics allows), token supply against issue and rewards paid.

Run: python benchmarks/bench_scenarios.py [--repeats 1] [--days 365]
[--policies milp,proportional] [--stakers default|informed] [--no-sweep] [--json KPIS.json]
[--daily-csv DAILY.csv]

``--stakers informed``: every household knows the true values (``stakers.informed = 1``);
``default`` is the planners' mix (loyal, learner, random).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from scenarios import bundled_scenario, run_scenario, with_parameter
from scenarios.config import StakerMix
from scenarios.kpis import run_kpis
from scenarios.montecarlo import run_many


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--policies", default="milp,proportional")
    parser.add_argument("--stakers", choices=("default", "informed"), default="default")
    parser.add_argument("--no-sweep", action="store_true", help="skip the 4 × 14-day sweep")
    parser.add_argument("--json", type=Path, default=None, help="write every run's KPIs here")
    parser.add_argument(
        "--daily-csv", type=Path, default=None, help="write the last run's daily table here"
    )
    args = parser.parse_args()
    for flag, path in (("--json", args.json), ("--daily-csv", args.daily_csv)):
        if path is not None and not path.parent.is_dir():
            parser.error(f"{flag}: folder {path.parent} does not exist")
    print(f"machine: {machine()}")
    year = with_parameter(bundled_scenario("seeds_year"), "horizon.days", args.days)
    if args.stakers == "informed":
        mix = StakerMix(loyal=0.0, learner=0.0, random=0.0, informed=1.0)
        year = year.model_copy(update={"stakers": mix})
    dump: dict[str, dict[str, float]] = {}
    for policy in args.policies.split(","):
        scenario = with_parameter(year, "policy.dispatch", policy)
        times, result = [], None
        for _ in range(args.repeats):
            result = run_scenario(scenario)
            times.append(result.seconds)
        assert result is not None
        k = run_kpis(result)
        steps = ", ".join(f"{n} {s:.1f}" for n, s in result.timings.items())
        print(
            f"{policy:<13} {args.days} days: median {statistics.median(times):.1f} s ({steps}); "
            f"eta {k['eta']:.3f} on {k['eta_days']:.0f} days; rounds_to_settle "
            f"{k['rounds_to_settle']}; stake share on valuable "
            f"{k['stake_share_valuable_final']:.3f}; "
            f"household served {k['household_served_fraction']:.3f}; unserved priority "
            f"{k['unserved_priority_kwh']:.0f} kWh; business {k['business_kwh']:.0f} kWh; "
            f"ledger verified {k['ledger_verified']:.0f}"
        )
        tiers = " ".join(f"{k[f'mtf_tier_{t}_share']:.3f}" for t in range(6))
        print(
            f"{'':<13} business days {k['business_day_share']:.3f} "
            f"({k['business_kwh_on_business_days']:.0f} kWh); MTF tiers 0–5 {tiers}; "
            f"evening lifeline {k['evening_lifeline_share']:.3f}, on the "
            f"{k['physics_allows_day_share']:.3f} of days physics allows "
            f"{k['evening_lifeline_share_physics_allows']:.3f}; tokens held+pooled "
            f"{k['ledger_tokens_held'] + k['ledger_tokens_pooled']:.3f} of issued "
            f"{k['ledger_tokens_issued']:.3f}; rewards "
            f"{k['staker_rewards_coin_per_household']:.3f} coin/household"
        )
        dump[policy] = k
        if args.daily_csv is not None:
            result.daily.to_csv(args.daily_csv.with_stem(f"{args.daily_csv.stem}_{policy}"))
        if args.json is not None:
            args.json.write_text(json.dumps(dump, indent=1))
    if args.no_sweep:
        return
    short = with_parameter(year, "horizon.days", 14)
    jobs = [(short, r) for r in range(4)]
    for workers in (1, 2):
        begin = time.perf_counter()
        run_many(jobs, workers=workers)
        print(f"sweep 4 × 14 days on {workers} process(es): {time.perf_counter() - begin:.1f} s")


if __name__ == "__main__":
    main()
