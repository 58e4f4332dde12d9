"""Pure register codecs: raw 16-bit words ↔ engineering values of a :class:`Point`.

Decoding applies, in order: the SunSpec "not implemented" sentinel (→ ``None``), two's
complement, the point's fixed scale and SunSpec scale factor (10**sf), its sign, and its
plausible range (outside → :class:`GarbageValueError`, naming the point). Encoding is
the exact inverse and refuses values that do not fit the register.

Examples
--------
>>> from controllers.registers import Point, PointType
>>> limit = Point("123.WMaxLimPct", 40155, PointType.UINT16, scale_factor="123.WMaxLimPct_SF")
>>> encode(limit, 62.5, scale_factor=-1)
[625]
>>> decode(limit, [625], scale_factor=-1)
62.5
>>> decode(Point("W", 0, PointType.INT16), [0xFFFE])
-2.0
>>> decode(Point("W", 0, PointType.INT16), [0x8000], sunspec=True) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

from controllers.registers import Point, PointType, RegisterMap

__all__ = [
    "GarbageValueError",
    "decode",
    "decode_block",
    "encode",
    "raw_from_words",
    "words_from_raw",
]

_NOT_IMPLEMENTED = {
    PointType.INT16: 0x8000,
    PointType.UINT16: 0xFFFF,
    PointType.ENUM16: 0xFFFF,
    PointType.BITFIELD16: 0xFFFF,
    PointType.SUNSSF: 0x8000,
    PointType.INT32: 0x80000000,
    PointType.UINT32: 0xFFFFFFFF,
    PointType.BITFIELD32: 0xFFFFFFFF,
}
# SunSpec scale factors are limited to −10…10 by the standard.
_SF_RANGE = (-10, 10)


class GarbageValueError(ValueError):
    """A register holds a value the point cannot have (out of range, bad scale factor).

    The device answered, so this is not a transport failure; it is treated like a
    device fault (the value is not used, the device is backed off).
    """


def raw_from_words(point: Point, words: Sequence[int]) -> int:
    """The raw integer of a 1- or 2-word point (big-endian words, two's complement)."""
    if point.type.words == 2:
        raw = (words[0] << 16) | words[1]
        bits = 32
    else:
        raw = words[0]
        bits = 16
    if point.type.signed and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    return raw


def words_from_raw(point: Point, raw: int) -> list[int]:
    """Encode a raw integer into the point's words.

    Raises
    ------
    ValueError
        If the integer does not fit the point's type.
    """
    bits = 16 * point.type.words
    low, high = (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if point.type.signed else (0, (1 << bits) - 1)
    )
    if not low <= raw <= high:
        msg = (
            f"point {point.name!r}: raw value {raw} does not fit {point.type.value} [{low}, {high}]"
        )
        raise ValueError(msg)
    raw &= (1 << bits) - 1
    return [raw >> 16, raw & 0xFFFF] if bits == 32 else [raw]


def _factor(point: Point, scale_factor: int | None) -> float:
    factor = point.scale * point.sign
    if point.scale_factor is not None:
        if scale_factor is None:
            msg = f"point {point.name!r} needs its scale factor {point.scale_factor!r}"
            raise GarbageValueError(msg)
        if not _SF_RANGE[0] <= scale_factor <= _SF_RANGE[1]:
            msg = (
                f"point {point.name!r}: scale factor {point.scale_factor!r} = {scale_factor} is "
                f"outside {_SF_RANGE}; the device reports garbage"
            )
            raise GarbageValueError(msg)
        factor *= 10.0**scale_factor
    return factor


def decode(
    point: Point, words: Sequence[int], scale_factor: int | None = None, *, sunspec: bool = False
) -> float | None:
    """Decode a numeric point into engineering units.

    Parameters
    ----------
    point : Point
        The point.
    words : sequence of int
        Its registers, ``point.size`` of them.
    scale_factor : int or None
        Value of the point's SunSpec scale factor, if it has one.
    sunspec : bool
        Whether SunSpec "not implemented" sentinels apply.

    Returns
    -------
    float or None
        The value [``point.unit``]; ``None`` if the device says "not implemented".

    Raises
    ------
    GarbageValueError
        If the value lies outside ``point.value_range``, or the scale factor is invalid.
    """
    if point.type in (PointType.STRING, PointType.PAD, PointType.COIL):
        msg = f"point {point.name!r} of type {point.type.value} is not numeric"
        raise TypeError(msg)
    if len(words) != point.type.words:
        msg = f"point {point.name!r} needs {point.type.words} registers, got {len(words)}"
        raise ValueError(msg)
    unsigned = (words[0] << 16) | words[1] if point.type.words == 2 else words[0]
    if sunspec and _NOT_IMPLEMENTED.get(point.type) == unsigned:
        return None
    value = raw_from_words(point, words) * _factor(point, scale_factor)
    if point.value_range is not None:
        low, high = point.value_range
        if not low <= value <= high:
            msg = (
                f"point {point.name!r} reads {value:g} {point.unit}".rstrip()
                + f" (raw {unsigned:#06x}), outside its plausible range [{low:g}, {high:g}]; "
                "the device reports garbage"
            )
            raise GarbageValueError(msg)
    return value


def encode(point: Point, value: float, scale_factor: int | None = None) -> list[int]:
    """Encode an engineering value into the point's registers (rounded to a count).

    Raises
    ------
    ValueError
        If the value is outside the point's range or does not fit its type.
    """
    if point.value_range is not None and not (
        point.value_range[0] <= value <= point.value_range[1]
    ):
        msg = (
            f"point {point.name!r}: {value:g} is outside [{point.value_range[0]:g}, "
            f"{point.value_range[1]:g}] {point.unit}"
        )
        raise ValueError(msg)
    return words_from_raw(point, round(value / _factor(point, scale_factor)))


def decode_block(
    register_map: RegisterMap, names: Sequence[str], start: int, words: Sequence[int]
) -> dict[str, float | None]:
    """Decode several points from one block read starting at ``start``.

    Scale factors are taken from the same block (see :meth:`RegisterMap.span`).

    Raises
    ------
    GarbageValueError
        If any point holds garbage; the message names the point.
    """
    out: dict[str, float | None] = {}
    sf_cache: dict[str, int | None] = {}

    def take(point: Point) -> Sequence[int]:
        offset = point.address - start
        if offset < 0 or offset + point.size > len(words):
            msg = f"point {point.name!r} is not inside the block read at {start}"
            raise ValueError(msg)
        return words[offset : offset + point.size]

    for name in names:
        point = register_map.point(name)
        sf: int | None = None
        if point.scale_factor is not None:
            if point.scale_factor not in sf_cache:
                sf_point = register_map.point(point.scale_factor)
                raw_sf = take(sf_point)
                sf_cache[point.scale_factor] = (
                    None
                    if raw_sf[0] == _NOT_IMPLEMENTED[PointType.SUNSSF]
                    else raw_from_words(sf_point, raw_sf)
                )
            sf = sf_cache[point.scale_factor]
        out[name] = decode(point, take(point), sf, sunspec=register_map.sunspec)
    return out
