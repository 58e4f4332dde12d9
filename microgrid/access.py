"""Energy access per household and day: the World Bank Multi-Tier Framework (MTF).

Funders and operators of mini-grids report access with the MTF for household electricity
supply (Bhatia & Angelou, *Beyond Connections: Energy Access Redefined*, ESMAP Technical
Report 008/15, World Bank 2015, table 1.1 "Multi-tier matrix for access to household
electricity supply"). Of its attributes, the four a mini-grid controller measures are
computed here; the overall tier is the lowest tier over them, as the MTF defines it.

========================  =======  =======  =======  =======  =======
attribute                 tier 1   tier 2   tier 3   tier 4   tier 5
========================  =======  =======  =======  =======  =======
capacity (peak power)     ≥ 3 W    ≥ 50 W   ≥ 200 W  ≥ 800 W  ≥ 2 kW
daily capacity (energy)   ≥ 12 Wh  ≥ 200 Wh ≥ 1 kWh  ≥ 3.4 kWh ≥ 8.2 kWh
hours of supply per day   ≥ 4 h    ≥ 4 h    ≥ 8 h    ≥ 16 h   ≥ 23 h
hours in the evening      ≥ 1 h    ≥ 2 h    ≥ 3 h    ≥ 4 h    ≥ 4 h
========================  =======  =======  =======  =======  =======

The evening is the four hours the MTF counts, taken here as 18:00–22:00 local time (a
setting). Reliability, quality, affordability, legality and safety are not measured by a
controller and not rated. A period counts as supplied when the connection could draw at
least the tier-1 power (3 W): its relay closed, its meter's limit above 3 W and its
budget not exhausted, and the container not dark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MTF_THRESHOLDS", "MtfThresholds", "mtf_daily", "mtf_tier_counts"]


@dataclass(frozen=True, slots=True)
class MtfThresholds:
    """Lower edges of tiers 1–5 for each measured attribute (ESMAP 008/15, table 1.1)."""

    capacity_w: tuple[float, ...] = (3.0, 50.0, 200.0, 800.0, 2_000.0)
    daily_energy_wh: tuple[float, ...] = (12.0, 200.0, 1_000.0, 3_400.0, 8_200.0)
    hours_per_day: tuple[float, ...] = (4.0, 4.0, 8.0, 16.0, 23.0)
    evening_hours: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 4.0)
    evening: tuple[int, int] = (18, 22)
    """Local hours ``[start, end)`` of the evening."""


MTF_THRESHOLDS = MtfThresholds()


def _tier(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Highest tier whose lower edge each value reaches (0 below tier 1)."""
    # A tiny tolerance so that exactly 4.0 h of 15-min periods is not 3.9999 h.
    return np.searchsorted(np.asarray(edges) - 1e-9, values, side="right")


def mtf_daily(
    supply_w: pd.DataFrame,
    energy_wh: pd.DataFrame,
    timezone: str,
    thresholds: MtfThresholds = MTF_THRESHOLDS,
) -> pd.DataFrame:
    """MTF attributes and tiers per household and local day.

    Parameters
    ----------
    supply_w : DataFrame
        Power each household could draw in each period [W] (0 while dark), indexed by
        period start (aware, regular), one column per household.
    energy_wh : DataFrame
        Energy delivered to each household in each period [Wh], same shape.
    timezone : str
        The site's timezone (days and the evening are local).
    thresholds : MtfThresholds

    Returns
    -------
    DataFrame
        Indexed by (date, household): ``capacity_w``, ``daily_energy_wh``,
        ``hours_per_day``, ``evening_hours``, a ``tier_*`` column for each and the overall
        ``tier`` (0–5, the lowest of the four).

    Examples
    --------
    >>> idx = pd.date_range("2026-03-02", periods=96, freq="15min", tz="UTC")
    >>> on = (idx.hour >= 17) & (idx.hour < 22)  # 18:00–23:00 in Niamey (UTC+1)
    >>> supply = pd.DataFrame({"H001": np.where(on, 100.0, 0.0)}, index=idx)
    >>> energy = supply * 0.25 * 0.8
    >>> day = mtf_daily(supply, energy, "Africa/Niamey").iloc[0]
    >>> day[["capacity_w", "daily_energy_wh", "hours_per_day", "evening_hours"]].tolist()
    [100.0, 400.0, 5.0, 4.0]
    >>> int(day["tier"])  # capacity 100 W: tier 2
    2
    """
    if supply_w.shape != energy_wh.shape or not supply_w.index.equals(energy_wh.index):
        msg = "supply_w and energy_wh must have the same periods and households"
        raise ValueError(msg)
    times = supply_w.index
    if not isinstance(times, pd.DatetimeIndex) or len(times) < 2 or times.tz is None:
        msg = "supply_w needs an aware, regular DatetimeIndex of at least two periods"
        raise ValueError(msg)
    step_h = (times[1] - times[0]) / pd.Timedelta(hours=1)
    local = times.tz_convert(timezone)
    supplied = supply_w >= thresholds.capacity_w[0]
    start, end = thresholds.evening
    evening = (local.hour >= start) & (local.hour < end)
    days = pd.Index(local.normalize().tz_localize(None).date, name="date")
    per_day = {
        "capacity_w": supply_w.where(supplied, 0.0).groupby(days).max(),
        "daily_energy_wh": energy_wh.groupby(days).sum(),
        "hours_per_day": (supplied * step_h).groupby(days).sum(),
        "evening_hours": (supplied.loc[evening] * step_h).groupby(days[evening]).sum(),
    }
    dates = per_day["capacity_w"].index
    index = pd.MultiIndex.from_product([dates, supply_w.columns], names=["date", "household"])
    frame = pd.DataFrame(
        {
            name: table.reindex(dates, fill_value=0.0).to_numpy(dtype=float).ravel()
            for name, table in per_day.items()
        },
        index=index,
    )
    edges = {
        "capacity_w": thresholds.capacity_w,
        "daily_energy_wh": thresholds.daily_energy_wh,
        "hours_per_day": thresholds.hours_per_day,
        "evening_hours": thresholds.evening_hours,
    }
    for name, attribute_edges in edges.items():
        frame[f"tier_{name}"] = _tier(frame[name].to_numpy(), attribute_edges)
    frame["tier"] = frame[[f"tier_{n}" for n in edges]].min(axis=1).astype(int)
    return frame


def mtf_tier_counts(daily: pd.DataFrame) -> pd.DataFrame:
    """Households per overall tier and day (columns tier 0–5), from :func:`mtf_daily`."""
    tiers = daily["tier"].reset_index()
    counts = pd.crosstab(tiers["date"], tiers["tier"])
    return counts.reindex(columns=range(6), fill_value=0)
