"""The one physics of the container: pure power balance, meters, battery, protection.

The simulated container (:mod:`controllers.simulator`), the planners' delivery
(:func:`dispatch.rolling.deliver_block`) and through it the scenario engine all step
the container with :func:`step`, so the KPIs of a plan describe the grid the controller
drives. It lives in :mod:`microgrid` so every layer may import it.

The container's battery inverter forms the grid. One :func:`step` integrates a short
interval with fixed inputs:

1. **Meters.** Connection ``i`` would draw ``demand_kw[i]`` while its supply path is
   closed (its meter relay and, for households, its group's feeder relay). A meter with
   a power limit opens its own relay when the demand rises above the limit (a *trip*,
   counted) and recloses after ``Protection.meter_reclose_h``; the customer, having
   been tripped, runs only what fits under the limit (the meter's display shows it),
   so after the reclose the connection draws ``min(demand, limit)``. A meter with a
   daily energy budget opens when the budget is used up and stays open until the next
   budget period (:meth:`ContainerState.start_budget_period`).
2. **Inverter.** PV delivers ``min(available, PV limit, load + what the battery can
   absorb)``; the battery covers the rest. If it cannot (discharge limit, or SoC at its
   minimum) the inverter trips on overload: every load is dark and PV only charges,
   until it restarts ``Protection.inverter_restart_h`` later.
3. **Battery.** The state of charge moves by ``−P·Δt/η_d`` discharging and
   ``+P·η_c·Δt`` charging, and never leaves its window but by rounding: a load that
   exceeds the battery's power or state of charge by less than a plan's solve tolerance
   (:data:`POWER_ROUNDING_KW`, :data:`SOC_ROUNDING_KWH`) is carried, not tripped.
4. **Accounting.** Every meter integrates the energy it delivered [Wh] (floats here; the
   device registers hold the integer part modulo 2**32).

**Prosumers** [002]. A connection with its own panels (``own_pv_kw``) serves its own load
behind its meter first; its meter imports only what the panels do not cover, and exports
the surplus while its supply path is closed. That export is *supply* at the connection,
never negative demand: the inverter takes it before the container's PV (a grid-tied roof
cannot be limited; the container's array can), and the part the village load and the
battery cannot absorb is curtailed by the grid-forming inverter (frequency shift), so only
delivered export is metered. While the inverter is dark no roof exports (anti-islanding).
The bulk meter counts the net flow into the village (import) and back (export).

Examples
--------
>>> state = ContainerState.new(soc_kwh=30.0, connections=2)
>>> limits = BatteryLimits(60.0, 6.0, 60.0, 20.0, 0.95, 0.95)
>>> flows = step(state, limits, StepInputs(
...     dt_h=1.0, pv_available_kw=5.0, pv_limit_kw=20.0, charge_limit_kw=20.0,
...     discharge_limit_kw=20.0, demand_kw=np.array([1.0, 2.0]),
...     closed=np.array([True, False])))
>>> flows.pv_kw, flows.battery_kw, round(state.soc_kwh, 3), state.meter_wh.tolist()
(5.0, -4.0, 33.8, [1000.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from microgrid.site import Battery

__all__ = [
    "POWER_ROUNDING_KW",
    "SOC_ROUNDING_KWH",
    "BatteryLimits",
    "ContainerState",
    "Flows",
    "Protection",
    "StepInputs",
    "meter_flows_kw",
    "step",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def meter_flows_kw(demand_kw: ArrayLike, own_pv_kw: ArrayLike) -> tuple[Any, Any]:
    """What a prosumer's meter imports and exports [kW], from its load and its own PV.

    Its panels serve its own load first; the rest of the load is imported and the rest of
    the PV exported. Dispatch takes the import as demand and the export as supply, never
    negative demand.

    Parameters
    ----------
    demand_kw, own_pv_kw : array_like
        Mean power per period [kW] (numpy arrays or aligned pandas objects).

    Returns
    -------
    (imported, exported) : same type as the inputs, each ≥ 0 [kW]

    Examples
    --------
    >>> meter_flows_kw(np.array([1.0, 0.5]), np.array([0.25, 2.0]))
    (array([0.75, 0.  ]), array([0. , 1.5]))
    """
    net = demand_kw - own_pv_kw  # type: ignore[operator]
    return np.clip(net, 0.0, None), np.clip(-net, 0.0, None)


_EPS_KW = 1e-9  # below any meter's resolution: a difference this small is rounding
_EPS_H = 1e-12  # a timer this close to expiry has expired (float sums of step lengths)

POWER_ROUNDING_KW = 1e-6
"""Load above the battery's power limit that is rounding, not an overload [kW].

