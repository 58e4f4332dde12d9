"""Meter readings: the hand-over from the controllers to settlement.

A reading is a snapshot of a meter's *cumulative* energy registers, never a power sample,
so that a missed poll loses no energy: the next reading still carries it. Settlement
differences consecutive readings and handles rollover, replaced meters and gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["ENERGY_REGISTER_MODULUS_WH", "MeterReading"]

ENERGY_REGISTER_MODULUS_WH = 2**32
"""A 32-bit unsigned energy register in Wh rolls over to zero after this many Wh."""


@dataclass(frozen=True, slots=True)
class MeterReading:
    """The cumulative energy registers of one meter at one instant.

    Attributes
    ----------
    meter_id : str
        The connection id the meter belongs to (``"H001"``), or a container device name
        (``"bulk_meter"``, ``"pv_inverter"``) for the producer side.
    read_at : datetime
        When the registers were read; timezone-aware.
    import_wh : int
        Cumulative energy delivered *to* the connection, Wh, as the register holds it
        (``0 <= import_wh < ENERGY_REGISTER_MODULUS_WH``).
    export_wh : int
        Cumulative energy delivered *by* the connection to the grid, Wh (producers).
    """

    meter_id: str
    read_at: datetime
    import_wh: int
    export_wh: int = 0

    def __post_init__(self) -> None:
        # Hot path (a store returns thousands a settled hour): UTC and plain ints are
        # checked by identity, everything else the long way.
        if self.read_at.tzinfo is not UTC and (
            self.read_at.tzinfo is None or self.read_at.utcoffset() is None
        ):
            msg = (
                f"meter {self.meter_id!r}: read_at {self.read_at.isoformat()} has no "
                "timezone; pass an aware datetime (UTC inside LastWatt)"
            )
            raise ValueError(msg)
        for name in ("import_wh", "export_wh"):
            value = getattr(self, name)
            if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
                msg = f"meter {self.meter_id!r}: {name} must be an int of Wh, got {value!r}"
                raise TypeError(msg)
            if not 0 <= value < ENERGY_REGISTER_MODULUS_WH:
                msg = (
                    f"meter {self.meter_id!r}: {name}={value} is outside a 32-bit "
                    f"register [0, {ENERGY_REGISTER_MODULUS_WH})"
                )
                raise ValueError(msg)
