"""The peer-to-peer market's HTTP API: the order book, trades, orders and ZI agent settings.

Reads are open like the rest of the noticeboard; placing and cancelling orders and setting a
ZI agent need credentials (HTTP Basic, as the rest of the API): a resident trades for their
own wallet ``user:<name>`` (the book's owners are ledger accounts), an operator may set
anyone's agent.

==========================================  ===============  ===========================
endpoint                                     who              refusal
==========================================  ===============  ===========================
``GET /api/market/book``                     anyone
``GET /api/market/trades``                   anyone
``GET /api/market/orders``                   anyone
``POST /api/market/orders``                  resident         401, 400 bad order
``DELETE /api/market/orders/{id}``           its owner        401, 403, 404
``GET /api/market/agents``                   anyone
``PUT /api/market/agents/{user}``            that user,       401, 403, 400
                                             operator
``POST /api/market/tick``                    operator         401, 403
==========================================  ===============  ===========================

Every trade settles on the service's ledger as it is matched (:mod:`settlement.market`);
a buyer fills no more than its headroom under the service's Bmax. Agents act after every
order action and every tick; the service's ``market`` job ticks on a schedule. Open
orders, the latest trades and the agents' settings survive a restart in
``<data-dir>/market.json`` and ``<data-dir>/market_agents.json``.

No ``from __future__ import annotations`` here: FastAPI resolves the ``Depends`` on the
local ``user`` dependency from the live annotations.
"""

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from lastwatt.api_auth import AuthDependencies
from lastwatt.api_views import (
    AgentAnswer,
    Agents,
    AgentView,
    BookLevel,
    BookView,
    CancelAnswer,
    Orders,
    OrderView,
    PlaceAnswer,
    Trades,
    TradeView,
)
from lastwatt.auth import Role, User
from lastwatt.service import Service
from settlement.agents import ZiSettings
from settlement.ledger import user_account
from settlement.orderbook import (
    MAX_PRICE_PER_KWH,
    MAX_QUANTITY_WH,
    CancelOrder,
    Order,
    OrderRejectedError,
    PlaceOrder,
    Side,
    Trade,
)

__all__ = ["router"]


class OrderRequest(BaseModel):
    """An order for the caller's wallet."""

    side: Literal["buy", "sell"]
    price_per_kwh_minor: int = Field(
        gt=0, le=MAX_PRICE_PER_KWH, description="coin minor units per kWh (0.5 coin = 500000)"
    )
    quantity_wh: int = Field(gt=0, le=MAX_QUANTITY_WH, description="energy [Wh]")
    expires_in_s: int | None = Field(
        default=None, gt=0, le=31 * 86400, description="seconds until it expires; none: GTC"
    )


class AgentRequest(BaseModel):
    """Seed 003's ZI agent: target prices and balance thresholds."""

    buy_price_per_kwh_minor: int = Field(gt=0, le=MAX_PRICE_PER_KWH)
    sell_price_per_kwh_minor: int = Field(gt=0, le=MAX_PRICE_PER_KWH)
    low_wh: int = Field(ge=0, le=MAX_QUANTITY_WH)
    high_wh: int = Field(ge=0, le=MAX_QUANTITY_WH)


def _order(o: Order) -> OrderView:
    return OrderView(
        id=o.order_id,
        owner=o.owner,
        side=o.side.value,
        price_per_kwh_minor=o.price_per_kwh,
        quantity_wh=o.quantity_wh,
        remaining_wh=o.remaining_wh,
        expires_at_us=o.expires_at_us,
    )


def _trade(t: Trade) -> TradeView:
    return TradeView(
        id=t.trade_id,
        buyer=t.buyer,
        seller=t.seller,
        price_per_kwh_minor=t.price_per_kwh,
        quantity_wh=t.quantity_wh,
        cost_minor=t.cost,
        at=dt.datetime.fromtimestamp(t.at_us / 1e6, dt.UTC).isoformat(),
        aggressor=t.aggressor.value,
    )


