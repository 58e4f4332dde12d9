"""``lastwatt backup`` and ``lastwatt restore`` (registered by :mod:`lastwatt.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lastwatt.commands import Subcommands, UsageError, command

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    backup = command(
        commands,
        "backup",
        "Back up the service's databases and credentials (SQLite online backup; safe while "
        "the service runs), verified, with a manifest of checksums.",
        "lastwatt backup --data-dir /var/lib/lastwatt --to /mnt/usb/backups",
        _backup,
    )
    backup.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="state folder (default data/)"
    )
    backup.add_argument(
        "--to", type=Path, required=True, metavar="FOLDER", help="where the backup folder goes"
    )
    restore = command(
        commands,
        "restore",
        "Restore a backup into the data folder (stop the service first) and verify the "
        "restored ledger against the backup's record.",
        "lastwatt restore /mnt/usb/backups/lastwatt-backup-20260801T060000Z --data-dir data",
        _restore,
    )
    restore.add_argument("backup", type=Path, help="a folder made by 'lastwatt backup'")
    restore.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="state folder (default data/)"
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace existing data (moved aside into DATA_DIR/replaced-TIME/, not deleted)",
    )
    restore.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="the ledger's checkpoint folder, where the restored head is signed as a new "
        "base (default DATA_DIR/checkpoints, the service's)",
    )
    restore.add_argument(
        "--anchor-key",
        type=Path,
        metavar="FILE",
        help="the checkpoints' key (default DATA_DIR/anchor.key; none there: not anchored)",
    )
    check = command(
        commands,
        "backup-check",
        "Check a backup against its manifest and SQLite's integrity check (read-only).",
        "lastwatt backup-check /mnt/usb/backups/lastwatt-backup-20260801T060000Z",
        _check,
    )
    check.add_argument("backup", type=Path, help="a folder made by 'lastwatt backup'")


def _backup(args: argparse.Namespace) -> int:
    from lastwatt.backup import BackupError, backup

    try:
        report = backup(args.data_dir, args.to)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    size = sum(report.files.values())
    print(
        f"backed up to {report.folder} ({size / 1e6:.1f} MB): ledger verified, "
        f"{report.ledger_rows} journal rows, head {report.ledger_head[:16]}…"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from lastwatt.backup import BackupError, restore
    from settlement.anchor import Anchor, AnchorError, load_anchor_key

    key_path = args.anchor_key or args.data_dir / "anchor.key"
    anchor = None
    if args.anchor_key is not None or key_path.exists():
        try:
            anchor = Anchor(
                args.checkpoints or args.data_dir / "checkpoints", load_anchor_key(key_path)
            )
        except AnchorError as exc:
            raise UsageError(str(exc)) from None
    try:
        report = restore(args.backup, args.data_dir, args.force, anchor)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"restored {report.folder} into {args.data_dir}: ledger verified, "
        f"{report.ledger_rows} journal rows, head {report.ledger_head[:16]}… as backed up"
    )
    if anchor is not None:
        print(f"signed the restored head as the new base of the checkpoints in {anchor.directory}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lastwatt.backup import BackupError, verify_backup

    try:
        report = verify_backup(args.backup)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    print(f"{report.folder}: OK, {len(report.files)} files match the manifest")
    return 0
