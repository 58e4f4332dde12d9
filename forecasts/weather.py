r"""Weather adapters and a seeded weather generator.

Every function returns the same shape of data: a :class:`pandas.DataFrame` indexed by a
timezone-aware UTC :class:`pandas.DatetimeIndex` named ``time``, each row labelled by the
**start** of its period, sorted and unique, without NaN, with columns in pvlib
nomenclature where present:

=============== ====== =====================================================
column          unit   meaning
=============== ====== =====================================================
``ghi``         W/m²   global horizontal irradiance, mean over the period
``dni``         W/m²   direct normal irradiance, mean over the period
``dhi``         W/m²   diffuse horizontal irradiance, mean over the period
``temp_air``    °C     air temperature
``wind_speed``  m/s    wind speed
``cloud_cover`` \-    total cloud cover as a fraction 0–1 (never percent)
=============== ====== =====================================================

Adapters are named by source, as in :mod:`pvlib.iotools`: ``read_*`` takes a file,
``parse_*`` a buffer. They normalise names, units and time labels on arrival and raise
:class:`WeatherDataError` for anything they would otherwise have to guess.

:func:`synthetic_weather` is a seeded stochastic stand-in for planners and tests, and
:func:`weather_on_grid` puts any of these frames onto a dispatch time grid.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from microgrid.site import Location

__all__ = [
    "DAY_TYPES",
    "WEATHER_COLUMNS",
    "WeatherDataError",
    "parse_forecast_feed",
    "read_epw",
    "read_weather_csv",
    "synthetic_day_types",
    "synthetic_weather",
    "weather_on_grid",
]

FloatArray = npt.NDArray[np.float64]

WEATHER_COLUMNS: tuple[str, ...] = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover")
"""Every column an adapter may return, in the order it returns them."""

DAY_TYPES: tuple[str, ...] = ("clear", "partly_cloudy", "overcast", "rainy")
"""Sky conditions of :func:`synthetic_day_types`, from clearest to wettest."""

# Physical plausibility, inclusive [low, high]. The upper bounds catch unit mistakes rather
# than rare weather: GHI/DNI above 1500 W/m² exceed the solar constant (1361 W/m²) plus the
# strongest cloud-edge enhancement; the air-temperature records are −89.2 °C and 56.7 °C;
# the strongest gust measured is 113 m/s. Kelvin, J/m² or km/h mistaken for our units land
# outside these bounds in most cases.
_BOUNDS: dict[str, tuple[float, float]] = {
    "ghi": (0.0, 1500.0),
    "dni": (0.0, 1500.0),
    "dhi": (0.0, 1000.0),
    "temp_air": (-90.0, 60.0),
    "wind_speed": (0.0, 115.0),
    "cloud_cover": (0.0, 1.0),
}
_UNITS = {
    "ghi": "W/m²",
    "dni": "W/m²",
    "dhi": "W/m²",
    "temp_air": "°C",
    "wind_speed": "m/s",
    "cloud_cover": "fraction",
}


class WeatherDataError(ValueError):
    """Weather data that cannot be used as it is.

    The message always has three parts: the source (a file path, ``<payload>`` or the
    name given to :func:`weather_on_grid`), what is wrong (with the first offending time,
    line or column), and how to fix it.

    Attributes
    ----------
    source : str
        Where the data came from.
    problem : str
        What is wrong.
    fix : str
        How to fix it.
    """

    def __init__(self, source: str, problem: str, fix: str) -> None:
        self.source = source
        self.problem = problem
        self.fix = fix
        super().__init__(f"{source}: {problem}; {fix}")

    def __reduce__(self) -> tuple[type[WeatherDataError], tuple[str, str, str]]:
        # Rebuild from the three parts, so that the error survives pickling (e.g. Dask).
        return type(self), (self.source, self.problem, self.fix)


# --- shared checks -------------------------------------------------------------------------


def _fmt_time(stamp: pd.Timestamp) -> str:
    return stamp.isoformat()


def _fmt_duration(duration: pd.Timedelta) -> str:
    """``1h15min`` rather than pandas' ``0 days 01:15:00``."""
    seconds = round(duration.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}min" if minutes else "")
    return text + (f"{seconds}s" if seconds else "") or "0s"


Where = Callable[[int], str]


def _most_common_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """Return the most common difference of sorted times; ties go to the finer step."""
    steps, counts = np.unique(np.diff(index.asi8), return_counts=True)
    return pd.Timedelta(int(steps[np.argmax(counts)]), unit=index.unit)


