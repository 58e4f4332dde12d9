"""Relay history from what is measured: the state dispatch starts each plan from.

Minimum on and off times and the household rotation need each switchable unit's relay
state, how long it has held it, and how long each household group has been shed. The
relay states come from the devices' read-back each control cycle; the times from this
history, which the service persists so that a restart continues it.

A state whose start is unknown — first seen after a (re)start and not what the persisted
history says — is treated conservatively: as *off for a long time*, so that a minimum
on-time never keeps a load on that may just have been left on by the devices' power-on
default (it would be "just switched on" otherwise, and held on for hours).

Examples
--------
>>> import datetime as dt
>>> t0 = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)
>>> history = RelayHistory()
>>> history.observe({"B1": True}, t0)  # first seen, nothing persisted: unknown since when
>>> history.relay_states(t0 + dt.timedelta(hours=1), ["B1", "HG1"]) == {
...     "B1": UNKNOWN, "HG1": UNKNOWN}
True
>>> history.observe({"B1": False}, t0 + dt.timedelta(hours=1))
>>> history.relay_states(t0 + dt.timedelta(hours=2), ["B1"])
{'B1': RelayState(closed=False, hours_in_state=1.0)}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatch.problem import RelayState

__all__ = ["UNKNOWN", "RelayHistory"]

UNKNOWN = RelayState(closed=False, hours_in_state=24.0)
"""A relay whose state or start is unknown, as dispatch should see it: off long enough
that neither minimum on- nor off-time binds."""


@dataclass
class RelayHistory:
    """Per switchable unit: its measured state and since when; per group: shed hours.

    Attributes
    ----------
    since : dict of str to (bool, datetime or None)
        Unit → (closed, since); ``since`` None when the start of the state is unknown.
    shed_hours : dict of str to float
        Household group → hours it was seen open [h].
    max_gap : datetime.timedelta
        Longest gap between two observations that counts as shed time; a longer one
        (the service was down) is not counted, as nobody knows what happened.
    """

    since: dict[str, tuple[bool, dt.datetime | None]] = field(default_factory=dict)
    shed_hours: dict[str, float] = field(default_factory=dict)
    max_gap: dt.timedelta = dt.timedelta(minutes=15)
    _last: dt.datetime | None = None
    _observed: set[str] = field(default_factory=set)  # units read back since the start

    def observe(
        self,
        closed: Mapping[str, bool],
        now: dt.datetime,
        household_groups: Iterable[str] = (),
    ) -> None:
        """Take one control cycle's read-back.

        A unit's first read-back since the (re)start that differs from the persisted
        state changed while nobody watched: the start of its state is unknown.

        Parameters
        ----------
        closed : mapping of str to bool
            Unit → relay closed, as read back from the devices (units not read are
            left as they were).
        now : datetime.datetime
            The cycle's time (timezone-aware).
        household_groups : iterable of str
            Groups whose open time counts as shed.
        """
        if self._last is not None and now - self._last <= self.max_gap:
            # The time since the last read-back counts as shed if the group was open then.
            hours = (now - self._last).total_seconds() / 3600
            for group in household_groups:
                seen = self.since.get(group)
                if group in self._observed and seen is not None and not seen[0]:
                    self.shed_hours[group] = self.shed_hours.get(group, 0.0) + hours
        for unit, state in closed.items():
            seen = self.since.get(unit)
            if seen is None or seen[0] != state:
                self.since[unit] = (state, now if unit in self._observed else None)
            self._observed.add(unit)
        self._last = now

    def relay_states(self, now: dt.datetime, units: Iterable[str]) -> dict[str, RelayState]:
        """What dispatch starts from: measured state and time in it; unknown → :data:`UNKNOWN`."""
        out: dict[str, RelayState] = {}
        for unit in units:
            seen = self.since.get(unit)
            if seen is None or seen[1] is None:
                out[unit] = UNKNOWN
            else:
                out[unit] = RelayState(seen[0], (now - seen[1]).total_seconds() / 3600)
        return out

    # --- persistence (JSON) ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the service's state store."""
        return {
            "since": {
                u: [c, s.isoformat() if s is not None else None] for u, (c, s) in self.since.items()
            },
            "shed_hours": dict(self.shed_hours),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> RelayHistory:
        """Restore :meth:`to_json`'s form; an empty history for None or a bad value."""
        history = cls()
        if not isinstance(value, Mapping):
            return history
        for unit, entry in (value.get("since") or {}).items():
            try:
                closed, since = bool(entry[0]), entry[1]
                history.since[str(unit)] = (
                    closed,
                    dt.datetime.fromisoformat(since) if since is not None else None,
                )
            except (TypeError, ValueError, IndexError):
                continue  # an unreadable entry is an unknown state: conservative
        for group, hours in (value.get("shed_hours") or {}).items():
            if isinstance(hours, int | float) and hours >= 0:
                history.shed_hours[str(group)] = float(hours)
        return history
