"""What dispatch is asked: the problem dataclasses, and how to build one from a site.

Everything here is plain data in SI-ish units named in the field (``_kw``, ``_kwh``,
``_hours``); arrays run over the periods of the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from microgrid.site import Battery, ConnectionKind, Site
from microgrid.timegrid import TimeGrid

__all__ = [
    "BatteryState",
    "BusinessLoad",
    "DispatchPolicy",
    "DispatchProblem",
    "HouseholdGroupLoad",
    "PriorityLoad",
    "RelayState",
    "SolverSettings",
    "default_stakes",
    "problem_from_site",
]


@dataclass(frozen=True)
class RelayState:
    """A relay as measured: its position and how long it has held it.

    Attributes
    ----------
    closed : bool
        True when the load is connected.
    hours_in_state : float
        Time since the last switch [h]; large if unknown.
    """

    closed: bool = True
    hours_in_state: float = 24.0


@dataclass(frozen=True)
class BatteryState:
    """The battery's limits and its measured state of charge.

    Attributes
    ----------
    soc_kwh : float
        Measured state of charge at the start of the horizon [kWh]; may lie outside the
        window (the model then reports a priced violation rather than failing).
    soc_kwh_min, soc_kwh_max : float
        Allowed window [kWh].
    power_kw_max : float
        Charge and discharge limit [kW].
    charge_efficiency, discharge_efficiency : float
        One-way efficiencies [-].
    soc_kwh_end_min : float or None
        Wished-for state of charge at the end of the horizon [kWh]; soft.
    """

    soc_kwh: float
    soc_kwh_min: float
    soc_kwh_max: float
    power_kw_max: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_kwh_end_min: float | None = None

    @classmethod
    def from_battery(cls, battery: Battery, soc_kwh: float) -> BatteryState:
        """The state of a site's battery at a measured state of charge [kWh]."""
        return cls(
            soc_kwh=soc_kwh,
            soc_kwh_min=battery.soc_kwh_min,
            soc_kwh_max=battery.soc_kwh_max,
            power_kw_max=battery.power_kw_max,
            charge_efficiency=battery.charge_efficiency,
            discharge_efficiency=battery.discharge_efficiency,
        )


@dataclass(frozen=True)
class PriorityLoad:
    """A priority user: served whenever physically possible."""

    id: str
    demand_kw: np.ndarray


@dataclass(frozen=True)
class HouseholdGroupLoad:
    """Households behind one feeder relay, shed together.

    Attributes
    ----------
    id : str
        Relay group id.
    demand_kw : numpy.ndarray
        Demand of the group's households that have credit [kW].
    members : tuple of str
        Connection ids of those households.
    no_credit : tuple of str
        Households of the group switched off for lack of credit (not in the demand).
    shed_hours : float
        Hours this group has been shed so far (rolling history), for rotation [h].
    relay : RelayState
        Measured state of the feeder relay.
    """

    id: str
    demand_kw: np.ndarray
    members: tuple[str, ...] = ()
    no_credit: tuple[str, ...] = ()
    shed_hours: float = 0.0
    relay: RelayState = field(default_factory=RelayState)


@dataclass(frozen=True)
class BusinessLoad:
    """A business competing for the rest of the energy.

    Attributes
    ----------
    id : str
        Connection id.
    stake : int
        Stake tokens placed on it for this round (whole tokens).
    value_score : float
        Community score in [−10, +10].
    power_kw_min, power_kw_max : float
        Useful power range while on [kW].
    demand_kw : numpy.ndarray
        What it would draw if fully served [kW].
    has_credit : bool
        False when its prepaid account is empty: it gets nothing.
    relay : RelayState
        Measured state of its relay.
    """

    id: str
    stake: int
    value_score: float
    power_kw_min: float
    power_kw_max: float
    demand_kw: np.ndarray
    has_credit: bool = True
    relay: RelayState = field(default_factory=RelayState)


