"""Hourly settlement, pure: cumulative readings → hourly energy → who pays and who is paid.

Energy from cumulative registers
--------------------------------
A meter reports cumulative registers at arbitrary instants. Between two consecutive
readings the register is taken to rise linearly, so the energy of the hour
``[h0, h1)`` is the interpolated register at ``h1`` minus the one at ``h0`` (integer Wh,
floored at each boundary). Because every hour uses the same interpolation, the hours
telescope: their energies add up exactly to the register difference, and a missed poll
loses nothing — the next reading still carries it.

Each step between consecutive readings is classified:

- **normal**: the register rose by a plausible amount;
- **rollover**: the 32-bit register fell, but adding 2³² gives a plausible amount;
- **register decreased**: it fell by more than a rollover explains — the meter was
  replaced, reset or tampered with. The energy of that step is *unknown*: it is not
  settled (never a silent zero) and an alarm names the meter and the step;
- **implausible jump**: it rose faster than ``max_power_w`` allows; treated like a
  decrease.

"Plausible" means at most ``max_power_w`` × elapsed time. The hour of a meter is
**missing** when no reading at or after ``h1`` exists yet (or the meter never reported):
it is left out of the batch, alarmed, and settled by a correcting batch once the reading
arrives. A meter whose *first* reading falls inside the hour is new: its energy counts
from that reading.

Money
-----
For one hour: each consumer pays ``round_half_up(price_per_kwh_minor × Wh / 1000)`` into
the pool; the utility takes ``min(utility_fee_minor, pool)`` — **no consumption, no fee**
(an empty hour bills nobody, and the pool cannot pay what it does not hold); the rest is
split among producers pro rata to their exported Wh by largest remainder. If no
production is known (none measured, or a configured producer's reading is missing) the
rest goes to the ``settlement:held`` account and an alarm is raised; a later correction
releases it to the producers. The desired outcome is a net amount per account;
:func:`transfers_through_pool` turns the difference between it and what was already
posted into transfers, so the first batch and every correction are built the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.site import Tariff
from settlement.alarms import Alarm, AlarmKind
from settlement.ledger import (
    HELD,
    POOL,
    UTILITY,
    WATT_ISSUER,
    Asset,
    Transfer,
    from_us,
    meter_account,
    to_us,
)
from settlement.rounding import largest_remainder, round_half_up_div
from settlement.storage import (
    QUARTERS_PER_HOUR,
    QuarterFlows,
    StorageHour,
    StoragePolicy,
    commission_code,
    plan_storage,
)

__all__ = [
    "DEFAULT_MAX_POWER_W",
    "EnergyStatus",
    "HourPlan",
    "MeterEnergy",
    "StorageInput",
    "hourly_energy",
    "interval_energies",
    "plan_hour",
    "posted_net",
    "price_at",
    "transfers_through_pool",
    "watt_stream_of",
    "watt_stream_transfers",
    "watt_transfers",
]

DEFAULT_MAX_POWER_W = 100_000
"""Fastest plausible register rise [W]: twice the container's 20 kW inverter and battery
together is 40 kW, so 100 kW flags only resets and tampering, never real load."""

_US_PER_HOUR = 3_600_000_000
HOUR = timedelta(hours=1)


class EnergyStatus(enum.StrEnum):
    """How well a meter's hour is known."""

    MEASURED = "measured"
    """Readings bracket the hour and every step is plausible."""
    PARTIAL = "partial"
    """Readings bracket the hour, but a step is unknown (register decreased or jumped);
    the known steps are settled, the unknown one is alarmed."""
    MISSING = "missing"
    """No reading closes the hour yet; nothing is settled for this meter."""


@dataclass(frozen=True, slots=True)
class MeterEnergy:
    """One meter's energy in one hour.

    Attributes
    ----------
    meter_id : str
        The meter.
    import_wh, export_wh : int
        Energy drawn from and delivered to the grid [Wh]; 0 when ``status`` is MISSING.
    status : EnergyStatus
        Whether the numbers are complete.
    alarms : tuple of Alarm
        Unknown steps and missing readings, named.
    """

    meter_id: str
    import_wh: int
    export_wh: int
    status: EnergyStatus
    alarms: tuple[Alarm, ...] = ()