A dispatch plan meets the battery's power rating only to HiGHS's primal feasibility
tolerance (1e-7 per row; measured 1.01e-7 kW above the rating on a plan that runs the
battery flat out). 1 mW is ten times that and a thousandth of a meter's 1 W resolution."""

SOC_ROUNDING_KWH = 2e-3
"""How far below its minimum the battery may run before it cuts off [kWh].

A plan meets the state-of-charge floor only to its tiers' solve tolerance: a priority
user, who is never limited, may be planned up to 1 Wh short over the horizon
(``dispatch.model.TIER_TOLERANCE_KWH``) while a household group stays on; the physics
then draws that 1 Wh from the battery, ≈ 1.05 Wh of state of charge at η 0.95
(measured 0.94 Wh below the floor), plus the solver's 1e-7 per row. With a hard floor the
whole period went dark for a shortfall no meter counts and no battery management
resolves (its cut-off is by cell voltage). 2 Wh covers a 1 Wh tolerance at any discharge
efficiency ≥ 0.5; it is granted once — the room below the floor does not refill — so no
energy comes from nowhere."""


@dataclass(frozen=True, slots=True)
class BatteryLimits:
    """The battery's physical limits.

    Attributes
    ----------
    capacity_kwh : float
        Usable capacity [kWh].
    soc_kwh_min, soc_kwh_max : float
        Window the battery management keeps it in [kWh].
    power_kw_max : float
        Charge and discharge rating [kW].
    charge_efficiency, discharge_efficiency : float
        One-way efficiencies [-].
    """

    capacity_kwh: float
    soc_kwh_min: float
    soc_kwh_max: float
    power_kw_max: float
    charge_efficiency: float
    discharge_efficiency: float

    @classmethod
    def of(cls, battery: Battery) -> BatteryLimits:
        """The limits of a site's battery."""
        return cls(
            battery.energy_capacity_kwh,
            battery.soc_kwh_min,
            battery.soc_kwh_max,
            battery.power_kw_max,
            battery.charge_efficiency,
            battery.discharge_efficiency,
        )


@dataclass(frozen=True, slots=True)
class Protection:
    """Protection timers of the devices.

    Attributes
    ----------
    meter_reclose_h : float
        A meter that tripped on its power limit recloses after this long [h]; 60 s is
        the default of common prepaid meters.
    inverter_restart_h : float
        A battery inverter that tripped on overload restarts after this long [h];
        5 min is typical of off-grid inverters' automatic restart.
    """

    meter_reclose_h: float = 60.0 / 3600.0
    inverter_restart_h: float = 5.0 / 60.0

    def __post_init__(self) -> None:
        for name in ("meter_reclose_h", "inverter_restart_h"):
            if not getattr(self, name) >= 0:
                msg = f"{name} must be ≥ 0 h, got {getattr(self, name)}"
                raise ValueError(msg)


