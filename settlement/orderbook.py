"""Energo's order book: a continuous double auction with availability-limited fills (seed 003).

The pure core of the peer-to-peer market. It knows orders, prices and quantities; what each
owner *holds* comes from a :class:`Holdings` passed to every call (the ledger in the
service, a dictionary in simulations), and every match is handed to
:meth:`Holdings.execute`, which settles it or refuses it.

Rules
-----
- **Units.** Prices are micro-coins per kWh (:data:`microgrid.units.COIN_SCALE` per coin),
  quantities Wh (one WATT minor unit). A trade of ``q`` Wh at ``p`` µcoin/kWh costs
  ``⌈p·q / 1000⌉`` micro-coins (:func:`trade_cost`): the seller never gets less than the
  energy's value, and the cost is exact in integers.
- **Price-time priority.** Better price first, then earlier arrival.
- **Maker price.** A trade happens at the resting (earlier) order's price.
- **No self-trade.** An order never matches one of its owner's own; the pair is skipped and
  both keep their places.
- **Availability-limited fills.** An order may ask for more than its owner holds (seed 003:
  "energy we may want to sell may not have been created yet"). A match fills at most
  ``min(both remainders, the seller's WATT, what the buyer's coins pay for at the maker
  price, the buyer's headroom under Bmax)``. An order that cannot fill now is skipped,
  not removed: it keeps its place and fills once its owner can (:meth:`OrderBook.rematch`).
- **Quotes.** The book quotes the best *listed* prices, regardless of energy being
  available (seed 003's market price), and the best *executable* ones.
- **Expiry.** An order with ``expires_at_us <= now`` leaves the book before anything else
  happens at ``now``.
- **Cancel.** Only by the order's owner.

Every change goes through an :class:`Action` (place, cancel, tick); :func:`apply_action`
applies one and :func:`replay` a sequence, so a log of actions rebuilds the same book and
the same trades given the same starting holdings.
"""

from __future__ import annotations

import enum
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from sortedcontainers import SortedDict

__all__ = [
    "MAX_PRICE_PER_KWH",
    "MAX_QUANTITY_WH",
    "Action",
    "ActionOutcome",
    "CancelOrder",
    "DepthLevel",
    "Holdings",
    "MemoryHoldings",
    "Order",
    "OrderBook",
    "OrderRejectedError",
    "PlaceOrder",
    "Quote",
    "Side",
    "Tick",
    "Trade",
    "action_from_json",
    "action_to_json",
    "affordable_wh",
    "apply_action",
    "replay",
    "trade_cost",
    "trades_of",
]

MAX_PRICE_PER_KWH = 10**9
"""Highest price an order may carry [µcoin/kWh] (1 000 coins per kWh). With
:data:`MAX_QUANTITY_WH` a trade's cost stays below 10¹⁵ micro-coins, and sums of millions of
trades stay inside int64."""
MAX_QUANTITY_WH = 10**9
"""Largest quantity an order may carry [Wh] (1 GWh, thousands of times the site's battery)."""

_WH_PER_KWH = 1000


class Side(enum.StrEnum):
    """Which way an order trades."""

    BUY = "buy"
    SELL = "sell"


class OrderRejectedError(ValueError):
    """An action the book refuses; the message says what is wrong and how to fix it."""


