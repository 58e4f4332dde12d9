"""The simulated container: real Modbus TCP servers (pymodbus) driven by physics.

One pymodbus server per gateway of the site exposes every device of that gateway with
the same register maps the controller uses (SunSpec inverter and storage, relay board,
meters). Device memory lives here; pymodbus' ``SimDevice`` ``action=`` hook brings it
in on every request: the physics (:mod:`microgrid.physics`, the one
physics the planners use too) is advanced to the
clock's now, measured registers are rendered, writes are validated (read-only or
unknown address → exception 2, out-of-range value → exception 3) and take effect.

Devices honour their own fail-safes: the PV inverter drops its limit after
``WMaxLimPct_RvrtTms``, the battery inverter drops its rate limits after
``InOutWRte_RvrtTms``, the relay board takes its safe pattern when no request reached it
for ``watchdog_timeout_s``. Fault hooks (:class:`Faults`) make devices slow, answer with
exception codes or garbage, forget their setpoints, drop connections or take a whole
gateway down.

Time comes from a clock: :class:`AcceleratedClock` (``speed`` × real time, for the CLI
and benchmarks) or :class:`ManualClock` (tests step it). Nothing here is imported by
the controller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from controllers.codec import raw_from_words, words_from_raw
from controllers.registers import Point, PointType, RegisterMap, load_register_map
from controllers.rtu import RtuBus
from forecasts.demand import demand_kw
from forecasts.pv import prosumer_pv_ac_power_kw, pv_ac_power_kw
from forecasts.weather import synthetic_weather
from microgrid.physics import BatteryLimits, ContainerState, Protection, StepInputs, step
from microgrid.site import ConnectionKind, Site
from microgrid.timegrid import TimeGrid

__all__ = [
    "AcceleratedClock",
    "Clock",
    "Faults",
    "HourFixture",
    "ManualClock",
    "SimulatedContainer",
    "SimulatorSettings",
]

log = logging.getLogger(__name__)

# Physics steps shorter than this are skipped (the next request catches up): 0.5 s of
# simulated time is far below any timer (whole seconds) or load change (15 min).
_MIN_STEP = dt.timedelta(seconds=0.5)
# A meter's factory reclose delay after a power-limit trip [s] (common prepaid meters).
_METER_RECLOSE_S = 60
# An energy register holds the integer part of the energy it counted. The physics sums
# float steps: an hour of exactly 3 kW in 60 one-minute steps can land 1e-12 Wh below
# 3000; a meter counting pulses would show 3000. Far below one Wh, far above float noise.
_REGISTER_EPS_WH = 1e-6


def _register_wh(energy_wh: float) -> int:
    """The integer register of a counted energy [Wh], modulo 2**32."""
    return int(energy_wh + _REGISTER_EPS_WH) % (1 << 32)


class Clock(Protocol):
    """Where the time comes from (timezone-aware UTC)."""

    def now(self) -> dt.datetime:
        """The current time."""
        ...


class ManualClock:
    """A clock that moves only when told to (tests).

    Examples
    --------
    >>> clock = ManualClock(dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    >>> clock.advance(90)
    >>> clock.now().isoformat()
    '2026-03-20T00:01:30+00:00'
    """

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            msg = "ManualClock needs a timezone-aware start"
            raise ValueError(msg)
        self._now = start

    def now(self) -> dt.datetime:
        """The current time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` [s]."""
        self._now += dt.timedelta(seconds=seconds)


class AcceleratedClock:
    """Simulated time: ``start + (time.time() − epoch_s) × speed``.

    Anchored to Unix time, so separate processes given the same anchor (a restarted
    service, a simulator in another process) agree on the simulated time, and a
    restart continues the same day.

    Parameters
    ----------
    start : datetime.datetime
        Simulated time at the anchor; timezone-aware.
    speed : float
        Simulated seconds per real second (> 0).
    epoch_s : float, optional
        The anchor, Unix time [s]; now if omitted.

    Examples
    --------
    >>> clock = AcceleratedClock(dt.datetime(2026, 8, 1, tzinfo=dt.UTC), 60.0)
    >>> clock.now() >= dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
    True
    """

    def __init__(self, start: dt.datetime, speed: float = 1.0, epoch_s: float | None = None):
        if start.tzinfo is None:
            msg = "AcceleratedClock needs a timezone-aware start"
            raise ValueError(msg)
        if speed <= 0:
            msg = f"speed must be positive, got {speed}"
            raise ValueError(msg)
        self.start = start
        self.speed = speed
        self.epoch_s = time.time() if epoch_s is None else epoch_s

    def now(self) -> dt.datetime:
        """The current simulated time."""
        return self.start + dt.timedelta(seconds=(time.time() - self.epoch_s) * self.speed)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward by ``seconds`` [s] (seed 002's "one hour ahead")."""
        if seconds < 0:
            msg = f"a clock only moves forward; got {seconds} s"
            raise ValueError(msg)
        self.start += dt.timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Physics settings of the simulated container.

    Attributes
    ----------
    seed : int
        Seed of the synthetic weather and of the PV noise.
    pv_noise : float
        Standard deviation of the multiplicative PV noise (AR(1), 5-min samples) [-].
    soc_fraction : float
        Initial state of charge [-].
    max_step_s : float
        Longest physics step [s]; timers are honoured exactly regardless.
    rtu_buses : mapping of str to RtuBus
        Gateways whose devices sit on an RS-485 bus: each request holds that bus for
        its wire time in real seconds (:mod:`controllers.rtu`), one at a time. Gateways
        not named answer as fast as loopback TCP.
    inverter_restart_s : float
        The battery inverter restarts this long after an overload trip [s].
    fixtures : mapping of datetime to HourFixture
        Hours (UTC start) whose weather and demand are fixed instead of simulated: a
        test's worked example (seed 002's hour) played by the physics.
    """

    seed: int = 0
    pv_noise: float = 0.05
    soc_fraction: float = 0.5
    max_step_s: float = 60.0
    rtu_buses: Mapping[str, RtuBus] = field(default_factory=dict)
    inverter_restart_s: float = 300.0
    fixtures: Mapping[dt.datetime, HourFixture] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HourFixture:
    """Fixed powers for one hour of the simulated container; the physics still runs.

    Attributes
    ----------
    pv_kw : float
        What the container's array could deliver [kW] (its inverter's limit applies).
    demand_kw : mapping of str to float
        Each connection's own load [kW]; connections not named draw nothing.
    own_pv_kw : mapping of str to float
        Each prosumer's own panels [kW]; connections not named have none this hour.
    """

    pv_kw: float = 0.0
    demand_kw: Mapping[str, float] = field(default_factory=dict)
    own_pv_kw: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Faults:
    """Fault injection, keyed by ``(gateway, unit)``.

    Attributes
    ----------
    delay_s : dict
        Answer this late [real s] (a delay longer than the client timeout is a timeout).
    exception : dict
        Answer every request with this Modbus exception code.
    garbage : set
        Answer reads with implausible values in every measured register.
    """

    delay_s: dict[tuple[str, int], float] = field(default_factory=dict)
    exception: dict[tuple[str, int], int] = field(default_factory=dict)
    garbage: set[tuple[str, int]] = field(default_factory=set)

    def clear(self) -> None:
        """Remove every fault."""
        self.delay_s.clear()
        self.exception.clear()
        self.garbage.clear()


# --- device memories -----------------------------------------------------------------
class _Device:
    """Registers and coils of one simulated device."""

    def __init__(self, gateway: str, unit: int, register_map: RegisterMap, coils: int) -> None:
        self.gateway = gateway
        self.unit = unit
        self.map = register_map
        holding = register_map.holding_points()
        self.base = holding[0].address
        self.words = [0] * (holding[-1].end - self.base)
        self.coils = [False] * max(16, -(-coils // 16) * 16)
        self.coil_count = coils
        self.last_request: dt.datetime | None = None
        self._by_address: dict[int, Point] = {}
        for point in holding:
            for a in range(point.address, point.end):
                self._by_address[a] = point
            if point.static_value is not None:
                self._set_raw(point, point.static_value)

    def _set_raw(self, point: Point, raw: int) -> None:
        words = words_from_raw(point, raw)
        offset = point.address - self.base
        self.words[offset : offset + len(words)] = words

    def raw(self, name: str) -> int:
        point = self.map.point(name)
        offset = point.address - self.base
        return raw_from_words(point, self.words[offset : offset + point.size])

    def set(self, name: str, value: float) -> None:
        """Set an engineering value (scale factor taken from memory)."""
        point = self.map.point(name)
        sf = self.raw(point.scale_factor) if point.scale_factor else None
        factor = point.scale * (10.0**sf if sf is not None else 1.0)
        bits = 16 * point.type.words
        raw = round(value / factor)
        if point.type is PointType.ACC32 or point.type is PointType.UINT32:
            raw %= 1 << bits
        self._set_raw(point, raw)

    def get(self, name: str) -> float:
        point = self.map.point(name)
        sf = self.raw(point.scale_factor) if point.scale_factor else None
        return self.raw(name) * point.scale * (10.0**sf if sf is not None else 1.0)

    def set_string(self, name: str, text: str) -> None:
        point = self.map.point(name)
        data = text.encode()[: point.size * 2].ljust(point.size * 2, b"\0")
        offset = point.address - self.base
        self.words[offset : offset + point.size] = [
            (data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)
        ]

    def check_write(self, address: int, values: Sequence[int]) -> ExcCodes | None:
        """Validate a register write: writable points only, values within range."""
        names: list[str] = []
        for a in range(address, address + len(values)):
            point = self._by_address.get(a)
            if point is None or point.access != "rw":
                return ExcCodes.ILLEGAL_ADDRESS
            if point.name not in names:
                names.append(point.name)
        for name in names:
            point = self.map.point(name)
            offset = point.address - address
            if offset < 0 or offset + point.size > len(values):
                return ExcCodes.ILLEGAL_ADDRESS  # a partial write of a multi-word point
            if point.value_range is not None:
                sf = self.raw(point.scale_factor) if point.scale_factor else None
                raw = raw_from_words(point, values[offset : offset + point.size])
                value = raw * point.scale * (10.0**sf if sf is not None else 1.0)
                if not point.value_range[0] <= value <= point.value_range[1]:
                    return ExcCodes.ILLEGAL_VALUE
        return None

    def write(self, address: int, values: Sequence[int], now: dt.datetime) -> None:
        offset = address - self.base
        self.words[offset : offset + len(values)] = list(values)
        self.written(address, len(values), now)

    def written(self, address: int, count: int, now: dt.datetime) -> None:
        """Hook: registers were written."""

    def write_coils(
        self, address: int, values: Sequence[bool], now: dt.datetime
    ) -> ExcCodes | None:
        if address + len(values) > self.coil_count:
            return ExcCodes.ILLEGAL_ADDRESS
        self.coils[address : address + len(values)] = [bool(v) for v in values]
        return None

    def render(self, sim: SimulatedContainer) -> None:
        """Hook: update measured registers from the physics."""

    def reset(self) -> None:
        """Hook: power cycle; setpoints are forgotten."""

    def garbage(self, address: int, count: int, registers: list[int], start: int) -> None:
        for a in range(address, address + count):
            point = self._by_address.get(a)
            if point is not None and (
                point.value_range is not None or point.type is PointType.SUNSSF
            ):
                registers[a - start] = 0x7FFF


class _Inverter(_Device):
    def __init__(
        self, gateway: str, unit: int, register_map: RegisterMap, rating_kw: float
    ) -> None:
        super().__init__(gateway, unit, register_map, coils=0)
        self.rating_kw = rating_kw
        self.limit_written_at: dt.datetime | None = None
        for sf in (
            "103.A_SF",
            "103.V_SF",
            "103.W_SF",
            "103.Hz_SF",
            "103.VA_SF",
            "103.VAr_SF",
            "103.WH_SF",
            "120.WRtg_SF",
            "120.VARtg_SF",
        ):
            self._set_raw(self.map.point(sf), 0)
        self._set_raw(self.map.point("103.PF_SF"), -2)
        self.set_string("1.Mn", "LastWatt")
        self.set_string("1.Md", "Simulated inverter")
        self.set_string("1.SN", f"SIM-{gateway}-{unit}")
        self.set_string("1.Vr", "1.0")
        self._set_raw(self.map.point("1.DA"), unit)
        self.set("120.WRtg", rating_kw * 1000)
        self.set("120.VARtg", rating_kw * 1000)
        self._set_raw(self.map.point("120.DERTyp"), 4)
        self._set_raw(self.map.point("103.St"), 4)  # MPPT
        self.set("103.Hz", 50)

    def reset(self) -> None:
        self.limit_written_at = None


class _PvInverter(_Inverter):
    def __init__(
        self, gateway: str, unit: int, register_map: RegisterMap, rating_kw: float
    ) -> None:
        super().__init__(gateway, unit, register_map, rating_kw)
        self._set_raw(self.map.point("123.WMaxLimPct_SF"), -1)
        self._set_raw(self.map.point("123.OutPFSet_SF"), -3)
        self._set_raw(self.map.point("123.VArPct_SF"), 0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.set("123.WMaxLimPct", 100.0)
        self._set_raw(self.map.point("123.WMaxLim_Ena"), 0)
        self._set_raw(self.map.point("123.WMaxLimPct_RvrtTms"), 0)

    def written(self, address: int, count: int, now: dt.datetime) -> None:
        self.limit_written_at = now

    def revert_at(self) -> dt.datetime | None:
        revert = self.raw("123.WMaxLimPct_RvrtTms")
        if self.raw("123.WMaxLim_Ena") == 1 and revert > 0 and self.limit_written_at is not None:
            return self.limit_written_at + dt.timedelta(seconds=revert)
        return None

    def revert(self) -> None:
        self._set_raw(self.map.point("123.WMaxLim_Ena"), 0)
        self.limit_written_at = None

    def limit_kw(self) -> float:
        if self.raw("123.WMaxLim_Ena") == 1:
            return self.rating_kw * self.get("123.WMaxLimPct") / 100.0
        return self.rating_kw

    def render(self, sim: SimulatedContainer) -> None:
        self.set("103.W", sim.flows_pv_kw * 1000)
        self._set_raw(self.map.point("103.WH"), _register_wh(sim.state.pv_wh))


class _Storage(_Inverter):
    def __init__(
        self, gateway: str, unit: int, register_map: RegisterMap, battery: BatteryLimits
    ) -> None:
        super().__init__(gateway, unit, register_map, battery.power_kw_max)
        self.battery = battery
        for sf in (
            "124.WChaMax_SF",
            "124.WChaDisChaGra_SF",
            "124.VAChaMax_SF",
            "124.MinRsvPct_SF",
            "124.StorAval_SF",
            "124.InBatV_SF",
        ):
            self._set_raw(self.map.point(sf), 0)
        self._set_raw(self.map.point("124.ChaState_SF"), -1)
        self._set_raw(self.map.point("124.InOutWRte_SF"), -1)
        self._set_raw(
            self.map.point("120.WHRtg_SF"), 1
        )  # 60 000 Wh does not fit at SF 0 with margin
        self._set_raw(self.map.point("120.DERTyp"), 82)
        self.set("120.WHRtg", battery.capacity_kwh * 1000)
        self.set("124.WChaMax", battery.power_kw_max * 1000)
        self.set("124.MinRsvPct", 100 * battery.soc_kwh_min / battery.capacity_kwh)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._set_raw(self.map.point("124.StorCtl_Mod"), 0)
        self.set("124.InWRte", 100.0)
        self.set("124.OutWRte", 100.0)
        self._set_raw(self.map.point("124.InOutWRte_RvrtTms"), 0)

    def written(self, address: int, count: int, now: dt.datetime) -> None:
        self.limit_written_at = now

    def revert_at(self) -> dt.datetime | None:
        revert = self.raw("124.InOutWRte_RvrtTms")
        if self.raw("124.StorCtl_Mod") != 0 and revert > 0 and self.limit_written_at is not None:
            return self.limit_written_at + dt.timedelta(seconds=revert)
        return None

    def revert(self) -> None:
        self._set_raw(self.map.point("124.StorCtl_Mod"), 0)
        self.limit_written_at = None

    def limits_kw(self) -> tuple[float, float]:
        mode = self.raw("124.StorCtl_Mod")
        rating = self.battery.power_kw_max
        charge = rating * max(self.get("124.InWRte"), 0.0) / 100 if mode & 1 else rating
        discharge = rating * max(self.get("124.OutWRte"), 0.0) / 100 if mode & 2 else rating
        return charge, discharge

    def render(self, sim: SimulatedContainer) -> None:
        self.set("103.W", sim.flows_battery_kw * 1000)
        self._set_raw(self.map.point("103.WH"), _register_wh(sim.state.battery_discharge_wh))
        soc = sim.state.soc_kwh / self.battery.capacity_kwh
        self.set("124.ChaState", 100 * min(max(soc, 0.0), 1.0))
        flow = sim.flows_battery_kw
        dark = sim.state.inverter_dark_h > 0
        # SunSpec charge status 2 EMPTY after a low-battery cut-off, else by the flow.
        status = 3 if flow > 0.01 else 4 if flow < -0.01 else 6
        self._set_raw(
            self.map.point("124.ChaSt"), 2 if dark and sim.state.dark_low_battery else status
        )
        # SunSpec operating state: 7 FAULT while tripped (dark), else 4 MPPT (running).
        self._set_raw(self.map.point("103.St"), 7 if dark else 4)


class _Meter(_Device):
    """A prepaid meter: energy registers, a relay, and its own limit and budget."""

    def __init__(
        self, gateway: str, unit: int, register_map: RegisterMap, index: int | None
    ) -> None:
        super().__init__(gateway, unit, register_map, coils=1)
        self.index = index  # connection index; None = the container's bulk meter
        self.coils[0] = True
        self.reset()

    def reset(self) -> None:
        # Power-on: no limit, no budget, the factory reclose delay.
        self._set_raw(self.map.point("power_limit_w"), 0)
        self._set_raw(self.map.point("energy_budget_wh"), 0)
        self.set("reclose_delay_s", _METER_RECLOSE_S)

    def power_limit_kw(self) -> float:
        """The enforced power limit [kW]; inf when none (0 in the register)."""
        limit = self.raw("power_limit_w")
        return limit / 1000.0 if limit > 0 else float("inf")

    def energy_budget_wh(self) -> float:
        """The budget per period [Wh]; inf when none (0 in the register)."""
        budget = self.raw("energy_budget_wh")
        return float(budget) if budget > 0 else float("inf")

    def render(self, sim: SimulatedContainer) -> None:
        if self.index is None:
            # The net flow into the village; prosumers' surplus flows back (export).
            energy, power = sim.state.bulk_wh, sim.flows_load_kw - float(sim.exported_kw.sum())
            self._set_raw(self.map.point("export_wh"), _register_wh(sim.state.bulk_export_wh))
        else:
            energy = float(sim.state.meter_wh[self.index])
            power = float(sim.drawn_kw[self.index] - sim.exported_kw[self.index])
            exported = _register_wh(float(sim.state.export_wh[self.index]))
            self._set_raw(self.map.point("export_wh"), exported)
            i = self.index
            budget = self.energy_budget_wh()
            remaining = (
                (1 << 32) - 1
                if budget == float("inf")
                else max(int(budget - sim.state.budget_used_wh[i]), 0)
            )
            status = (
                2 if sim.state.budget_exhausted[i] else 1 if sim.state.meter_open_h[i] > 0 else 0
            )
            self._set_raw(self.map.point("budget_remaining_wh"), remaining)
            self._set_raw(self.map.point("trip_status"), status)
            self._set_raw(self.map.point("trip_count"), int(sim.state.meter_trips[i]) % (1 << 16))
            self._set_raw(
                self.map.point("budget_exhausted_count"),
                int(sim.state.budget_exhaustions[i]) % (1 << 16),
            )
        self._set_raw(self.map.point("import_wh"), _register_wh(energy))
        self._set_raw(self.map.point("power_w"), round(power * 1000))
        self._set_raw(self.map.point("relay_state"), int(self.coils[0]))


class _RelayBoard(_Device):
    def __init__(self, gateway: str, unit: int, register_map: RegisterMap) -> None:
        super().__init__(gateway, unit, register_map, coils=32)
        self.reset()

    def reset(self) -> None:
        self.coils[:] = [False] * len(self.coils)  # power-on: every channel open
        for name in ("watchdog_timeout_s", "safe_state_low", "safe_state_high"):
            self._set_raw(self.map.point(name), 0)

    def watchdog_at(self) -> dt.datetime | None:
        timeout = self.raw("watchdog_timeout_s")
        if timeout > 0 and self.last_request is not None:
            return self.last_request + dt.timedelta(seconds=timeout)
        return None

    def trip_watchdog(self) -> None:
        pattern = self.raw("safe_state_low") | (self.raw("safe_state_high") << 16)
        self.coils[:32] = [bool(pattern >> i & 1) for i in range(32)]
        self.last_request = None


# --- the container -------------------------------------------------------------------
class SimulatedContainer:
    """Every device of a site behind real Modbus TCP servers, driven by physics.

    Parameters
    ----------
    site : Site
        The site; its gateways say where to listen.
    clock : Clock
        Simulated time.
    settings : SimulatorSettings, optional
        Physics settings.

    Examples
    --------
    In a test (``async``)::

        sim = SimulatedContainer(site, ManualClock(start))
        await sim.start()
        ...
        await sim.stop()
    """

    def __init__(self, site: Site, clock: Clock, settings: SimulatorSettings | None = None) -> None:
        self.site = site
        self.clock = clock
        self.settings = settings or SimulatorSettings()
        self.faults = Faults()
        self.protection = Protection(inverter_restart_h=self.settings.inverter_restart_s / 3600)
        b = site.battery
        self.battery = BatteryLimits.of(b)
        n = len(site.connections)
        self.state = ContainerState.new(self.settings.soc_fraction * b.energy_capacity_kwh, n)
        self.flows_pv_kw = 0.0
        self.flows_battery_kw = 0.0
        self.flows_load_kw = 0.0
        self.drawn_kw = np.zeros(n)
        self.exported_kw = np.zeros(n)
        self.time = clock.now()
        self.devices: dict[tuple[str, int], _Device] = {}
        self.servers: dict[str, ModbusTcpServer] = {}
        self._days: dict[pd.Timestamp, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._bus_locks = {name: asyncio.Lock() for name in self.settings.rtu_buses}
        self._build_devices()
        self._meter_relay = [
            self.devices[(c.meter.gateway, c.meter.unit_id)] for c in site.connections
        ]
        groups = {g.id: g.relay for g in site.relay_groups}
        self._group_relay: list[tuple[_Device, int] | None] = [
            (
                self.devices[(groups[c.relay_group].gateway, groups[c.relay_group].unit_id)],
                groups[c.relay_group].coil,
            )
            if c.relay_group is not None
            else None
            for c in site.connections
        ]
        self._meter_coil = [c.meter.relay_coil for c in site.connections]
        self._meters = [d for d in self._meter_relay if isinstance(d, _Meter)]
        assert len(self._meters) == len(site.connections)  # every connection has its meter

    def _build_devices(self) -> None:
        site = self.site
        self.pv = _PvInverter(
            site.pv_inverter.gateway,
            site.pv_inverter.unit_id,
            load_register_map(site.pv_inverter.register_map),
            site.pv.inverter_ac_capacity_kw,
        )
        self.storage = _Storage(
            site.battery_inverter.gateway,
            site.battery_inverter.unit_id,
            load_register_map(site.battery_inverter.register_map),
            self.battery,
        )
        devices: list[_Device] = [self.pv, self.storage]
        if site.bulk_meter is not None:
            devices.append(
                _Meter(
                    site.bulk_meter.gateway,
                    site.bulk_meter.unit_id,
                    load_register_map(site.bulk_meter.register_map),
                    None,
                )
            )
        for i, c in enumerate(site.connections):
            devices.append(
                _Meter(c.meter.gateway, c.meter.unit_id, load_register_map(c.meter.register_map), i)
            )
        boards = {(g.relay.gateway, g.relay.unit_id) for g in site.relay_groups}
        for gateway, unit in sorted(boards):
            devices.append(_RelayBoard(gateway, unit, load_register_map("relay_board")))
        self.devices = {(d.gateway, d.unit): d for d in devices}
        self._timed = [d for d in devices if isinstance(d, _PvInverter | _Storage | _RelayBoard)]

    # --- physics ---------------------------------------------------------------------
    def _day(self, when: pd.Timestamp) -> tuple[pd.Timestamp, np.ndarray, np.ndarray, np.ndarray]:
        """PV, demand and the prosumers' own PV of a local day.

        PV available in 5-min samples, demand per 15-min period × connection, and each
        connection's own PV in 5-min samples × connections (0 for non-prosumers).
        """
        tz = self.site.location.timezone
        day = when.tz_convert(tz).normalize()
        if day not in self._days:
            grid = TimeGrid(start=day, periods=96)
            demand = demand_kw(self.site, grid).to_numpy(dtype=float)
            times = pd.date_range(day, periods=24 * 12 + 1, freq="5min").tz_convert("UTC")
            weather = synthetic_weather(times, self.site.location, self.settings.seed)
            pv = pv_ac_power_kw(self.site.pv, self.site.location, weather).to_numpy(dtype=float)
            rng = np.random.default_rng([self.settings.seed, day.toordinal()])
            noise = np.empty(len(pv))
            level = 0.0
            rho = 0.9  # 5-min samples: cloud-edge noise decorrelates over about an hour
            for k in range(len(pv)):
                level = rho * level + np.sqrt(1 - rho**2) * rng.standard_normal()
                noise[k] = level
            pv = np.clip(
                pv * (1 + self.settings.pv_noise * noise), 0.0, self.site.pv.inverter_ac_capacity_kw
            )
            # The roofs see the same sky (and the same clouds) as the container's array.
            roofs = (
                prosumer_pv_ac_power_kw(self.site, weather)
                .reindex(columns=[c.id for c in self.site.connections], fill_value=0.0)
                .to_numpy(dtype=float)
                * (1 + self.settings.pv_noise * noise)[:, None]
            ).clip(min=0.0)
            self._days[day] = (pv, demand, roofs)
            if len(self._days) > 3:
                self._days.pop(min(self._days))
        pv, demand, roofs = self._days[day]
        return day, pv, demand, roofs

    def _closed(self) -> np.ndarray:
        closed = np.empty(len(self._meter_relay), dtype=bool)
        for i, meter in enumerate(self._meter_relay):
            coil = self._meter_coil[i]
            path = meter.coils[0] if coil is not None else True
            group = self._group_relay[i]
            if group is not None:
                path = path and group[0].coils[group[1]]
            closed[i] = path
        return closed

    def _timers(self) -> list[tuple[dt.datetime, _Device]]:
        timers: list[tuple[dt.datetime, _Device]] = []
        for device in self._timed:
            at = None
            if isinstance(device, _PvInverter | _Storage):
                at = device.revert_at()
            elif isinstance(device, _RelayBoard):
                at = device.watchdog_at()
            if at is not None:
                timers.append((at, device))
        return timers

    def _meter_settings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each connection's meter power limit [kW], budget [Wh] and reclose delay [h]."""
        limits = np.array([m.power_limit_kw() for m in self._meters])
        budgets = np.array([m.energy_budget_wh() for m in self._meters])
        reclose = np.array([m.get("reclose_delay_s") / 3600.0 for m in self._meters])
        return limits, budgets, reclose

    def advance(self, now: dt.datetime) -> None:
        """Integrate the physics up to ``now``, honouring every device timer on time."""
        if now - self.time < _MIN_STEP:
            return  # requests come in bursts: one physics step per burst is enough
        max_step = dt.timedelta(seconds=self.settings.max_step_s)
        tz = self.site.location.timezone
        while self.time < now:
            timers = self._timers()
            # Budgets run per local day: a step never crosses local midnight.
            midnight = pd.Timestamp(self.time).tz_convert(tz).normalize() + pd.Timedelta(days=1)
            end = min(
                now,
                self.time + max_step,
                midnight.to_pydatetime(),
                *(at for at, _ in timers if at > self.time),
            )
            for at, device in timers:
                if at <= self.time:
                    self._expire(device)
            mid = pd.Timestamp(self.time + (end - self.time) / 2)
            day, pv, demand, roofs = self._day(mid)
            offset_h = (mid - day).total_seconds() / 3600
            pv_kw = float(np.interp(offset_h * 12, np.arange(len(pv)), pv))
            period = min(int(offset_h * 4), 95)
            k = min(int(offset_h * 12), len(roofs) - 2)
            frac = offset_h * 12 - k
            own_pv_kw = roofs[k] * (1 - frac) + roofs[k + 1] * frac
            demand_now = demand[period]
            fixture = self.settings.fixtures.get(mid.floor("h").to_pydatetime())
            if fixture is not None:
                ids = [c.id for c in self.site.connections]
                pv_kw = fixture.pv_kw
                demand_now = np.array([fixture.demand_kw.get(i, 0.0) for i in ids])
                own_pv_kw = np.array([fixture.own_pv_kw.get(i, 0.0) for i in ids])
            charge, discharge = self.storage.limits_kw()
            limits, budgets, reclose = self._meter_settings()
            inputs = StepInputs(
                dt_h=(end - self.time).total_seconds() / 3600,
                pv_available_kw=pv_kw,
                pv_limit_kw=self.pv.limit_kw(),
                charge_limit_kw=charge,
                discharge_limit_kw=discharge,
                demand_kw=demand_now,
                closed=self._closed(),
                power_limit_kw=limits,
                energy_budget_wh=budgets,
                reclose_h=reclose,
                own_pv_kw=own_pv_kw,
            )
            flows = step(self.state, self.battery, inputs, self.protection)
            self.flows_pv_kw, self.flows_battery_kw, self.flows_load_kw = (
                flows.pv_kw,
                flows.battery_kw,
                flows.load_kw,
            )
            self.drawn_kw = flows.drawn_kw
            self.exported_kw = flows.exported_kw
            self.time = end
            if end == midnight.to_pydatetime():
                self.state.start_budget_period()
        for at, device in self._timers():
            if at <= self.time:
                self._expire(device)

    @staticmethod
    def _expire(device: _Device) -> None:
        if isinstance(device, _PvInverter | _Storage):
            device.revert()
        elif isinstance(device, _RelayBoard):
            device.trip_watchdog()

    # --- Modbus ----------------------------------------------------------------------
    async def _action(
        self,
        device: _Device,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        key = (device.gateway, device.unit)
        delay = self.faults.delay_s.get(key)
        if delay:
            await asyncio.sleep(delay)
        code = self.faults.exception.get(key)
        bus = self.settings.rtu_buses.get(device.gateway)
        if bus is not None:
            async with self._bus_locks[device.gateway]:  # one transaction on the wire
                await asyncio.sleep(bus.transaction_s(function_code, count, bool(code)))
        if code:
            return ExcCodes(code)
        now = self.clock.now()
        self.advance(now)
        device.last_request = now
        if function_code in (1, 5, 15):
            if values:
                error = device.write_coils(address, [bool(v) for v in values], now)
                if error:
                    return error
            packed = SimUtils.bitsToRegisters(device.coils)
            registers[: len(packed)] = packed
            return None
        if values:
            words = [int(v) for v in values]
            error = device.check_write(address, words)
            if error:
                return error
            device.write(address, words, now)
            return None
        device.render(self)
        offset = device.base - start_address
        registers[offset : offset + len(device.words)] = device.words
        if key in self.faults.garbage:
            device.garbage(address, count, registers, start_address)
        return None

    def _sim_device(self, device: _Device) -> SimDevice:
        bits = [SimData(0, values=list(device.coils), datatype=DataType.BITS)]
        holding = [SimData(device.base, values=list(device.words), datatype=DataType.REGISTERS)]
        nothing = [SimData(0, datatype=DataType.INVALID)]
        discrete = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            id=device.unit,
            simdata=(bits, discrete, holding, nothing),
            action=functools.partial(self._action, device),
        )

    async def start_gateway(self, name: str) -> None:
        """Start (or restart) the server of one gateway."""
        gateway = self.site.gateways[name]
        devices = [self._sim_device(d) for (g, _), d in sorted(self.devices.items()) if g == name]
        if not devices:
            return
        server = ModbusTcpServer(devices, address=(gateway.host, gateway.port))
        await server.serve_forever(background=True)
        self.servers[name] = server
        log.info("simulated gateway %s listening on %s:%d", name, gateway.host, gateway.port)

    async def stop_gateway(self, name: str) -> None:
        """Take one gateway down (connections refused until :meth:`start_gateway`)."""
        server = self.servers.pop(name, None)
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def start(self) -> None:
        """Start every gateway's server."""
        for name in self.site.gateways:
            await self.start_gateway(name)

    async def stop(self) -> None:
        """Stop every server."""
        for name in list(self.servers):
            await self.stop_gateway(name)

    def drop_connections(self, gateway: str) -> None:
        """Close every open client connection of a gateway (the server keeps listening)."""
        server = self.servers.get(gateway)
        if server is not None:
            for connection in list(server.active_connections.values()):
                connection.close()

    def restart_device(self, gateway: str, unit: int) -> None:
        """Power-cycle a device: it forgets its setpoints (meters keep their energy)."""
        self.advance(self.clock.now())
        self.devices[(gateway, unit)].reset()

    # --- inspection (tests, the demo) -------------------------------------------------
    def supply_closed(self, connection_id: str) -> bool:
        """Whether a connection's supply path is closed right now (physically)."""
        index = [c.id for c in self.site.connections].index(connection_id)
        return bool(self._closed()[index])

    def weather_of_day(self, when: pd.Timestamp) -> tuple[pd.Series, pd.DataFrame]:
        """The day's realised PV and demand, per 15-min period, as the physics meets them.

        PV is the period mean of the 5-min samples the physics interpolates [kW];
        demand is per connection [kW]. For comparing other deliveries of the same day
        (the planners') with this container's.
        """
        day, pv, demand, _ = self._day(when)
        index = pd.date_range(day, periods=96, freq="15min").tz_convert("UTC")
        # Trapezoid mean over each period of the linearly interpolated 5-min samples.
        edges = pv[: 96 * 3 + 1]
        means = (edges[0:-1:3] / 2 + edges[1::3] + edges[2::3] + edges[3::3] / 2) / 3
        columns = [c.id for c in self.site.connections]
        return (
            pd.Series(means, index=index, name="pv_kw"),
            pd.DataFrame(demand, index=index, columns=columns),
        )

    def energy_kwh_by_tier(self) -> dict[str, float]:
        """Energy delivered per tier since the start [kWh] (the physics' own account)."""
        out: dict[str, float] = {}
        for kind in ConnectionKind:
            mask = np.array([c.kind is kind for c in self.site.connections])
            out[kind.value] = float(self.state.meter_wh[mask].sum() / 1000.0)
        return out

    def pv_limit_pct(self) -> float:
        """The PV inverter's effective limit [% of rating]."""
        return 100.0 * self.pv.limit_kw() / self.pv.rating_kw

    def __repr__(self) -> str:
        return f"SimulatedContainer({self.site.name!r}, {len(self.devices)} devices)"
