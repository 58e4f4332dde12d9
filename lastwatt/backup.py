"""Backups of a data directory on SQLite's online backup API, verified before and after restore.

A backup is a folder holding a consistent copy of each database (``ledger.sqlite``,
``service.sqlite``), taken with :meth:`sqlite3.Connection.backup` while the service may
be running (the API copies pages under a read transaction, so the copy is one committed
state, never half a batch), the credentials file (mode 0600) and ``manifest.json``:
the SHA-256 of every file, and the ledger's row count and hash-chain head as
:meth:`settlement.SqliteLedgerStore.verify` found them.

:func:`restore` refuses a backup whose files do not match the manifest, copies the
databases with the same API into the data directory (the files it replaces are moved
aside, never deleted), then verifies the restored ledger — the whole chain and every
invariant — and checks that its head is the one recorded: a restore that does not
verify is reported as such and the replaced files are put back. Stop the service before
restoring.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lastwatt.auth import CREDENTIALS_FILE, write_secret_file
from settlement import SqliteLedgerStore
from settlement.anchor import Anchor, Checkpoint, write_checkpoint
from settlement.ledger import VerifyReport

__all__ = ["DATABASES", "BackupError", "BackupReport", "backup", "restore", "verify_backup"]

DATABASES = ("ledger.sqlite", "service.sqlite")
"""The data directory's databases, in the order they are copied."""

MANIFEST = "manifest.json"


