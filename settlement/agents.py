"""Zero-intelligence traders for the order book: seed 003's ZI agent and Gode & Sunder's ZI-C.

- :class:`ZiSettings` / :func:`zi_orders` — seed 003's agent: "a user can only define the
  target purchase and selling price and our platform will automatically buy and sell once a
  given balance threshold is reached and no other buy or sell order exists". Below the low
  threshold it bids for the energy that brings the balance back to the middle of the two
  thresholds, above the high one it offers the excess; never on a side where the user
  already has an open order.
- :func:`zi_c_session` — budget-constrained zero-intelligence traders (ZI-C): buyers bid
  uniformly at random below their unit's value, sellers ask uniformly above their unit's
  cost, in our continuous double auction, and the session's allocative efficiency
  (realised ÷ maximum surplus) is measured. Planners use it to size what a market of
  unsophisticated traders can achieve.

References
----------
.. [1] D. K. Gode and S. Sunder, "Allocative efficiency of markets with zero-intelligence
   traders: market as a partial substitute for individual rationality", *Journal of
   Political Economy* 101(1), 119–137, 1993. :doi:`10.1086/261868`
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from settlement.orderbook import (
    MAX_PRICE_PER_KWH,
    CancelOrder,
    MemoryHoldings,
    Order,
    OrderBook,
    OrderRejectedError,
    PlaceOrder,
    Side,
    trade_cost,
)

__all__ = [
    "ZiCMarket",
    "ZiCResult",
    "ZiSettings",
    "max_surplus",
    "random_zi_c_market",
    "zi_c_session",
    "zi_orders",
]


@dataclass(frozen=True, slots=True)
class ZiSettings:
    """What a user tells their ZI agent (seed 003).

    Attributes
    ----------
    owner : str
        The ledger account the agent trades for (``user:<name>``).
    buy_price_per_kwh, sell_price_per_kwh : int
        Target prices [µcoin/kWh].
    low_wh, high_wh : int
        Balance thresholds [Wh]: buy below ``low_wh``, sell above ``high_wh``.
    """

    owner: str
    buy_price_per_kwh: int
    sell_price_per_kwh: int
    low_wh: int
    high_wh: int

    def __post_init__(self) -> None:
        for name in ("buy_price_per_kwh", "sell_price_per_kwh"):
            price = getattr(self, name)
            if type(price) is not int or not 0 < price <= MAX_PRICE_PER_KWH:
                msg = f"{name} {price!r} must be an int of µcoin/kWh in 1…{MAX_PRICE_PER_KWH}"
                raise OrderRejectedError(msg)
        if type(self.low_wh) is not int or type(self.high_wh) is not int:
            msg = "low_wh and high_wh must be ints of Wh"
            raise OrderRejectedError(msg)
        if not 0 <= self.low_wh <= self.high_wh:
            msg = (
                f"thresholds low_wh={self.low_wh} and high_wh={self.high_wh} must satisfy "
                "0 ≤ low_wh ≤ high_wh"
            )
            raise OrderRejectedError(msg)

    @property
    def target_wh(self) -> int:
        """The balance the agent trades back to: midway between the thresholds [Wh]."""
        return (self.low_wh + self.high_wh) // 2


def zi_orders(
    settings: ZiSettings,
    balance_wh: int,
    open_orders: Sequence[Order],
    at_us: int,
    expires_at_us: int | None = None,
) -> list[PlaceOrder]:
    """The orders seed 003's ZI agent posts now (none, or one).

    Parameters
    ----------
    settings : ZiSettings
        The user's prices and thresholds.
    balance_wh : int
        The user's WATT balance now [Wh].
    open_orders : sequence of Order
        The user's live orders (any side).
    at_us, expires_at_us : int
        Time of the orders and when they expire [µs since the epoch].

    Examples
    --------
    >>> s = ZiSettings("user:amina", 300_000, 600_000, low_wh=1000, high_wh=5000)
    >>> [(o.side.value, o.quantity_wh) for o in zi_orders(s, 200, [], 0)]
    [('buy', 2800)]
    >>> [(o.side.value, o.quantity_wh) for o in zi_orders(s, 8000, [], 0)]
    [('sell', 5000)]
    >>> zi_orders(s, 3000, [], 0)
    []
    """
    sides = {o.side for o in open_orders if o.owner == settings.owner}
    if balance_wh < settings.low_wh and Side.BUY not in sides:
        return [
            PlaceOrder(
                settings.owner,
                Side.BUY,
                settings.buy_price_per_kwh,
                settings.target_wh - balance_wh,
                at_us,
                expires_at_us,
            )
        ]
    if balance_wh > settings.high_wh and Side.SELL not in sides:
        return [
            PlaceOrder(
                settings.owner,
                Side.SELL,
                settings.sell_price_per_kwh,
                balance_wh - settings.target_wh,
                at_us,
                expires_at_us,
            )
        ]
    return []


@dataclass(frozen=True, slots=True)
class ZiCMarket:
    """One ZI-C session's traders: each buyer's unit values, each seller's unit costs.

    Attributes
    ----------
    values : tuple of tuple of int
        Per buyer, redemption values of successive units, highest first [µcoin/kWh].
    costs : tuple of tuple of int
        Per seller, costs of successive units, lowest first [µcoin/kWh].
    unit_wh : int
        Energy per unit [Wh].
    """

    values: tuple[tuple[int, ...], ...]
    costs: tuple[tuple[int, ...], ...]
    unit_wh: int = 1000


@dataclass(frozen=True, slots=True)
class ZiCResult:
    """What one ZI-C session achieved.

    Attributes
    ----------
    realised_surplus, max_surplus : int
        Σ (value − cost) of the traded units, and of the competitive allocation [µcoin/kWh
        per unit].
    trades : int
        Units traded.
    mean_price_per_kwh : float
        Mean trade price [µcoin/kWh] (NaN if nothing traded).
    """

    realised_surplus: int
    max_surplus: int
    trades: int
    mean_price_per_kwh: float

    @property
    def efficiency(self) -> float:
        """Realised ÷ maximum surplus (1.0 when no trade is worth making)."""
        return self.realised_surplus / self.max_surplus if self.max_surplus else 1.0


def max_surplus(market: ZiCMarket) -> int:
    """Surplus of the competitive allocation: the best values matched with the lowest costs.

    Examples
    --------
    >>> max_surplus(ZiCMarket(((90, 40),), ((10, 60),)))
    80
    """
    values = sorted((v for vs in market.values for v in vs), reverse=True)
    costs = sorted(c for cs in market.costs for c in cs)
    return sum(v - c for v, c in zip(values, costs, strict=False) if v > c)


def random_zi_c_market(
    rng: random.Random,
    buyers: int = 6,
    sellers: int = 6,
    units: int = 4,
    low: int = 100_000,
    high: int = 1_000_000,
) -> ZiCMarket:
    """Independent uniform values and costs in ``[low, high]`` µcoin/kWh, sorted per trader."""
    return ZiCMarket(
        values=tuple(
            tuple(sorted((rng.randint(low, high) for _ in range(units)), reverse=True))
            for _ in range(buyers)
        ),
        costs=tuple(
            tuple(sorted(rng.randint(low, high) for _ in range(units))) for _ in range(sellers)
        ),
    )


def zi_c_session(
    market: ZiCMarket,
    rng: random.Random,
    steps: int = 2000,
    floor_price: int = 1,
    ceiling_price: int = 1_000_000,
    clear_after_trade: bool = True,
) -> ZiCResult:
    """Run ZI-C traders on a fresh :class:`~settlement.orderbook.OrderBook`.

    Each step one trader with units left is drawn at random and replaces its order for one
    unit: a buyer bids uniformly in ``[floor_price, value]``, a seller asks uniformly in
    ``[cost, ceiling_price]`` — the budget constraint is that no trader can trade at a loss.
    Sellers hold exactly their units' WATT and buyers their values' worth of coins, so the
    book's availability limits apply as in the live market.

    Parameters
    ----------
    market : ZiCMarket
        Values and costs.
    rng : random.Random
        Source of randomness (seeded for a reproducible session).
    steps : int
        Order submissions in the session.
    floor_price, ceiling_price : int
        Price range [µcoin/kWh].
    clear_after_trade : bool
        Gode and Sunder's rule: a trade cancels every other standing order, so traders
        re-quote against the new state of the market.

    Returns
    -------
    ZiCResult
    """
    unit = market.unit_wh
    buyers = [f"b{i}" for i in range(len(market.values))]
    sellers = [f"s{i}" for i in range(len(market.costs))]
    values = dict(zip(buyers, market.values, strict=True))
    costs = dict(zip(sellers, market.costs, strict=True))
    holdings = MemoryHoldings(
        coin={b: sum(trade_cost(v, unit) for v in vs) for b, vs in values.items()},
        watt={s: unit * len(cs) for s, cs in costs.items()},
    )
    next_unit = dict.fromkeys(buyers + sellers, 0)
    limits = values | costs
    standing: dict[str, str] = {}  # trader → its live order id
    book = OrderBook()
    realised = traded = price_sum = 0
    for at in range(steps):
        active = [t for t in buyers + sellers if next_unit[t] < len(limits[t])]
        best_value = max((limits[b][next_unit[b]] for b in active if b in values), default=0)
        least_cost = min((limits[s][next_unit[s]] for s in active if s in costs), default=0)
        if not active or best_value <= least_cost:
            break  # no trade left that anyone would make: the session is over
        trader = rng.choice(active)
        limit = limits[trader][next_unit[trader]]
        buying = trader.startswith("b")
        price = rng.randint(floor_price, limit) if buying else rng.randint(limit, ceiling_price)
        if trader in standing:
            book.cancel(CancelOrder(standing.pop(trader), trader, at))
        side = Side.BUY if buying else Side.SELL
        order, trades = book.place(PlaceOrder(trader, side, price, unit, at), holdings)
        for trade in trades:
            value = limits[trade.buyer][next_unit[trade.buyer]]
            cost = limits[trade.seller][next_unit[trade.seller]]
            realised += value - cost
            traded += 1
            price_sum += trade.price_per_kwh
            next_unit[trade.buyer] += 1
            next_unit[trade.seller] += 1
        if order.remaining_wh:
            standing[trader] = order.order_id
        # Orders filled as resting ones stand no more.
        standing = {t: o for t, o in standing.items() if book.order(o) is not None}
        if trades and clear_after_trade:
            for other, order_id in standing.items():
                book.cancel(CancelOrder(order_id, other, at))
            standing.clear()
    return ZiCResult(
        realised, max_surplus(market), traded, price_sum / traded if traded else float("nan")
    )
