"""Weather that ships with LastWatt, so that benchmarks and examples run offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasts.weather import read_weather_csv

__all__ = ["BUNDLED_WEEK_PATH", "bundled_week_weather", "smoothed_forecast"]

BUNDLED_WEEK_PATH = Path(__file__).resolve().parent / "data" / "week_rainy_season.csv"
"""Seven rainy-season days at 15 min for the default site (made up; see
``scripts/make_week_weather.py``)."""


def bundled_week_weather() -> pd.DataFrame:
    """The bundled week: ``cloud_cover``, ``temp_air``, ``wind_speed`` at 15 min, UTC.

    Examples
    --------
    >>> week = bundled_week_weather()
    >>> len(week), str(week.index.tz)
    (672, 'UTC')
    """
    return read_weather_csv(BUNDLED_WEEK_PATH)


def smoothed_forecast(weather: pd.DataFrame, window: str = "6h") -> pd.DataFrame:
    """A forecast of ``weather`` that knows each day's cloudiness but not its timing.

    Cloud cover, temperature and wind are replaced by their centred rolling mean over
    ``window``: a day-ahead forecast gets the day type right and misses when the clouds
    pass, which is the error that matters for dispatch.
    """
    return weather.rolling(window, center=True, min_periods=1).mean()
