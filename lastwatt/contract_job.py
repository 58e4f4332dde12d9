"""The service's ``contracts`` job: band contracts settled hour by hour from the meters.

Wiring only; the rules are :mod:`settlement.contracts`. Every hour the job

1. takes the emergency events the control job has folded into the alarm store since its
   last run (:func:`new_events`): a ``connection_trip`` of a contracted meter, an
   ``inverter_overload``, a ``low_battery_cutoff``, and the spans of the ``safe_state``;
2. notes what the plan in force allots each contracted connection over the intervals
   still to come (:func:`plan_allotment_wh`; the allotment decides whether an under-band
   interval was the grid's: dispatch serves the band's lower edge in its own ``contract``
   tier, so an allotment below it is a shortfall of supply, never the consumer's);
3. assesses and posts every interval of every open contract that ended at least
   ``grace`` ago (:func:`settlement.contract_registry.settle_due`), with the disconnects
   and outages attributed by :func:`attribute` — the consumer pays only for what it caused;
4. closes a contract whose every interval is charged: the remaining bonus becomes the
   consumer's discount and the rest returns to the budget.

Attribution (:func:`attribute`):

- a ``connection_trip`` of the contracted meter: the meter opened at its own power limit,
  :attr:`~settlement.contracts.DisconnectCause.CONSUMER_LIMIT_TRIP` — the consumer's;
- an ``inverter_overload`` in an interval in which the consumer drew above its band
  (``upper + tolerance``): its load tripped the inverter,
  :attr:`~settlement.contracts.DisconnectCause.CONSUMER_OVERLOAD` — the consumer's;
  in any other interval the container tripped on its own: a grid outage for that interval,
  never a penalty;
- ``low_battery_cutoff`` and the ``safe_state``: grid outages (under-band waived).

The alarm store folds repeated observations of one condition into a count and a last
sighting, so the job keeps, per condition, the count it has already taken; new
observations are dated at the condition's last sighting. With the job running hourly and
events sparse (a trip is an emergency, not a habit), that places each in its hour; several
in one hour on 15-min intervals all land in the interval of the last one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dispatch.problem import ContractBand, contract_band
from lastwatt.state import ServiceState, StoredSchedule
from settlement.alarms import AlarmKind, AlarmRecord
from settlement.contract_registry import ContractRegistry, settle_due
from settlement.contracts import (
    BandContract,
    DisconnectCause,
    band_power_kw,
    close_contract,
    usage_from_readings,
)
from settlement.sqlite_store import beside_ledger
from settlement.store import LedgerStore

__all__ = [
    "CONTRACT_JOB_ID",
    "ContractEvent",
    "ContractJob",
    "attribute",
    "dispatch_band",
    "new_events",
    "open_registry",
    "plan_allotment_wh",
]

log = logging.getLogger(__name__)

CONTRACT_JOB_ID = "contracts"
"""Fixed id of the hourly contracts job."""
EVENT_KINDS = frozenset(
    {AlarmKind.CONNECTION_TRIP, AlarmKind.INVERTER_OVERLOAD, AlarmKind.LOW_BATTERY_CUTOFF}
)
"""One-off events the job attributes (the safe state is a span, read separately)."""
KEPT_EVENTS = dt.timedelta(days=40)
"""Events older than this are forgotten: longer than any contract's settling grace."""
ALARM_WINDOW = 5000
"""Alarm conditions read per run, most recently seen first: far more than a site's meters
raise between two hourly runs."""
_SEEN = "contracts_alarm_counts"
_EVENTS = "contracts_events"
_ALLOTTED = "contracts_allotted_wh"


def open_registry(store: LedgerStore, data_dir: Path) -> ContractRegistry:
    """The contract registry, beside the ledger (:func:`settlement.sqlite_store.beside_ledger`)."""
    return ContractRegistry(beside_ledger(store, data_dir, "contracts.sqlite"))