@dataclass(frozen=True)
class DispatchPolicy:
    """How the community wants the energy shared; the rules, not the data.

    Attributes
    ----------
    relay_step_hours : float
        Relays are decided per block of this length [h]; 1 h keeps the MILP small
        and the relays calm.
    min_on_hours, min_off_hours : float
        Minimum time a business relay stays closed or open after switching [h].
    surplus_only_zero_stake : bool
        Businesses without stake get only energy that would otherwise be curtailed.
    surplus_only_negative_score : bool
        Businesses with a negative value score likewise.
    rotation_strength : float
        How strongly past shed hours protect a household group from being shed
        again, as a fraction of the household weight [-], in [0, 0.5].
    reserve : bool
        Keep battery energy for priority users until P10 PV covers them again.
    fair_share_tolerance : float
        How closely business shares follow stakes near the expected level [-]: the
        width of the fine fair-share layers (0.03: within ±3 %). Planners simulating a
        year may take 0.1: about a third of the layers and a plan in two thirds the time.
    """

    relay_step_hours: float = 1.0
    min_on_hours: float = 1.0
    min_off_hours: float = 1.0
    surplus_only_zero_stake: bool = True
    surplus_only_negative_score: bool = True
    rotation_strength: float = 0.25
    reserve: bool = True
    fair_share_tolerance: float = 0.03


@dataclass(frozen=True)
class SolverSettings:
    """HiGHS settings.

    Attributes
    ----------
    time_limit_s : float
        Wall-clock limit of the MIP search [s]; the best plan found so far is used.
    mip_rel_gap : float
        Relative MIP gap at which HiGHS may stop [-].
    mip_abs_gap : float
        Absolute MIP gap in objective units at which HiGHS may stop.
    threads : int or None
        Solver threads; None lets HiGHS choose.
    """

    time_limit_s: float = 10.0
    mip_rel_gap: float = 1e-3
    mip_abs_gap: float = 1e-6
    threads: int | None = None


@dataclass(frozen=True)
class DispatchProblem:
    """Everything one dispatch needs.

    Attributes
    ----------
    grid : TimeGrid
        The periods.
    pv_p50_kw, pv_p10_kw : numpy.ndarray
        Median and pessimistic PV forecasts [kW].
    battery : BatteryState
        Battery limits and measured state.
    priority : tuple of PriorityLoad
        Tier 1.
    households : tuple of HouseholdGroupLoad
        Tier 2, by relay group.
    businesses : tuple of BusinessLoad
        Tier 4.
    policy : DispatchPolicy
        Sharing rules.
    prosumer_export_kw : numpy.ndarray or None
        Forecast export of the prosumers' own PV at their connections [kW], summed:
        supply, never negative demand (their demand is what their meters import).
        None: no prosumers.
    """

    grid: TimeGrid
    pv_p50_kw: np.ndarray
    pv_p10_kw: np.ndarray
    battery: BatteryState
    priority: tuple[PriorityLoad, ...]
    households: tuple[HouseholdGroupLoad, ...]
    businesses: tuple[BusinessLoad, ...]
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    prosumer_export_kw: np.ndarray | None = None

    @property
    def periods(self) -> int:
        """Number of periods."""
        return self.grid.periods

    @property
    def step_hours(self) -> float:
        """Period length [h]."""
        return self.grid.step_hours


def default_stakes(site: Site, tokens: int | None = None) -> dict[str, int]:
    """Stakes as a community voting by value score would place them.

    Each household's token goes to businesses in proportion to their positive value
    scores (largest-remainder rounding, so the tokens add up exactly); businesses with a
    score ≤ 0 get none. Used when no stakes file is given.

    Parameters
    ----------
    site : Site
        The site.
    tokens : int, optional
        Tokens to place; one per household by default.

    Examples
    --------
    >>> from microgrid import load_site
    >>> stakes = default_stakes(load_site())
    >>> sum(stakes.values())
    320
    """
    total = len(site.households) if tokens is None else tokens
    weights = {
        c.id: max(c.business.value_score, 0.0) for c in site.businesses if c.business is not None
    }
    return largest_remainder(weights, total)


