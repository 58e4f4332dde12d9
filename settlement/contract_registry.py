"""Band contracts kept next to the ledger: every revision, append-only.

The ledger holds a contract's money (escrow, deposit, receivable); this registry holds its
terms. A revision never overwrites: each is a new row with the next revision number, so a
statement can always say which band applied when. The registry lives in the ledger's own
SQLite file (its own table), so a backup of the ledger carries the contracts too.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from settlement.contracts import (
    BandContract,
    ContractError,
    DisconnectCause,
    IntervalOutcome,
    MissingData,
    assess_interval,
    settle_interval,
    usage_from_readings,
)
from settlement.store import LedgerStore

__all__ = [
    "ContractRecord",
    "ContractRegistry",
    "contract_from_json",
    "contract_to_json",
    "settle_due",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS band_contracts (
    contract_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    terms TEXT NOT NULL,
    PRIMARY KEY (contract_id, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS band_contract_intervals (
    contract_id TEXT NOT NULL,
    start TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (contract_id, start)
) WITHOUT ROWID;
"""


def contract_to_json(contract: BandContract) -> dict[str, Any]:
    """The contract's terms as plain JSON values (times ISO 8601, lengths in seconds)."""
    return {
        "contract_id": contract.contract_id,
        "meter_id": contract.meter_id,
        "start": contract.start.isoformat(),
        "interval_s": int(contract.interval.total_seconds()),
        "bands_wh": [list(b) for b in contract.bands_wh],
        "tolerance_wh": contract.tolerance_wh,
        "bonus": contract.bonus,
        "over_rate": contract.over_rate,
        "under_rate": contract.under_rate,
        "disconnect_penalty": contract.disconnect_penalty,
        "discount_ppm": contract.discount_ppm,
        "gate_closure_s": int(contract.gate_closure.total_seconds()),
        "missing_data": contract.missing_data.value,
    }


def contract_from_json(terms: dict[str, Any]) -> BandContract:
    """Terms written by :func:`contract_to_json` (or a user's file) as a contract.

    Raises
    ------
    ContractError
        A field is missing, of the wrong type or out of range; the message names it.
    """
    try:
        return BandContract(
            contract_id=str(terms["contract_id"]),
            meter_id=str(terms["meter_id"]),
            start=datetime.fromisoformat(str(terms["start"])),
            interval=timedelta(seconds=_int(terms, "interval_s")),
            bands_wh=tuple(_band(k, b) for k, b in enumerate(_list(terms, "bands_wh"))),
            tolerance_wh=_int(terms, "tolerance_wh"),
            bonus=_int(terms, "bonus"),
            over_rate=_int(terms, "over_rate"),
            under_rate=_int(terms, "under_rate"),
            disconnect_penalty=_int(terms, "disconnect_penalty"),
            discount_ppm=_int(terms, "discount_ppm", 1_000_000),
            gate_closure=timedelta(seconds=_int(terms, "gate_closure_s", 3600)),
            missing_data=MissingData(terms.get("missing_data", MissingData.LAST_VALUE.value)),
        )
    except KeyError as exc:
        msg = f"contract terms: missing field {exc.args[0]!r}"
        raise ContractError(msg) from None
    except ValueError as exc:
        if isinstance(exc, ContractError):
            raise
        msg = f"contract terms: {exc}"
        raise ContractError(msg) from None


def _int(terms: dict[str, Any], name: str, default: int | None = None) -> int:
    value = terms.get(name, default)
    if type(value) is not int:
        msg = f"contract terms: {name} must be an integer, got {value!r}"
        raise ContractError(msg)
    return value


def _list(terms: dict[str, Any], name: str) -> list[Any]:
    value = terms[name]
    if not isinstance(value, list):
        msg = f"contract terms: {name} must be a list of [lower, upper] pairs [Wh]"
        raise ContractError(msg)
    return value


def _band(k: int, band: Any) -> tuple[int, int]:
    if not isinstance(band, list | tuple) or len(band) != 2:
        msg = f"contract terms: bands_wh[{k}] must be a [lower, upper] pair [Wh], got {band!r}"
        raise ContractError(msg)
    lower, upper = band
    if type(lower) is not int or type(upper) is not int:
        msg = f"contract terms: bands_wh[{k}] must hold integers [Wh], got {band!r}"
        raise ContractError(msg)
    return lower, upper


@dataclass(frozen=True, slots=True)
class ContractRecord:
    """The latest revision of a contract and whether its period was closed."""

    contract: BandContract
    revision: int
    recorded_at: datetime
    closed: bool


