"""The ledger core and both stores (SQLite, PostgreSQL): idempotency, balance rules, hash
chain, verify."""

from __future__ import annotations

import pytest

from settlement import (
    Asset,
    Batch,
    BatchRejectedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerStore,
    Transfer,
)
from settlement.ledger import FIAT_BRIDGE, POOL, UTILITY
from settlement.rounding import largest_remainder
from tests.settlement.conftest import execute_raw


def topup(account: str, amount: int, key: str) -> Batch:
    return Batch(key, (Transfer(FIAT_BRIDGE, account, Asset.COIN, amount, "fiat.topup"),))


def test_same_key_same_content_returns_first_result(store):
    first = store.post(topup("user:a", 5, "k1"))
    again = store.post(topup("user:a", 5, "k1"))
    assert again.replayed
    assert not first.replayed
    assert (again.first_seq, again.count, again.posted_at) == (
        first.first_seq,
        first.count,
        first.posted_at,
    )
    assert store.balance("user:a") == 5


def test_same_key_other_content_is_a_conflict(store):
    store.post(topup("user:a", 5, "k1"))
    with pytest.raises(IdempotencyConflictError, match=r"k1.*different content"):
        store.post(topup("user:a", 6, "k1"))
    assert store.balance("user:a") == 5


def test_overdraft_refused_and_nothing_posted(store):
    store.post(topup("user:a", 5, "k1"))
    fund = Transfer("user:a", "meter:H001", Asset.COIN, 3, "fund")
    too_much = Transfer("user:a", "meter:H002", Asset.COIN, 3, "fund")
    with pytest.raises(InsufficientFundsError, match="user:a holds 2"):
        store.post(Batch("k2", (fund, too_much)))
    assert store.balance("user:a") == 5
    assert store.posted("k2") is None


def test_transfer_rules():
    with pytest.raises(BatchRejectedError, match="positive int"):
        Transfer("a:1", "a:2", Asset.COIN, 0, "x")
    with pytest.raises(BatchRejectedError, match="positive int"):
        Transfer("a:1", "a:2", Asset.COIN, 1.5, "x")  # type: ignore[arg-type]
    with pytest.raises(BatchRejectedError, match="both"):
        Transfer("a:1", "a:1", Asset.COIN, 1, "x")


def test_pool_must_net_to_zero(store):
    batch = Batch("k", (Transfer("meter:H001", POOL, Asset.COIN, 5, "settle.charge"),))
    with pytest.raises(BatchRejectedError, match="clearing account pool:settlement"):
        store.post(batch)


def test_preconditions(store):
    b = Batch("b", (), requires_present=("a",))
    with pytest.raises(BatchRejectedError, match="needs batch 'a'"):
        store.post(b)
    store.post(Batch("a", ()))
    store.post(b)
    with pytest.raises(BatchRejectedError, match="'a' already was"):
        store.post(Batch("c", (), requires_absent=("a",)))


def test_post_many_is_all_or_nothing(store):
    ok = topup("user:a", 5, "k1")
    bad = Batch("k2", (Transfer("user:b", "user:c", Asset.COIN, 1, "fund"),))
    with pytest.raises(InsufficientFundsError):
        store.post_many([ok, bad])
    assert store.posted("k1") is None
    assert store.verify().ok


def _ledger_with_rows(store: LedgerStore, n: int = 20) -> None:
    for i in range(n):
        store.post(topup(f"user:{i % 3}", 1_000 + i, f"k{i}"))
    store.post(Batch("fund", (Transfer("user:0", "meter:H001", Asset.COIN, 500, "fund"),)))
    assert store.verify().ok


def test_verify_names_an_edited_row(store):
    _ledger_with_rows(store)
    execute_raw(store, "UPDATE journal SET amount = amount + 1 WHERE seq = 7")
    report = store.verify()
    assert not report.ok
    assert report.first_bad_seq == 7
    assert "row 7: hash does not match" in report.problems[0].message


def test_verify_names_a_deleted_row(store):
    _ledger_with_rows(store)
    execute_raw(store, "DELETE FROM journal WHERE seq = 4")
    report = store.verify()
    assert report.first_bad_seq == 4
    assert any("expected sequence number 4" in p.message for p in report.problems)


def test_verify_catches_a_rehashed_edit_through_balances_and_digest(store):
    """Even an attacker who recomputes the chain is caught by the balance table and digest."""
    _ledger_with_rows(store)
    execute_raw(store, "UPDATE balances SET balance = balance + 9 WHERE account = 'user:1'")
    report = store.verify()
    assert any("balance of user:1" in p.message for p in report.problems)


def test_verify_flags_coins_created_outside_the_bridge(store):
    _ledger_with_rows(store)
    execute_raw(store, "UPDATE journal SET code = 'fund' WHERE seq = 1")
    report = store.verify()
    assert report.first_bad_seq == 1
    assert any("only fiat.* transfers" in p.message for p in report.problems)


def test_reopening_continues_the_chain(open_store):
    with open_store("reopened") as s:
        s.post(topup("user:a", 5, "k1"))
    with open_store("reopened") as s:
        s.post(topup("user:a", 5, "k2"))
        assert s.verify().ok
        assert s.verify().rows == 2


def test_history_and_balances(store):
    _ledger_with_rows(store, 4)
    rows = store.history("user:0")
    assert [r.code for r in rows][:1] == ["fund"]
    assert store.balances(Asset.COIN, "meter:") == {("meter:H001", Asset.COIN): 500}
    assert UTILITY not in {a for a, _ in store.balances()}


def test_largest_remainder_is_exact_and_errors_are_named():
    assert largest_remainder({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert largest_remainder({"a": 0}, 10) == {"a": 0}
    with pytest.raises(ValueError, match="negative for a"):
        largest_remainder({"a": -1}, 1)
