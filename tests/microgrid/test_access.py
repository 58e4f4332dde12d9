"""World Bank MTF tiers per household and day, against hand-worked days."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microgrid.access import MTF_THRESHOLDS, mtf_daily, mtf_tier_counts

IDX = pd.date_range("2026-03-02", periods=2 * 96, freq="15min", tz="UTC")
LOCAL = IDX.tz_convert("Africa/Niamey")


def day_of(supply_by_local_hour, watts: float) -> pd.Series:
    on = np.isin(LOCAL.hour, supply_by_local_hour)
    return pd.Series(np.where(on, watts, 0.0), index=IDX)


def test_each_attribute_caps_the_tier():
    supply = pd.DataFrame(
        {
            # 24 h at 2.5 kW, 10 kWh a day: tier 5 in everything.
            "full": day_of(range(24), 2_500.0),
            # Lights only in the evening, 40 W for 4 h: capacity tier 1 (< 50 W).
            "lamp": day_of([18, 19, 20, 21], 40.0),
            # 300 W from 08:00 to 20:00 (12 h, evening 2 h): evening caps at tier 2.
            "day_shop": day_of(range(8, 20), 300.0),
            # Dark all day: tier 0.
            "dark": day_of([], 0.0),
            # 2 W is below the 3 W tier-1 capacity: not supplied at all.
            "trickle": day_of(range(24), 2.0),
        }
    )
    energy = supply * 0.25 * 0.4  # 40 % of the capacity is used
    daily = mtf_daily(supply, energy, "Africa/Niamey")
    first = daily.xs(LOCAL[0].date(), level="date")
    assert first.loc["full", "tier"] == 5
    assert first.loc["lamp", ["tier_capacity_w", "tier_evening_hours", "tier"]].tolist() == [
        1,
        5,
        1,
    ]
    assert first.loc["day_shop", "hours_per_day"] == pytest.approx(12.0)
    assert first.loc["day_shop", "evening_hours"] == pytest.approx(2.0)
    assert first.loc["day_shop", ["tier_hours_per_day", "tier_evening_hours", "tier"]].tolist() == [
        3,
        2,
        2,
    ]
    assert first.loc["dark", "tier"] == 0
    assert first.loc["trickle", ["hours_per_day", "tier"]].tolist() == [0.0, 0]


def test_days_are_local_and_counted():
    # Supply 23:00–24:00 local only: on the 2nd local day that is 22:00–23:00 UTC.
    supply = pd.DataFrame({"H": day_of([23], 100.0)})
    daily = mtf_daily(supply, supply * 0.25, "Africa/Niamey")
    assert set(daily["hours_per_day"].round(6)) <= {1.0, 0.0}
    counts = mtf_tier_counts(daily)
    assert list(counts.columns) == [0, 1, 2, 3, 4, 5]
    assert counts.to_numpy().sum() == len(daily)


def test_thresholds_are_the_published_ones():
    assert MTF_THRESHOLDS.capacity_w == (3.0, 50.0, 200.0, 800.0, 2_000.0)
    assert MTF_THRESHOLDS.daily_energy_wh == (12.0, 200.0, 1_000.0, 3_400.0, 8_200.0)
    assert MTF_THRESHOLDS.hours_per_day == (4.0, 4.0, 8.0, 16.0, 23.0)
    assert MTF_THRESHOLDS.evening_hours == (1.0, 2.0, 3.0, 4.0, 4.0)


def test_mismatched_frames_are_refused():
    supply = pd.DataFrame({"H": day_of([1], 10.0)})
    with pytest.raises(ValueError, match="same periods"):
        mtf_daily(supply, supply.iloc[:10], "Africa/Niamey")