def _check_order(
    index: pd.DatetimeIndex, source: str, where: Where, *, duplicate_fix: str, unsorted_fix: str
) -> None:
    """Check that times are unique and increasing, naming the first offending row."""
    duplicated = np.flatnonzero(index.duplicated())
    if duplicated.size:
        second = int(duplicated[0])
        first = int(np.flatnonzero(index == index[second])[0])
        problem = f"duplicate time {_fmt_time(index[second])} ({where(first)} and {where(second)})"
        raise WeatherDataError(source, problem, duplicate_fix)
    backwards = np.flatnonzero(np.diff(index.asi8) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        problem = (
            f"times are not sorted: {_fmt_time(index[i])} ({where(i)}) comes after "
            f"{_fmt_time(index[i - 1])} ({where(i - 1)})"
        )
        raise WeatherDataError(source, problem, unsorted_fix)


def _infer_step(index: pd.DatetimeIndex, source: str, where: Where, fix: str) -> pd.Timedelta:
    """Return the regular step of sorted unique times: the most common difference.

    A difference that is not a whole multiple of the step, or two equal larger differences
    in a row (a stretch sampled at a coarser rate rather than a gap), make the series
    irregular.
    """
    if len(index) < 2:
        problem = f"only {len(index)} row(s), so the time step cannot be inferred"
        raise WeatherDataError(source, problem, "give at least two rows")
    step = _most_common_step(index)
    steps = np.diff(index.asi8)
    unit = round(step / pd.Timedelta(1, unit=index.unit))  # step in asi8 units
    off_step = steps % unit != 0
    coarser = steps > unit
    repeated = np.zeros_like(coarser)
    repeated[1:] = coarser[1:] & (steps[1:] == steps[:-1])
    bad = np.flatnonzero(off_step | repeated)
    if bad.size:
        i = int(bad[0])
        again = "again " if repeated[i] and not off_step[i] else ""
        problem = (
            f"irregular time step: the usual step is {_fmt_duration(step)} but "
            f"{_fmt_time(index[i + 1])} ({where(i + 1)}) is {again}"
            f"{_fmt_duration(index[i + 1] - index[i])} after the previous row"
        )
        raise WeatherDataError(source, problem, fix)
    return step


def _first_gap(index: pd.DatetimeIndex, step: pd.Timedelta, where: Where) -> str | None:
    """Describe the first gap (and how many there are), or ``None`` without gaps."""
    steps = index[1:] - index[:-1]
    gaps = np.flatnonzero(steps > step)
    if not gaps.size:
        return None
    i = int(gaps[0])
    missing = int(steps[i] / step) - 1
    plural = "s" if gaps.size > 1 else ""
    return (
        f"{gaps.size} gap{plural} in the {_fmt_duration(step)} series; the first is after "
        f"{_fmt_time(index[i])} ({where(i)}): {missing} row(s) "
        f"({_fmt_duration(missing * step)}) missing before {_fmt_time(index[i + 1])} "
        f"({where(i + 1)})"
    )


def _first_nan(
    frame: pd.DataFrame, where: Where, label: Callable[[str], str], noun: str = "missing value"
) -> str | None:
    """Describe the first missing value of each column, or ``None`` if there are none."""
    parts = []
    for column in frame.columns:
        missing = np.flatnonzero(frame[column].isna().to_numpy())
        if missing.size:
            i = int(missing[0])
            parts.append(
                f"{label(column)} has {missing.size} {noun}(s), the first at "
                f"{_fmt_time(frame.index[i])} ({where(i)})"
            )
    return "; ".join(parts) or None


def _check_range(
    frame: pd.DataFrame,
    source: str,
    where: Where,
    label: Callable[[str], str],
    bounds: Mapping[str, tuple[float, float]] = _BOUNDS,
    units: Mapping[str, str] = _UNITS,
) -> None:
    """Values lie within physical bounds; NaN is left to the caller."""
    for column in frame.columns:
        low, high = bounds[column]
        values = frame[column].to_numpy(dtype=float)
        bad = np.flatnonzero((values < low) | (values > high))
        if bad.size:
            i = int(bad[0])
            problem = (
                f"{label(column)} is {values[i]:g} at {_fmt_time(frame.index[i])} "
                f"({where(i)}), outside the physical range [{low:g}, {high:g}] {units[column]}"
                f" ({bad.size} value(s) out of range)"
            )
            fix = "check the units and sign of that column and correct or remove the values"
            raise WeatherDataError(source, problem, fix)


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Our column order, float values, a UTC index named ``time``."""
    columns = [c for c in WEATHER_COLUMNS if c in frame.columns]
    out = frame[columns].astype("float64")
    index = pd.DatetimeIndex(out.index).tz_convert("UTC")
    out.index = index.rename("time")
    out.columns.name = None
    return out


# --- CSV -----------------------------------------------------------------------------------

_CSV_COLUMNS = (*WEATHER_COLUMNS, "cloud_cover_percent")
_CSV_BOUNDS = {**_BOUNDS, "cloud_cover_percent": (0.0, 100.0)}
_CSV_UNITS = {**_UNITS, "cloud_cover_percent": "%"}
_MISSING_TOKENS = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "null"})
_TIME = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_AWARE_TIME = re.compile(_TIME + r"(?:Z|[+-]\d{2}(?::?\d{2})?)")
_NAIVE_TIME = re.compile(_TIME)


def read_weather_csv(
    path: str | os.PathLike[str],
    *,
    fill: Literal["error", "interpolate"] = "error",
    max_gap: str | pd.Timedelta = "3h",
) -> pd.DataFrame:
    r"""Read a weather CSV file in our documented format.

    The format:

    - UTF-8 text, comma-separated, one header line naming the columns;
    - a ``time`` column: the **start** of each period in ISO 8601 **with a UTC offset**,
      e.g. ``2026-03-01T06:00+01:00`` or ``2026-03-01T05:00Z``; offsets may differ between
      rows (all are converted to UTC), times without an offset are an error;
    - any of the columns ``ghi``, ``dni``, ``dhi`` [W/m²], ``temp_air`` [°C],
      ``wind_speed`` [m/s], ``cloud_cover`` [fraction 0–1], or instead of ``cloud_cover``
      ``cloud_cover_percent`` [%, 0–100], which is converted to a fraction; no other columns;
    - one row per period at one regular step (e.g. 15min or 1h), sorted by time, each time
      once; irradiance values are means over the period;
    - numbers with a dot as decimal separator; an empty cell (or ``NaN``, ``NA``) is a
      missing value.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    fill : {'error', 'interpolate'}
        What to do about missing values and gaps (timestamps missing from the regular step,
        which is inferred as the most common difference between rows). ``'error'`` raises;
        ``'interpolate'`` reindexes to the regular step and interpolates linearly in time
        across gaps of up to ``max_gap``.
    max_gap : str or pandas.Timedelta
        Longest gap ``fill='interpolate'`` bridges: the number of consecutive missing rows
        times the step [duration], e.g. ``'3h'``.

    Returns
    -------
    pandas.DataFrame
        Indexed by period start (UTC, named ``time``), the file's columns in our names.

    Raises
    ------
    WeatherDataError
        If the file cannot be read, has naive times, unknown or repeated columns, duplicate
        or unsorted times, an irregular step, non-numeric or out-of-range values, or gaps
        and missing values that ``fill`` does not allow.
    ValueError
        If ``fill`` or ``max_gap`` is invalid.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> text = "time,ghi,cloud_cover_percent\n2026-03-01T06:00+01:00,0,20\n"
    >>> text += "2026-03-01T07:00+01:00,85.5,25\n"
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "w.csv"
    ...     _ = path.write_text(text, encoding="utf-8")
    ...     weather = read_weather_csv(path)
    >>> print(weather.to_csv(), end="")
    time,ghi,cloud_cover
    2026-03-01 05:00:00+00:00,0.0,0.2
    2026-03-01 06:00:00+00:00,85.5,0.25
    """
    if fill not in ("error", "interpolate"):
        msg = f"fill must be 'error' or 'interpolate', got {fill!r}"
        raise ValueError(msg)
    gap_limit = pd.Timedelta(max_gap)
    if gap_limit < pd.Timedelta(0):
        msg = f"max_gap must not be negative, got {max_gap!r}"
        raise ValueError(msg)
    source = os.fspath(path)
    header, rows, lines = _read_csv_rows(source)

    def where(i: int) -> str:
        return f"line {lines[i]}"

    positions = _csv_columns(header, source)
    if not rows:
        raise WeatherDataError(source, "the file has a header but no rows", "add data rows")
    index = _csv_times([row[positions["time"]] for row in rows], source, where)
    data: dict[str, FloatArray] = {}
    for name, j in positions.items():
        if name != "time":
            data[name] = _csv_numbers([row[j] for row in rows], name, source, where)
    frame = pd.DataFrame(data, index=index)
    _check_order(
        index,
        source,
        where,
        duplicate_fix="keep one row per time in the file",
        unsorted_fix="sort the file by time",
    )
    step = _infer_step(
        index, source, where, "resample the file to one regular step (e.g. all 15min or all 1h)"
    )
    _check_range(frame, source, where, lambda c: f"column {c!r}", _CSV_BOUNDS, _CSV_UNITS)
    if "cloud_cover_percent" in frame.columns:
        frame = frame.rename(columns={"cloud_cover_percent": "cloud_cover"})
        frame["cloud_cover"] = frame["cloud_cover"] / 100.0

    gap = _first_gap(index, step, where)
    nan = _first_nan(frame, where, lambda c: f"column {c!r}")
    if fill == "error":
        problems = [p for p in (gap, nan) if p is not None]
        if problems:
            fix = (
                f"pass fill='interpolate' to fill gaps and missing values of up to "
                f"max_gap={_fmt_duration(gap_limit)} by time interpolation, or complete the file"
            )
            raise WeatherDataError(source, "; ".join(problems), fix)
        return _finish(frame)
    return _finish(_interpolate(frame, step, gap_limit, source))


def _read_csv_rows(source: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, non-blank rows and the line number of each row."""
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror or exc})"
        raise WeatherDataError(source, problem, "check the path and permissions") from exc
    except UnicodeDecodeError as exc:
        problem = f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise WeatherDataError(source, problem, "save it as UTF-8 CSV") from exc
    except csv.Error as exc:
        problem = f"not valid CSV ({exc})"
        raise WeatherDataError(source, problem, "save it as comma-separated CSV") from exc
    if header is None:
        raise WeatherDataError(source, "the file is empty", "write a header line and rows")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            problem = f"line {line} has {len(row)} fields but the header has {len(header)}"
            raise WeatherDataError(source, problem, "give every row one value per column")
    return header, rows, lines


