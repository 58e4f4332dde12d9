"""Physics of the simulated container: pure power balance, battery and energy meters.

The container's battery inverter forms the grid: it balances load against PV within its
charge and discharge limits. One :func:`step` integrates a short interval with fixed
inputs:

1. connection ``i`` draws ``demand_kw[i]`` while its supply path is closed (its meter
   relay and, for households, its group's feeder relay), else nothing;
2. PV delivers ``min(available, inverter limit, load + what the battery can absorb)``;
3. the battery covers the rest. If it cannot (discharge limit, or SoC at its minimum)
   the inverter trips for the interval: every load is dark, PV only charges;
4. state of charge moves by ``−P·Δt/η_d`` discharging and ``+P·η_c·Δt`` charging;
5. every meter integrates the energy it delivered [Wh] (floats here; the device
   registers hold the integer part modulo 2**32).

Examples
--------
>>> import numpy as np
>>> state = ContainerState(soc_kwh=30.0, meter_wh=np.zeros(2))
>>> limits = BatteryLimits(60.0, 6.0, 60.0, 20.0, 0.95, 0.95)
>>> flows = step(state, limits, StepInputs(
...     dt_h=1.0, pv_available_kw=5.0, pv_limit_kw=20.0, charge_limit_kw=20.0,
...     discharge_limit_kw=20.0, demand_kw=np.array([1.0, 2.0]),
...     closed=np.array([True, False])))
>>> flows.pv_kw, flows.battery_kw, round(state.soc_kwh, 3), state.meter_wh.tolist()
(5.0, -4.0, 33.8, [1000.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BatteryLimits", "ContainerState", "Flows", "StepInputs", "step"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
    tripped_h : float
        Cumulative time the inverter was tripped [h].
    """

    soc_kwh: float
    meter_wh: FloatArray
    pv_wh: float = 0.0
    battery_discharge_wh: float = 0.0
    battery_charge_wh: float = 0.0
    bulk_wh: float = 0.0
    tripped_h: float = 0.0


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
        Whether each connection's supply path is closed.
    """

    dt_h: float
    pv_available_kw: float
    pv_limit_kw: float
    charge_limit_kw: float
    discharge_limit_kw: float
    demand_kw: FloatArray
    closed: BoolArray


@dataclass(frozen=True, slots=True)
class Flows:
    """Mean flows over a step [kW]; battery discharge positive (DESIGN.md §4)."""

    pv_kw: float
    battery_kw: float
    load_kw: float
    tripped: bool


def step(state: ContainerState, battery: BatteryLimits, inputs: StepInputs) -> Flows:
    """Advance the container by one step (mutates ``state``; see the module notes)."""
    dt = inputs.dt_h
    if dt <= 0:
        return Flows(0.0, 0.0, 0.0, tripped=False)
    drawn = np.where(inputs.closed, inputs.demand_kw, 0.0)
    load = float(drawn.sum())
    charge_room = min(
        battery.power_kw_max,
        inputs.charge_limit_kw,
        max(battery.soc_kwh_max - state.soc_kwh, 0.0) / (battery.charge_efficiency * dt),
    )
    discharge_room = min(
        battery.power_kw_max,
        inputs.discharge_limit_kw,
        max(state.soc_kwh - battery.soc_kwh_min, 0.0) * battery.discharge_efficiency / dt,
    )
    pv_max = max(min(inputs.pv_available_kw, inputs.pv_limit_kw), 0.0)
    pv = min(pv_max, load + charge_room)
    battery_kw = load - pv
    tripped = battery_kw > discharge_room + 1e-9
    if tripped:
        load = 0.0
        drawn = np.zeros_like(drawn)
        pv = min(pv_max, charge_room)
        battery_kw = -pv
        state.tripped_h += dt
    if battery_kw >= 0:
        state.soc_kwh -= battery_kw * dt / battery.discharge_efficiency
        state.battery_discharge_wh += battery_kw * dt * 1000.0
    else:
        state.soc_kwh -= battery_kw * dt * battery.charge_efficiency
        state.battery_charge_wh -= battery_kw * dt * 1000.0
    state.meter_wh += drawn * (dt * 1000.0)
    state.pv_wh += pv * dt * 1000.0
    state.bulk_wh += load * dt * 1000.0
    return Flows(pv_kw=pv, battery_kw=battery_kw, load_kw=load, tripped=tripped)
