"""Device capabilities over register maps: what to read, how to decode it, what to write.

Pure: a :class:`DeviceProfile` turns a map and a role's point names into block reads
(at most 125 registers each, the Modbus limit) and decodes their answers; it turns
setpoints into register writes and refuses any point LastWatt does not own
(:class:`OwnershipError`). The role helpers (:func:`inverter_state`,
:func:`storage_state`, :func:`meter_state`, :func:`relay_board_state`) normalise vendor
names, units and signs into ours at the edge (kW, kWh, fractions, discharge positive).

Examples
--------
>>> from controllers.registers import load_register_map
>>> profile = meter_profile(load_register_map("lastwatt_meter"))
>>> profile.blocks
(Block(table='holding', address=0, count=16),)
>>> profile.writes({"relay": True}, {})
[Write(table='coil', address=0, values=(True,), points=('relay',))]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from controllers.codec import GarbageValueError, decode_block, encode, raw_from_words
from controllers.registers import PointType, RegisterMap

__all__ = [
    "MAX_BLOCK_REGISTERS",
    "Block",
    "DeviceProfile",
    "InverterState",
    "MeterState",
    "OwnershipError",
    "RelayBoardState",
    "StorageState",
    "Write",
    "inverter_profile",
    "inverter_state",
    "meter_profile",
    "meter_state",
    "relay_board_profile",
    "relay_board_state",
    "storage_profile",
    "storage_state",
]

MAX_BLOCK_REGISTERS = 125
"""Most registers one read may ask for (Modbus function 3)."""

Table = Literal["holding", "coil"]


class OwnershipError(PermissionError):
    """An attempt to write a point LastWatt does not own (a bug, never a device fault)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers (or coils) from ``address``."""

    table: Table
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class Write:
    """One write request and the points it sets (for logs)."""

    table: Table
    address: int
    values: tuple[int, ...] | tuple[bool, ...]
    points: tuple[str, ...]


class DeviceProfile:
    """The points one role reads from a map, grouped into as few block reads as possible.

    Parameters
    ----------
    register_map : RegisterMap
        The device's map.
    points : sequence of str
        Holding-register points the role reads (their scale factors are added).
    coils : sequence of str
        Coil points the role reads.
    """

    def __init__(
        self, register_map: RegisterMap, points: Sequence[str], coils: Sequence[str] = ()
    ) -> None:
        self.map = register_map
        self.points = tuple(points)
        self.coils = tuple(coils)
        wanted = [register_map.point(n) for n in points]
        wanted += [register_map.point(p.scale_factor) for p in wanted if p.scale_factor]
        blocks: list[Block] = []
        for point in sorted(set(wanted), key=lambda p: p.address):
            last = blocks[-1] if blocks else None
            if last is not None and point.end - last.address <= MAX_BLOCK_REGISTERS:
                blocks[-1] = Block(
                    "holding", last.address, max(last.count, point.end - last.address)
                )
            else:
                blocks.append(Block("holding", point.address, point.size))
        for name in coils:
            point = register_map.point(name)
            blocks.append(Block("coil", point.address, point.size))
        self.blocks = tuple(blocks)

    def decode(
        self, answers: Mapping[Block, Sequence[int] | Sequence[bool]]
    ) -> dict[str, float | None]:
        """Decoded values of the role's holding points, by name.

        Raises
        ------
        GarbageValueError
            If a point holds garbage (the message names it).
        """
        out: dict[str, float | None] = {}
        for block in self.blocks:
            if block.table != "holding":
                continue
            words = [int(w) for w in answers[block]]
            names = [
                n
                for n in self.points
                if block.address <= self.map.point(n).address < block.address + block.count
            ]
            out |= decode_block(self.map, names, block.address, words)
        return out

    def coil_values(self, answers: Mapping[Block, Sequence[int] | Sequence[bool]]) -> list[bool]:
        """The coils read, in address order of the role's coil points."""
        values: list[bool] = []
        for block in self.blocks:
            if block.table == "coil":
                values += [bool(v) for v in answers[block]]
        return values

    def scale_factors(
        self, answers: Mapping[Block, Sequence[int] | Sequence[bool]]
    ) -> dict[str, int]:
        """Raw scale-factor values read with the blocks (needed to encode setpoints)."""
        out: dict[str, int] = {}
        for block in self.blocks:
            if block.table != "holding":
                continue
            for point in self.map.points.values():
                if (
                    point.type is PointType.SUNSSF
                    and block.address <= point.address < block.address + block.count
                ):
                    offset = point.address - block.address
                    out[point.name] = raw_from_words(point, [int(answers[block][offset])])
        return out

    def writes(
        self, values: Mapping[str, float | bool], scale_factors: Mapping[str, int]
    ) -> list[Write]:
        """Register and coil writes setting ``values``; adjacent registers share a write.

        Raises
        ------
        OwnershipError
            If a point is read-only or not owned by LastWatt.
        GarbageValueError
            If a scaled point's scale factor is unknown (read the device first).
        """
        encoded: list[tuple[int, list[int], str]] = []
        writes: list[Write] = []
        for name, value in values.items():
            point = self.map.point(name)
            if not point.writable:
                msg = (
                    f"refusing to write {name!r} of register map {self.map.name!r}: "
                    f"{'not owned by LastWatt' if point.access == 'rw' else 'read-only'}"
                )
                raise OwnershipError(msg)
            if point.table == "coil":
                writes.append(Write("coil", point.address, (bool(value),), (name,)))
                continue
            sf = None
            if point.scale_factor is not None:
                if point.scale_factor not in scale_factors:
                    msg = (
                        f"cannot encode {name!r}: scale factor {point.scale_factor!r} not read yet"
                    )
                    raise GarbageValueError(msg)
                sf = scale_factors[point.scale_factor]
            encoded.append((point.address, encode(point, float(value), sf), name))
        encoded.sort()
        for address, words, name in encoded:
            last = writes[-1] if writes and writes[-1].table == "holding" else None
            if last is not None and last.address + len(last.values) == address:
                writes[-1] = Write(
                    "holding",
                    last.address,
                    tuple(int(v) for v in last.values) + tuple(words),
                    (*last.points, name),
                )
            else:
                writes.append(Write("holding", address, tuple(words), (name,)))
        return writes

    def coil_writes(self, coil_point: str, wanted: Mapping[int, bool]) -> list[Write]:
        """Writes setting channels ``{offset: closed}`` of a multi-coil point, in runs.

        Only the listed channels are written, never the others on the same device.

        Raises
        ------
        OwnershipError
            If the coil point is not owned.
        """
        point = self.map.point(coil_point)
        if not point.writable:
            msg = f"refusing to write coils {coil_point!r} of {self.map.name!r}: not owned"
            raise OwnershipError(msg)
        writes: list[Write] = []
        run: list[tuple[int, bool]] = []
        for offset in sorted(wanted):
            if not 0 <= offset < point.size:
                msg = f"channel {offset} outside {coil_point!r} (0–{point.size - 1})"
                raise ValueError(msg)
            if run and offset != run[-1][0] + 1:
                writes.append(_coil_run(point.address, run, coil_point))
                run = []
            run.append((offset, wanted[offset]))
        if run:
            writes.append(_coil_run(point.address, run, coil_point))
        return writes


