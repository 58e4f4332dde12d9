"""The live weather: fetched over HTTP, cached, stale forecasts dropped, fallbacks named."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.feed import (
    FeedCache,
    FeedError,
    WeatherCandidate,
    WeatherSource,
    choose_weather,
    fetch_feed,
    read_drop_file,
)
from forecasts.weather import parse_forecast_feed
from microgrid import load_site
from tests.forecasts.feed_server import FeedServer, forecast_for

NOW = dt.datetime(2026, 8, 1, 6, 0, tzinfo=dt.UTC)
LOCATION = load_site(None).location
TIMES = pd.date_range(NOW, periods=26 * 4, freq="15min")
MAX_AGE = dt.timedelta(hours=12)


def climatology(times):
    return pd.DataFrame({"cloud_cover": 0.5, "temp_air": 30.0, "wind_speed": 2.0}, index=times)


def feed_at(when, days=3):
    return parse_forecast_feed(forecast_for(LOCATION, when, days))


def test_fetch_parses_the_feed_and_names_each_outage():
    with FeedServer(lambda: forecast_for(LOCATION, NOW)) as server:
        payload, weather = fetch_feed(server.url, timeout_s=5)
        assert weather.index[0] == pd.Timestamp(NOW)
        assert len(weather) >= 71
        assert parse_forecast_feed(payload).equals(weather)
        server.mode = "down"
        with pytest.raises(FeedError, match="HTTP 503"):
            fetch_feed(server.url, timeout_s=5)
        server.mode = "garbage"
        with pytest.raises(FeedError, match="does not parse"):
            fetch_feed(server.url, timeout_s=5)
        url = server.url
    with pytest.raises(FeedError, match="cannot reach"):
        fetch_feed(url, timeout_s=2)


def test_fresh_feed_then_last_good_then_climatology():
    feed = WeatherCandidate(feed_at(NOW), NOW, WeatherSource.FEED)
    fresh = choose_weather(TIMES, NOW, [feed], MAX_AGE, None, True, climatology)
    assert (fresh.source, fresh.fallback, fresh.filled_hours) == (WeatherSource.FEED, False, 0.0)
    later = NOW + dt.timedelta(hours=3)
    failed = choose_weather(TIMES, later, [feed], MAX_AGE, "HTTP 503", True, climatology)
    assert failed.source is WeatherSource.LAST_GOOD
    assert failed.fallback
    assert "HTTP 503" in failed.reason
    assert failed.age_hours == pytest.approx(3.0)
    stale_at = NOW + MAX_AGE + dt.timedelta(minutes=1)
    stale = choose_weather(TIMES, stale_at, [feed], MAX_AGE, "HTTP 503", True, climatology)
    assert stale.source is WeatherSource.CLIMATOLOGY
    assert "older than 12 h" in stale.reason
    assert stale.weather.equals(climatology(TIMES))


def test_no_feed_configured_is_a_flagged_climatology():
    choice = choose_weather(TIMES, NOW, [], MAX_AGE, None, False, climatology)
    assert choice.source is WeatherSource.CLIMATOLOGY
    assert choice.fallback
    assert "no weather feed configured" in choice.reason


def test_a_newer_drop_file_wins_over_the_feed(tmp_path):
    path = tmp_path / "station.json"
    path.write_bytes(forecast_for(LOCATION, NOW, days=2, seed=11))
    dropped, _ = read_drop_file(path)
    assert read_drop_file(tmp_path / "none.json") is None
    feed = WeatherCandidate(feed_at(NOW), NOW - dt.timedelta(hours=2), WeatherSource.FEED)
    drop = WeatherCandidate(dropped, NOW - dt.timedelta(hours=1), WeatherSource.DROP_FILE)
    choice = choose_weather(TIMES, NOW, [feed, drop], MAX_AGE, None, True, climatology)
    assert choice.source is WeatherSource.DROP_FILE
    assert not choice.fallback
    (tmp_path / "bad.csv").write_text("nonsense\n")
    with pytest.raises(FeedError, match=r"bad.csv does not parse"):
        read_drop_file(tmp_path / "bad.csv")


def test_a_short_forecast_is_filled_from_climatology_and_counted():
    short = WeatherCandidate(feed_at(NOW, days=1), NOW, WeatherSource.FEED)
    choice = choose_weather(TIMES, NOW, [short], MAX_AGE, None, True, climatology)
    assert choice.source is WeatherSource.FEED
    assert choice.filled_hours == pytest.approx(2.0)
    index = choice.weather.index
    assert index[0] <= TIMES[0]
    assert index[-1] >= TIMES[-1] - pd.Timedelta("1h")
    assert (index[1:] - index[:-1] == pd.Timedelta("1h")).all()  # regular, as the grid needs


@settings(max_examples=60, deadline=None)
@given(
    fetched_ago_h=st.floats(0, 48),
    failed=st.booleans(),
    max_age_h=st.floats(0.5, 24),
)
def test_a_stale_forecast_is_never_used(fetched_ago_h, failed, max_age_h):
    feed = WeatherCandidate(
        climatology(TIMES) * 0 + 1, NOW - dt.timedelta(hours=fetched_ago_h), WeatherSource.FEED
    )
    max_age = dt.timedelta(hours=max_age_h)
    choice = choose_weather(
        TIMES, NOW, [feed], max_age, "down" if failed else None, True, climatology
    )
    if fetched_ago_h > max_age_h:
        assert choice.source is WeatherSource.CLIMATOLOGY
    else:
        assert choice.source is (WeatherSource.LAST_GOOD if failed else WeatherSource.FEED)
    assert choice.fallback == (choice.source is not WeatherSource.FEED)
    assert bool(choice.reason) == choice.fallback


def test_cache_keeps_the_last_good_forecast_across_restarts(tmp_path):
    cache = FeedCache(tmp_path / "weather")
    assert cache.load() is None
    payload = forecast_for(LOCATION, NOW)
    cache.save(payload, NOW)
    again = FeedCache(tmp_path / "weather").load()
    assert again.obtained_at == NOW
    assert again.weather.equals(parse_forecast_feed(payload))
    assert sorted(p.name for p in (tmp_path / "weather").iterdir()) == [
        "last_good_feed.json",
        "last_good_feed.meta.json",
    ]
