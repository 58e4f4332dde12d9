"""Alarms: conditions an operator must look at, raised by control, settlement and prepaid.

One model for every source. An :class:`Alarm` is one *observation* of a condition
(what, about whom, when, why); a store folds observations into standing conditions,
:class:`AlarmRecord` — one per ``(kind, subject)`` while it stands, with the first and
last time it was seen and how often. A condition that clears (a bus that answers again,
a balance topped up) is closed; if it comes back it is a new alarm. Acknowledging says
who has seen it; it does not clear it.

Observations are idempotent: one at or before a condition's last sighting changes
nothing, so re-settling an hour or replaying a cycle does not inflate the count.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from settlement.ledger import from_us

__all__ = [
    "SEVERITY",
    "Alarm",
    "AlarmKind",
    "AlarmRecord",
    "Fold",
    "Severity",
    "fold_observation",
    "record_from_row",
]


class Severity(enum.StrEnum):
    """How urgent an alarm is, in increasing order."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


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
    """A balance fell below the warning level: a disconnect is coming."""
    CREDIT_DISCONNECT = "credit_disconnect"
    """A connection's relay was opened for lack of credit."""
    METER_REPLACED = "meter_replaced"
    """A meter's counter went down (replaced, reset, restarted): the controller took the
    new value as the meter's baseline."""
    DEVICE_FAULT = "device_fault"
    """A device of the container did not answer, answered with an error or garbage."""
    BUS_FAULT = "bus_fault"
    """A meter bus was silent or too slow for its sweep deadline; it is backed off."""
    SAFE_STATE = "safe_state"
    """The controller is not following a plan (no schedule, or state of charge unknown)."""
    CONNECTION_TRIP = "connection_trip"
    """A meter opened its relay on its power limit (it recloses by itself)."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """A connection used its daily energy budget; its meter stays open until midnight."""
    INVERTER_OVERLOAD = "inverter_overload"
    """The battery inverter tripped on overload: the whole village is dark until it
    restarts."""
    LOW_BATTERY_CUTOFF = "low_battery_cutoff"
    """The battery inverter shut down at the battery's minimum state of charge."""
    VERIFY_FAILED = "verify_failed"
    """The ledger's hash chain or invariants did not verify."""
    PLAN_FALLBACK = "plan_fallback"
    """Dispatch fell back to a simpler plan."""
    PLAN_VIOLATIONS = "plan_violations"
    """The plan in force carries violations of a constraint."""
    WEATHER_FALLBACK = "weather_fallback"
    """The weather forecast fell back to the last good one or to the climatology."""
    WATT_MISMATCH = "watt_mismatch"
    """The WATT outstanding did not reconcile with the battery's measured energy."""
    CONTROL_RESTARTED = "control_restarted"
    """The control loop's process died and was restarted by the service."""