def _coil_run(base: int, run: list[tuple[int, bool]], name: str) -> Write:
    return Write("coil", base + run[0][0], tuple(v for _, v in run), (name,))


# --- roles --------------------------------------------------------------------------
INVERTER_POINTS = (
    "103.W",
    "103.WH",
    "120.WRtg",
    "123.WMaxLimPct",
    "123.WMaxLimPct_RvrtTms",
    "123.WMaxLim_Ena",
)
STORAGE_POINTS = (
    "103.W",
    "103.WH",
    "103.St",
    "124.ChaSt",
    "120.WHRtg",
    "124.WChaMax",
    "124.ChaState",
    "124.StorCtl_Mod",
    "124.InWRte",
    "124.OutWRte",
    "124.InOutWRte_RvrtTms",
)
METER_POINTS = (
    "import_wh",
    "export_wh",
    "power_w",
    "relay_state",
    "power_limit_w",
    "energy_budget_wh",
    "budget_remaining_wh",
    "trip_status",
    "trip_count",
    "budget_exhausted_count",
)
RELAY_BOARD_POINTS = ("watchdog_timeout_s", "safe_state_low", "safe_state_high")


def inverter_profile(register_map: RegisterMap) -> DeviceProfile:
    """What the controller reads from a PV inverter (SunSpec 103, 120, 123)."""
    return DeviceProfile(register_map, INVERTER_POINTS)


