"""Hourly settlement against a store: record readings, settle an hour, correct late hours.

This is the orchestrator (read → compute → write); the rules are pure, in
:mod:`settlement.hourly`. Each hour is one batch keyed by site and hour
(``settle:<site>:<hour>``); settling it again posts nothing if nothing changed, and a
correcting batch (``…#1``, ``…#2``) with only the difference if late readings changed it.
Posted batches are never edited.

An hour is settled under the store's settlement lock
(:meth:`~settlement.store.LedgerStore.settling`), which holds across processes: the CLI
and the service, or two services on one PostgreSQL site, never plan from each other's
half-written hour. On SQLite the hour (with any later hours it replays) is also one
transaction: its batch, mark, decisions and alarms commit together, with one fsync.
"""

from __future__ import annotations

import threading
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.site import CONTAINER_DEVICES, Site
from microgrid.units import COIN_SCALE
from settlement.alarms import Alarm, AlarmKind
from settlement.decisions import decide_hour
from settlement.hourly import (
    DEFAULT_MAX_POWER_W,
    HourPlan,
    MeterEnergy,
    StorageInput,
    hourly_energy,
    interval_energies,
    plan_hour,
    posted_net,
    price_at,
    transfers_through_pool,
    watt_stream_transfers,
)
from settlement.ledger import WATT_ISSUER, Asset, Batch, PostedBatch, Transfer, meter_account
from settlement.storage import (
    QUARTERS_PER_HOUR,
    StoragePolicy,
    WattReconciliation,
    reconcile_watt,
)
from settlement.store import LedgerStore

__all__ = [
    "BATTERY_METER",
    "CONTAINER_METERS",
    "HourSettlement",
    "RecordOutcome",
    "SettlementConfig",
    "WattBalanceError",
    "floor_hour",
    "plan_site_hour",
    "reconcile_hour",
    "reconciliation_tolerance_wh",
    "record_readings",
    "retry_delay",
    "settle_hour",
    "settle_hours",
    "settle_pending",
    "settlement_key",
    "storage_policy_for",
    "watt_balances_before",
]

CONTAINER_METERS = CONTAINER_DEVICES
"""Meter ids of the container's own devices (besides the connections)."""

_HOUR = timedelta(hours=1)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SettlementConfig:
    """Parameters of hourly settlement.

    Attributes
    ----------
    utility_fee_minor : int
        The utility's hourly fee [coin minor units]; 0.01 coin (seed 002).
    producer_ids : tuple of str
        Container meters whose export is production and must be known before payouts
        (the PV inverter), unless the site declares ``producer_meters``. Connections'
        export counts too; the site's prosumers must be known.
    max_power_w : int
        Fastest plausible register rise [W].
    site_id : str or None
        The site's id in batch keys; the site's name if None.
    storage : StoragePolicy or None
        Settle the battery as a producer (:mod:`settlement.storage`) from the
        ``battery_inverter`` meter's readings (import = charge, export = discharge);
        None settles without storage (night consumption is then held).
    """

    utility_fee_minor: int = COIN_SCALE // 100
    producer_ids: tuple[str, ...] = ("pv_inverter",)
    max_power_w: int = DEFAULT_MAX_POWER_W
    site_id: str | None = None
    storage: StoragePolicy | None = None

    def site_key(self, site: Site) -> str:
        """The site id used in batch keys."""
        return self.site_id or site.name

    def producers(self, site: Site) -> tuple[str, ...]:
        """Meters whose readings must be known before an hour pays out.

        The site's ``producer_meters`` if it declares them, else the configured container
        producers and every prosumer of the site.
        """
        if site.producer_meters is not None:
            return site.producer_meters
        prosumers = tuple(c.id for c in site.prosumers if c.id not in self.producer_ids)
        return self.producer_ids + prosumers


BATTERY_METER = "battery_inverter"
"""The battery inverter's meter id: import = energy charged, export = discharged [Wh AC]."""