def _csv_columns(header: list[str], source: str) -> dict[str, int]:
    """Validate the header; map each column name to its position."""
    names = [name.strip() for name in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problem = f"column(s) {', '.join(map(repr, repeated))} appear more than once"
        raise WeatherDataError(source, problem, "keep one column per variable")
    if "time" not in names:
        problem = f"no 'time' column (columns: {', '.join(map(repr, names))})"
        fix = "name the column of period starts 'time'"
        raise WeatherDataError(source, problem, fix)
    unknown = [n for n in names if n != "time" and n not in _CSV_COLUMNS]
    if unknown:
        problem = f"unknown column(s) {', '.join(map(repr, unknown))}"
        fix = f"use only 'time' and {', '.join(map(repr, _CSV_COLUMNS))}, or drop the others"
        raise WeatherDataError(source, problem, fix)
    if "cloud_cover" in names and "cloud_cover_percent" in names:
        problem = "both 'cloud_cover' and 'cloud_cover_percent' are given"
        raise WeatherDataError(source, problem, "keep one of them")
    variables = [n for n in names if n != "time"]
    if not variables:
        problem = "no weather columns, only 'time'"
        fix = f"add at least one of {', '.join(map(repr, _CSV_COLUMNS))}"
        raise WeatherDataError(source, problem, fix)
    return {name: j for j, name in enumerate(names)}


def _csv_times(cells: list[str], source: str, where: Where) -> pd.DatetimeIndex:
    """Parse ISO 8601 times with offsets to UTC; naive or unreadable times are errors."""
    text = [cell.strip() for cell in cells]
    for i, cell in enumerate(text):
        if _AWARE_TIME.fullmatch(cell):
            continue
        if _NAIVE_TIME.fullmatch(cell):
            problem = f"time {cell!r} ({where(i)}) has no UTC offset (a naive time)"
            example = cell if len(cell) > len("2026-03-01") else f"{cell}T00:00"
            fix = (
                "write every time in ISO 8601 with its offset, e.g. "
                f"'{example}+01:00' for UTC+1 (Niamey) or '{example}Z' for UTC"
            )
        else:
            problem = f"cannot read time {cell!r} ({where(i)}) as ISO 8601"
            fix = "write times like '2026-03-01T06:00+01:00'"
        raise WeatherDataError(source, problem, fix)
    try:
        parsed = pd.to_datetime(pd.Series(text), format="ISO8601", utc=True)
    except (ValueError, OverflowError):
        for i, cell in enumerate(text):
            try:
                pd.Timestamp(cell)
            except (ValueError, OverflowError) as exc:
                problem = f"cannot read time {cell!r} ({where(i)}): {exc}"
                fix = "write a valid date and time like '2026-03-01T06:00+01:00'"
                raise WeatherDataError(source, problem, fix) from exc
        raise
    return pd.DatetimeIndex(parsed, name="time")


def _csv_numbers(cells: list[str], name: str, source: str, where: Where) -> FloatArray:
    """Floats; missing tokens become NaN, anything else unreadable is an error."""
    values = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        text = cell.strip()
        if text in _MISSING_TOKENS:
            values[i] = np.nan
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or "_" in text:
            problem = f"column {name!r} {where(i)}: {cell!r} is not a number"
            fix = "use a dot as decimal separator and leave missing values empty"
            raise WeatherDataError(source, problem, fix)
        values[i] = value
    return values


def _interpolate(
    frame: pd.DataFrame, step: pd.Timedelta, max_gap: pd.Timedelta, source: str
) -> pd.DataFrame:
    """Reindex to the regular step and fill gaps of up to ``max_gap`` linearly in time."""
    full = pd.date_range(frame.index[0], frame.index[-1], freq=step, name="time")
    frame = frame.reindex(full)
    n = len(frame)
    for column in frame.columns:
        missing = frame[column].isna().to_numpy()
        if not missing.any():
            continue
        # Runs of missing rows as [start, stop) pairs.
        edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            first = _fmt_time(full[start])
            if start == 0 or stop == n:
                end = "start" if start == 0 else "end"
                problem = (
                    f"column {column!r} is missing at the {end} of the file (from {first}); "
                    "there is nothing to interpolate from on that side"
                )
                raise WeatherDataError(source, problem, "trim the file or complete it")
            length = (stop - start) * step
            if length > max_gap:
                problem = (
                    f"column {column!r} has a gap of {_fmt_duration(length)} from {first}, "
                    f"longer than max_gap={_fmt_duration(max_gap)}"
                )
                fix = "complete the file, or raise max_gap if bridging it linearly is acceptable"
                raise WeatherDataError(source, problem, fix)
    return frame.interpolate(method="time", limit_area="inside")


# --- EPW -----------------------------------------------------------------------------------

# EPW's "missing" codes (EnergyPlus Auxiliary Programs, "Data Field Descriptions").
_EPW_MISSING = {
    "temp_air": 99.9,
    "ghi": 9999.0,
    "dni": 9999.0,
    "dhi": 9999.0,
    "wind_speed": 999.0,
    "total_sky_cover": 99.0,
}
_EPW_FIRST_DATA_LINE = 9  # eight header lines come first


def read_epw(path: str | os.PathLike[str], *, coerce_year: int | None = None) -> pd.DataFrame:
    """Read an EnergyPlus weather (EPW) file with :func:`pvlib.iotools.read_epw`.

    EPW labels each hour by its **end** (hour 1 is 00:00–01:00 local standard time) and
    stores irradiance as energy over that hour [Wh/m²], numerically the mean power
    [W/m²]. pvlib already labels rows by ``hour - 1``, i.e. the start of the hour, in the
    file's fixed UTC offset; this function keeps those start labels and converts them to
    UTC. EPW's temperature and wind are readings at the end of the hour; here they stand
    for the hour they close, as in pvlib.

    Parameters
    ----------
    path : str or path-like
        The EPW file.
    coerce_year : int, optional
        Set every row's year, as typical-year files mix years from month to month. Use a
        non-leap year for 8760-row files.

    Returns
    -------
    pandas.DataFrame
        Columns ``ghi``, ``dni``, ``dhi`` [W/m²], ``temp_air`` [°C], ``wind_speed`` [m/s]
        and ``cloud_cover`` [fraction] (EPW's total sky cover in tenths ÷ 10), indexed by
        the start of each hour (UTC, named ``time``).

    Raises
    ------
    WeatherDataError
        If pvlib cannot parse the file, a value is missing (EPW's 99.9/999/9999 codes) or
        out of range, or the hours are not unique, sorted and regular.
    """
    source = os.fspath(path)
    try:
        raw, _meta = pvlib.iotools.read_epw(source, coerce_year=coerce_year)
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror or exc})"
        raise WeatherDataError(source, problem, "check the path and permissions") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        problem = f"not a valid EPW file ({type(exc).__name__}: {exc})"
        fix = "check that it has the 8 EPW header lines and 35 fields per data row"
        raise WeatherDataError(source, problem, fix) from exc

    def where(i: int) -> str:
        return f"line {i + _EPW_FIRST_DATA_LINE}"

    frame = pd.DataFrame(
        {
            "ghi": raw["ghi"],
            "dni": raw["dni"],
            "dhi": raw["dhi"],
            "temp_air": raw["temp_air"],
            "wind_speed": raw["wind_speed"],
            "total_sky_cover": raw["total_sky_cover"],
        }
    ).astype("float64")
    frame.index = pd.DatetimeIndex(raw.index).tz_convert("UTC")
    for column, code in _EPW_MISSING.items():
        frame[column] = frame[column].mask(frame[column] >= code)
    nan = _first_nan(frame, where, lambda c: f"EPW field {c!r}")
    if nan is not None:
        fix = "complete the missing values (e.g. with a weather-file tool) before using it"
        raise WeatherDataError(source, nan, fix)
    mixed_years = (
        "" if coerce_year is not None else " (typical-year files mix years: pass coerce_year)"
    )
    _check_order(
        frame.index,
        source,
        where,
        duplicate_fix="keep one row per hour in the file" + mixed_years,
        unsorted_fix="sort the file by time" + mixed_years,
    )
    step = _infer_step(frame.index, source, where, "give one row per hour")
    gap = _first_gap(frame.index, step, where)
    if gap is not None:
        raise WeatherDataError(source, gap, "complete the file or pass a non-leap coerce_year")
    bounds = {**_BOUNDS, "total_sky_cover": (0.0, 10.0)}
    units = {**_UNITS, "total_sky_cover": "tenths"}
    _check_range(frame, source, where, lambda c: f"EPW field {c!r}", bounds, units)
    frame["cloud_cover"] = frame.pop("total_sky_cover") / 10.0
    return _finish(frame)


# --- Open-Meteo forecast feed --------------------------------------------------------------

# Provider variable -> (our name, True if the value is the mean of the PRECEDING period).
# Open-Meteo documents its radiation variables as "average of the preceding hour" and the
# others as instantaneous values at the time given. Old names are accepted as aliases.
_FEED_VARIABLES: dict[str, tuple[str, bool]] = {
    "shortwave_radiation": ("ghi", True),
    "direct_normal_irradiance": ("dni", True),
    "diffuse_radiation": ("dhi", True),
    "temperature_2m": ("temp_air", False),
    "wind_speed_10m": ("wind_speed", False),
    "windspeed_10m": ("wind_speed", False),
    "cloud_cover": ("cloud_cover", False),
    "cloudcover": ("cloud_cover", False),
}


