"""Anchoring the hash chain: signed checkpoints of its head, kept outside the database.

The hash chain alone shows that the journal is *self-consistent*; whoever can write the
database file can also edit a row and re-hash every row after it, drop the last batches,
append a correctly chained forged batch, or empty every table, and the chain still
verifies. A **checkpoint** records the chain head — journal row count, hash of that row,
batch count, time — with an HMAC-SHA256 under a key the database does not hold, in a
file where the database is not (an export directory, the operator's backup). Against
the checkpoints, :func:`check_anchor` reports:

- a **rewrite** (edit + re-hash): the hash of a checkpointed row differs; the rows
  changed lie between the last checkpoint that still matches and the first that does not;
- a **truncation** or an **emptied ledger**: fewer rows than the last checkpoint counted;
- an **append** after the last checkpoint: rows no checkpoint covers. A store opened
  with an :class:`Anchor` writes a checkpoint after every commit, so a row posted by
  the service is always covered; rows that are not were written around it (or in the
  instant between a commit and its checkpoint — the report lists them to be checked).

A **restore** (``lastwatt restore``) puts back an older ledger on purpose: it appends a
signed *base* checkpoint (``"restored": true``) of the restored head. The checkpoints
before the last base describe a history the operator replaced, so the anchor is checked
from the base on; without the key nobody can write a base, so a truncation or a rewrite
still cannot pass as a restore.

File format: ``<directory>/checkpoints.jsonl``, one JSON object per line,
``{"rows": int, "batches": int, "head": hex, "at": ISO 8601, "mac": hex}`` (plus
``"restored": true`` on a base), appended and fsynced; the MAC covers the other fields in
that order. A line whose MAC does not verify is itself reported (someone edited the
anchor).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from settlement.alarms import Alarm, AlarmKind
from settlement.ledger import GENESIS_HASH, JournalRow, Problem, VerifiedPoint, VerifyReport

if TYPE_CHECKING:
    from settlement.store import LedgerStore

__all__ = [
    "CHECKPOINTS_FILE",
    "Anchor",
    "AnchorError",
    "Checkpoint",
    "check_anchor",
    "create_anchor_key",
    "load_anchor_key",
    "read_checkpoints",
    "report_verification",
    "verify_anchored",
    "verify_store",
    "write_checkpoint",
]

CHECKPOINTS_FILE = "checkpoints.jsonl"
VERIFY_SUBJECT = "ledger"
"""The subject of the ledger's verify-failure alarm (one standing condition)."""
_MIN_KEY_BYTES = 32
_log = logging.getLogger(__name__)


class AnchorError(ValueError):
    """The anchor key or checkpoint file cannot be used; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head at one moment.

    Attributes
    ----------
    rows : int
        Journal rows then (the head is row ``rows``; 0 for an empty journal).
    batches : int
        Batches posted then (informational: shown in messages).
    head_hash : bytes
        Hash of row ``rows`` (the genesis hash for an empty journal).
    at : datetime
        When it was taken (UTC).
    restored : bool
        A base written by a restore: the checkpoints before it no longer apply.
    """

    rows: int
    batches: int
    head_hash: bytes
    at: datetime
    restored: bool = False

    def signed_text(self) -> bytes:
        """The canonical bytes the MAC covers (a base's flag too, so none can be forged)."""
        text = f"{self.rows}|{self.batches}|{self.head_hash.hex()}|{self.at.isoformat()}"
        return (text + ("|restored" if self.restored else "")).encode()