def _register_energy(
    register: str,
    points: Sequence[tuple[int, int]],
    h0: int,
    h1: int,
    max_power_w: int,
) -> tuple[int, list[tuple[int, int, str]]]:
    """Energy of one register in ``[h0, h1)`` from ``(time_us, value)`` points.

    Returns the known energy and the unknown steps ``(start_us, end_us, reason)``.
    """
    energy = 0
    unknown: list[tuple[int, int, str]] = []
    for (ta, va), (tb, vb) in pairwise(points):
        if tb <= h0 or ta >= h1:
            continue
        elapsed = tb - ta
        delta = vb - va
        limit_ok = delta * _US_PER_HOUR <= max_power_w * elapsed
        if delta < 0:
            delta += ENERGY_REGISTER_MODULUS_WH  # a rollover, if plausible
            if delta * _US_PER_HOUR > max_power_w * elapsed:
                unknown.append((ta, tb, f"{register} register fell from {va} to {vb} Wh"))
                continue
        elif not limit_ok:
            unknown.append((ta, tb, f"{register} register jumped from {va} to {vb} Wh"))
            continue
        start, end = max(ta, h0), min(tb, h1)
        energy += delta * (end - ta) // elapsed - delta * (start - ta) // elapsed
    return energy, unknown


def hourly_energy(
    meter_id: str,
    readings: Iterable[MeterReading],
    hour: datetime,
    max_power_w: int = DEFAULT_MAX_POWER_W,
    length: timedelta = HOUR,
) -> MeterEnergy:
    """A meter's energy in the hour starting at ``hour`` (module docstring).

    Parameters
    ----------
    meter_id : str
        The meter.
    readings : iterable of MeterReading
        The meter's readings around the hour: at least the last one at or before the
        hour's start and the first at or after its end, if they exist. Order does not
        matter; identical duplicates are ignored.
    hour : datetime
        Start of the hour (aware).
    max_power_w : int
        Fastest plausible register rise [W].
    length : timedelta
        Length of the interval (an hour for settlement; 15 min for a band contract).

    Returns
    -------
    MeterEnergy

    Raises
    ------
    ValueError
        If a reading belongs to another meter or two readings at one instant differ.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> r = [MeterReading("H001", datetime(2026, 8, 1, h, tzinfo=UTC), wh) for h, wh in
    ...      [(10, 4_294_967_000), (11, 704)]]
    >>> hourly_energy("H001", r, datetime(2026, 8, 1, 10, tzinfo=UTC)).import_wh
    1000
    """
    return interval_energies(meter_id, readings, hour, max_power_w, length, 1)[0]


