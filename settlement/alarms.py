"""Alarms: conditions an operator must look at, raised by settlement and prepaid control."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Alarm", "AlarmKind"]


class AlarmKind(enum.StrEnum):
    """What went wrong."""

    NO_PRODUCTION = "no_production"
    """An hour had consumption but no (known) production: payouts are held."""
    READING_MISSING = "reading_missing"
    """A meter has no reading that closes the hour; it is settled when one arrives."""
    REGISTER_DECREASED = "register_decreased"
    """A register went backwards by more than a rollover explains: meter replaced or
    tampered. The energy of the gap is unknown and is not settled."""
    IMPLAUSIBLE_JUMP = "implausible_jump"
    """A register advanced faster than the connection can draw; not settled."""
    READING_CONFLICT = "reading_conflict"
    """Two different readings for one meter at one instant; the first is kept."""
    UNKNOWN_METER = "unknown_meter"
    """A reading for a meter the site does not have; rejected."""
    PRIORITY_DEBT = "priority_debt"
    """A priority user's debt passed its ceiling; it stays connected."""
    LOW_CREDIT = "low_credit"
    """A balance fell below the warning level."""
    CONNECTION_TRIP = "connection_trip"
    """A meter opened its relay on its power limit (it recloses by itself)."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """A connection used its daily energy budget; its meter stays open until midnight."""
    INVERTER_OVERLOAD = "inverter_overload"
    """The battery inverter tripped on overload: the whole village is dark until it
    restarts."""
    LOW_BATTERY_CUTOFF = "low_battery_cutoff"
    """The battery inverter shut down at the battery's minimum state of charge."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm.

    Attributes
    ----------
    kind : AlarmKind
        What happened.
    subject : str
        The meter, account or site it concerns.
    at : datetime
        The instant (or hour start) it concerns, UTC.
    message : str
        What happened and what to do about it.
    """

    kind: AlarmKind
    subject: str
    at: datetime
    message: str
