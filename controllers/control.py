"""The control cycle: apply a dispatch schedule to the container, read it, fail safe.

Two paces (DESIGN.md §6). Each :meth:`Controller.cycle` runs

1. the **fast path** — the PV and battery inverters, the relay boards and the bulk
   meter, all on the container's own gateway — within its own deadline
   (``fast_deadline_s``): read every device that is not backed off, decide the mode
   (:mod:`controllers.failsafe`) from the locally kept schedule (the next 24 h) and the
   age of the last good state of charge, and write only what differs from the
   read-back, plus every timed setpoint at half the device timeout, plus everything
   after a reconnect or a device's recovery. The devices' own revert timers and the
   relay board's watchdog are programmed to the device timeout, so a controller that
   dies leaves devices that fall back by themselves;
2. a **meter sweep** per meter bus (a gateway with meters) that is idle and not backed
   off: its meters one request after the other, each meter's relay written from the
   latest decision, the whole sweep within ``sweep_deadline_s``. A bus sweeps at the
   pace it allows — a 200-meter RS-485 bus at 9 600 baud needs seconds per sweep —
   and never holds up the fast path or another bus. A bus that misses its deadline or
   stays silent for ``bus_silent_after`` requests in a row is a **bus fault**: raised,
   backed off exponentially, cleared by the next complete sweep.

Failures are classified as transport failures, Modbus exception responses or garbage
values, logged as such, and the device is backed off exponentially. A meter whose
counter goes *down* (replaced, reset, restarted container) is re-baselined at once and
alarmed; its relay keeps being driven throughout.

:class:`CycleResult` carries :class:`~microgrid.readings.MeterReading` s (the fast
path's and those of the sweeps that finished since the last cycle, for settlement),
the :class:`MeasuredState` (for dispatch) and the alarms raised and cleared by changes
(never one per cycle).

A priority connection's relay is never opened, whatever the schedule, credit or mode
say; only :meth:`Controller.operator_switch` can do it, and it is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import numpy as np
import pandas as pd

from controllers.codec import GarbageValueError
from controllers.devices import (
    Block,
    DeviceProfile,
    InverterState,
    MeterState,
    RelayBoardState,
    StorageState,
    Write,
    inverter_profile,
    inverter_state,
    meter_profile,
    meter_state,
    relay_board_profile,
    relay_board_state,
    storage_profile,
    storage_state,
)
from controllers.events import OFF_LIMIT_W, DeviceEvents
from controllers.failsafe import FailsafeSettings, Mode, Targets, decide_mode, targets
from controllers.modbus import ExceptionResponse, GatewayClient, ModbusSettings, TransportError
from controllers.registers import load_register_map
from dispatch.setpoints import PeriodSetpoints, Setpoints, safe_setpoints
from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.site import ConnectionKind, Site
from settlement.alarms import Alarm, AlarmKind

__all__ = [
    "BusFault",
    "Clock",
    "Controller",
    "ControllerSettings",
    "CycleResult",
    "DeviceFault",
    "MeasuredState",
    "SystemClock",
]

log = logging.getLogger(__name__)

FaultKind = Literal["transport", "exception", "garbage"]
T = TypeVar("T")

# A meter cannot deliver more than this; a larger jump of its counter is garbage.
# 30 kW is above any single connection of the default site (largest business 4 kW).
_METER_POWER_KW_MAX = 30.0


class Clock(Protocol):
    """Where the controller's time comes from (timezone-aware UTC)."""

    def now(self) -> dt.datetime:
        """The current time."""
        ...


class SystemClock:
    """The real UTC clock."""

    def now(self) -> dt.datetime:
        """The current time."""
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Settings of the controller.

    Attributes
    ----------
    modbus : ModbusSettings
        Transport: timeouts, retries, inter-frame delay, connections per gateway.
    failsafe : FailsafeSettings
        Device timeout and fail-safe thresholds.
    backoff_initial_s, backoff_max_s : float
        A failing device is skipped for ``initial × 2**(failures − 1)`` seconds of
        controller time, at most ``max``.
    schedule_horizon : datetime.timedelta
        How much schedule is kept locally (DESIGN.md §6: the next 24 h).
    fast_deadline_s : float
        The fast path (inverters, relay boards, bulk meter) must be read and written
        within this [real s]; what is still pending then is cancelled and faulted.
    sweep_deadline_s : float
        One sweep of one meter bus must finish within this [real s], else the bus is
        faulted and backed off. Give a slow serial bus room: 200 meters at 9 600 baud
        take ≈ 8 s of wire time.
    bus_silent_after : int
        This many transport failures in a row make a bus silent: the sweep stops and the
        bus is faulted (its remaining meters are not waited for, one timeout each).
    """

    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    failsafe: FailsafeSettings = field(default_factory=FailsafeSettings)
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 60.0
    schedule_horizon: dt.timedelta = dt.timedelta(hours=24)
    fast_deadline_s: float = 2.0
    sweep_deadline_s: float = 30.0
    bus_silent_after: int = 3

    def __post_init__(self) -> None:
        if self.fast_deadline_s <= 0 or self.sweep_deadline_s <= 0:
            msg = "fast_deadline_s and sweep_deadline_s must be positive seconds"
            raise ValueError(msg)
        if self.bus_silent_after < 1:
            msg = f"bus_silent_after must be ≥ 1 request, got {self.bus_silent_after}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """A device that failed this cycle: which, how (transport / exception / garbage), why."""

    device: str
    kind: FaultKind
    message: str


@dataclass(frozen=True, slots=True)
class BusFault:
    """A meter bus that missed its sweep deadline or fell silent; it is backed off.

    Attributes
    ----------
    bus : str
        The gateway's name.
    message : str
        What happened.
    meters_read : int
        Meters read in the failed sweep before it was abandoned.
    retry_in_s : float
        Back-off before the next sweep [s of controller time].
    """

    bus: str
    message: str
    meters_read: int
    retry_in_s: float


_METER_OPEN = {1: "tripped", 2: "budget_exhausted"}
"""A meter's trip status register → why it holds itself open (0: it does not)."""