def interval_energies(
    meter_id: str,
    readings: Iterable[MeterReading],
    start: datetime,
    max_power_w: int = DEFAULT_MAX_POWER_W,
    length: timedelta = HOUR,
    parts: int = 1,
) -> tuple[MeterEnergy, ...]:
    """A meter's energy in ``parts`` equal intervals of ``[start, start + length)``.

    :func:`hourly_energy` of each part, reading the readings once (an hour's quarters for
    the storage commission). The parts telescope: they add up to the whole interval.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> r = [MeterReading("H001", datetime(2026, 8, 1, h, tzinfo=UTC), wh) for h, wh in
    ...      [(10, 0), (11, 1001)]]
    >>> [e.import_wh for e in interval_energies("H001", r, r[0].read_at, parts=4)]
    [250, 250, 250, 251]
    """
    if parts < 1:
        msg = f"parts must be ≥ 1, got {parts}"
        raise ValueError(msg)
    origin = to_us(start)
    step = length // timedelta(microseconds=1) // parts
    by_time = _by_time(meter_id, readings)
    times = list(by_time)
    import_points = [(t, r.import_wh) for t, r in by_time.items()]
    export_points = [(t, r.export_wh) for t, r in by_time.items()]
    out: list[MeterEnergy] = []
    for part in range(parts):
        h0 = origin + part * step
        h1 = origin + (part + 1) * step
        if not times or times[-1] < h1:
            hour = from_us(h0)
            last = "never reported" if not times else f"last read {by_time[times[-1]].read_at}"
            alarm = Alarm(
                AlarmKind.READING_MISSING,
                meter_id,
                hour,
                f"meter {meter_id}: no reading closes the hour {hour.isoformat()} ({last}); it is "
                "settled by a correcting batch when a reading arrives — check the meter's bus",
            )
            out.append(MeterEnergy(meter_id, 0, 0, EnergyStatus.MISSING, (alarm,)))
            continue
        import_wh, unknown_i = _register_energy("import", import_points, h0, h1, max_power_w)
        export_wh, unknown_e = _register_energy("export", export_points, h0, h1, max_power_w)
        alarms: list[Alarm] = []
        for step_start, step_end, reason in unknown_i + unknown_e:
            kind = AlarmKind.REGISTER_DECREASED if "fell" in reason else AlarmKind.IMPLAUSIBLE_JUMP
            alarms.append(
                Alarm(
                    kind,
                    meter_id,
                    from_us(h0),
                    f"meter {meter_id}: {reason} between {_iso(step_start)} and {_iso(step_end)}; "
                    "the energy "
                    "of that step is unknown and not settled — inspect the meter (replaced or "
                    "tampered?) and book any agreed energy by hand",
                )
            )
        status = EnergyStatus.PARTIAL if alarms else EnergyStatus.MEASURED
        out.append(MeterEnergy(meter_id, import_wh, export_wh, status, tuple(alarms)))
    return tuple(out)


def _by_time(meter_id: str, readings: Iterable[MeterReading]) -> dict[int, MeterReading]:
    """A meter's readings by instant [µs], in time order; identical duplicates dropped.

    Stores hand readings over sorted and unique: that common case is one pass, without
    re-sorting (it is most of settling's CPU, 400 meters an hour).

    Raises
    ------
    ValueError
        If a reading belongs to another meter or two readings at one instant differ.
    """
    by_time: dict[int, MeterReading] = {}
    ordered = True
    last = -1 << 62
    for r in readings:
        if r.meter_id != meter_id:
            msg = f"hourly_energy of {meter_id!r} got a reading of {r.meter_id!r}"
            raise ValueError(msg)
        t = to_us(r.read_at)
        if t > last:
            by_time[t] = r
            last = t
            continue
        ordered = False
        seen = by_time.get(t)
        if seen is not None and (seen.import_wh, seen.export_wh) != (r.import_wh, r.export_wh):
            msg = (
                f"meter {meter_id!r} has two different readings at {r.read_at.isoformat()}; "
                "keep one (the store keeps the first)"
            )
            raise ValueError(msg)
        if seen is None:
            by_time[t] = r
    if ordered:
        return by_time
    return {t: by_time[t] for t in sorted(by_time)}


def _iso(micros: int) -> str:
    return from_us(micros).isoformat()


def price_at(tariff: Tariff, local_hour: int) -> int:
    """The tariff's price in the local hour ``local_hour`` [coin minor units per kWh].

    Examples
    --------
    >>> from microgrid.site import TariffBand
    >>> tou = Tariff(kind="time_of_use", bands=(TariffBand(start_hour=0, price_per_kwh_minor=4),
    ...     TariffBand(start_hour=9, price_per_kwh_minor=2)))
    >>> price_at(tou, 8), price_at(tou, 9), price_at(tou, 23)
    (4, 2, 2)
    """
    if not 0 <= local_hour <= 23:
        msg = f"local_hour must be 0–23, got {local_hour}"
        raise ValueError(msg)
    if tariff.kind == "flat":
        assert tariff.price_per_kwh_minor is not None  # the model validates it
        return tariff.price_per_kwh_minor
    price = tariff.bands[0].price_per_kwh_minor
    for band in tariff.bands:
        if band.start_hour <= local_hour:
            price = band.price_per_kwh_minor
    return price


