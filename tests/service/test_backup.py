"""Backups taken while the service runs, restored and verified; damaged backups refused."""

from __future__ import annotations

import asyncio
import stat

import pytest

from lastwatt.backup import BackupError, backup, restore, verify_backup
from lastwatt.cli import main
from microgrid.site import ConnectionKind
from settlement import SqliteLedgerStore
from tests.service.conftest import Rig


@pytest.fixture(scope="module")
def live_backup(tmp_path_factory):
    """A data directory after two served hours, backed up while the service was running."""
    data = tmp_path_factory.mktemp("data")
    target = tmp_path_factory.mktemp("backups")

    async def scenario():
        async with Rig(data, opening={ConnectionKind.HOUSEHOLD: 2_000_000}) as rig:
            await rig.run_for(2.0)
            report = backup(data, target)  # online: the service holds its connections open
            balances = rig.service.store.balances()
        return report, balances

    report, balances = asyncio.run(scenario())
    return data, report, balances


def test_backup_holds_a_verified_ledger_and_owner_only_secrets(live_backup):
    _, report, _ = live_backup
    assert report.ledger_rows > 0
    assert set(report.files) == {"ledger.sqlite", "service.sqlite", "credentials.json"}
    assert stat.S_IMODE((report.folder / "credentials.json").stat().st_mode) == 0o600
    assert verify_backup(report.folder).ledger_head == report.ledger_head


def test_restore_into_a_new_folder_gives_the_same_ledger(live_backup, tmp_path, capsys):
    _, report, balances = live_backup
    target = tmp_path / "restored"
    assert main(["restore", str(report.folder), "--data-dir", str(target)]) == 0
    assert "ledger verified" in capsys.readouterr().out
    with SqliteLedgerStore(target / "ledger.sqlite") as store:
        assert store.balances() == balances
        assert store.verify().head_hash.hex() == report.ledger_head


def test_restore_over_data_needs_force_and_moves_the_old_files_aside(live_backup, tmp_path):
    _, report, _ = live_backup
    target = tmp_path / "data"
    restore(report.folder, target)
    with pytest.raises(BackupError, match="pass --force"):
        restore(report.folder, target)
    restore(report.folder, target, force=True)
    aside = [p for p in target.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1
    assert (aside[0] / "ledger.sqlite").exists()


def test_a_damaged_backup_is_refused_and_nothing_is_replaced(live_backup, tmp_path, capsys):
    _, report, _ = live_backup
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(report.folder, copy)
    with (copy / "ledger.sqlite").open("r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00garbage\x00")
    assert main(["backup-check", str(copy)]) == 2
    assert "ledger.sqlite does not match the manifest" in capsys.readouterr().err
    target = tmp_path / "target"
    assert main(["restore", str(copy), "--data-dir", str(target)]) == 2
    assert not (target / "ledger.sqlite").exists()


def test_a_backup_of_nothing_is_named(tmp_path, capsys):
    assert main(["backup", "--data-dir", str(tmp_path), "--to", str(tmp_path / "b")]) == 2
    assert "no ledger.sqlite" in capsys.readouterr().err


def test_a_restore_that_does_not_match_the_record_is_undone(live_backup, tmp_path):
    import json
    import shutil

    _, report, _ = live_backup
    copy = tmp_path / "copy"
    shutil.copytree(report.folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["ledger_head"] = "00" * 32
    (copy / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "target"
    restore(report.folder, target)
    with pytest.raises(BackupError, match="the backup recorded"):
        restore(copy, target, force=True)
    # The data that was there is back in place, and verifies.
    with SqliteLedgerStore(target / "ledger.sqlite") as store:
        assert store.verify().head_hash.hex() == report.ledger_head
    assert not [p for p in target.iterdir() if p.name.startswith("replaced-")]