@dataclass(frozen=True, slots=True)
class ContractEvent:
    """New observations of one alarm condition since the job's last look.

    Attributes
    ----------
    at : datetime
        The condition's last sighting (UTC).
    kind : AlarmKind
    subject : str
        The meter (``connection_trip``) or the device.
    count : int
        Observations since the last look.
    """

    at: dt.datetime
    kind: AlarmKind
    subject: str
    count: int


def new_events(
    records: Iterable[AlarmRecord], seen: Mapping[str, int]
) -> tuple[list[ContractEvent], dict[str, int]]:
    """Observations of :data:`EVENT_KINDS` not yet taken, and the counts now taken (pure).

    Parameters
    ----------
    records : iterable of AlarmRecord
        Alarm conditions from the store.
    seen : mapping of str to int
        Count already taken per condition id (as a string, JSON's key type).

    Examples
    --------
    >>> from settlement.alarms import Severity
    >>> t = dt.datetime(2026, 8, 1, 10, tzinfo=dt.UTC)
    >>> r = AlarmRecord(7, AlarmKind.CONNECTION_TRIP, "B001", Severity.WARNING, t, t, 3, "")
    >>> events, seen = new_events([r], {"7": 1})
    >>> [(e.subject, e.count) for e in events], seen
    ([('B001', 2)], {'7': 3})
    """
    taken = dict(seen)
    events = []
    for record in records:
        if record.kind not in EVENT_KINDS:
            continue
        key = str(record.id)
        fresh = record.count - taken.get(key, 0)
        if fresh > 0:
            events.append(ContractEvent(record.last_seen, record.kind, record.subject, fresh))
        taken[key] = record.count
    return events, taken


def attribute(
    contract: BandContract,
    events: Sequence[ContractEvent],
    safe_spans: Sequence[tuple[dt.datetime, dt.datetime]],
    energy_wh: Mapping[dt.datetime, int | None],
) -> tuple[
    tuple[tuple[dt.datetime, DisconnectCause], ...], tuple[tuple[dt.datetime, dt.datetime], ...]
]:
    """Who caused each disconnect of a contracted connection (module docstring); pure.

    Parameters
    ----------
    contract : BandContract
    events : sequence of ContractEvent
        Trips and inverter events of the site.
    safe_spans : sequence of (datetime, datetime)
        ``[start, end)`` spans of the controller's safe state.
    energy_wh : mapping of datetime to int or None
        Metered energy per interval start [Wh] (None: no reading).

    Returns
    -------
    disconnects : tuple of (datetime, DisconnectCause)
    outages : tuple of (datetime, datetime)
        Grid-caused spans: under-band penalties there are waived.
    """
    disconnects: list[tuple[dt.datetime, DisconnectCause]] = []
    outages = list(safe_spans)
    for event in events:
        if not contract.start <= event.at < contract.end:
            continue
        k = (event.at - contract.start) // contract.interval
        start = contract.start + k * contract.interval
        interval = (start, start + contract.interval)
        if event.kind is AlarmKind.CONNECTION_TRIP:
            if event.subject == contract.meter_id:
                disconnects += [(event.at, DisconnectCause.CONSUMER_LIMIT_TRIP)] * event.count
        elif event.kind is AlarmKind.INVERTER_OVERLOAD:
            energy = energy_wh.get(start)
            upper = contract.bands_wh[k][1] + contract.tolerance_wh
            if energy is not None and energy > upper:
                disconnects += [(event.at, DisconnectCause.CONSUMER_OVERLOAD)] * event.count
            else:
                disconnects.append((event.at, DisconnectCause.CONTAINER_TRIP))
                outages.append(interval)
        else:  # the battery ran empty: the village was dark
            outages.append(interval)
    return tuple(sorted(disconnects)), tuple(outages)


