"""The order book on the ledger: every match settles atomically and idempotently.

A trade becomes one :class:`~settlement.ledger.Batch` keyed
``<prefix>:<trade id>:<buy order id>:<sell order id>`` with two transfers: the buyer's
coins to the seller (``market.pay``) and the seller's WATT to the buyer (``market.watt``).
Both move or neither does; posting the same trade again returns the first result. Neither
transfer may overdraw, so the ledger re-checks what the book checked.

:class:`LedgerHoldings` is the :class:`~settlement.orderbook.Holdings` the live market uses:
it reads balances from the store and posts each match as it is made. :class:`Market` keeps
one book, its action log and a lock, for the service.

Owners are ledger accounts: an order's owner is the account that holds its coins and WATT
(``user:<name>`` for a resident, ``ev:<id>`` for a vehicle), so anything with a wallet can
trade. Bmax per account is a parameter (``caps_wh``) so that the storage accounting's caps
can be passed in; ``bmax_wh`` caps every holder's wallet (:data:`CAPPED_PREFIXES`) at once,
which is how the service applies its storage cap to the live book.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from settlement.ledger import (
    Asset,
    Batch,
    InsufficientFundsError,
    PostedBatch,
    Transfer,
    from_us,
    to_us,
)
from settlement.orderbook import (
    Action,
    ActionOutcome,
    OrderBook,
    OrderRejectedError,
    Side,
    Trade,
    action_to_json,
    apply_action,
)
from settlement.store import LedgerStore

__all__ = [
    "CAPPED_PREFIXES",
    "KEPT_TRADES",
    "MARKET_PREFIX",
    "LedgerHoldings",
    "Market",
    "settle_trades",
    "trade_batch",
]

MARKET_PREFIX = "market"
"""Default first part of a trade's batch key."""
KEPT_TRADES = 500
"""Latest trades a :class:`Market` keeps in memory and in its snapshot (the ledger keeps
them all)."""


CAPPED_PREFIXES = ("user:", "meter:")
"""Accounts a blanket ``bmax_wh`` applies to: the people's wallets and meters, as in the
storage accounting (seed 003's "users"). A vehicle (``ev:``) buys WATT only to burn it in the
same session, and institutional accounts (storage owners, funds) are not capped."""


def trade_batch(trade: Trade, prefix: str = MARKET_PREFIX) -> Batch:
    """The ledger batch of one trade: coins buyer → seller, WATT seller → buyer.

    Examples
    --------
    >>> from settlement.orderbook import Side
    >>> t = Trade("t1", "o1", "o2", "user:b", "user:s", 500_000, 1500, 750_000, 0, Side.BUY)
    >>> [(x.debit, x.credit, x.asset.value, x.amount) for x in trade_batch(t).transfers]
    [('user:b', 'user:s', 'coin', 750000), ('user:s', 'user:b', 'watt', 1500)]
    """
    buyer, seller = trade.buyer, trade.seller
    return Batch(
        f"{prefix}:{trade.trade_id}:{trade.buy_order_id}:{trade.sell_order_id}",
        (
            Transfer(buyer, seller, Asset.COIN, trade.cost, "market.pay"),
            Transfer(seller, buyer, Asset.WATT, trade.quantity_wh, "market.watt"),
        ),
    )


def settle_trades(
    store: LedgerStore, trades: Sequence[Trade], prefix: str = MARKET_PREFIX
) -> list[PostedBatch]:
    """Post trades matched elsewhere (a simulation's book) in one transaction: all or none.

    Raises
    ------
    settlement.ledger.InsufficientFundsError
        If any trade is not covered by the ledger's balances (nothing is posted).
    """
    if not trades:
        return []
    batches = [trade_batch(t, prefix) for t in trades]
    return store.post_many(batches, from_us(trades[-1].at_us))


@dataclass(slots=True)
class LedgerHoldings:
    """:class:`~settlement.orderbook.Holdings` read from and settled on a ledger store.

    Attributes
    ----------
    store : LedgerStore
        The ledger.
    caps_wh : mapping of str to int
        Bmax per account [Wh]; it overrides ``bmax_wh``.
    prefix : str
        First part of each trade's batch key.
    bmax_wh : int or None
        Bmax of every account named by :data:`CAPPED_PREFIXES` and not in ``caps_wh``
        [Wh]; None: only ``caps_wh`` caps.
    """

    store: LedgerStore
    caps_wh: Mapping[str, int] = field(default_factory=dict)
    prefix: str = MARKET_PREFIX
    bmax_wh: int | None = None

    def watt_wh(self, owner: str) -> int:
        """WATT the owner's account holds [Wh]."""
        return self.store.balance(owner, Asset.WATT)

    def coins(self, owner: str) -> int:
        """Coins the owner's account holds [µcoin]."""
        return self.store.balance(owner, Asset.COIN)

    def headroom_wh(self, owner: str) -> int | None:
        """Wh the owner may still receive under Bmax, None if uncapped."""
        cap = self.caps_wh.get(owner)
        if cap is None and self.bmax_wh is not None and owner.startswith(CAPPED_PREFIXES):
            cap = self.bmax_wh
        return None if cap is None else max(cap - self.watt_wh(owner), 0)

    def execute(self, trade: Trade) -> bool:
        """Post the trade's batch; False if a balance changed under the book's feet."""
        try:
            self.store.post(trade_batch(trade, self.prefix), from_us(trade.at_us))
        except InsufficientFundsError:
            return False
        return True