def storage_policy_for(site: Site, **overrides: object) -> StoragePolicy:
    """A storage policy from the site's battery.

    Its efficiencies, the container owning all capacity; ``overrides`` replace any
    other field (commission, Bmax, accounts).
    """
    battery = site.battery
    fields: dict[str, object] = {
        "round_trip_ppm": round(battery.charge_efficiency * battery.discharge_efficiency * 1e6),
        "charge_ppm": round(battery.charge_efficiency * 1e6),
        **overrides,
    }
    return StoragePolicy(**fields)  # type: ignore[arg-type]


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour that contains ``moment``.

    Examples
    --------
    >>> floor_hour(datetime(2026, 8, 1, 10, 59, tzinfo=UTC)).isoformat()
    '2026-08-01T10:00:00+00:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"{moment.isoformat()} has no timezone; pass an aware datetime"
        raise ValueError(msg)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _checked_hour(hour: datetime) -> datetime:
    start = floor_hour(hour)
    if start != hour:
        msg = (
            f"settlement hours start on the hour; {hour.isoformat()} does not — "
            f"did you mean {start.isoformat()}?"
        )
        raise ValueError(msg)
    return start


def settlement_key(site_id: str, hour: datetime) -> str:
    """The idempotency key of an hour's first batch; corrections append ``#n``.

    Examples
    --------
    >>> settlement_key("demo", datetime(2026, 8, 1, 10, tzinfo=UTC))
    'settle:demo:2026-08-01T10:00Z'
    """
    return f"settle:{site_id}:{_checked_hour(hour).strftime('%Y-%m-%dT%H:%MZ')}"


