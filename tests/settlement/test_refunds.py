"""Refunds: balanced batches, never a negative balance, a top-up refunded at most once."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore
from settlement.fiat import FiatConfig, topup_batch
from settlement.ledger import (
    FIAT_BRIDGE,
    FIAT_PROCESSOR,
    FIAT_RESERVE,
    UTILITY,
    Asset,
    Batch,
    BatchRejectedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    Transfer,
    may_overdraw,
)
from settlement.refunds import RefundError, RefundKind, plan_refund, post_refund

NOW = datetime(2026, 8, 1, 10, tzinfo=UTC)
FIAT = FiatConfig(b"0123456789abcdef", coin_price_fiat_minor=650)


def _topup(store, payment_id: str, account: str, fiat_minor: int) -> int:
    batch, coins, _ = topup_batch(payment_id, account, fiat_minor, FIAT)
    store.post(batch, NOW)
    return coins


def _fees(store, amount: int) -> None:
    """Fee income for the operator, as hourly settlement books it (a meter pays the pool)."""
    store.post(
        Batch(
            f"fees-{amount}",
            (
                Transfer("meter:payer", "pool:settlement", Asset.COIN, amount, "settle.charge"),
                Transfer("pool:settlement", UTILITY, Asset.COIN, amount, "settle.fee"),
            ),
        ),
        NOW,
    )


def _refund(store, kind, account, amount, key, payment_id=None):
    plan = plan_refund(store, kind, account, amount, key, payment_id)
    return post_refund(store, plan, NOW), plan


def test_topup_refund_returns_coins_to_the_bridge_and_fiat_to_the_processor(store):
    coins = _topup(store, "pi_1", "meter:H001", 1000)
    posted, plan = _refund(store, RefundKind.TOPUP, "meter:H001", coins // 2, "r1", "pi_1")
    assert store.balance("meter:H001") == coins - coins // 2
    assert plan.fiat_minor == coins // 2 * 650  # the top-up's own price, exactly
    assert store.balance(FIAT_PROCESSOR, Asset.FIAT) == -(1000 * 10**6) + plan.fiat_minor
    assert store.balance(FIAT_BRIDGE) == -coins + coins // 2
    # The same request again is a replay, not a second refund.
    again, _ = _refund(store, RefundKind.TOPUP, "meter:H001", coins // 2, "r1", "pi_1")
    assert again.replayed
    assert again.key == posted.key
    assert store.balance("meter:H001") == coins - coins // 2
    # Another key for the same top-up is refused: a top-up is refunded once.
    with pytest.raises(BatchRejectedError, match="refund:topup:pi_1"):
        _refund(store, RefundKind.TOPUP, "meter:H001", 1, "r2", "pi_1")
    assert store.verify().ok


def test_topup_refund_refuses_what_the_ledger_cannot_pay(store):
    coins = _topup(store, "pi_1", "meter:H001", 1000)
    _topup(store, "pi_2", "meter:H002", 1000)
    with pytest.raises(RefundError, match="more than was paid"):
        plan_refund(store, RefundKind.TOPUP, "meter:H001", coins + 1, "r", "pi_1")
    with pytest.raises(RefundError, match="credited meter:H001, not meter:H002"):
        plan_refund(store, RefundKind.TOPUP, "meter:H002", 1, "r", "pi_1")
    with pytest.raises(RefundError, match="no top-up 'pi_9'"):
        plan_refund(store, RefundKind.TOPUP, "meter:H001", 1, "r", "pi_9")
    with pytest.raises(RefundError, match="needs the payment_id"):
        plan_refund(store, RefundKind.TOPUP, "meter:H001", 1, "r")
    # Coins already spent cannot be refunded: the account never goes below zero.
    store.post(
        Batch("spend", (Transfer("meter:H001", "user:x", Asset.COIN, coins - 5, "fund"),)), NOW
    )
    with pytest.raises(InsufficientFundsError, match="meter:H001 holds 5"):
        _refund(store, RefundKind.TOPUP, "meter:H001", 6, "r", "pi_1")
    assert store.balance("meter:H001") == 5
    # Same key, same transfers, another payment: refused rather than marking pi_2 refunded.
    _topup(store, "pi_3", "meter:H001", 1000)
    _refund(store, RefundKind.TOPUP, "meter:H001", 5, "r5", "pi_1")
    with pytest.raises(IdempotencyConflictError, match="another top-up"):
        _refund(store, RefundKind.TOPUP, "meter:H001", 5, "r5", "pi_3")
    assert store.posted("refund:topup:pi_3") is None


def test_overcharge_refund_comes_from_fee_income_only(store):
    with pytest.raises(InsufficientFundsError, match="utility:fees holds 0"):
        _refund(store, RefundKind.OVERCHARGE, "meter:H001", 10, "o1")
    assert store.balance("meter:H001") == 0
    assert store.balance(UTILITY) == 0
    _fees(store, 100)
    posted, plan = _refund(store, RefundKind.OVERCHARGE, "meter:H001", 60, "o1")
    assert plan.fiat_minor == 0
    assert not posted.replayed
    assert store.balance("meter:H001") == 60
    assert store.balance(UTILITY) == 40
    with pytest.raises(IdempotencyConflictError):  # same key, other content
        _refund(store, RefundKind.OVERCHARGE, "meter:H001", 61, "o1")
    with pytest.raises(RefundError, match="names no payment_id"):
        plan_refund(store, RefundKind.OVERCHARGE, "meter:H001", 1, "o2", "pi_1")
    assert store.verify().ok


@pytest.mark.parametrize(
    ("account", "amount", "key", "message"),
    [
        ("pool:settlement", 1, "k", "meter:<id> or user:<id>"),
        ("meter:", 1, "k", "meter:<id> or user:<id>"),
        ("meter:H001", 0, "k", "1…"),
        ("meter:H001", 2**63, "k", "1…"),
        ("meter:H001", True, "k", "1…"),
        ("meter:H001", 1, "a:b", "refund key"),
        ("meter:H001", 1, "", "refund key"),
    ],
)
def test_malformed_refunds_are_refused_with_a_reason(store, account, amount, key, message):
    with pytest.raises(RefundError, match=message):
        plan_refund(store, RefundKind.OVERCHARGE, account, amount, key)


_ATTEMPT = st.tuples(
    st.sampled_from([RefundKind.TOPUP, RefundKind.OVERCHARGE]),
    st.sampled_from(["meter:H001", "meter:H002"]),
    st.integers(1, 3_000_000),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["pi_1", "pi_2", "pi_3"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attempts=st.lists(_ATTEMPT, max_size=12))
def test_any_refunds_keep_the_ledger_balanced_and_never_overdraw(tmp_path_factory, attempts):
    store = SqliteLedgerStore(tmp_path_factory.mktemp("refunds") / "l.sqlite", "NORMAL")
    try:
        paid = {
            "pi_1": ("meter:H001", 1300),
            "pi_2": ("meter:H002", 650),
            "pi_3": ("meter:H001", 7),
        }
        credited = {p: _topup(store, p, a, f) for p, (a, f) in paid.items()}
        _fees(store, 1_000_000)
        for kind, account, amount, key, payment in attempts:
            with contextlib.suppress(LedgerError):  # refused as a whole: nothing posted
                payment_id = payment if kind is RefundKind.TOPUP else None
                _refund(store, kind, account, amount, key, payment_id)
        for asset in Asset:
            table = store.balances(asset)
            assert sum(table.values()) == 0, f"{asset} does not balance"
            for (account, _), value in table.items():
                if value < 0:
                    assert may_overdraw(account, "fiat.topup") or account == "meter:payer"
        for account, _ in paid.values():
            refunded = [
                t.amount
                for k in store.keys_with_prefix("refund:")
                for t in store.transfers_of(k)
                if t.asset is Asset.COIN and t.code == "fiat.refund" and t.debit == account
            ]
            assert sum(refunded) <= sum(c for p, c in credited.items() if paid[p][0] == account)
        markers = list(store.keys_with_prefix("refund:topup:"))
        refunds = [
            k
            for k in store.keys_with_prefix("refund:")
            if any(t.code == "fiat.refund" for t in store.transfers_of(k))
        ]
        assert len(markers) == len(refunds), "each top-up refund has its once-only marker"
        assert store.balance(FIAT_RESERVE, Asset.FIAT) >= 0
        assert store.verify().ok
    finally:
        store.close()