@dataclass(slots=True)
class ContainerState:
    """What the physics integrates (mutable).

    Attributes
    ----------
    soc_kwh : float
        Battery state of charge [kWh].
    meter_wh : numpy.ndarray
        Cumulative energy delivered per connection [Wh].
    pv_wh, battery_discharge_wh, battery_charge_wh, bulk_wh : float
        Cumulative PV output, battery AC output and input, and energy into the village
        network [Wh].
    export_wh : numpy.ndarray
        Cumulative energy each connection's own panels delivered into the grid [Wh].
    bulk_export_wh : float
        Cumulative energy from the village network back into the container (prosumers'
        export beyond the village load) [Wh].
    tripped_h : float
        Cumulative time the inverter was dark after an overload [h].
    inverter_dark_h : float
        Time until the tripped inverter restarts [h]; 0 when running.
    inverter_trips : int
        Overload trips since the start: the load exceeded what PV and the battery's
        power limits could carry while the battery still held energy.
    low_battery_trips : int
        Low-battery cut-offs since the start: the battery reached its minimum state of
        charge with load PV could not carry (the inverter shuts down the same way).
    dark_low_battery : bool
        Whether the last trip was a low-battery cut-off (what the inverter reports).
    meter_open_h : numpy.ndarray
        Per connection, time until a meter that tripped on its limit recloses [h].
    over_limit : numpy.ndarray of bool
        Per connection, whether its demand was above its limit in the last step (a trip
        fires when it rises above, not again while it stays above).
    meter_trips : numpy.ndarray of int
        Limit trips per connection since the start.
    budget_used_wh : numpy.ndarray
        Energy per connection since the budget period began [Wh].
    budget_exhausted : numpy.ndarray of bool
        Per connection, whether its budget ran out this budget period (relay open).
    budget_exhaustions : numpy.ndarray of int
        Exhausted budgets per connection since the start.
    """

    soc_kwh: float
    meter_wh: FloatArray
    pv_wh: float = 0.0
    battery_discharge_wh: float = 0.0
    battery_charge_wh: float = 0.0
    bulk_wh: float = 0.0
    tripped_h: float = 0.0
    inverter_dark_h: float = 0.0
    inverter_trips: int = 0
    low_battery_trips: int = 0
    dark_low_battery: bool = False
    meter_open_h: FloatArray = field(default_factory=lambda: np.zeros(0))
    over_limit: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    meter_trips: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    budget_used_wh: FloatArray = field(default_factory=lambda: np.zeros(0))
    budget_exhausted: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    budget_exhaustions: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    export_wh: FloatArray = field(default_factory=lambda: np.zeros(0))
    bulk_export_wh: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.meter_wh)
        for name, dtype in (
            ("export_wh", np.float64),
            ("meter_open_h", np.float64),
            ("over_limit", np.bool_),
            ("meter_trips", np.int64),
            ("budget_used_wh", np.float64),
            ("budget_exhausted", np.bool_),
            ("budget_exhaustions", np.int64),
        ):
            if len(getattr(self, name)) != n:
                setattr(self, name, np.zeros(n, dtype=dtype))

    @classmethod
    def new(cls, soc_kwh: float, connections: int) -> ContainerState:
        """A container at rest: ``connections`` meters at zero, inverter running."""
        return cls(soc_kwh=soc_kwh, meter_wh=np.zeros(connections))

    def start_budget_period(self) -> None:
        """A new budget period (a new local day): every budget is full again."""
        self.budget_used_wh[:] = 0.0
        self.budget_exhausted[:] = False


@dataclass(frozen=True, slots=True)
class StepInputs:
    """Inputs held constant over one step.

    Attributes
    ----------
    dt_h : float
        Step length [h].
    pv_available_kw : float
        What the array could deliver [kW].
    pv_limit_kw : float
        The PV inverter's active power limit [kW].
    charge_limit_kw, discharge_limit_kw : float
        The battery inverter's limits [kW], ≥ 0.
    demand_kw : numpy.ndarray
        Power each connection would draw [kW].
    closed : numpy.ndarray of bool
        Whether each connection's supply path is closed (its own relay as commanded).
    power_limit_kw : numpy.ndarray, optional
        Each meter's power limit [kW]; ``inf`` = none. None: no limits.
    energy_budget_wh : numpy.ndarray, optional
        Each meter's energy budget for the budget period [Wh]; ``inf`` = none.
        None: no budgets.
    reclose_h : numpy.ndarray, optional
        Each meter's own reclose delay [h]; None: ``Protection.meter_reclose_h``.
    own_pv_kw : numpy.ndarray, optional
        AC power of each connection's own panels behind its meter [kW] (0: none);
        None: no prosumers. See the module notes.
    """

    dt_h: float
    pv_available_kw: float
    pv_limit_kw: float
    charge_limit_kw: float
    discharge_limit_kw: float
    demand_kw: FloatArray
    closed: BoolArray
    power_limit_kw: FloatArray | None = None
    energy_budget_wh: FloatArray | None = None
    reclose_h: FloatArray | None = None
    own_pv_kw: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class Flows:
    """Mean flows over a step [kW]; battery discharge positive (DESIGN.md §4).

    Attributes
    ----------
    pv_kw, battery_kw, load_kw : float
        Mean PV output, battery power and load over the step [kW].
    drawn_kw : numpy.ndarray
        Mean power each connection drew [kW].
    tripped : bool
        Whether the inverter was dark for any part of the step.
    inverter_trip : bool
        Whether the inverter tripped on overload in this step (an event).
    low_battery : bool
        Whether it shut down at the battery's minimum in this step (an event).
    meter_trips : numpy.ndarray of bool
        Connections whose meter tripped on its power limit in this step (events).
    budgets_exhausted : numpy.ndarray of bool
        Connections whose budget ran out in this step (events).
    exported_kw : numpy.ndarray
        Mean power each connection's own panels delivered into the grid [kW].
    """

    pv_kw: float
    battery_kw: float
    load_kw: float
    drawn_kw: FloatArray
    tripped: bool
    inverter_trip: bool = False
    low_battery: bool = False
    meter_trips: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    budgets_exhausted: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    exported_kw: FloatArray = field(default_factory=lambda: np.zeros(0))


