"""Generate the bundled week of weather, ``forecasts/data/week_rainy_season.csv``.

Seven local days (10–16 August 2026, rainy season) at 15 min for the default site, from
:func:`forecasts.weather.synthetic_weather` with a fixed seed: made up, not measured,
but with the mix of clear, cloudy and rainy days that makes energy scarce. The dispatch
quality benchmark and the planners' examples deliver on it.

Run ``python scripts/make_week_weather.py`` (or ``--check`` to compare with the file).
"""

from __future__ import annotations

import argparse
import sys

from forecasts.samples import BUNDLED_WEEK_PATH
from forecasts.weather import synthetic_weather
from microgrid import TimeGrid, load_site

FIRST_DAY = "2026-08-10"
DAYS = 7
SEED = 11


def render() -> str:
    """The CSV text: local ISO times, cloud cover, temperature and wind."""
    site = load_site()
    grid = TimeGrid.from_days(FIRST_DAY, DAYS, site.location.timezone)
    weather = synthetic_weather(grid.index, site.location, seed=SEED)
    weather.index = weather.index.tz_convert(site.location.timezone)
    weather.index.name = "time"
    table = weather[["cloud_cover", "temp_air", "wind_speed"]].round(3)
    return table.to_csv(date_format="%Y-%m-%dT%H:%M%z", lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if BUNDLED_WEEK_PATH.read_text() != text:
            print(f"{BUNDLED_WEEK_PATH} is out of date; run {__file__}", file=sys.stderr)
            return 1
        return 0
    BUNDLED_WEEK_PATH.write_text(text)
    print(f"wrote {BUNDLED_WEEK_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