@dataclass(frozen=True, slots=True)
class HourPlan:
    """The settlement of one hour: the desired outcome, before any posting.

    Attributes
    ----------
    hour : datetime
        Start of the hour (UTC).
    charges : dict of str to int
        What each consumer meter pays [coin minor units].
    fee : int
        The utility's fee [coin minor units].
    payouts : dict of str to int
        What each producer meter receives [coin minor units].
    held : int
        Paid into the pool but held, production unknown [coin minor units].
    energies : dict of str to MeterEnergy
        Every settled meter's energy.
    alarms : tuple of Alarm
        Everything an operator should see.
    account_payouts : dict of str to int
        What accounts that are not meters receive (WATT holders such as the education
        fund) [coin minor units].
    storage : StorageHour or None
        The hour's storage accounting (WATT moves), if the battery is settled.
    """

    hour: datetime
    charges: dict[str, int]
    fee: int
    payouts: dict[str, int]
    held: int
    energies: dict[str, MeterEnergy]
    alarms: tuple[Alarm, ...] = field(default=())
    account_payouts: dict[str, int] = field(default_factory=dict)
    storage: StorageHour | None = None

    @property
    def pool_minor(self) -> int:
        """What consumers paid into the pool [coin minor units]."""
        return sum(self.charges.values())

    @property
    def missing(self) -> tuple[str, ...]:
        """Meters without a reading that closes the hour."""
        return tuple(m for m, e in self.energies.items() if e.status is EnergyStatus.MISSING)

    @property
    def complete(self) -> bool:
        """Whether nothing is missing or held: no correction is expected."""
        return not self.missing and not self.held

    def net(self) -> dict[str, int]:
        """Desired net change of every account this hour touches [coin minor units]."""
        net: dict[str, int] = {}
        for meter, amount in self.charges.items():
            account = meter_account(meter)
            net[account] = net.get(account, 0) - amount
        for meter, amount in self.payouts.items():
            account = meter_account(meter)
            net[account] = net.get(account, 0) + amount
        for account, amount in self.account_payouts.items():
            net[account] = net.get(account, 0) + amount
        if self.fee:
            net[UTILITY] = self.fee
        if self.held:
            net[HELD] = self.held
        return {a: v for a, v in net.items() if v}

    def watt_net(self) -> dict[str, int]:
        """Desired net WATT change of every account this hour, issuer included [Wh]."""
        if self.storage is None or not self.storage.watt_net:
            return {}
        net = dict(self.storage.watt_net)
        if self.storage.issuer_net:
            net[WATT_ISSUER] = self.storage.issuer_net
        return net

    def watt_streams(self) -> dict[str, dict[str, int]]:
        """Desired WATT nets by what posts them [Wh]; each sums to zero.

        ``watt.flow``: minted on charge and burned on discharge, issuer included; and
        each quarter's commission (:func:`~settlement.storage.commission_code`).
        """
        if self.storage is None:
            return {}
        flow = self.storage.flow_net()
        if flow:
            flow[WATT_ISSUER] = -sum(flow.values())
        streams = {WATT_FLOW: flow}
        for q, moves in enumerate(self.storage.commission_moves):
            streams[commission_code(q)] = dict(moves)
        return {k: v for k, v in streams.items() if v}


