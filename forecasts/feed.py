"""The live weather forecast: an HTTP feed with a cache, staleness limits and fallbacks.

Where the live service's weather comes from, best first:

1. ``feed`` — the Open-Meteo style hourly forecast (:func:`forecasts.weather.parse_forecast_feed`)
   fetched from the configured URL on a schedule; every good payload is cached on disk,
   so a restart starts from it;
2. ``drop_file`` — a file a weather station or a person drops in (Open-Meteo JSON or a
   weather CSV, :func:`forecasts.weather.read_weather_csv`), used when it is newer than
   the last good feed;
3. ``last_good`` (fallback) — the feed could not be fetched (or parsed), but the last
   good forecast is younger than the staleness limit;
4. ``climatology`` (fallback) — nothing usable and fresh: the site's climatology (the
   seeded synthetic weather, smoothed as a day-ahead forecast would be).

Hours of the horizon that the chosen forecast does not cover are filled from the
climatology and counted (``filled_hours``). Every fallback carries the reason in
words; the service flags it on the plan and raises an alarm.

The core (:func:`choose_weather`) is pure: it picks among candidates given the time; the
I/O (:func:`fetch_feed`, :class:`FeedCache`) sits at the edge. Time is the service's
clock (simulated in a fast-forward), never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecasts.weather import WeatherDataError, parse_forecast_feed, read_weather_csv

__all__ = [
    "FALLBACKS",
    "FeedCache",
    "FeedError",
    "WeatherCandidate",
    "WeatherChoice",
    "WeatherSource",
    "choose_weather",
    "fetch_feed",
    "read_drop_file",
]

# A forecast payload larger than this is refused before parsing (Open-Meteo's 16 days of
# six hourly variables are ≈ 40 kB).
_MAX_PAYLOAD_BYTES = 5_000_000


class WeatherSource(enum.StrEnum):
    """Where the forecast in use came from (module docstring)."""

    FEED = "feed"
    DROP_FILE = "drop_file"
    LAST_GOOD = "last_good"
    CLIMATOLOGY = "climatology"


FALLBACKS = frozenset({WeatherSource.LAST_GOOD, WeatherSource.CLIMATOLOGY})
"""Sources that mean the configured feed is not working; flagged and alarmed."""


class FeedError(Exception):
    """The feed could not be fetched or parsed; the message says why."""


@dataclass(frozen=True, slots=True)
class WeatherCandidate:
    """A forecast the service could use.

    Attributes
    ----------
    weather : pandas.DataFrame
        Period-mean weather (:mod:`forecasts.weather` shape), UTC index.
    obtained_at : datetime
        When it was fetched or dropped (service time, UTC).
    source : WeatherSource
        ``FEED`` or ``DROP_FILE``.
    """

    weather: pd.DataFrame
    obtained_at: dt.datetime
    source: WeatherSource


@dataclass(frozen=True, slots=True)
class WeatherChoice:
    """The forecast chosen for one horizon and why.

    Attributes
    ----------
    weather : pandas.DataFrame
        The weather to forecast from, covering the horizon.
    source : WeatherSource
        Where it came from.
    obtained_at : datetime or None
        When that forecast was obtained (None: climatology).
    age_hours : float or None
        Its age at the time of choosing [h].
    filled_hours : float
        Hours of the horizon filled from the climatology [h].
    reason : str
        Why a fallback was taken ("" when none).
    """

    weather: pd.DataFrame
    source: WeatherSource
    obtained_at: dt.datetime | None
    age_hours: float | None
    filled_hours: float
    reason: str

    @property
    def fallback(self) -> bool:
        """Whether this is a fallback (the configured feed is not working)."""
        return self.source in FALLBACKS

    def flag(self) -> dict[str, object]:
        """The flag the service puts on a plan (JSON-ready)."""
        return {
            "source": self.source.value,
            "fallback": self.fallback,
            "obtained_at": None if self.obtained_at is None else self.obtained_at.isoformat(),
            "age_hours": None if self.age_hours is None else round(self.age_hours, 2),
            "filled_hours": round(self.filled_hours, 2),
            "reason": self.reason,
        }


def choose_weather(
    times: pd.DatetimeIndex,
    now: dt.datetime,
    candidates: list[WeatherCandidate],
    max_age: dt.timedelta,
    last_fetch_error: str | None,
    feed_configured: bool,
    climatology: Callable[[pd.DatetimeIndex], pd.DataFrame],
) -> WeatherChoice:
    """Pick the forecast for the periods ``times`` (module docstring for the order).

    Parameters
    ----------
    times : pandas.DatetimeIndex
        Period starts of the horizon (UTC).
    now : datetime
        Service time.
    candidates : list of WeatherCandidate
        The last good feed and the drop file, whichever exist.
    max_age : datetime.timedelta
        Older forecasts are stale.
    last_fetch_error : str or None
        Why the latest fetch failed (None: it succeeded, or none was made).
    feed_configured : bool
        Whether a feed URL is configured (without one, climatology is still a fallback:
        nobody is forecasting).
    climatology : callable
        Weather for given period starts when nothing better is at hand.

    Examples
    --------
    >>> import pandas as pd, datetime as dt
    >>> times = pd.date_range("2026-08-01", periods=4, freq="15min", tz="UTC")
    >>> flat = lambda t: pd.DataFrame({"cloud_cover": 0.5}, index=t)
    >>> now = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
    >>> choice = choose_weather(times, now, [], dt.timedelta(hours=12), None, True, flat)
    >>> choice.source.value, choice.fallback, choice.reason
    ('climatology', True, 'no forecast fetched yet')
    """
    is_fresh = [dt.timedelta(0) <= now - c.obtained_at <= max_age for c in candidates]
    fresh = [c for c, ok in zip(candidates, is_fresh, strict=True) if ok]
    stale = [c for c, ok in zip(candidates, is_fresh, strict=True) if not ok]
    if fresh:
        best = max(fresh, key=lambda c: (c.obtained_at, c.source is WeatherSource.FEED))
        source = best.source
        reason = ""
        if source is WeatherSource.FEED and last_fetch_error is not None:
            source = WeatherSource.LAST_GOOD
            reason = f"the feed failed ({last_fetch_error}); using the forecast of "
            reason += f"{best.obtained_at.isoformat()}"
        weather, filled = _cover(best.weather, times, climatology)
        age = (now - best.obtained_at).total_seconds() / 3600
        return WeatherChoice(weather, source, best.obtained_at, age, filled, reason)
    if stale:
        newest = max(stale, key=lambda c: c.obtained_at)
        reason = (
            f"the newest forecast ({newest.source.value}, {newest.obtained_at.isoformat()}) is "
            f"older than {max_age.total_seconds() / 3600:g} h"
        )
        if last_fetch_error is not None:
            reason += f"; the feed failed ({last_fetch_error})"
    elif not feed_configured:
        reason = "no weather feed configured (weather.feed_url)"
    elif last_fetch_error is not None:
        reason = f"the feed failed ({last_fetch_error}) and no forecast was ever fetched"
    else:
        reason = "no forecast fetched yet"
    step = _step(times)
    return WeatherChoice(
        climatology(times), WeatherSource.CLIMATOLOGY, None, None, len(times) * step, reason
    )


def _step(times: pd.DatetimeIndex) -> float:
    """Period length of ``times`` [h] (15 min if there is a single period)."""
    if len(times) < 2:
        return 0.25
    return float((times[1] - times[0]).total_seconds()) / 3600


def _cover(
    weather: pd.DataFrame,
    times: pd.DatetimeIndex,
    climatology: Callable[[pd.DatetimeIndex], pd.DataFrame],
) -> tuple[pd.DataFrame, float]:
    """The forecast on its own span plus the climatology where it does not reach."""
    if len(weather) == 0:
        return climatology(times), len(times) * _step(times)
    feed_step = weather.index[1] - weather.index[0] if len(weather) > 1 else pd.Timedelta("1h")
    covered = (times >= weather.index[0]) & (times < weather.index[-1] + feed_step)
    if covered.all():
        return weather, 0.0
    missing = times[~covered]
    fill = climatology(missing)
    common = [c for c in weather.columns if c in fill.columns]
    if not common:
        return climatology(times), len(times) * _step(times)
    # Coarser feed periods and finer filled periods together: weather_on_grid takes the
    # union's most common step, so the fill is resampled to the feed's hourly periods.
    hourly_fill = fill[common].resample(feed_step).mean().dropna()
    hourly_fill = hourly_fill.loc[
        (hourly_fill.index < weather.index[0]) | (hourly_fill.index > weather.index[-1])
    ]
    combined = pd.concat([weather[common], hourly_fill]).sort_index()
    combined = combined[~combined.index.duplicated(keep="first")]
    return combined, len(missing) * _step(times)


# --- I/O at the edge ------------------------------------------------------------------


def fetch_feed(url: str, timeout_s: float) -> tuple[bytes, pd.DataFrame]:
    """GET the feed and parse it; returns the payload and its weather.

    Raises
    ------
    FeedError
        Naming the HTTP status, the network error or the parse problem.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "lastwatt"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = response.read(_MAX_PAYLOAD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        msg = f"HTTP {exc.code} from {url}"
        raise FeedError(msg) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        msg = f"cannot reach {url}: {reason}"
        raise FeedError(msg) from None
    if len(payload) > _MAX_PAYLOAD_BYTES:
        msg = f"{url} sent more than {_MAX_PAYLOAD_BYTES} bytes; not a forecast"
        raise FeedError(msg)
    try:
        weather = parse_forecast_feed(payload)
    except WeatherDataError as exc:
        msg = f"{url} sent a payload that does not parse: {exc}"
        raise FeedError(msg) from None
    if len(weather) == 0:
        msg = f"{url} sent a forecast without hours"
        raise FeedError(msg)
    return payload, weather


def read_drop_file(path: Path) -> tuple[pd.DataFrame, dt.datetime] | None:
    """The weather in a dropped file and when it was dropped (mtime); None if absent.

    Raises
    ------
    FeedError
        If the file exists but does not parse.
    """
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        if path.suffix.lower() == ".json":
            weather = parse_forecast_feed(path.read_bytes())
        else:
            weather = read_weather_csv(path)
    except (WeatherDataError, OSError) as exc:
        msg = f"dropped weather file {path} does not parse: {exc}"
        raise FeedError(msg) from None
    return weather, dt.datetime.fromtimestamp(mtime, dt.UTC)


class FeedCache:
    """The last good feed payload on disk, with when it was fetched (service time).

    Written atomically (a temporary file renamed over the old one), so a crash leaves
    the previous good forecast, never half of one.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._payload = self.folder / "last_good_feed.json"
        self._meta = self.folder / "last_good_feed.meta.json"

    def save(self, payload: bytes, fetched_at: dt.datetime) -> None:
        """Keep ``payload`` as the last good forecast."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, data in (
            (self._payload, payload),
            (self._meta, json.dumps({"fetched_at": fetched_at.isoformat()}).encode()),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def load(self) -> WeatherCandidate | None:
        """The cached forecast, or None if there is none (or it no longer parses)."""
        try:
            meta = json.loads(self._meta.read_text(encoding="utf-8"))
            fetched_at = dt.datetime.fromisoformat(meta["fetched_at"])
            weather = parse_forecast_feed(self._payload.read_bytes())
        except (OSError, ValueError, KeyError, WeatherDataError):
            return None
        return WeatherCandidate(weather, fetched_at, WeatherSource.FEED)