def _fahrenheit_to_celsius(x: FloatArray) -> FloatArray:
    return (x - 32.0) * 5.0 / 9.0


def _scale(factor: float = 1.0, divisor: float = 1.0) -> Callable[[FloatArray], FloatArray]:
    def convert(x: FloatArray) -> FloatArray:
        return x * factor / divisor

    return convert


# Our variable -> provider unit -> conversion to our unit.
_FEED_UNITS: dict[str, dict[str, Callable[[FloatArray], FloatArray]]] = {
    "ghi": {"W/m²": _scale(1.0), "W/m2": _scale(1.0)},
    "dni": {"W/m²": _scale(1.0), "W/m2": _scale(1.0)},
    "dhi": {"W/m²": _scale(1.0), "W/m2": _scale(1.0)},
    "temp_air": {"°C": _scale(1.0), "°F": _fahrenheit_to_celsius},
    "wind_speed": {
        "m/s": _scale(1.0),
        "km/h": _scale(divisor=3.6),
        "mp/h": _scale(0.44704),  # international mile per hour, exact
        "kn": _scale(1852.0, 3600.0),  # nautical mile per hour, exact
    },
    "cloud_cover": {"%": _scale(divisor=100.0)},
}


def parse_forecast_feed(payload: str | bytes | Mapping[str, Any]) -> pd.DataFrame:
    """Parse an hourly forecast payload in the Open-Meteo format.

    The payload (the JSON body, or the decoded mapping) looks like::

        {"latitude": 13.5, "longitude": 2.1, "utc_offset_seconds": 3600,
         "timezone": "Africa/Niamey",
         "hourly_units": {"time": "iso8601", "cloud_cover": "%",
                          "temperature_2m": "°C", "wind_speed_10m": "km/h",
                          "shortwave_radiation": "W/m²"},
         "hourly": {"time": ["2026-03-01T00:00", ...], "cloud_cover": [...], ...}}

    Times are local to ``utc_offset_seconds`` (or UNIX seconds, always UTC, when the
    time unit is ``unixtime``) and are converted to UTC. Units are normalised from
    ``hourly_units`` (km/h, mp/h, kn → m/s; % → fraction; °F → °C). Variables we use are
    renamed (``shortwave_radiation`` → ``ghi``, ``direct_normal_irradiance`` → ``dni``,
    ``diffuse_radiation`` → ``dhi``, ``temperature_2m`` → ``temp_air``,
    ``wind_speed_10m`` → ``wind_speed``, ``cloud_cover``); other variables are ignored.

    Time labels: Open-Meteo gives radiation at hour *t* as the mean over the **preceding**
    hour, so those variables are relabelled to *t* − 1 h, the start of their period.
    Instantaneous variables (temperature, wind, cloud cover) at *t* label the period
    starting at *t*. When both kinds are present, the first and last hour, which only one
    kind covers, are dropped.

    Parameters
    ----------
    payload : str, bytes or Mapping
        The provider's response.

    Returns
    -------
    pandas.DataFrame
        Hourly, indexed by period start (UTC, named ``time``).

    Raises
    ------
    WeatherDataError
        If the payload is not JSON, lacks ``hourly``, ``hourly_units`` or
        ``utc_offset_seconds``, has an unknown unit, lists of unequal length, null or
        non-numeric values, out-of-range values, or times that are not unique, sorted and
        regular.

    Examples
    --------
    >>> feed = {
    ...     "utc_offset_seconds": 3600,
    ...     "hourly_units": {"time": "iso8601", "wind_speed_10m": "km/h", "cloud_cover": "%"},
    ...     "hourly": {
    ...         "time": ["2026-03-01T00:00", "2026-03-01T01:00"],
    ...         "wind_speed_10m": [10.8, 7.2],
    ...         "cloud_cover": [0, 40],
    ...     },
    ... }
    >>> print(parse_forecast_feed(feed).to_csv(), end="")
    time,wind_speed,cloud_cover
    2026-02-28 23:00:00+00:00,3.0,0.0
    2026-03-01 00:00:00+00:00,2.0,0.4
    """
    source = "<payload>"
    document = _feed_document(payload, source)
    hourly = document.get("hourly")
    units = document.get("hourly_units")
    if not isinstance(hourly, Mapping) or not isinstance(units, Mapping):
        missing = "hourly" if not isinstance(hourly, Mapping) else "hourly_units"
        problem = f"no {missing!r} object in the payload"
        fix = "request hourly variables, e.g. &hourly=temperature_2m,cloud_cover,wind_speed_10m"
        raise WeatherDataError(source, problem, fix)
    index = _feed_times(document, hourly, units, source)

    def where(i: int) -> str:
        return f"hourly.time[{i}]"

    again = "the payload is malformed; request it again"
    _check_order(index, source, where, duplicate_fix=again, unsorted_fix=again)
    step = _infer_step(index, source, where, again)
    gap = _first_gap(index, step, where)
    if gap is not None:
        raise WeatherDataError(source, gap, "request the payload again")

    columns: dict[str, pd.Series] = {}
    providers: dict[str, str] = {}
    for variable, (ours, preceding) in _FEED_VARIABLES.items():
        if variable not in hourly:
            continue
        if ours in columns:
            problem = f"both {providers[ours]!r} and {variable!r} give {ours}"
            raise WeatherDataError(source, problem, "request only one of them")
        values = _feed_values(hourly[variable], variable, len(index), source, where)
        converted = _feed_convert(values, ours, variable, units, source)
        labels = index - step if preceding else index
        columns[ours] = pd.Series(converted, index=labels)
        providers[ours] = variable
    if not columns:
        problem = f"none of the variables we use in 'hourly' ({', '.join(_FEED_VARIABLES)})"
        fix = "request e.g. &hourly=temperature_2m,cloud_cover,wind_speed_10m,shortwave_radiation"
        raise WeatherDataError(source, problem, fix)

    def label(column: str) -> str:
        return f"{providers[column]!r} (as {column})"

    for ours, series in columns.items():
        single = series.to_frame(ours)
        nan = _first_nan(single, where, label, noun="null")
        if nan is not None:
            fix = "request the payload again, or fewer forecast days so every hour has a value"
            raise WeatherDataError(source, nan, fix)
        _check_range(single, source, where, label)
    # Relabelled and instantaneous variables overlap in all but the first and last hour.
    return _finish(pd.DataFrame(columns).dropna())


def _feed_document(payload: str | bytes | Mapping[str, Any], source: str) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        return payload
    try:
        document = json.loads(payload)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5 000-digit number
        problem = f"not valid JSON ({str(exc)[:200]})"
        raise WeatherDataError(source, problem, "pass the provider's response body") from None
    except RecursionError:
        problem = "the JSON is nested too deeply to be a forecast payload"
        raise WeatherDataError(source, problem, "pass the provider's response body") from None
    if not isinstance(document, Mapping):
        problem = f"the JSON is a {type(document).__name__}, not an object"
        raise WeatherDataError(source, problem, "pass the provider's response body")
    return document


