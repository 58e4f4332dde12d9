"""The control cycle: apply a dispatch schedule to the container, read it, fail safe.

Each :meth:`Controller.cycle`

1. reads every device that is not backed off, all gateways concurrently (each meter in
   one block read, its relay state included); failures are classified as transport
   failures, Modbus exception responses or garbage values, logged as such, and the
   device is backed off exponentially;
2. decides the mode (:mod:`controllers.failsafe`) from the locally kept schedule (the
   next 24 h) and the age of the last good state of charge;
3. writes only what differs from the read-back, plus every timed setpoint at half the
   device timeout, plus everything after a reconnect or a device's recovery; the
   devices' own revert timers and the relay board's watchdog are programmed to the
   device timeout, so a controller that dies leaves devices that fall back by
   themselves;
4. returns :class:`CycleResult`: :class:`~microgrid.readings.MeterReading` s from the
   energy registers (for settlement) and the :class:`MeasuredState` (for dispatch).

A priority connection's relay is never opened, whatever the schedule, credit or mode
say; only :meth:`Controller.operator_switch` can do it, and it is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
from controllers.events import DeviceEvents
from controllers.failsafe import FailsafeSettings, Mode, Targets, decide_mode, targets
from controllers.modbus import ExceptionResponse, GatewayClient, ModbusSettings, TransportError
from controllers.registers import load_register_map
from dispatch.setpoints import PeriodSetpoints, Setpoints
from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.site import ConnectionKind, Site
from settlement.alarms import Alarm

__all__ = [
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
    """

    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    failsafe: FailsafeSettings = field(default_factory=FailsafeSettings)
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 60.0
    schedule_horizon: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """A device that failed this cycle: which, how (transport / exception / garbage), why."""

    device: str
    kind: FaultKind
    message: str


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
        the meters read this cycle.
    meters_read, meters_missing : int
        Meters read this cycle and meters not read.
    relays_closed : dict of str to bool
        Read-back state of every switchable unit (household groups, connections).
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


@dataclass(frozen=True, slots=True)
class CycleResult:
    """Outcome of one control cycle."""

    time: dt.datetime
    mode: Mode
    readings: list[MeterReading]
    measured: MeasuredState
    faults: list[DeviceFault]
    writes: int
    alarms: list[Alarm] = field(default_factory=list)


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
        self._last_meter: dict[str, tuple[dt.datetime, int]] = {}
        self._devices = self._build_devices()
        self.household_groups = tuple(g.id for g in site.relay_groups)
        self.businesses = tuple(c.id for c in site.businesses)
        self.priority_ids = frozenset(c.id for c in site.priority_users)
        groups_with_priority = {c.relay_group for c in site.priority_users if c.relay_group}
        self._priority_groups = frozenset(groups_with_priority)

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
        energy = int(values["import_wh"] or 0)
        last = self._last_meter.get(device.name)
        if last is not None:
            elapsed_h = max((now - last[0]).total_seconds(), 0.0) / 3600
            delta = (energy - last[1]) % ENERGY_REGISTER_MODULUS_WH
            if delta > _METER_POWER_KW_MAX * 1000 * elapsed_h + 10:
                msg = (
                    f"meter {device.name!r}: import_wh jumped by {delta} Wh in "
                    f"{elapsed_h * 3600:.0f} s (from {last[1]} to {energy}); more than "
                    f"{_METER_POWER_KW_MAX:g} kW could deliver"
                )
                raise GarbageValueError(msg)
        self._last_meter[device.name] = (now, energy)

    def _period(self, now: dt.datetime) -> PeriodSetpoints | None:
        if self._setpoints is None:
            return None
        return self._setpoints.at(pd.Timestamp(now), pd.Timedelta(self._step))

    async def cycle(self) -> CycleResult:
        """Run one control cycle (read → decide → write); never raises for device faults."""
        now = self.clock.now()
        active = [d for d in self._devices if not self._backed_off(d, now)]
        results = await asyncio.gather(*(self._read(d, now) for d in active))
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
        )
        self._units_on = target.units_on

        jobs: list[tuple[_Device, list[Write]]] = []
        for device, values, answers, sfs in ok.values():
            writes = self._writes_for(device, values, answers, sfs, target, now)
            if writes:
                jobs.append((device, writes))
        write_results = await asyncio.gather(*(self._write(d, w, now) for d, w in jobs))
        faults += [f for f in write_results if isinstance(f, DeviceFault)]
        written = sum(len(w) for (_, w), r in zip(jobs, write_results, strict=True) if r is None)

        readings, measured = self._outputs(now, mode, ok, pv, storage)
        alarms = self._events(now, ok, storage)
        return CycleResult(now, mode, readings, measured, faults, written, alarms)

    def _events(
        self, now: dt.datetime, ok: Mapping[str, _DeviceRead], storage: StorageState | None
    ) -> list[Alarm]:
        """Trips, exhausted budgets and inverter faults since the last read, as alarms."""
        alarms = self.events.inverter(storage.faulted, storage.empty, now) if storage else []
        for device, values, _, _ in ok.values():
            if device.role == "meter" and device.connection_id is not None:
                m = meter_state(values)
                alarms += self.events.meter(
                    device.connection_id, m.trip_count, m.budget_exhausted_count,
                    m.power_limit_w, now,
                )  # fmt: skip
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
            # 0 in the register means "no limit" (inf here); an allotment of 0 is at least
            # 1 W (the relay is open then anyway).
            limit_kw = target.power_limit_kw[cid]
            limit_w = 0 if math.isinf(limit_kw) else max(round(limit_kw * 1000), 1)
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
        readings: list[MeterReading] = []
        load = {k.value: 0.0 for k in ConnectionKind}
        relays: dict[str, bool] = {}
        read = 0
        for device, values, answers, _ in ok.values():
            if device.role in ("meter", "bulk"):
                m = meter_state(values)
                readings.append(MeterReading(device.name, now, m.import_wh, m.export_wh))
                if device.connection_id is not None:
                    read += 1
                    load[self.site.connection(device.connection_id).kind.value] += m.power_kw
                    relays[device.connection_id] = m.relay_closed
            elif device.role == "relay_board":
                coils = device.profile.coil_values(answers)
                for group in self.site.relay_groups:
                    if (group.relay.gateway, group.relay.unit_id) == (device.gateway, device.unit):
                        relays[group.id] = coils[group.relay.coil]
        if pv is not None:
            readings.append(
                MeterReading("pv_inverter", now, 0, pv.energy_wh % ENERGY_REGISTER_MODULUS_WH)
            )
        soc = self._soc if self._soc and self._soc[0] == now else None
        measured = MeasuredState(
            time=now,
            mode=mode,
            soc_kwh=soc[2] if soc else None,
            soc_fraction=soc[1] if soc else None,
            pv_kw=pv.power_kw if pv else None,
            battery_kw=storage.power_kw if storage else None,
            load_kw=load,
            meters_read=read,
            meters_missing=len(self.site.connections) - read,
            relays_closed=relays,
        )
        return readings, measured

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
                result = await self.cycle()
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
        """Close every gateway connection."""
        for client in self.gateways.values():
            await client.close()