def create_anchor_key(path: Path) -> bytes:
    """Write a new random key to ``path`` (mode 0600); refuses to overwrite one.

    Raises
    ------
    AnchorError
        If the file exists: a new key would orphan every checkpoint signed so far.
    """
    path = Path(path)
    if path.exists():
        msg = f"anchor key {path} exists; keep it (a new key orphans every checkpoint)"
        raise AnchorError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(_MIN_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    return key


def load_anchor_key(path: Path) -> bytes:
    """Read a key written by :func:`create_anchor_key`.

    Raises
    ------
    AnchorError
        Missing file, or not at least 32 bytes of hex.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        msg = f"no anchor key at {path}; create one with 'lastwatt ledger checkpoint'"
        raise AnchorError(msg) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = f"anchor key {path} is not a hex key: {exc}"
        raise AnchorError(msg) from None
    if len(key) < _MIN_KEY_BYTES:
        msg = f"anchor key {path} has {len(key)} bytes; at least {_MIN_KEY_BYTES} are needed"
        raise AnchorError(msg)
    return key


def _mac(key: bytes, checkpoint: Checkpoint) -> str:
    return hmac.new(key, checkpoint.signed_text(), hashlib.sha256).hexdigest()


def write_checkpoint(directory: Path, key: bytes, checkpoint: Checkpoint) -> Path:
    """Append a signed checkpoint to ``<directory>/checkpoints.jsonl`` and fsync it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINTS_FILE
    entry: dict[str, object] = {
        "rows": checkpoint.rows,
        "batches": checkpoint.batches,
        "head": checkpoint.head_hash.hex(),
        "at": checkpoint.at.isoformat(),
    }
    if checkpoint.restored:
        entry["restored"] = True
    line = json.dumps(entry | {"mac": _mac(key, checkpoint)})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_checkpoints(directory: Path, key: bytes) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoints whose MAC verifies, oldest first, and a problem per bad line."""
    path = Path(directory) / CHECKPOINTS_FILE
    if not path.exists():
        return [], []
    found: list[Checkpoint] = []
    problems: list[Problem] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                checkpoint = Checkpoint(
                    int(item["rows"]),
                    int(item["batches"]),
                    bytes.fromhex(item["head"]),
                    datetime.fromisoformat(item["at"]),
                    item.get("restored", False) is True,
                )
                good = hmac.compare_digest(_mac(key, checkpoint), str(item["mac"]))
            except (ValueError, KeyError, TypeError):
                good = False
            if good:
                found.append(checkpoint)
            else:
                problems.append(
                    Problem(
                        0,
                        f"{path}, line {number}: checkpoint is malformed or its signature "
                        "does not verify (the anchor was edited, or signed with another key)",
                    )
                )
    return found, problems


def check_anchor(
    report: VerifyReport,
    checkpoints: Sequence[Checkpoint],
    hash_at: Callable[[int], bytes | None],
    rows_after: Callable[[int], list[JournalRow]],
) -> list[Problem]:
    """What changed in the journal since its checkpoints (module docstring).

    Parameters
    ----------
    report : VerifyReport
        The journal's own verification (rows and head now).
    checkpoints : sequence of Checkpoint
        Verified checkpoints, oldest first (:func:`read_checkpoints`).
    hash_at : callable
        The stored hash of journal row ``seq`` (None if there is no such row).
    rows_after : callable
        The journal rows after ``seq`` (a bounded number, in order).

    Returns
    -------
    list of Problem
        Empty if the journal extends the last checkpoint exactly.
    """
    if not checkpoints:
        return [Problem(0, "no checkpoint to verify against: the chain is only self-consistent")]
    bases = [k for k, c in enumerate(checkpoints) if c.restored]
    checkpoints = checkpoints[bases[-1] :] if bases else checkpoints  # a restore's new base
    last = checkpoints[-1]
    when = last.at.isoformat(timespec="seconds")
    problems: list[Problem] = []
    if report.rows < last.rows:
        what = "the ledger was emptied" if report.rows == 0 else "rows were deleted"
        problems.append(
            Problem(
                report.rows + 1,
                f"journal has {report.rows} rows but the checkpoint of {when} counted "
                f"{last.rows} ({last.batches} batches): {what} — rows "
                f"{report.rows + 1}–{last.rows} are missing",
            )
        )
    # The first checkpoint whose row no longer has its recorded hash (hashes of a
    # rewritten chain differ from the edited row onward, so mismatches are a suffix).
    covered = [c for c in checkpoints if 0 < c.rows <= report.rows]
    low, high = 0, len(covered)
    while low < high:
        middle = (low + high) // 2
        if hash_at(covered[middle].rows) == covered[middle].head_hash:
            low = middle + 1
        else:
            high = middle
    if low < len(covered):
        bad = covered[low]
        first = covered[low - 1].rows + 1 if low else 1
        problems.append(
            Problem(
                first,
                f"rows {first}–{bad.rows} were rewritten after the checkpoint of "
                f"{bad.at.isoformat(timespec='seconds')}: row {bad.rows} no longer has the "
                "hash it was signed with (a row edited and the chain re-hashed)",
            )
        )
    if report.rows > last.rows:
        extra = rows_after(last.rows)
        keys = list(dict.fromkeys(r.batch_key for r in extra))
        shown = ", ".join(repr(k[:60]) for k in keys[:5]) + (" …" if len(keys) > 5 else "")
        problems.append(
            Problem(
                last.rows + 1,
                f"rows {last.rows + 1}–{report.rows} (batches {shown}) were added after the "
                f"last checkpoint ({when}) and no checkpoint covers them: if the service did "
                "not post them, they are forged; after checking, anchor them with "
                "'lastwatt ledger checkpoint'",
            )
        )
    return problems


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a store writes its checkpoints, and the key it signs them with.

    Attributes
    ----------
    directory : Path
        The checkpoint directory (not the database's own file).
    key : bytes
        The HMAC key (from a file the database does not hold).
    """

    directory: Path
    key: bytes

    def checkpoint(self, rows: int, batches: int, head_hash: bytes) -> Path:
        """Sign and append the chain head now."""
        return write_checkpoint(
            self.directory, self.key, Checkpoint(rows, batches, head_hash, datetime.now(UTC))
        )


_LISTED_ROWS = 200


def verify_anchored(
    store: LedgerStore, directory: Path, key: bytes, since: VerifiedPoint | None = None
) -> VerifyReport:
    """The store's own verification plus :func:`check_anchor` against ``directory``.

    Parameters
    ----------
    store : LedgerStore
        The ledger.
    directory : Path
        Its checkpoint directory.
    key : bytes
        The anchor key (:func:`load_anchor_key`).
    since : VerifiedPoint, optional
        Resume the chain check there (:meth:`settlement.store.LedgerStore.verify`); the
        checkpoints are checked in full either way, so a rewrite of rows before it that
        re-hashes the chain is still found.
    """
    report = store.verify(since)
    checkpoints, bad_lines = read_checkpoints(directory, key)

    def hash_at(seq: int) -> bytes | None:
        if seq == 0:
            return GENESIS_HASH
        row = next(store.journal_rows(seq), None)
        return bytes(row.hash) if row is not None and row.seq == seq else None

    def rows_after(seq: int) -> list[JournalRow]:
        return list(itertools.islice(store.journal_rows(seq + 1), _LISTED_ROWS))

    found = check_anchor(report, checkpoints, hash_at, rows_after)
    problems = tuple(sorted((*report.problems, *bad_lines, *found), key=lambda p: p.seq == 0))
    point = report.point if not problems else None
    return VerifyReport(report.rows, report.batches, report.head_hash, problems, point)


def report_verification(store: LedgerStore, report: VerifyReport, at: datetime) -> bool:
    """Raise the critical verify-failure alarm for a failed ``report``; clear it on a pass.

    Every verification — ``lastwatt ledger verify``, ``GET /api/ledger/verify``, the
    service's periodic check — goes through here, so a tampered ledger is an alarm the
    operator sees (``GET /api/alarms``, ``lastwatt alarms``, the dashboard), not only a
    line of output nobody reads. A failure stays one standing condition
    (``verify_failed`` on subject ``ledger``) however often it is found again.

    Parameters
    ----------
    store : LedgerStore
        Where the alarm goes (the verified ledger: its alarm table is not part of the
        hash chain, so writing it changes nothing that was verified).
    report : VerifyReport
        The verification's outcome.
    at : datetime
        When it ran, timezone-aware.

    Returns
    -------
    bool
        Whether the alarm could be written (a store too damaged to write to is logged
        by the caller's report; the verification's own answer never depends on this).
    """
    try:
        if report.ok:
            store.clear_alarm(AlarmKind.VERIFY_FAILED, VERIFY_SUBJECT, at)
            return True
        first = report.first_bad_seq
        where = f"first bad row {first}" if first else "no single row to blame"
        shown = "; ".join(p.message for p in report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        message = (
            f"the ledger failed verification ({where}): {shown}{more} — stop trusting "
            "balances, restore from a verified backup or investigate with "
            "'lastwatt ledger verify'"
        )
        store.add_alarms([Alarm(AlarmKind.VERIFY_FAILED, VERIFY_SUBJECT, at, message)])
    except Exception:  # a broken database must not hide the report itself
        _log.exception("could not record the ledger's verification as an alarm")
        return False
    return True


def verify_store(ledger: LedgerStore, since: VerifiedPoint | None, at: datetime) -> VerifyReport:
    """Verify ``ledger`` (against its anchor if it has one) and alarm on a failure.

    Opens a connection of its own (``connect_again``), so it may run in a worker thread:
    neither a SQLite nor a psycopg connection may be shared with another thread. The
    outcome goes through :func:`report_verification`.

    Parameters
    ----------
    ledger : LedgerStore
        The ledger (SQLite or PostgreSQL).
    since : VerifiedPoint or None
        Where the last clean verification ended (None: from the first row).
    at : datetime
        When it runs, timezone-aware (the alarm's time).
    """
    store = ledger.connect_again()
    try:
        anchor = store.anchor
        if anchor is None:
            report = store.verify(since)
        else:
            report = verify_anchored(store, anchor.directory, anchor.key, since)
        report_verification(store, report, at)
        return report
    finally:
        store.close()