def storage_profile(register_map: RegisterMap) -> DeviceProfile:
    """What the controller reads from a battery inverter (SunSpec 103, 120, 124)."""
    return DeviceProfile(register_map, STORAGE_POINTS)


def meter_profile(register_map: RegisterMap) -> DeviceProfile:
    """What the controller reads from an energy meter: one block, relay state included."""
    return DeviceProfile(register_map, METER_POINTS)


def relay_board_profile(register_map: RegisterMap) -> DeviceProfile:
    """What the controller reads from a relay board: watchdog settings and the coils."""
    return DeviceProfile(register_map, RELAY_BOARD_POINTS, coils=("channel",))


def _required(values: Mapping[str, float | None], name: str, device: str) -> float:
    value = values[name]
    if value is None:
        msg = f"{device}: point {name!r} is not implemented by the device; LastWatt needs it"
        raise GarbageValueError(msg)
    return value


@dataclass(frozen=True, slots=True)
class InverterState:
    """A PV inverter as read, in our units.

    Attributes
    ----------
    power_kw : float
        AC output [kW].
    energy_wh : int
        Cumulative AC energy [Wh] (32-bit accumulator).
    rating_kw : float
        Continuous AC rating [kW].
    limit_pct : float or None
        Active power limit [% of rating]; None when the limit is disabled.
    revert_s : float
        Limit revert timer [s]; 0 = none.
    """

    power_kw: float
    energy_wh: int
    rating_kw: float
    limit_pct: float | None
    revert_s: float


def inverter_state(values: Mapping[str, float | None]) -> InverterState:
    """Interpret decoded inverter points."""
    enabled = values["123.WMaxLim_Ena"] == 1
    return InverterState(
        power_kw=_required(values, "103.W", "PV inverter") / 1000.0,
        energy_wh=int(values["103.WH"] or 0),
        rating_kw=_required(values, "120.WRtg", "PV inverter") / 1000.0,
        limit_pct=values["123.WMaxLimPct"] if enabled else None,
        revert_s=values["123.WMaxLimPct_RvrtTms"] or 0.0,
    )


@dataclass(frozen=True, slots=True)
class StorageState:
    """A battery inverter as read, in our units.

    Attributes
    ----------
    power_kw : float
        AC power [kW], discharge positive.
    energy_wh : int
        Cumulative AC output energy [Wh].
    soc_fraction : float
        State of charge [-].
    capacity_kwh : float
        Energy rating [kWh].
    rate_kw_max : float
        Charge/discharge rating the rates are relative to [kW].
    charge_limit_pct, discharge_limit_pct : float or None
        Active limits [% of rating]; None when not enabled in ``StorCtl_Mod``.
    revert_s : float
        Limit revert timer [s].
    faulted : bool
        The inverter is in fault (tripped: the grid is dark).
    empty : bool
        The battery reports empty (a fault then is a low-battery cut-off).
    """

    power_kw: float
    energy_wh: int
    soc_fraction: float
    capacity_kwh: float
    rate_kw_max: float
    charge_limit_pct: float | None
    discharge_limit_pct: float | None
    revert_s: float
    faulted: bool = False
    empty: bool = False

    @property
    def soc_kwh(self) -> float:
        """State of charge [kWh]."""
        return self.soc_fraction * self.capacity_kwh