def _safe_spans(
    records: Iterable[AlarmRecord], now: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(r.first_seen, r.cleared_at or now) for r in records if r.kind is AlarmKind.SAFE_STATE]


def dispatch_band(
    contract: BandContract, index: pd.DatetimeIndex, step: dt.timedelta
) -> ContractBand | None:
    """A contract's band on a dispatch grid [kW], or None if no period of it falls inside."""
    periods = [t.to_pydatetime() for t in index]
    bands = band_power_kw(contract, periods, step)
    if all(b is None for b in bands):
        return None
    tolerance_kw = contract.tolerance_wh / 1000 / (contract.interval.total_seconds() / 3600)
    return contract_band(contract.contract_id, contract.meter_id, bands, tolerance_kw)


def plan_allotment_wh(
    contract: BandContract, allotment_kw: pd.Series, since: dt.datetime
) -> dict[dt.datetime, int]:
    """What a plan allots the consumer in each interval starting at or after ``since`` [Wh].

    Only intervals the plan covers whole; this is the figure
    :func:`settlement.contracts.assess_interval` compares with the band's lower edge
    (below it, the under-band penalty is the grid's and waived). Pure.

    Parameters
    ----------
    contract : BandContract
    allotment_kw : pandas.Series
        The plan's allotment of the consumer per period start [kW]
        (:attr:`dispatch.schedule.Schedule.allotment_kw`).
    since : datetime
    """
    step_h = 0.25
    if len(allotment_kw.index) > 1:
        step_h = (allotment_kw.index[1] - allotment_kw.index[0]).total_seconds() / 3600
    out: dict[dt.datetime, int] = {}
    for start in contract.interval_starts():
        if start < since:
            continue
        span = allotment_kw[
            (allotment_kw.index >= start) & (allotment_kw.index < start + contract.interval)
        ]
        if len(span) * step_h * 3600 >= contract.interval.total_seconds():
            out[start] = round(float(span.sum()) * step_h * 1000)
    return out