def _known_meters(site: Site) -> set[str]:
    return {c.id for c in site.connections} | set(CONTAINER_METERS)


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What :func:`record_readings` did.

    Attributes
    ----------
    accepted, duplicates, unknown : tuple of MeterReading
        Stored; identical to a stored one (ignored); for a meter the site lacks (rejected).
    conflicts : tuple of (MeterReading, MeterReading)
        ``(new, stored)``: a different reading at an instant already recorded; rejected.
    late_hours : tuple of datetime
        Already settled hours these readings change: re-settle them (a correcting batch).
    alarms : tuple of Alarm
        Raised for unknown meters, conflicts and registers that went down (replaced
        meters); also recorded in the store.
    """

    accepted: tuple[MeterReading, ...]
    duplicates: tuple[MeterReading, ...]
    conflicts: tuple[tuple[MeterReading, MeterReading], ...]
    unknown: tuple[MeterReading, ...]
    late_hours: tuple[datetime, ...]
    alarms: tuple[Alarm, ...]


def record_readings(
    store: LedgerStore,
    site: Site,
    readings: Iterable[MeterReading],
    recorded_at: datetime | None = None,
    config: SettlementConfig | None = None,
) -> RecordOutcome:
    """Store meter readings for settlement; the controllers' hand-over.

    A reading of an unknown meter is rejected with an alarm; an exact duplicate is
    ignored; a different reading for a meter and instant already stored is rejected with
    an alarm (the first is kept). Accepted readings that fall into or next to already
    settled hours are reported in ``late_hours``.

    Parameters
    ----------
    store : LedgerStore
        Where readings go.
    site : Site
        Which meters exist.
    readings : iterable of MeterReading
        New readings.
    recorded_at : datetime, optional
        Arrival time (now by default).
    config : SettlementConfig, optional
        Gives the site id.
    """
    config = config or SettlementConfig()
    now = recorded_at or datetime.now(UTC)
    known = _known_meters(site)
    readings = list(readings)
    unknown = tuple(r for r in readings if r.meter_id not in known)
    alarms = [
        Alarm(
            AlarmKind.UNKNOWN_METER,
            r.meter_id,
            floor_hour(r.read_at),
            f"reading of unknown meter {r.meter_id!r} rejected; add the connection to the site "
            "file or fix the meter's id in the register map",
        )
        for r in unknown
    ]
    added = store.add_readings([r for r in readings if r.meter_id in known], now)
    alarms += [
        Alarm(
            AlarmKind.READING_CONFLICT,
            new.meter_id,
            floor_hour(new.read_at),
            f"meter {new.meter_id}: reading at {new.read_at.isoformat()} "
            f"(import {new.import_wh}, export {new.export_wh} Wh) differs from the stored "
            f"(import {old.import_wh}, export {old.export_wh} Wh); the stored one is kept",
        )
        for new, old in added.conflicts
    ]
    site_id = config.site_key(site)
    late: set[datetime] = set()
    for r in added.accepted:
        before = store.reading_before(r.meter_id, r.read_at)
        after = store.reading_after(r.meter_id, r.read_at)
        start = r.read_at if before is None else before.read_at
        end = r.read_at if after is None else after.read_at
        late.update(store.settled_hours(site_id, floor_hour(start), end))
        if before is not None and _went_down(before, r, config.max_power_w):
            alarms.append(
                Alarm(
                    AlarmKind.METER_REPLACED,
                    r.meter_id,
                    r.read_at,
                    f"meter {r.meter_id}: import register went down from {before.import_wh} "
                    f"to {r.import_wh} Wh; settled from the new value on (the energy of the "
                    "step is unknown and not billed) — was the meter replaced?",
                )
            )
    if alarms:
        store.add_alarms(alarms)
    return RecordOutcome(
        added.accepted,
        added.duplicates,
        added.conflicts,
        unknown,
        tuple(sorted(late)),
        tuple(alarms),
    )


def _went_down(before: MeterReading, after: MeterReading, max_power_w: int) -> bool:
    """Whether the import register fell between two readings (more than a rollover explains)."""
    if after.import_wh >= before.import_wh:
        return False
    rolled = (after.import_wh - before.import_wh) % ENERGY_REGISTER_MODULUS_WH
    elapsed_h = (after.read_at - before.read_at).total_seconds() / 3600
    return rolled > max_power_w * elapsed_h


@dataclass(frozen=True, slots=True)
class HourSettlement:
    """The outcome of :func:`settle_hour`.

    Attributes
    ----------
    plan : HourPlan
        The hour's desired outcome (charges, fee, payouts, held, energies, alarms).
    transfers : tuple of Transfer
        What this call posted (empty if nothing changed).
    posted : PostedBatch or None
        The batch this call posted or replayed; None if nothing needed posting.
    replayed : tuple of HourSettlement
        Later settled hours re-settled because this one changed the WATT balances they
        started from (storage accounting only).
    """

    plan: HourPlan
    transfers: tuple[Transfer, ...]
    posted: PostedBatch | None
    replayed: tuple[HourSettlement, ...] = ()

    @property
    def correction(self) -> bool:
        """Whether this call posted a correcting batch."""
        return self.posted is not None and "#" in self.posted.key


def _hour_readings(
    store: LedgerStore, meters: Sequence[str], h0: datetime, h1: datetime
) -> dict[str, list[MeterReading]]:
    wanted = set(meters)
    grouped: dict[str, list[MeterReading]] = defaultdict(list)
    for r in store.readings(h0, h1):
        if r.meter_id in wanted:
            grouped[r.meter_id].append(r)
    for meter in meters:
        rows = grouped[meter]
        if not rows or rows[0].read_at > h0:
            before = store.reading_before(meter, h0)
            if before is not None:
                rows.insert(0, before)
        if not rows or rows[-1].read_at < h1:
            after = store.reading_after(meter, h1)
            if after is not None:
                rows.append(after)
    return grouped


def plan_site_hour(
    store: LedgerStore,
    site: Site,
    hour: datetime,
    config: SettlementConfig,
    watt_balances: Mapping[str, int] | None = None,
) -> HourPlan:
    """The pure plan of one hour from the store's readings (nothing is posted).

    ``watt_balances``: the WATT balances before the hour, if known
    (:func:`watt_balances_before` otherwise).
    """
    h0 = _checked_hour(hour)
    h1 = h0 + _HOUR
    local_hour = h0.astimezone(zoneinfo.ZoneInfo(site.location.timezone)).hour
    prices = {c.id: price_at(site.tariffs[c.tariff], local_hour) for c in site.connections}
    producers = config.producers(site)
    meters = [c.id for c in site.connections] + [p for p in config.producer_ids if p not in prices]
    if config.storage is not None and BATTERY_METER not in meters:
        meters.append(BATTERY_METER)
    grouped = _hour_readings(store, meters, h0, h1)
    energies: dict[str, MeterEnergy] = {
        m: hourly_energy(m, grouped.get(m, ()), h0, config.max_power_w) for m in meters
    }
    storage = None
    if config.storage is not None:
        # The battery's and every exporting meter's energy per quarter: the commission
        # is charged on each holder's balance at each quarter's start.
        exporting = [BATTERY_METER] + [m for m, e in energies.items() if e.export_wh]
        parts = {
            m: interval_energies(m, grouped.get(m, ()), h0, config.max_power_w, _HOUR,
                                 QUARTERS_PER_HOUR)
            for m in exporting
        }  # fmt: skip
        quarters = tuple({m: parts[m][q] for m in exporting} for q in range(QUARTERS_PER_HOUR))
        storage = StorageInput(
            BATTERY_METER,
            (
                watt_balances_before(store, site, h0, config)
                if watt_balances is None
                else watt_balances
            ),
            config.storage,
            frozenset(meter_account(c.id) for c in site.connections),
            quarters,
        )
    return plan_hour(h0, energies, prices, producers, config.utility_fee_minor, storage)


def watt_balances_before(
    store: LedgerStore, site: Site, hour: datetime, config: SettlementConfig
) -> dict[str, int]:
    """WATT balances of every holder before ``hour`` was settled [Wh].

    The store's current balances minus what the batches of this hour and of every later
    settled hour moved, so a re-settled hour starts from the balances its hour had, and
    :func:`settle_hour` can replay the later hours after a correction. WATT moved outside
    settlement (market trades, EV discharge) after the hour's first batch in the journal
    are taken out too: they happened after the hour, so they are not part of its opening
    balances (counting them made a holder that sold its WATT negative before the hour,
    and every retry of an incomplete hour failed).
    """
    balances = {
        account: amount
        for (account, _), amount in store.balances(Asset.WATT).items()
        if account != WATT_ISSUER and amount
    }
    site_id = config.site_key(site)
    hours = sorted({hour, *store.settled_hours(site_id, hour, _FAR_FUTURE)})
    posted: list[Transfer] = []
    for h in hours:
        for key in store.keys_with_prefix(settlement_key(site_id, h)):
            posted.extend(store.transfers_of(key))
    positions = _hour_positions(store, site_id, hours)
    if positions[0] is not None:
        posted.extend(t for _, t in _watt_outside_settlement(store, positions[0]))
    for account, amount in posted_net(posted, Asset.WATT).items():
        if account != WATT_ISSUER:
            balances[account] = balances.get(account, 0) - amount
    return {a: v for a, v in balances.items() if v}


def _hour_positions(
    store: LedgerStore, site_id: str, hours: Sequence[datetime]
) -> list[int | None]:
    """Where each of ``hours`` (ascending) sits in the journal: its first batch's seq.

    An hour with no rows of its own sits no later than the next hour that has some; None
    when neither it nor a later one has any (nothing posted after it yet).
    """
    out: list[int | None] = []
    nxt: int | None = None
    for h in reversed(hours):
        seqs = [
            b.first_seq
            for key in store.keys_with_prefix(settlement_key(site_id, h))
            if (b := store.posted(key)) is not None and b.count
        ]
        own = min(seqs, default=None)
        nxt = own if nxt is None else nxt if own is None else min(own, nxt)
        out.append(nxt)
    return out[::-1]


def _watt_outside_settlement(store: LedgerStore, start_seq: int) -> list[tuple[int, Transfer]]:
    """WATT transfers from journal row ``start_seq`` on that no hour's settlement posted."""
    return [
        (r.seq, Transfer(r.debit, r.credit, Asset.WATT, r.amount, r.code))
        for r in store.journal_rows(start_seq)
        if r.asset == Asset.WATT.value and not r.batch_key.startswith(_SETTLEMENT_PREFIX)
    ]


