"""Electro's band contracts for large consumers (seed 004): a band, a bonus, a discount.

A grid company and a large consumer (a mill, a cold store, a workshop) fix the consumer's
forecast consumption **band** for every interval of a contract period. A **bonus** is
granted at the period's start and spent on the consumer's violations — leaving the band
and emergency disconnects the consumer causes; what remains at the period's end becomes a
**discount** on future use. Only violators pay for wear and for over- and under-loading,
and the operator gets a firmer forecast than any demand profile.

Rules
-----
Per interval ``k`` with band ``[lower_k, upper_k]`` [Wh], tolerance ``tol`` [Wh] and
metered energy ``E_k`` [Wh]:

- ``over_k = max(0, E_k − (upper_k + tol))`` and ``under_k = max(0, (lower_k − tol) − E_k)``;
- ``penalty_k = ⌊over_k·r_over / 1000⌋ + ⌊under_k·r_under / 1000⌋ + n_k·p_disconnect``
  with the rates in micro-coins per kWh (floored: rounding favours the consumer) and
  ``n_k`` the emergency disconnects the consumer caused (its connection tripping its limit,
  its load tripping the inverter);
- **the grid's shortfall is never the consumer's**: in an interval with a grid-caused
  outage (the container's own trip, the safe state) or in which the plan allotted the
  connection less than the band's lower edge, the under-band penalty is waived, and
  grid-caused disconnects cost nothing;
- **missing meter data** (policy :attr:`MissingData.LAST_VALUE`): the interval's energy is
  estimated as the last assessed interval's (0 for the first) and the outcome is flagged
  ``estimated``; :attr:`MissingData.WAIVE` assesses no band penalty instead.

On the ledger (coin minor units; accounts from :func:`contract_account`):

- **open**: the bonus ``B0`` moves from :data:`CONTRACT_BUDGET` into the contract's escrow
  — posting refuses it if the budget does not hold ``B0`` (reserve, then post);
- **interval**: the penalty is taken from the escrow first, then from the consumer's
  deposit, and the rest is booked as a receivable (the one account here that may go
  below zero), all into :data:`CONTRACT_PENALTIES`; so the bonus never goes below zero;
- **close**: of what remains in escrow, ``discount_ppm`` becomes a discount credit in the
  consumer's meter account (prepaid credit for the next period's energy), the rest
  returns to the budget; the deposit returns to the consumer's meter account.

Every batch is idempotent on its key (``contract:<id>:open``, ``…:interval:<start>``,
``…:close``); intervals are posted in time order, so replaying a period gives the same
balances.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from microgrid.readings import MeterReading
from settlement.hourly import EnergyStatus, hourly_energy
from settlement.ledger import (
    UTILITY,
    Asset,
    Batch,
    LedgerError,
    PostedBatch,
    Transfer,
    meter_account,
)
from settlement.store import LedgerStore

__all__ = [
    "CONTRACT_BUDGET",
    "CONTRACT_PENALTIES",
    "MAX_CONTRACT_AMOUNT",
    "BandContract",
    "ContractError",
    "ContractStatement",
    "DisconnectCause",
    "IntervalOutcome",
    "IntervalUsage",
    "MissingData",
    "StatementRow",
    "assess_interval",
    "assess_period",
    "band_power_kw",
    "close_contract",
    "contract_account",
    "fund_budget",
    "fund_deposit",
    "open_contract",
    "revise_band",
    "settle_interval",
    "statement",
    "usage_from_readings",
]

CONTRACT_BUDGET = "utility:contract_budget"
"""The operator's budget bonuses are escrowed from and return to; funded from the utility's
fee income (:func:`fund_budget`)."""
CONTRACT_PENALTIES = "utility:contract_penalties"
"""Where penalties for band violations and emergency disconnects go."""
MAX_CONTRACT_AMOUNT = 10**15
"""Upper bound of a bonus, a rate or a penalty [micro-coins] (10⁹ coins): far inside int64
even when summed over a year of 15-min intervals."""

_PPM = 1_000_000
_WH_PER_KWH = 1_000
_INTERVALS = (timedelta(minutes=15), timedelta(hours=1))


class ContractError(LedgerError):
    """A contract or a revision breaks a rule; the message names the field and the fix."""


class DisconnectCause(enum.StrEnum):
    """Why a contracted connection went dark; decides who pays."""

    CONSUMER_LIMIT_TRIP = "consumer_limit_trip"
    """The consumer's meter opened its relay at its power limit: the consumer's."""
    CONSUMER_OVERLOAD = "consumer_overload"
    """The consumer's load tripped the inverter: the consumer's."""
    CONTAINER_TRIP = "container_trip"
    """The container tripped on its own (not on this load): the grid's."""
    SAFE_STATE = "safe_state"
    """The controller went to its safe state: the grid's."""

    @property
    def consumer_caused(self) -> bool:
        """Whether this cause costs the consumer a disconnect penalty."""
        return self in (DisconnectCause.CONSUMER_LIMIT_TRIP, DisconnectCause.CONSUMER_OVERLOAD)


