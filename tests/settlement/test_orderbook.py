"""The order book's rules, one test each (settlement/orderbook.py module docstring)."""

from __future__ import annotations

import random

import pytest

from settlement.orderbook import (
    CancelOrder,
    MemoryHoldings,
    OrderBook,
    OrderRejectedError,
    PlaceOrder,
    Side,
    Tick,
    action_from_json,
    action_to_json,
    apply_action,
    replay,
    trade_cost,
    trades_of,
)

BUY, SELL = Side.BUY, Side.SELL
RICH = 10**12  # µcoin: more than any test order costs


def holdings(**watt_wh: int) -> MemoryHoldings:
    """Everyone rich in coins; WATT as given."""
    names = ["a", "b", "c", "d", "e", *watt_wh]
    return MemoryHoldings(coin=dict.fromkeys(names, RICH), watt=dict(watt_wh))


def place(book, h, owner, side, price, qty, at=0, expires=None):
    return book.place(PlaceOrder(owner, side, price, qty, at, expires), h)


def test_price_then_time_priority():
    book, h = OrderBook(), holdings(a=10_000, b=10_000, c=10_000)
    early, _ = place(book, h, "a", SELL, 600, 1000, at=1)
    late, _ = place(book, h, "b", SELL, 600, 1000, at=2)
    cheap, _ = place(book, h, "c", SELL, 500, 1000, at=3)
    _, trades = place(book, h, "d", BUY, 700, 2500, at=4)
    assert [t.sell_order_id for t in trades] == [cheap.order_id, early.order_id, late.order_id]
    assert [t.quantity_wh for t in trades] == [1000, 1000, 500]


def test_trade_at_resting_price_and_cost_rounds_up():
    book, h = OrderBook(), holdings(a=10_000)
    place(book, h, "a", SELL, 333, 1000)
    _, trades = place(book, h, "b", BUY, 900, 1)
    assert trades[0].price_per_kwh == 333
    assert trades[0].cost == trade_cost(333, 1) == 1  # 0.333 µcoin rounds up
    assert h.coin["a"] == RICH + 1
    # a resting bid makes the price for an incoming ask too
    place(book, h, "c", BUY, 800, 1000, at=1)
    _, trades = place(book, h, "a", SELL, 100, 500, at=2)
    assert trades[0].price_per_kwh == 800


def test_no_self_trade_keeps_both_orders():
    book, h = OrderBook(), holdings(a=10_000, b=10_000)
    own_ask, _ = place(book, h, "a", SELL, 500, 1000, at=1)
    other_ask, _ = place(book, h, "b", SELL, 600, 1000, at=2)
    bid, trades = place(book, h, "a", BUY, 700, 1000, at=3)
    assert [t.sell_order_id for t in trades] == [other_ask.order_id]
    assert book.order(own_ask.order_id) is not None
    assert all(t.buyer != t.seller for t in trades)
    assert bid.remaining_wh == 0


def test_partial_fill_rests_the_remainder():
    book, h = OrderBook(), holdings(a=10_000)
    ask, _ = place(book, h, "a", SELL, 500, 3000)
    _, trades = place(book, h, "b", BUY, 500, 1200, at=1)
    assert trades[0].quantity_wh == 1200
    assert book.order(ask.order_id).remaining_wh == 1800
    bid, trades = place(book, h, "c", BUY, 500, 5000, at=2)
    assert trades[0].quantity_wh == 1800
    assert book.order(ask.order_id) is None
    assert book.order(bid.order_id).remaining_wh == 3200


def test_fill_limited_by_seller_watt_keeps_priority():
    book, h = OrderBook(), holdings(a=400, b=10_000)
    first, _ = place(book, h, "a", SELL, 500, 1000, at=1)  # holds only 400 Wh
    second, _ = place(book, h, "b", SELL, 500, 1000, at=2)
    _, trades = place(book, h, "c", BUY, 500, 600, at=3)
    assert [(t.sell_order_id, t.quantity_wh) for t in trades] == [
        (first.order_id, 400),
        (second.order_id, 200),
    ]
    # a holds nothing now: its order stays, first in line, and fills once a holds WATT again
    assert book.order(first.order_id).remaining_wh == 600
    h.watt["a"] = 10_000
    place(book, h, "d", BUY, 400, 100, at=4)  # below the asks: no trade
    _, trades = place(book, h, "d", BUY, 500, 300, at=5)
    assert [t.sell_order_id for t in trades] == [first.order_id]


def test_fill_limited_by_buyer_coins_and_bmax():
    book = OrderBook()
    h = MemoryHoldings(
        coin={"b": trade_cost(500_000, 700), "c": RICH}, watt={"a": 10_000, "c": 900}
    )
    h.caps_wh["c"] = 1000  # Bmax: c may receive 100 Wh more
    bid_b, _ = place(book, h, "b", BUY, 500_000, 1000, at=1)
    bid_c, _ = place(book, h, "c", BUY, 500_000, 1000, at=2)
    _, trades = place(book, h, "a", SELL, 400_000, 5000, at=3)
    assert [(t.buyer, t.quantity_wh) for t in trades] == [("b", 700), ("c", 100)]
    assert h.coin["b"] == 0
    assert h.watt["c"] == 1000
    assert book.order(bid_b.order_id).remaining_wh == 300
    assert book.order(bid_c.order_id).remaining_wh == 900


