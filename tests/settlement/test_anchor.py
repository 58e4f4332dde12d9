"""Tamper evidence with an anchor: what a self-consistent rewrite of the file cannot hide.

Each attack below leaves a journal whose own hash chain, batch digests and balance table
verify (the attacker re-hashes and recomputes them); only the signed checkpoints outside
the database tell.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore, fund_meter
from settlement.anchor import (
    CHECKPOINTS_FILE,
    Anchor,
    AnchorError,
    create_anchor_key,
    load_anchor_key,
    verify_anchored,
)
from settlement.ledger import (
    FIAT_BRIDGE,
    GENESIS_HASH,
    Asset,
    Batch,
    Transfer,
    batch_digest,
    chain_hash,
)
from tests.settlement.conftest import HOUR


def topup(key: str, account: str, coins: int) -> Batch:
    return Batch(key, (Transfer(FIAT_BRIDGE, account, Asset.COIN, coins, "fiat.topup"),))


@pytest.fixture
def ledger(tmp_path):
    """A ledger of top-ups and fundings, checkpointed after every post; its paths."""
    key = create_anchor_key(tmp_path / "keys" / "anchor.key")
    anchor = Anchor(tmp_path / "export", key)
    path = tmp_path / "data" / "ledger.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL", anchor=anchor) as store:
        for k, name in enumerate(["amina", "bala", "chidi", "dede"]):
            store.post(topup(f"fiat:payment:pi_{k}", f"user:{name}", 5_000_000), HOUR)
        for k, name in enumerate(["amina", "bala", "chidi"]):
            fund_meter(store, name, f"H00{k + 1}", 1_000_000, f"{name}:f{k}", HOUR)
        store.post(topup("fiat:payment:pi_9", "user:amina", 2_000_000), HOUR)
    return path, anchor


def raw(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def reseal(db: sqlite3.Connection) -> None:
    """What a careful attacker does after editing rows: re-hash the chain from genesis,
    recompute every batch digest and rebuild the balance table, so the file verifies."""
    rows = db.execute("SELECT * FROM journal ORDER BY seq").fetchall()
    previous = GENESIS_HASH
    by_batch: dict[str, list[Transfer]] = {}
    for seq, key, code, debit, credit, asset, amount, at, _ in rows:
        previous = chain_hash(previous, seq, key, code, debit, credit, asset, amount, at)
        db.execute("UPDATE journal SET hash = ? WHERE seq = ?", (previous, seq))
        by_batch.setdefault(key, []).append(Transfer(debit, credit, Asset(asset), amount, code))
    for key, transfers in by_batch.items():
        db.execute("UPDATE batches SET digest = ? WHERE key = ?", (batch_digest(transfers), key))
    db.execute("DELETE FROM balances")
    db.execute(
        "INSERT INTO balances SELECT account, asset, SUM(delta) FROM ("
        "SELECT debit AS account, asset, -amount AS delta FROM journal UNION ALL "
        "SELECT credit, asset, amount FROM journal) GROUP BY account, asset"
    )


def verify_both(path, anchor):
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        return store.verify(), verify_anchored(store, anchor.directory, anchor.key)


def test_an_untouched_ledger_verifies_against_its_checkpoints(ledger):
    path, anchor = ledger
    plain, anchored = verify_both(path, anchor)
    assert plain.ok
    assert anchored.ok, anchored.problems
    assert (anchor.directory / CHECKPOINTS_FILE).read_text().count("\n") == 8


def test_a_replayed_post_writes_no_checkpoint(ledger):
    path, anchor = ledger
    with SqliteLedgerStore(path, synchronous="NORMAL", anchor=anchor) as store:
        store.post(topup("fiat:payment:pi_9", "user:amina", 2_000_000), HOUR)
    assert (anchor.directory / CHECKPOINTS_FILE).read_text().count("\n") == 8


def _payment_times_100(db):
    db.execute("UPDATE journal SET amount = amount * 100 WHERE batch_key = 'fiat:payment:pi_1'")


def _fund_redirected(db):
    db.execute("UPDATE journal SET debit = 'user:dede' WHERE batch_key = 'fund:amina:f0'")


def _last_batch_dropped(db):
    db.execute("DELETE FROM journal WHERE batch_key = 'fiat:payment:pi_9'")
    db.execute("DELETE FROM batches WHERE key = 'fiat:payment:pi_9'")


def _forged_append(db):
    seq, at = db.execute("SELECT MAX(seq), MAX(posted_at_us) FROM journal").fetchone()
    ordinal = db.execute("SELECT MAX(ordinal) FROM batches").fetchone()[0]
    forged = topup("fiat:payment:pi_forged", "user:mallory", 1_000_000 * 1_000_000)
    t = forged.transfers[0]
    db.execute(
        "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq + 1, forged.key, t.code, t.debit, t.credit, "coin", t.amount, at + 1, b""),
    )
    db.execute(
        "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
        (forged.key, forged.digest, seq + 1, 1, at + 1, ordinal + 1),
    )


def _emptied(db):
    for table in ("journal", "batches", "balances"):
        db.execute(f"DELETE FROM {table}")


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (_payment_times_100, "rewritten"),
        (_fund_redirected, "rewritten"),
        (_last_batch_dropped, "rows were deleted"),
        (_forged_append, "forged"),
        (_emptied, "ledger was emptied"),
    ],
    ids=["payment x100", "fund redirected", "last batch dropped", "forged append", "emptied"],
)
def test_resealed_tampering_passes_the_chain_but_not_the_anchor(ledger, attack, expected):
    path, anchor = ledger
    with raw(path) as db:
        attack(db)
        reseal(db)
    plain, anchored = verify_both(path, anchor)
    assert plain.ok, plain.problems  # the attack is invisible to the chain alone
    assert not anchored.ok
    assert any(expected in p.message for p in anchored.problems), anchored.problems


def test_a_rewrite_is_located_between_two_checkpoints(ledger):
    path, anchor = ledger
    with raw(path) as db:
        _fund_redirected(db)  # fund:amina:f0 is one transfer
        query = "SELECT seq FROM journal WHERE batch_key = 'fund:amina:f0'"
        (edited,) = db.execute(query).fetchone()
        reseal(db)
    _, anchored = verify_both(path, anchor)
    (rewrite,) = [p for p in anchored.problems if "rewritten" in p.message]
    assert rewrite.seq == edited
    assert f"rows {edited}–{edited}" in rewrite.message


def test_a_malformed_index_fails_verification(ledger):
    path, anchor = ledger
    with raw(path) as db:
        db.execute("CREATE INDEX journal_code ON journal(code)")
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = 'CREATE INDEX journal_code ON journal(debit)' "
            "WHERE name = 'journal_code'"
        )
    plain, anchored = verify_both(path, anchor)
    for report in (plain, anchored):
        assert not report.ok
        assert any("integrity check" in p.message for p in report.problems)


def test_a_single_row_edit_is_still_named(ledger):
    path, anchor = ledger
    with raw(path) as db:
        db.execute("UPDATE journal SET amount = amount + 1 WHERE seq = 3")
    _, anchored = verify_both(path, anchor)
    assert anchored.first_bad_seq == 3


def test_an_edited_checkpoint_is_reported(ledger):
    path, anchor = ledger
    file = anchor.directory / CHECKPOINTS_FILE
    lines = file.read_text().splitlines()
    lines[-1] = lines[-1].replace('"rows": 8', '"rows": 7')
    file.write_text("\n".join(lines) + "\n")
    _, anchored = verify_both(path, anchor)
    assert any("signature does not verify" in p.message for p in anchored.problems)


def test_without_a_checkpoint_verification_says_so(tmp_path):
    key = create_anchor_key(tmp_path / "k")
    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        report = verify_anchored(store, tmp_path / "none", key)
    assert any("no checkpoint" in p.message for p in report.problems)


def test_anchor_keys_are_never_overwritten_and_must_be_long(tmp_path):
    path = tmp_path / "anchor.key"
    key = create_anchor_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_anchor_key(path) == key
    with pytest.raises(AnchorError, match="exists"):
        create_anchor_key(path)
    path.write_text("abcd\n")
    with pytest.raises(AnchorError, match="at least"):
        load_anchor_key(path)
    with pytest.raises(AnchorError, match="no anchor key"):
        load_anchor_key(tmp_path / "missing")


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(1, 10**9), min_size=1, max_size=8),
    st.data(),
)
def test_any_truncation_of_an_anchored_ledger_is_detected(tmp_path_factory, amounts, data):
    tmp = tmp_path_factory.mktemp("trunc")
    anchor = Anchor(tmp / "export", create_anchor_key(tmp / "k"))
    path = tmp / "l.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL", anchor=anchor) as store:
        for k, amount in enumerate(amounts):
            store.post(topup(f"b{k}", f"user:u{k % 3}", amount), HOUR + timedelta(seconds=k))
        assert verify_anchored(store, anchor.directory, anchor.key).ok
    keep = data.draw(st.integers(0, len(amounts) - 1))
    with raw(path) as db:
        db.execute("DELETE FROM journal WHERE seq > ?", (keep,))
        db.execute("DELETE FROM batches WHERE first_seq > ?", (keep,))
        reseal(db)
    plain, anchored = verify_both(path, anchor)
    assert plain.ok
    assert not anchored.ok


# --- incremental verification ------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 10**9), min_size=1, max_size=6),
    st.lists(st.integers(1, 10**9), min_size=0, max_size=6),
)
def test_resuming_verification_agrees_with_a_full_one(tmp_path_factory, first, second):
    path = tmp_path_factory.mktemp("resume") / "l.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        for k, amount in enumerate(first):
            store.post(topup(f"a{k}", f"user:u{k % 3}", amount), HOUR)
        point = store.verify().point
        assert point is not None
        for k, amount in enumerate(second):
            store.post(topup(f"b{k}", f"user:u{k % 2}", amount), HOUR)
        fund_meter(store, "u0", "H001", 1, "f", HOUR)
        full, resumed = store.verify(), store.verify(point)
    assert resumed.ok
    assert full.ok
    assert (resumed.rows, resumed.batches, resumed.head_hash) == (
        full.rows,
        full.batches,
        full.head_hash,
    )
    assert resumed.point is not None
    assert resumed.point.running == full.point.running


def test_resumed_verification_still_catches_edits_after_the_point_and_rewrites_before(ledger):
    path, anchor = ledger
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        point = store.verify().point
        store.post(topup("late", "user:amina", 5), HOUR)
    with raw(path) as db:
        db.execute("UPDATE journal SET amount = 6 WHERE batch_key = 'late'")
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        assert store.verify(point).first_bad_seq == point.rows + 1
    with raw(path) as db:  # rewrite an early row and re-hash: the point's hash changes
        db.execute("UPDATE journal SET amount = 6 WHERE batch_key = 'late'")
        _payment_times_100(db)
        reseal(db)
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        resumed = verify_anchored(store, anchor.directory, anchor.key, point)
    assert any("rewritten" in p.message for p in resumed.problems)


def test_a_failed_verification_is_one_critical_alarm_cleared_by_a_pass(ledger):
    from settlement import AlarmKind, Severity
    from settlement.anchor import report_verification

    path, anchor = ledger
    with raw(path) as db:  # a row edited in the real SQLite file
        db.execute("UPDATE journal SET amount = amount + 1 WHERE seq = 3")
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        for k in range(2):  # found twice: one standing condition, seen twice
            report = verify_anchored(store, anchor.directory, anchor.key)
            assert not report.ok
            assert report_verification(store, report, HOUR + timedelta(minutes=k))
        (alarm,) = store.alarm_records(standing_only=True)
        assert alarm.kind is AlarmKind.VERIFY_FAILED
        assert alarm.severity is Severity.CRITICAL
        assert alarm.subject == "ledger"
        assert alarm.count == 2
        assert "first bad row 3" in alarm.message
    with raw(path) as db:  # put back: the next verification passes and clears it
        db.execute("UPDATE journal SET amount = amount - 1 WHERE seq = 3")
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        report = verify_anchored(store, anchor.directory, anchor.key)
        assert report.ok
        report_verification(store, report, HOUR + timedelta(minutes=5))
        assert store.alarm_records(standing_only=True) == []