@dataclass(frozen=True, slots=True)
class MeasuredState:
    """What the container looks like now, for the next dispatch.

    Attributes
    ----------
    time : datetime.datetime
        When it was read (UTC).
    mode : Mode
        The controller's mode this cycle.
    soc_kwh, soc_fraction : float or None
        Battery state of charge [kWh, -]; None if unknown.
    pv_kw, battery_kw : float or None
        PV AC output and battery AC power (discharge positive) [kW].
    load_kw : dict of str to float
        Metered power per tier (``priority``, ``household``, ``business``) [kW] over
        the meters read in the latest sweep of their bus.
    meters_read, meters_missing : int
        Meters read in the latest sweep of their bus, and the others.
    relays_closed : dict of str to bool
        Read-back state of every switchable unit (household groups, connections).
    meters_open : dict of str to str
        Connections whose meter holds itself open, and why: ``tripped`` (over its power
        limit, until it recloses) or ``budget_exhausted`` (until local midnight).
    """

    time: dt.datetime
    mode: Mode
    soc_kwh: float | None
    soc_fraction: float | None
    pv_kw: float | None
    battery_kw: float | None
    load_kw: dict[str, float]
    meters_read: int
    meters_missing: int
    relays_closed: dict[str, bool]
    meters_open: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CycleResult:
    """Outcome of one control cycle.

    Attributes
    ----------
    time : datetime.datetime
        The cycle's time.
    mode : Mode
        The mode decided.
    readings : list of MeterReading
        The fast path's readings and those of every sweep finished since the last cycle.
    measured : MeasuredState
        For dispatch.
    faults : list of DeviceFault
        Device faults of the fast path and of the harvested sweeps.
    writes : int
        Writes done (fast path and harvested sweeps).
    bus_faults : list of BusFault
        Buses faulted in the harvested sweeps.
    alarms : list of Alarm
        Conditions that began (a faulted bus or device, a replaced meter, the safe state).
    cleared : list of (AlarmKind, str)
        Conditions that ended.
    fast_path_s : float
        Real time the fast path took [s].
    sweeps_s : dict of str to float
        Real time each harvested sweep took, per bus [s].
    """

    time: dt.datetime
    mode: Mode
    readings: list[MeterReading]
    measured: MeasuredState
    faults: list[DeviceFault]
    writes: int
    bus_faults: list[BusFault] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    cleared: list[tuple[AlarmKind, str]] = field(default_factory=list)
    fast_path_s: float = 0.0
    sweeps_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _Sweep:
    """What one sweep of one bus did (harvested by the next cycle)."""

    readings: list[MeterReading] = field(default_factory=list)
    states: dict[str, MeterState] = field(default_factory=dict)
    faults: list[DeviceFault] = field(default_factory=list)
    writes: int = 0
    bus_fault: BusFault | None = None
    duration_s: float = 0.0


@dataclass
class _Health:
    failures: int = 0
    retry_at: dt.datetime | None = None
    last_ok: dt.datetime | None = None
    epoch: int = -1
    reapply: bool = True
    last_write: dt.datetime | None = None


@dataclass
class _Device:
    name: str
    role: Literal["pv", "storage", "meter", "bulk", "relay_board"]
    gateway: str
    unit: int
    profile: DeviceProfile
    health: _Health = field(default_factory=_Health)
    connection_id: str | None = None
    coil: int | None = None  # meters: relay coil


_DeviceRead = tuple[
    _Device,
    dict[str, float | None],
    Mapping[Block, Sequence[int] | Sequence[bool]],
    dict[str, int],
]
"""One device's successful read: the device, decoded points, raw blocks, scale factors."""