class MissingData(enum.StrEnum):
    """What an interval without a meter reading is assessed on."""

    LAST_VALUE = "last_value"
    """The last assessed interval's energy, flagged as estimated."""
    WAIVE = "waive"
    """No band penalty for the interval (flagged as estimated, energy 0)."""


def contract_account(contract_id: str, part: str) -> str:
    """A contract's own account: ``contract:<id>:escrow|deposit|receivable``."""
    if part not in ("escrow", "deposit", "receivable"):
        msg = f"unknown contract account part {part!r}; use escrow, deposit or receivable"
        raise ValueError(msg)
    return f"contract:{contract_id}:{part}"


def _check_amount(contract_id: str, name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_CONTRACT_AMOUNT:
        msg = (
            f"contract {contract_id!r}: {name} must be an int in [0, {MAX_CONTRACT_AMOUNT}] "
            f"micro-coins, got {value!r}"
        )
        raise ContractError(msg)


@dataclass(frozen=True, slots=True)
class BandContract:
    """A large consumer's band contract over one period.

    Attributes
    ----------
    contract_id : str
        Unique id (letters, digits, ``-`` and ``_``).
    meter_id : str
        The consumer's connection (its meter account pays and receives the discount).
    start : datetime
        Start of the period (aware; on an interval boundary).
    interval : timedelta
        Interval length: 15 min or 1 h.
    bands_wh : tuple of (int, int)
        ``(lower, upper)`` energy per interval [Wh], one per interval of the period.
    tolerance_wh : int
        Allowed excursion beyond either edge before a penalty [Wh].
    bonus : int
        ``B0``, escrowed at the period's start [micro-coins].
    over_rate : int
        Penalty per kWh above ``upper + tolerance`` [micro-coins/kWh].
    under_rate : int
        Penalty per kWh below ``lower − tolerance`` [micro-coins/kWh].
    disconnect_penalty : int
        Penalty per emergency disconnect the consumer caused [micro-coins].
    discount_ppm : int
        Share of the remaining bonus that becomes a discount at the end [ppm].
    gate_closure : timedelta
        A band may be revised only for intervals starting at least this long after the
        revision.
    missing_data : MissingData
        How an interval without a reading is assessed.
    """

    contract_id: str
    meter_id: str
    start: datetime
    interval: timedelta
    bands_wh: tuple[tuple[int, int], ...]
    tolerance_wh: int
    bonus: int
    over_rate: int
    under_rate: int
    disconnect_penalty: int
    discount_ppm: int = 1_000_000
    gate_closure: timedelta = timedelta(hours=1)
    missing_data: MissingData = MissingData.LAST_VALUE

    def __post_init__(self) -> None:
        cid = self.contract_id
        if not cid or not all(c.isascii() and (c.isalnum() or c in "-_") for c in cid):
            msg = f"contract id {cid!r}: use ASCII letters, digits, '-' and '_'"
            raise ContractError(msg)
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            msg = f"contract {cid!r}: start {self.start.isoformat()} needs a timezone"
            raise ContractError(msg)
        if self.interval not in _INTERVALS:
            msg = f"contract {cid!r}: interval must be 15 min or 1 h, got {self.interval}"
            raise ContractError(msg)
        epoch_seconds = int(self.start.timestamp())
        if epoch_seconds % int(self.interval.total_seconds()):
            msg = f"contract {cid!r}: start {self.start.isoformat()} is not on an interval edge"
            raise ContractError(msg)
        if not self.bands_wh:
            msg = f"contract {cid!r}: bands_wh is empty; give (lower, upper) per interval"
            raise ContractError(msg)
        for k, band in enumerate(self.bands_wh):
            lower, upper = band
            if type(lower) is not int or type(upper) is not int or not 0 <= lower <= upper:
                msg = (
                    f"contract {cid!r}: bands_wh[{k}] = {band!r} must be ints "
                    "0 <= lower <= upper [Wh]"
                )
                raise ContractError(msg)
            if upper > MAX_CONTRACT_AMOUNT:
                msg = f"contract {cid!r}: bands_wh[{k}] upper {upper} Wh is implausibly large"
                raise ContractError(msg)
        for name in ("tolerance_wh", "bonus", "over_rate", "under_rate", "disconnect_penalty"):
            _check_amount(cid, name, getattr(self, name))
        if type(self.discount_ppm) is not int or not 0 <= self.discount_ppm <= _PPM:
            msg = (
                f"contract {cid!r}: discount_ppm must be in [0, {_PPM}], got {self.discount_ppm!r}"
            )
            raise ContractError(msg)

    @property
    def end(self) -> datetime:
        """End of the period (exclusive)."""
        return self.start + self.interval * len(self.bands_wh)

    def interval_starts(self) -> list[datetime]:
        """Start of every interval of the period, in order."""
        return [self.start + k * self.interval for k in range(len(self.bands_wh))]

    def index_of(self, moment: datetime) -> int:
        """Index of the interval starting at ``moment``; an error names the period."""
        offset = moment - self.start
        k, rest = divmod(offset, self.interval)
        if rest or not 0 <= k < len(self.bands_wh):
            msg = (
                f"contract {self.contract_id!r}: {moment.isoformat()} starts no interval of "
                f"the period {self.start.isoformat()} – {self.end.isoformat()}"
            )
            raise ContractError(msg)
        return int(k)


def band_power_kw(
    contract: BandContract, periods: Sequence[datetime], step: timedelta
) -> list[tuple[float, float] | None]:
    """The band as mean power over each period: ``(lower, upper)`` [kW], None outside it.

    A period of length ``step`` inside interval ``k`` gets ``bands_wh[k]`` spread evenly
    over the interval; dispatch takes it as the connection's firm demand (DESIGN.md §5).

    Examples
    --------
    >>> from datetime import UTC
    >>> c = BandContract("mill", "B001", datetime(2026, 3, 2, tzinfo=UTC), timedelta(hours=1),
    ...     ((1000, 2000),), 100, 0, 200_000, 100_000, 500_000)
    >>> band_power_kw(c, [c.start - timedelta(minutes=15), c.start], timedelta(minutes=15))
    [None, (1.0, 2.0)]
    """
    hours = contract.interval.total_seconds() / 3600
    out: list[tuple[float, float] | None] = []
    for moment in periods:
        k = (moment - contract.start) // contract.interval
        if moment < contract.start or moment + step > contract.end:
            out.append(None)
            continue
        lower, upper = contract.bands_wh[k]
        out.append((lower / _WH_PER_KWH / hours, upper / _WH_PER_KWH / hours))
    return out


def revise_band(
    contract: BandContract, first: datetime, bands_wh: Sequence[tuple[int, int]], now: datetime
) -> BandContract:
    """A revised contract: new bands from the interval starting at ``first`` on.

    Parameters
    ----------
    contract : BandContract
    first : datetime
        Start of the first revised interval.
    bands_wh : sequence of (int, int)
        New ``(lower, upper)`` per interval [Wh], from ``first`` on.
    now : datetime
        When the revision is made; ``first`` must be at least the gate closure later.

    Raises
    ------
    ContractError
        Past the gate closure, or bands beyond the period.
    """
    k = contract.index_of(first)
    if first - now < contract.gate_closure:
        msg = (
            f"contract {contract.contract_id!r}: the gate for {first.isoformat()} closed "
            f"{contract.gate_closure} before it; revise intervals from "
            f"{(now + contract.gate_closure).isoformat()} on"
        )
        raise ContractError(msg)
    if k + len(bands_wh) > len(contract.bands_wh):
        msg = (
            f"contract {contract.contract_id!r}: {len(bands_wh)} bands from interval {k} "
            f"run past the period's {len(contract.bands_wh)} intervals"
        )
        raise ContractError(msg)
    bands = list(contract.bands_wh)
    bands[k : k + len(bands_wh)] = [tuple(b) for b in bands_wh]  # type: ignore[misc]
    return replace(contract, bands_wh=tuple(bands))


@dataclass(frozen=True, slots=True)
class IntervalUsage:
    """What happened in one interval, as the meter and the controller saw it.

    Attributes
    ----------
    energy_wh : int or None
        Metered energy [Wh]; None when no reading covers the interval.
    disconnects : tuple of DisconnectCause
        Every emergency disconnect of the connection in the interval.
    grid_outage : bool
        The container was dark or in its safe state during the interval.
    allotted_wh : int or None
        Energy the plan allotted the connection [Wh] (None: not limited by the plan).
    """

    energy_wh: int | None
    disconnects: tuple[DisconnectCause, ...] = ()
    grid_outage: bool = False
    allotted_wh: int | None = None


@dataclass(frozen=True, slots=True)
class IntervalOutcome:
    """One interval assessed: the energy, the deviations and the penalty.

    Attributes
    ----------
    start : datetime
    energy_wh : int
        Metered or estimated energy [Wh].
    estimated : bool
        The reading was missing (:class:`MissingData`).
    over_wh, under_wh : int
        Energy above ``upper + tol`` and below ``lower − tol`` [Wh].
    under_waived : bool
        The grid could not supply the band (outage or allotment below ``lower``).
    consumer_disconnects : int
        Emergency disconnects the consumer caused.
    over_penalty, under_penalty, disconnect_penalty : int
        [micro-coins]
    """

    start: datetime
    energy_wh: int
    estimated: bool
    over_wh: int
    under_wh: int
    under_waived: bool
    consumer_disconnects: int
    over_penalty: int
    under_penalty: int
    disconnect_penalty: int

    @property
    def penalty(self) -> int:
        """The interval's whole penalty [micro-coins]."""
        return self.over_penalty + self.under_penalty + self.disconnect_penalty


def assess_interval(
    contract: BandContract, start: datetime, usage: IntervalUsage, last_energy_wh: int = 0
) -> IntervalOutcome:
    """One interval's deviations and penalty (module docstring); pure.

    Examples
    --------
    >>> from datetime import UTC
    >>> c = BandContract("mill", "B001", datetime(2026, 3, 2, tzinfo=UTC), timedelta(hours=1),
    ...     ((1000, 2000),), 100, 0, 200_000, 100_000, 500_000)
    >>> assess_interval(c, c.start, IntervalUsage(2600)).over_penalty  # 500 Wh × 0.2 coin/kWh
    100000
    """
    k = contract.index_of(start)
    lower, upper = contract.bands_wh[k]
    tol = contract.tolerance_wh
    estimated = usage.energy_wh is None
    if usage.energy_wh is not None:
        energy = usage.energy_wh
    elif contract.missing_data is MissingData.LAST_VALUE:
        energy = last_energy_wh
    else:
        energy = 0
    band_assessed = not (estimated and contract.missing_data is MissingData.WAIVE)
    over = max(0, energy - (upper + tol)) if band_assessed else 0
    under = max(0, (lower - tol) - energy) if band_assessed else 0
    supply_short = usage.allotted_wh is not None and usage.allotted_wh < lower
    waived = under > 0 and (usage.grid_outage or supply_short)
    if waived:
        under = 0
    caused = sum(1 for cause in usage.disconnects if cause.consumer_caused)
    return IntervalOutcome(
        start=start,
        energy_wh=energy,
        estimated=estimated,
        over_wh=over,
        under_wh=under,
        under_waived=waived,
        consumer_disconnects=caused,
        over_penalty=over * contract.over_rate // _WH_PER_KWH,
        under_penalty=under * contract.under_rate // _WH_PER_KWH,
        disconnect_penalty=caused * contract.disconnect_penalty,
    )


def usage_from_readings(
    contract: BandContract,
    readings: Sequence[MeterReading],
    disconnects: Sequence[tuple[datetime, DisconnectCause]] = (),
    outages: Sequence[tuple[datetime, datetime]] = (),
    allotted_wh: Mapping[datetime, int] | None = None,
    until: datetime | None = None,
) -> dict[datetime, IntervalUsage]:
    """Each closed interval's usage from the consumer meter's cumulative readings (pure).

    Energy is interpolated between readings exactly as hourly settlement does
    (:func:`settlement.hourly.hourly_energy`), so contract and bill see the same kWh.

    Parameters
    ----------
    contract : BandContract
    readings : sequence of MeterReading
        The consumer meter's readings around the period.
    disconnects : sequence of (datetime, DisconnectCause)
        When the connection went dark, and why.
    outages : sequence of (datetime, datetime)
        ``[start, end)`` spans the container was dark or in its safe state.
    allotted_wh : mapping of datetime to int, optional
        The plan's allotment per interval start [Wh].
    until : datetime, optional
        Only intervals that ended by then (default: all of the period).

    Returns
    -------
    dict of datetime to IntervalUsage
        An interval whose closing reading has not arrived has ``energy_wh=None``.
    """
    own = [r for r in readings if r.meter_id == contract.meter_id]
    usage: dict[datetime, IntervalUsage] = {}
    for start in contract.interval_starts():
        end = start + contract.interval
        if until is not None and end > until:
            break
        energy = hourly_energy(contract.meter_id, own, start, length=contract.interval)
        usage[start] = IntervalUsage(
            energy_wh=None if energy.status is EnergyStatus.MISSING else energy.import_wh,
            disconnects=tuple(cause for t, cause in disconnects if start <= t < end),
            grid_outage=any(a < end and b > start for a, b in outages),
            allotted_wh=None if allotted_wh is None else allotted_wh.get(start),
        )
    return usage


def assess_period(
    contract: BandContract, usage: Mapping[datetime, IntervalUsage]
) -> list[IntervalOutcome]:
    """Every interval with usage, in time order; missing ones are estimated (pure)."""
    outcomes: list[IntervalOutcome] = []
    last = 0
    for start in contract.interval_starts():
        if start not in usage:
            continue
        outcome = assess_interval(contract, start, usage[start], last)
        outcomes.append(outcome)
        last = outcome.energy_wh
    return outcomes


def _key(contract: BandContract, what: str) -> str:
    return f"contract:{contract.contract_id}:{what}"


def _interval_key(contract: BandContract, start: datetime) -> str:
    return _key(contract, f"interval:{start.astimezone(UTC).isoformat()}")


def open_contract(store: LedgerStore, contract: BandContract, now: datetime) -> PostedBatch:
    """Escrow the bonus from the operator's budget; refused if the budget lacks it."""
    transfers: tuple[Transfer, ...] = ()
    if contract.bonus:
        transfers = (
            Transfer(
                CONTRACT_BUDGET,
                contract_account(contract.contract_id, "escrow"),
                Asset.COIN,
                contract.bonus,
                "contract.bonus",
            ),
        )
    return store.post(Batch(_key(contract, "open"), transfers), now)


def fund_budget(store: LedgerStore, amount: int, key: str, now: datetime) -> PostedBatch:
    """Move ``amount`` micro-coins of the utility's fee income into the contract budget."""
    _check_amount("budget", "budget amount", amount)
    transfer = Transfer(UTILITY, CONTRACT_BUDGET, Asset.COIN, amount, "contract.budget")
    return store.post(Batch(f"contract-budget:{key}", (transfer,)), now)


def fund_deposit(
    store: LedgerStore, contract: BandContract, amount: int, key: str, now: datetime
) -> PostedBatch:
    """Move ``amount`` micro-coins from the consumer's meter account into the deposit."""
    _check_amount(contract.contract_id, "deposit amount", amount)
    transfer = Transfer(
        meter_account(contract.meter_id),
        contract_account(contract.contract_id, "deposit"),
        Asset.COIN,
        amount,
        "contract.deposit",
    )
    return store.post(Batch(_key(contract, f"deposit:{key}"), (transfer,)), now)


def _penalty_transfers(
    contract: BandContract, penalty: int, escrow: int, deposit: int
) -> tuple[Transfer, ...]:
    """The penalty from escrow, then deposit, then receivable (pure)."""
    cid = contract.contract_id
    from_escrow = min(penalty, max(escrow, 0))
    from_deposit = min(penalty - from_escrow, max(deposit, 0))
    receivable = penalty - from_escrow - from_deposit
    parts = (
        (contract_account(cid, "escrow"), from_escrow),
        (contract_account(cid, "deposit"), from_deposit),
        (contract_account(cid, "receivable"), receivable),
    )
    return tuple(
        Transfer(account, CONTRACT_PENALTIES, Asset.COIN, amount, "contract.penalty")
        for account, amount in parts
        if amount
    )


def settle_interval(
    store: LedgerStore, contract: BandContract, outcome: IntervalOutcome, now: datetime
) -> PostedBatch:
    """Post one interval's penalty (module docstring); a repeat returns the first result.

    Intervals must be posted in time order: the split between escrow, deposit and
    receivable depends on what the earlier intervals left.
    """
    key = _interval_key(contract, outcome.start)
    done = store.posted(key)
    if done is not None:
        return replace(done, replayed=True)
    cid = contract.contract_id
    transfers = _penalty_transfers(
        contract,
        outcome.penalty,
        store.balance(contract_account(cid, "escrow")),
        store.balance(contract_account(cid, "deposit")),
    )
    return store.post(Batch(key, transfers, requires_present=(_key(contract, "open"),)), now)


def close_contract(store: LedgerStore, contract: BandContract, now: datetime) -> PostedBatch:
    """Convert the remaining bonus: ``discount_ppm`` to the consumer, the rest to the budget."""
    key = _key(contract, "close")
    done = store.posted(key)
    if done is not None:
        return replace(done, replayed=True)
    cid = contract.contract_id
    escrow = store.balance(contract_account(cid, "escrow"))
    deposit = store.balance(contract_account(cid, "deposit"))
    discount = escrow * contract.discount_ppm // _PPM
    meter = meter_account(contract.meter_id)
    parts = (
        (contract_account(cid, "escrow"), meter, discount, "contract.discount"),
        (contract_account(cid, "escrow"), CONTRACT_BUDGET, escrow - discount, "contract.return"),
        (contract_account(cid, "deposit"), meter, deposit, "contract.deposit_return"),
    )
    transfers = tuple(
        Transfer(debit, credit, Asset.COIN, amount, code)
        for debit, credit, amount, code in parts
        if amount > 0
    )
    return store.post(Batch(key, transfers, requires_present=(_key(contract, "open"),)), now)


@dataclass(frozen=True, slots=True)
class StatementRow:
    """One interval of a statement: the outcome and where its penalty came from.

    Attributes
    ----------
    outcome : IntervalOutcome
    from_bonus, from_deposit, receivable : int
        The penalty's split [micro-coins].
    bonus_left : int
        Escrow after the interval [micro-coins].
    """

    outcome: IntervalOutcome
    from_bonus: int
    from_deposit: int
    receivable: int
    bonus_left: int


@dataclass(frozen=True, slots=True)
class ContractStatement:
    """A contract's standing: every assessed interval and the totals [micro-coins]."""

    contract_id: str
    bonus: int
    rows: tuple[StatementRow, ...] = field(default=())
    discount: int | None = None
    """What the close converted into a discount (None while the period is open)."""

    @property
    def penalties(self) -> int:
        """Σ penalties so far."""
        return sum(row.outcome.penalty for row in self.rows)

    @property
    def bonus_left(self) -> int:
        """Escrow left after the last assessed interval."""
        return self.rows[-1].bonus_left if self.rows else self.bonus

    @property
    def receivable(self) -> int:
        """Σ penalties booked as owed by the consumer."""
        return sum(row.receivable for row in self.rows)


def statement(
    store: LedgerStore, contract: BandContract, outcomes: Sequence[IntervalOutcome]
) -> ContractStatement:
    """The contract's statement, read back from the ledger batches of ``outcomes``."""
    cid = contract.contract_id
    escrow, deposit, receivable = (
        contract_account(cid, p) for p in ("escrow", "deposit", "receivable")
    )
    left = contract.bonus if store.posted(_key(contract, "open")) else 0
    rows: list[StatementRow] = []
    for outcome in outcomes:
        split = dict.fromkeys((escrow, deposit, receivable), 0)
        for t in store.transfers_of(_interval_key(contract, outcome.start)):
            split[t.debit] += t.amount
        left -= split[escrow]
        rows.append(StatementRow(outcome, split[escrow], split[deposit], split[receivable], left))
    discount = None
    for t in store.transfers_of(_key(contract, "close")):
        if t.code == "contract.discount":
            discount = (discount or 0) + t.amount
    if discount is None and store.posted(_key(contract, "close")):
        discount = 0
    return ContractStatement(cid, contract.bonus, tuple(rows), discount)
