"""What dispatch is asked: the problem dataclasses, and how to build one from a site.

Everything here is plain data in SI-ish units named in the field (``_kw``, ``_kwh``,
``_hours``); arrays run over the periods of the grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from microgrid.site import (
    TIER_NAMES,
    Battery,
    ConnectionKind,
    ServicePlan,
    Site,
    complete_tier_order,
)
from microgrid.timegrid import TimeGrid

__all__ = [
    "TIER_ORDER",
    "BatteryState",
    "BusinessLoad",
    "ContractBand",
    "DispatchPolicy",
    "DispatchProblem",
    "HouseholdGroupLoad",
    "PriorityLoad",
    "ProblemError",
    "RelayState",
    "SolverSettings",
    "business_weights",
    "check_problem",
    "check_settings",
    "contract_band",
    "default_stakes",
    "firm_demand_kw",
    "household_lifeline",
    "household_lifelines",
    "problem_from_site",
]

VALUE_SCORE_LIMIT = 10.0
"""Community value scores lie in [−10, +10] (seed 001)."""

TIER_ORDER = TIER_NAMES
"""The tiers in the order the community's rules rank them by default (DESIGN.md §5): the
battery's SoC window, priority users, the household lifeline (demand within the service
plan; all demand for households without a plan), the lower edges of contracted consumers'
bands (:class:`ContractBand`), the priority reserve, businesses, household use beyond the
plan. A site states its own order (``[policy]``)."""

BUSINESS_OBJECTIVES = ("stake_fairness", "community_value")
"""How the business tier shares its energy (:class:`DispatchPolicy`)."""

BEYOND_NOISE_KW = 1e-9
"""Demand beyond plan below this is float rounding of the budget arithmetic [kW]."""

STAKE_LIMIT = 10**12
"""Largest stake a business may carry; keeps every stake sum far inside int64."""

FAIR_SHARE_TOLERANCE_MAX = 0.5
"""Fine fair-share layers must stay finer than the coarse ones (ratio 1.6)."""


class ProblemError(ValueError):
    """A dispatch input that cannot be planned with, naming the unit and the field.

    Attributes
    ----------
    unit : str
        The unit (``battery``, ``pv``, ``policy``, ``settings`` or a load's id).
    field : str
        The offending field of that unit.
    """

    def __init__(self, message: str, *, unit: str, field: str) -> None:
        super().__init__(f"{unit}.{field}: {message}")
        self.unit = unit
        self.field = field


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
    capacity_kwh : float or None
        What the battery physically holds [kWh], for checking the measurement; the
        window's top when not given.
    """

    soc_kwh: float
    soc_kwh_min: float
    soc_kwh_max: float
    power_kw_max: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_kwh_end_min: float | None = None
    capacity_kwh: float | None = None

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
            capacity_kwh=battery.energy_capacity_kwh,
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
    lifeline_kw : numpy.ndarray or None
        The group's demand within its households' service plans [kW]: each household's
        demand capped at its plan's power limit, until its daily budget is used up (what
        its meter lets through while the group is held to its plans). None: no plans,
        all demand is lifeline.
    evening : numpy.ndarray of bool or None
        Periods inside the households' guaranteed evening window.
    member_plans : tuple of (float, int)
        Per member with credit: its plan's power limit [kW] and daily budget [Wh]; empty
        without plans.
    member_lifeline_kw, member_demand_kw : numpy.ndarray or None
        Per member (rows, in ``members`` order) and period: lifeline and demand [kW], for
        the meters' budgets and the households' MTF tiers.
    """

    id: str
    demand_kw: np.ndarray
    members: tuple[str, ...] = ()
    no_credit: tuple[str, ...] = ()
    shed_hours: float = 0.0
    relay: RelayState = field(default_factory=RelayState)
    lifeline_kw: np.ndarray | None = None
    evening: np.ndarray | None = None
    member_plans: tuple[tuple[float, int], ...] = ()
    member_lifeline_kw: np.ndarray | None = None
    member_demand_kw: np.ndarray | None = None

    @property
    def within_plan_kw(self) -> np.ndarray:
        """Lifeline demand [kW]: within the plans, or all demand without plans."""
        demand: np.ndarray = np.clip(np.asarray(self.demand_kw, dtype=float), 0.0, None)
        if self.lifeline_kw is None:
            return demand
        within: np.ndarray = np.minimum(np.clip(self.lifeline_kw, 0.0, None), demand)
        return within

    @property
    def beyond_plan_kw(self) -> np.ndarray:
        """Demand beyond the plans [kW] (0 without plans)."""
        beyond = np.clip(np.clip(self.demand_kw, 0.0, None) - self.within_plan_kw, 0.0, None)
        # Rounding in the budget arithmetic (1e-17 kW) is not use beyond plan.
        return np.where(beyond > BEYOND_NOISE_KW, beyond, 0.0)


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
class ContractBand:
    """A contracted consumer's band as power: firm demand below, a cap above.

    A band contract (:mod:`settlement.contracts`) fixes the consumer's energy per interval
    in ``[lower, upper]`` with a tolerance; dispatch takes it as mean power over each
    period. Its own tier (``contract``) minimises the shortfall under ``lower_kw``, and the
    consumer's power never exceeds ``upper_kw`` (:func:`firm_demand_kw`).

    Attributes
    ----------
    id : str
        The contract's id.
    connection_id : str
        The contracted business (a :class:`BusinessLoad` of the problem).
    lower_kw : numpy.ndarray
        The band's lower edge per period [kW]; 0 outside the contract's period.
    upper_kw : numpy.ndarray
        The band's upper edge plus the tolerance per period [kW]; ``inf`` outside it.
    """

    id: str
    connection_id: str
    lower_kw: np.ndarray
    upper_kw: np.ndarray


def contract_band(
    contract_id: str,
    connection_id: str,
    bands_kw: Sequence[tuple[float, float] | None],
    tolerance_kw: float,
) -> ContractBand:
    """A :class:`ContractBand` from a band per period (None outside the contract).

    Parameters
    ----------
    contract_id, connection_id : str
    bands_kw : sequence of (float, float) or None
        ``(lower, upper)`` mean power per period [kW]
        (:func:`settlement.contracts.band_power_kw`).
    tolerance_kw : float
        The contract's tolerance as mean power over one interval [kW]; added to ``upper``.

    Examples
    --------
    >>> band = contract_band("mill", "B001", [None, (1.0, 2.0)], 0.1)
    >>> band.lower_kw.tolist(), band.upper_kw.tolist()
    ([0.0, 1.0], [inf, 2.1])
    """
    lower = np.array([0.0 if b is None else b[0] for b in bands_kw], dtype=float)
    upper = np.array([np.inf if b is None else b[1] + tolerance_kw for b in bands_kw], dtype=float)
    return ContractBand(contract_id, connection_id, lower, upper)


def firm_demand_kw(business: BusinessLoad, band: ContractBand | None) -> np.ndarray:
    """A business's demand with its band as firm demand [kW].

    Inside the contract's period the forecast is raised to the band's lower edge (the
    consumer committed to draw it) and capped at its upper edge plus tolerance (the plan
    never allots, and its meter limit never lets through, a draw the contract penalises).
    """
    demand: np.ndarray = np.clip(np.asarray(business.demand_kw, dtype=float), 0.0, None)
    if band is None:
        return demand
    firm: np.ndarray = np.minimum(np.maximum(demand, band.lower_kw), band.upper_kw)
    return firm


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
    tier_order : tuple of str
        The tiers, highest first, solved lexicographically: each tier's optimum is
        fixed before the next is solved. Every name of :data:`TIER_ORDER` exactly once.
    business_objective : {"stake_fairness", "community_value"}
        ``stake_fairness``: maximise Σ s_b log E_b (piecewise linear, shares follow
        stakes); ``community_value``: maximise Σ R_b(E_b) = Σ w_b E_b, with w_b from the
        value score and the stake share (:func:`business_weights`), I of N by value.
    stake_weight : float
        ``community_value``: share of w_b from the stake share, the rest from the value
        score, in [0, 1].
    """

    relay_step_hours: float = 1.0
    min_on_hours: float = 1.0
    min_off_hours: float = 1.0
    surplus_only_zero_stake: bool = True
    surplus_only_negative_score: bool = True
    rotation_strength: float = 0.25
    reserve: bool = True
    fair_share_tolerance: float = 0.03
    tier_order: tuple[str, ...] = TIER_ORDER
    business_objective: str = "stake_fairness"
    stake_weight: float = 0.5

    def __post_init__(self) -> None:
        # An order written before the contract tier existed gets it in its default place.
        object.__setattr__(self, "tier_order", complete_tier_order(self.tier_order))

    @classmethod
    def from_site(cls, site: Site, **overrides: object) -> DispatchPolicy:
        """The site's stated policy (``[policy]``: tier order, business objective)."""
        stated: dict[str, object] = {
            "tier_order": tuple(site.policy.tier_order),
            "business_objective": site.policy.business_objective,
            "stake_weight": site.policy.stake_weight,
        }
        return cls(**(stated | overrides))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SolverSettings:
    """HiGHS settings.

    Attributes
    ----------
    time_limit_s : float
        Wall-clock budget of the whole dispatch [s]: the best plan found when it runs
        out is used, or the rule plan without one.
    mip_rel_gap, mip_abs_gap : float
        Kept for callers; the tiers are solved to absolute per-tier tolerances
        (:data:`dispatch.model.TIER_TOLERANCE_KWH`) instead, because a relative gap on
        an objective that carries a constant means nothing.
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
    timezone : str
        The site's IANA timezone: budget periods (local days) and evening windows.
    contracts : tuple of ContractBand
        Bands of contracted businesses (at most one per business): the ``contract`` tier.
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
    timezone: str = "UTC"
    contracts: tuple[ContractBand, ...] = ()

    def band_of(self, business_id: str) -> ContractBand | None:
        """The contract band of a business, or None."""
        return next((c for c in self.contracts if c.connection_id == business_id), None)

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


def business_weights(businesses: tuple[BusinessLoad, ...], stake_weight: float) -> np.ndarray:
    r"""Community value per kWh of each business, R_b(E) = w_b·E, scaled so the largest is 1.

    .. math:: w_b = (1 - \alpha)\,\max(v_b, 0)/10 + \alpha\, s_b / \max_c s_c

    with :math:`v_b` the value score, :math:`s_b` the stake and :math:`\alpha` the stake
    weight: the seeds' "maximize total R for given E" (seed 001), R from the community's
    judgement and its stakes (the largest stake counts like a score of 10). Zero
    everywhere when no business has value or stake.
    """
    scores = np.array([max(b.value_score, 0.0) / VALUE_SCORE_LIMIT for b in businesses])
    stakes = np.array([float(b.stake) for b in businesses])
    stake_share = stakes / stakes.sum() if stakes.sum() > 0 else np.zeros(len(businesses))
    if stake_share.size and stake_share.max() > 0:
        stake_share = stake_share / stake_share.max()  # the biggest stake counts as score 10
    weights: np.ndarray = (1.0 - stake_weight) * scores + stake_weight * stake_share
    top = float(weights.max()) if weights.size else 0.0
    return weights / top if top > 0 else weights


def household_lifeline(
    demand_kw: np.ndarray,
    plan: ServicePlan,
    local_hours: np.ndarray,
    local_days: np.ndarray,
    step_hours: float,
    used_wh: float = 0.0,
) -> np.ndarray:
    """One household's demand within its plan [kW]: the evening first, then the day.

    Demand capped at the plan's power limit. Per local day the budget goes first to the
    evening window's demand, then to the rest of the day in time order; it is full again
    at each local midnight. ``used_wh`` is what the meter has already counted in the
    first local day (the current budget period). The meter carries this out: held to its
    plan, the household's limit is the plan's power while its day share lasts and 0
    once it is used (:func:`dispatch.schedule.household_meters`), so the day cannot
    spend the evening's share; the budget caps the whole day. Many households at once:
    :func:`household_lifelines`.

    Examples
    --------
    >>> plan = ServicePlan(power_limit_w=100, daily_energy_wh=150,
    ...                    evening_start_hour=18, evening_end_hour=22)
    >>> household_lifeline(np.array([0.2, 0.2, 0.1]), plan, np.array([16, 17, 18]),
    ...                    np.array([0, 0, 0]), 1.0).round(3).tolist()
    [0.05, 0.0, 0.1]
    """
    rows = household_lifelines(
        np.asarray(demand_kw, dtype=float)[np.newaxis],
        (plan,),
        local_hours,
        local_days,
        step_hours,
        np.array([used_wh], dtype=float),
    )
    one: np.ndarray = rows[0]
    return one


def household_lifelines(
    demand_kw: np.ndarray,
    plans: Sequence[ServicePlan],
    local_hours: np.ndarray,
    local_days: np.ndarray,
    step_hours: float,
    used_wh: np.ndarray | None = None,
) -> np.ndarray:
    """Many households' demand within their plans [kW], one row each.

    The rule of :func:`household_lifeline`, row by row, with the loop over periods and
    the arithmetic over households: each row sees exactly the operations of its own
    sequential budget (``min(demand, room/Δt)``, then ``max(room − served·Δt, 0)``, in
    the same order), so the result is bit for bit that of the one-household loop.
    Building a problem calls it once for every household of the site, where a loop per
    household was a sixth of a year-long planner run.

    Parameters
    ----------
    demand_kw : numpy.ndarray
        Demand, households × periods [kW].
    plans : sequence of ServicePlan
        Each household's plan, in row order.
    local_hours, local_days : numpy.ndarray
        Each period's local hour (0–23) and local day (any label, equal within a day).
    step_hours : float
        Period length [h].
    used_wh : numpy.ndarray, optional
        Energy each meter has counted in the first local day [Wh]; 0 if omitted.
    """
    demand = np.asarray(demand_kw, dtype=float)
    limits = np.array([p.power_limit_kw for p in plans], dtype=float)
    capped = np.minimum(np.clip(demand, 0.0, None), limits[:, np.newaxis])
    out = np.zeros(capped.shape, dtype=float)
    masks: dict[ServicePlan, np.ndarray] = {}
    evening = np.array(
        [masks.setdefault(p, p.evening_mask(local_hours)) for p in plans], dtype=bool
    ).reshape(capped.shape)
    daily_wh = np.array([p.daily_energy_wh for p in plans], dtype=float)
    used = np.zeros(len(plans)) if used_wh is None else np.asarray(used_wh, dtype=float)
    left_wh = daily_wh - used
    room = np.where(left_wh < 0.0, 0.0, left_wh) / 1000.0  # Python's max(x, 0.0)
    for n, day in enumerate(dict.fromkeys(local_days.tolist())):
        if n:
            room = daily_wh / 1000.0
        periods = np.flatnonzero(local_days == day)
        for in_part in (evening, ~evening):
            for t in periods[in_part[:, periods].any(axis=0)]:
                rows = in_part[:, t]
                cap = room / step_hours
                served = np.where(cap < capped[:, t], cap, capped[:, t])  # min(capped, cap)
                out[rows, t] = served[rows]
                left = room - served * step_hours
                room = np.where(rows, np.where(left < 0.0, 0.0, left), room)
    return out


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
    budget_used_wh: Mapping[str, float] | None = None,
    contracts: Sequence[ContractBand] = (),
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
        Sharing rules; the site's stated policy (:meth:`DispatchPolicy.from_site`) if
        omitted.
    budget_used_wh : mapping of str to float, optional
        Energy each household's meter has counted in the current budget period (local
        day) [Wh]; 0 if omitted.
    export_kw : mapping of str to numpy.ndarray, optional
        Forecast export of each prosumer at its connection [kW], ≥ 0
        (:meth:`forecasts.Forecast.prosumer_export_kw`); pass their import as demand.
    contracts : sequence of ContractBand, optional
        Bands of the open band contracts on the grid (at most one per business).
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
        if values.shape != (grid.periods,):
            msg = (
                f"demand forecast for connection {connection_id!r} has shape {values.shape}; "
                f"give one value per period of the grid ({grid.periods})"
            )
            raise ValueError(msg)
        return values

    priority = tuple(PriorityLoad(c.id, demand(c.id)) for c in site.priority_users)
    members_of: dict[str, list[str]] = {g.id: [] for g in site.relay_groups}
    for c in site.connections:
        if c.relay_group is not None:
            members_of[c.relay_group].append(c.id)
    local = grid.index.tz_convert(site.location.timezone)
    local_hours = np.asarray(local.hour)
    local_days = np.asarray(local.normalize().asi8)
    used = budget_used_wh or {}
    plan_of = {
        c.id: site.service_plan_for(c) for c in site.connections if c.relay_group is not None
    }
    powered = {
        g.id: tuple(m for m in members_of[g.id] if credit.get(m, True)) for g in site.relay_groups
    }
    demand_of = {m: np.clip(demand(m), 0.0, None) for ms in powered.values() for m in ms}
    # Every household held to its plan, group after group, in one vectorised pass.
    rows: dict[str, slice] = {}
    group_plans: dict[str, list[ServicePlan]] = {}
    held: list[str] = []
    for group_id, members in powered.items():
        plans = [p for p in (plan_of[m] for m in members) if p is not None]
        if members and len(plans) == len(members):
            rows[group_id] = slice(len(held), len(held) + len(members))
            group_plans[group_id] = plans
            held.extend(members)
    lifelines = household_lifelines(
        np.array([demand_of[m] for m in held]).reshape(len(held), grid.periods),
        [p for plans in group_plans.values() for p in plans],
        local_hours,
        local_days,
        grid.step_hours,
        np.array([used.get(m, 0.0) for m in held], dtype=float),
    )
    groups = []
    for group in site.relay_groups:
        members = powered[group.id]
        demands = [demand_of[m] for m in members]
        planned: dict[str, object] = {}
        if group.id in rows:
            plans = group_plans[group.id]
            evening = np.zeros(grid.periods, dtype=bool)
            for p in dict.fromkeys(plans):
                evening |= p.evening_mask(local_hours)
            planned = {
                "lifeline_kw": lifelines[rows[group.id]].sum(axis=0),
                "evening": evening,
                "member_plans": tuple((p.power_limit_kw, p.daily_energy_wh) for p in plans),
                "member_lifeline_kw": lifelines[rows[group.id]],
                "member_demand_kw": np.array(demands),
            }
        groups.append(
            HouseholdGroupLoad(
                id=group.id,
                demand_kw=sum(demands, start=np.zeros(grid.periods)),
                members=members,
                no_credit=tuple(m for m in members_of[group.id] if not credit.get(m, True)),
                shed_hours=float(shed_hours.get(group.id, 0.0)),
                relay=relays.get(group.id, RelayState()),
                **planned,  # type: ignore[arg-type]
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
        policy=policy or DispatchPolicy.from_site(site),
        prosumer_export_kw=supply,
        timezone=site.location.timezone,
        contracts=tuple(contracts),
    )


def check_settings(settings: SolverSettings) -> None:
    """Raise :class:`ProblemError` for solver settings that cannot run a solve."""
    if not (np.isfinite(settings.time_limit_s) and settings.time_limit_s > 0):
        msg = f"must be a positive number of seconds, got {settings.time_limit_s}"
        raise ProblemError(msg, unit="settings", field="time_limit_s")
    for name in ("mip_rel_gap", "mip_abs_gap"):
        value = getattr(settings, name)
        if not (np.isfinite(value) and value >= 0):
            msg = f"must be ≥ 0, got {value}"
            raise ProblemError(msg, unit="settings", field=name)
    if settings.threads is not None and settings.threads < 1:
        msg = f"must be ≥ 1 or None, got {settings.threads}"
        raise ProblemError(msg, unit="settings", field="threads")


def check_problem(problem: DispatchProblem) -> None:
    """Check shapes, ranges, units and cross-field rules before any model is built.

    Raises
    ------
    ProblemError
        The first rule broken, naming the unit, the field and how to fix it.

    Notes
    -----
    In the spirit of PyPSA's consistency checks: everything a solve would trip over
    (a numpy broadcast error deep in the model, a state of charge no battery can hold,
    a demand of ``nan``) is caught here with a message about the input. A measured
    state of charge outside the *window* is allowed (the plan recovers and reports a
    priced violation), but not outside what the battery can physically hold.
    """
    n = problem.periods
    for name in ("pv_p50_kw", "pv_p10_kw"):
        _check_series("pv", name, getattr(problem, name), n)
    if np.any(problem.pv_p10_kw > problem.pv_p50_kw + 1e-6):
        t = int(np.argmax(problem.pv_p10_kw - problem.pv_p50_kw))
        msg = (
            f"the pessimistic forecast exceeds the median in period {t} "
            f"({problem.pv_p10_kw[t]:.3f} > {problem.pv_p50_kw[t]:.3f} kW); swap or clip them"
        )
        raise ProblemError(msg, unit="pv", field="pv_p10_kw")
    _check_battery(problem.battery)
    seen: set[str] = set()
    loads: list[tuple[str, np.ndarray]] = [(p.id, p.demand_kw) for p in problem.priority]
    loads += [(g.id, g.demand_kw) for g in problem.households]
    loads += [(b.id, b.demand_kw) for b in problem.businesses]
    for unit, demand in loads:
        if unit in seen:
            msg = "appears twice; every load needs its own id"
            raise ProblemError(msg, unit=unit, field="id")
        seen.add(unit)
        _check_series(unit, "demand_kw", demand, n)
    for g in problem.households:
        _check_non_negative(g.id, "shed_hours", g.shed_hours)
        _check_non_negative(g.id, "relay.hours_in_state", g.relay.hours_in_state)
    for b in problem.businesses:
        _check_business(b)
    _check_contracts(problem)
    _check_policy(problem)


def _check_series(unit: str, field: str, values: np.ndarray, periods: int) -> None:
    array = np.asarray(values)
    if array.shape != (periods,):
        msg = f"has shape {array.shape}; the grid has {periods} periods: give one value per period"
        raise ProblemError(msg, unit=unit, field=field)
    if not np.all(np.isfinite(array)):
        t = int(np.flatnonzero(~np.isfinite(array))[0])
        msg = f"is not a finite number in period {t} ({array[t]})"
        raise ProblemError(msg, unit=unit, field=field)
    if np.any(array < 0):
        t = int(np.flatnonzero(array < 0)[0])
        msg = f"is negative in period {t} ({array[t]} kW); powers are ≥ 0"
        raise ProblemError(msg, unit=unit, field=field)


def _check_non_negative(unit: str, field: str, value: float) -> None:
    if not (np.isfinite(value) and value >= 0):
        msg = f"must be a finite number ≥ 0, got {value}"
        raise ProblemError(msg, unit=unit, field=field)


def _check_battery(battery: BatteryState) -> None:
    for name in ("soc_kwh_min", "soc_kwh_max", "power_kw_max"):
        _check_non_negative("battery", name, getattr(battery, name))
    if battery.soc_kwh_max < battery.soc_kwh_min:
        msg = f"{battery.soc_kwh_max} kWh is below soc_kwh_min ({battery.soc_kwh_min} kWh)"
        raise ProblemError(msg, unit="battery", field="soc_kwh_max")
    for name in ("charge_efficiency", "discharge_efficiency"):
        value = getattr(battery, name)
        if not 0 < value <= 1:
            msg = f"must lie in (0, 1], got {value}"
            raise ProblemError(msg, unit="battery", field=name)
    # The window is soft, the capacity is not: no measurement may exceed what the
    # battery holds (the window's top is at most the capacity).
    capacity = battery.soc_kwh_max if battery.capacity_kwh is None else battery.capacity_kwh
    if not (np.isfinite(battery.soc_kwh) and 0 <= battery.soc_kwh <= capacity + 1e-9):
        msg = (
            f"{battery.soc_kwh} kWh is outside what the battery can hold [0, {capacity}] kWh; "
            "check the measurement's unit (kWh, not %) and the site's battery size"
        )
        raise ProblemError(msg, unit="battery", field="soc_kwh")
    end = battery.soc_kwh_end_min
    if end is not None and not (np.isfinite(end) and 0 <= end <= battery.soc_kwh_max):
        msg = f"{end} kWh is outside [0, soc_kwh_max = {battery.soc_kwh_max}] kWh"
        raise ProblemError(msg, unit="battery", field="soc_kwh_end_min")


def _check_business(b: BusinessLoad) -> None:
    if not 0 <= b.stake <= STAKE_LIMIT:
        msg = f"must be a whole number of tokens in [0, {STAKE_LIMIT}], got {b.stake}"
        raise ProblemError(msg, unit=b.id, field="stake")
    if not (np.isfinite(b.value_score) and abs(b.value_score) <= VALUE_SCORE_LIMIT):
        msg = f"must lie in [−{VALUE_SCORE_LIMIT:g}, +{VALUE_SCORE_LIMIT:g}], got {b.value_score}"
        raise ProblemError(msg, unit=b.id, field="value_score")
    _check_non_negative(b.id, "power_kw_min", b.power_kw_min)
    _check_non_negative(b.id, "power_kw_max", b.power_kw_max)
    if b.power_kw_max < b.power_kw_min:
        msg = f"{b.power_kw_max} kW is below power_kw_min ({b.power_kw_min} kW)"
        raise ProblemError(msg, unit=b.id, field="power_kw_max")
    _check_non_negative(b.id, "relay.hours_in_state", b.relay.hours_in_state)


def _check_contracts(problem: DispatchProblem) -> None:
    businesses = {b.id for b in problem.businesses}
    contracted: set[str] = set()
    for c in problem.contracts:
        if c.connection_id not in businesses:
            msg = (
                f"{c.connection_id!r} is not a business of the problem; a band contract "
                "needs a limitable business connection"
            )
            raise ProblemError(msg, unit=c.id, field="connection_id")
        if c.connection_id in contracted:
            msg = f"{c.connection_id!r} has two bands; merge its contracts into one band"
            raise ProblemError(msg, unit=c.id, field="connection_id")
        contracted.add(c.connection_id)
        _check_series(c.id, "lower_kw", c.lower_kw, problem.periods)
        upper = np.asarray(c.upper_kw, dtype=float)
        if upper.shape != (problem.periods,) or np.isnan(upper).any():
            msg = f"needs one number per period ({problem.periods}), inf outside the band"
            raise ProblemError(msg, unit=c.id, field="upper_kw")
        if np.any(upper < c.lower_kw):
            t = int(np.flatnonzero(upper < c.lower_kw)[0])
            msg = f"{upper[t]} kW is below lower_kw ({c.lower_kw[t]} kW) in period {t}"
            raise ProblemError(msg, unit=c.id, field="upper_kw")


def _check_policy(problem: DispatchProblem) -> None:
    policy = problem.policy
    step = problem.step_hours
    ratio = policy.relay_step_hours / step
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        msg = (
            f"{policy.relay_step_hours} h must be a whole multiple of the period length ({step} h)"
        )
        raise ProblemError(msg, unit="policy", field="relay_step_hours")
    _check_non_negative("policy", "min_on_hours", policy.min_on_hours)
    _check_non_negative("policy", "min_off_hours", policy.min_off_hours)
    if not 0.0 <= policy.rotation_strength <= 0.5:
        msg = f"must lie in [0, 0.5], got {policy.rotation_strength}"
        raise ProblemError(msg, unit="policy", field="rotation_strength")
    if sorted(policy.tier_order) != sorted(TIER_ORDER):
        msg = f"{policy.tier_order} must name each of {TIER_ORDER} exactly once"
        raise ProblemError(msg, unit="policy", field="tier_order")
    if policy.business_objective not in BUSINESS_OBJECTIVES:
        msg = f"{policy.business_objective!r} must be one of {', '.join(BUSINESS_OBJECTIVES)}"
        raise ProblemError(msg, unit="policy", field="business_objective")
    if not 0.0 <= policy.stake_weight <= 1.0:
        msg = f"must lie in [0, 1], got {policy.stake_weight}"
        raise ProblemError(msg, unit="policy", field="stake_weight")
    if not 0.0 < policy.fair_share_tolerance < FAIR_SHARE_TOLERANCE_MAX:
        msg = f"must lie in (0, {FAIR_SHARE_TOLERANCE_MAX}), got {policy.fair_share_tolerance}"
        raise ProblemError(msg, unit="policy", field="fair_share_tolerance")
