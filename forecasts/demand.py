"""Demand profiles: the expected mean power of every connection over each period.

Every connection gets a daily load *shape* defined on the site's **local wall clock**
(``site.location.timezone``) and a daily *energy*; :func:`demand_kw` turns both into the
mean power of each period of a UTC :class:`~microgrid.timegrid.TimeGrid`.
:func:`aggregate_demand` sums connections per tier or per household relay group.

Shapes
------
All shapes are piecewise constant in local wall-clock time.

- **household**: 24 hourly weights (:data:`_HOUSEHOLD_WEIGHTS`) held over each hour:
  a small morning bump (06–08), a low midday, the evening peak 18–23 (highest
  20:00–21:00) and a low night. Each household's shape is shifted by a deterministic
  −1 h … +1 h in quarter hours, derived from ``zlib.crc32`` of its id (never the salted
  built-in ``hash``), so the tier's peak is broader and lower than a single household's.
  Energy of a local day: ``annual_energy_kwh`` / days of that calendar year (365 or 366).
- **business**: zero outside ``operating_months`` and outside the opening hours; open
  every day of an operating month (no weekly closing day). Inside the hours the load is
  flat at ``daily_energy_kwh / open_hours`` when that is at least ``power_kw_min``.
  Otherwise the business runs *fewer hours at* ``power_kw_min``: for
  ``daily_energy_kwh / power_kw_min`` hours centred in its opening hours (a mill that
  cannot run on 50 W grinds its day's grain in a midday block). Opening hours that wrap
  past midnight are split at local midnight: each calendar day of an operating month
  carries the day's energy.
- **priority** (energy per day ``daily_energy_kwh``):

  - ``clinic``: around the clock, busier 08–17 (a daytime bump of about twice night use);
  - ``water_pump``: sun hours 08–17 only, bell-shaped around noon, zero at night;
  - ``school``: flat 07:30–16:00 on weekdays (Monday–Friday, local); zero at weekends.
    ``daily_energy_kwh`` is the energy of a school day; holidays are not modelled;
  - ``street_light``: flat from dusk to dawn, 18:30–06:30, zero by day;
  - ``telecom``: flat around the clock.

Exactness
---------
Each period's energy is the exact integral of the shape over the period, taken from a
cumulative energy curve in real (UTC) time, so any grid — any start, any step, any
timezone — gets the same energy for the same span of time: summing 15-min periods gives
the 1-h values, and the energy of every whole local day equals its daily energy to
floating precision (a household's energy over a whole calendar year is its
``annual_energy_kwh``). On the 23- and 25-hour days of a DST change the shape is
rescaled for that day so that its energy stays exact.

The one exception: on a 23-hour day, a business whose opening hours contain the skipped
hour and whose daily energy already needs ``power_kw_max`` for every open hour cannot fit
its energy into the shorter day; its power is capped at ``power_kw_max`` and the day
falls short. A period's *mean* power may lie below ``power_kw_min`` where a business's
run starts or ends inside the period.

Examples
--------
>>> from microgrid import TimeGrid, load_site
>>> site = load_site()
>>> grid = TimeGrid.from_days("2026-01-15", days=1, timezone=site.location.timezone)
>>> demand = demand_kw(site, grid)
>>> demand.shape
(96, 400)
>>> tiers = aggregate_demand(demand, site, by="kind")
>>> round(float(energy_kwh(tiers["household"], grid.step_hours).sum()), 3)
175.342
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from microgrid.site import Connection, ConnectionKind, PriorityProfile, Site
from microgrid.timegrid import TimeGrid

__all__ = ["aggregate_demand", "demand_kw", "energy_kwh"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PowerT = TypeVar("PowerT", pd.DataFrame, pd.Series)

# Valid ``by`` values of aggregate_demand.
_AGGREGATE_BY = ("kind", "relay_group")

_NS_PER_HOUR = 3_600_000_000_000
_NS_PER_SECOND = 1_000_000_000

# Relative household load per local hour 00–23 (only the ratios matter). An assumed
# evening-peak shape of lighting, TV and phone charging in an off-grid village, to be
# replaced by metered data: peak 20:00–21:00, morning bump 06–08, low midday and night.
_HOUSEHOLD_WEIGHTS = (
    0.30, 0.25, 0.22, 0.22, 0.25, 0.45, 0.80, 0.75, 0.50, 0.40, 0.38, 0.38,
    0.42, 0.42, 0.38, 0.38, 0.45, 0.65, 1.20, 1.90, 2.10, 1.90, 1.20, 0.55,
)  # fmt: skip

# Households' evening peaks are spread over −1 h … +1 h in steps of 15 min (the default
# grid step). Measured on the default site: the tier's peak-to-mean ratio falls from 3.06
# (one shape) to 2.91, a peak ~5 % lower; wider spreads would blur the evening peak.
_SHIFT_STEPS = 9
_SHIFT_STEP_HOURS = 0.25

_CLINIC_WEIGHTS = (
    0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.9, 1.3, 1.3, 1.3, 1.3,
    1.3, 1.2, 1.2, 1.2, 1.2, 1.0, 0.9, 0.9, 0.8, 0.8, 0.7, 0.6,
)  # fmt: skip
_WATER_PUMP_WEIGHTS = (
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.7, 0.9, 1.0,
    1.0, 1.0, 0.9, 0.7, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
)  # fmt: skip


@dataclass(frozen=True)
class _Shape:
    """A daily load shape: a piecewise-constant rate on the local wall clock.

    Attributes
    ----------
    edges : tuple of float
        Breakpoints from 0 to 24, increasing [h after local midnight].
    cumulative : tuple of float
        Integral of the rate from 0 to each edge, normalised so that a whole 24-hour
        day integrates to 1 [fraction of the day's energy].
    """

    edges: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def from_rates(cls, edges: tuple[float, ...], rates: tuple[float, ...]) -> _Shape:
        """Normalise relative rates held between consecutive ``edges``."""
        widths = np.diff(np.asarray(edges, dtype=np.float64))
        area = np.concatenate(([0.0], np.cumsum(widths * np.asarray(rates, dtype=np.float64))))
        return cls(edges=edges, cumulative=tuple(float(a) for a in area / area[-1]))

    @classmethod
    def hourly(cls, weights: tuple[float, ...]) -> _Shape:
        """Hold each of 24 hourly weights over its hour."""
        return cls.from_rates(tuple(float(h) for h in range(25)), weights)

    @classmethod
    def window(cls, hours: float) -> _Shape:
        """Flat from local midnight for ``hours`` (0 < hours ≤ 24), zero afterwards."""
        if hours >= 24.0:
            return cls.from_rates((0.0, 24.0), (1.0,))
        return cls.from_rates((0.0, hours, 24.0), (1.0, 0.0))

    def integral(self, hours: FloatArray) -> FloatArray:
        """Integral of the rate from 0 to ``hours`` on a 24-h periodic clock [-]."""
        days = np.floor(hours / 24.0)
        return days + np.interp(hours - 24.0 * days, self.edges, self.cumulative)


_HOUSEHOLD = _Shape.hourly(_HOUSEHOLD_WEIGHTS)
_PRIORITY_SHAPES: dict[PriorityProfile, _Shape] = {
    PriorityProfile.CLINIC: _Shape.hourly(_CLINIC_WEIGHTS),
    PriorityProfile.WATER_PUMP: _Shape.hourly(_WATER_PUMP_WEIGHTS),
    PriorityProfile.SCHOOL: _Shape.from_rates((0.0, 7.5, 16.0, 24.0), (0.0, 1.0, 0.0)),
    PriorityProfile.STREET_LIGHT: _Shape.from_rates((0.0, 6.5, 18.5, 24.0), (1.0, 0.0, 1.0)),
    PriorityProfile.TELECOM: _Shape.from_rates((0.0, 24.0), (1.0,)),
}


@dataclass(frozen=True)
class _DayRule:
    """Which local days carry energy, and how much per unit of a connection's scale.

    ``kind`` is ``"every_day"``, ``"calendar_year"`` (1 / days of the year, households),
    ``"weekday"`` (Monday–Friday) or ``"months"`` (the listed calendar months).
    """

    kind: Literal["every_day", "calendar_year", "weekday", "months"]
    months: tuple[int, ...] = ()

    def factors(self, days: pd.DatetimeIndex) -> FloatArray:
        """Energy of each local day per unit of scale [-]."""
        if self.kind == "calendar_year":
            return 1.0 / np.where(days.is_leap_year, 366.0, 365.0)
        if self.kind == "weekday":
            return (days.day_of_week < 5).astype(np.float64)
        if self.kind == "months":
            return np.isin(days.month, self.months).astype(np.float64)
        return np.ones(len(days), dtype=np.float64)


@dataclass(frozen=True)
class _Load:
    """One distinct load curve: a shape, its shift and its day rule."""

    shape: _Shape
    shift_hours: float
    days: _DayRule


@dataclass(frozen=True)
class _LocalClock:
    """A grid's period boundaries and the local midnights around them, on one clock.

    Hours count wall-clock time from the first local midnight ``days[0]``; DST
    transitions between the instants are kept so that integrals run over real time.
    """

    days: pd.DatetimeIndex
    boundary_hours: FloatArray
    boundary_day: IntArray
    boundary_passed: IntArray
    midnight_hours: FloatArray
    midnight_passed: IntArray
    transition_before_hours: FloatArray
    transition_after_hours: FloatArray

    @classmethod
    def of(cls, grid: TimeGrid, timezone: str) -> _LocalClock:
        """Place ``grid``'s boundaries on the local clock of ``timezone``."""
        bounds = pd.date_range(grid.start, periods=grid.periods + 1, freq=grid.step)
        bounds_ns = bounds.as_unit("ns").asi8
        local_ns = bounds.tz_convert(timezone).tz_localize(None).as_unit("ns").asi8
        # A spare local day on either side: local dates near a DST change or an
        # ambiguous midnight may differ by one from the order of the instants.
        first = pd.Timestamp(local_ns[0]).normalize() - pd.Timedelta(days=1)
        last = pd.Timestamp(local_ns[-1]).normalize() + pd.Timedelta(days=1)
        dates = pd.date_range(first, last + pd.Timedelta(days=1), freq="D", unit="ns")
        # A day starts at the earliest instant its local date begins; where midnight
        # does not exist, at the first instant after the gap.
        midnights = dates.tz_localize(
            timezone, ambiguous=np.ones(len(dates), dtype=bool), nonexistent="shift_forward"
        )
        midnights_ns = midnights.as_unit("ns").asi8
        midnight_local_ns = midnights.tz_localize(None).as_unit("ns").asi8

        before, after, when = _transitions(
            np.concatenate((bounds_ns, midnights_ns)),
            np.concatenate((local_ns, midnight_local_ns)),
            timezone,
        )
        origin = int(dates.as_unit("ns").asi8[0])
        return cls(
            days=dates[:-1],
            boundary_hours=(local_ns - origin) / _NS_PER_HOUR,
            boundary_day=np.searchsorted(midnights_ns, bounds_ns, side="right") - 1,
            boundary_passed=np.searchsorted(when, bounds_ns, side="right"),
            midnight_hours=(midnight_local_ns - origin) / _NS_PER_HOUR,
            midnight_passed=np.searchsorted(when, midnights_ns, side="right"),
            transition_before_hours=(when + before - origin) / _NS_PER_HOUR,
            transition_after_hours=(when + after - origin) / _NS_PER_HOUR,
        )

    def period_energy(self, load: _Load) -> FloatArray:
        r"""Energy of each period per unit of scale [-].

        Notes
        -----
        With :math:`r` the shape's rate on the wall clock :math:`L(t)`, the real-time
        integral is :math:`H(t) = R(L(t)) - \sum_{T \le t} J_T`, where :math:`R` is the
        periodic integral of :math:`r` and :math:`J_T` the jump of :math:`R` when the
        clock jumps at a DST transition :math:`T`. Day :math:`d` (from midnight
        :math:`m_d`) with factor :math:`f_d` gives the cumulative energy

        .. math:: C(t) = \sum_{d' < d} f_{d'}
                  + f_d \frac{H(t) - H(m_d)}{H(m_{d+1}) - H(m_d)},

        and a period's energy is the difference of :math:`C` at its ends.
        """
        shift = load.shift_hours
        integral = load.shape.integral
        jumps = integral(self.transition_after_hours - shift) - integral(
            self.transition_before_hours - shift
        )
        jumps_passed = np.concatenate(([0.0], np.cumsum(jumps)))
        at_midnight = integral(self.midnight_hours - shift) - jumps_passed[self.midnight_passed]
        at_bound = integral(self.boundary_hours - shift) - jumps_passed[self.boundary_passed]

        per_day = load.days.factors(self.days)
        day_integral = np.diff(at_midnight)
        # A shape that draws nothing on a day (a window inside a skipped DST hour).
        scale = np.divide(per_day, day_integral, out=np.zeros_like(per_day), where=day_integral > 0)
        before_day = np.concatenate(([0.0], np.cumsum(per_day)))
        day = self.boundary_day
        cumulative = before_day[day] + scale[day] * (at_bound - at_midnight[day])
        return np.diff(cumulative)


def _transitions(
    utc_ns: IntArray, local_ns: IntArray, timezone: str
) -> tuple[IntArray, IntArray, IntArray]:
    """UTC offsets before and after each DST transition among ``utc_ns``, and its instant.

    Assumes at most one transition between consecutive instants (they are at most a
    day apart) and transitions on whole seconds, as in every tz database zone.
    """
    order = np.argsort(utc_ns, kind="stable")
    instants = utc_ns[order]
    offsets = local_ns[order] - instants
    changes = np.flatnonzero(np.diff(offsets))
    when = [_transition_ns(int(instants[i]), int(instants[i + 1]), timezone) for i in changes]
    return (
        offsets[changes],
        offsets[changes + 1],
        np.asarray(when, dtype=np.int64),
    )


def _transition_ns(start_ns: int, end_ns: int, timezone: str) -> int:
    """First whole second [ns since epoch] in (start, end] with ``end``'s UTC offset."""

    def offset(second: int) -> int:
        stamp = pd.Timestamp(second, unit="s", tz="UTC").tz_convert(timezone)
        return int(stamp.tz_localize(None).value) - second * _NS_PER_SECOND

    low = start_ns // _NS_PER_SECOND
    high = -(-end_ns // _NS_PER_SECOND)
    old = offset(low)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(middle) == old:
            low = middle
        else:
            high = middle
    return high * _NS_PER_SECOND


def _household_shift_hours(connection_id: str) -> float:
    """Deterministic shift of a household's shape, −1 … +1 h in quarter hours [h]."""
    step = zlib.crc32(connection_id.encode("utf-8")) % _SHIFT_STEPS
    return (step - _SHIFT_STEPS // 2) * _SHIFT_STEP_HOURS


def _load_of(connection: Connection) -> tuple[_Load | None, float]:
    """Return a connection's load curve and its scale [kWh per unit]; no curve: no load."""
    if connection.kind is ConnectionKind.HOUSEHOLD:
        load = _Load(_HOUSEHOLD, _household_shift_hours(connection.id), _DayRule("calendar_year"))
        return load, connection.annual_energy_kwh or 0.0
    if connection.priority is not None:
        priority = connection.priority
        rule = _DayRule("weekday" if priority.profile is PriorityProfile.SCHOOL else "every_day")
        return _Load(_PRIORITY_SHAPES[priority.profile], 0.0, rule), priority.daily_energy_kwh
    business = connection.business
    if business is None or business.daily_energy_kwh <= 0:
        return None, 0.0
    open_hours = float(business.open_hours)
    run_hours = open_hours
    if business.daily_energy_kwh < business.power_kw_min * open_hours:
        # Too little energy to stay above the minimum all day: run fewer hours at it.
        run_hours = business.daily_energy_kwh / business.power_kw_min
    start = business.opening_hour + (open_hours - run_hours) / 2
    rule = _DayRule("months", business.operating_months)
    return _Load(_Shape.window(run_hours), start, rule), business.daily_energy_kwh


def demand_kw(site: Site, grid: TimeGrid) -> pd.DataFrame:
    """Compute the expected mean power of every connection over each period of a grid.

    Parameters
    ----------
    site : Site
        The site; profiles follow its local time ``site.location.timezone``.
    grid : TimeGrid
        The periods; any start and any step that divides a day.

    Returns
    -------
    pandas.DataFrame
        Mean power per period [kW], float64; index ``grid.index`` (UTC period starts,
        named ``time``), one column per connection id in site order (columns named
        ``connection``). See the module docstring for the shapes and the guarantees.

    Examples
    --------
    >>> from microgrid import TimeGrid, load_site
    >>> site = load_site()
    >>> grid = TimeGrid.from_days("2026-01-15", days=1, timezone="Africa/Niamey", step="1h")
    >>> demand = demand_kw(site, grid)
    >>> street_light = demand["P07_lights_market"]
    >>> float(street_light.iloc[12]), float(street_light.sum() * grid.step_hours)
    (0.0, 1.5)
    """
    clock = _LocalClock.of(grid, site.location.timezone)
    loads: dict[_Load, int] = {}
    columns: list[FloatArray] = [np.zeros(grid.periods, dtype=np.float64)]
    which = np.zeros(len(site.connections), dtype=np.intp)
    scale = np.zeros(len(site.connections), dtype=np.float64)
    for i, connection in enumerate(site.connections):
        load, scale[i] = _load_of(connection)
        if load is None:
            continue  # column 0: zero
        if load not in loads:
            loads[load] = len(columns)
            columns.append(clock.period_energy(load))
        which[i] = loads[load]

    # One energy curve per distinct load, spread to the connections by an outer product.
    unit_energy = np.column_stack(columns)
    power = unit_energy[:, which]
    power *= scale / grid.step_hours

    # Only a business on a 23-hour DST day can exceed its maximum (module docstring).
    caps = {i: c.business.power_kw_max for i, c in enumerate(site.connections) if c.business}
    if caps:
        business = list(caps)
        power[:, business] = np.minimum(power[:, business], np.array(list(caps.values())))

    ids = pd.Index([c.id for c in site.connections], name="connection")
    return pd.DataFrame(power, index=grid.index, columns=ids, copy=False)


def aggregate_demand(demand: pd.DataFrame, site: Site, by: str = "kind") -> pd.DataFrame:
    """Sum connections' demand per tier or per household relay group.

    Parameters
    ----------
    demand : pandas.DataFrame
        Power [kW] (or energy [kWh]) per period, one column per connection id, e.g. from
        :func:`demand_kw`; any subset of the site's connections.
    site : Site
        The site the columns belong to.
    by : {"kind", "relay_group"}
        ``"kind"``: columns ``priority``, ``household``, ``business`` (tier order).
        ``"relay_group"``: one column per relay group of the site, in site order;
        connections without a relay group (businesses, priority users) are left out.

    Returns
    -------
    pandas.DataFrame
        Sums in the unit of ``demand``, same index. Every tier or group appears, with
        zeros if none of its connections is among the columns. NaN propagates within its
        own tier or group only.

    Raises
    ------
    ValueError
        If ``by`` is not one of the choices, or a column is not a connection of ``site``.

    Examples
    --------
    >>> from microgrid import TimeGrid, load_site
    >>> site = load_site()
    >>> grid = TimeGrid.from_days("2026-01-15", days=1, timezone="Africa/Niamey")
    >>> groups = aggregate_demand(demand_kw(site, grid), site, by="relay_group")
    >>> groups.shape
    (96, 32)
    """
    if by not in _AGGREGATE_BY:
        msg = f"cannot aggregate by {by!r}; choose one of {', '.join(map(repr, _AGGREGATE_BY))}"
        raise ValueError(msg)
    known = {c.id: c for c in site.connections}
    unknown = [str(column) for column in demand.columns if column not in known]
    if unknown:
        msg = f"demand has columns that are not connections of site {site.name!r}: {unknown}"
        raise ValueError(msg)

    labels: list[str]
    if by == "kind":
        labels = [kind.value for kind in ConnectionKind]
        label_of = [known[column].kind.value for column in demand.columns]
    else:
        labels = [group.id for group in site.relay_groups]
        label_of = [known[column].relay_group or "" for column in demand.columns]
    values = demand.to_numpy(dtype=np.float64)
    members = np.asarray(label_of, dtype=object)
    sums = np.zeros((len(demand.index), len(labels)), dtype=np.float64)
    for j, label in enumerate(labels):
        sums[:, j] = values[:, members == label].sum(axis=1)
    return pd.DataFrame(sums, index=demand.index, columns=pd.Index(labels, name=by), copy=False)


def energy_kwh(power_kw: PowerT, step_hours: float) -> PowerT:
    """Energy of each period from its mean power.

    Parameters
    ----------
    power_kw : pandas.DataFrame or pandas.Series
        Mean power per period [kW].
    step_hours : float
        Period length [h], e.g. ``grid.step_hours``.

    Returns
    -------
    pandas.DataFrame or pandas.Series
        Energy per period [kWh], same shape and labels.

    Raises
    ------
    ValueError
        If ``step_hours`` is not positive.

    Examples
    --------
    >>> float(energy_kwh(pd.Series([2.0, 4.0]), 0.25).sum())
    1.5
    """
    if not step_hours > 0:
        msg = f"step_hours must be positive, got {step_hours}"
        raise ValueError(msg)
    return power_kw * step_hours
