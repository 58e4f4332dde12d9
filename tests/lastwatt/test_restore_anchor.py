"""A restore re-anchors the ledger on purpose: the checkpoints taken after the backup
count rows the restore removed, and without a signed base the anchored verify would
report them missing for ever (and 'ledger checkpoint' would refuse to write)."""

from __future__ import annotations

import datetime as dt

from lastwatt.backup import backup
from lastwatt.cli import main
from settlement import SqliteLedgerStore
from settlement.anchor import (
    CHECKPOINTS_FILE,
    Anchor,
    Checkpoint,
    create_anchor_key,
    verify_anchored,
    write_checkpoint,
)
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer

HOUR = dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)


def _topups(data, anchor, keys):
    with SqliteLedgerStore(data / "ledger.sqlite", synchronous="NORMAL", anchor=anchor) as store:
        for key in keys:
            transfer = Transfer(FIAT_BRIDGE, "user:amina", Asset.COIN, 1_000_000, "fiat.topup")
            store.post(Batch(f"fiat:payment:{key}", (transfer,)), HOUR)


def _verify(data, anchor):
    with SqliteLedgerStore(data / "ledger.sqlite", synchronous="NORMAL") as store:
        return verify_anchored(store, anchor.directory, anchor.key)


def test_restoring_an_older_backup_signs_a_new_base(tmp_path, capsys):
    data = tmp_path / "data"
    anchor = Anchor(data / "checkpoints", create_anchor_key(data / "anchor.key"))
    _topups(data, anchor, ["p1", "p2"])
    folder = backup(data, tmp_path / "backups").folder
    _topups(data, anchor, ["p3", "p4"])  # checkpoints now count rows the backup lacks
    assert _verify(data, anchor).ok

    assert main(["restore", str(folder), "--data-dir", str(data), "--force"]) == 0
    assert "new base" in capsys.readouterr().out
    report = _verify(data, anchor)
    assert report.ok, report.problems
    assert report.rows == 2
    _topups(data, anchor, ["p5"])  # the service goes on from the restored head
    assert _verify(data, anchor).ok


def test_without_the_base_the_restored_ledger_is_reported_truncated(tmp_path):
    data = tmp_path / "data"
    anchor = Anchor(data / "checkpoints", create_anchor_key(data / "anchor.key"))
    _topups(data, anchor, ["p1", "p2"])
    folder = backup(data, tmp_path / "backups").folder
    _topups(data, anchor, ["p3"])
    key = (data / "anchor.key").rename(tmp_path / "elsewhere.key")  # no key: no base
    assert main(["restore", str(folder), "--data-dir", str(data), "--force"]) == 0
    key.rename(data / "anchor.key")
    problems = " ".join(p.message for p in _verify(data, anchor).problems)
    assert "rows were deleted" in problems


def test_a_base_signed_with_another_key_is_reported_not_taken(tmp_path):
    data = tmp_path / "data"
    anchor = Anchor(data / "checkpoints", create_anchor_key(data / "anchor.key"))
    _topups(data, anchor, ["p1", "p2", "p3"])
    with SqliteLedgerStore(data / "ledger.sqlite", synchronous="NORMAL") as store:
        head = store.verify()
    forged = Checkpoint(1, 1, bytes(32), dt.datetime.now(dt.UTC), restored=True)
    write_checkpoint(anchor.directory, b"k" * 32, forged)  # an attacker without the key
    lines = (anchor.directory / CHECKPOINTS_FILE).read_text().splitlines()
    assert '"restored": true' in lines[-1]
    report = _verify(data, anchor)
    assert not report.ok
    assert any("signature does not verify" in p.message for p in report.problems)
    assert head.rows == 3