def _feed_times(
    document: Mapping[str, Any], hourly: Mapping[str, Any], units: Mapping[str, Any], source: str
) -> pd.DatetimeIndex:
    """Return the payload's times in UTC."""
    times = hourly.get("time")
    if not isinstance(times, list) or not times:
        problem = "'hourly.time' is missing or empty"
        raise WeatherDataError(source, problem, "pass the provider's full response")
    time_unit = units.get("time", "iso8601")
    if time_unit not in ("iso8601", "unixtime"):
        problem = f"unknown time unit {time_unit!r} in hourly_units"
        raise WeatherDataError(source, problem, "request timeformat=iso8601 or unixtime")
    unread = "pass the provider's response body"
    if time_unit == "unixtime":
        # Open-Meteo's UNIX times are UTC whatever timezone was requested.
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
            raise WeatherDataError(source, "'hourly.time' holds non-integer UNIX times", unread)
        return pd.DatetimeIndex(pd.to_datetime(times, unit="s", utc=True), name="time")
    offset = document.get("utc_offset_seconds")
    if not isinstance(offset, int) or isinstance(offset, bool):
        problem = f"'utc_offset_seconds' is {offset!r}, not an integer"
        fix = "pass the provider's full response: its local times need their UTC offset"
        raise WeatherDataError(source, problem, fix)
    if not all(isinstance(t, str) for t in times):
        raise WeatherDataError(source, "'hourly.time' holds non-text ISO 8601 times", unread)
    try:
        parsed = pd.DatetimeIndex(pd.to_datetime(times, format="ISO8601"))
    except (ValueError, OverflowError) as exc:
        problem = f"cannot read 'hourly.time' as ISO 8601 ({exc})"
        raise WeatherDataError(source, problem, unread) from exc
    if parsed.tz is not None:  # an explicit offset in the text wins
        return parsed.tz_convert("UTC").rename("time")
    return (parsed - pd.Timedelta(seconds=offset)).tz_localize("UTC").rename("time")