class ContractJob:
    """The hourly ``contracts`` job (module docstring).

    Parameters
    ----------
    store : LedgerStore
        The ledger (readings, alarms, the contracts' money).
    state : ServiceState
        Where the job keeps the alarm counts it took, the events and the allotments.
    data_dir : Path
        The service's data directory (the registry beside a PostgreSQL ledger).
    clock : callable
        Service time now (aware).
    schedule : callable
        The stored plan in force, or None.
    grace : datetime.timedelta
        An interval is charged this long after it ended: its closing reading (one per
        reading slot) has arrived by then.
    """

    def __init__(
        self,
        store: LedgerStore,
        state: ServiceState,
        data_dir: Path,
        clock: Callable[[], dt.datetime],
        schedule: Callable[[], StoredSchedule | None],
        grace: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.state = state
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.schedule = schedule
        self.grace = grace

    def bands(self, index: pd.DatetimeIndex) -> tuple[ContractBand, ...]:
        """Every open contract's band on the dispatch grid ``index``: the ``contract`` tier.

        Dispatch serves each band's lower edge as firm demand in its own tier, placed by
        the site's ``[policy]`` tier order, and caps the consumer at the upper edge plus
        tolerance (:func:`dispatch.problem.firm_demand_kw`). Where supply cannot cover the
        lower edge, the plan's allotment falls below it and :meth:`run` waives that
        interval's under-band penalty: the shortfall is the grid's. Two open contracts of
        one meter (consecutive periods) make one band.
        """
        if len(index) == 0:
            return ()
        step = (
            (index[1] - index[0]).to_pytimedelta() if len(index) > 1 else dt.timedelta(minutes=15)
        )
        with open_registry(self.store, self.data_dir) as registry:
            records = [r for r in registry.all() if not r.closed]
        by_meter: dict[str, ContractBand] = {}
        for record in records:
            contract = record.contract
            band = dispatch_band(contract, index, step)
            if band is None:
                continue
            known = by_meter.get(contract.meter_id)
            if known is not None:
                band = ContractBand(
                    f"{known.id}+{band.id}",
                    contract.meter_id,
                    np.maximum(known.lower_kw, band.lower_kw),
                    np.minimum(known.upper_kw, band.upper_kw),
                )
            by_meter[contract.meter_id] = band
        return tuple(by_meter.values())

    async def run(self, due: dt.datetime) -> None:
        """Charge every interval that ended, for every open contract (module docstring)."""
        now = self.clock()
        with open_registry(self.store, self.data_dir) as registry:
            open_records = [r for r in registry.all() if not r.closed]
        meters = {r.contract.meter_id for r in open_records}
        records = self.store.alarm_records(limit=ALARM_WINDOW)
        fresh, seen = new_events(records, self.state.get(_SEEN, {}))
        # Only contracted meters' trips are kept: a site's other meters may trip often.
        fresh = [e for e in fresh if e.kind is not AlarmKind.CONNECTION_TRIP or e.subject in meters]
        events = [*self._events(), *fresh]
        events = [e for e in events if e.at >= now - KEPT_EVENTS]
        self.state.set(
            _EVENTS, [[e.at.isoformat(), e.kind.value, e.subject, e.count] for e in events]
        )
        self.state.set(_SEEN, seen)
        safe = _safe_spans(records, now)
        with open_registry(self.store, self.data_dir) as registry:
            for record in open_records:
                self._note_allotment(record.contract, now)
                self._settle(registry, record.contract, events, safe, now)

    def _events(self) -> list[ContractEvent]:
        rows: list[list[Any]] = self.state.get(_EVENTS, [])
        return [
            ContractEvent(dt.datetime.fromisoformat(t), AlarmKind(k), s, n) for t, k, s, n in rows
        ]

    def _note_allotment(self, contract: BandContract, now: dt.datetime) -> None:
        """Keep the plan's allotment of the intervals not started yet (the latest plan wins)."""
        stored = self.schedule()
        allotted: dict[str, dict[str, int]] = self.state.get(_ALLOTTED, {})
        mine = allotted.setdefault(contract.contract_id, {})
        if stored is not None and contract.meter_id in stored.allotment_kw.columns:
            planned = plan_allotment_wh(contract, stored.allotment_kw[contract.meter_id], now)
            mine.update({start.isoformat(): wh for start, wh in planned.items()})
        self.state.set(_ALLOTTED, allotted)

    def _settle(
        self,
        registry: ContractRegistry,
        contract: BandContract,
        events: Sequence[ContractEvent],
        safe: Sequence[tuple[dt.datetime, dt.datetime]],
        now: dt.datetime,
    ) -> None:
        readings = self.store.readings(contract.start, now, [contract.meter_id])
        before = self.store.reading_before(contract.meter_id, contract.start)
        if before is not None:
            readings.append(before)
        metered = usage_from_readings(contract, readings, until=now - self.grace)
        energy = {start: u.energy_wh for start, u in metered.items()}
        disconnects, outages = attribute(contract, events, safe, energy)
        allotted = {
            dt.datetime.fromisoformat(t): wh
            for t, wh in self.state.get(_ALLOTTED, {}).get(contract.contract_id, {}).items()
        }
        assessed = settle_due(
            self.store,
            registry,
            contract.contract_id,
            now,
            self.grace,
            disconnects,
            outages,
            allotted,
        )
        if assessed:
            penalty = sum(o.penalty for o in assessed)
            log.info(
                "contract %s: %d intervals charged, penalties %d µcoin",
                contract.contract_id,
                len(assessed),
                penalty,
            )
        if len(registry.outcomes(contract.contract_id)) == len(contract.bands_wh):
            close_contract(self.store, contract, now)
            registry.mark_closed(contract.contract_id, now)
            log.info(
                "contract %s closed: the remaining bonus became its discount", contract.contract_id
            )
