"""Demand profiles: exact energies, shapes on the local clock, aggregation, errors."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.demand import aggregate_demand, demand_kw, energy_kwh
from microgrid import ConnectionKind, PriorityProfile, Site, TimeGrid, load_site

SITE = load_site()
NIAMEY = "Africa/Niamey"
REPO = Path(__file__).resolve().parents[2]


def with_timezone(site: Site, timezone: str) -> Site:
    """The same community, placed in another timezone."""
    location = site.location.model_copy(update={"timezone": timezone})
    return site.model_copy(update={"location": location})


def local_index(demand: pd.DataFrame, timezone: str) -> pd.DatetimeIndex:
    return demand.index.tz_convert(timezone)


def daily_energy(demand: pd.DataFrame, timezone: str, step_hours: float) -> pd.DataFrame:
    """Energy [kWh] per local calendar day (periods grouped by the local date of their start)."""
    local = local_index(demand, timezone)
    return energy_kwh(demand, step_hours).groupby(local.tz_localize(None).normalize()).sum()


def annual_energies(site: Site) -> pd.Series:
    return pd.Series({c.id: c.annual_energy_kwh for c in site.households}, dtype=float)


@pytest.fixture(scope="module")
def year_2026() -> pd.DataFrame:
    grid = TimeGrid.from_days("2026-01-01", days=365, timezone=NIAMEY)
    return demand_kw(SITE, grid)


# --- frame layout -------------------------------------------------------------------


def test_frame_has_grid_index_and_site_columns(year_2026):
    grid = TimeGrid.from_days("2026-01-01", days=365, timezone=NIAMEY)
    assert year_2026.shape == (35_040, 400)
    pd.testing.assert_index_equal(year_2026.index, grid.index)
    assert year_2026.index.name == "time"
    assert str(year_2026.index.tz) == "UTC"
    assert list(year_2026.columns) == [c.id for c in SITE.connections]
    assert set(year_2026.dtypes) == {np.dtype("float64")}
    assert np.isfinite(year_2026.to_numpy()).all()
    assert (year_2026.to_numpy() >= 0).all()


# --- households: the year's energy is exact -----------------------------------------


@pytest.mark.parametrize(("year", "days"), [(2026, 365), (2028, 366)])
def test_household_energy_over_a_calendar_year_is_annual_energy(year, days):
    grid = TimeGrid.from_days(f"{year}-01-01", days=days, timezone=NIAMEY)
    demand = demand_kw(SITE, grid)
    annual = annual_energies(SITE)
    energy = energy_kwh(demand[annual.index], grid.step_hours).sum()
    np.testing.assert_allclose(energy.to_numpy(), annual.to_numpy(), rtol=1e-9)
    assert energy.sum() == pytest.approx(320 * 200.0, rel=1e-9)
    tiers = aggregate_demand(demand, SITE, by="kind")
    assert energy_kwh(tiers["household"], grid.step_hours).sum() == pytest.approx(64_000, rel=1e-9)


def test_household_energy_in_a_dst_year_is_annual_energy():
    site = with_timezone(SITE, "Europe/Berlin")
    grid = TimeGrid.from_days("2026-01-01", days=365, timezone="Europe/Berlin", step="1h")
    demand = demand_kw(site, grid)
    annual = annual_energies(site)
    energy = energy_kwh(demand[annual.index], grid.step_hours).sum()
    np.testing.assert_allclose(energy.to_numpy(), annual.to_numpy(), rtol=1e-9)


def test_dst_days_of_23_and_25_hours_keep_their_daily_energy():
    timezone = "Europe/Berlin"
    site = with_timezone(SITE, timezone)
    for first_day, short_or_long in [("2026-03-28", "2026-03-29"), ("2026-10-24", "2026-10-25")]:
        grid = TimeGrid.from_days(first_day, days=3, timezone=timezone)
        demand = demand_kw(site, grid)
        periods = (local_index(demand, timezone).normalize() == short_or_long).sum()
        assert periods in {23 * 4, 25 * 4}
        day = daily_energy(demand, timezone, grid.step_hours).loc[pd.Timestamp(short_or_long)]
        for c in site.households[:20]:
            assert day[c.id] == pytest.approx(c.annual_energy_kwh / 365, rel=1e-12)
        for c in site.priority_users:
            if c.priority.profile is not PriorityProfile.SCHOOL:  # a Sunday
                assert day[c.id] == pytest.approx(c.priority.daily_energy_kwh, rel=1e-12)
        for c in site.businesses:
            assert day[c.id] <= c.business.daily_energy_kwh * (1 + 1e-12)
        assert (demand[[c.id for c in site.businesses]] <= business_caps(site) + 1e-12).all().all()


# --- households: the evening peak, on the local clock -------------------------------


def household_hourly_profile(site: Site, first_day: str) -> pd.Series:
    """Mean household tier power [kW] by local hour of day over two weeks."""
    timezone = site.location.timezone
    grid = TimeGrid.from_days(first_day, days=14, timezone=timezone)
    households = aggregate_demand(demand_kw(site, grid), site)["household"]
    return households.groupby(local_index(households.to_frame(), timezone).hour).mean()


def test_household_peak_is_in_the_local_evening_at_the_site():
    profile = household_hourly_profile(SITE, "2026-06-01")
    assert 18 <= profile.idxmax() < 23
    # The weights peak 20:00–21:00 local (UTC+1 here); in UTC the peak would be at 21:00.
    assert profile.idxmax() == 20
    evening = profile.loc[18:22].mean()
    assert evening > 2 * profile.loc[9:16].mean()
    assert evening > 3 * profile.loc[0:4].mean()


@pytest.mark.parametrize("timezone", ["America/Lima", "Asia/Tokyo", "Europe/Berlin"])
def test_household_peak_follows_the_local_clock_in_other_timezones(timezone):
    # Far from UTC, a profile applied on the UTC clock would peak in the small hours
    # or the afternoon; Berlin checks both sides of DST.
    site = with_timezone(SITE, timezone)
    for first_day in ["2026-01-10", "2026-07-10"]:
        assert household_hourly_profile(site, first_day).idxmax() == 20


def test_households_are_spread_and_the_tier_is_smoother_than_one_household():
    grid = TimeGrid.from_days("2026-01-15", days=1, timezone=NIAMEY)
    demand = demand_kw(SITE, grid)
    households = demand[[c.id for c in SITE.households]]
    peak_times = local_index(households, NIAMEY)[households.to_numpy().argmax(axis=0)]
    assert len(set(peak_times)) >= 5
    hours = peak_times.hour + peak_times.minute / 60
    assert hours.min() >= 19.0
    assert hours.max() <= 21.0
    each = (households.max() / households.mean()).min()
    tier = households.sum(axis=1)
    assert tier.max() / tier.mean() < each


def test_household_spread_does_not_depend_on_the_interpreter_hash_seed():
    grid = TimeGrid.from_days("2026-01-15", days=1, timezone=NIAMEY)
    here = demand_kw(SITE, grid)[[c.id for c in SITE.households]].to_numpy().argmax(axis=0)
    script = (
        "import json\n"
        "from forecasts.demand import demand_kw\n"
        "from microgrid import TimeGrid, load_site\n"
        "site = load_site()\n"
        "grid = TimeGrid.from_days('2026-01-15', days=1, timezone='Africa/Niamey')\n"
        "demand = demand_kw(site, grid)[[c.id for c in site.households]]\n"
        "print(json.dumps(demand.to_numpy().argmax(axis=0).tolist()))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    assert json.loads(result.stdout) == here.tolist()


# --- businesses ---------------------------------------------------------------------


def business_caps(site: Site) -> pd.Series:
    return pd.Series({c.id: c.business.power_kw_max for c in site.businesses})


def test_business_power_never_exceeds_its_maximum(year_2026):
    caps = business_caps(SITE)
    assert (year_2026[caps.index] <= caps).all().all()


def test_every_business_gets_its_daily_energy_on_open_days_only(year_2026):
    energy = daily_energy(year_2026, NIAMEY, 0.25)
    for c in SITE.businesses:
        b = c.business
        for day in ["2026-01-15", "2026-04-15", "2026-07-15", "2026-11-30"]:
            month = pd.Timestamp(day).month
            expected = b.daily_energy_kwh if month in b.operating_months else 0.0
            assert energy.loc[pd.Timestamp(day), c.id] == pytest.approx(expected, rel=1e-9), (
                c.id,
                day,
            )


def test_rice_huller_runs_a_midday_block_at_minimum_power_in_season():
    huller = SITE.connection("B07_rice_huller")
    b = huller.business
    assert b.operating_months == (1, 2, 10, 11, 12)
    assert b.daily_energy_kwh / b.open_hours < b.power_kw_min  # the short-run case
    grid = TimeGrid.from_days("2026-01-20", days=1, timezone=NIAMEY, step="1min")
    power = demand_kw(SITE, grid)[huller.id]
    local = local_index(power.to_frame(), NIAMEY)
    assert energy_kwh(power, grid.step_hours).sum() == pytest.approx(b.daily_energy_kwh, rel=1e-9)
    outside = (local.hour < 8) | (local.hour >= 16)
    assert (power[outside] == 0).all()
    running = power[power > 0]
    # Only the minutes in which the run starts or ends may average below the minimum.
    assert (running < b.power_kw_min - 1e-9).sum() <= 2
    assert running.max() == pytest.approx(b.power_kw_min)
    assert running.max() <= b.power_kw_max
    # The block is centred in the opening hours, 08–16.
    on = local[power.to_numpy() > 0]
    middle = (on[0].hour * 60 + on[0].minute + on[-1].hour * 60 + on[-1].minute + 1) / 2
    assert middle == pytest.approx(12 * 60, abs=1)


def test_rice_huller_is_off_out_of_season(year_2026):
    power = year_2026["B07_rice_huller"]
    months = local_index(power.to_frame(), NIAMEY).month
    assert (power[~months.isin([1, 2, 10, 11, 12])] == 0).all()
    assert (power[months == 1] > 0).any()


def test_irrigation_pump_is_flat_through_its_hours_when_energy_allows():
    pump = SITE.connection("B10_irrigation_pump")
    b = pump.business
    assert b.daily_energy_kwh / b.open_hours >= b.power_kw_min  # the flat case
    grid = TimeGrid.from_days("2026-03-10", days=1, timezone=NIAMEY)
    power = demand_kw(SITE, grid)[pump.id]
    local = local_index(power.to_frame(), NIAMEY)
    inside = (local.hour >= b.opening_hour) & (local.hour < b.closing_hour)
    np.testing.assert_allclose(power[inside], b.daily_energy_kwh / b.open_hours, rtol=1e-9)
    assert (power[~inside] == 0).all()
    july = TimeGrid.from_days("2026-07-10", days=1, timezone=NIAMEY)
    assert (demand_kw(SITE, july)[pump.id] == 0).all()


# --- priority users -----------------------------------------------------------------


def priority_ids(profile: PriorityProfile) -> list[str]:
    return [c.id for c in SITE.priority_users if c.priority.profile is profile]


def test_water_pump_runs_in_sun_hours_and_street_light_at_night(year_2026):
    local = local_index(year_2026, NIAMEY)
    hour = local.hour
    pumps = year_2026[priority_ids(PriorityProfile.WATER_PUMP)]
    lights = year_2026[priority_ids(PriorityProfile.STREET_LIGHT)]
    night = (hour >= 20) | (hour < 6)
    noon = (hour >= 11) & (hour < 14)
    assert (pumps[night] == 0).all().all()
    assert (pumps[noon] > 0).all().all()
    assert (lights[noon] == 0).all().all()
    assert (lights[(hour >= 22) | (hour < 5)] > 0).all().all()
    # Minutes matter: lights on at 18:30 local (17:30 UTC), not before.
    minute = hour * 60 + local.minute
    assert (lights[minute == 18 * 60 + 15] == 0).all().all()
    assert (lights[minute == 18 * 60 + 30] > 0).all().all()
    assert (lights[minute == 6 * 60 + 30] == 0).all().all()


def test_clinic_and_telecom_run_around_the_clock(year_2026):
    clinics = year_2026[priority_ids(PriorityProfile.CLINIC)]
    telecom = year_2026[priority_ids(PriorityProfile.TELECOM)]
    assert (clinics > 0).all().all()
    hour = local_index(clinics, NIAMEY).hour
    assert (clinics[hour == 10].mean() > 1.5 * clinics[hour == 2].mean()).all()
    for c in SITE.priority_users:
        if c.priority.profile is PriorityProfile.TELECOM:
            np.testing.assert_allclose(telecom[c.id], c.priority.daily_energy_kwh / 24, rtol=1e-9)


def test_school_is_closed_at_weekends_and_gets_its_energy_on_school_days(year_2026):
    energy = daily_energy(year_2026, NIAMEY, 0.25)
    saturday, sunday, monday = (pd.Timestamp(d) for d in ["2026-03-14", "2026-03-15", "2026-03-16"])
    assert saturday.day_name() == "Saturday"
    for c in SITE.priority_users:
        if c.priority.profile is PriorityProfile.SCHOOL:
            assert energy.loc[saturday, c.id] == 0
            assert energy.loc[sunday, c.id] == 0
            assert energy.loc[monday, c.id] == pytest.approx(c.priority.daily_energy_kwh)


def test_every_priority_user_gets_its_daily_energy(year_2026):
    energy = daily_energy(year_2026, NIAMEY, 0.25)
    wednesday = pd.Timestamp("2026-05-20")
    for c in SITE.priority_users:
        assert energy.loc[wednesday, c.id] == pytest.approx(c.priority.daily_energy_kwh, rel=1e-9)


# --- any grid gives the same energy for the same time -------------------------------


def test_15_min_and_1_h_steps_agree_per_day_and_per_hour(year_2026):
    hourly = demand_kw(SITE, TimeGrid.from_days("2026-01-01", days=365, timezone=NIAMEY, step="1h"))
    pd.testing.assert_frame_equal(
        daily_energy(year_2026, NIAMEY, 0.25), daily_energy(hourly, NIAMEY, 1.0), rtol=1e-9
    )
    pd.testing.assert_frame_equal(
        year_2026.resample("1h").mean(), hourly, rtol=1e-9, atol=1e-12, check_freq=False
    )


@pytest.mark.parametrize("timezone", ["Asia/Kathmandu", "Europe/Berlin"])
def test_grids_not_aligned_to_local_hours_integrate_exactly(timezone):
    # Kathmandu is UTC+5:45, so UTC hours cut its local quarter hours; the Berlin span
    # crosses the spring DST change.
    site = with_timezone(SITE, timezone)
    start = pd.Timestamp("2026-03-27 00:07", tz="UTC")
    coarse = demand_kw(site, TimeGrid(start, periods=96, step=pd.Timedelta("1h")))
    fine = demand_kw(site, TimeGrid(start, periods=96 * 12, step=pd.Timedelta("5min")))
    fine_hours = fine.groupby(np.arange(len(fine)) // 12).mean().set_axis(coarse.index)
    pd.testing.assert_frame_equal(fine_hours, coarse, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    start=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2060, 12, 31)),
    step=st.sampled_from(["15min", "30min", "1h"]),
    days=st.integers(min_value=1, max_value=8),
    timezone=st.sampled_from([NIAMEY, "Europe/Berlin", "America/New_York"]),
)
def test_household_energy_per_local_day_is_annual_over_days_in_year(start, step, days, timezone):
    site = with_timezone(SITE, timezone)
    households = list(site.households[::16])
    # Whole local days, which may be 23 or 25 hours long around a DST change.
    first = pd.Timestamp(start).tz_localize(timezone)
    end = (pd.Timestamp(start) + pd.Timedelta(days=days)).tz_localize(timezone)
    grid = TimeGrid(first, periods=int((end - first) / pd.Timedelta(step)), step=step)
    demand = demand_kw(site, grid)[[c.id for c in households]]
    energy = daily_energy(demand, timezone, grid.step_hours)
    assert len(energy) == days
    for day in energy.index:
        year_days = 366 if calendar.isleap(day.year) else 365
        for c in households:
            assert energy.loc[day, c.id] == pytest.approx(c.annual_energy_kwh / year_days, rel=1e-9)


# --- aggregation ----------------------------------------------------------------------


def test_aggregate_by_kind_sums_to_the_total(year_2026):
    tiers = aggregate_demand(year_2026, SITE, by="kind")
    assert list(tiers.columns) == ["priority", "household", "business"]
    pd.testing.assert_index_equal(tiers.index, year_2026.index)
    np.testing.assert_allclose(tiers.sum(axis=1), year_2026.sum(axis=1), rtol=1e-12)
    businesses = [c.id for c in SITE.connections if c.kind is ConnectionKind.BUSINESS]
    np.testing.assert_allclose(tiers["business"], year_2026[businesses].sum(axis=1), rtol=1e-12)


def test_aggregate_by_relay_group_gives_32_groups(year_2026):
    groups = aggregate_demand(year_2026, SITE, by="relay_group")
    assert groups.shape == (35_040, 32)
    assert list(groups.columns) == [g.id for g in SITE.relay_groups]
    members = [c.id for c in SITE.households if c.relay_group == "HG07"]
    np.testing.assert_allclose(groups["HG07"], year_2026[members].sum(axis=1), rtol=1e-12)
    tiers = aggregate_demand(year_2026, SITE, by="kind")
    np.testing.assert_allclose(groups.sum(axis=1), tiers["household"], rtol=1e-12)


def test_aggregate_of_a_subset_keeps_every_tier():
    grid = TimeGrid.from_days("2026-01-15", days=1, timezone=NIAMEY, step="1h")
    demand = demand_kw(SITE, grid)[["H001", "B01_grain_mill"]]
    tiers = aggregate_demand(demand, SITE)
    assert (tiers["priority"] == 0).all()
    np.testing.assert_allclose(tiers["household"], demand["H001"])


def test_aggregate_rejects_an_unknown_grouping(year_2026):
    with pytest.raises(ValueError, match=r"'feeder'.*'kind'.*'relay_group'"):
        aggregate_demand(year_2026.iloc[:4], SITE, by="feeder")


def test_aggregate_rejects_columns_that_are_not_connections():
    grid = TimeGrid.from_days("2026-01-15", days=1, timezone=NIAMEY, step="1h")
    demand = demand_kw(SITE, grid).assign(X999=1.0, Y1=2.0)
    with pytest.raises(ValueError, match=r"X999.*Y1"):
        aggregate_demand(demand, SITE)


# --- energy_kwh -----------------------------------------------------------------------


def test_energy_kwh_of_series_and_frame():
    power = pd.DataFrame({"a": [1.0, 2.0], "b": [4.0, 0.0]})
    pd.testing.assert_frame_equal(energy_kwh(power, 0.5), power / 2)
    pd.testing.assert_series_equal(energy_kwh(power["a"], 0.25), power["a"] / 4)
    with pytest.raises(ValueError, match="step_hours"):
        energy_kwh(power, 0.0)