def largest_remainder(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split ``total`` whole units in proportion to ``weights``, summing exactly.

    Ties in the remainders go to the earlier key, so the result is deterministic.
    """
    weight_sum = sum(weights.values())
    if weight_sum <= 0:
        return dict.fromkeys(weights, 0)
    exact = {k: total * w / weight_sum for k, w in weights.items()}
    shares = {k: int(np.floor(v)) for k, v in exact.items()}
    left = total - sum(shares.values())
    order = sorted(weights, key=lambda k: (-(exact[k] - shares[k]), list(weights).index(k)))
    for k in order[:left]:
        shares[k] += 1
    return shares


def problem_from_site(
    site: Site,
    grid: TimeGrid,
    pv_p50_kw: np.ndarray,
    pv_p10_kw: np.ndarray,
    demand_kw: Mapping[str, np.ndarray],
    soc_kwh: float,
    stakes: Mapping[str, int] | None = None,
    credit: Mapping[str, bool] | None = None,
    relays: Mapping[str, RelayState] | None = None,
    shed_hours: Mapping[str, float] | None = None,
    policy: DispatchPolicy | None = None,
    export_kw: Mapping[str, np.ndarray] | None = None,
) -> DispatchProblem:
    """Assemble a dispatch problem for a site from forecasts and measured state.

    Parameters
    ----------
    site : Site
        The site.
    grid : TimeGrid
        The periods.
    pv_p50_kw, pv_p10_kw : numpy.ndarray
        PV forecasts on the grid [kW].
    demand_kw : mapping of str to numpy.ndarray
        Forecast demand of every connection on the grid [kW].
    soc_kwh : float
        Measured battery state of charge [kWh].
    stakes : mapping of str to int, optional
        Stake tokens per business id; :func:`default_stakes` if omitted.
    credit : mapping of str to bool, optional
        False for connections whose prepaid account is empty; all True if omitted.
        Priority users are never cut for credit (settlement alarms instead).
    relays : mapping of str to RelayState, optional
        Measured relay states by relay group id or business id.
    shed_hours : mapping of str to float, optional
        Past shed hours per relay group.
    policy : DispatchPolicy, optional
        Sharing rules.
    export_kw : mapping of str to numpy.ndarray, optional
        Forecast export of each prosumer at its connection [kW], ≥ 0
        (:meth:`forecasts.Forecast.prosumer_export_kw`); pass their import as demand.
    """
    stakes = default_stakes(site) if stakes is None else stakes
    supply = None
    if export_kw:
        not_prosumers = sorted(set(export_kw) - {c.id for c in site.prosumers})
        if not_prosumers:
            msg = f"export_kw names connections without PV: {', '.join(not_prosumers[:5])}"
            raise ValueError(msg)
        supply = sum(
            (np.clip(np.asarray(v, dtype=float), 0.0, None) for v in export_kw.values()),
            start=np.zeros(grid.periods),
        )
    credit = credit or {}
    relays = relays or {}
    shed_hours = shed_hours or {}
    unknown = sorted(set(stakes) - {c.id for c in site.businesses})
    if unknown:
        msg = f"stakes name businesses the site does not have: {', '.join(unknown[:5])}"
        raise ValueError(msg)

    def demand(connection_id: str) -> np.ndarray:
        try:
            values = np.asarray(demand_kw[connection_id], dtype=float)
        except KeyError:
            msg = f"no demand forecast for connection {connection_id!r}"
            raise ValueError(msg) from None
        return values

    priority = tuple(PriorityLoad(c.id, demand(c.id)) for c in site.priority_users)
    members_of: dict[str, list[str]] = {g.id: [] for g in site.relay_groups}
    for c in site.connections:
        if c.relay_group is not None:
            members_of[c.relay_group].append(c.id)
    groups = []
    for group in site.relay_groups:
        members = members_of[group.id]
        powered = tuple(m for m in members if credit.get(m, True))
        cut = tuple(m for m in members if not credit.get(m, True))
        load = sum((demand(m) for m in powered), start=np.zeros(grid.periods))
        groups.append(
            HouseholdGroupLoad(
                id=group.id,
                demand_kw=load,
                members=powered,
                no_credit=cut,
                shed_hours=float(shed_hours.get(group.id, 0.0)),
                relay=relays.get(group.id, RelayState()),
            )
        )
    businesses = tuple(
        BusinessLoad(
            id=c.id,
            stake=int(stakes.get(c.id, 0)),
            value_score=c.business.value_score,
            power_kw_min=c.business.power_kw_min,
            power_kw_max=c.business.power_kw_max,
            demand_kw=demand(c.id),
            has_credit=credit.get(c.id, True),
            relay=relays.get(c.id, RelayState()),
        )
        for c in site.connections
        if c.kind is ConnectionKind.BUSINESS and c.business is not None
    )
    return DispatchProblem(
        grid=grid,
        pv_p50_kw=np.asarray(pv_p50_kw, dtype=float),
        pv_p10_kw=np.asarray(pv_p10_kw, dtype=float),
        battery=BatteryState.from_battery(site.battery, soc_kwh),
        priority=priority,
        households=tuple(groups),
        businesses=businesses,
        policy=policy or DispatchPolicy(),
        prosumer_export_kw=supply,
    )