def _battery_room(
    state: ContainerState,
    battery: BatteryLimits,
    inputs: StepInputs,
    dt: float,
    rounding: bool = False,
) -> tuple[float, float]:
    """How much the battery can absorb and deliver over ``dt`` [kW].

    With ``rounding``, the discharge room a load may use before the inverter trips:
    the limits plus :data:`POWER_ROUNDING_KW` and :data:`SOC_ROUNDING_KWH`.
    """
    charge = min(
        battery.power_kw_max,
        max(inputs.charge_limit_kw, 0.0),
        max(battery.soc_kwh_max - state.soc_kwh, 0.0) / (battery.charge_efficiency * dt),
    )
    power_slack, soc_slack = (POWER_ROUNDING_KW, SOC_ROUNDING_KWH) if rounding else (0.0, 0.0)
    discharge = min(
        battery.power_kw_max + power_slack,
        max(inputs.discharge_limit_kw, 0.0) + power_slack,
        max(state.soc_kwh - battery.soc_kwh_min + soc_slack, 0.0)
        * battery.discharge_efficiency
        / dt,
    )
    return charge, discharge


def _move_battery(
    state: ContainerState, battery: BatteryLimits, power_kw: float, dt: float
) -> None:
    """Integrate battery power (discharge positive) over ``dt``; keep SoC in its window."""
    if power_kw >= 0:
        state.soc_kwh -= power_kw * dt / battery.discharge_efficiency
        state.battery_discharge_wh += power_kw * dt * 1000.0
    else:
        state.soc_kwh -= power_kw * dt * battery.charge_efficiency
        state.battery_charge_wh -= power_kw * dt * 1000.0