SEVERITY: dict[AlarmKind, Severity] = {
    AlarmKind.NO_PRODUCTION: Severity.WARNING,
    AlarmKind.READING_MISSING: Severity.INFO,
    AlarmKind.REGISTER_DECREASED: Severity.WARNING,
    AlarmKind.IMPLAUSIBLE_JUMP: Severity.WARNING,
    AlarmKind.READING_CONFLICT: Severity.WARNING,
    AlarmKind.UNKNOWN_METER: Severity.WARNING,
    AlarmKind.PRIORITY_DEBT: Severity.WARNING,
    AlarmKind.LOW_CREDIT: Severity.INFO,
    AlarmKind.CREDIT_DISCONNECT: Severity.WARNING,
    AlarmKind.METER_REPLACED: Severity.WARNING,
    AlarmKind.DEVICE_FAULT: Severity.CRITICAL,
    AlarmKind.BUS_FAULT: Severity.CRITICAL,
    AlarmKind.SAFE_STATE: Severity.CRITICAL,
    AlarmKind.CONNECTION_TRIP: Severity.WARNING,
    AlarmKind.BUDGET_EXHAUSTED: Severity.INFO,
    AlarmKind.INVERTER_OVERLOAD: Severity.CRITICAL,
    AlarmKind.LOW_BATTERY_CUTOFF: Severity.CRITICAL,
    AlarmKind.VERIFY_FAILED: Severity.CRITICAL,
    AlarmKind.PLAN_FALLBACK: Severity.WARNING,
    AlarmKind.PLAN_VIOLATIONS: Severity.WARNING,
    AlarmKind.WEATHER_FALLBACK: Severity.WARNING,
    AlarmKind.WATT_MISMATCH: Severity.WARNING,
    AlarmKind.CONTROL_RESTARTED: Severity.CRITICAL,
}
"""The severity of each kind of alarm (the one place it is decided)."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One observation of a condition.

    Attributes
    ----------
    kind : AlarmKind
        What happened.
    subject : str
        The meter, account, device, bus or site it concerns.
    at : datetime
        The instant (or hour start) it concerns, UTC.
    message : str
        What happened and what to do about it.
    """

    kind: AlarmKind
    subject: str
    at: datetime
    message: str

    @property
    def severity(self) -> Severity:
        """How urgent it is (from its kind)."""
        return SEVERITY[self.kind]


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """A standing (or cleared) condition as the store keeps it.

    Attributes
    ----------
    id : int
        The store's id (what an operator acknowledges).
    kind, subject : AlarmKind, str
        The condition.
    severity : Severity
        How urgent.
    first_seen, last_seen : datetime
        First and latest observation (UTC).
    count : int
        Observations folded into it.
    message : str
        The latest observation's message.
    cleared_at : datetime or None
        When the condition went away; None while it stands.
    acked_by : str or None
        Who acknowledged it.
    acked_at : datetime or None
        When.
    """

    id: int
    kind: AlarmKind
    subject: str
    severity: Severity
    first_seen: datetime
    last_seen: datetime
    count: int
    message: str
    cleared_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None

    @property
    def standing(self) -> bool:
        """Whether the condition still stands."""
        return self.cleared_at is None


Fold = Literal["open", "later", "earlier", "replay"]
"""What an observation does to its condition (:func:`fold_observation`)."""


def fold_observation(at_us: int, standing: tuple[int, int] | None) -> Fold:
    """How a store folds one observation into the standing ``(kind, subject)`` condition.

    The one place the folding rule is decided; every store applies the answer.

    Parameters
    ----------
    at_us : int
        The observation's instant [µs since the epoch].
    standing : (int, int) or None
        ``(first_seen_us, last_seen_us)`` of the standing condition, None if none stands.

    Returns
    -------
    {"open", "later", "earlier", "replay"}
        ``"open"``: open a new condition (first = last = ``at_us``, count 1).
        ``"later"``: after the last sighting: move it there, count it, take the message.
        ``"earlier"``: before the first sighting: move the first sighting, count it.
        ``"replay"``: within the sightings already folded in: change nothing, so
        re-settling an hour or replaying a cycle does not inflate the count.

    Examples
    --------
    >>> fold_observation(5, None), fold_observation(9, (1, 5)), fold_observation(5, (1, 5))
    ('open', 'later', 'replay')
    """
    if standing is None:
        return "open"
    first_us, last_us = standing
    if at_us > last_us:
        return "later"
    if at_us < first_us:
        return "earlier"
    return "replay"


def record_from_row(row: Sequence[object]) -> AlarmRecord:
    """An :class:`AlarmRecord` from a store's ``alarm_conditions`` row.

    Parameters
    ----------
    row : sequence
        ``(id, kind, subject, severity, first_seen_us, last_seen_us, count, message,
        cleared_at_us, acked_by, acked_at_us)``, instants in µs since the epoch.
    """
    (id_, kind, subject, severity, first, last, count, message, cleared, by, acked) = row
    return AlarmRecord(
        id=int(str(id_)),
        kind=AlarmKind(str(kind)),
        subject=str(subject),
        severity=Severity(str(severity)),
        first_seen=from_us(int(str(first))),
        last_seen=from_us(int(str(last))),
        count=int(str(count)),
        message=str(message),
        cleared_at=None if cleared is None else from_us(int(str(cleared))),
        acked_by=None if by is None else str(by),
        acked_at=None if acked is None else from_us(int(str(acked))),
    )