_SETTLEMENT_PREFIX = "settle:"
"""First part of every hour's batch key (:func:`settlement_key`)."""


class WattBalanceError(ValueError):
    """An hour would be settled from a negative WATT balance: the ledger is inconsistent.

    Nothing is posted; the hour is marked incomplete (retried with backoff, not every
    hour) and a standing :attr:`~settlement.alarms.AlarmKind.WATT_MISMATCH` alarm
    names the hour and the accounts.
    """


def _refuse_negative_watt(
    store: LedgerStore,
    site_id: str,
    hour: datetime,
    balances: Mapping[str, int],
    now: datetime | None,
) -> None:
    """Raise :class:`WattBalanceError` (with its alarm and backoff) on a negative balance."""
    negative = {a: v for a, v in sorted(balances.items()) if v < 0 and a != WATT_ISSUER}
    if not negative:
        return
    at = now or datetime.now(UTC)
    message = (
        f"hour {hour:%Y-%m-%dT%H:%MZ} would start from negative WATT balances "
        f"{', '.join(f'{a}={v}' for a, v in negative.items())} [Wh]: WATT moved outside "
        "settlement (trade, EV discharge) or a correction took back WATT already spent. "
        "Nothing was posted; check the accounts' WATT history (`lastwatt ledger verify`) "
        "and correct the ledger; the hour is retried with backoff"
    )
    attempts = store.hour_attempts(site_id, hour) + 1
    alarm = Alarm(AlarmKind.WATT_MISMATCH, settlement_key(site_id, hour), at, message)
    store.finish_hour(site_id, hour, False, at + retry_delay(attempts), [alarm])
    raise WattBalanceError(message)


