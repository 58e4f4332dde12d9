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
- staker returns (coins rewarded per household, tokens slashed) and ledger totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from scenarios.engine import RunResult

__all__ = ["SETTLE_TOLERANCE", "rounds_to_settle", "run_kpis", "tidy", "tidy_kpis"]

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