def trade_cost(price_per_kwh: int, quantity_wh: int) -> int:
    """Micro-coins a buyer pays for ``quantity_wh`` at ``price_per_kwh``, rounded up.

    Examples
    --------
    >>> trade_cost(500_000, 1500)  # 0.5 coin/kWh × 1.5 kWh
    750000
    >>> trade_cost(1, 1)  # a thousandth of a micro-coin rounds up to one
    1
    """
    return -(-price_per_kwh * quantity_wh // _WH_PER_KWH)


def affordable_wh(coins: int, price_per_kwh: int) -> int:
    """Most Wh whose :func:`trade_cost` at ``price_per_kwh`` fits in ``coins`` micro-coins.

    Examples
    --------
    >>> affordable_wh(750_000, 500_000)
    1500
    >>> trade_cost(500_000, affordable_wh(749_999, 500_000)) <= 749_999
    True
    """
    return max(coins, 0) * _WH_PER_KWH // price_per_kwh


class Holdings(Protocol):
    """What the book needs to know about owners, and where it hands its trades."""

    def watt_wh(self, owner: str) -> int:
        """WATT the owner holds now [Wh]."""
        ...

    def coins(self, owner: str) -> int:
        """Coins the owner holds now [µcoin]."""
        ...

    def headroom_wh(self, owner: str) -> int | None:
        """Wh the owner may still receive under their cap Bmax, None if uncapped."""
        ...

    def execute(self, trade: Trade) -> bool:
        """Settle one trade; False if it was refused (the book then leaves both orders)."""
        ...


@dataclass(slots=True)
class MemoryHoldings:
    """:class:`Holdings` in dictionaries, for simulations, tests and replays.

    Attributes
    ----------
    coin : dict of str to int
        Coins per owner [µcoin].
    watt : dict of str to int
        WATT per owner [Wh].
    caps_wh : dict of str to int
        Bmax per owner [Wh]; owners not listed are uncapped.
    """

    coin: dict[str, int] = field(default_factory=dict)
    watt: dict[str, int] = field(default_factory=dict)
    caps_wh: dict[str, int] = field(default_factory=dict)

    def watt_wh(self, owner: str) -> int:
        """WATT the owner holds [Wh]."""
        return self.watt.get(owner, 0)

    def coins(self, owner: str) -> int:
        """Coins the owner holds [µcoin]."""
        return self.coin.get(owner, 0)

    def headroom_wh(self, owner: str) -> int | None:
        """Wh left under the owner's cap, None if uncapped."""
        cap = self.caps_wh.get(owner)
        return None if cap is None else max(cap - self.watt.get(owner, 0), 0)

    def execute(self, trade: Trade) -> bool:
        """Move coins buyer → seller and WATT seller → buyer; refuse what is not held."""
        if (
            self.coin.get(trade.buyer, 0) < trade.cost
            or self.watt.get(trade.seller, 0) < trade.quantity_wh
        ):
            return False
        self.coin[trade.buyer] -= trade.cost
        self.coin[trade.seller] = self.coin.get(trade.seller, 0) + trade.cost
        self.watt[trade.seller] -= trade.quantity_wh
        self.watt[trade.buyer] = self.watt.get(trade.buyer, 0) + trade.quantity_wh
        return True


@dataclass(slots=True)
class Order:
    """An order in the book; ``remaining_wh`` shrinks as it fills.

    Attributes
    ----------
    order_id : str
        Assigned by the book (``o<seq>``), so that replays assign the same ids.
    owner : str
        The ledger account that holds its coins and WATT (``user:amina``, ``ev:EV01``).
    side : Side
        Buy or sell.
    price_per_kwh : int
        Limit price [µcoin/kWh], > 0.
    quantity_wh : int
        Quantity asked for [Wh], > 0.
    remaining_wh : int
        Not yet filled [Wh].
    seq : int
        Arrival number: time priority.
    placed_at_us : int
        When it arrived [µs since the epoch].
    expires_at_us : int or None
        When it leaves the book [µs since the epoch]; None: good till cancelled.
    """

    order_id: str
    owner: str
    side: Side
    price_per_kwh: int
    quantity_wh: int
    remaining_wh: int
    seq: int
    placed_at_us: int
    expires_at_us: int | None


@dataclass(frozen=True, slots=True)
class Trade:
    """One match: ``quantity_wh`` of WATT from seller to buyer for ``cost`` micro-coins.

    Attributes
    ----------
    trade_id : str
        ``t<n>``, numbered by the book; with the market's prefix it is the ledger key.
    buy_order_id, sell_order_id : str
        The matched orders.
    buyer, seller : str
        Their owners.
    price_per_kwh : int
        The resting order's price [µcoin/kWh].
    quantity_wh : int
        Energy traded [Wh].
    cost : int
        :func:`trade_cost` of the two [µcoin].
    at_us : int
        When [µs since the epoch].
    aggressor : Side
        The side of the later (taking) order.
    """

    trade_id: str
    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    price_per_kwh: int
    quantity_wh: int
    cost: int
    at_us: int
    aggressor: Side


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Put an order in the book at ``at_us`` (the book assigns its id)."""

    owner: str
    side: Side
    price_per_kwh: int
    quantity_wh: int
    at_us: int
    expires_at_us: int | None = None
    kind: Literal["place"] = "place"


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Withdraw an order; only its owner may."""

    order_id: str
    owner: str
    at_us: int
    kind: Literal["cancel"] = "cancel"


@dataclass(frozen=True, slots=True)
class Tick:
    """Let time pass to ``at_us`` and retry crossed orders (:meth:`OrderBook.rematch`)."""

    at_us: int
    kind: Literal["tick"] = "tick"


Action = PlaceOrder | CancelOrder | Tick


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What one action did: the order it placed (if any), its trades, or why it was refused."""

    order_id: str | None
    trades: tuple[Trade, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """Best prices [µcoin/kWh]: listed (any order) and executable (its owner can deliver)."""

    best_bid: int | None
    best_ask: int | None
    best_executable_bid: int | None
    best_executable_ask: int | None


@dataclass(frozen=True, slots=True)
class DepthLevel:
    """One price level of one side: listed Wh and the part its owners can execute now."""

    side: Side
    price_per_kwh: int
    listed_wh: int
    executable_wh: int
    orders: int


class OrderBook:
    """A continuous double auction over WATT (module docstring for the rules)."""

    def __init__(self) -> None:
        # Keys sort best first on both sides: -price for bids, price for asks. Each level
        # is an insertion-ordered dict, which is time priority.
        self._levels: dict[Side, SortedDict] = {Side.BUY: SortedDict(), Side.SELL: SortedDict()}
        self._orders: dict[str, Order] = {}
        self._expiry: list[tuple[int, int, str]] = []
        self._order_seq = 0
        self._trade_seq = 0
        self.now_us = 0
        """Time of the latest action [µs since the epoch]; actions may not go back."""

    # --- reading ---------------------------------------------------------------------------
    def order(self, order_id: str) -> Order | None:
        """A live order, or None if it filled, expired, was cancelled or never existed."""
        return self._orders.get(order_id)

    def orders(self, owner: str | None = None, as_of_us: int | None = None) -> list[Order]:
        """Live orders (of one owner), in arrival order.

        ``as_of_us`` hides orders that will have expired by then (views between actions).
        """
        return sorted(
            (
                o
                for o in self._orders.values()
                if (owner is None or o.owner == owner) and _alive(o, as_of_us)
            ),
            key=_seq,
        )

    def __len__(self) -> int:
        return len(self._orders)

    def side_in_priority(self, side: Side, as_of_us: int | None = None) -> Iterator[Order]:
        """Live orders of one side, best price first, then earliest."""
        for level in self._levels[side].values():
            yield from (o for o in level.values() if _alive(o, as_of_us))

    def quote(self, holdings: Holdings, as_of_us: int | None = None) -> Quote:
        """Best listed and best executable bid and ask (as of ``as_of_us``, see :meth:`orders`)."""
        best: dict[tuple[Side, bool], int | None] = {}
        for side in Side:
            orders = list(self.side_in_priority(side, as_of_us))
            best[side, False] = orders[0].price_per_kwh if orders else None
            best[side, True] = next(
                (o.price_per_kwh for o in orders if _capacity(o, holdings)), None
            )
        return Quote(
            best_bid=best[Side.BUY, False],
            best_ask=best[Side.SELL, False],
            best_executable_bid=best[Side.BUY, True],
            best_executable_ask=best[Side.SELL, True],
        )

    def depth(
        self, holdings: Holdings, levels: int = 10, as_of_us: int | None = None
    ) -> list[DepthLevel]:
        """The best ``levels`` price levels of each side, bids first.

        ``executable_wh`` counts each order up to what its owner can trade now (each order
        on its own, so two orders of one owner may both count the same holdings).
        """
        out: list[DepthLevel] = []
        for side in (Side.BUY, Side.SELL):
            for level in self._levels[side].values():
                live = [o for o in level.values() if _alive(o, as_of_us)]
                if not live:
                    continue
                listed = sum(o.remaining_wh for o in live)
                executable = sum(_capacity(o, holdings) for o in live)
                out.append(DepthLevel(side, live[0].price_per_kwh, listed, executable, len(live)))
                if sum(d.side is side for d in out) == levels:
                    break
        return out

    def _best_listed(self, side: Side) -> int | None:
        levels = self._levels[side]
        if not levels:
            return None
        return abs(int(levels.keys()[0]))

    # --- saving -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The book's whole state as plain JSON-able data (:meth:`restore` reads it back)."""
        return {
            "now_us": self.now_us,
            "order_seq": self._order_seq,
            "trade_seq": self._trade_seq,
            "orders": [
                {**asdict(o), "side": o.side.value} for o in sorted(self._orders.values(), key=_seq)
            ],
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> OrderBook:
        """A book from :meth:`snapshot` data: same orders, priorities, ids and time.

        Raises
        ------
        OrderRejectedError
            If the data is not a snapshot.
        """
        book = cls()
        try:
            book.now_us = int(data["now_us"])
            book._order_seq = int(data["order_seq"])
            book._trade_seq = int(data["trade_seq"])
            for fields in data["orders"]:
                book._rest(Order(**{**fields, "side": Side(fields["side"])}))
        except (KeyError, TypeError, ValueError) as error:
            msg = f"not an order-book snapshot ({error!r}); restore from the file it wrote"
            raise OrderRejectedError(msg) from error
        return book

    # --- changing ---------------------------------------------------------------------------
    def place(self, action: PlaceOrder, holdings: Holdings) -> tuple[Order, list[Trade]]:
        """Add an order, match it against earlier ones, rest what remains.

        Returns
        -------
        order : Order
            The order as it stands after matching (``remaining_wh`` 0 if it filled).
        trades : list of Trade
            Its matches, in order.

        Raises
        ------
        OrderRejectedError
            For a bad price, quantity, side, owner or time (nothing changes).
        """
        _check_place(action, self.now_us)
        self._advance(action.at_us)
        self._order_seq += 1
        order = Order(
            order_id=f"o{self._order_seq}",
            owner=action.owner,
            side=Side(action.side),
            price_per_kwh=action.price_per_kwh,
            quantity_wh=action.quantity_wh,
            remaining_wh=action.quantity_wh,
            seq=self._order_seq,
            placed_at_us=action.at_us,
            expires_at_us=action.expires_at_us,
        )
        if order.expires_at_us is not None and order.expires_at_us <= action.at_us:
            return order, []
        trades = self._match(order, holdings)
        if order.remaining_wh:
            self._rest(order)
        return order, trades

    def cancel(self, action: CancelOrder) -> Order:
        """Remove an order; only its owner may.

        Raises
        ------
        OrderRejectedError
            If the order is not live or belongs to someone else.
        """
        _check_time(action.at_us, self.now_us)
        self._advance(action.at_us)
        order = self._orders.get(action.order_id)
        if order is None:
            msg = (
                f"order {action.order_id!r} is not in the book (filled, expired, cancelled "
                "or never placed); list your open orders to find the right id"
            )
            raise OrderRejectedError(msg)
        if order.owner != action.owner:
            msg = (
                f"order {action.order_id!r} is not {action.owner!r}'s; only its owner may cancel it"
            )
            raise OrderRejectedError(msg)
        self._remove(order)
        return order

    def rematch(self, at_us: int, holdings: Holdings) -> list[Trade]:
        """Expire orders up to ``at_us``, then retry crossed orders until none can trade.

        Owners' holdings change outside the market (storage credits WATT, top-ups credit
        coins), so an order skipped for lack of them may fill now. Orders are retried as
        takers in arrival order, each against the earlier ones only, which is what
        continuous matching would have done had the holdings been there. A pass's trades
        move holdings and may enable pairs it already passed, so passes repeat until one
        trades nothing; each trade shrinks an order, so this ends. Afterwards no two
        crossed orders of different owners can trade with each other.
        """
        _check_time(at_us, self.now_us)
        self._advance(at_us)
        trades: list[Trade] = []
        while True:
            bid, ask = self._best_listed(Side.BUY), self._best_listed(Side.SELL)
            if bid is None or ask is None or bid < ask:
                return trades
            crossed = [o for o in self._orders.values() if _in_cross(o, bid, ask)]
            crossed.sort(key=_seq)
            traded = len(trades)
            for order in crossed:
                if order.remaining_wh and order.order_id in self._orders:
                    trades.extend(self._match(order, holdings))
                    if not order.remaining_wh:
                        self._remove(order)
            if len(trades) == traded:
                return trades

    def _advance(self, at_us: int) -> None:
        self.now_us = at_us
        expiry = self._expiry
        while expiry and expiry[0][0] <= at_us:
            _, _, order_id = heapq.heappop(expiry)
            order = self._orders.get(order_id)
            if order is not None:
                self._remove(order)

    def _rest(self, order: Order) -> None:
        key = -order.price_per_kwh if order.side is Side.BUY else order.price_per_kwh
        levels = self._levels[order.side]
        level = levels.get(key)
        if level is None:
            level = levels[key] = {}
        level[order.order_id] = order
        self._orders[order.order_id] = order
        if order.expires_at_us is not None:
            heapq.heappush(self._expiry, (order.expires_at_us, order.seq, order.order_id))

    def _remove(self, order: Order) -> None:
        key = -order.price_per_kwh if order.side is Side.BUY else order.price_per_kwh
        levels = self._levels[order.side]
        level = levels[key]
        del level[order.order_id]
        if not level:
            del levels[key]
        del self._orders[order.order_id]

    def _match(self, taker: Order, holdings: Holdings) -> list[Trade]:
        """Match ``taker`` against earlier opposite orders in price-time priority."""
        buying = taker.side is Side.BUY
        opposite = self._levels[Side.SELL if buying else Side.BUY]
        trades: list[Trade] = []
        emptied: list[int] = []
        taker_limit = 1
        for key in opposite:  # best price first
            price = key if buying else -key
            if (price > taker.price_per_kwh) if buying else (price < taker.price_per_kwh):
                break
            # What the taker's owner can trade at this price; zero here means zero at every
            # worse price too: the taker keeps its place (or rests) until its owner holds more.
            taker_limit = _limit(taker, holdings, price)
            if not taker_limit:
                break
            level = opposite[key]
            filled: list[Order] = []
            for resting in level.values():  # earliest first
                if resting.seq > taker.seq or resting.owner == taker.owner:
                    continue  # later orders take, not make; no self-trade
                quantity = min(taker_limit, _limit(resting, holdings, price))
                if not quantity:
                    continue  # the resting owner cannot deliver or pay now: it keeps its place
                buy, sell = (taker, resting) if buying else (resting, taker)
                self._trade_seq += 1
                trade = Trade(
                    trade_id=f"t{self._trade_seq}",
                    buy_order_id=buy.order_id,
                    sell_order_id=sell.order_id,
                    buyer=buy.owner,
                    seller=sell.owner,
                    price_per_kwh=price,
                    quantity_wh=quantity,
                    cost=trade_cost(price, quantity),
                    at_us=self.now_us,
                    aggressor=taker.side,
                )
                if not holdings.execute(trade):
                    self._trade_seq -= 1
                    continue
                trades.append(trade)
                taker.remaining_wh -= quantity
                resting.remaining_wh -= quantity
                if not resting.remaining_wh:
                    filled.append(resting)
                taker_limit = _limit(taker, holdings, price)
                if not taker_limit:
                    break
            for resting in filled:
                del level[resting.order_id]
                del self._orders[resting.order_id]
            if not level:
                emptied.append(key)
            if not taker_limit:
                break
        for key in emptied:
            del opposite[key]
        return trades


def _seq(order: Order) -> int:
    return order.seq


def _alive(order: Order, as_of_us: int | None) -> bool:
    return as_of_us is None or order.expires_at_us is None or order.expires_at_us > as_of_us


def _limit(order: Order, holdings: Holdings, price: int) -> int:
    """Wh the order's owner can trade now at ``price`` (capped by the order's remainder)."""
    if order.side is Side.SELL:
        return min(order.remaining_wh, max(holdings.watt_wh(order.owner), 0))
    wh = min(order.remaining_wh, affordable_wh(holdings.coins(order.owner), price))
    headroom = holdings.headroom_wh(order.owner)
    return wh if headroom is None else min(wh, headroom)


def _capacity(order: Order, holdings: Holdings) -> int:
    return _limit(order, holdings, order.price_per_kwh)


def _in_cross(order: Order, best_bid: int, best_ask: int) -> bool:
    if order.side is Side.BUY:
        return order.price_per_kwh >= best_ask
    return order.price_per_kwh <= best_bid


def _check_time(at_us: int, now_us: int) -> None:
    if type(at_us) is not int or at_us < now_us:
        msg = f"action at {at_us!r} µs is before the book's time {now_us} µs; actions go forward"
        raise OrderRejectedError(msg)


def _check_place(action: PlaceOrder, now_us: int) -> None:
    _check_time(action.at_us, now_us)
    if not isinstance(action.owner, str) or not action.owner:
        msg = "an order needs a non-empty owner (user id)"
        raise OrderRejectedError(msg)
    if action.side not in (Side.BUY, Side.SELL):
        msg = f"side {action.side!r} is neither 'buy' nor 'sell'"
        raise OrderRejectedError(msg)
    price, quantity = action.price_per_kwh, action.quantity_wh
    if type(price) is not int or not 0 < price <= MAX_PRICE_PER_KWH:
        msg = (
            f"price {price!r} must be an int of micro-coins per kWh in "
            f"1…{MAX_PRICE_PER_KWH} (0.5 coin/kWh is 500000)"
        )
        raise OrderRejectedError(msg)
    if type(quantity) is not int or not 0 < quantity <= MAX_QUANTITY_WH:
        msg = f"quantity {quantity!r} must be an int of Wh in 1…{MAX_QUANTITY_WH}"
        raise OrderRejectedError(msg)
    expires = action.expires_at_us
    if expires is not None and type(expires) is not int:
        msg = f"expires_at_us {expires!r} must be an int of µs since the epoch, or None"
        raise OrderRejectedError(msg)


def apply_action(book: OrderBook, action: Action, holdings: Holdings) -> ActionOutcome:
    """Apply one action; a refused one becomes an outcome with its error (book unchanged)."""
    try:
        if isinstance(action, PlaceOrder):
            order, trades = book.place(action, holdings)
            return ActionOutcome(order.order_id, tuple(trades))
        if isinstance(action, CancelOrder):
            order = book.cancel(action)
            return ActionOutcome(order.order_id, ())
        return ActionOutcome(None, tuple(book.rematch(action.at_us, holdings)))
    except OrderRejectedError as error:
        return ActionOutcome(None, (), str(error))


def replay(
    actions: Iterable[Action], holdings: Holdings, book: OrderBook | None = None
) -> tuple[OrderBook, list[ActionOutcome]]:
    """Apply ``actions`` in order to ``book`` (a new one by default).

    Deterministic: the same actions from the same holdings give the same orders, ids and
    trades.
    """
    book = OrderBook() if book is None else book
    return book, [apply_action(book, a, holdings) for a in actions]


def action_to_json(action: Action) -> str:
    """One line of JSON for an action log.

    Examples
    --------
    >>> action_to_json(Tick(5))
    '{"at_us": 5, "kind": "tick"}'
    """
    return json.dumps(asdict(action), sort_keys=True)


def action_from_json(line: str) -> Action:
    """The action of one :func:`action_to_json` line.

    Raises
    ------
    OrderRejectedError
        If the line is not an action.
    """
    try:
        data = json.loads(line)
        kind = data.pop("kind")
        if kind == "place":
            data["side"] = Side(data["side"])
            return PlaceOrder(**data)
        if kind == "cancel":
            return CancelOrder(**data)
        if kind == "tick":
            return Tick(**data)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        msg = f"not an order-book action: {line[:80]!r} ({error})"
        raise OrderRejectedError(msg) from error
    msg = f"unknown action kind {kind!r}; expected place, cancel or tick"
    raise OrderRejectedError(msg)


def trades_of(outcomes: Sequence[ActionOutcome]) -> list[Trade]:
    """All trades of a sequence of outcomes, in order."""
    return [t for o in outcomes for t in o.trades]