class BackupError(Exception):
    """A backup or restore that cannot be made or does not verify; the message says why."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What a backup holds or what a restore put back.

    Attributes
    ----------
    folder : Path
        The backup folder.
    ledger_rows : int
        Journal rows of the ledger.
    ledger_head : str
        Hex head of the ledger's hash chain.
    files : dict of str to int
        File name → size [bytes].
    """

    folder: Path
    ledger_rows: int
    ledger_head: str
    files: dict[str, int]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_database(source: Path, target: Path) -> None:
    """Copy one database with the online backup API (consistent while written to)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst, pages=1024)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()


def _single_file(path: Path) -> None:
    """Leave WAL mode (the ledger store turns it on), so the copy is one file to hash."""
    db = sqlite3.connect(str(path))
    try:
        db.execute("PRAGMA journal_mode = DELETE")
    finally:
        db.close()


def _check_integrity(path: Path) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    if result != "ok":
        msg = f"{path}: SQLite integrity check failed: {result}"
        raise BackupError(msg)


def _verified_ledger(path: Path) -> VerifyReport:
    with SqliteLedgerStore(path) as store:
        report = store.verify()
    if not report.ok:
        first = report.problems[0].message if report.problems else "unknown problem"
        msg = f"{path}: the ledger does not verify (first bad row {report.first_bad_seq}): {first}"
        raise BackupError(msg)
    return report


def backup(data_dir: Path, target: Path, now: dt.datetime | None = None) -> BackupReport:
    """Back up ``data_dir`` into a new folder under ``target``; returns what it holds.

    Raises
    ------
    BackupError
        If there is no ledger to back up, or the copy does not verify.
    """
    data_dir, target = Path(data_dir), Path(target)
    if not (data_dir / DATABASES[0]).exists():
        msg = f"no {DATABASES[0]} in {data_dir}; is --data-dir the service's state folder?"
        raise BackupError(msg)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = target / f"lastwatt-backup-{stamp}"
    if folder.exists():
        msg = f"{folder} exists; wait a second or choose another --to"
        raise BackupError(msg)
    folder.mkdir(parents=True, mode=0o700)
    try:
        for name in DATABASES:
            if (data_dir / name).exists():
                _copy_database(data_dir / name, folder / name)
                _check_integrity(folder / name)
        verified = _verified_ledger(folder / DATABASES[0])
        rows, head = verified.rows, verified.head_hash.hex()
        _single_file(folder / DATABASES[0])
        credentials = data_dir / CREDENTIALS_FILE
        if credentials.exists():
            write_secret_file(folder / CREDENTIALS_FILE, credentials.read_text(encoding="utf-8"))
        files = sorted(p.name for p in folder.iterdir())
        manifest = {
            "created_at": stamp,
            "ledger_rows": rows,
            "ledger_head": head,
            "sha256": {name: _sha256(folder / name) for name in files},
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return BackupReport(folder, rows, head, {n: (folder / n).stat().st_size for n in files})


def verify_backup(folder: Path) -> BackupReport:
    """Check a backup's files against its manifest and its databases' integrity.

    Raises
    ------
    BackupError
        Naming the file that is missing, changed or corrupt.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        expected: dict[str, str] = manifest["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        msg = f"{folder} is not a lastwatt backup (no readable {MANIFEST}: {exc})"
        raise BackupError(msg) from None
    if DATABASES[0] not in expected:
        msg = f"{folder}: the backup holds no ledger"
        raise BackupError(msg)
    for name, digest in expected.items():
        path = folder / name
        if not path.exists():
            msg = f"{folder}: {name} is missing"
            raise BackupError(msg)
        if _sha256(path) != digest:
            msg = f"{folder}: {name} does not match the manifest (changed or damaged)"
            raise BackupError(msg)
        if name.endswith(".sqlite"):
            _check_integrity(path)
    return BackupReport(
        folder,
        int(manifest["ledger_rows"]),
        str(manifest["ledger_head"]),
        {n: (folder / n).stat().st_size for n in expected},
    )


def restore(
    folder: Path, data_dir: Path, force: bool = False, anchor: Anchor | None = None
) -> BackupReport:
    """Restore a backup into ``data_dir`` and verify the result (module docstring).

    With ``anchor`` (the ledger's checkpoint folder and key), the restored head is signed
    as a new base (:mod:`settlement.anchor`): the checkpoints taken after the backup
    count rows the restore removed on purpose, and the anchored verify would otherwise
    report them missing for ever.

    Raises
    ------
    BackupError
        If the backup does not verify, ``data_dir`` holds data and ``force`` is False, or
        the restored ledger does not verify (the replaced files are then put back).
    """
    report = verify_backup(folder)
    data_dir = Path(data_dir)
    present = [
        p
        for name in (*DATABASES, CREDENTIALS_FILE)
        for p in (data_dir / name, data_dir / f"{name}-wal", data_dir / f"{name}-shm")
        if p.exists()
    ]
    if present and not force:
        msg = (
            f"{data_dir} already holds {', '.join(p.name for p in present)}; stop the service "
            "and pass --force to replace them (they are moved aside, not deleted)"
        )
        raise BackupError(msg)
    data_dir.mkdir(parents=True, exist_ok=True)
    aside = data_dir / f"replaced-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    if present:
        aside.mkdir(mode=0o700)
        for path in present:
            path.rename(aside / path.name)
    try:
        for name in report.files:
            if name.endswith(".sqlite"):
                _copy_database(folder / name, data_dir / name)
            elif name == CREDENTIALS_FILE:
                text = (folder / name).read_text(encoding="utf-8")
                write_secret_file(data_dir / name, text)
        restored = _verified_ledger(data_dir / DATABASES[0])
        rows, head = restored.rows, restored.head_hash.hex()
        if (rows, head) != (report.ledger_rows, report.ledger_head):
            msg = (
                f"restored ledger has {rows} rows, head {head[:16]}…; the backup recorded "
                f"{report.ledger_rows} rows, head {report.ledger_head[:16]}…"
            )
            raise BackupError(msg)
    except BaseException:
        for name in (*DATABASES, CREDENTIALS_FILE):
            (data_dir / name).unlink(missing_ok=True)
        if present:
            for path in aside.iterdir():
                path.rename(data_dir / path.name)
            aside.rmdir()
        raise
    if anchor is not None:  # after the files are in place: a failed restore signs nothing
        write_checkpoint(
            anchor.directory,
            anchor.key,
            Checkpoint(
                restored.rows,
                restored.batches,
                restored.head_hash,
                dt.datetime.now(dt.UTC),
                restored=True,
            ),
        )
    return report
