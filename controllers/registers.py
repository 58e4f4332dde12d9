"""Register maps as data: points (address, type, scale, unit, access, sign) loaded from files.

A :class:`RegisterMap` describes what one kind of device exposes over Modbus. Maps
live in ``controllers/maps/*.toml``. A plain map lists its points; a SunSpec map names
the SunSpec models it carries and the point layout is generated from the model
definitions that ship with pysunspec2 (``sunspec2/models/json``), so that the map and
the SunSpec standard cannot drift apart. Either kind says which points LastWatt *owns*
(may write) and the plausible range of measured values; anything outside the range is
garbage and is rejected by the codec (:mod:`controllers.codec`) with the point named.

Examples
--------
>>> meter = load_register_map("lastwatt_meter")
>>> meter.point("import_wh").address, meter.point("import_wh").type.value
(0, 'uint32')
>>> inverter = load_register_map("sunspec_inverter")
>>> point = inverter.point("123.WMaxLimPct")
>>> point.address, point.scale_factor, point.owned
(40155, '123.WMaxLimPct_SF', True)
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "MAPS_DIR",
    "SUNSPEC_MARKER",
    "Point",
    "PointType",
    "RegisterMap",
    "RegisterMapError",
    "builtin_map_names",
    "load_register_map",
]

MAPS_DIR = Path(__file__).resolve().parent / "maps"
"""Directory of the built-in register maps."""

SUNSPEC_MARKER = (0x5375, 0x6E53)
"""``"SunS"``: the two registers at a SunSpec device's base address."""

SUNSPEC_END_ID = 0xFFFF
"""Model id of the end marker after the last SunSpec model."""


class RegisterMapError(ValueError):
    """A register map file is malformed, or a point or map does not exist."""