def test_taker_without_holdings_rests_and_rematch_fills_it_later():
    book, h = OrderBook(), holdings(b=10_000)
    bid, _ = place(book, h, "a", BUY, 500, 1000, at=1)
    ask, trades = place(book, h, "c", SELL, 400, 1000, at=2)  # c holds nothing
    assert trades == []
    assert book.order(ask.order_id) is not None
    q = book.quote(h)
    assert (q.best_bid, q.best_ask) == (500, 400)  # listed: crossed, "regardless of energy"
    assert q.best_executable_ask is None
    h.watt["c"] = 250
    assert book.quote(h).best_executable_ask == 400
    trades = book.rematch(3, h)
    assert [(t.price_per_kwh, t.quantity_wh) for t in trades] == [(500, 250)]
    assert book.order(bid.order_id).remaining_wh == 750


def test_cancel_only_by_owner_and_expiry():
    book, h = OrderBook(), holdings(a=10_000)
    ask, _ = place(book, h, "a", SELL, 500, 1000, at=1, expires=100)
    with pytest.raises(OrderRejectedError, match="only its owner"):
        book.cancel(CancelOrder(ask.order_id, "b", 2))
    keep, _ = place(book, h, "a", SELL, 600, 1000, at=3)
    book.cancel(CancelOrder(keep.order_id, "a", 4))
    with pytest.raises(OrderRejectedError, match="not in the book"):
        book.cancel(CancelOrder(keep.order_id, "a", 5))
    assert book.order(ask.order_id) is not None
    _, trades = place(book, h, "b", BUY, 900, 1000, at=100)  # the ask expired at 100
    assert trades == []
    assert book.order(ask.order_id) is None


def test_bad_orders_are_refused_with_reasons():
    book, h = OrderBook(), holdings()
    for action, words in [
        (PlaceOrder("a", BUY, 0, 1, 0), "price"),
        (PlaceOrder("a", BUY, 1.5, 1, 0), "price"),
        (PlaceOrder("a", BUY, 5, -3, 0), "quantity"),
        (PlaceOrder("", BUY, 5, 3, 0), "owner"),
        (PlaceOrder("a", "hold", 5, 3, 0), "side"),
    ]:
        outcome = apply_action(book, action, h)
        assert words in outcome.error
    book.rematch(10, h)
    assert "before the book's time" in apply_action(book, Tick(5), h).error
    assert len(book) == 0


def random_actions(seed: int, n: int) -> list:
    rng = random.Random(seed)
    owners = ["a", "b", "c", "d"]
    actions, at = [], 0
    for _ in range(n):
        at += rng.randrange(0, 3)
        roll = rng.random()
        if roll < 0.8:
            expires = at + rng.randrange(1, 50) if rng.random() < 0.3 else None
            actions.append(
                PlaceOrder(
                    rng.choice(owners),
                    rng.choice([BUY, SELL]),
                    rng.randrange(400, 600),
                    rng.randrange(1, 2000),
                    at,
                    expires,
                )
            )
        elif roll < 0.95:
            actions.append(CancelOrder(f"o{rng.randrange(1, n)}", rng.choice(owners), at))
        else:
            actions.append(Tick(at))
    return actions


def test_replay_is_deterministic_and_survives_a_json_log():
    actions = random_actions(7, 400)
    start = {"coin": dict.fromkeys("abcd", 2_000_000), "watt": dict.fromkeys("abcd", 3000)}
    h1 = MemoryHoldings(dict(start["coin"]), dict(start["watt"]))
    book1, outcomes1 = replay(actions, h1)
    log = [action_to_json(a) for a in actions]
    h2 = MemoryHoldings(dict(start["coin"]), dict(start["watt"]))
    book2, outcomes2 = replay([action_from_json(line) for line in log], h2)
    assert outcomes1 == outcomes2
    assert len(trades_of(outcomes1)) > 20
    assert book1.orders() == book2.orders()
    assert (h1.coin, h1.watt) == (h2.coin, h2.watt)


def test_action_log_rejects_garbage():
    with pytest.raises(OrderRejectedError, match="not an order-book action"):
        action_from_json("{not json")
    with pytest.raises(OrderRejectedError, match="unknown action kind"):
        action_from_json('{"kind": "steal", "at_us": 1}')


def test_depth_lists_listed_and_executable():
    book, h = OrderBook(), holdings(a=300)
    place(book, h, "a", SELL, 500, 1000, at=1)
    place(book, h, "b", SELL, 500, 1000, at=2)  # b holds nothing
    place(book, h, "c", BUY, 400, 700, at=3)
    levels = {(d.side, d.price_per_kwh): d for d in book.depth(h)}
    assert levels[SELL, 500].listed_wh == 2000
    assert levels[SELL, 500].executable_wh == 300
    assert levels[SELL, 500].orders == 2
    assert levels[BUY, 400].executable_wh == 700


def test_rematch_repeats_until_trades_enable_nothing_more():
    """A tick's trade can pay an owner whose bid the same pass had already skipped."""
    h = MemoryHoldings(coin={"d": RICH})
    book = OrderBook()
    bid_a, _ = place(book, h, "a", BUY, 500_000, 1000, at=1)  # a has no coins yet
    place(book, h, "c", SELL, 500_000, 1000, at=2)  # c has no WATT yet
    place(book, h, "a", SELL, 100_000, 1000, at=3)  # nor has a
    place(book, h, "d", BUY, 500_000, 1000, at=4)
    h.watt.update(a=1000, c=1000)  # storage credits both
    trades = book.rematch(5, h)
    # d buys a's WATT, which pays a, whose bid (skipped earlier in the pass) then buys c's
    assert [(t.buyer, t.seller, t.quantity_wh) for t in trades] == [
        ("d", "a", 1000),
        ("a", "c", 200),
    ]
    assert book.order(bid_a.order_id).remaining_wh == 800