class ContractRegistry:
    """Contract terms in a SQLite file (normally the ledger's), one row per revision.

    Parameters
    ----------
    path : str or Path
        The SQLite file.
    """

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ContractRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert(self, contract: BandContract, revision: int, now: datetime, status: str) -> None:
        self._db.execute(
            "INSERT INTO band_contracts VALUES (?, ?, ?, ?, ?)",
            (
                contract.contract_id,
                revision,
                now.isoformat(),
                status,
                json.dumps(contract_to_json(contract), sort_keys=True),
            ),
        )

    def create(self, contract: BandContract, now: datetime) -> ContractRecord:
        """Record a new contract (revision 1); an id in use is refused."""
        if self.get(contract.contract_id) is not None:
            msg = f"contract {contract.contract_id!r} exists; revise it or choose another id"
            raise ContractError(msg)
        self._insert(contract, 1, now, "open")
        return ContractRecord(contract, 1, now, closed=False)

    def revise(self, contract: BandContract, now: datetime) -> ContractRecord:
        """Record revised terms of an open contract as its next revision."""
        record = self.require(contract.contract_id)
        if record.closed:
            msg = f"contract {contract.contract_id!r} is closed; it cannot be revised"
            raise ContractError(msg)
        self._insert(contract, record.revision + 1, now, "open")
        return ContractRecord(contract, record.revision + 1, now, closed=False)

    def mark_closed(self, contract_id: str, now: datetime) -> ContractRecord:
        """Record that the contract's period was closed (idempotent)."""
        record = self.require(contract_id)
        if record.closed:
            return record
        self._insert(record.contract, record.revision + 1, now, "closed")
        return ContractRecord(record.contract, record.revision + 1, now, closed=True)

    def get(self, contract_id: str) -> ContractRecord | None:
        """The latest revision, or None."""
        row = self._db.execute(
            "SELECT revision, recorded_at, status, terms FROM band_contracts "
            "WHERE contract_id = ? ORDER BY revision DESC LIMIT 1",
            (contract_id,),
        ).fetchone()
        if row is None:
            return None
        revision, recorded_at, status, terms = row
        return ContractRecord(
            contract_from_json(json.loads(terms)),
            int(revision),
            datetime.fromisoformat(recorded_at),
            closed=status == "closed",
        )

    def require(self, contract_id: str) -> ContractRecord:
        """The latest revision; an unknown id is an error naming it."""
        record = self.get(contract_id)
        if record is None:
            msg = f"no contract {contract_id!r}; list them with `lastwatt contracts list`"
            raise ContractError(msg)
        return record

    def all(self) -> list[ContractRecord]:
        """The latest revision of every contract, by id."""
        ids = [r[0] for r in self._db.execute("SELECT DISTINCT contract_id FROM band_contracts")]
        return [self.require(cid) for cid in sorted(ids)]

    # --- assessed intervals ----------------------------------------------------------------
    def record_outcome(self, contract_id: str, outcome: IntervalOutcome) -> None:
        """Keep an assessed interval as it was charged (the first record stands)."""
        body = {
            "energy_wh": outcome.energy_wh,
            "estimated": outcome.estimated,
            "over_wh": outcome.over_wh,
            "under_wh": outcome.under_wh,
            "under_waived": outcome.under_waived,
            "consumer_disconnects": outcome.consumer_disconnects,
            "over_penalty": outcome.over_penalty,
            "under_penalty": outcome.under_penalty,
            "disconnect_penalty": outcome.disconnect_penalty,
        }
        self._db.execute(
            "INSERT OR IGNORE INTO band_contract_intervals VALUES (?, ?, ?)",
            (contract_id, outcome.start.isoformat(), json.dumps(body, sort_keys=True)),
        )

    def outcomes(self, contract_id: str) -> list[IntervalOutcome]:
        """Every assessed interval of a contract, in time order."""
        rows = self._db.execute(
            "SELECT start, outcome FROM band_contract_intervals WHERE contract_id = ? "
            "ORDER BY start",
            (contract_id,),
        )
        found = [
            IntervalOutcome(start=datetime.fromisoformat(start), **json.loads(body))
            for start, body in rows
        ]
        return sorted(found, key=lambda o: o.start)


def settle_due(
    store: LedgerStore,
    registry: ContractRegistry,
    contract_id: str,
    now: datetime,
    grace: timedelta = timedelta(hours=1),
    disconnects: tuple[tuple[datetime, DisconnectCause], ...] = (),
    outages: tuple[tuple[datetime, datetime], ...] = (),
    allotted_wh: dict[datetime, int] | None = None,
) -> list[IntervalOutcome]:
    """Assess and post every interval that ended at least ``grace`` ago and is not yet done.

    A reading may still arrive during the grace; after it, a missing reading is estimated
    (the contract's :class:`~settlement.contracts.MissingData` policy). Each interval is
    charged once: its outcome is recorded with the batch, and a late reading changes nothing.

    Returns
    -------
    list of IntervalOutcome
        The intervals assessed by this call, in time order.
    """
    record = registry.require(contract_id)
    contract = record.contract
    done = {o.start: o for o in registry.outcomes(contract_id)}
    last_energy = 0
    readings = store.readings(contract.start, now, [contract.meter_id])
    before = store.reading_before(contract.meter_id, contract.start)
    if before is not None:
        readings.append(before)
    usage = usage_from_readings(
        contract, readings, disconnects, outages, allotted_wh, until=now - grace
    )
    assessed: list[IntervalOutcome] = []
    for start in sorted(usage):
        if start in done:
            last_energy = done[start].energy_wh
            continue
        outcome = assess_interval(contract, start, usage[start], last_energy)
        settle_interval(store, contract, outcome, now)
        registry.record_outcome(contract_id, outcome)
        assessed.append(outcome)
        last_energy = outcome.energy_wh
    return assessed
