"""Generate the synthetic weather samples in ``tests/data/weather/``.

Three small files, one per adapter of :mod:`forecasts.weather`, for a Niamey-like site
(13.5 N, 2.1 E, UTC+1, dry season):

- ``sample_15min.csv``: one local day (2026-03-01) at 15 min in our CSV format;
- ``niamey_sample.epw``: two days (1–2 January 2026) in the EnergyPlus EPW layout;
- ``open_meteo_niamey_hourly.json``: three days (1–3 March 2026) in Open-Meteo's hourly
  forecast format.

The values are made up, not measured: pvlib's Ineichen clear sky with a hazy dry-season
Linke turbidity, reduced by an assumed cloud cover, averaged over each file's periods from
1-min samples, and smooth diurnal temperature and wind with a little seeded noise. Each
file follows its source's time labelling (see the adapters), which the tests rely on:
irradiance peaks around solar noon once the adapter has done its work.

Run ``python scripts/make_weather_samples.py`` (or ``--check`` to compare with the files).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "weather"
SEED = 20260301  # any fixed number
LATITUDE, LONGITUDE, ALTITUDE_M = 13.5, 2.1, 210.0
LOCAL = "Etc/GMT-1"  # West Africa Time, UTC+1 all year (Africa/Niamey has no DST)
LINKE_TURBIDITY = 4.5  # hazy harmattan air; assumption, not a measurement


def _irradiance(start: str, end: str, cloud_fraction: pd.Series) -> pd.DataFrame:
    """1-min GHI, DNI, DHI [W/m²] from ``start`` to ``end`` (local), under cloud cover.

    ``cloud_fraction`` is given at any step and held forward. GHI follows Kasten and
    Czeplak (1980), 1 − 0.75·(N/8)^3.4 with N in oktas; DNI and DHI come from Erbs.
    """
    times = pd.date_range(start, end, freq="1min", inclusive="left", tz=LOCAL)
    site = pvlib.location.Location(LATITUDE, LONGITUDE, altitude=ALTITUDE_M)
    clear = site.get_clearsky(times, model="ineichen", linke_turbidity=LINKE_TURBIDITY)
    solar = site.get_solarposition(times)
    cloud = cloud_fraction.reindex(times, method="ffill").to_numpy()
    ghi = clear["ghi"].to_numpy() * (1.0 - 0.75 * cloud**3.4)
    split = pvlib.irradiance.erbs(ghi, solar["zenith"].to_numpy(), times)
    dni = np.where(cloud < 0.15, clear["dni"].to_numpy(), split["dni"])
    dhi = np.where(cloud < 0.15, clear["dhi"].to_numpy(), split["dhi"])
    return pd.DataFrame({"ghi": ghi, "dni": dni, "dhi": dhi}, index=times).clip(lower=0.0)


def _diurnal(hours: np.ndarray, low: float, high: float, peak_hour: float) -> np.ndarray:
    """A cosine from ``low`` (12 h before the peak) to ``high`` at ``peak_hour``."""
    return low + (high - low) * (1 + np.cos(2 * np.pi * (hours - peak_hour) / 24)) / 2


def render_csv() -> str:
    """One local day at 15 min in our CSV format, with local +01:00 offsets."""
    rng = np.random.default_rng([SEED, 1])
    starts = pd.date_range("2026-03-01", periods=96, freq="15min", tz=LOCAL)
    cloud = pd.Series(np.where(starts.hour < 12, 0.05, 0.25), index=starts)
    minute = _irradiance("2026-03-01", "2026-03-02", cloud)
    means = minute.resample("15min", label="left", closed="left").mean()
    hours = (starts.hour + starts.minute / 60).to_numpy() + 0.125
    temp = _diurnal(hours, 21.0, 37.5, 15.5) + rng.normal(0, 0.2, 96)
    wind = _diurnal(hours, 2.0, 4.5, 14.0) * np.exp(rng.normal(0, 0.1, 96))
    cloud_percent = np.clip(100 * cloud.to_numpy() + rng.normal(0, 3, 96), 0, 100)
    out = io.StringIO()
    out.write("time,ghi,dni,dhi,temp_air,wind_speed,cloud_cover_percent\n")
    for k, start in enumerate(starts):
        row = means.iloc[k]
        out.write(
            f"{start.strftime('%Y-%m-%dT%H:%M')}+01:00,{row['ghi']:.1f},{row['dni']:.1f},"
            f"{row['dhi']:.1f},{temp[k]:.1f},{wind[k]:.1f},{cloud_percent[k]:.0f}\n"
        )
    return out.getvalue()


def render_epw() -> str:
    """Two days in the EPW layout: 8 header lines, then 35 fields per hour.

    EPW hour h is the hour ending at h:00 local standard time; irradiance is its total
    [Wh/m²], temperature and wind the reading at h:00.
    """
    rng = np.random.default_rng([SEED, 2])
    ends = pd.date_range("2026-01-01 01:00", periods=48, freq="h", tz=LOCAL)
    day = np.where(ends.day == 1, 0, 1)
    hour_of_day = (ends - pd.Timedelta(hours=1)).hour  # hour the period starts in
    # Day 1 clear with haze (1 tenth); day 2 clouds building through the day.
    tenths = np.where(day == 0, 1, np.clip((hour_of_day - 4) // 2, 2, 7))
    tenths = np.where((hour_of_day < 6) | (hour_of_day > 19), tenths // 2, tenths)
    cloud = pd.Series(tenths / 10.0, index=ends - pd.Timedelta(hours=1))
    minute = _irradiance("2026-01-01", "2026-01-03", cloud)
    means = minute.resample("1h", label="left", closed="left").mean()
    site = pvlib.location.Location(LATITUDE, LONGITUDE, altitude=ALTITUDE_M)
    solar = site.get_solarposition(minute.index)
    extra = pvlib.irradiance.get_extra_radiation(minute.index)
    up = (solar["zenith"] < 90).to_numpy()
    cos_zenith = np.cos(np.radians(solar["zenith"].to_numpy()))
    etr_minute = pd.Series(np.where(up, extra * cos_zenith, 0.0), index=minute.index)
    etrn_minute = pd.Series(np.where(up, extra, 0.0), index=minute.index)
    etr = etr_minute.resample("1h", label="left", closed="left").mean()
    etrn = etrn_minute.resample("1h", label="left", closed="left").mean()
    hours = ends.hour.to_numpy() + 24 * day
    temp = _diurnal(hours % 24, 16.0, 32.5, 15.5) - 1.2 * day + rng.normal(0, 0.2, 48)
    dew = np.full(48, -4.0) + rng.normal(0, 0.5, 48)  # dry harmattan air
    # Magnus formula for relative humidity from temperature and dew point.
    magnus = np.exp(17.625 * dew / (243.04 + dew)) / np.exp(17.625 * temp / (243.04 + temp))
    humidity = np.clip(100 * magnus, 1, 100)
    wind = _diurnal(hours % 24, 2.2, 4.8, 14.0) * np.exp(rng.normal(0, 0.1, 48))

    lines = [
        "LOCATION,Niamey (synthetic sample),-,NER,LastWatt synthetic,610520,"
        f"{LATITUDE:.2f},{LONGITUDE:.2f},1.0,{ALTITUDE_M:.1f}",
        "DESIGN CONDITIONS,0",
        "TYPICAL/EXTREME PERIODS,0",
        "GROUND TEMPERATURES,0",
        "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
        "COMMENTS 1,Synthetic sample written by scripts/make_weather_samples.py; not measured",
        "COMMENTS 2,Ineichen clear sky (Linke turbidity 4.5) reduced by an assumed sky cover",
        "DATA PERIODS,1,1,Data,Thursday, 1/ 1, 1/ 2",
    ]
    flags = "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9"
    for k, end in enumerate(ends):
        local_end = end - pd.Timedelta(hours=1)  # EPW's hour 24 is 24:00 of its own day
        row = means.iloc[k]
        ghi, dni, dhi = round(row["ghi"]), round(row["dni"]), round(row["dhi"])
        fields = [
            local_end.year,
            local_end.month,
            local_end.day,
            local_end.hour + 1,
            60,
            flags,
            f"{temp[k]:.1f}",
            f"{dew[k]:.1f}",
            f"{humidity[k]:.0f}",
            98_900,  # station pressure at 210 m [Pa]
            round(etr.iloc[k]),
            round(etrn.iloc[k]),
            330,  # horizontal infrared [Wh/m²]
            ghi,
            dni,
            dhi,
            round(105 * ghi),  # illuminances [lux] at a typical luminous efficacy
            round(100 * dni),
            round(115 * dhi),
            9999,  # zenith luminance: missing
            45,  # harmattan from the north-east [degrees]
            f"{wind[k]:.1f}",
            int(tenths[k]),
            max(int(tenths[k]) - 1, 0),
            "8.0",  # visibility in dust haze [km]
            77777,  # unlimited ceiling
            9,
            "999999999",
            12,
            "0.450",
            0,
            88,
            "0.250",
            "0.0",
            "1.0",
        ]
        lines.append(",".join(str(f) for f in fields))
    return "\r\n".join(lines) + "\r\n"


def render_open_meteo() -> str:
    """Three days of an Open-Meteo hourly forecast, local times at UTC+1.

    Radiation at hour t is the mean of the preceding hour; the rest is instantaneous.
    """
    rng = np.random.default_rng([SEED, 3])
    times = pd.date_range("2026-03-01", periods=72, freq="h", tz=LOCAL)
    hours = (times.hour + 24 * (times.day - 1)).to_numpy()
    day = hours // 24
    base = np.array([3.0, 35.0, 8.0])[day]  # clear, hazy with mid-level cloud, clear [%]
    swing = np.array([3.0, 20.0, 5.0])[day]
    cloud = np.clip(base + swing * np.sin(2 * np.pi * hours / 9) + rng.normal(0, 2, 72), 0, 100)
    cloud = np.round(cloud)
    preceding = pd.Series(cloud / 100, index=times - pd.Timedelta(hours=1))
    minute = _irradiance("2026-02-28 23:00", "2026-03-03 23:00", preceding)
    hour_ending = minute.resample("1h", label="right", closed="left").mean()["ghi"]
    shortwave = hour_ending.reindex(times).to_numpy()
    temp = _diurnal(hours % 24, 22.0, 38.0, 15.5) + np.array([0.0, -1.0, 0.5])[day]
    temp = temp + rng.normal(0, 0.2, 72)
    wind_kmh = 3.6 * _diurnal(hours % 24, 2.5, 5.0, 14.0) * np.exp(rng.normal(0, 0.1, 72))
    lists = {
        "time": [t.strftime("%Y-%m-%dT%H:%M") for t in times],
        "temperature_2m": [round(float(x), 1) for x in temp],
        "cloud_cover": [int(x) for x in cloud],
        "wind_speed_10m": [round(float(x), 1) for x in wind_kmh],
        "shortwave_radiation": [round(float(x), 1) for x in shortwave],
    }
    head = {
        "latitude": 13.5,
        "longitude": 2.125,
        "generationtime_ms": 0.1,
        "utc_offset_seconds": 3600,
        "timezone": "Africa/Niamey",
        "timezone_abbreviation": "WAT",
        "elevation": ALTITUDE_M,
        "hourly_units": {
            "time": "iso8601",
            "temperature_2m": "°C",
            "cloud_cover": "%",
            "wind_speed_10m": "km/h",
            "shortwave_radiation": "W/m²",
        },
    }
    # One line per key and per list, as readable as the provider's compact body allows.
    parts = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in head.items()]
    body = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in lists.items()]
    parts.append('  "hourly": {\n' + ",\n".join(body) + "\n  }")
    return "{\n" + ",\n".join(parts) + "\n}\n"


FILES = {
    "sample_15min.csv": render_csv,
    "niamey_sample.epw": render_epw,
    "open_meteo_niamey_hourly.json": render_open_meteo,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, render in FILES.items():
        path = OUTPUT / name
        text = render()
        if args.check:
            if not path.exists() or path.read_bytes() != text.encode("utf-8"):
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        print(f"wrote {path}")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run scripts/make_weather_samples.py", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