class PointType(enum.StrEnum):
    """Encoding of a point in 16-bit registers (big-endian words, as SunSpec)."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    ACC32 = "acc32"  # SunSpec accumulator: unsigned 32-bit, rolls over
    ENUM16 = "enum16"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    SUNSSF = "sunssf"  # SunSpec scale factor: signed power of ten
    STRING = "string"
    PAD = "pad"
    COIL = "coil"

    @property
    def words(self) -> int:
        """Registers per value (strings: per the point's size)."""
        return 2 if self in _WIDE else 1

    @property
    def signed(self) -> bool:
        """Whether the raw value is two's complement."""
        return self in (PointType.INT16, PointType.INT32, PointType.SUNSSF)


_WIDE = frozenset({PointType.UINT32, PointType.INT32, PointType.ACC32, PointType.BITFIELD32})


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a register map.

    Attributes
    ----------
    name : str
        Name in the map (SunSpec points are ``"<model>.<point>"``, e.g. ``"124.InWRte"``).
    address : int
        First register (or coil) address, zero-based as on the wire.
    type : PointType
        Encoding.
    size : int
        Registers (or coils) occupied.
    table : {"holding", "coil"}
        Which Modbus table the point lives in.
    access : {"r", "rw"}
        What the device allows.
    owned : bool
        Whether LastWatt may write it; the controller never writes a point it does not own.
    unit : str
        Engineering unit of the decoded value, e.g. ``"W"``, ``"Wh"``, ``"%"``.
    scale : float
        Fixed multiplier from raw to engineering units [unit per count].
    scale_factor : str or None
        Name of the SunSpec scale-factor point (power of ten) that also applies.
    sign : int
        +1, or −1 where the device's sign is the opposite of ours (DESIGN.md §4).
    value_range : tuple of float or None
        Plausible decoded values (inclusive); a value outside is garbage.
    static_value : int or None
        Fixed raw value the device always reports (SunSpec model ids and lengths).
    description : str
        What the point means.
    """

    name: str
    address: int
    type: PointType
    size: int = 1
    table: Literal["holding", "coil"] = "holding"
    access: Literal["r", "rw"] = "r"
    owned: bool = False
    unit: str = ""
    scale: float = 1.0
    scale_factor: str | None = None
    sign: int = 1
    value_range: tuple[float, float] | None = None
    static_value: int | None = None
    description: str = ""

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.size

    @property
    def writable(self) -> bool:
        """Whether LastWatt may write it: the device allows it and we own it."""
        return self.access == "rw" and self.owned


@dataclass(frozen=True)
class RegisterMap:
    """The points a kind of device exposes.

    Attributes
    ----------
    name : str
        Map name, as the site file refers to it (``register_map = "sunspec_inverter"``).
    description : str
        What device it describes.
    points : mapping of str to Point
        Points by name.
    sunspec : bool
        Whether SunSpec "not implemented" sentinels apply (e.g. 0x8000 for int16).
    base_address : int or None
        SunSpec base address (where ``"SunS"`` sits).
    models : tuple of int
        SunSpec models, in device order.
    """

    name: str
    description: str
    points: Mapping[str, Point]
    sunspec: bool = False
    base_address: int | None = None
    models: tuple[int, ...] = field(default=())

    def point(self, name: str) -> Point:
        """A point by name.

        Raises
        ------
        RegisterMapError
            If the map has no such point; the message lists close names.
        """
        try:
            return self.points[name]
        except KeyError:
            close = [p for p in self.points if name.split(".")[-1].lower() in p.lower()][:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            msg = f"register map {self.name!r} has no point {name!r}{hint}"
            raise RegisterMapError(msg) from None

    def holding_points(self) -> list[Point]:
        """Holding-register points in address order."""
        return sorted(
            (p for p in self.points.values() if p.table == "holding"), key=lambda p: p.address
        )

    def coil_points(self) -> list[Point]:
        """Coil points in address order."""
        return sorted(
            (p for p in self.points.values() if p.table == "coil"), key=lambda p: p.address
        )

    def span(self, names: Iterable[str]) -> tuple[int, int]:
        """The smallest block ``(start, count)`` holding every named point (one read).

        Scale-factor points the named points refer to are included.

        Examples
        --------
        >>> load_register_map("lastwatt_meter").span(["import_wh", "relay_state"])
        (0, 6)
        """
        points = [self.point(n) for n in names]
        points += [self.point(p.scale_factor) for p in points if p.scale_factor]
        start = min(p.address for p in points)
        return start, max(p.end for p in points) - start


@functools.cache
def load_register_map(name: str) -> RegisterMap:
    """Load a built-in map by name, or a map file by path.

    Parameters
    ----------
    name : str
        A built-in map name (see :func:`builtin_map_names`) or a path to a ``.toml`` file.

    Raises
    ------
    RegisterMapError
        If the map does not exist or a point is malformed; the message names it.
    """
    path = Path(name) if name.endswith(".toml") else MAPS_DIR / f"{name}.toml"
    if not path.is_file():
        msg = (
            f"unknown register map {name!r}; built-in maps: {', '.join(builtin_map_names())} "
            "(or pass the path of a .toml map file)"
        )
        raise RegisterMapError(msg)
    with path.open("rb") as handle:
        document = tomllib.load(handle)
    try:
        if document.get("kind") == "sunspec":
            return _sunspec_map(document)
        return _plain_map(document)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RegisterMapError):
            raise
        msg = f"register map {path}: {exc}"
        raise RegisterMapError(msg) from exc


def builtin_map_names() -> list[str]:
    """Names of the maps in ``controllers/maps``."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))


def _plain_map(document: Mapping[str, Any]) -> RegisterMap:
    name = str(document["name"])
    points: dict[str, Point] = {}
    for table, key in (("holding", "points"), ("coil", "coils")):
        for i, entry in enumerate(document.get(key, [])):
            where = f"register map {name!r} {key}[{i}] ({entry.get('name', '?')!r})"
            type_ = PointType.COIL if table == "coil" else _point_type(entry.get("type"), where)
            size = int(entry.get("count", 1)) if table == "coil" else type_.words
            low, high = entry.get("min"), entry.get("max")
            access = entry.get("access", "r")
            if access not in ("r", "rw"):
                msg = f"{where}: access must be 'r' or 'rw', got {access!r}"
                raise RegisterMapError(msg)
            sign = int(entry.get("sign", 1))
            if sign not in (1, -1):
                msg = f"{where}: sign must be 1 or -1, got {sign}"
                raise RegisterMapError(msg)
            point = Point(
                name=str(entry["name"]),
                address=_address(entry.get("address"), where),
                type=type_,
                size=size,
                table=table,  # type: ignore[arg-type]
                access=access,
                owned=bool(entry.get("owned", False)),
                unit=str(entry.get("unit", "")),
                scale=float(entry.get("scale", 1.0)),
                sign=sign,
                value_range=None if low is None or high is None else (float(low), float(high)),
                description=str(entry.get("description", "")),
            )
            if point.owned and point.access != "rw":
                msg = f"{where}: owned but read-only; set access = 'rw' or drop owned"
                raise RegisterMapError(msg)
            points[point.name] = point
    _check_overlaps(name, points.values())
    return RegisterMap(name=name, description=str(document.get("description", "")), points=points)


def _point_type(value: object, where: str) -> PointType:
    try:
        return PointType(str(value))
    except ValueError:
        known = ", ".join(t.value for t in PointType if t is not PointType.COIL)
        msg = f"{where}: unknown type {value!r}; use one of {known}"
        raise RegisterMapError(msg) from None


def _address(value: object, where: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= 65535:
        msg = f"{where}: address must be an integer in 0–65535, got {value!r}"
        raise RegisterMapError(msg)
    return value


def _check_overlaps(name: str, points: Iterable[Point]) -> None:
    for table in ("holding", "coil"):
        ordered = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        for a, b in itertools.pairwise(ordered):
            if b.address < a.end:
                msg = (
                    f"register map {name!r}: points {a.name!r} ({a.address}–{a.end - 1}) and "
                    f"{b.name!r} (from {b.address}) overlap; fix their addresses"
                )
                raise RegisterMapError(msg)


def sunspec_model_definition(model_id: int) -> dict[str, Any]:
    """The model definition pysunspec2 ships (``sunspec2/models/json/model_<id>.json``).

    Raises
    ------
    RegisterMapError
        If pysunspec2 has no definition of that model.
    """
    resource = importlib.resources.files("sunspec2").joinpath(f"models/json/model_{model_id}.json")
    if not resource.is_file():
        msg = f"SunSpec model {model_id} is not among pysunspec2's model definitions"
        raise RegisterMapError(msg)
    result: dict[str, Any] = json.loads(resource.read_text())
    return result


def _sunspec_map(document: Mapping[str, Any]) -> RegisterMap:
    name = str(document["name"])
    base = _address(document.get("base_address", 40000), f"register map {name!r}")
    owned = set(document.get("owned", []))
    ranges = {k: (float(v[0]), float(v[1])) for k, v in document.get("ranges", {}).items()}
    points: dict[str, Point] = {
        "SunS": Point("SunS", base, PointType.UINT32, 2, static_value=0x53756E53),
    }
    address = base + 2
    models = tuple(int(m) for m in document["models"])
    for model_id in models:
        group = sunspec_model_definition(model_id)["group"]
        if group.get("groups"):
            msg = f"register map {name!r}: model {model_id} has repeating groups; not supported"
            raise RegisterMapError(msg)
        length = sum(int(p["size"]) for p in group["points"]) - 2
        for entry in group["points"]:
            key = f"{model_id}.{entry['name']}"
            type_ = PointType(entry["type"])
            static = entry.get("value") if entry["name"] == "ID" else None
            if entry["name"] == "L":
                static = length
            points[key] = Point(
                name=key,
                address=address,
                type=type_,
                size=int(entry["size"]),
                access="rw" if entry.get("access") == "RW" else "r",
                owned=key in owned,
                unit=str(entry.get("units", "")).strip(),
                scale_factor=f"{model_id}.{entry['sf']}" if "sf" in entry else None,
                value_range=ranges.get(key),
                static_value=static,
                description=str(entry.get("desc", "")),
            )
            address += int(entry["size"])
    points["end.ID"] = Point("end.ID", address, PointType.UINT16, static_value=SUNSPEC_END_ID)
    points["end.L"] = Point("end.L", address + 1, PointType.UINT16, static_value=0)
    unknown = sorted((owned | set(ranges)) - set(points))
    if unknown:
        msg = f"register map {name!r}: owned/ranges name unknown points {', '.join(unknown)}"
        raise RegisterMapError(msg)
    not_writable = sorted(k for k in owned if points[k].access != "rw")
    if not_writable:
        msg = f"register map {name!r}: owned points are read-only: {', '.join(not_writable)}"
        raise RegisterMapError(msg)
    return RegisterMap(
        name=name,
        description=str(document.get("description", "")),
        points=points,
        sunspec=True,
        base_address=base,
        models=models,
    )