def settle_hour(
    store: LedgerStore,
    site: Site,
    hour: datetime,
    config: SettlementConfig | None = None,
    now: datetime | None = None,
    replay_later: bool = True,
    watt_balances: Mapping[str, int] | None = None,
) -> HourSettlement:
    """Settle one hour: post its batch, or the correction late readings call for.

    Idempotent: settling an hour again with the same readings posts nothing. With
    storage accounting, an hour settled or corrected after later hours were settled
    changes the WATT balances those started from: they are re-settled in order
    (corrections of their own), so that settling in lots equals settling at once.

    Parameters
    ----------
    store : LedgerStore
        Readings in, batches out.
    site : Site
        Meters, tariffs and timezone.
    hour : datetime
        Start of the hour (aware, on the hour).
    config : SettlementConfig, optional
        Fee, producers, plausibility limit.
    now : datetime, optional
        Posting time (now by default).
    replay_later : bool
        Re-settle later settled hours when this one posts (the replay itself passes
        False: it goes through them in order once).
    watt_balances : mapping of str to int, optional
        WATT balances before the hour, if the caller knows them (the replay does).

    Returns
    -------
    HourSettlement

    Raises
    ------
    settlement.ledger.IdempotencyConflictError
        If a writer that does not take the settlement lock posted a different batch
        under this hour's key; nothing of this settlement is kept on SQLite.
    WattBalanceError
        If the hour would start from a negative WATT balance (nothing posted, alarmed,
        retried with backoff). A later hour refused so while being replayed stops the
        replay instead: its own retry replays the hours after it.
    """
    config = config or SettlementConfig()
    refused: WattBalanceError | None = None
    # The store's settlement lock holds across processes (the CLI and the service, two
    # services on one PostgreSQL site); on SQLite it also makes the hour one transaction,
    # one fsync: its batch, mark, decisions and alarms commit together or not at all.
    with _SETTLING, store.settling(config.site_key(site)):
        try:
            return _settle_hour(store, site, hour, config, now, replay_later, watt_balances)
        except WattBalanceError as error:
            refused = error  # its alarm and backoff are the outcome: commit them
    raise refused


_SETTLING = threading.RLock()
"""Serializes settlements in this process before the store's lock is asked for. The
service settles from two threads (the control cycle's late hours, the settle job), each
on its own connection: an hour planned while another hour's batch was posted but not yet
marked settled started from balances that included that later hour's WATT, and the
ledger kept the wrong history (for the commission recipients a negative opening balance
every later hour then refused). The store's lock (:meth:`~settlement.store.LedgerStore.
settling`) alone would do it too, but SQLite's busy handler polls with sleeps; a
thread waits here on the lock itself. Reentrant: a settlement replays later hours
through :func:`settle_hour`."""