def step(
    state: ContainerState,
    battery: BatteryLimits,
    inputs: StepInputs,
    protection: Protection | None = None,
) -> Flows:
    """Advance the container by one step (mutates ``state``; see the module notes)."""
    protection = protection or Protection()
    n = len(inputs.demand_kw)
    dt = inputs.dt_h
    if dt <= 0:
        none = np.zeros(n, dtype=bool)
        return Flows(0.0, 0.0, 0.0, np.zeros(n), tripped=False, meter_trips=none,
                     budgets_exhausted=none.copy(), exported_kw=np.zeros(n))  # fmt: skip
    demand = np.maximum(np.asarray(inputs.demand_kw, dtype=float), 0.0)
    # Prosumers: own panels serve their own load behind the meter; the rest is export.
    own_pv = (
        np.zeros(n)
        if inputs.own_pv_kw is None
        else np.maximum(np.asarray(inputs.own_pv_kw, dtype=float), 0.0)
    )
    demand, surplus = meter_flows_kw(demand, own_pv)
    limit = (
        np.full(n, np.inf)
        if inputs.power_limit_kw is None
        else np.asarray(inputs.power_limit_kw, dtype=float)
    )
    budget = (
        np.full(n, np.inf)
        if inputs.energy_budget_wh is None
        else np.asarray(inputs.energy_budget_wh, dtype=float)
    )

    # 1. Meters: limit trips (rising edge), reclose delay, budgets.
    closed = np.asarray(inputs.closed, dtype=bool) & ~state.budget_exhausted
    over = closed & (demand > limit + _EPS_KW)
    new_trips = over & ~state.over_limit & (state.meter_open_h <= 0.0)
    reclose = (
        np.full(n, protection.meter_reclose_h) if inputs.reclose_h is None else inputs.reclose_h
    )
    state.meter_open_h[new_trips] = reclose[new_trips]
    state.meter_trips += new_trips
    state.over_limit = over
    open_share = np.minimum(state.meter_open_h, dt) / dt
    open_share[open_share < _EPS_H / dt] = 0.0
    left = state.meter_open_h - dt
    state.meter_open_h = np.where(left < _EPS_H, 0.0, left)
    drawn = np.where(closed, np.minimum(demand, limit), 0.0) * (1.0 - open_share)
    offered = np.where(closed, surplus, 0.0) * (1.0 - open_share)  # export needs a closed path

    # 2. Inverter: dark until its restart, then the balance over the live part.
    dark_h = min(state.inverter_dark_h, dt)
    if dark_h < _EPS_H:
        dark_h = 0.0
    live_h = dt - dark_h
    state.inverter_dark_h = max(state.inverter_dark_h - dark_h, 0.0)
    if state.inverter_dark_h < _EPS_H:
        state.inverter_dark_h = 0.0
    inverter_trip = low_battery = False
    exhausted = np.zeros(n, dtype=bool)
    pv_max = max(min(inputs.pv_available_kw, inputs.pv_limit_kw), 0.0)
    pv_energy = battery_energy = load_energy = 0.0  # [kWh]
    delivered = np.zeros(n)  # [kWh]
    exported = np.zeros(n)  # [kWh]
    if live_h > 0:
        room = np.maximum(budget - state.budget_used_wh, 0.0) / 1000.0  # [kWh]
        exhausted = closed & (drawn * live_h >= room) & (drawn > 0) & np.isfinite(budget)
        live_draw = np.where(exhausted, room / live_h, drawn)
        load = float(live_draw.sum())
        charge_room, discharge_room = _battery_room(state, battery, inputs, live_h)
        offered_kw = float(offered.sum())
        export_kw = min(offered_kw, load + charge_room)  # roofs first; the rest curtailed
        pv = min(pv_max, load + charge_room - export_kw)
        battery_kw = load - pv - export_kw
        tolerated_kw = _battery_room(state, battery, inputs, live_h, rounding=True)[1]
        if battery_kw > tolerated_kw + _EPS_KW:
            # Overload: the inverter trips; the load would re-trip it at every restart
            # while it lasts, so the rest of the step is dark.
            # The cause, as the inverter reports it: the battery empty, or overload.
            soc_room_kw = (
                max(state.soc_kwh - battery.soc_kwh_min, 0.0)
                * battery.discharge_efficiency
                / live_h
            )
            low_battery = state.dark_low_battery = soc_room_kw <= discharge_room + _EPS_KW
            if low_battery:
                state.low_battery_trips += 1
            else:
                inverter_trip = True
                state.inverter_trips += 1
            state.inverter_dark_h = max(protection.inverter_restart_h - live_h, 0.0)
            dark_h, live_h = dt, 0.0
            exhausted[:] = False
        else:
            _move_battery(state, battery, battery_kw, live_h)
            delivered = live_draw * live_h
            if offered_kw > 0:
                exported = offered * (export_kw / offered_kw) * live_h
            pv_energy, battery_energy, load_energy = pv * live_h, battery_kw * live_h, load * live_h
    if dark_h > 0:
        # Dark: no load; PV (DC side) still charges the battery.
        charge_room, _ = _battery_room(state, battery, inputs, dark_h)
        pv = min(pv_max, charge_room)
        _move_battery(state, battery, -pv, dark_h)
        pv_energy += pv * dark_h
        battery_energy -= pv * dark_h
        state.tripped_h += dark_h
    state.budget_used_wh += delivered * 1000.0
    state.budget_exhausted |= exhausted
    state.budget_exhaustions += exhausted
    state.meter_wh += delivered * 1000.0
    state.pv_wh += pv_energy * 1000.0
    state.export_wh += exported * 1000.0
    into_village = load_energy - float(exported.sum())  # one direction per step
    state.bulk_wh += max(into_village, 0.0) * 1000.0
    state.bulk_export_wh += max(-into_village, 0.0) * 1000.0
    return Flows(
        pv_kw=pv_energy / dt,
        battery_kw=battery_energy / dt,
        load_kw=load_energy / dt,
        drawn_kw=delivered / dt,
        tripped=dark_h > 0,
        inverter_trip=inverter_trip,
        low_battery=low_battery,
        meter_trips=new_trips,
        budgets_exhausted=exhausted,
        exported_kw=exported / dt,
    )