@dataclass(frozen=True, slots=True)
class StorageInput:
    """What :func:`plan_hour` needs to settle the battery as a producer.

    Attributes
    ----------
    battery_meter : str
        The battery inverter's meter: import is charge, export is discharge [Wh AC].
    balances : mapping of str to int
        WATT balance of every holder account at the start of the hour [Wh].
    policy : StoragePolicy
        Efficiency, commission, Bmax.
    capped : frozenset of str
        Accounts Bmax applies to.
    quarters : tuple of mapping of str to MeterEnergy, optional
        The battery's and the producers' energy in each 15-minute period of the hour
        (:func:`hourly_energy` with ``length`` 15 min), so that the commission is charged
        on each holder's balance at that time; None spreads the hour's flows evenly.
    """

    battery_meter: str
    balances: Mapping[str, int]
    policy: StoragePolicy
    capped: frozenset[str] = frozenset()
    quarters: tuple[Mapping[str, MeterEnergy], ...] | None = None


def plan_hour(
    hour: datetime,
    energies: Mapping[str, MeterEnergy],
    prices: Mapping[str, int],
    producers: Iterable[str],
    utility_fee_minor: int,
    storage: StorageInput | None = None,
) -> HourPlan:
    """Settle one hour: consumers pay into the pool, the fee, producers pro rata.

    Parameters
    ----------
    hour : datetime
        Start of the hour.
    energies : mapping of str to MeterEnergy
        Energy of every meter to settle.
    prices : mapping of str to int
        Price of each *consumer* meter in this hour [coin minor units per kWh]; meters
        without a price (container devices) are not charged for their import.
    producers : iterable of str
        Meters whose production must be known before payouts are made (the container's
        PV); any meter's export counts as production.
    utility_fee_minor : int
        The utility's hourly fee [coin minor units].
    storage : StorageInput, optional
        Settle the battery as a producer (:mod:`settlement.storage`): its charge is
        credited as WATT to the hour's producers (who are paid in coins only for what
        they did not store), its discharge pays the WATT holders. Without it the
        battery meter, if given, is an ordinary meter.

    Returns
    -------
    HourPlan

    Examples
    --------
    Seed 002's worked example (1 coin per kWh, fee 0.01 coin):

    >>> from datetime import UTC, datetime
    >>> h = datetime(2026, 8, 1, 10, tzinfo=UTC)
    >>> e = {m: MeterEnergy(m, i, x, EnergyStatus.MEASURED) for m, i, x in
    ...      [("carlos", 3000, 0), ("danny", 2000, 0), ("angel", 0, 3000), ("bennie", 0, 2500)]}
    >>> plan = plan_hour(h, e, dict.fromkeys(["carlos", "danny"], 1_000_000), [], 10_000)
    >>> plan.pool_minor, plan.fee, plan.payouts
    (5000000, 10000, {'angel': 2721818, 'bennie': 2268182})
    """
    if utility_fee_minor < 0:
        msg = f"utility_fee_minor must be ≥ 0, got {utility_fee_minor}"
        raise ValueError(msg)
    charges: dict[str, int] = {}
    production: dict[str, int] = {}
    alarms: list[Alarm] = []
    battery = storage.battery_meter if storage is not None else None
    for meter in sorted(energies):
        energy = energies[meter]
        alarms.extend(energy.alarms)
        if energy.status is EnergyStatus.MISSING or meter == battery:
            continue
        price = prices.get(meter)
        if price is not None and energy.import_wh:
            charge = round_half_up_div(price * energy.import_wh, 1000)
            if charge:
                charges[meter] = charge
        if energy.export_wh:
            production[meter] = energy.export_wh
    pool = sum(charges.values())
    fee = min(utility_fee_minor, pool)
    rest = pool - fee
    required = set(producers) | ({battery} if battery is not None else set())
    missing_producers = sorted(
        p for p in required if p not in energies or energies[p].status is EnergyStatus.MISSING
    )
    storage_hour: StorageHour | None = None
    sold = {meter_account(m): wh for m, wh in production.items()}
    if storage is not None and not missing_producers:
        assert battery is not None
        storage_hour = plan_storage(
            sold,
            energies[battery].import_wh,
            energies[battery].export_wh,
            storage.balances,
            storage.policy,
            storage.capped,
            _quarter_flows(storage, production, energies[battery]),
        )
        # Consumers paid but every produced Wh went into the battery (meters disagree by
        # a few Wh): the money goes to the producers by export rather than being held.
        sold = {a: wh for a, wh in storage_hour.sold_wh.items() if wh} or sold
    payouts: dict[str, int] = {}
    account_payouts: dict[str, int] = {}
    held = 0
    if rest and (missing_producers or not sold):
        held = rest
        why = (
            f"producer readings missing ({', '.join(missing_producers)})"
            if missing_producers
            else "no meter exported energy"
        )
        alarms.append(
            Alarm(
                AlarmKind.NO_PRODUCTION,
                "settlement",
                hour,
                f"hour {hour.isoformat()}: {why}; {rest} coin minor units held in {HELD} "
                "until production is known — check the PV inverter's meter",
            )
        )
    elif rest:
        for account, amount in largest_remainder(sold, rest).items():
            if not amount:
                continue
            if account.startswith(_METER_PREFIX):
                payouts[account.removeprefix(_METER_PREFIX)] = amount
            else:
                account_payouts[account] = amount
    return HourPlan(
        hour,
        charges,
        fee,
        payouts,
        held,
        dict(energies),
        tuple(alarms),
        account_payouts,
        storage_hour,
    )