def _settle_hour(
    store: LedgerStore,
    site: Site,
    hour: datetime,
    config: SettlementConfig | None,
    now: datetime | None,
    replay_later: bool,
    watt_balances: Mapping[str, int] | None,
) -> HourSettlement:
    config = config or SettlementConfig()
    site_id = config.site_key(site)
    if config.storage is not None:
        if watt_balances is None:
            watt_balances = watt_balances_before(store, site, hour, config)
        _refuse_negative_watt(store, site_id, _checked_hour(hour), watt_balances, now)
    plan = plan_site_hour(store, site, hour, config, watt_balances)
    base = settlement_key(site_id, plan.hour)
    keys = store.keys_with_prefix(base)
    already: list[Transfer] = []
    for key in keys:
        already.extend(store.transfers_of(key))
    transfers = transfers_through_pool(plan.net(), posted_net(already)) + watt_stream_transfers(
        plan.watt_streams(), already
    )
    posted: PostedBatch | None = None
    if not keys or transfers:
        key = base if not keys else f"{base}#{len(keys)}"
        posted = store.post(Batch(key, transfers), now)
    retry_at = None
    if not plan.complete:
        attempts = store.hour_attempts(site_id, plan.hour) + 1
        retry_at = (now or datetime.now(UTC)) + retry_delay(attempts)
    meter_balances = store.balances(Asset.COIN, prefix=_METER_PREFIX)
    decisions = decide_hour(
        site,
        plan,
        {c.id: meter_balances.get((meter_account(c.id), Asset.COIN), 0) for c in site.connections},
        store.connected_after(site_id, plan.hour - _HOUR),
    )
    store.finish_hour(site_id, plan.hour, plan.complete, retry_at, plan.alarms, decisions)
    if config.storage is not None:
        store.clear_alarm(AlarmKind.WATT_MISMATCH, base, now or datetime.now(UTC))
    replayed: list[HourSettlement] = []
    replay = replay_later and config.storage is not None and bool(transfers)
    later = store.settled_hours(site_id, plan.hour + _HOUR, _FAR_FUTURE) if replay else []
    if later:
        # One pass over the later hours' batches for the first one's balances; then each
        # replayed hour hands its successor its balances (no quadratic re-reading).
        # WATT moved outside settlement between two hours' batches (market trades) is
        # handed on with them, in journal order.
        balances = watt_balances_before(store, site, later[0], config)
        positions = _hour_positions(store, site_id, later)
        outside = _watt_outside_settlement(store, positions[0]) if positions[0] is not None else []
        for i, h in enumerate(later):
            try:
                done = settle_hour(store, site, h, config, now, False, balances)
            except WattBalanceError:
                break  # alarmed and marked for retry; its retry replays the rest
            replayed.append(done)
            until = positions[i + 1] if i + 1 < len(later) else None
            between = [t for seq, t in outside if until is not None and seq < until]
            outside = [(seq, t) for seq, t in outside if until is None or seq >= until]
            moved = posted_net(between, Asset.WATT)
            for account, amount in done.plan.watt_net().items():
                moved[account] = moved.get(account, 0) + amount
            for account, amount in moved.items():
                if account != WATT_ISSUER:
                    balances[account] = balances.get(account, 0) + amount
            balances = {a: v for a, v in balances.items() if v}
    return HourSettlement(plan, transfers, posted, tuple(replayed))


_METER_PREFIX = meter_account("")


