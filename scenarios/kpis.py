"""KPIs of a run, and results as tidy DataFrames (run × period × metric).

KPIs per run:

- energy served per tier, unserved priority energy, curtailment, battery throughput [kWh];
- ``shed_spread_hours``: most minus fewest hours a household group was shed [h];
- ``eta``: allocative efficiency, the policy's community value ÷ the oracle's on the
  days the oracle ran (``policy.oracle_every_days``) [-];
- ``stake_share_valuable_final``: share of staked tokens on businesses of positive true
  value, mean of the last 14 rounds [-];
- ``rounds_to_settle``: the seeds' "semi-stable condition" — the first round from which
  the 7-round mean of that share stays within 0.05 of its final level, NaN if it never
  does;
- staker returns (coins rewarded per household, tokens slashed) and ledger totals;
- ``business_day_share``: share of days on which businesses got more than
  :data:`BUSINESS_DAY_KWH`, and ``business_kwh_on_business_days`` the energy on them;
  ``business_share``: business energy ÷ all energy delivered (priority, households,
  businesses), the axis of the lifeline-against-business trade-off;
- ``mtf_tier_<k>_share``: share of household-days whose delivered MTF tier is k (0–5),
  rated by :func:`microgrid.access.mtf_daily` from each household's delivered energy
  and the power it could draw (:mod:`scenarios.household_access`);
- ``evening_lifeline_share``: share of household-days whose evening lifeline was delivered
  (the household could draw in every period of its plan's evening window), and
  ``evening_lifeline_share_physics_allows`` the same over the days physics allows
  (realised PV plus usable battery at the evening's start carry priority load and every
  lifeline, :func:`scenarios.household_access.evening_physics_allows`), whose share of
  days is ``physics_allows_day_share``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from scenarios.engine import RunResult

__all__ = [
    "BUSINESS_DAY_KWH",
    "SETTLE_TOLERANCE",
    "access_kpis",
    "rounds_to_settle",
    "run_kpis",
    "tidy",
    "tidy_kpis",
]

BUSINESS_DAY_KWH = 0.1
"""A day counts as a business day when businesses got more than this [kWh]: a mill's
quarter hour at 1.5 kW is 0.375 kWh, so 0.1 kWh excludes float noise and trickles only."""

SETTLE_TOLERANCE = 0.05
"""How close the 7-round mean stake share must stay to its final level to count as settled."""

_WINDOW = 7
_FINAL = 14


def rounds_to_settle(share: pd.Series, tolerance: float = SETTLE_TOLERANCE) -> float:
    """First round from which the rolling share stays within ``tolerance`` of its final level.

    Examples
    --------
    The 7-round mean reaches the final level 0.9 at round 8 (it lags the share by up to
    6 rounds, so the figure is conservative):

    >>> rounds_to_settle(pd.Series([0.2, 0.5] + [0.9] * 30))
    8.0
    """
    values = share.dropna().reset_index(drop=True)
    if len(values) < _WINDOW:
        return float("nan")
    rolling = values.rolling(_WINDOW, min_periods=1).mean()
    final = float(values.iloc[-_FINAL:].mean())
    outside = np.flatnonzero(np.abs(rolling.to_numpy() - final) > tolerance)
    first = 0 if outside.size == 0 else int(outside[-1]) + 1
    return float("nan") if first >= len(values) else float(first)


def access_kpis(daily: pd.DataFrame) -> dict[str, float]:
    """Business days, MTF tier shares and evening lifelines of a run's daily table.

    Examples
    --------
    Two days; on the first 3 of 4 households got their evening lifeline and physics
    allowed it, on the second physics did not allow it and 1 of 4 did:

    >>> d = pd.DataFrame({"business_kwh": [0.05, 4.0], "mtf_tier_0": [1.0, 3.0],
    ...                   "mtf_tier_1": [0.0, 0.0], "mtf_tier_2": [3.0, 1.0],
    ...                   "mtf_tier_3": [0.0] * 2, "mtf_tier_4": [0.0] * 2,
    ...                   "mtf_tier_5": [0.0] * 2, "lifeline_households": [4.0, 4.0],
    ...                   "lifeline_delivered": [3.0, 1.0], "physics_allows": [1.0, 0.0]})
    >>> k = access_kpis(d)
    >>> k["business_day_share"], k["business_kwh_on_business_days"], k["mtf_tier_2_share"]
    (0.5, 4.0, 0.5)
    >>> k["evening_lifeline_share"], k["evening_lifeline_share_physics_allows"]
    (0.5, 0.75)
    """
    business_days = daily["business_kwh"] > BUSINESS_DAY_KWH
    kpis = {
        "business_day_share": float(business_days.mean()) if len(daily) else float("nan"),
        "business_kwh_on_business_days": float(daily.loc[business_days, "business_kwh"].sum()),
    }
    if {"priority_kwh", "household_kwh"} <= set(daily.columns):
        delivered = float(
            (daily["priority_kwh"] + daily["household_kwh"] + daily["business_kwh"]).sum()
        )
        kpis["business_share"] = (
            float(daily["business_kwh"].sum()) / delivered if delivered else float("nan")
        )
    if "mtf_tier_0" not in daily:  # a run from before the engine rated households
        return kpis
    tiers = daily[[f"mtf_tier_{k}" for k in range(6)]].sum()
    household_days = float(tiers.sum())
    for k in range(6):
        kpis[f"mtf_tier_{k}_share"] = (
            float(tiers.iloc[k] / household_days) if household_days else float("nan")
        )
    allowed = daily["physics_allows"] > 0
    counted = float(daily["lifeline_households"].sum())
    counted_allowed = float(daily.loc[allowed, "lifeline_households"].sum())
    kpis["evening_lifeline_share"] = (
        float(daily["lifeline_delivered"].sum()) / counted if counted else float("nan")
    )
    kpis["physics_allows_day_share"] = float(allowed.mean())
    kpis["evening_lifeline_share_physics_allows"] = (
        float(daily.loc[allowed, "lifeline_delivered"].sum()) / counted_allowed
        if counted_allowed
        else float("nan")
    )
    return kpis


def run_kpis(result: RunResult) -> dict[str, float]:
    """The KPIs of one run (module docstring)."""
    d = result.daily
    sampled = d["oracle_value"].notna()
    oracle = float(d.loc[sampled, "oracle_value"].sum())
    households = float(d["households"].iloc[-1]) if len(d) else 0.0
    kpis = {
        "days": float(len(d)),
        "pv_available_kwh": float(d["pv_available_kwh"].sum()),
        "priority_kwh": float(d["priority_kwh"].sum()),
        "household_kwh": float(d["household_kwh"].sum()),
        "business_kwh": float(d["business_kwh"].sum()),
        "household_served_fraction": float(
            d["household_kwh"].sum() / max(d["household_demand_kwh"].sum(), 1e-9)
        ),
        "unserved_priority_kwh": float(d["unserved_priority_kwh"].sum()),
        "unserved_kwh": float(
            (
                d["priority_demand_kwh"]
                + d["household_demand_kwh"]
                - d["priority_kwh"]
                - d["household_kwh"]
            ).sum()
        ),
        "curtailed_kwh": float(d["curtailed_kwh"].sum()),
        "battery_throughput_kwh": float(d["battery_throughput_kwh"].sum()),
        "shed_spread_hours": float(result.shed_hours.max() - result.shed_hours.min())
        if len(result.shed_hours)
        else 0.0,
        "value": float(d["community_value"].sum()),
        "eta": float(d.loc[sampled, "community_value"].sum() / oracle)
        if oracle > 0
        else float("nan"),
        "eta_days": float(sampled.sum()),
        "stake_share_valuable_final": float(d["stake_share_valuable"].iloc[-_FINAL:].mean()),
        "stake_weighted_true_value_final": float(
            d["stake_weighted_true_value"].iloc[-_FINAL:].mean()
        ),
        "rounds_to_settle": rounds_to_settle(d["stake_share_valuable"]),
        "staker_rewards_coin_per_household": float(d["rewards_coin"].sum() / max(households, 1.0)),
        "tokens_slashed": float(d["slashed_tokens"].sum()),
        "seconds": result.seconds,
    }
    kpis |= access_kpis(d)
    kpis |= {f"ledger_{k}": v for k, v in result.ledger.items()}
    return kpis


def tidy(
    results: Iterable[RunResult], parameters: Mapping[int, Mapping[str, object]] | None = None
) -> pd.DataFrame:
    """Daily metrics of many runs, long: run, seed, day, date, metric, value.

    ``parameters`` maps a run to its sweep parameters, added as columns.
    """
    frames = []
    for r in results:
        long = r.daily.reset_index().melt(
            id_vars=["day", "date"], var_name="metric", value_name="value"
        )
        long.insert(0, "seed", r.seed)
        long.insert(0, "run", r.run)
        for name, value in (parameters or {}).get(r.run, {}).items():
            long[name] = pd.Series([value] * len(long), index=long.index, dtype=object)
        frames.append(long)
    return pd.concat(frames, ignore_index=True)


def tidy_kpis(
    results: Iterable[RunResult], parameters: Mapping[int, Mapping[str, object]] | None = None
) -> pd.DataFrame:
    """KPIs of many runs, long: ``run``, ``seed``, parameters…, ``metric``, ``value``."""
    rows = []
    for r in results:
        for metric, value in run_kpis(r).items():
            rows.append(
                {
                    "run": r.run,
                    "seed": r.seed,
                    **(parameters or {}).get(r.run, {}),
                    "metric": metric,
                    "value": value,
                }
            )
    return pd.DataFrame(rows)
