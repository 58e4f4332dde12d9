"""A local forecast feed for tests: Open-Meteo JSON over HTTP on 127.0.0.1, outages on demand."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from forecasts.samples import smoothed_forecast
from forecasts.weather import synthetic_weather
from microgrid.site import Location


def open_meteo_payload(weather: pd.DataFrame) -> dict[str, Any]:
    """An Open-Meteo hourly payload (UTC) of ``weather``'s cloud cover, temperature and wind."""
    hourly = weather[["cloud_cover", "temp_air", "wind_speed"]].resample("1h").mean()
    return {
        "latitude": 13.5,
        "longitude": 2.1,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "hourly_units": {
            "time": "iso8601",
            "cloud_cover": "%",
            "temperature_2m": "°C",
            "wind_speed_10m": "km/h",
        },
        "hourly": {
            "time": [t.strftime("%Y-%m-%dT%H:%M") for t in hourly.index],
            "cloud_cover": [round(v * 100, 1) for v in hourly["cloud_cover"]],
            "temperature_2m": [round(v, 2) for v in hourly["temp_air"]],
            "wind_speed_10m": [round(v * 3.6, 2) for v in hourly["wind_speed"]],
        },
    }


def forecast_for(location: Location, now: dt.datetime, days: int = 3, seed: int = 7) -> bytes:
    """What a provider would serve at ``now``: the next ``days`` days from the current hour."""
    start = pd.Timestamp(now).floor("h")
    times = pd.date_range(start, periods=days * 96, freq="15min")
    weather = smoothed_forecast(synthetic_weather(times, location, seed=seed))
    return json.dumps(open_meteo_payload(weather)).encode()


class FeedServer:
    """Serves ``payload(now)`` at ``/forecast``; ``mode`` "ok", "down" (503) or "garbage".

    Parameters
    ----------
    payload : callable
        The body for a request (called on the server thread).
    mode : callable, optional
        The mode for a request (e.g. from simulated time); default the ``mode`` attribute.
    """

    def __init__(self, payload: Callable[[], bytes], mode: Callable[[], str] | None = None) -> None:
        self.payload = payload
        self.mode = "ok"
        self.mode_fn = mode
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                mode = server.mode if server.mode_fn is None else server.mode_fn()
                if mode == "down":
                    self.send_error(503, "provider down")
                    return
                body = b"<html>maintenance</html>" if mode == "garbage" else server.payload()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/forecast"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
