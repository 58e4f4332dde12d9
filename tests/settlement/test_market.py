"""The order book on the ledger: atomic, idempotent settlement and conservation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore
from settlement.ledger import (
    FIAT_BRIDGE,
    WATT_ISSUER,
    Asset,
    Batch,
    InsufficientFundsError,
    Transfer,
)
from settlement.market import LedgerHoldings, Market, settle_trades, trade_batch
from settlement.orderbook import (
    CancelOrder,
    MemoryHoldings,
    OrderBook,
    OrderRejectedError,
    PlaceOrder,
    Side,
    Tick,
    replay,
    trades_of,
)

USERS = ["user:a", "user:b", "user:c", "user:d"]


def fund(store, account, coins=0, watt_wh=0, key=""):
    transfers = []
    if coins:
        transfers.append(Transfer(FIAT_BRIDGE, account, Asset.COIN, coins, "fiat.topup"))
    if watt_wh:
        transfers.append(Transfer(WATT_ISSUER, account, Asset.WATT, watt_wh, "watt.mint"))
    store.post(Batch(f"fund:{account}:{key}", tuple(transfers)))


def test_a_trade_settles_both_legs_once(store):
    fund(store, "user:s", watt_wh=5000)
    fund(store, "user:b", coins=10_000_000)
    market = Market(store)
    market.submit(PlaceOrder("user:s", Side.SELL, 400_000, 2000, 1))
    outcome = market.submit(PlaceOrder("user:b", Side.BUY, 500_000, 1500, 2))
    (trade,) = outcome.trades
    assert (trade.price_per_kwh, trade.quantity_wh, trade.cost) == (400_000, 1500, 600_000)
    assert store.balance("user:s", Asset.COIN) == 600_000
    assert store.balance("user:s", Asset.WATT) == 3500
    assert store.balance("user:b", Asset.WATT) == 1500
    assert store.balance("user:b", Asset.COIN) == 10_000_000 - 600_000
    again = store.post(trade_batch(trade))
    assert again.replayed  # idempotent: posting the trade again changes nothing
    assert store.balance("user:b", Asset.WATT) == 1500
    assert store.verify().ok


def test_a_refused_leg_posts_neither(store):
    fund(store, "user:s", watt_wh=1000)
    fund(store, "user:b", coins=1_000_000)
    book, mem = OrderBook(), MemoryHoldings({"user:b": 10**9}, {"user:s": 10**6})
    book.place(PlaceOrder("user:s", Side.SELL, 500_000, 4000, 1), mem)
    _, trades = book.place(PlaceOrder("user:b", Side.BUY, 500_000, 4000, 2), mem)
    # The simulation believed in holdings the ledger does not have: nothing may move.
    with pytest.raises(InsufficientFundsError, match="holds"):
        settle_trades(store, trades)
    assert store.balance("user:s", Asset.WATT) == 1000
    assert store.balance("user:b", Asset.COIN) == 1_000_000
    assert store.keys_with_prefix("market:") == []


def test_ledger_refusal_keeps_the_orders(store):
    """A balance that vanished between the check and the post: the book keeps both orders."""
    fund(store, "user:s", watt_wh=1000)
    fund(store, "user:b", coins=10_000_000)
    holdings = LedgerHoldings(store)

    class Racy:
        def watt_wh(self, owner):
            return 10**6  # claims more than the ledger holds

        coins, headroom_wh, execute = holdings.coins, holdings.headroom_wh, holdings.execute

    book = OrderBook()
    ask, _ = book.place(PlaceOrder("user:s", Side.SELL, 500_000, 4000, 1), Racy())
    bid, trades = book.place(PlaceOrder("user:b", Side.BUY, 500_000, 4000, 2), Racy())
    assert trades == []
    assert book.order(ask.order_id).remaining_wh == 4000
    assert book.order(bid.order_id).remaining_wh == 4000


def test_bmax_caps_what_the_ledger_buyer_receives(store):
    fund(store, "user:s", watt_wh=5000)
    fund(store, "user:b", coins=10_000_000, watt_wh=800)
    market = Market(store, caps_wh={"user:b": 1000})
    market.submit(PlaceOrder("user:s", Side.SELL, 100_000, 5000, 1))
    outcome = market.submit(PlaceOrder("user:b", Side.BUY, 100_000, 5000, 2))
    assert sum(t.quantity_wh for t in outcome.trades) == 200
    assert store.balance("user:b", Asset.WATT) == 1000


actions_st = st.lists(
    st.one_of(
        st.builds(
            lambda o, s, p, q, e: ("place", o, s, p, q, e),
            st.sampled_from(USERS),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 2_000_000),
            st.integers(1, 5_000),
            st.none() | st.integers(1, 30),
        ),
        st.builds(lambda n, o: ("cancel", n, o), st.integers(1, 40), st.sampled_from(USERS)),
        st.just(("tick",)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=actions_st,
    coins=st.lists(st.integers(0, 5_000_000), min_size=4, max_size=4),
    watt=st.lists(st.integers(0, 6_000), min_size=4, max_size=4),
)
def test_coins_and_watt_are_conserved_over_random_order_flows(
    tmp_path_factory, actions, coins, watt
):
    path = tmp_path_factory.mktemp("market") / "ledger.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        for user, c, w in zip(USERS, coins, watt, strict=True):
            if c or w:
                fund(store, user, c, w)
        before = {a: store.balances(a) for a in (Asset.COIN, Asset.WATT)}
        market = Market(store, caps_wh={"user:d": 7_000})
        book_actions = []
        for at, step in enumerate(actions):
            if step[0] == "place":
                _, owner, side, price, qty, expires = step
                action = PlaceOrder(
                    owner, side, price, qty, at, None if expires is None else at + expires
                )
            elif step[0] == "cancel":
                action = CancelOrder(f"o{step[1]}", step[2], at)
            else:
                action = Tick(at)
            book_actions.append(action)
            market.submit(action)
        after_coin = store.balances(Asset.COIN, "user:")
        after_watt = store.balances(Asset.WATT, "user:")
        # Conservation: the market only moves coins and WATT between users.
        assert sum(after_coin.values()) == sum(
            v for (k, _), v in before[Asset.COIN].items() if k.startswith("user:")
        )
        assert sum(after_watt.values()) == sum(
            v for (k, _), v in before[Asset.WATT].items() if k.startswith("user:")
        )
        assert all(v >= 0 for v in after_coin.values())
        assert all(v >= 0 for v in after_watt.values())
        assert store.balance("user:d", Asset.WATT) <= max(7_000, watt[3])
        # Every trade is one batch of its two legs, and the ledger verifies.
        assert len(store.keys_with_prefix("market:")) == len(market.trades)
        assert store.verify().ok
        # The same actions from the same holdings in memory give the same trades.
        mem = MemoryHoldings(
            dict(zip(USERS, coins, strict=True)),
            dict(zip(USERS, watt, strict=True)),
            {"user:d": 7_000},
        )
        _, outcomes = replay(book_actions, mem)
        assert trades_of(outcomes) == market.trades


def test_open_orders_and_trades_survive_a_restart(store, tmp_path):
    fund(store, "user:s", watt_wh=5000)
    fund(store, "user:b", coins=10_000_000)
    path = tmp_path / "market.json"
    market = Market(store, snapshot_path=path)
    market.submit(PlaceOrder("user:s", Side.SELL, 400_000, 3000, 1, 500))
    market.submit(PlaceOrder("user:s", Side.SELL, 450_000, 1000, 2))
    market.submit(PlaceOrder("user:b", Side.BUY, 500_000, 1000, 3))
    restarted = Market(store, snapshot_path=path)
    assert restarted.book.orders() == market.book.orders()
    assert restarted.trades == market.trades
    assert restarted.book.now_us == 3
    # priorities, ids and expiry carry on where they were
    outcome = restarted.submit(PlaceOrder("user:b", Side.BUY, 500_000, 2500, 4))
    assert outcome.order_id == "o4"
    assert [(t.trade_id, t.quantity_wh) for t in outcome.trades] == [("t2", 2000), ("t3", 500)]
    restarted.submit(Tick(600))  # nothing left to expire; the 450 000 ask still stands
    assert [o.remaining_wh for o in restarted.book.orders()] == [500]
    assert store.verify().ok


def test_a_damaged_snapshot_is_refused_with_advice(store, tmp_path):
    path = tmp_path / "market.json"
    path.write_text('{"book": {"orders": 3}}')
    with pytest.raises(OrderRejectedError, match="move it aside"):
        Market(store, snapshot_path=path)


def test_a_crash_between_a_trade_and_its_snapshot_is_caught_up_from_the_ledger(store, tmp_path):
    fund(store, "user:s", watt_wh=5000)
    fund(store, "user:b", coins=10_000_000)
    path = tmp_path / "market.json"
    market = Market(store, snapshot_path=path)
    ask = market.submit(PlaceOrder("user:s", Side.SELL, 400_000, 3000, 1))
    # the process dies after the trade is posted, before the snapshot is rewritten
    market.book.place(PlaceOrder("user:b", Side.BUY, 500_000, 1000, 2), market.holdings)
    restarted = Market(store, snapshot_path=path)
    assert restarted.book.order(ask.order_id).remaining_wh == 2000  # not sold twice
    outcome = restarted.submit(PlaceOrder("user:b", Side.BUY, 500_000, 2500, 3))
    assert outcome.order_id == "o3"  # o2 (the crashed bid) is not reused
    assert [(t.trade_id, t.quantity_wh) for t in outcome.trades] == [("t2", 2000)]
    assert store.balance("user:s", Asset.WATT) == 2000
    assert store.verify().ok