class Market:
    """One order book on a ledger, for the service: serialised actions and their log.

    Parameters
    ----------
    store : LedgerStore
        The ledger trades settle on.
    caps_wh : mapping of str to int, optional
        Bmax per account [Wh].
    prefix : str
        First part of each trade's batch key (one per book).
    bmax_wh : int or None
        Bmax of every user's wallet [Wh] (:class:`LedgerHoldings`).
    snapshot_path : path, optional
        Where the open orders and the latest trades are kept across restarts: rewritten
        (write, fsync, rename) after every action that changed the book, read at start.
        The trades themselves are durable on the ledger as they are matched.

    Notes
    -----
    A crash can fall between a trade's post and the snapshot of its action. At start the
    ledger's trade batches after the snapshot's last trade are applied to the orders they
    name (their keys carry both order ids), and trade and order numbering continue after
    the highest on the ledger, so a trade is never counted twice and no key is reused.
    The order of the action that crashed does not rest: its owner got no answer for it.
    """

    def __init__(
        self,
        store: LedgerStore,
        caps_wh: Mapping[str, int] | None = None,
        prefix: str = MARKET_PREFIX,
        snapshot_path: str | Path | None = None,
        bmax_wh: int | None = None,
    ) -> None:
        self.holdings = LedgerHoldings(store, dict(caps_wh or {}), prefix, bmax_wh)
        self.snapshot_path = None if snapshot_path is None else Path(snapshot_path)
        self.book = OrderBook()
        self.trades: list[Trade] = []
        if self.snapshot_path is not None and self.snapshot_path.exists():
            self.book, self.trades = _read_snapshot(self.snapshot_path)
        self.book = _catch_up(self.book, store, prefix)
        self.log: list[str] = []
        """Actions applied since start as JSON lines (:func:`settlement.orderbook.replay`)."""
        self._lock = threading.Lock()

    def submit(self, action: Action) -> ActionOutcome:
        """Apply one action and settle its trades; refused actions are logged too."""
        with self._lock:
            outcome = apply_action(self.book, action, self.holdings)
            self.log.append(action_to_json(action))
            self.trades.extend(outcome.trades)
            del self.trades[:-KEPT_TRADES]
            if outcome.error is None and self.snapshot_path is not None:
                _write_snapshot(self.snapshot_path, self.book, self.trades)
            return outcome

    def now_us(self, moment: datetime) -> int:
        """``moment`` in µs, never before the book's latest action (clocks may step back)."""
        return max(to_us(moment), self.book.now_us)


def _catch_up(book: OrderBook, store: LedgerStore, prefix: str) -> OrderBook:
    """The book with the fills of trades on the ledger but not in it (module Notes)."""
    data = book.snapshot()
    orders = {o["order_id"]: o for o in data["orders"]}
    changed = False
    for key in store.keys_with_prefix(f"{prefix}:t"):
        trade_id, buy_id, sell_id = key.removeprefix(f"{prefix}:").split(":")
        number = int(trade_id.removeprefix("t"))
        data["order_seq"] = max(
            data["order_seq"], *(int(i.removeprefix("o")) for i in (buy_id, sell_id))
        )
        if number <= data["trade_seq"]:
            continue
        data["trade_seq"] = number
        changed = True
        wh = sum(t.amount for t in store.transfers_of(key) if t.asset is Asset.WATT)
        for order_id in (buy_id, sell_id):
            if order_id in orders:
                orders[order_id]["remaining_wh"] -= wh
    if not changed and data["order_seq"] == book.snapshot()["order_seq"]:
        return book
    data["orders"] = [o for o in orders.values() if o["remaining_wh"] > 0]
    return OrderBook.restore(data)


def _write_snapshot(path: Path, book: OrderBook, trades: Sequence[Trade]) -> None:
    data = {
        "book": book.snapshot(),
        "trades": [{**asdict(t), "aggressor": t.aggressor.value} for t in trades],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)  # atomic: a crash leaves the old snapshot or the new one


def _read_snapshot(path: Path) -> tuple[OrderBook, list[Trade]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        book = OrderBook.restore(data["book"])
        trades = [Trade(**{**t, "aggressor": Side(t["aggressor"])}) for t in data["trades"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        msg = (
            f"cannot read the market snapshot {path} ({error}); move it aside to start with "
            "an empty book (every trade is on the ledger)"
        )
        raise OrderRejectedError(msg) from error
    return book, trades
