"""Rolling-horizon dispatch and delivery on what actually happens.

A plan is made on forecasts; the sun and the loads then do what they do. This module
closes that loop in simulated time, the way the service runs it live: every
``replan_every`` periods a new plan is made from the *measured* state of charge, relay
states and shed hours, warm-started from the previous plan; the periods until the next
plan are delivered on the actual PV and demand by :func:`deliver_block`, the physics
the container's controller would meet, on numpy arrays (:func:`deliver_block`) so that
a simulated year does not pay for a pandas lookup per unit and period. Planners
(scenarios) and the quality benchmark use it; :func:`community_value` scores the
outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from dispatch.problem import (
    BatteryState,
    DispatchPolicy,
    DispatchProblem,
    RelayState,
    problem_from_site,
)
from dispatch.schedule import Schedule
from microgrid import Site, TimeGrid
from microgrid.physics import BatteryLimits, ContainerState, StepInputs, meter_flows_kw, step
from microgrid.site import ConnectionKind

__all__ = [
    "BlockDelivery",
    "Delivery",
    "Planner",
    "TierValues",
    "UnitTiers",
    "community_value",
    "deliver_block",
    "held_limits_kw",
    "lifeline_wanted_kw",
    "plan_prosumers",
    "roll",
    "shed_hours",
    "track_relays",
    "unit_own_pv_kw",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

Planner = Callable[[DispatchProblem, Schedule | None], Schedule]
"""Makes a plan for a problem, given the previous plan (for a warm start)."""


@dataclass(frozen=True)
class TierValues:
    """What a kWh is worth to the community, per tier, for scoring outcomes.

    Businesses are worth their own ``value_score`` per kWh (−10 … +10); households and
    priority users are worth more than any business, as the tier order says.

    Attributes
    ----------
    priority, household : float
        Value per kWh served [value/kWh].
    """

    priority: float = 20.0
    household: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """What was delivered, period by period.

    Attributes
    ----------
    grid : TimeGrid
        The delivered periods.
    served_kw : pandas.DataFrame
        Power served to each unit (priority user, household group, business) [kW].
    flows : pandas.DataFrame
        ``pv_kw`` (available), ``pv_used_kw``, ``curtailed_kw``, ``battery_kw``
        (discharge positive), ``soc_kwh`` (end of period), ``short_kw`` (load the
        battery could not carry), ``export_kw`` (what prosumers' own panels delivered
        into the grid: supply) [kW, kWh].
    tiers : dict of str to tuple of str
        Unit ids per tier (``priority``, ``household``, ``business``).
    shed_hours : pandas.Series
        Hours each household group was off while it had demand [h].
    plans : list of Schedule
        The plans made, in order (empty unless kept).
    """

    grid: TimeGrid
    served_kw: pd.DataFrame
    flows: pd.DataFrame
    tiers: dict[str, tuple[str, ...]]
    shed_hours: pd.Series
    plans: list[Schedule] = field(default_factory=list)

    @property
    def shed_spread_hours(self) -> float:
        """Most minus fewest shed hours over the household groups [h]: 0 is even rotation."""
        return float(self.shed_hours.max() - self.shed_hours.min()) if len(self.shed_hours) else 0.0

    def tier_energy_kwh(self) -> pd.Series:
        """Energy served per tier over the whole run [kWh]."""
        energy = self.served_kw.sum() * self.grid.step_hours
        return pd.Series({tier: float(energy[list(ids)].sum()) for tier, ids in self.tiers.items()})


@dataclass(frozen=True)
class UnitTiers:
    """Column positions of each tier among the units (priority, household groups, businesses).

    Attributes
    ----------
    priority, household, business : numpy.ndarray
        Integer column indices.
    """

    priority: npt.NDArray[np.intp]
    household: npt.NDArray[np.intp]
    business: npt.NDArray[np.intp]

    @classmethod
    def of(cls, n_priority: int, n_household: int, n_business: int) -> UnitTiers:
        """Units ordered priority, households, businesses."""
        a, b = n_priority, n_priority + n_household
        return cls(np.arange(0, a), np.arange(a, b), np.arange(b, b + n_business))


@dataclass(frozen=True)
class BlockDelivery:
    """What a block of periods delivered.

    Attributes
    ----------
    served_kw : numpy.ndarray
        Power served, periods × units [kW].
    pv_kw, pv_used_kw, curtailed_kw, battery_kw, soc_kwh, short_kw : numpy.ndarray
        Per period [kW; kWh for the SoC at the period's end]; ``short_kw`` is load that
        wanted power but was dark because the inverter tripped on overload.
    state : ContainerState
        The physics' state at the block's end (SoC, inverter restart and meter timers,
        trip counters), to continue the next block from.
    exported_kw : numpy.ndarray
        Per period, what the prosumers' own panels delivered into the grid [kW]
        (zeros without ``own_pv_kw``).
    """

    served_kw: FloatArray
    pv_kw: FloatArray
    pv_used_kw: FloatArray
    curtailed_kw: FloatArray
    battery_kw: FloatArray
    soc_kwh: FloatArray
    short_kw: FloatArray
    state: ContainerState
    exported_kw: FloatArray = field(default_factory=lambda: np.zeros(0))


def deliver_block(
    relays: BoolArray,
    allotment_kw: FloatArray,
    pv_kw: FloatArray,
    demand_kw: FloatArray,
    battery: BatteryState,
    step_hours: float,
    tiers: UnitTiers,
    state: ContainerState | None = None,
    household_limit_kw: FloatArray | None = None,
    own_pv_kw: FloatArray | None = None,
) -> BlockDelivery:
    """Deliver consecutive periods of a plan on actual PV and demand, by the one physics.

    Each period is one :func:`microgrid.physics.step` with the plan's setpoints, each
    unit a connection: relays where the plan put them (priority users always on); a
    household group that is on draws its actual demand (switch-only); a business is
    limited at its meter to its allotment (it trips if its demand rises above, then
    runs what fits); PV serves the load, the battery covers the difference within its
    power and state-of-charge limits, surplus charges it and the rest is curtailed.
    If the battery cannot carry the load, the inverter trips and everyone is dark until
    it restarts — what the live container does, so that the KPIs describe it.

    Parameters
    ----------
    relays : numpy.ndarray of bool
        Planned relay state, periods × units (priority columns are ignored: always on).
    allotment_kw : numpy.ndarray
        Planned power per unit [kW]; the meter limit of businesses.
    pv_kw : numpy.ndarray
        Available PV per period [kW].
    demand_kw : numpy.ndarray
        Actual demand, periods × units [kW].
    battery : BatteryState
        Limits and the state of charge at the start.
    step_hours : float
        Period length [h].
    tiers : UnitTiers
        Which columns are which tier.
    state : ContainerState, optional
        The physics' state from the previous block (its SoC wins over ``battery``'s);
        a container at rest at ``battery.soc_kwh`` if omitted.
    household_limit_kw : numpy.ndarray, optional
        Periods × household groups: the power the group's meters let through while the
        plan holds it to its service plans (its lifeline allotment), ``inf`` while free
        or without plans [kW]. The group stands for its households' meters: each
        limited to its plan's power until its budget is used, which is what the
        allotment sums. None: no limits (switch-only groups draw their demand).
    own_pv_kw : numpy.ndarray, optional
        Periods × units: AC power of the prosumers' own panels behind each unit's meters
        [kW] (:func:`unit_own_pv_kw`). The physics serves the unit's own load from it
        first and takes the surplus as supply at the connection, before the container's
        PV, as the simulated container does; ``served_kw`` is then what the grid
        delivered (a unit's demand its own panels covered is not served by the grid).
        None: no prosumers.
    """
    rows, n_units = demand_kw.shape
    limits = BatteryLimits(
        battery.soc_kwh_max,
        battery.soc_kwh_min,
        battery.soc_kwh_max,
        battery.power_kw_max,
        battery.charge_efficiency,
        battery.discharge_efficiency,
    )
    if state is None:
        state = ContainerState.new(battery.soc_kwh, n_units)
    closed = np.asarray(relays, dtype=bool).copy()
    closed[:, tiers.priority] = True
    power_limit = np.full((rows, n_units), np.inf)
    power_limit[:, tiers.business] = allotment_kw[:, tiers.business]
    if household_limit_kw is not None:
        power_limit[:, tiers.household] = household_limit_kw
    served = np.zeros((rows, n_units))
    flows = np.zeros((6, rows))
    exported = np.zeros(rows)
    for t in range(rows):
        demand = np.maximum(demand_kw[t], 0.0)
        outcome = step(
            state,
            limits,
            StepInputs(
                dt_h=step_hours,
                pv_available_kw=max(float(pv_kw[t]), 0.0),
                pv_limit_kw=np.inf,
                charge_limit_kw=battery.power_kw_max,
                discharge_limit_kw=battery.power_kw_max,
                demand_kw=demand,
                closed=closed[t],
                power_limit_kw=power_limit[t],
                own_pv_kw=None if own_pv_kw is None else own_pv_kw[t],
            ),
        )
        served[t] = outcome.drawn_kw
        exported[t] = float(outcome.exported_kw.sum())
        if own_pv_kw is not None:  # what the meters would import, as the physics sees it
            demand = meter_flows_kw(demand, np.maximum(own_pv_kw[t], 0.0))[0]
        wanted = float(np.where(closed[t], np.minimum(demand, power_limit[t]), 0.0).sum())
        dark_kw = max(wanted - outcome.load_kw, 0.0) if outcome.tripped else 0.0
        pv = max(float(pv_kw[t]), 0.0)
        flows[:, t] = (
            pv,
            outcome.pv_kw,
            pv - outcome.pv_kw,
            outcome.battery_kw,
            state.soc_kwh,
            dark_kw,
        )
    pv_available, pv_used, curtailed, battery_flow, soc, short = flows
    return BlockDelivery(
        served, pv_available, pv_used, curtailed, battery_flow, soc, short, state, exported
    )


def _planned_demand(
    demand_kw: Mapping[str, np.ndarray],
    own_pv_kw: Mapping[str, np.ndarray] | None,
    horizon: slice,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One plan's demand per connection and the prosumers' export over ``horizon`` [kW]."""
    demand = {c: np.asarray(d)[horizon] for c, d in demand_kw.items()}
    own = {c: np.asarray(pv)[horizon] for c, pv in (own_pv_kw or {}).items()}
    return demand, plan_prosumers(demand, own)


def plan_prosumers(
    demand_kw: dict[str, np.ndarray], own_pv_kw: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Plan prosumers as the live service does: import as demand, export as supply.

    Parameters
    ----------
    demand_kw : dict of str to numpy.ndarray
        One plan's demand per connection [kW]; the prosumers' entries are replaced by
        what their meters import.
    own_pv_kw : mapping of str to numpy.ndarray
        The same plan's power of each prosumer's panels, by connection id [kW].

    Returns
    -------
    dict of str to numpy.ndarray
        Each prosumer's export [kW] (``problem_from_site(..., export_kw=)``).
    """
    export: dict[str, np.ndarray] = {}
    for connection_id, pv in own_pv_kw.items():
        demand_kw[connection_id], export[connection_id] = meter_flows_kw(
            demand_kw[connection_id], pv
        )
    return export


def unit_own_pv_kw(
    site: Site, units: list[str] | tuple[str, ...], own_pv_kw: Mapping[str, np.ndarray], rows: int
) -> FloatArray:
    """The prosumers' own PV summed per dispatch unit, for :func:`deliver_block`.

    A household's panels sit behind its meter in its relay group's unit; any other
    connection is its own unit (dispatch's aggregation, :func:`dispatch.problem.
    problem_from_site`).

    Parameters
    ----------
    site : Site
        Which connection feeds which unit.
    units : sequence of str
        Unit ids in column order.
    own_pv_kw : mapping of str to numpy.ndarray
        AC power of each prosumer's panels per period [kW], by connection id: the
        forecasts' and the simulated container's one model,
        :func:`forecasts.pv.prosumer_pv_ac_power_kw` (``Forecast.prosumer_pv_kw``).
    rows : int
        Periods.

    Returns
    -------
    numpy.ndarray
        Periods × units [kW].

    Raises
    ------
    ValueError
        If ``own_pv_kw`` names a connection the site does not have, or one too short.
    """
    column = {u: k for k, u in enumerate(units)}
    connections = {c.id: c for c in site.connections}
    out: FloatArray = np.zeros((rows, len(units)))
    for connection_id, power in own_pv_kw.items():
        c = connections.get(connection_id)
        if c is None:
            msg = f"own PV given for {connection_id!r}, which is not a connection of the site"
            raise ValueError(msg)
        values = np.asarray(power, dtype=float)
        if len(values) < rows:
            msg = f"own PV of {connection_id!r} has {len(values)} periods; {rows} are needed"
            raise ValueError(msg)
        unit = c.relay_group if c.kind is ConnectionKind.HOUSEHOLD else c.id
        if unit in column:  # a connection no unit holds (no relay group) has no path
            out[:, column[str(unit)]] += np.maximum(values[:rows], 0.0)
    return out


def roll(
    site: Site,
    grid: TimeGrid,
    forecast_pv_kw: tuple[np.ndarray, np.ndarray],
    forecast_demand_kw: Mapping[str, np.ndarray],
    actual_pv_kw: np.ndarray,
    actual_demand_kw: Mapping[str, np.ndarray],
    planner: Planner,
    soc_kwh: float,
    horizon_periods: int,
    replan_every: int = 1,
    stakes: Mapping[str, int] | None = None,
    policy: DispatchPolicy | None = None,
    keep_plans: bool = False,
    actual_own_pv_kw: Mapping[str, np.ndarray] | None = None,
    forecast_own_pv_kw: Mapping[str, np.ndarray] | None = None,
) -> Delivery:
    """Plan and deliver ``grid`` period by period with a rolling horizon.

    Parameters
    ----------
    site : Site
        The site.
    grid : TimeGrid
        The periods to deliver.
    forecast_pv_kw : (numpy.ndarray, numpy.ndarray)
        P50 and P10 PV forecasts [kW] covering ``grid.periods + horizon_periods - 1``
        periods from ``grid.start`` (each plan looks ``horizon_periods`` ahead).
    forecast_demand_kw : mapping of str to numpy.ndarray
        Demand forecast per connection [kW], same length.
    actual_pv_kw : numpy.ndarray
        PV that was available, on ``grid`` [kW].
    actual_demand_kw : mapping of str to numpy.ndarray
        Demand per connection that materialised, on ``grid`` [kW].
    planner : Planner
        E.g. ``lambda p, prev: solve_dispatch(p, settings, warm_start=prev)`` or
        ``lambda p, prev: proportional_rule(p)``.
    soc_kwh : float
        Battery state of charge at the start [kWh].
    horizon_periods : int
        Periods each plan covers.
    replan_every : int
        Periods delivered from one plan before the next (1 = replan every period).
    stakes, policy
        As for :func:`dispatch.problem.problem_from_site`.
    keep_plans : bool
        Keep every plan in the result (memory grows with the run).
    actual_own_pv_kw : mapping of str to numpy.ndarray, optional
        AC power the prosumers' own panels had, on ``grid``, by connection id [kW]
        (``forecast_site(site, grid, weather).prosumer_pv_kw``: the pvlib chain the
        forecasts and the simulated container use). Delivered by the physics as each
        connection's own supply; ``actual_demand_kw`` stays the connections' whole
        demand. None: the prosumers' panels are dark.
    forecast_own_pv_kw : mapping of str to numpy.ndarray, optional
        The forecast of the same panels, as long as ``forecast_demand_kw``, by connection
        id [kW]. Each plan takes a prosumer's meter import as its demand and its export as
        supply at its connection, as the live service plans
        (:func:`microgrid.physics.meter_flows_kw`). None: planned without the panels.

    Returns
    -------
    Delivery
    """
    n, step = grid.periods, grid.step_hours
    needed = n + horizon_periods - 1
    for name, series in (("P50", forecast_pv_kw[0]), ("P10", forecast_pv_kw[1])):
        if len(series) < needed:
            msg = (
                f"the {name} PV forecast has {len(series)} periods; rolling {n} periods "
                f"with a {horizon_periods}-period horizon needs {needed}"
            )
            raise ValueError(msg)
    if not 1 <= replan_every <= horizon_periods:
        msg = f"replan_every must be between 1 and horizon_periods, got {replan_every}"
        raise ValueError(msg)
    # The units and their actual demand, aggregated exactly as dispatch aggregates them.
    actual = problem_from_site(
        site, grid, actual_pv_kw, actual_pv_kw, actual_demand_kw, soc_kwh, stakes, policy=policy
    )
    tiers = {
        "priority": tuple(p.id for p in actual.priority),
        "household": tuple(g.id for g in actual.households),
        "business": tuple(b.id for b in actual.businesses),
    }
    actual_units: dict[str, np.ndarray] = {p.id: p.demand_kw for p in actual.priority}
    actual_units |= {g.id: g.demand_kw for g in actual.households}
    actual_units |= {b.id: b.demand_kw for b in actual.businesses}
    units = [*tiers["priority"], *tiers["household"], *tiers["business"]]
    positions = UnitTiers.of(
        len(tiers["priority"]), len(tiers["household"]), len(tiers["business"])
    )
    demand_actual = np.column_stack([actual_units[u] for u in units]) if units else np.zeros((n, 0))
    served = np.zeros((n, len(units)))
    flows = np.zeros((7, n))
    own_pv = None if not actual_own_pv_kw else unit_own_pv_kw(site, units, actual_own_pv_kw, n)
    switchable = units[len(tiers["priority"]) :]
    relays: dict[str, RelayState] = {}
    shed = np.zeros(len(tiers["household"]))
    battery = actual.battery
    plans: list[Schedule] = []
    previous: Schedule | None = None
    physics: ContainerState | None = None
    # What each household's meter has counted this budget period (local day) [Wh].
    budget_used: dict[str, float] = {}
    day = grid.index[0].tz_convert(site.location.timezone).date() if n else None
    for t in range(0, n, replan_every):
        window = TimeGrid(start=grid.index[t], periods=horizon_periods, step=grid.step)
        horizon = slice(t, t + horizon_periods)
        planned_demand, planned_export = _planned_demand(
            forecast_demand_kw, forecast_own_pv_kw, horizon
        )
        problem = problem_from_site(
            site,
            window,
            forecast_pv_kw[0][horizon],
            forecast_pv_kw[1][horizon],
            planned_demand,
            battery.soc_kwh,
            stakes,
            relays=relays,
            shed_hours=dict(zip(tiers["household"], shed.tolist(), strict=True)),
            policy=policy,
            budget_used_wh=budget_used,
            export_kw=planned_export,
        )
        plan = planner(problem, previous)
        previous = plan
        if keep_plans:
            plans.append(plan)
        rows = slice(t, min(t + replan_every, n))
        count = rows.stop - rows.start
        planned_on = np.ones((count, len(units)), dtype=bool)  # priority: always on
        planned_on[:, len(tiers["priority"]) :] = plan.relays[switchable].to_numpy(bool)[:count]
        allotment = plan.allotment_kw.reindex(columns=units, fill_value=0.0).to_numpy(float)
        held = held_limits_kw(plan, tiers["household"], allotment[:count, positions.household])
        block = deliver_block(
            planned_on,
            allotment[:count],
            np.asarray(actual_pv_kw[rows], dtype=float),
            demand_actual[rows],
            battery,
            step,
            positions,
            physics,
            household_limit_kw=held,
            own_pv_kw=None if own_pv is None else own_pv[rows],
        )
        if plan.household_free is not None:
            _count_budgets(problem, plan, block.served_kw, positions, step, count, budget_used)
            local_day = grid.index[min(rows.stop, n - 1)].tz_convert(site.location.timezone).date()
            if rows.stop < n and local_day != day:
                day = local_day
                budget_used.clear()
        physics = block.state
        served[rows] = block.served_kw
        flows[:, rows] = (
            block.pv_kw,
            block.pv_used_kw,
            block.curtailed_kw,
            block.battery_kw,
            block.soc_kwh,
            block.short_kw,
            block.exported_kw,
        )
        battery = replace(battery, soc_kwh=float(block.soc_kwh[-1]))
        # The measured state the next plan starts from: relays with time in state, and
        # the hours each household group was dark while it had demand.
        track_relays(planned_on, switchable, len(tiers["priority"]), step, relays)
        # A unit its own panels covered wanted nothing from the grid: not shed.
        grid_demand = demand_actual[rows]
        if own_pv is not None:
            grid_demand = meter_flows_kw(grid_demand, own_pv[rows])[0]
        wanted = lifeline_wanted_kw(problem, grid_demand, positions)
        shed += shed_hours(block.served_kw, wanted, positions, step)
    index = grid.index
    names = (
        "pv_kw",
        "pv_used_kw",
        "curtailed_kw",
        "battery_kw",
        "soc_kwh",
        "short_kw",
        "export_kw",
    )
    return Delivery(
        grid=grid,
        served_kw=pd.DataFrame(served, index=index, columns=units),
        flows=pd.DataFrame(dict(zip(names, flows, strict=True)), index=index),
        tiers=tiers,
        shed_hours=pd.Series(shed, index=list(tiers["household"]), name="shed_hours"),
        plans=plans,
    )


def lifeline_wanted_kw(
    problem: DispatchProblem, demand_kw: FloatArray, tiers: UnitTiers
) -> FloatArray:
    """Demand that counts for shed hours: a held group's planned lifeline, not its demand.

    A group whose households have used their budgets is dark by their plans, not shed
    for shortage; counting those hours would make rotation favour it for the wrong
    reason. Groups without plans count their demand, as before.
    """
    rows = demand_kw.shape[0]
    wanted: FloatArray = np.array(demand_kw, dtype=float, copy=True)
    for g, group in enumerate(problem.households):
        if group.lifeline_kw is not None:
            wanted[:, tiers.household[g]] = group.within_plan_kw[:rows]
    return wanted


def held_limits_kw(
    plan: Schedule, groups: list[str] | tuple[str, ...], allotment_kw: FloatArray
) -> FloatArray | None:
    """What each household group's meters let through per period, for :func:`deliver_block`.

    Held to their service plans, a group's households draw at most their planned lifeline
    (their meters' limits and budgets, summed); free, or without plans, ``inf``.

    Parameters
    ----------
    plan : Schedule
        The plan being delivered.
    groups : sequence of str
        Household group ids, in the column order of ``allotment_kw``.
    allotment_kw : numpy.ndarray
        The plan's allotment to those groups, periods × groups [kW].

    Returns
    -------
    numpy.ndarray or None
        Periods × groups [kW]; None when the plan holds no household to a plan.
    """
    if plan.household_free is None:
        return None
    rows = allotment_kw.shape[0]
    free = plan.household_free.reindex(columns=list(groups), fill_value=True).to_numpy(bool)
    limits: FloatArray = np.where(free[:rows], np.inf, allotment_kw)
    return limits


def _count_budgets(
    problem: DispatchProblem,
    plan: Schedule,
    served_kw: FloatArray,
    positions: UnitTiers,
    step_hours: float,
    count: int,
    used: dict[str, float],
) -> None:
    """Add a delivered block's energy to each planned household's budget count [Wh].

    The group's delivered energy is split over its members as the plan split it (each
    member's lifeline plus its use beyond plan while free), since the one physics steps
    a group as one load.
    """
    free = plan.household_free
    if free is None:
        return
    for g, group in enumerate(problem.households):
        if group.member_lifeline_kw is None or group.member_demand_kw is None:
            continue
        is_free = free[group.id].to_numpy(bool)[:count] if group.id in free else np.zeros(count)
        lifeline = group.member_lifeline_kw[:, :count]
        planned = np.where(is_free, group.member_demand_kw[:, :count], lifeline)
        planned_total = planned.sum(axis=0)
        delivered = served_kw[:, positions.household[g]]
        ratio = np.divide(
            delivered, planned_total, out=np.zeros(count), where=planned_total > 1e-12
        )
        member_wh = (planned * ratio).sum(axis=1) * step_hours * 1000.0
        for member, wh in zip(group.members, member_wh.tolist(), strict=True):
            used[member] = used.get(member, 0.0) + wh


def track_relays(
    closed: BoolArray,
    units: list[str] | tuple[str, ...],
    first: int,
    step_hours: float,
    relays: dict[str, RelayState],
) -> None:
    """Carry each switchable unit's relay state and time in state over a delivered block.

    Parameters
    ----------
    closed : numpy.ndarray of bool
        Relay states delivered, periods × all units.
    units : sequence of str
        The switchable units, in column order from column ``first``.
    first : int
        Column of the first switchable unit (priority users come before).
    step_hours : float
        Period length [h].
    relays : dict of str to RelayState
        Updated in place: the measured state the next plan starts from.
    """
    count = len(closed)
    for k, unit in enumerate(units):
        column = closed[:, first + k]
        state = bool(column[-1])
        same = column[::-1] == state
        trailing = count if same.all() else int(np.argmin(same))
        before = relays.get(unit, RelayState())
        carried = before.hours_in_state if same.all() and before.closed == state else 0.0
        relays[unit] = RelayState(closed=state, hours_in_state=carried + trailing * step_hours)


def shed_hours(
    served_kw: FloatArray, demand_kw: FloatArray, tiers: UnitTiers, step_hours: float
) -> FloatArray:
    """Hours each household group was dark while it had demand over a block [h]."""
    groups = tiers.household
    dark = (served_kw[:, groups] <= 1e-9) & (demand_kw[:, groups] > 1e-9)
    hours: FloatArray = dark.sum(axis=0) * step_hours
    return hours


def community_value(delivery: Delivery, site: Site, values: TierValues | None = None) -> float:
    r"""The community's value of what was delivered [value units].

    .. math:: V = v_{pri} E_{pri} + v_{hh} E_{hh} + \sum_b s_b E_b

    with :math:`s_b` the business's value score per kWh.
    """
    values = values or TierValues()
    energy = delivery.served_kw.sum() * delivery.grid.step_hours
    score = {c.id: c.business.value_score for c in site.businesses if c.business is not None}
    total = values.priority * float(energy[list(delivery.tiers["priority"])].sum())
    total += values.household * float(energy[list(delivery.tiers["household"])].sum())
    total += sum(score[b] * float(energy[b]) for b in delivery.tiers["business"])
    return total