def storage_state(values: Mapping[str, float | None]) -> StorageState:
    """Interpret decoded storage points (StorCtl_Mod bit 0 charge, bit 1 discharge)."""
    mode = int(values["124.StorCtl_Mod"] or 0)
    return StorageState(
        power_kw=_required(values, "103.W", "battery inverter") / 1000.0,
        energy_wh=int(values["103.WH"] or 0),
        soc_fraction=_required(values, "124.ChaState", "battery inverter") / 100.0,
        capacity_kwh=_required(values, "120.WHRtg", "battery inverter") / 1000.0,
        rate_kw_max=_required(values, "124.WChaMax", "battery inverter") / 1000.0,
        charge_limit_pct=values["124.InWRte"] if mode & 1 else None,
        discharge_limit_pct=values["124.OutWRte"] if mode & 2 else None,
        revert_s=values["124.InOutWRte_RvrtTms"] or 0.0,
        # SunSpec 103 St 7 = FAULT; 124 ChaSt 2 = EMPTY.
        faulted=values.get("103.St") == 7,
        empty=values.get("124.ChaSt") == 2,
    )


@dataclass(frozen=True, slots=True)
class MeterState:
    """A meter as read: cumulative registers [Wh], power [kW], relay state, protection.

    Attributes
    ----------
    import_wh, export_wh : int
        Cumulative energy registers [Wh].
    power_kw : float
        Instantaneous power [kW].
    relay_closed : bool
        Relay state.
    power_limit_w, energy_budget_wh : int
        The limit and daily budget the meter enforces [W, Wh]; 0 = none.
    budget_remaining_wh : int
        Budget left today [Wh] (2**32 − 1 without a budget).
    trip_status : int
        0 normal, 1 open after a power-limit trip, 2 budget exhausted.
    trip_count, budget_exhausted_count : int
        Event counters (16-bit, rolling over).
    """

    import_wh: int
    export_wh: int
    power_kw: float
    relay_closed: bool
    power_limit_w: int = 0
    energy_budget_wh: int = 0
    budget_remaining_wh: int = 0
    trip_status: int = 0
    trip_count: int = 0
    budget_exhausted_count: int = 0


def meter_state(values: Mapping[str, float | None]) -> MeterState:
    """Interpret decoded meter points."""
    return MeterState(
        import_wh=int(_required(values, "import_wh", "meter")),
        export_wh=int(_required(values, "export_wh", "meter")),
        power_kw=_required(values, "power_w", "meter") / 1000.0,
        relay_closed=values["relay_state"] == 1,
        power_limit_w=int(values.get("power_limit_w") or 0),
        energy_budget_wh=int(values.get("energy_budget_wh") or 0),
        budget_remaining_wh=int(values.get("budget_remaining_wh") or 0),
        trip_status=int(values.get("trip_status") or 0),
        trip_count=int(values.get("trip_count") or 0),
        budget_exhausted_count=int(values.get("budget_exhausted_count") or 0),
    )


@dataclass(frozen=True, slots=True)
class RelayBoardState:
    """A relay board as read: channel states, watchdog timeout [s], safe pattern."""

    closed: tuple[bool, ...]
    watchdog_timeout_s: float
    safe_closed: tuple[bool, ...]


def relay_board_state(values: Mapping[str, float | None], coils: Sequence[bool]) -> RelayBoardState:
    """Interpret decoded relay-board points and coils."""
    low = int(values["safe_state_low"] or 0)
    high = int(values["safe_state_high"] or 0)
    pattern = low | (high << 16)
    return RelayBoardState(
        closed=tuple(coils),
        watchdog_timeout_s=values["watchdog_timeout_s"] or 0.0,
        safe_closed=tuple(bool(pattern >> i & 1) for i in range(len(coils))),
    )
