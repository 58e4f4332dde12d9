"""The time grid: timezone-aware UTC periods, each labelled by its start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

__all__ = ["DEFAULT_STEP", "TimeGrid", "parse_datetime"]

DEFAULT_STEP = pd.Timedelta(minutes=15)
"""Dispatch period length: 96 periods a day."""


@dataclass(frozen=True)
class TimeGrid:
    """Equal periods from ``start``, labelled by their start.

    Attributes
    ----------
    start : pandas.Timestamp
        Start of the first period, timezone-aware (stored in UTC).
    periods : int
        Number of periods.
    step : pandas.Timedelta
        Length of a period.

    Examples
    --------
    >>> grid = TimeGrid.from_days("2026-01-15", days=1, timezone="Africa/Niamey")
    >>> grid.periods, grid.step_hours, str(grid.start)
    (96, 0.25, '2026-01-14 23:00:00+00:00')
    """

    start: pd.Timestamp
    periods: int
    step: pd.Timedelta = DEFAULT_STEP

    def __post_init__(self) -> None:
        start = pd.Timestamp(self.start)
        if start.tzinfo is None:
            msg = (
                f"TimeGrid start {start} has no timezone; pass an aware time, e.g. "
                "'2026-01-15T00:00+01:00', or use TimeGrid.from_days(..., timezone=...)"
            )
            raise ValueError(msg)
        if self.periods < 1:
            msg = f"TimeGrid needs at least one period, got {self.periods}"
            raise ValueError(msg)
        step = pd.Timedelta(self.step)
        if step <= pd.Timedelta(0) or pd.Timedelta(hours=24) % step != pd.Timedelta(0):
            msg = f"TimeGrid step {step} must divide a day evenly (e.g. 15min, 1h)"
            raise ValueError(msg)
        object.__setattr__(self, "start", start.tz_convert("UTC"))
        object.__setattr__(self, "step", step)

    @classmethod
    def from_days(
        cls,
        start_date: str | dt.date,
        days: int,
        timezone: str,
        step: str | pd.Timedelta = "15min",
    ) -> TimeGrid:
        """Whole local days from midnight of ``start_date`` in ``timezone``.

        Parameters
        ----------
        start_date : str or datetime.date
            First local day, e.g. ``"2026-01-15"``.
        days : int
            Number of days.
        timezone : str
            IANA timezone of the site.
        step : str or pandas.Timedelta
            Period length.
        """
        start = pd.Timestamp(start_date)
        start = start.tz_localize(timezone) if start.tzinfo is None else start.tz_convert(timezone)
        start = start.normalize()
        step = pd.Timedelta(step)
        if days < 1:
            msg = f"days must be at least 1, got {days}"
            raise ValueError(msg)
        return cls(start=start, periods=int(pd.Timedelta(days=days) / step), step=step)

    @property
    def step_hours(self) -> float:
        """Period length [h]."""
        return self.step / pd.Timedelta(hours=1)

    @property
    def index(self) -> pd.DatetimeIndex:
        """Period starts (UTC)."""
        return pd.date_range(self.start, periods=self.periods, freq=self.step, name="time")

    @property
    def midpoints(self) -> pd.DatetimeIndex:
        """Period midpoints (UTC): where a period's mean power is best sampled."""
        return self.index + self.step / 2

    @property
    def end(self) -> pd.Timestamp:
        """End of the last period (UTC)."""
        return self.start + self.periods * self.step


def parse_datetime(text: str, timezone: str) -> pd.Timestamp:
    """Read a date or date-time; naive values are taken as local time of the site.

    Examples
    --------
    >>> str(parse_datetime("2026-03-01 06:00", "Africa/Niamey"))
    '2026-03-01 05:00:00+00:00'
    """
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        msg = f"cannot read {text!r} as a date or time; use ISO 8601, e.g. 2026-03-01T06:00"
        raise ValueError(msg) from exc
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(timezone)
    return stamp.tz_convert("UTC")