class Controller:
    """Applies schedules to a site's devices over Modbus and reads them.

    Parameters
    ----------
    site : Site
        The site: gateways, devices, relay topology, priority users.
    settings : ControllerSettings, optional
        Transport and fail-safe settings.
    clock : Clock, optional
        Time source; the real UTC clock by default.

    Examples
    --------
    ::

        controller = Controller(site)
        controller.set_schedule(Setpoints.from_schedule(schedule))
        controller.set_credit({"H001": False})
        result = await controller.cycle()      # or: await controller.run(interval_s=5)
        settle(result.readings); next_dispatch(result.measured)
        await controller.close()
    """

    def __init__(
        self, site: Site, settings: ControllerSettings | None = None, clock: Clock | None = None
    ) -> None:
        self.site = site
        self.settings = settings or ControllerSettings()
        self.clock = clock or SystemClock()
        self.gateways = {
            name: GatewayClient(name, g.host, g.port, self.settings.modbus)
            for name, g in site.gateways.items()
        }
        self._setpoints: Setpoints | None = None
        self.events = DeviceEvents()
        self._step = dt.timedelta(minutes=15)
        self._credit: dict[str, bool] = {}
        self._operator: dict[str, bool] = {}
        self._units_on: dict[str, bool] = {}
        self._soc: tuple[dt.datetime, float, float] | None = None  # time, fraction, kWh
        self._battery_charged_wh = 0  # derived charge register, kept monotone
        self._battery_baseline_wh: int | None = None
        self._last_meter: dict[str, tuple[dt.datetime, int]] = {}
        self._jumped: dict[str, tuple[dt.datetime, int]] = {}  # refused upward jumps
        self._devices = self._build_devices()
        self._by_name = {d.name: d for d in self._devices}
        self._fast = [d for d in self._devices if d.role != "meter"]
        self._buses: dict[str, list[_Device]] = {}
        for d in self._devices:
            if d.role == "meter":
                self._buses.setdefault(d.gateway, []).append(d)
        self._bus_health = {bus: _Health() for bus in self._buses}
        self._sweeps: dict[str, asyncio.Task[_Sweep]] = {}
        self._meter_states: dict[str, dict[str, MeterState]] = {bus: {} for bus in self._buses}
        self._target: Targets | None = None
        self._new_alarms: list[Alarm] = []  # conditions that began, drained by each cycle
        self._device_down: set[str] = set()
        self._buses_down: set[str] = set()
        self._safe = False
        self.household_groups = tuple(g.id for g in site.relay_groups)
        self.businesses = tuple(c.id for c in site.businesses)
        self.priority_ids = frozenset(c.id for c in site.priority_users)
        self.household_ids = frozenset(c.id for c in site.households)
        groups_with_priority = {c.relay_group for c in site.priority_users if c.relay_group}
        self._priority_groups = frozenset(groups_with_priority)
        # Without a plan (SoC rules, safe state) each business meter holds its share of
        # the fallback power: the safe setpoints' limits, a function of the site.
        fs = self.settings.failsafe
        safe = safe_setpoints(
            site,
            pd.Timestamp(0, tz="UTC"),
            site.pv.inverter_ac_capacity_kw * fs.pv_safe_limit_pct / 100,
            periods=1,
            business_kw=site.battery.power_kw_max * fs.rules_business_pct / 100,
        )
        self._fallback_limits_kw = {
            str(unit): float(kw) for unit, kw in safe.power_limit_kw.iloc[0].items()
        }

    def _build_devices(self) -> list[_Device]:
        site = self.site
        devices = [
            _Device(
                "pv_inverter",
                "pv",
                site.pv_inverter.gateway,
                site.pv_inverter.unit_id,
                inverter_profile(load_register_map(site.pv_inverter.register_map)),
            ),
            _Device(
                "battery_inverter",
                "storage",
                site.battery_inverter.gateway,
                site.battery_inverter.unit_id,
                storage_profile(load_register_map(site.battery_inverter.register_map)),
            ),
        ]
        if site.bulk_meter is not None:
            devices.append(
                _Device(
                    "bulk_meter",
                    "bulk",
                    site.bulk_meter.gateway,
                    site.bulk_meter.unit_id,
                    meter_profile(load_register_map(site.bulk_meter.register_map)),
                )
            )
        boards = sorted({(g.relay.gateway, g.relay.unit_id) for g in site.relay_groups})
        for gateway, unit in boards:
            devices.append(
                _Device(
                    f"relay_board:{gateway}:{unit}",
                    "relay_board",
                    gateway,
                    unit,
                    relay_board_profile(load_register_map("relay_board")),
                )
            )
        for c in site.connections:
            devices.append(
                _Device(
                    c.id,
                    "meter",
                    c.meter.gateway,
                    c.meter.unit_id,
                    meter_profile(load_register_map(c.meter.register_map)),
                    connection_id=c.id,
                    coil=c.meter.relay_coil,
                )
            )
        return devices

    def _device(self, name: str) -> _Device:
        return self._by_name[name]

    # --- inputs ------------------------------------------------------------------------
    def set_schedule(self, setpoints: Setpoints) -> None:
        """Take dispatch's :class:`~dispatch.setpoints.Setpoints` (or the safe ones).

        Only the next ``schedule_horizon`` (24 h) is kept; the controller keeps applying
        it if the dispatcher goes quiet, then falls back to SoC rules.

        Raises
        ------
        TypeError
            If given anything but :class:`~dispatch.setpoints.Setpoints` (a schedule:
            ``Setpoints.from_schedule(schedule)``).
        """
        if not isinstance(setpoints, Setpoints):
            msg = (
                f"set_schedule takes Setpoints, got {type(setpoints).__name__}; "
                "convert a dispatch schedule with Setpoints.from_schedule(schedule)"
            )
            raise TypeError(msg)
        if setpoints.step is not None:
            self._step = setpoints.step.to_pytimedelta()
        index = setpoints.index
        now = pd.Timestamp(self.clock.now())
        keep = (index + self._step > now) & (index < now + self.settings.schedule_horizon)
        self._setpoints = setpoints.window(np.asarray(keep))

    def set_credit(self, credit: Mapping[str, bool]) -> None:
        """Credit status per connection from settlement; False opens its relay next cycle.

        Priority connections are never disconnected for credit (DESIGN.md §7).
        """
        self._credit = dict(credit)

    def operator_switch(self, connection_id: str, closed: bool, *, reason: str) -> None:
        """Explicit operator command: hold a connection's relay open or closed.

        This is the only way a priority connection's relay can be opened.

        Raises
        ------
        KeyError
            If the site has no such connection.
        ValueError
            If the connection's meter has no relay, or no reason is given.
        """
        connection = self.site.connection(connection_id)
        if connection.meter.relay_coil is None:
            msg = f"connection {connection_id!r} has no relay in its meter; nothing to switch"
            raise ValueError(msg)
        if not reason.strip():
            msg = "an operator command needs a reason (it is logged)"
            raise ValueError(msg)
        log.warning(
            "operator: %s relay of %s (%s)", "close" if closed else "open", connection_id, reason
        )
        self._operator[connection_id] = closed

    def operator_release(self, connection_id: str) -> None:
        """End an operator hold; the connection follows schedule and credit again."""
        self._operator.pop(connection_id, None)

    # --- the cycle ---------------------------------------------------------------------
    def _backed_off(self, device: _Device, now: dt.datetime) -> bool:
        retry = device.health.retry_at
        return retry is not None and now < retry

    def _fail(
        self, device: _Device, now: dt.datetime, kind: FaultKind, message: str
    ) -> DeviceFault:
        h = device.health
        h.failures += 1
        delay = min(
            self.settings.backoff_initial_s * 2 ** (h.failures - 1), self.settings.backoff_max_s
        )
        h.retry_at = now + dt.timedelta(seconds=delay)
        h.reapply = True
        log.warning(
            "%s failed (%s, %d in a row, retry in %.0f s): %s",
            device.name,
            kind,
            h.failures,
            delay,
            message,
        )
        return DeviceFault(device.name, kind, message)

    async def _read(
        self, device: _Device, now: dt.datetime
    ) -> (
        tuple[
            dict[str, float | None], Mapping[Block, Sequence[int] | Sequence[bool]], dict[str, int]
        ]
        | DeviceFault
    ):
        client = self.gateways[device.gateway]
        answers: dict[Block, Sequence[int] | Sequence[bool]] = {}
        try:
            for block in device.profile.blocks:
                answer: list[int] | list[bool] | ExceptionResponse
                if block.table == "holding":
                    answer = await client.read_holding(device.unit, block.address, block.count)
                else:
                    answer = await client.read_coils(device.unit, block.address, block.count)
                if isinstance(answer, ExceptionResponse):
                    return self._fail(device, now, "exception", str(answer))
                answers[block] = answer
            values = device.profile.decode(answers)
            if device.role in ("meter", "bulk"):
                self._check_counter(device, now, values)
        except TransportError as exc:
            return self._fail(device, now, "transport", str(exc))
        except GarbageValueError as exc:
            return self._fail(device, now, "garbage", str(exc))
        h = device.health
        if h.failures:
            log.info("%s is back after %d failures", device.name, h.failures)
        h.failures = 0
        h.retry_at = None
        h.last_ok = now
        if h.epoch != client.epoch:
            h.epoch = client.epoch
            h.reapply = True  # a new connection: read back and re-apply everything
        return values, answers, device.profile.scale_factors(answers)

    def _check_counter(
        self, device: _Device, now: dt.datetime, values: Mapping[str, float | None]
    ) -> None:
        """Refuse an impossible rise; take a fall (or a confirmed jump) as a new baseline.

        A counter that goes down was replaced, reset or restarted: waiting until the new
        count passes the old one would leave the meter unread (its relay unwritten, its
        energy unbilled) for months, so the new value becomes the baseline at once and an
        alarm says so. A rise faster than any connection can draw is garbage once; if the
        next read rises plausibly from it, it was a new meter too.
        """
        energy = int(values["import_wh"] or 0)
        last = self._last_meter.get(device.name)
        if last is not None and not self._plausible(last, now, energy):
            jumped = self._jumped.pop(device.name, None)
            if energy < last[1]:
                self._rebaseline(device, now, f"import_wh went down from {last[1]} to {energy}")
            elif jumped is not None and self._plausible(jumped, now, energy):
                self._rebaseline(
                    device, now, f"import_wh jumped from {last[1]} to {jumped[1]}, then {energy}"
                )
            else:
                self._jumped[device.name] = (now, energy)
                elapsed_s = max((now - last[0]).total_seconds(), 0.0)
                msg = (
                    f"meter {device.name!r}: import_wh jumped by "
                    f"{(energy - last[1]) % ENERGY_REGISTER_MODULUS_WH} Wh in {elapsed_s:.0f} s "
                    f"(from {last[1]} to {energy}); more than {_METER_POWER_KW_MAX:g} kW could "
                    "deliver"
                )
                raise GarbageValueError(msg)
        self._jumped.pop(device.name, None)
        self._last_meter[device.name] = (now, energy)

    @staticmethod
    def _plausible(last: tuple[dt.datetime, int], now: dt.datetime, energy: int) -> bool:
        elapsed_h = max((now - last[0]).total_seconds(), 0.0) / 3600
        delta = (energy - last[1]) % ENERGY_REGISTER_MODULUS_WH  # a rollover is plausible
        return delta <= _METER_POWER_KW_MAX * 1000 * elapsed_h + 10

    def _rebaseline(self, device: _Device, now: dt.datetime, why: str) -> None:
        log.warning("meter %s: %s; new baseline (replaced or reset?)", device.name, why)
        self._new_alarms.append(
            Alarm(
                AlarmKind.METER_REPLACED,
                device.name,
                now,
                f"meter {device.name}: {why}; taken as the new meter's baseline — the energy "
                "between its last good reading and the change is not billed; check the meter",
            )
        )

    def _period(self, now: dt.datetime) -> PeriodSetpoints | None:
        if self._setpoints is None:
            return None
        return self._setpoints.at(pd.Timestamp(now), pd.Timedelta(self._step))

    async def cycle(self, wait_for_sweeps: bool = True) -> CycleResult:
        """Run one control cycle; never raises for device or bus faults.

        Parameters
        ----------
        wait_for_sweeps : bool
            Wait for the meter sweeps this cycle starts (each within its deadline), so
            the result carries every meter — what a stepped simulation wants. The live
            loop passes False: sweeps run on at their buses' pace and are harvested by
            later cycles, and a cycle takes as long as its fast path.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        now = self.clock.now()
        mode, readings, fast_measured, faults, writes = await self._fast_path(now)
        fast_s = loop.time() - started
        cleared: list[tuple[AlarmKind, str]] = []
        bus_faults: list[BusFault] = []
        sweeps_s: dict[str, float] = {}
        harvest = (readings, faults, bus_faults, cleared, sweeps_s)
        writes += self._harvest(*harvest)
        for bus, meters in self._buses.items():
            if bus not in self._sweeps and not self._backed_off_bus(bus, now):
                self._sweeps[bus] = asyncio.create_task(self._sweep(bus, meters))
        if wait_for_sweeps and self._sweeps:
            await asyncio.wait(list(self._sweeps.values()))
            writes += self._harvest(*harvest)
        cleared += self._device_changes(now, faults)
        cleared += self._mode_change(now, mode)
        alarms, self._new_alarms = self._new_alarms, []
        return CycleResult(
            now,
            mode,
            readings,
            self._measured(fast_measured),
            faults,
            writes,
            bus_faults,
            alarms,
            cleared,
            fast_s,
            sweeps_s,
        )

    def _harvest(
        self,
        readings: list[MeterReading],
        faults: list[DeviceFault],
        bus_faults: list[BusFault],
        cleared: list[tuple[AlarmKind, str]],
        sweeps_s: dict[str, float],
    ) -> int:
        """Collect the sweeps that finished; returns their writes."""
        writes = 0
        for bus, task in list(self._sweeps.items()):
            if not task.done():
                continue
            del self._sweeps[bus]
            try:
                sweep = task.result()
            except Exception as exc:  # a bug in one sweep must not stop the controller
                log.exception("sweep of bus %s failed", bus)
                sweep = _Sweep(bus_fault=self._fail_bus(bus, f"sweep crashed: {exc!r}", 0))
            readings += sweep.readings
            faults += sweep.faults
            writes += sweep.writes
            sweeps_s[bus] = sweep.duration_s
            self._meter_states[bus] = sweep.states
            if sweep.bus_fault is not None:
                bus_faults.append(sweep.bus_fault)
            elif bus in self._buses_down:
                self._buses_down.discard(bus)
                cleared.append((AlarmKind.BUS_FAULT, bus))
        return writes

    # --- the fast path -----------------------------------------------------------------
    async def _fast_path(
        self, now: dt.datetime
    ) -> tuple[Mode, list[MeterReading], MeasuredState, list[DeviceFault], int]:
        """Read, decide and write the container's own devices within the fast deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.fast_deadline_s
        active = [d for d in self._fast if not self._backed_off(d, now)]
        results = await self._by_deadline(
            [self._read(d, now) for d in active], active, deadline, now, "reading"
        )
        faults: list[DeviceFault] = []
        ok: dict[str, _DeviceRead] = {}
        for device, result in zip(active, results, strict=True):
            if isinstance(result, DeviceFault):
                faults.append(result)
            else:
                ok[device.name] = (device, *result)

        pv: InverterState | None = None
        storage: StorageState | None = None
        if "pv_inverter" in ok:
            try:
                pv = inverter_state(ok["pv_inverter"][1])
            except GarbageValueError as exc:
                faults.append(self._fail(ok.pop("pv_inverter")[0], now, "garbage", str(exc)))
        if "battery_inverter" in ok:
            try:
                storage = storage_state(ok["battery_inverter"][1])
                self._soc = (now, storage.soc_fraction, storage.soc_kwh)
                self._new_alarms += self._raised(
                    self.events.inverter(storage.faulted, storage.empty, now)
                )
            except GarbageValueError as exc:
                faults.append(self._fail(ok.pop("battery_inverter")[0], now, "garbage", str(exc)))

        period = self._period(now)
        soc_fraction = self._soc[1] if self._soc else None
        soc_age = (now - self._soc[0]).total_seconds() if self._soc else None
        fs = self.settings.failsafe
        mode = decide_mode(
            schedule_covers_now=period is not None,
            soc_fraction=soc_fraction,
            soc_age_s=soc_age,
            settings=fs,
        )
        target = targets(
            mode,
            household_groups=self.household_groups,
            businesses=self.businesses,
            settings=fs,
            period=period,
            pv_rating_kw=pv.rating_kw if pv else self.site.pv.inverter_ac_capacity_kw,
            battery_rating_kw=storage.rate_kw_max if storage else self.site.battery.power_kw_max,
            soc_fraction=soc_fraction,
            previously_on=self._units_on,
            fallback_power_limit_kw=self._fallback_limits_kw,
        )
        self._units_on = target.units_on
        self._target = target

        jobs: list[tuple[_Device, list[Write]]] = []
        for device, values, answers, sfs in ok.values():
            writes = self._writes_for(device, values, answers, sfs, target, now)
            if writes:
                jobs.append((device, writes))
        write_results = await self._by_deadline(
            [self._write(d, w, now) for d, w in jobs],
            [d for d, _ in jobs],
            deadline,
            now,
            "writing",
        )
        faults += [f for f in write_results if isinstance(f, DeviceFault)]
        written = sum(len(w) for (_, w), r in zip(jobs, write_results, strict=True) if r is None)
        readings, measured = self._outputs(now, mode, ok, pv, storage)
        return mode, readings, measured, faults, written

    async def _by_deadline(
        self,
        calls: Sequence[Awaitable[T]],
        devices: Sequence[_Device],
        deadline: float,
        now: dt.datetime,
        what: str,
    ) -> list[T | DeviceFault]:
        """Run ``calls`` concurrently; those not done by ``deadline`` are cancelled, faulted."""
        tasks = [asyncio.ensure_future(c) for c in calls]
        if not tasks:
            return []
        timeout = max(deadline - asyncio.get_running_loop().time(), 0.0)
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        out: list[T | DeviceFault] = []
        for device, task in zip(devices, tasks, strict=True):
            if task in pending:
                message = (
                    f"{what} missed the fast path's {self.settings.fast_deadline_s:g} s deadline"
                )
                out.append(self._fail(device, now, "transport", message))
            else:
                out.append(task.result())
        return out

    def _device_changes(
        self, now: dt.datetime, faults: Sequence[DeviceFault]
    ) -> list[tuple[AlarmKind, str]]:
        """Raise DEVICE_FAULT for a container device that began failing; clear recovered ones."""
        fast = {d.name for d in self._fast}
        for fault in faults:
            if fault.device in fast and fault.device not in self._device_down:
                self._device_down.add(fault.device)
                self._new_alarms.append(
                    Alarm(
                        AlarmKind.DEVICE_FAULT,
                        fault.device,
                        now,
                        f"{fault.device}: {fault.kind} fault: {fault.message}; backed off and "
                        "retried; its own fail-safe takes over if it stays unreachable",
                    )
                )
        recovered = [name for name in self._device_down if self._device(name).health.failures == 0]
        for name in recovered:
            self._device_down.discard(name)
        return [(AlarmKind.DEVICE_FAULT, name) for name in recovered]

    def _mode_change(self, now: dt.datetime, mode: Mode) -> list[tuple[AlarmKind, str]]:
        safe = mode is Mode.SAFE
        if safe == self._safe:
            return []
        self._safe = safe
        if not safe:
            return [(AlarmKind.SAFE_STATE, "controller")]
        self._new_alarms.append(
            Alarm(
                AlarmKind.SAFE_STATE,
                "controller",
                now,
                "the controller is in its safe state: no schedule covers now and the state of "
                "charge is unknown or stale — check the battery inverter and the dispatch job",
            )
        )
        return []

    # --- meter sweeps ------------------------------------------------------------------
    def _backed_off_bus(self, bus: str, now: dt.datetime) -> bool:
        retry = self._bus_health[bus].retry_at
        return retry is not None and now < retry

    async def _sweep(self, bus: str, meters: Sequence[_Device]) -> _Sweep:
        """Read (and switch) every meter of one bus within the sweep deadline."""
        sweep = _Sweep()
        started = asyncio.get_running_loop().time()
        active = [d for d in meters if not self._backed_off(d, self.clock.now())]
        in_flight = self.settings.modbus.connections_per_gateway
        silent = 0
        problem: str | None = None
        try:
            async with asyncio.timeout(self.settings.sweep_deadline_s):
                for start in range(0, len(active), in_flight):
                    chunk = active[start : start + in_flight]
                    outcomes = await asyncio.gather(*(self._meter(d, sweep) for d in chunk))
                    for outcome in outcomes:
                        silent = silent + 1 if outcome == "transport" else 0
                    if silent >= self.settings.bus_silent_after:
                        problem = f"{silent} requests in a row went unanswered"
                        break
        except TimeoutError:
            problem = (
                f"the sweep missed its {self.settings.sweep_deadline_s:g} s deadline after "
                f"{len(sweep.states)} of {len(active)} meters"
            )
        sweep.duration_s = asyncio.get_running_loop().time() - started
        if problem is not None:
            sweep.bus_fault = self._fail_bus(bus, problem, len(sweep.states))
            # The bus's back-off governs now; its meters are not each backed off as well.
            for fault in sweep.faults:
                if fault.kind == "transport":
                    self._device(fault.device).health.retry_at = None
        else:
            h = self._bus_health[bus]
            if h.failures:
                log.info("bus %s is back after %d failed sweeps", bus, h.failures)
            h.failures = 0
            h.retry_at = None
        return sweep

    async def _meter(self, device: _Device, sweep: _Sweep) -> str:
        """Read one meter, write its relay if it differs; the fault kind, or ``"ok"``."""
        now = self.clock.now()
        result = await self._read(device, now)
        if isinstance(result, DeviceFault):
            sweep.faults.append(result)
            return result.kind
        values, answers, sfs = result
        state = meter_state(values)
        if device.connection_id is not None:
            self._new_alarms += self._raised(
                self.events.meter(
                    device.connection_id,
                    state.trip_count,
                    state.budget_exhausted_count,
                    state.power_limit_w,
                    now,
                    alarm=device.connection_id not in self.household_ids,
                )
            )
        sweep.states[device.name] = state
        sweep.readings.append(MeterReading(device.name, now, state.import_wh, state.export_wh))
        if self._target is not None:
            writes = self._writes_for(device, values, answers, sfs, self._target, now)
            if writes:
                fault = await self._write(device, writes, now)
                if fault is not None:
                    sweep.faults.append(fault)
                    return fault.kind
                sweep.writes += len(writes)
        return "ok"

    def _fail_bus(self, bus: str, message: str, meters_read: int) -> BusFault:
        h = self._bus_health[bus]
        h.failures += 1
        delay = min(
            self.settings.backoff_initial_s * 2 ** (h.failures - 1), self.settings.backoff_max_s
        )
        now = self.clock.now()
        h.retry_at = now + dt.timedelta(seconds=delay)
        log.warning(
            "bus %s faulted (%d in a row, retry in %.0f s): %s", bus, h.failures, delay, message
        )
        if bus not in self._buses_down:
            self._buses_down.add(bus)
            self._new_alarms.append(
                Alarm(
                    AlarmKind.BUS_FAULT,
                    bus,
                    now,
                    f"meter bus {bus}: {message}; backed off {delay:.0f} s — check the gateway, "
                    "the RS-485 wiring and the meters on it",
                )
            )
        return BusFault(bus, message, meters_read, delay)

    @staticmethod
    def _raised(alarms: list[Alarm]) -> list[Alarm]:
        """Log trips, exhausted budgets and inverter faults (issue 11's events) as raised."""
        for alarm in alarms:
            log.warning("alarm %s %s: %s", alarm.kind.value, alarm.subject, alarm.message)
        return alarms

    def _relay_target(self, device: _Device, target: Targets) -> bool | None:
        cid = device.connection_id
        if cid is None or device.coil is None:
            return None
        if cid in self._operator:
            return self._operator[cid]
        if cid in self.priority_ids:
            return True
        connection = self.site.connection(cid)
        credit = self._credit.get(cid, True)
        if connection.kind is ConnectionKind.BUSINESS:
            return credit and target.units_on.get(cid, False)
        return credit

    def _writes_for(
        self,
        device: _Device,
        values: Mapping[str, float | None],
        answers: Mapping[Block, Sequence[int] | Sequence[bool]],
        sfs: Mapping[str, int],
        target: Targets,
        now: dt.datetime,
    ) -> list[Write]:
        h = device.health
        timeout = self.settings.failsafe.device_timeout_s
        refresh = (
            h.reapply or h.last_write is None or (now - h.last_write).total_seconds() >= timeout / 2
        )
        profile = device.profile
        if device.role == "pv":
            state = inverter_state(values)
            differs = (
                state.limit_pct is None
                or abs(state.limit_pct - target.pv_limit_pct) > 0.05
                or state.revert_s != round(timeout)
            )
            if refresh or differs:
                return profile.writes(
                    {
                        "123.WMaxLimPct": target.pv_limit_pct,
                        "123.WMaxLimPct_RvrtTms": round(timeout),
                        "123.WMaxLim_Ena": 1,
                    },
                    sfs,
                )
        elif device.role == "storage":
            s = storage_state(values)
            differs = (
                s.charge_limit_pct is None
                or s.discharge_limit_pct is None
                or abs(s.charge_limit_pct - target.charge_limit_pct) > 0.05
                or abs(s.discharge_limit_pct - target.discharge_limit_pct) > 0.05
                or s.revert_s != round(timeout)
            )
            if refresh or differs:
                return profile.writes(
                    {
                        "124.StorCtl_Mod": 3,
                        "124.InWRte": target.charge_limit_pct,
                        "124.OutWRte": target.discharge_limit_pct,
                        "124.InOutWRte_RvrtTms": round(timeout),
                    },
                    sfs,
                )
        elif device.role == "relay_board":
            return self._board_writes(device, values, profile.coil_values(answers), target, sfs)
        elif device.role == "meter":
            wanted = self._relay_target(device, target)
            state_m: MeterState = meter_state(values)
            # The limit first: a relay that closes must never let the full demand through.
            writes = self._meter_limit_writes(device, state_m, target, sfs)
            if wanted is not None and device.coil is not None and wanted != state_m.relay_closed:
                writes += profile.coil_writes("relay", {device.coil: wanted})
            return writes
        return []

    def _meter_limit_writes(
        self, device: _Device, state: MeterState, target: Targets, sfs: Mapping[str, int]
    ) -> list[Write]:
        """The limited unit's allotment as its meter's power limit, and its budget."""
        cid = device.connection_id
        wanted: dict[str, float] = {}
        if cid in target.power_limit_kw and cid not in self.priority_ids:
            # 0 in the register means "no limit" (inf here); an allotment of 0 is written
            # as OFF_LIMIT_W, which keeps the load off.
            limit_kw = target.power_limit_kw[cid]
            limit_w = 0 if math.isinf(limit_kw) else max(round(limit_kw * 1000), OFF_LIMIT_W)
            if limit_w != state.power_limit_w:
                wanted["power_limit_w"] = limit_w
        if (
            cid in target.energy_budget_wh
            and target.energy_budget_wh[cid] != state.energy_budget_wh
        ):
            wanted["energy_budget_wh"] = target.energy_budget_wh[cid]
        return device.profile.writes(wanted, sfs) if wanted else []

    def _board_writes(
        self,
        device: _Device,
        values: Mapping[str, float | None],
        coils: Sequence[bool],
        target: Targets,
        sfs: Mapping[str, int],
    ) -> list[Write]:
        board: RelayBoardState = relay_board_state(values, coils)
        timeout = round(self.settings.failsafe.device_timeout_s)
        wanted: dict[int, bool] = {}
        safe = 0
        for group in self.site.relay_groups:
            if (group.relay.gateway, group.relay.unit_id) != (device.gateway, device.unit):
                continue
            on = target.units_on.get(group.id, False) or group.id in self._priority_groups
            if board.closed[group.relay.coil] != on or device.health.reapply:
                wanted[group.relay.coil] = on
            if group.id in self._priority_groups:
                safe |= 1 << group.relay.coil
        writes = device.profile.coil_writes("channel", wanted) if wanted else []
        config = {
            "watchdog_timeout_s": timeout,
            "safe_state_low": safe & 0xFFFF,
            "safe_state_high": safe >> 16,
        }
        current = {
            "watchdog_timeout_s": board.watchdog_timeout_s,
            "safe_state_low": values["safe_state_low"],
            "safe_state_high": values["safe_state_high"],
        }
        if device.health.reapply or any(current[k] != v for k, v in config.items()):
            writes += device.profile.writes(config, sfs)
        return writes

    def _protected(self, device: _Device, write: Write) -> bool:
        """Whether a coil write would open a priority relay without an operator command."""
        if write.table != "coil" or all(write.values):
            return False
        if device.role == "meter":
            cid = device.connection_id
            return cid in self.priority_ids and self._operator.get(cid or "") is not False
        if device.role == "relay_board":
            for group in self.site.relay_groups:
                if group.id in self._priority_groups and (
                    group.relay.gateway,
                    group.relay.unit_id,
                ) == (device.gateway, device.unit):
                    offset = group.relay.coil - write.address
                    if 0 <= offset < len(write.values) and not write.values[offset]:  # noqa: PD011 - a Write, not a DataFrame
                        return True
        return False

    async def _write(
        self, device: _Device, writes: list[Write], now: dt.datetime
    ) -> DeviceFault | None:
        client = self.gateways[device.gateway]
        try:
            for write in writes:
                if self._protected(device, write):
                    log.error(
                        "refusing to open the priority relay of %s without an operator command",
                        device.name,
                    )
                    continue
                if write.table == "coil":
                    error = await client.write_coils(
                        device.unit,
                        write.address,
                        [bool(v) for v in write.values],  # noqa: PD011 - a Write, not a DataFrame
                    )
                else:
                    error = await client.write_registers(
                        device.unit,
                        write.address,
                        [int(v) for v in write.values],  # noqa: PD011 - a Write, not a DataFrame
                    )
                if error is not None:
                    return self._fail(
                        device, now, "exception", f"writing {', '.join(write.points)}: {error}"
                    )
        except TransportError as exc:
            return self._fail(device, now, "transport", str(exc))
        device.health.reapply = False
        device.health.last_write = now
        return None

    def _outputs(
        self,
        now: dt.datetime,
        mode: Mode,
        ok: Mapping[str, _DeviceRead],
        pv: InverterState | None,
        storage: StorageState | None,
    ) -> tuple[list[MeterReading], MeasuredState]:
        """The fast path's readings and measured state (meters are added by :meth:`_measured`)."""
        readings: list[MeterReading] = []
        relays: dict[str, bool] = {}
        for device, values, answers, _ in ok.values():
            if device.role == "bulk":
                m = meter_state(values)
                readings.append(MeterReading(device.name, now, m.import_wh, m.export_wh))
            elif device.role == "relay_board":
                coils = device.profile.coil_values(answers)
                for group in self.site.relay_groups:
                    if (group.relay.gateway, group.relay.unit_id) == (device.gateway, device.unit):
                        relays[group.id] = coils[group.relay.coil]
        if pv is not None:
            readings.append(
                MeterReading("pv_inverter", now, 0, pv.energy_wh % ENERGY_REGISTER_MODULUS_WH)
            )
        bulk = next((r for r in readings if r.meter_id == "bulk_meter"), None)
        if pv is not None and storage is not None and bulk is not None:
            readings.append(self._battery_reading(now, pv.energy_wh, storage.energy_wh, bulk))
        soc = self._soc if self._soc and self._soc[0] == now else None
        measured = MeasuredState(
            time=now,
            mode=mode,
            soc_kwh=soc[2] if soc else None,
            soc_fraction=soc[1] if soc else None,
            pv_kw=pv.power_kw if pv else None,
            battery_kw=storage.power_kw if storage else None,
            load_kw={},
            meters_read=0,
            meters_missing=len(self.site.connections),
            relays_closed=relays,
        )
        return readings, measured

    def _measured(self, fast: MeasuredState) -> MeasuredState:
        """The fast path's state with every meter of the latest sweep of its bus."""
        load = {k.value: 0.0 for k in ConnectionKind}
        relays = dict(fast.relays_closed)
        meters_open: dict[str, str] = {}
        read = 0
        for states in self._meter_states.values():
            for cid, m in states.items():
                read += 1
                load[self.site.connection(cid).kind.value] += m.power_kw
                relays[cid] = m.relay_closed
                if m.trip_status in _METER_OPEN:
                    meters_open[cid] = _METER_OPEN[m.trip_status]
        return dataclasses.replace(
            fast,
            load_kw=load,
            meters_read=read,
            meters_missing=len(self.site.connections) - read,
            relays_closed=relays,
            meters_open=meters_open,
        )

    def _battery_reading(
        self, now: dt.datetime, pv_wh: int, discharged_wh: int, bulk: MeterReading
    ) -> MeterReading:
        """The battery's charge and discharge registers, for settling it as a producer.

        The storage inverter counts only what it delivers (SunSpec 103 ``WH``); what it
        takes follows from the container's AC bus, where PV, discharge and what the
        prosumers send back from the village (bulk export) feed the village (bulk import)
        and the charge: charged = PV + discharged − bulk import + bulk export, all
        cumulative [Wh]. Read at slightly different instants, the difference can dip;
        the register is kept monotone (a dip is counted when the next reading has it).
        """
        raw = pv_wh + discharged_wh - bulk.import_wh + bulk.export_wh
        if self._battery_baseline_wh is None:
            self._battery_baseline_wh = min(raw, 0)  # meters installed with other histories
        charged = max(raw - self._battery_baseline_wh, self._battery_charged_wh)
        self._battery_charged_wh = charged
        return MeterReading(
            "battery_inverter",
            now,
            charged % ENERGY_REGISTER_MODULUS_WH,
            discharged_wh % ENERGY_REGISTER_MODULUS_WH,
        )

    async def run(
        self,
        interval_s: float,
        stop: asyncio.Event | None = None,
        on_cycle: Callable[[CycleResult], Awaitable[None] | None] | None = None,
    ) -> None:
        """Cycle every ``interval_s`` real seconds until ``stop`` is set.

        A cycle that overruns starts the next one at once (no overlap, no burst).
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                result = await self.cycle(wait_for_sweeps=False)
            except Exception:  # a bug must not stop the container's controller
                log.exception("control cycle failed")
            else:
                if on_cycle is not None:
                    outcome = on_cycle(result)
                    if outcome is not None:
                        await outcome
            wait = max(interval_s - (loop.time() - started), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    async def close(self) -> None:
        """Stop the sweeps under way, close every gateway connection."""
        for task in self._sweeps.values():
            task.cancel()
        if self._sweeps:
            await asyncio.wait(list(self._sweeps.values()))
        self._sweeps.clear()
        for client in self.gateways.values():
            await client.close()