def router(service: Service, auth: AuthDependencies) -> APIRouter:
    """The market's routes over the service's one book (:class:`~lastwatt.market_live.LiveMarket`).

    Parameters
    ----------
    service : Service
        Its market: the book on its ledger, with Bmax from its storage cap, and its agents.
    auth : AuthDependencies
        The app's authentication (who may place orders and set agents).
    """
    api = APIRouter(prefix="/api/market", tags=["market"])
    live = service.market
    market = live.market
    agents = live.agents

    # The app's own dependencies (lastwatt.api_auth): the same checks and rate limits.
    user, operator = auth.user, auth.operator
    now_us = live.now_us
    run_agents = live.run_agents

    @api.get("/book")
    async def book(levels: int = 10) -> BookView:
        """Depth per price level (listed and executable Wh) and the best prices."""
        at = now_us()  # orders expired since the last action are not shown
        quote = market.book.quote(market.holdings, at)
        depth = market.book.depth(market.holdings, max(1, min(levels, 100)), at)
        return BookView(
            best_bid=quote.best_bid,
            best_ask=quote.best_ask,
            best_executable_bid=quote.best_executable_bid,
            best_executable_ask=quote.best_executable_ask,
            levels=[
                BookLevel(
                    side=d.side.value,
                    price_per_kwh_minor=d.price_per_kwh,
                    listed_wh=d.listed_wh,
                    executable_wh=d.executable_wh,
                    orders=d.orders,
                )
                for d in depth
            ],
        )

    @api.get("/trades")
    async def trades(limit: int = 50) -> Trades:
        """The latest trades, newest first."""
        latest = market.trades[-max(1, min(limit, 500)) :]
        return Trades(trades=[_trade(t) for t in reversed(latest)])

    @api.get("/orders")
    async def orders(owner: str | None = None) -> Orders:
        """Open orders (of one owner account, e.g. ``user:amina``), oldest first."""
        return Orders(orders=[_order(o) for o in market.book.orders(owner, now_us())])

    @api.post("/orders")
    async def place(body: OrderRequest, who: Annotated[User, Depends(user)]) -> PlaceAnswer:
        """Place an order for the caller's wallet; matches settle at once."""
        at = now_us()
        expires = None if body.expires_in_s is None else at + body.expires_in_s * 1_000_000
        action = PlaceOrder(
            user_account(who.name),
            Side(body.side),
            body.price_per_kwh_minor,
            body.quantity_wh,
            at,
            expires,
        )
        outcome = market.submit(action)
        if outcome.error is not None:
            raise HTTPException(400, outcome.error)
        placed = market.book.order(outcome.order_id or "")
        after_agents = run_agents()
        return PlaceAnswer(
            order=None if placed is None else _order(placed),
            order_id=outcome.order_id,
            trades=[_trade(t) for t in outcome.trades],
            agent_trades=[_trade(t) for t in after_agents],
        )

    @api.delete("/orders/{order_id}")
    async def cancel(order_id: str, who: Annotated[User, Depends(user)]) -> CancelAnswer:
        """Cancel one of the caller's orders."""
        at = now_us()
        order = market.book.order(order_id)
        if order is None or (order.expires_at_us is not None and order.expires_at_us <= at):
            raise HTTPException(404, f"no open order {order_id!r}; GET /api/market/orders")
        if order.owner != user_account(who.name):
            raise HTTPException(403, f"order {order_id!r} is not {who.name!r}'s")
        outcome = market.submit(CancelOrder(order_id, order.owner, at))
        if outcome.error is not None:
            raise HTTPException(400, outcome.error)
        run_agents()
        return CancelAnswer(cancelled=order_id)

    @api.get("/agents")
    async def list_agents() -> Agents:
        """Every user's ZI agent settings."""
        return Agents(
            agents=[
                AgentView(
                    owner=s.owner,
                    buy_price_per_kwh_minor=s.buy_price_per_kwh,
                    sell_price_per_kwh_minor=s.sell_price_per_kwh,
                    low_wh=s.low_wh,
                    high_wh=s.high_wh,
                )
                for s in agents.values()
            ]
        )

    @api.put("/agents/{user_name}")
    async def set_agent(
        user_name: str, body: AgentRequest, who: Annotated[User, Depends(user)]
    ) -> AgentAnswer:
        """Set a user's ZI agent (the user themself or an operator); it acts at once."""
        if who.role is not Role.OPERATOR and who.name != user_name:
            raise HTTPException(403, f"{who.name!r} may set only their own agent")
        try:
            settings = ZiSettings(
                user_account(user_name),
                body.buy_price_per_kwh_minor,
                body.sell_price_per_kwh_minor,
                body.low_wh,
                body.high_wh,
            )
        except OrderRejectedError as exc:
            raise HTTPException(400, str(exc)) from None
        live.set_agent(settings)
        return AgentAnswer(user=user_name, trades=[_trade(t) for t in run_agents()])

    @api.post("/tick")
    async def tick(who: Annotated[User, Depends(operator)]) -> Trades:
        """Expire orders, retry crossed ones whose owners hold more now, let agents act."""
        return Trades(trades=[_trade(t) for t in live.tick()])

    return api
