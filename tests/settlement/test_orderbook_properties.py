"""Hypothesis properties of the order book over random order flows, in memory.

Coins and WATT are conserved, nobody goes negative, Bmax holds, every trade is at the
maker's price between the two limits, and after a tick no two crossed orders of different
owners can still trade (availability that arrived outside the market is used).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.orderbook import (
    CancelOrder,
    MemoryHoldings,
    OrderBook,
    PlaceOrder,
    Side,
    Tick,
    affordable_wh,
    apply_action,
)

OWNERS = ["user:a", "user:b", "user:c", "user:d"]
CAPPED, CAP_WH = "user:d", 300

steps_st = st.lists(
    st.one_of(
        st.tuples(
            st.just("place"),
            st.sampled_from(OWNERS),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 30_000),
            st.integers(1, 400),
            st.none() | st.integers(1, 20),
        ),
        st.tuples(st.just("cancel"), st.integers(1, 60), st.sampled_from(OWNERS)),
        st.tuples(st.just("tick")),
        # holdings arriving from outside the market (storage credits, top-ups)
        st.tuples(
            st.just("deposit"),
            st.sampled_from(OWNERS[:3]),
            st.integers(0, 20_000),
            st.integers(0, 300),
        ),
    ),
    max_size=60,
)


def can_trade(bid, ask, holdings) -> bool:
    """Whether a crossed pair of different owners could trade now at the maker's price."""
    price = (bid if bid.seq < ask.seq else ask).price_per_kwh
    headroom = holdings.headroom_wh(bid.owner)
    return (
        min(bid.remaining_wh, affordable_wh(holdings.coins(bid.owner), price)) > 0
        and (headroom is None or headroom > 0)
        and min(ask.remaining_wh, holdings.watt_wh(ask.owner)) > 0
    )


@settings(max_examples=300, deadline=None)
@given(
    steps=steps_st,
    coins=st.lists(st.integers(0, 30_000), min_size=4, max_size=4),
    watt=st.lists(st.integers(0, 400), min_size=4, max_size=4),
)
def test_order_flows_keep_every_invariant(steps, coins, watt):
    holdings = MemoryHoldings(
        dict(zip(OWNERS, coins, strict=True)),
        dict(zip(OWNERS, [*watt[:3], min(watt[3], CAP_WH)], strict=True)),
        {CAPPED: CAP_WH},
    )
    total_coin, total_watt = sum(holdings.coin.values()), sum(holdings.watt.values())
    book = OrderBook()
    placed: dict[str, PlaceOrder] = {}
    for at, step in enumerate(steps):
        if step[0] == "deposit":
            _, owner, coin, wh = step
            holdings.coin[owner] += coin
            holdings.watt[owner] += wh
            total_coin, total_watt = total_coin + coin, total_watt + wh
            continue
        if step[0] == "place":
            _, owner, side, price, qty, life = step
            action = PlaceOrder(owner, side, price, qty, at, None if life is None else at + life)
        elif step[0] == "cancel":
            action = CancelOrder(f"o{step[1]}", step[2], at)
        else:
            action = Tick(at)
        outcome = apply_action(book, action, holdings)
        if isinstance(action, PlaceOrder) and outcome.order_id is not None:
            placed[outcome.order_id] = action
        for trade in outcome.trades:
            buy, sell = placed[trade.buy_order_id], placed[trade.sell_order_id]
            assert trade.buyer != trade.seller
            assert trade.quantity_wh > 0
            assert sell.price_per_kwh <= trade.price_per_kwh <= buy.price_per_kwh
            maker = min(trade.buy_order_id, trade.sell_order_id, key=lambda i: int(i[1:]))
            assert trade.price_per_kwh == placed[maker].price_per_kwh
        assert sum(holdings.coin.values()) == total_coin
        assert sum(holdings.watt.values()) == total_watt
        assert min(holdings.coin.values()) >= 0
        assert min(holdings.watt.values()) >= 0
        assert holdings.watt[CAPPED] <= CAP_WH
        for order in book.orders():
            assert 0 < order.remaining_wh <= order.quantity_wh
            assert order.expires_at_us is None or order.expires_at_us > at
        if isinstance(action, Tick):
            bids = list(book.side_in_priority(Side.BUY))
            asks = list(book.side_in_priority(Side.SELL))
            for bid in bids:
                for ask in asks:
                    if bid.owner != ask.owner and bid.price_per_kwh >= ask.price_per_kwh:
                        assert not can_trade(bid, ask, holdings), (bid, ask)