RETRY_FIRST = timedelta(hours=1)
"""Wait before retrying an incomplete hour the first time."""
RETRY_MAX = timedelta(hours=24)
"""Longest wait between retries: a meter back after a week is still settled daily (and
at once when its reading arrives, through :func:`record_readings`' ``late_hours``)."""


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after ``attempts`` incomplete settlements of one hour.

    Examples
    --------
    >>> [retry_delay(n).total_seconds() / 3600 for n in (1, 2, 3, 6, 20)]
    [1.0, 2.0, 4.0, 24.0, 24.0]
    """
    if attempts < 1:
        msg = f"attempts must be ≥ 1, got {attempts}"
        raise ValueError(msg)
    delay: timedelta = RETRY_FIRST * (1 << min(attempts - 1, 16))
    return min(delay, RETRY_MAX)


def settle_hours(
    store: LedgerStore,
    site: Site,
    hours: Iterable[datetime],
    config: SettlementConfig | None = None,
    now: datetime | None = None,
) -> list[HourSettlement]:
    """Settle several hours in order (each its own batch).

    An hour refused for a negative WATT balance (:class:`WattBalanceError`: alarmed,
    retried with backoff) is skipped; the others are settled.
    """
    done = []
    for h in sorted(hours):
        try:
            done.append(settle_hour(store, site, h, config, now))
        except WattBalanceError:
            continue  # its standing alarm says why; settle_pending retries it later
    return done


def settle_pending(
    store: LedgerStore,
    site: Site,
    config: SettlementConfig | None = None,
    now: datetime | None = None,
) -> list[HourSettlement]:
    """Re-settle the incomplete hours whose retry is due (backoff: :func:`retry_delay`).

    An hour still missing a reading is retried after 1, 2, 4 … hours, at most daily, not
    every hour for ever; a late reading re-settles its hours at once through
    :func:`record_readings`' ``late_hours``.
    """
    config = config or SettlementConfig()
    due = now or datetime.now(UTC)
    hours = store.incomplete_hours(config.site_key(site), due_at=due)
    return settle_hours(store, site, hours, config, now)


SOC_RESOLUTION = 0.001
"""State of charge resolution of the battery inverter (SunSpec 124 ``ChaState`` at scale
factor −1: 0.1 %) [-]."""


def reconciliation_tolerance_wh(site: Site) -> float:
    """What measurement and rounding may explain in one period's WATT reconciliation [Wh].

    Two state-of-charge readings (this period's and the last) each within half the SoC
    register's step, plus up to 4 Wh of rounded-up burns (one per quarter) and 4 Wh of
    floored registers (the battery's charge is derived from four of them).

    Examples
    --------
    >>> from microgrid import load_site
    >>> reconciliation_tolerance_wh(load_site())  # 60 kWh: 0.1 % is 60 Wh
    68.0
    """
    return SOC_RESOLUTION * site.battery.energy_capacity_kwh * 1000 + 8.0


def reconcile_hour(
    store: LedgerStore,
    site: Site,
    hour: datetime,
    config: SettlementConfig,
    stored_wh: float,
    unheld_before_wh: float | None,
    tolerance_wh: float | None = None,
) -> WattReconciliation | None:
    """Reconcile Σ WATT outstanding with the battery's measured energy after ``hour``.

    Call it once ``hour`` is settled, with the stored energy measured at its end. A
    mismatch raises a standing :attr:`~settlement.alarms.AlarmKind.WATT_MISMATCH` alarm
    (subject ``watt:battery``), a reconciled period clears it.

    Parameters
    ----------
    store : LedgerStore
        The ledger, with ``hour`` settled.
    site : Site
        Its battery gives the default tolerance.
    hour : datetime
        The settled hour (start).
    config : SettlementConfig
        Its storage policy; without one there is nothing to reconcile (None).
    stored_wh : float
        Battery energy at the hour's end, measured [Wh DC].
    unheld_before_wh : float or None
        ``unheld_wh`` of the previous reconciliation; None for the first.
    tolerance_wh : float, optional
        Default :func:`reconciliation_tolerance_wh`.

    Returns
    -------
    WattReconciliation or None
    """
    if config.storage is None:
        return None
    h0 = _checked_hour(hour)
    outstanding = -store.balance(WATT_ISSUER, Asset.WATT)
    tolerance = reconciliation_tolerance_wh(site) if tolerance_wh is None else tolerance_wh
    result = reconcile_watt(outstanding, stored_wh, config.storage, unheld_before_wh, tolerance)
    end = h0 + _HOUR
    if result.ok:
        store.clear_alarm(AlarmKind.WATT_MISMATCH, WATT_ISSUER, end)
    else:
        message = f"hour {h0.isoformat()}: " + "; ".join(result.problems)
        store.add_alarms([Alarm(AlarmKind.WATT_MISMATCH, WATT_ISSUER, end, message)])
    return result