_METER_PREFIX = meter_account("")


def _quarter_flows(
    storage: StorageInput, production: Mapping[str, int], battery: MeterEnergy
) -> tuple[QuarterFlows, ...] | None:
    """The hour's storage flows per quarter, if the quarters' energies add up to the hour's."""
    if storage.quarters is None or len(storage.quarters) != QUARTERS_PER_HOUR:
        return None
    flows = []
    for quarter in storage.quarters:
        b = quarter.get(storage.battery_meter)
        if b is None:
            return None
        flows.append(
            QuarterFlows(
                {meter_account(m): quarter[m].export_wh for m in production if m in quarter},
                b.import_wh,
                b.export_wh,
            )
        )
    hour = (
        {meter_account(m): wh for m, wh in production.items()},
        battery.import_wh,
        battery.export_wh,
    )
    totals: dict[str, int] = {}
    for f in flows:
        for a, v in f.production_wh.items():
            totals[a] = totals.get(a, 0) + v
    summed = (
        {a: v for a, v in totals.items() if v},
        sum(f.charge_wh for f in flows),
        sum(f.discharge_wh for f in flows),
    )
    # A step of unknown energy splits differently: then the hour's flows, spread evenly.
    return tuple(flows) if summed == hour else None


def transfers_through_pool(
    desired: Mapping[str, int], posted: Mapping[str, int]
) -> tuple[Transfer, ...]:
    """Transfers that take accounts from their ``posted`` net to their ``desired`` net.

    Every account whose net must fall pays into the pool; the pool pays every account
    whose net must rise; the pool nets to zero because both mappings sum to zero.
    Coins only; WATT moves through :func:`watt_transfers`.

    Raises
    ------
    ValueError
        If the two mappings do not have the same total (they would leave the pool
        unbalanced).

    Examples
    --------
    >>> [(t.debit, t.credit, t.amount) for t in transfers_through_pool(
    ...     {"meter:H001": -5, "utility:fees": 5}, {})]
    [('meter:H001', 'pool:settlement', 5), ('pool:settlement', 'utility:fees', 5)]
    """
    if sum(desired.values()) != sum(posted.values()):
        msg = (
            f"desired nets sum to {sum(desired.values())}, posted to {sum(posted.values())}; "
            "an hour's nets must sum to zero"
        )
        raise ValueError(msg)
    delta = {
        a: desired.get(a, 0) - posted.get(a, 0)
        for a in sorted(set(desired) | set(posted))
        if desired.get(a, 0) != posted.get(a, 0)
    }
    into = [Transfer(a, POOL, Asset.COIN, -d, _code(a, False)) for a, d in delta.items() if d < 0]
    out = [Transfer(POOL, a, Asset.COIN, d, _code(a, True)) for a, d in delta.items() if d > 0]
    return tuple(into + out)


