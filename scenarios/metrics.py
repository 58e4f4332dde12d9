"""What every planner metric means: its label, unit and definition, from one place.

The report, the command line and the tidy results name metrics by key (``household_kwh``);
this catalogue is what a planner reads next to the number. A metric missing here is shown
with its key and an empty unit, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRICS", "Metric", "describe"]


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric's label, unit and meaning."""

    label: str
    unit: str
    meaning: str


METRICS: dict[str, Metric] = {
    "days": Metric("days simulated", "d", "length of the run"),
    "pv_available_kwh": Metric(
        "PV available", "kWh", "what the array could have produced on the realised weather"
    ),
    "priority_kwh": Metric("priority energy", "kWh", "delivered to priority users (clinic, pump…)"),
    "household_kwh": Metric("household energy", "kWh", "delivered to households"),
    "business_kwh": Metric("business energy", "kWh", "delivered to businesses"),
    "household_served_fraction": Metric(
        "household demand served", "–", "household energy ÷ household demand"
    ),
    "unserved_priority_kwh": Metric(
        "unserved priority energy", "kWh", "priority demand not delivered"
    ),
    "unserved_kwh": Metric(
        "unserved priority + household", "kWh", "priority and household demand not delivered"
    ),
    "curtailed_kwh": Metric("curtailed PV", "kWh", "PV available but not used"),
    "battery_throughput_kwh": Metric(
        "battery throughput", "kWh", "energy discharged from the battery"
    ),
    "shed_spread_hours": Metric(
        "shed-hour spread",
        "h",
        "most minus fewest hours any household relay group was shed (fairness of rotation)",
    ),
    "value": Metric(
        "community value",
        "points",
        "20 per priority kWh, 10 per household kWh, each business's value score per kWh",
    ),
    "eta": Metric(
        "allocative efficiency η",
        "–",
        "community value ÷ the perfect-foresight oracle's, on the days the oracle ran",
    ),
    "eta_days": Metric("days with an oracle", "d", "days η is measured on"),
    "stake_share_valuable_final": Metric(
        "stake on valuable businesses",
        "–",
        "share of staked tokens on businesses of positive true value, last 14 rounds",
    ),
    "stake_weighted_true_value_final": Metric(
        "stake-weighted true value",
        "score",
        "mean true value of the businesses staked on, weighted by stake, last 14 rounds",
    ),
    "rounds_to_settle": Metric(
        "rounds until stakes settle",
        "rounds",
        "first round from which the 7-round mean stake share stays within 0.05 of its final level",
    ),
    "staker_rewards_coin_per_household": Metric(
        "staking rewards per household", "coin", "rewards paid to stakers ÷ households"
    ),
    "tokens_slashed": Metric("tokens slashed", "token", "stake tokens slashed over the run"),
    "seconds": Metric("wall time", "s", "time the run took on this machine"),
    "business_day_share": Metric(
        "days with business energy",
        "–",
        "share of days on which businesses got more than 0.1 kWh",
    ),
    "business_share": Metric(
        "business share of delivered energy",
        "–",
        "business energy ÷ energy delivered to priority users, households and businesses",
    ),
    "business_kwh_on_business_days": Metric(
        "business energy on business days", "kWh", "energy businesses got on those days"
    ),
    **{
        f"mtf_tier_{k}_share": Metric(
            f"household-days at MTF tier {k}",
            "–",
            f"share of household-days whose delivered World Bank MTF tier is {k} "
            "(lowest of capacity, daily energy, hours of supply, evening hours)",
        )
        for k in range(6)
    },
    "evening_lifeline_share": Metric(
        "evening lifeline delivered",
        "–",
        "share of household-days on which the household could draw in every period of "
        "its plan's evening window",
    ),
    "physics_allows_day_share": Metric(
        "days physics allows the lifelines",
        "–",
        "share of days on which realised PV plus the usable battery at the evening's start "
        "cover priority load and every household's evening lifeline",
    ),
    "evening_lifeline_share_physics_allows": Metric(
        "evening lifeline, on days physics allows",
        "–",
        "share of household-days with the evening lifeline delivered, over the days physics allows",
    ),
}


def describe(metric: str) -> Metric:
    """The catalogue entry, or one that shows the bare key (``ledger_*`` are ledger totals)."""
    if metric in METRICS:
        return METRICS[metric]
    if metric.startswith("ledger_"):
        return Metric(metric.removeprefix("ledger_").replace("_", " "), "", "ledger total")
    return Metric(metric, "", "")