def _feed_values(values: Any, variable: str, n: int, source: str, where: Where) -> FloatArray:
    if not isinstance(values, list) or len(values) != n:
        size = len(values) if isinstance(values, list) else type(values).__name__
        problem = f"'hourly.{variable}' has {size} values but 'hourly.time' has {n}"
        raise WeatherDataError(source, problem, "pass the provider's full response")
    out = np.empty(n, dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[i] = value
        else:
            problem = f"'hourly.{variable}' at {where(i)} is {value!r}, not a number"
            raise WeatherDataError(source, problem, "pass the provider's response body")
    return out


def _feed_convert(
    values: FloatArray, ours: str, variable: str, units: Mapping[str, Any], source: str
) -> FloatArray:
    unit = units.get(variable)
    known = _FEED_UNITS[ours]
    if unit not in known:
        found = "no unit" if unit is None else f"unknown unit {unit!r}"
        problem = f"{found} for {variable!r} in hourly_units"
        fix = f"request it in one of {', '.join(map(repr, known))}"
        raise WeatherDataError(source, problem, fix)
    return known[unit](values)


# --- synthetic weather ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Climate:
    """Monthly parameters of the generator (index 0 = January, northern hemisphere)."""

    day_type_probabilities: tuple[tuple[float, float, float, float], ...]
    persistence: tuple[float, ...]  # chance that tomorrow repeats today's day type
    temp_min_c: tuple[float, ...]  # mean daily minimum [°C]
    temp_max_c: tuple[float, ...]  # mean daily maximum on a clear day [°C]
    temp_anomaly_sd_c: float  # day-to-day variation of both [°C]
    wind_mean_ms: tuple[float, ...]  # mean daily wind speed [m/s]


# Climate parameters are a plausible climatology written for planning studies, not fitted to
# measurements. Sahel: Niamey-like (13.5 N). Dry season (Nov–Mar) mostly clear, with
# harmattan dust haze standing in as "partly cloudy"; hottest before the monsoon (Apr–May,
# 27–42 °C); monsoon Jun–Sep with many overcast and rainy (squall-line) days; cooler nights
# Dec–Jan. Mid-latitude: a generic temperate climate near 48 N, cloudier in winter.
_SAHEL = _Climate(
    day_type_probabilities=(
        (0.60, 0.35, 0.05, 0.00),  # Jan
        (0.60, 0.35, 0.05, 0.00),  # Feb
        (0.55, 0.35, 0.08, 0.02),  # Mar
        (0.45, 0.35, 0.13, 0.07),  # Apr
        (0.30, 0.35, 0.20, 0.15),  # May
        (0.15, 0.30, 0.30, 0.25),  # Jun
        (0.05, 0.25, 0.35, 0.35),  # Jul
        (0.03, 0.22, 0.35, 0.40),  # Aug
        (0.10, 0.30, 0.30, 0.30),  # Sep
        (0.40, 0.35, 0.15, 0.10),  # Oct
        (0.60, 0.35, 0.05, 0.00),  # Nov
        (0.60, 0.35, 0.05, 0.00),  # Dec
    ),
    # Dry-season weather regimes last longer than the monsoon's day-to-day variability.
    persistence=(0.6, 0.6, 0.6, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.6, 0.6),
    temp_min_c=(16, 19, 23, 27, 28, 26, 24, 23, 24, 24, 20, 17),
    temp_max_c=(33, 36, 39, 42, 42, 39, 35, 33, 35, 38, 36, 33),
    temp_anomaly_sd_c=1.2,
    wind_mean_ms=(3.5, 3.5, 3.3, 3.0, 3.0, 3.0, 2.8, 2.6, 2.4, 2.3, 2.8, 3.3),
)
_MID_LATITUDE = _Climate(
    day_type_probabilities=(
        *[(0.15, 0.25, 0.40, 0.20)] * 2,  # Jan, Feb
        *[(0.25, 0.35, 0.25, 0.15)] * 3,  # Mar–May
        *[(0.35, 0.35, 0.15, 0.15)] * 3,  # Jun–Aug
        *[(0.20, 0.30, 0.30, 0.20)] * 3,  # Sep–Nov
        (0.15, 0.25, 0.40, 0.20),  # Dec
    ),
    persistence=(0.5,) * 12,
    temp_min_c=(-2, -1, 2, 5, 9, 12, 14, 14, 10, 7, 3, 0),
    temp_max_c=(4, 6, 11, 16, 20, 24, 26, 25, 21, 15, 9, 5),
    temp_anomaly_sd_c=2.5,
    wind_mean_ms=(3.8, 3.7, 3.6, 3.3, 3.0, 2.8, 2.7, 2.6, 2.8, 3.2, 3.5, 3.7),
)
_CLIMATES = {"sahel": _SAHEL, "mid_latitude": _MID_LATITUDE}
_SAHEL_MAX_ABS_LATITUDE = 20.0  # degrees; tropical/Sahel-like below this

# Per day type (clear, partly cloudy, overcast, rainy): mean cloud cover and the standard
# deviation of its hourly noise [fraction]; changes to the clear-day maximum and to the
# minimum temperature [°C] (clouds keep nights warm; rain cools through evaporation and
# squall-line outflow); factor on the day's wind (squall lines are gusty).
_CLOUD_MEAN = np.array([0.05, 0.35, 0.75, 0.90])
_CLOUD_SD = np.array([0.04, 0.15, 0.12, 0.06])
_TEMP_MAX_DELTA_C = np.array([0.0, -1.0, -3.0, -5.0])
_TEMP_MIN_DELTA_C = np.array([0.0, 0.5, 1.0, -1.5])
_WIND_FACTOR = np.array([1.0, 1.0, 0.95, 1.25])
# Hour-to-hour autocorrelation of cloud-cover and wind noise, and day-to-day of the
# temperature anomaly: typical magnitudes, chosen so that weather persists for hours/days.
_HOURLY_AR = 0.8
_DAILY_TEMP_AR = 0.6
_WIND_LOG_SD = 0.2  # hourly log-normal variation of wind speed
_WIND_DAY_LOG_SD = 0.25  # day-to-day log-normal variation of the daily mean wind
_WIND_DIURNAL = 0.3  # afternoon mixing: ±30 % around the daily mean, peak 14:00 solar
_HOUR_TEMP_MAX = 15.0  # solar hour of the daily maximum temperature
_NODES = 25  # hourly noise nodes of a local day on the wall clock: 00:00 … 24:00
_STREAM_YEAR = 1  # seed-sequence tags keep the yearly and daily streams apart
_STREAM_DAY = 2


def _climate_of(location: Location) -> tuple[str, bool]:
    """Climate key, and whether seasons are shifted by six months (southern hemisphere)."""
    key = "sahel" if abs(location.latitude) < _SAHEL_MAX_ABS_LATITUDE else "mid_latitude"
    return key, location.latitude < 0


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        msg = f"seed must be a non-negative integer, got {seed!r}"
        raise ValueError(msg)


@functools.lru_cache(maxsize=256)
def _year_stream(
    seed: int, year: int, climate_key: str, southern: bool
) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """Day types and the temperature anomaly (unit variance) of every day of a year.

    The chain starts on 1 January from that month's stationary distribution, seeded by
    (seed, year) alone, so any date's value is the same whatever range is asked for.
    """
    climate = _CLIMATES[climate_key]
    rng = np.random.default_rng([seed, _STREAM_YEAR, year])
    start = dt.date(year, 1, 1)
    n = (dt.date(year + 1, 1, 1) - start).days
    months = np.array([(start + dt.timedelta(days=k)).month - 1 for k in range(n)])
    if southern:
        months = (months + 6) % 12
    cumulative = np.cumsum(np.array(climate.day_type_probabilities), axis=1)
    persistence = np.array(climate.persistence)
    keep, pick, noise = rng.random(n), rng.random(n), rng.standard_normal(n)

    def draw(k: int) -> int:
        # min(): a cumulative sum may end a rounding error below 1.
        state = int(np.searchsorted(cumulative[months[k]], pick[k], side="right"))
        return min(state, len(DAY_TYPES) - 1)

    # Transition matrix P = p·I + (1 − p)·1πᵀ: keep today's type with probability p, else
    # draw from the month's climatology π, which is therefore also P's stationary law.
    types = np.empty(n, dtype=np.int8)
    types[0] = draw(0)
    for k in range(1, n):
        types[k] = types[k - 1] if keep[k] < persistence[months[k]] else draw(k)
    # Day-to-day AR(1) temperature anomaly with unit variance.
    anomaly = np.empty(n, dtype=np.float64)
    anomaly[0] = noise[0]
    innovation = math.sqrt(1 - _DAILY_TEMP_AR**2)
    for k in range(1, n):
        anomaly[k] = _DAILY_TEMP_AR * anomaly[k - 1] + innovation * noise[k]
    types.flags.writeable = False
    anomaly.flags.writeable = False
    return types, anomaly


def _day_type_codes(
    dates: Sequence[dt.date], seed: int, climate_key: str, southern: bool
) -> npt.NDArray[np.int8]:
    out = np.empty(len(dates), dtype=np.int8)
    for k, date in enumerate(dates):
        types, _ = _year_stream(int(seed), date.year, climate_key, southern)
        out[k] = types[date.timetuple().tm_yday - 1]
    return out


def _as_local_dates(dates: pd.DatetimeIndex | Iterable[dt.date], timezone: str) -> list[dt.date]:
    if isinstance(dates, pd.DatetimeIndex):
        if dates.tz is not None:
            dates = dates.tz_convert(timezone).tz_localize(None)
        return [stamp.date() for stamp in dates]
    return [d.date() if isinstance(d, dt.datetime) else d for d in dates]


def synthetic_day_types(
    dates: pd.DatetimeIndex | Iterable[dt.date], location: Location, seed: int
) -> pd.Series:
    """Seeded sky condition of each local date, from a monthly Markov chain.

    The chain of day types (see :data:`DAY_TYPES`) runs from 1 January of each year,
    seeded by ``(seed, year)``, with a transition matrix that depends on the month and the
    climate: Sahel-like for ``|latitude| < 20°`` (monsoon June–September with many overcast
    and rainy days, a mostly clear dry season with harmattan haze counted as partly
    cloudy), a generic mid-latitude climate otherwise; seasons are shifted by six months
    south of the equator. A date's type therefore does not depend on which other dates are
    asked for. Years are independent chains.

    Parameters
    ----------
    dates : pandas.DatetimeIndex or iterable of datetime.date
        Local dates; a timezone-aware index is first converted to the site's timezone.
    location : microgrid.site.Location
        The site: its latitude selects the climate.
    seed : int
        Non-negative seed.

    Returns
    -------
    pandas.Series
        Ordered categorical of day types, indexed by date (naive, named ``date``).

    Examples
    --------
    >>> from microgrid.site import Location
    >>> niamey = Location(latitude=13.5, longitude=2.1, altitude_m=210, timezone="Africa/Niamey")
    >>> dry = synthetic_day_types(pd.date_range("2026-01-01", "2026-02-28"), niamey, seed=1)
    >>> wet = synthetic_day_types(pd.date_range("2026-07-01", "2026-08-31"), niamey, seed=1)
    >>> int((dry == "rainy").sum()), bool((wet == "rainy").sum() > 10)
    (0, True)
    """
    _check_seed(seed)
    local = _as_local_dates(dates, location.timezone)
    key, southern = _climate_of(location)
    codes = _day_type_codes(local, seed, key, southern)
    categories = pd.CategoricalDtype(list(DAY_TYPES), ordered=True)
    values = pd.Categorical.from_codes(codes.astype(np.int64), dtype=categories)
    index = pd.DatetimeIndex([pd.Timestamp(d) for d in local], name="date")
    return pd.Series(values, index=index, name="day_type")


def _seasonal(values: Sequence[float], month_position: FloatArray) -> FloatArray:
    """Monthly means (at mid-month) interpolated to a position in months, periodically."""
    means = np.asarray(values, dtype=np.float64)
    return np.asarray(np.interp(month_position, np.arange(12) + 0.5, means, period=12))


def _month_position(dates: Sequence[dt.date], southern: bool) -> FloatArray:
    """Months since 1 January (0–12) at the middle of each date, shifted south."""
    position = np.array(
        [d.month - 1 + (d.day - 0.5) / _days_in_month(d) for d in dates], dtype=np.float64
    )
    return (position + 6.0) % 12.0 if southern else position


def _days_in_month(date: dt.date) -> int:
    following = dt.date(date.year + date.month // 12, date.month % 12 + 1, 1)
    return (following - dt.date(date.year, date.month, 1)).days


def _sunrise_solar_hour(dates: Sequence[dt.date], latitude: float) -> FloatArray:
    """Sunrise in mean solar time [h] from the declination (Cooper, 1969).

    Clipped to 02:00–10:00 so that the diurnal cycle keeps its shape in polar day and night.
    """
    day_of_year = np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)
    declination = np.radians(23.44) * np.sin(2 * np.pi * (284 + day_of_year) / 365)
    cos_hour_angle = -np.tan(np.radians(latitude)) * np.tan(declination)
    hour_angle = np.degrees(np.arccos(np.clip(cos_hour_angle, -1.0, 1.0)))
    return np.asarray(np.clip(12.0 - hour_angle / 15.0, 2.0, 10.0), dtype=np.float64)


@dataclass(frozen=True)
class _Days:
    """Parameters of consecutive dates (arrays aligned with ``dates``)."""

    dates: list[dt.date]
    types: npt.NDArray[np.int8]
    temp_min: FloatArray
    temp_max: FloatArray
    sunrise: FloatArray
    wind_day: FloatArray
    cloud_noise: FloatArray  # (days, _NODES) AR(1) noise, unit variance
    wind_noise: FloatArray  # (days, _NODES) AR(1) noise, unit variance


def _days(first: dt.date, last: dt.date, location: Location, seed: int) -> _Days:
    """Per-date parameters, each from streams seeded by (seed, date) or (seed, year)."""
    n = (last - first).days + 1
    dates = [first + dt.timedelta(days=k) for k in range(n)]
    key, southern = _climate_of(location)
    climate = _CLIMATES[key]
    types = _day_type_codes(dates, seed, key, southern)
    anomaly = np.array(
        [_year_stream(seed, d.year, key, southern)[1][d.timetuple().tm_yday - 1] for d in dates]
    )
    position = _month_position(dates, southern)
    shift = climate.temp_anomaly_sd_c * anomaly
    temp_min = _seasonal(climate.temp_min_c, position) + _TEMP_MIN_DELTA_C[types] + shift
    temp_max = _seasonal(climate.temp_max_c, position) + _TEMP_MAX_DELTA_C[types] + shift
    # A rainy day's minimum may exceed the maximum it was lowered to; keep a 2 °C range.
    temp_max = np.maximum(temp_max, temp_min + 2.0)
    wind_day = _seasonal(climate.wind_mean_ms, position) * _WIND_FACTOR[types]
    cloud_noise = np.empty((n, _NODES))
    wind_noise = np.empty((n, _NODES))
    innovation = math.sqrt(1 - _HOURLY_AR**2)
    for k, date in enumerate(dates):
        rng = np.random.default_rng([seed, _STREAM_DAY, date.toordinal()])
        z = rng.standard_normal((2, _NODES))
        wind_day[k] *= math.exp(_WIND_DAY_LOG_SD * rng.standard_normal() - _WIND_DAY_LOG_SD**2 / 2)
        for noise, row in ((cloud_noise, z[0]), (wind_noise, z[1])):
            noise[k, 0] = row[0]
            for h in range(1, _NODES):
                noise[k, h] = _HOURLY_AR * noise[k, h - 1] + innovation * row[h]
    return _Days(
        dates=dates,
        types=types,
        temp_min=temp_min,
        temp_max=temp_max,
        sunrise=_sunrise_solar_hour(dates, location.latitude),
        wind_day=wind_day,
        cloud_noise=cloud_noise,
        wind_noise=wind_noise,
    )


def synthetic_weather(times: pd.DatetimeIndex, location: Location, seed: int) -> pd.DataFrame:
    """Seeded stochastic weather without irradiance, for planners and tests.

    Each local date gets a day type from :func:`synthetic_day_types`; then

    - ``cloud_cover`` = the day type's mean + AR(1) noise on hourly nodes (lag-1 hour
      correlation 0.8), interpolated linearly in between and clipped to [0, 1];
    - ``temp_air`` follows a diurnal cycle in local mean solar time: a half cosine up from
      the daily minimum at sunrise to the maximum at 15:00, and down to the next day's
      minimum at the next sunrise (so it is continuous across days); minimum and maximum
      follow the monthly climatology (Sahel: hottest April–May, about 27–42 °C, cooler
      nights December–January), lowered on overcast and rainy days, plus a day-to-day
      anomaly;
    - ``wind_speed`` = a log-normal daily mean around 2–4 m/s × an afternoon maximum ×
      log-normal hourly AR(1) noise; always positive.

    Random numbers come from streams seeded by ``(seed, date)`` and ``(seed, year)``
    only, so the value at any instant is the same whatever range or step is asked for,
    and the same seed gives bit-identical output. The climate parameters are plausible
    climatology written for planning studies, not measurements.

    Parameters
    ----------
    times : pandas.DatetimeIndex
        Timezone-aware, strictly increasing, at least one minute apart.
    location : microgrid.site.Location
        The site: latitude selects the climate, longitude gives solar time, the timezone
        the local dates.
    seed : int
        Non-negative seed.

    Returns
    -------
    pandas.DataFrame
        ``temp_air`` [°C], ``wind_speed`` [m/s] and ``cloud_cover`` [fraction] at
        ``times`` (converted to UTC, named ``time``).

    Raises
    ------
    ValueError
        If ``times`` is naive, not increasing, or steps by less than a minute, or the
        seed is negative.

    Examples
    --------
    >>> from microgrid.site import Location
    >>> niamey = Location(latitude=13.5, longitude=2.1, altitude_m=210, timezone="Africa/Niamey")
    >>> times = pd.date_range("2026-04-15", periods=24, freq="h", tz="Africa/Niamey")
    >>> weather = synthetic_weather(times, niamey, seed=7)
    >>> list(weather.columns), len(weather)
    (['temp_air', 'wind_speed', 'cloud_cover'], 24)
    >>> weather["temp_air"].idxmax().hour in range(12, 17)  # mid-afternoon (UTC = local − 1 h)
    True
    """
    _check_seed(seed)
    times = _check_times(times, "times")
    if len(times) > 1 and ((times[1:] - times[:-1]) < pd.Timedelta(minutes=1)).any():
        msg = "times must be at least one minute apart"
        raise ValueError(msg)
    if not len(times):
        empty = {c: pd.Series(dtype="float64") for c in ("temp_air", "wind_speed", "cloud_cover")}
        return pd.DataFrame(empty, index=times.tz_convert("UTC").rename("time"))

    # Local dates and wall-clock hours (cloud and wind noise nodes, day types).
    wall = times.tz_convert(location.timezone).tz_localize(None)
    wall_midnight = wall.normalize()
    # Whole seconds first, so that µs and ns indexes give bit-identical hours.
    second = pd.Timedelta(seconds=1)
    wall_hours = np.asarray((wall - wall_midnight) // second, dtype=np.int64) / 3600.0
    epoch_seconds = (times - pd.Timestamp("1970-01-01", tz="UTC")) // second
    epoch_hours = np.asarray(epoch_seconds, dtype=np.int64) / 3600.0
    # Mean solar time (longitude / 15° per hour; the equation of time, ±16 min, is ignored).
    solar = epoch_hours + location.longitude / 15.0
    solar_day = np.floor(solar / 24.0)
    solar_hour = solar - 24.0 * solar_day

    epoch = dt.date(1970, 1, 1).toordinal()
    wall_days = (wall_midnight - pd.Timestamp("1970-01-01")) // pd.Timedelta(days=1)
    wall_ordinal = np.asarray(wall_days, dtype=np.int64) + epoch
    solar_ordinal = solar_day.astype(np.int64) + epoch
    first = min(int(wall_ordinal.min()), int(solar_ordinal.min()) - 1)
    last = max(int(wall_ordinal.max()), int(solar_ordinal.max()) + 1)
    days = _days(dt.date.fromordinal(first), dt.date.fromordinal(last), location, int(seed))

    # Cloud cover and wind noise on the local day's hourly nodes.
    k = wall_ordinal - first
    node = np.minimum(np.floor(wall_hours).astype(np.int64), _NODES - 2)
    weight = wall_hours - node
    types = days.types[k]

    def on_nodes(noise: FloatArray) -> FloatArray:
        return np.asarray((1.0 - weight) * noise[k, node] + weight * noise[k, node + 1])

    cloud = np.clip(_CLOUD_MEAN[types] + _CLOUD_SD[types] * on_nodes(days.cloud_noise), 0, 1)
    diurnal = 1.0 + _WIND_DIURNAL * np.cos(2 * np.pi * (solar_hour - 14.0) / 24.0)
    wind = (
        days.wind_day[k]
        * diurnal
        * np.exp(_WIND_LOG_SD * on_nodes(days.wind_noise) - _WIND_LOG_SD**2 / 2)
    )
    temp = _diurnal_temperature(solar_hour, solar_ordinal - first, days)
    frame = pd.DataFrame(
        {"temp_air": temp, "wind_speed": wind, "cloud_cover": cloud},
        index=times.tz_convert("UTC").rename("time"),
    )
    return frame


def _diurnal_temperature(
    solar_hour: FloatArray, day: npt.NDArray[np.int64], days: _Days
) -> FloatArray:
    r"""Half cosines: minimum at sunrise, maximum at 15:00 solar, continuous across days.

    Notes
    -----
    With sunrise :math:`r_d`, minimum :math:`T^{min}_d` and maximum :math:`T^{max}_d` of
    solar day :math:`d` and solar hour :math:`s`:

    - :math:`r_d \\le s < 15`: rising,
      :math:`T = T^{min}_d + (T^{max}_d - T^{min}_d)(1 - \\cos(\\pi (s - r_d)/(15 - r_d)))/2`;
    - :math:`s \\ge 15`: falling towards the next day's minimum over
      :math:`L = 24 + r_{d+1} - 15` hours,
      :math:`T = T^{min}_{d+1} + (T^{max}_d - T^{min}_{d+1})(1 + \\cos(\\pi (s - 15)/L))/2`;
    - :math:`s < r_d`: the falling branch of day :math:`d - 1` at :math:`s + 24`.
    """
    rising = (solar_hour >= days.sunrise[day]) & (solar_hour < _HOUR_TEMP_MAX)
    before_sunrise = solar_hour < days.sunrise[day]
    # Falling branch: which day's maximum it starts from, and hours since that maximum.
    from_day = np.where(before_sunrise, day - 1, day)
    since_max = np.where(before_sunrise, solar_hour + 24.0, solar_hour) - _HOUR_TEMP_MAX
    to_day = from_day + 1
    length = 24.0 + days.sunrise[to_day] - _HOUR_TEMP_MAX
    t_max = days.temp_max[from_day]
    t_min_next = days.temp_min[to_day]
    falling = t_min_next + (t_max - t_min_next) * (1.0 + np.cos(np.pi * since_max / length)) / 2
    r = days.sunrise[day]
    up = (
        days.temp_min[day]
        + (days.temp_max[day] - days.temp_min[day])
        * (1.0 - np.cos(np.pi * (solar_hour - r) / (_HOUR_TEMP_MAX - r)))
        / 2
    )
    return np.where(rising, up, falling)


def _check_times(times: pd.DatetimeIndex, name: str) -> pd.DatetimeIndex:
    if not isinstance(times, pd.DatetimeIndex):
        msg = f"{name} must be a pandas.DatetimeIndex, got {type(times).__name__}"
        raise TypeError(msg)
    if times.tz is None:
        msg = f"{name} has no timezone; pass aware times, e.g. tz='UTC' or tz_localize(...)"
        raise ValueError(msg)
    if len(times) > 1 and not (np.diff(times.asi8) > 0).all():
        msg = f"{name} must be strictly increasing (sorted, no duplicates)"
        raise ValueError(msg)
    return times


# --- resampling ----------------------------------------------------------------------------


def weather_on_grid(
    weather: pd.DataFrame, times: pd.DatetimeIndex, source: str = "weather"
) -> pd.DataFrame:
    """Put period-mean weather onto other periods, e.g. hourly onto 15-min starts.

    Each input row is the mean over its period ``[t, t + step)``; each output row is the
    mean over its own period ``[times[j], times[j + 1])`` (the last one as long as the most
    common step of ``times``, or the input step for a single time) of a curve through the
    input:

    - onto a finer grid (output step < input step), a piecewise-linear curve through the
      input period midpoints, held constant from the first midpoint back to the start of
      the data and from the last midpoint on. Where an output period does not straddle an
      input midpoint, e.g. 15-min from hourly, its value is the curve's value at its own
      midpoint;
    - onto an equal or coarser grid, the input's step function, so that each output row is
      the exact time-weighted mean of the input periods it covers (15-min averages to
      hourly exactly).

    Both curves keep the input's integral over the span it covers, so daily energy is
    preserved. Output periods may reach up to one input step beyond that span; the edge
    values are held there.

    Parameters
    ----------
    weather : pandas.DataFrame
        Numeric columns, indexed by timezone-aware period starts at a regular step.
    times : pandas.DatetimeIndex
        Timezone-aware, strictly increasing period starts of the output.
    source : str
        Name of the weather's origin, used in error messages.

    Returns
    -------
    pandas.DataFrame
        The weather's columns at ``times`` (UTC, named ``time``).

    Raises
    ------
    WeatherDataError
        If ``weather`` has NaN, fewer than two rows, an irregular or unsorted index, or if
        the output periods reach more than one input step beyond its coverage.

    Examples
    --------
    >>> hourly = pd.DataFrame(
    ...     {"temp_air": [20.0, 24.0, 28.0]},
    ...     index=pd.date_range("2026-03-01 10:00", periods=3, freq="h", tz="UTC"),
    ... )
    >>> times = pd.date_range("2026-03-01 11:00", periods=4, freq="15min", tz="UTC")
    >>> weather_on_grid(hourly, times)["temp_air"].tolist()
    [22.5, 23.5, 24.5, 25.5]
    """
    if not isinstance(weather.index, pd.DatetimeIndex) or weather.index.tz is None:
        problem = "the weather is not indexed by timezone-aware times"
        raise WeatherDataError(source, problem, "use the output of a forecasts.weather adapter")
    index = weather.index.tz_convert("UTC")

    def where(i: int) -> str:
        return f"row {i}"

    _check_order(
        index,
        source,
        where,
        duplicate_fix="keep one row per time",
        unsorted_fix="sort the weather by time, e.g. weather.sort_index()",
    )
    step = _infer_step(index, source, where, "resample the weather to one regular step")
    gap = _first_gap(index, step, where)
    if gap is not None:
        raise WeatherDataError(source, gap, "fill it first, e.g. read it with fill='interpolate'")
    non_numeric = [c for c in weather.columns if not pd.api.types.is_numeric_dtype(weather[c])]
    if non_numeric:
        problem = f"non-numeric column(s) {', '.join(map(repr, non_numeric))}"
        raise WeatherDataError(source, problem, "pass numeric weather columns only")
    nan = _first_nan(weather.set_axis(index), where, lambda c: f"column {c!r}")
    if nan is not None:
        raise WeatherDataError(source, nan, "fill it first, e.g. read it with fill='interpolate'")
    times = _check_times(times, "times").tz_convert("UTC")
    if not len(times):
        return pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in weather.columns}, index=times.rename("time")
        )

    # Everything in hours since the first input period start.
    origin = index[0]

    def hours(stamps: pd.DatetimeIndex) -> FloatArray:
        return np.asarray((stamps - origin) / pd.Timedelta(hours=1), dtype=np.float64)

    step_h = step / pd.Timedelta(hours=1)
    # Length of the last output period: the grid's usual step.
    last_step = _most_common_step(times) / pd.Timedelta(hours=1) if len(times) > 1 else step_h
    starts = hours(times)
    ends = np.append(starts[1:], starts[-1] + last_step)
    coverage_end = hours(index[-1:])[0] + step_h
    if starts[0] < -step_h or ends[-1] > coverage_end + step_h:
        problem = (
            f"times run from {_fmt_time(times[0])} to {_fmt_time(times[-1])} "
            f"(periods end {_fmt_time(origin + pd.Timedelta(hours=float(ends[-1])))}) "
            f"but the weather covers {_fmt_time(origin)} to "
            f"{_fmt_time(origin + pd.Timedelta(hours=coverage_end))}, and may be extended by "
            f"one step ({_fmt_duration(step)}) at most"
        )
        raise WeatherDataError(source, problem, "get weather that covers the whole grid")

    values = weather.to_numpy(dtype=np.float64)
    if last_step < step_h:
        knots = hours(index) + step_h / 2
        integral = _integral(ends, knots, values) - _integral(starts, knots, values)
    else:
        integral = _step_integral(ends, step_h, values) - _step_integral(starts, step_h, values)
    means = integral / (ends - starts)[:, None]
    return pd.DataFrame(means, index=times.rename("time"), columns=weather.columns)