def _code(account: str, credit: bool) -> str:
    if account == UTILITY:
        return "settle.fee" if credit else "settle.fee_refund"
    if account == HELD:
        return "settle.hold" if credit else "settle.release"
    return "settle.payout" if credit else "settle.charge"


WATT_FLOW = "watt.flow"
"""The stream of WATT minted on charge (``watt.mint``) and burned on discharge (``watt.burn``)."""


def watt_stream_of(code: str) -> str:
    """The stream a WATT transfer code belongs to (:meth:`HourPlan.watt_streams`).

    Examples
    --------
    >>> watt_stream_of("watt.mint"), watt_stream_of("watt.commission.q2")
    ('watt.flow', 'watt.commission.q2')
    """
    return code if code.startswith("watt.commission.") else WATT_FLOW


def watt_stream_transfers(
    desired: Mapping[str, Mapping[str, int]], posted: Iterable[Transfer]
) -> tuple[Transfer, ...]:
    """WATT transfers taking every stream from what is ``posted`` to what is ``desired``.

    Charge and discharge go through :func:`watt_transfers`; each quarter's commission the
    same way with its own code, so each quarter's commission is its own transfers.
    """
    by_stream: dict[str, list[Transfer]] = {}
    for t in posted:
        if t.asset is Asset.WATT:
            by_stream.setdefault(watt_stream_of(t.code), []).append(t)
    out: list[Transfer] = []
    for stream in sorted(set(desired) | set(by_stream)):
        done = posted_net(by_stream.get(stream, ()), Asset.WATT)
        want = dict(desired.get(stream, {}))
        if stream == WATT_FLOW:
            out += watt_transfers(want, done)
        else:
            out += watt_transfers(want, done, (stream, stream))
    # Every credit before any debit: a holder's running balance inside the batch then
    # never dips below its final one (a quarter's commission may spend a later mint).
    return tuple(sorted(out, key=lambda t: t.debit != WATT_ISSUER))


def watt_transfers(
    desired: Mapping[str, int],
    posted: Mapping[str, int],
    codes: tuple[str, str] = ("watt.burn", "watt.mint"),
) -> tuple[Transfer, ...]:
    """WATT transfers taking holders from their ``posted`` to their ``desired`` net.

    The issuer (:data:`~settlement.ledger.WATT_ISSUER`) is the clearing account: a holder
    whose net must fall returns WATT to it (``codes[0]``, ``watt.burn``: discharge),
    a holder whose net must rise receives from it (``codes[1]``, ``watt.mint``: charge).
    Both mappings include the issuer, so each sums to zero. A quarter's commission
    passes through the issuer the same way under its own code (both codes the same).

    Raises
    ------
    ValueError
        If a mapping does not sum to zero.
    """
    for name, mapping in (("desired", desired), ("posted", posted)):
        if sum(mapping.values()):
            msg = f"{name} WATT nets sum to {sum(mapping.values())}; they must sum to zero"
            raise ValueError(msg)
    delta = {
        a: desired.get(a, 0) - posted.get(a, 0)
        for a in sorted(set(desired) | set(posted))
        if a != WATT_ISSUER and desired.get(a, 0) != posted.get(a, 0)
    }
    burn = [Transfer(a, WATT_ISSUER, Asset.WATT, -d, codes[0]) for a, d in delta.items() if d < 0]
    mint = [Transfer(WATT_ISSUER, a, Asset.WATT, d, codes[1]) for a, d in delta.items() if d > 0]
    return tuple(burn + mint)


def posted_net(transfers: Iterable[Transfer], asset: Asset = Asset.COIN) -> dict[str, int]:
    """Net change per account of posted transfers of one asset, the coin pool excluded."""
    net: dict[str, int] = {}
    for t in transfers:
        if t.asset is not asset:
            continue
        net[t.debit] = net.get(t.debit, 0) - t.amount
        net[t.credit] = net.get(t.credit, 0) + t.amount
    net.pop(POOL, None)
    return {a: v for a, v in net.items() if v}
