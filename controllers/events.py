"""Device events from read-back counters and states, raised as alarms (pure).

Prepaid meters count their own power-limit trips and exhausted budgets (16-bit counters
that roll over); the battery inverter reports a fault while it is tripped. An event is
a change between two reads: a counter that went up, an inverter that went into fault.
The first read of a device is its baseline, not an event (the counts since its
installation are history).

Examples
--------
>>> import datetime as dt
>>> events = DeviceEvents()
>>> t = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)
>>> events.meter("B01", trips=4, budgets=0, power_limit_w=800, at=t)  # baseline
[]
>>> [a.kind.value for a in events.meter("B01", trips=5, budgets=1, power_limit_w=800, at=t)]
['connection_trip', 'budget_exhausted']
>>> events.meter("B01", trips=6, budgets=1, power_limit_w=OFF_LIMIT_W, at=t)  # kept off
[]
>>> events.meter("H001", trips=0, budgets=0, power_limit_w=30, at=t, alarm=False)
[]
>>> events.meter("H001", trips=1, budgets=1, power_limit_w=30, at=t, alarm=False)  # its plan
[]
>>> events.counts
{'connection_trip': 3, 'budget_exhausted': 2}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from settlement.alarms import Alarm, AlarmKind

__all__ = ["OFF_LIMIT_W", "DeviceEvents"]

_COUNTER_MODULUS = 1 << 16  # the meters' event counters are 16-bit

OFF_LIMIT_W = 1
"""The power limit written for an allotment of 0 [W] (0 in the register means "no limit").
A trip at this limit is the meter keeping a load off as planned (a household whose day's
share of its plan is used, until its evening window): counted, but no alarm."""


@dataclass
class DeviceEvents:
    """Last seen counters and states; turns each read into the events since the last.

    Attributes
    ----------
    counts : dict of str to int
        Events raised since the start, by alarm kind (for telemetry).
    """

    counts: dict[str, int] = field(default_factory=dict)
    _meters: dict[str, tuple[int, int]] = field(default_factory=dict)
    _inverter_faulted: bool | None = None

    def _raise(self, kind: AlarmKind, times: int = 1) -> None:
        self.counts[kind.value] = self.counts.get(kind.value, 0) + times

    def meter(
        self,
        connection: str,
        trips: int,
        budgets: int,
        power_limit_w: int,
        at: dt.datetime,
        *,
        alarm: bool = True,
    ) -> list[Alarm]:
        """Events of one meter read: new power-limit trips and exhausted budgets.

        ``alarm=False`` counts them without raising alarms: for a household held to its
        service plan, a trip or an exhausted budget is the plan working (320 households
        would raise hundreds of alarms an evening), not something for the operator.
        """
        before = self._meters.get(connection)
        self._meters[connection] = (trips, budgets)
        if before is None:
            return []
        alarms: list[Alarm] = []
        new_trips = (trips - before[0]) % _COUNTER_MODULUS
        if new_trips:
            self._raise(AlarmKind.CONNECTION_TRIP, new_trips)
        if new_trips and alarm and power_limit_w > OFF_LIMIT_W:
            alarms.append(
                Alarm(
                    AlarmKind.CONNECTION_TRIP,
                    connection,
                    at,
                    f"the meter of {connection} opened {new_trips}× on its power limit "
                    f"({power_limit_w} W) and recloses by itself; if it repeats, its "
                    "allotment is below what it runs",
                )
            )
        new_budgets = (budgets - before[1]) % _COUNTER_MODULUS
        if new_budgets:
            self._raise(AlarmKind.BUDGET_EXHAUSTED, new_budgets)
        if new_budgets and alarm:
            alarms.append(
                Alarm(
                    AlarmKind.BUDGET_EXHAUSTED,
                    connection,
                    at,
                    f"{connection} used its daily energy budget; its meter stays open "
                    "until local midnight",
                )
            )
        return alarms

    def inverter(self, faulted: bool, empty: bool, at: dt.datetime) -> list[Alarm]:
        """Events of one battery inverter read: going into fault (overload or empty)."""
        before, self._inverter_faulted = self._inverter_faulted, faulted
        if not faulted or before is not False:
            return []  # no fault, still the same fault, or the baseline read
        if empty:
            self._raise(AlarmKind.LOW_BATTERY_CUTOFF)
            return [
                Alarm(
                    AlarmKind.LOW_BATTERY_CUTOFF,
                    "battery_inverter",
                    at,
                    "the battery inverter shut down at the battery's minimum: the village "
                    "is dark until PV recharges it; check the plan's reserve",
                )
            ]
        self._raise(AlarmKind.INVERTER_OVERLOAD)
        return [
            Alarm(
                AlarmKind.INVERTER_OVERLOAD,
                "battery_inverter",
                at,
                "the battery inverter tripped on overload: the village is dark until it "
                "restarts; a load drew more than the plan allowed",
            )
        ]