def _integral(x: FloatArray, knots: FloatArray, values: FloatArray) -> FloatArray:
    """Integrate the piecewise-linear curve through (knots, values) from ``knots[0]`` to x.

    The curve is held constant outside the knots; ``values`` has one column per variable.
    """
    segment_area = np.diff(knots)[:, None] * (values[1:] + values[:-1]) / 2
    cumulative = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(segment_area, axis=0)])
    k = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    slope = (values[k + 1] - values[k]) / (knots[k + 1] - knots[k])[:, None]
    width = (x - knots[k])[:, None]
    inside = cumulative[k] + width * values[k] + slope * width**2 / 2
    before = (x - knots[0])[:, None] * values[0]
    after = cumulative[-1] + (x - knots[-1])[:, None] * values[-1]
    return np.where(
        (x < knots[0])[:, None], before, np.where((x > knots[-1])[:, None], after, inside)
    )


def _step_integral(x: FloatArray, step: float, values: FloatArray) -> FloatArray:
    """Integrate the input's step function from its first period start (0) to x.

    Row ``i`` holds on ``[i·step, (i + 1)·step)``; the first and last value are held beyond
    the ends. ``values`` has one column per variable.
    """
    n = len(values)
    cumulative = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values * step, axis=0)])
    position = x / step
    i = np.clip(np.floor(position).astype(np.int64), 0, n - 1)
    inside = cumulative[i] + ((position - i) * step)[:, None] * values[i]
    before = x[:, None] * values[0]
    after = cumulative[-1] + (x - n * step)[:, None] * values[-1]
    return np.where((x < 0)[:, None], before, np.where((x > n * step)[:, None], after, inside))
