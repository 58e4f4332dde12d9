"""Weather adapters, the synthetic generator and regridding (forecasts.weather)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasts import weather as weather_module
from forecasts.weather import (
    DAY_TYPES,
    WeatherDataError,
    parse_forecast_feed,
    read_epw,
    read_weather_csv,
    synthetic_day_types,
    synthetic_weather,
    weather_on_grid,
)
from microgrid.site import Location

DATA = Path(__file__).resolve().parents[1] / "data" / "weather"
CSV_SAMPLE = DATA / "sample_15min.csv"
EPW_SAMPLE = DATA / "niamey_sample.epw"
FEED_SAMPLE = DATA / "open_meteo_niamey_hourly.json"

NIAMEY = Location(latitude=13.5, longitude=2.1, altitude_m=210.0, timezone="Africa/Niamey")
BERLIN = Location(latitude=52.5, longitude=13.4, altitude_m=35.0, timezone="Europe/Berlin")


def test_public_api_is_listed() -> None:
    for name in weather_module.__all__:
        member = getattr(weather_module, name)
        if callable(member):
            assert member.__module__ == "forecasts.weather"
    functions = {
        n for n, m in vars(weather_module).items() if callable(m) and not n.startswith("_")
    }
    own = {n for n in functions if getattr(weather_module, n).__module__ == "forecasts.weather"}
    assert own <= set(weather_module.__all__)


def assert_weather_frame(frame: pd.DataFrame) -> None:
    """The contract every function of the module keeps."""
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "time"
    assert frame.index.is_monotonic_increasing
    assert frame.index.is_unique
    assert not frame.isna().any().any()


def ghi_centroid_utc_hours(frame: pd.DataFrame, day: str) -> float:
    """GHI-weighted mean time of day [h UTC] of one UTC day, using period midpoints."""
    step = frame.index[1] - frame.index[0]
    one = frame.loc[day]
    midpoints = one.index + step / 2
    hours = (midpoints - midpoints.normalize()) / pd.Timedelta(hours=1)
    return float((hours.to_numpy() * one["ghi"].to_numpy()).sum() / one["ghi"].sum())


# Solar noon at 2.1 E is 12:00 − 8.4 min − equation of time: ≈ 11:55 UTC in early January
# and ≈ 12:04 UTC in early March. A label off by an hour (end vs start, local vs UTC) moves
# the irradiance centroid by 60 min; 15 min of tolerance separates the two clearly.
NOON_TOLERANCE_H = 0.25


# --- CSV -------------------------------------------------------------------------------------

HEADER = "time,ghi,temp_air,wind_speed,cloud_cover"


def quarter_hour_lines(n: int = 12, start: str = "2026-03-01T08:00:00+00:00") -> list[str]:
    """``n`` good 15-min rows with values that are easy to check (ghi = 100 + 10·k)."""
    times = pd.date_range(start, periods=n, freq="15min")
    return [
        f"{t.isoformat()},{100 + 10 * k},{25 + 0.5 * k},{3.0},{0.2}" for k, t in enumerate(times)
    ]


def write_csv(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "weather.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def test_read_weather_csv_sample_converts_offsets_and_percent() -> None:
    weather = read_weather_csv(CSV_SAMPLE)
    assert_weather_frame(weather)
    assert list(weather.columns) == ["ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover"]
    assert len(weather) == 96
    # 00:00 at +01:00 is 23:00 UTC the day before.
    assert weather.index[0] == pd.Timestamp("2026-02-28T23:00Z")
    assert (weather.index[1:] - weather.index[:-1] == pd.Timedelta("15min")).all()
    with CSV_SAMPLE.open(encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    percent = np.array([float(r["cloud_cover_percent"]) for r in raw])
    np.testing.assert_allclose(weather["cloud_cover"].to_numpy(), percent / 100)
    np.testing.assert_array_equal(weather["ghi"].to_numpy(), [float(r["ghi"]) for r in raw])
    assert abs(ghi_centroid_utc_hours(weather, "2026-03-01") - 12.07) < NOON_TOLERANCE_H


def test_read_weather_csv_round_trip(tmp_path: Path) -> None:
    index = pd.date_range("2026-06-01", periods=24, freq="h", tz="UTC", name="time")
    rng = np.random.default_rng(0)
    original = pd.DataFrame(
        {
            "ghi": np.round(rng.uniform(0, 1000, 24), 1),
            "dni": np.round(rng.uniform(0, 900, 24), 1),
            "dhi": np.round(rng.uniform(0, 300, 24), 1),
            "temp_air": np.round(rng.uniform(20, 40, 24), 2),
            "wind_speed": np.round(rng.uniform(0, 8, 24), 2),
            "cloud_cover": np.round(rng.uniform(0, 1, 24), 3),
        },
        index=index,
    )
    # Written the documented way: ISO 8601 with an offset, here local time at +01:00.
    written = original.copy()
    written.index = [t.tz_convert("Africa/Niamey").isoformat() for t in index]
    path = tmp_path / "round_trip.csv"
    written.to_csv(path, index_label="time")
    pd.testing.assert_frame_equal(read_weather_csv(path), original, check_freq=False)


def replace_line(lines: list[str], k: int, old: str, new: str) -> list[str]:
    out = list(lines)
    assert old in out[k]
    out[k] = out[k].replace(old, new, 1)
    return out


@pytest.mark.parametrize(
    ("header", "edit", "expected"),
    [
        pytest.param(
            HEADER,
            lambda lines: lines[:4] + lines[8:],
            [
                "1 gap in the 15min series",
                "after 2026-03-01T08:45:00+00:00 (line 5)",
                "4 row(s) (1h) missing",
                "pass fill='interpolate'",
            ],
            id="gap",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 5, ",150,", ",,"),
            ["column 'ghi' has 1 missing value(s)", "2026-03-01T09:15:00+00:00 (line 7)"],
            id="nan",
        ),
        pytest.param(
            HEADER,
            lambda lines: [*lines[:3], lines[2], *lines[3:]],
            ["duplicate time 2026-03-01T08:30:00+00:00 (line 4 and line 5)", "one row per time"],
            id="duplicate",
        ),
        pytest.param(
            HEADER,
            lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
            ["not sorted", "2026-03-01T08:15:00+00:00 (line 4)", "sort the file by time"],
            id="unsorted",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 2, "+00:00", ""),
            [
                "time '2026-03-01T08:30:00' (line 4) has no UTC offset",
                "'2026-03-01T08:30:00+01:00' for UTC+1",
            ],
            id="naive",
        ),
        pytest.param(
            HEADER.replace("cloud_cover", "cloudiness"),
            lambda lines: lines,
            ["unknown column(s) 'cloudiness'", "use only 'time' and"],
            id="unknown-column",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 3, ",130,", ",-5,"),
            ["column 'ghi' is -5 at 2026-03-01T08:45:00+00:00 (line 5)", "[0, 1500] W/m²"],
            id="negative-ghi",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 0, ",0.2", ",1.5"),
            ["column 'cloud_cover' is 1.5", "[0, 1] fraction"],
            id="cloud-above-one",
        ),
        pytest.param(
            HEADER.replace("cloud_cover", "cloud_cover_percent"),
            lambda lines: replace_line(lines, 0, ",0.2", ",120"),
            ["column 'cloud_cover_percent' is 120", "[0, 100] %"],
            id="percent-above-100",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 1, ",3.0,", ",-1,"),
            ["column 'wind_speed' is -1", "[0, 115] m/s"],
            id="negative-wind",
        ),
        pytest.param(
            HEADER,
            lambda lines: replace_line(lines, 2, ",26.0,", ",warm,"),
            ["column 'temp_air' line 4: 'warm' is not a number"],
            id="non-numeric",
        ),
        pytest.param(
            HEADER,
            # Hourly rows, then the same file continues at 15 min.
            lambda lines: [
                lines[0],
                lines[4],
                lines[8],
                *quarter_hour_lines(8, "2026-03-01T11:00Z"),
            ],
            ["irregular time step", "is again 1h after the previous row", "one regular step"],
            id="mixed-steps",
        ),
    ],
)
def test_read_weather_csv_rejects_bad_files(
    tmp_path: Path, header: str, edit: Callable[[list[str]], list[str]], expected: list[str]
) -> None:
    path = write_csv(tmp_path, edit(quarter_hour_lines()), header)
    with pytest.raises(WeatherDataError) as info:
        read_weather_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message


def test_read_weather_csv_off_step_time_is_irregular(tmp_path: Path) -> None:
    lines = replace_line(quarter_hour_lines(), 6, "09:30", "09:37")
    with pytest.raises(WeatherDataError, match="irregular time step: the usual step is 15min"):
        read_weather_csv(write_csv(tmp_path, lines))


def test_fill_interpolate_bridges_a_one_hour_gap(tmp_path: Path) -> None:
    lines = quarter_hour_lines(16)
    # Drop 08:45 … 09:30: one hour without rows between 08:30 and 09:45.
    path = write_csv(tmp_path, lines[:3] + lines[7:])
    with pytest.raises(WeatherDataError, match="4 row"):
        read_weather_csv(path)
    weather = read_weather_csv(path, fill="interpolate")
    assert_weather_frame(weather)
    assert len(weather) == 16
    # ghi rises by 10 W/m² per row in the file, so the filled values continue the line.
    np.testing.assert_allclose(weather["ghi"].to_numpy(), 100 + 10 * np.arange(16))
    np.testing.assert_allclose(weather["temp_air"].to_numpy(), 25 + 0.5 * np.arange(16))


def test_fill_interpolate_fills_an_empty_cell(tmp_path: Path) -> None:
    lines = replace_line(quarter_hour_lines(), 5, ",150,", ",,")
    weather = read_weather_csv(write_csv(tmp_path, lines), fill="interpolate")
    assert weather["ghi"].iloc[5] == pytest.approx(150.0)


def test_fill_interpolate_rejects_a_six_hour_gap(tmp_path: Path) -> None:
    lines = quarter_hour_lines(40)
    path = write_csv(tmp_path, lines[:4] + lines[28:])  # 24 rows = 6 h missing
    with pytest.raises(WeatherDataError) as info:
        read_weather_csv(path, fill="interpolate")
    message = str(info.value)
    assert "gap of 6h from 2026-03-01T09:00:00+00:00" in message
    assert "longer than max_gap=3h" in message
    # A longer max_gap accepts it.
    assert len(read_weather_csv(path, fill="interpolate", max_gap="6h")) == 40


def test_fill_interpolate_cannot_fill_the_edges(tmp_path: Path) -> None:
    lines = replace_line(quarter_hour_lines(), 0, ",100,", ",,")
    with pytest.raises(WeatherDataError, match="missing at the start of the file"):
        read_weather_csv(write_csv(tmp_path, lines), fill="interpolate")


def test_weather_data_error_keeps_its_parts_through_pickle() -> None:
    error = WeatherDataError("w.csv", "1 gap", "pass fill='interpolate'")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.problem, copy.fix) == ("w.csv", "1 gap", "pass fill='interpolate'")
    assert str(copy) == "w.csv: 1 gap; pass fill='interpolate'"
    assert isinstance(copy, ValueError)


def test_read_weather_csv_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeatherDataError, match="cannot read the file"):
        read_weather_csv(tmp_path / "nowhere.csv")


def test_read_weather_csv_rejects_bad_fill() -> None:
    with pytest.raises(ValueError, match="fill must be"):
        read_weather_csv(CSV_SAMPLE, fill="ffill")  # type: ignore[arg-type]


# --- EPW -------------------------------------------------------------------------------------


def epw_rows() -> list[list[str]]:
    with EPW_SAMPLE.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))[8:]


def test_read_epw_labels_hours_by_their_start_in_utc() -> None:
    weather = read_epw(EPW_SAMPLE)
    assert_weather_frame(weather)
    assert list(weather.columns) == ["ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover"]
    assert len(weather) == 48
    # EPW hour 1 of 1 January at UTC+1 is 00:00–01:00 local: it starts at 23:00 UTC.
    assert weather.index[0] == pd.Timestamp("2025-12-31T23:00Z")
    assert weather.index[-1] == pd.Timestamp("2026-01-02T22:00Z")
    rows = epw_rows()
    np.testing.assert_array_equal(weather["ghi"].to_numpy(), [float(r[13]) for r in rows])
    # The irradiance centroid sits at solar noon (≈ 11:55 UTC), not an hour off.
    assert abs(ghi_centroid_utc_hours(weather, "2026-01-01") - 11.92) < NOON_TOLERANCE_H


def test_read_epw_converts_sky_cover_tenths_to_a_fraction() -> None:
    weather = read_epw(EPW_SAMPLE)
    tenths = np.array([float(r[22]) for r in epw_rows()])
    assert tenths.max() > 1  # the sample does vary
    np.testing.assert_allclose(weather["cloud_cover"].to_numpy(), tenths / 10)
    assert weather["cloud_cover"].between(0, 1).all()


def test_read_epw_rejects_missing_codes(tmp_path: Path) -> None:
    lines = EPW_SAMPLE.read_text(encoding="utf-8").splitlines()
    fields = lines[8 + 12].split(",")
    fields[13] = "9999"  # EPW's code for a missing GHI
    lines[8 + 12] = ",".join(fields)
    path = tmp_path / "missing.epw"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(WeatherDataError) as info:
        read_epw(path)
    assert "EPW field 'ghi' has 1 missing value(s)" in str(info.value)
    assert "2026-01-01T11:00:00+00:00 (line 21)" in str(info.value)


def test_read_epw_translates_parse_errors(tmp_path: Path) -> None:
    path = tmp_path / "not.epw"
    path.write_text("this is not an EPW file\n", encoding="utf-8")
    with pytest.raises(WeatherDataError, match="not a valid EPW file"):
        read_epw(path)


# --- Open-Meteo feed -------------------------------------------------------------------------


def feed_payload(**changes: object) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "latitude": 13.5,
        "longitude": 2.125,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "hourly_units": {
            "time": "iso8601",
            "cloud_cover": "%",
            "temperature_2m": "°C",
            "wind_speed_10m": "km/h",
        },
        "hourly": {
            "time": ["2026-03-01T10:00", "2026-03-01T11:00", "2026-03-01T12:00"],
            "cloud_cover": [0, 50, 100],
            "temperature_2m": [30.0, 32.5, 34.0],
            "wind_speed_10m": [36.0, 18.0, 0.0],
        },
    }
    payload.update(changes)
    return payload


def test_parse_forecast_feed_converts_units_and_ends_in_utc() -> None:
    weather = parse_forecast_feed(feed_payload())
    assert_weather_frame(weather)
    assert list(weather.index) == list(
        pd.date_range("2026-03-01T10:00Z", periods=3, freq="h", name="time")
    )
    assert weather["wind_speed"].tolist() == [10.0, 5.0, 0.0]  # km/h ÷ 3.6
    assert weather["cloud_cover"].tolist() == [0.0, 0.5, 1.0]  # % ÷ 100
    assert weather["temp_air"].tolist() == [30.0, 32.5, 34.0]


def test_parse_forecast_feed_sample_shifts_radiation_to_period_start() -> None:
    text = FEED_SAMPLE.read_text(encoding="utf-8")
    raw = json.loads(text)["hourly"]
    weather = parse_forecast_feed(text.encode("utf-8"))
    assert_weather_frame(weather)
    # Local 2026-03-01T00:00 at UTC+1 is 23:00 UTC; the last hour has no radiation period.
    assert weather.index[0] == pd.Timestamp("2026-02-28T23:00Z")
    assert len(weather) == len(raw["time"]) - 1
    np.testing.assert_allclose(weather["wind_speed"], np.array(raw["wind_speed_10m"][:-1]) / 3.6)
    np.testing.assert_allclose(weather["cloud_cover"], np.array(raw["cloud_cover"][:-1]) / 100)
    # Radiation at payload hour t+1 is the mean of [t, t+1): it labels the row starting at t.
    np.testing.assert_allclose(weather["ghi"], raw["shortwave_radiation"][1:])
    assert abs(ghi_centroid_utc_hours(weather, "2026-03-01") - 12.07) < NOON_TOLERANCE_H


def test_parse_forecast_feed_accepts_metres_per_second_and_local_offsets() -> None:
    payload = feed_payload(utc_offset_seconds=3600)
    payload["hourly_units"]["wind_speed_10m"] = "m/s"
    weather = parse_forecast_feed(json.dumps(payload))
    assert weather.index[0] == pd.Timestamp("2026-03-01T09:00Z")
    assert weather["wind_speed"].tolist() == [36.0, 18.0, 0.0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda p: p["hourly_units"].update(wind_speed_10m="furlong/fortnight"),
            "unknown unit 'furlong/fortnight' for 'wind_speed_10m'",
            id="unknown-unit",
        ),
        pytest.param(
            lambda p: p["hourly"]["cloud_cover"].__setitem__(1, None),
            "'cloud_cover' (as cloud_cover) has 1 null(s), the first at 2026-03-01T11:00:00+00:00",
            id="null",
        ),
        pytest.param(
            lambda p: p["hourly"]["temperature_2m"].pop(),
            "'hourly.temperature_2m' has 2 values but 'hourly.time' has 3",
            id="length",
        ),
        pytest.param(
            lambda p: p.pop("utc_offset_seconds"), "'utc_offset_seconds' is None", id="no-offset"
        ),
        pytest.param(lambda p: p.pop("hourly"), "no 'hourly' object", id="no-hourly"),
        pytest.param(
            lambda p: p["hourly"]["cloud_cover"].__setitem__(0, 130),
            "'cloud_cover' (as cloud_cover) is 1.3",
            id="out-of-range",
        ),
    ],
)
def test_parse_forecast_feed_rejects_bad_payloads(
    change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    payload = feed_payload()
    change(payload)
    with pytest.raises(WeatherDataError) as info:
        parse_forecast_feed(payload)
    assert str(info.value).startswith("<payload>: ")
    assert expected in str(info.value)


def test_parse_forecast_feed_rejects_invalid_json() -> None:
    with pytest.raises(WeatherDataError, match="<payload>: not valid JSON"):
        parse_forecast_feed("{'hourly': ")


# --- synthetic weather -----------------------------------------------------------------------

YEAR_2026 = pd.date_range(
    "2026-01-01", "2027-01-01", freq="h", tz="Africa/Niamey", inclusive="left"
)


def local_times(frame: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame.index).tz_convert("Africa/Niamey")


@pytest.fixture(scope="module")
def sahel_year() -> pd.DataFrame:
    return synthetic_weather(YEAR_2026, NIAMEY, seed=42)


def test_synthetic_weather_is_reproducible(sahel_year: pd.DataFrame) -> None:
    again = synthetic_weather(YEAR_2026, NIAMEY, seed=42)
    pd.testing.assert_frame_equal(again, sahel_year, check_exact=True)


def test_synthetic_weather_differs_across_seeds(sahel_year: pd.DataFrame) -> None:
    other = synthetic_weather(YEAR_2026, NIAMEY, seed=43)
    for column in sahel_year.columns:
        assert not np.array_equal(other[column].to_numpy(), sahel_year[column].to_numpy())


def test_synthetic_weather_june_alone_equals_june_of_the_year(sahel_year: pd.DataFrame) -> None:
    june = pd.date_range("2026-06-01", "2026-07-01", freq="h", tz="Africa/Niamey", inclusive="left")
    alone = synthetic_weather(june, NIAMEY, seed=42)
    pd.testing.assert_frame_equal(alone, sahel_year.loc[alone.index], check_exact=True)


def test_synthetic_weather_does_not_depend_on_the_step() -> None:
    quarter = pd.date_range("2026-08-10", periods=4 * 48, freq="15min", tz="UTC")
    hourly = quarter[::4]
    fine = synthetic_weather(quarter, NIAMEY, seed=5)
    coarse = synthetic_weather(hourly, NIAMEY, seed=5)
    pd.testing.assert_frame_equal(fine.loc[hourly], coarse, check_exact=True, check_freq=False)


def test_synthetic_weather_shape_and_ranges(sahel_year: pd.DataFrame) -> None:
    assert_weather_frame(sahel_year)
    assert list(sahel_year.columns) == ["temp_air", "wind_speed", "cloud_cover"]
    assert sahel_year.index.equals(YEAR_2026.tz_convert("UTC"))
    assert sahel_year["cloud_cover"].between(0, 1).all()
    assert (sahel_year["wind_speed"] > 0).all()
    assert 2.0 < sahel_year["wind_speed"].mean() < 4.0
    assert sahel_year["temp_air"].between(5, 50).all()


def test_sahel_rainy_season_is_cloudier_than_dry_season(sahel_year: pd.DataFrame) -> None:
    month = local_times(sahel_year).month
    wet = sahel_year["cloud_cover"][month.isin([7, 8])].mean()
    dry = sahel_year["cloud_cover"][month.isin([1, 2])].mean()
    assert wet > dry + 0.3


def test_sahel_temperature_seasons_and_diurnal_cycle(sahel_year: pd.DataFrame) -> None:
    temp = sahel_year["temp_air"].to_numpy()
    local = local_times(sahel_year)
    daily_max = pd.Series(temp).groupby(local.date).max()
    months = pd.DatetimeIndex(daily_max.index).month
    hot = daily_max[months.isin([4, 5])].mean()
    cool = daily_max[months.isin([12, 1])].mean()
    assert 37 < hot < 44
    assert hot > cool + 4
    # Mid-afternoon maxima and early-morning minima (local clock ≈ solar time + 52 min).
    by_hour = pd.Series(temp).groupby(local.hour).mean().to_numpy()
    assert 14 <= int(np.argmax(by_hour)) <= 17
    assert 4 <= int(np.argmin(by_hour)) <= 8


def test_rainy_days_are_cloudier_and_cooler(sahel_year: pd.DataFrame) -> None:
    local = local_times(sahel_year)
    dates = pd.DatetimeIndex(sorted(set(local.date)))
    types = synthetic_day_types(dates, NIAMEY, seed=42)
    frame = sahel_year.reset_index(drop=True)
    per_day = frame.groupby(local.date).agg({"cloud_cover": "mean", "temp_air": "max"})
    per_day.index = pd.DatetimeIndex(per_day.index)
    wet = per_day.loc["2026-06-01":"2026-09-30"]
    kind = types.loc[wet.index]
    assert wet["cloud_cover"][kind == "rainy"].mean() > wet["cloud_cover"][kind == "clear"].mean()
    assert wet["temp_air"][kind == "rainy"].mean() < wet["temp_air"][kind == "clear"].mean()


def test_synthetic_day_types_follow_the_seasons_and_any_range() -> None:
    year = pd.date_range("2026-01-01", "2026-12-31", freq="D")
    types = synthetic_day_types(year, NIAMEY, seed=3)
    assert list(types.cat.categories) == list(DAY_TYPES)
    assert types.index.equals(year.rename("date"))
    dry = types[year.month.isin([1, 2])]
    wet = types[year.month.isin([7, 8])]
    assert (dry == "rainy").sum() == 0
    assert (wet.isin(["overcast", "rainy"])).mean() > 0.5
    june = [dt.date(2026, 6, d) for d in range(1, 31)]
    alone = synthetic_day_types(june, NIAMEY, seed=3)
    assert alone.tolist() == types.loc["2026-06"].tolist()


def test_mid_latitude_climate_is_cold_in_winter() -> None:
    january = pd.date_range("2026-01-01", periods=31 * 24, freq="h", tz="Europe/Berlin")
    weather = synthetic_weather(january, BERLIN, seed=1)
    assert weather["temp_air"].mean() < 8
    assert weather["cloud_cover"].mean() > 0.4


def test_synthetic_weather_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        synthetic_weather(pd.date_range("2026-01-01", periods=3, freq="h"), NIAMEY, seed=1)


LOCATIONS = st.builds(
    Location,
    latitude=st.floats(-66, 66),
    longitude=st.floats(-180, 180),
    altitude_m=st.just(0.0),
    timezone=st.sampled_from(["UTC", "Africa/Niamey", "Europe/Berlin", "America/Santiago"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**63 - 1),
    day=st.dates(dt.date(1950, 1, 1), dt.date(2100, 12, 31)),
    location=LOCATIONS,
    step_minutes=st.sampled_from([1, 15, 60]),
)
def test_synthetic_weather_is_always_physical(
    seed: int, day: dt.date, location: Location, step_minutes: int
) -> None:
    times = pd.date_range(day, periods=24 * 60 // step_minutes, freq=f"{step_minutes}min", tz="UTC")
    weather = synthetic_weather(times, location, seed)
    assert_weather_frame(weather)
    assert weather["cloud_cover"].between(0, 1).all()
    assert (weather["wind_speed"] > 0).all()
    assert (weather["wind_speed"] < 40).all()
    assert weather["temp_air"].between(-40, 55).all()


# --- regridding ------------------------------------------------------------------------------


def test_weather_on_grid_interpolates_hourly_to_quarter_hours() -> None:
    hourly = pd.DataFrame(
        {"temp_air": [20.0, 24.0, 28.0]},
        index=pd.date_range("2026-03-01 10:00", periods=3, freq="h", tz="UTC"),
    )
    times = pd.date_range("2026-03-01 10:00", periods=12, freq="15min", tz="UTC")
    out = weather_on_grid(hourly, times)
    assert_weather_frame(out)
    # Flat before the first midpoint (10:30), linear between midpoints, flat after 12:30.
    expected = [20.0, 20.0, 20.5, 21.5, 22.5, 23.5, 24.5, 25.5, 26.5, 27.5, 28.0, 28.0]
    np.testing.assert_allclose(out["temp_air"], expected)


def test_weather_on_grid_averages_quarter_hours_to_hours_exactly() -> None:
    quarter = pd.DataFrame(
        {"ghi": [0.0, 40.0, 80.0, 120.0, 200.0, 220.0, 240.0, 260.0]},
        index=pd.date_range("2026-03-01 06:00", periods=8, freq="15min", tz="UTC"),
    )
    hours = pd.date_range("2026-03-01 06:00", periods=2, freq="h", tz="UTC")
    assert weather_on_grid(quarter, hours)["ghi"].tolist() == [60.0, 230.0]


def test_weather_on_grid_preserves_daily_means() -> None:
    hourly = parse_forecast_feed(FEED_SAMPLE.read_text(encoding="utf-8"))
    day = pd.date_range("2026-03-01", periods=96, freq="15min", tz="UTC")
    quarter = weather_on_grid(hourly, day, source=str(FEED_SAMPLE))
    for column in ("ghi", "temp_air", "wind_speed", "cloud_cover"):
        coarse = hourly[column].loc["2026-03-01"].mean()
        assert quarter[column].mean() == pytest.approx(coarse, rel=0.01)


def test_weather_on_grid_holds_values_within_one_step_only() -> None:
    hourly = pd.DataFrame(
        {"ghi": [0.0, 100.0, 300.0]},
        index=pd.date_range("2026-03-01 06:00", periods=3, freq="h", tz="UTC"),
    )
    inside = pd.date_range("2026-03-01 05:00", "2026-03-01 09:45", freq="15min", tz="UTC")
    out = weather_on_grid(hourly, inside)
    assert out["ghi"].iloc[0] == 0.0
    assert out["ghi"].iloc[-1] == 300.0
    beyond = pd.date_range("2026-03-01 06:00", "2026-03-01 10:00", freq="15min", tz="UTC")
    with pytest.raises(WeatherDataError) as info:
        weather_on_grid(hourly, beyond, source="forecast.json")
    assert str(info.value).startswith("forecast.json: ")
    assert "covers 2026-03-01T06:00:00+00:00 to 2026-03-01T09:00:00+00:00" in str(info.value)


def test_weather_on_grid_rejects_nan() -> None:
    hourly = pd.DataFrame(
        {"ghi": [0.0, np.nan, 300.0]},
        index=pd.date_range("2026-03-01 06:00", periods=3, freq="h", tz="UTC"),
    )
    times = pd.date_range("2026-03-01 06:00", periods=4, freq="15min", tz="UTC")
    with pytest.raises(WeatherDataError, match="column 'ghi' has 1 missing value"):
        weather_on_grid(hourly, times)
