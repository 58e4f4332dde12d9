"""Typed answers of the API's routers: alarms, settlement, market, console, contracts, setpoints.

The core endpoints' models are in :mod:`lastwatt.api_models`; these are the answers of the
routers :func:`lastwatt.api.create_app` includes. Every endpoint returns one of them, so
OpenAPI (``/docs``) shows every schema. Field names and shapes are the JSON the endpoints
have always returned (the dashboard's scripts read them): a field is an ``int`` where the
value is an integer (a ``float`` field would write ``1.0`` for ``1``), and nullable where
the value may be null.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lastwatt.customers import Customer

__all__ = [
    "AdvanceAnswer",
    "AgentAnswer",
    "AgentView",
    "Agents",
    "AlarmView",
    "Alarms",
    "BandRevisionAnswer",
    "BookLevel",
    "BookView",
    "CancelAnswer",
    "ConnectionPage",
    "ContractRow",
    "ContractView",
    "Contracts",
    "DecisionRow",
    "Decisions",
    "DepositAnswer",
    "MapConnection",
    "MapContainer",
    "MapView",
    "MeConnection",
    "MeStake",
    "MeView",
    "OrderView",
    "Orders",
    "OwnerAnswer",
    "OwnerView",
    "PageConnection",
    "PagePlanRow",
    "PageReading",
    "PageTransaction",
    "PlaceAnswer",
    "ReadingsAnswer",
    "SetpointPeriod",
    "SetpointsView",
    "StatementInterval",
    "StatementView",
    "TradeView",
    "Trades",
    "Wallet",
    "WattView",
    "WithdrawalAnswer",
]


# --- alarms ----------------------------------------------------------------------------------
class AlarmView(BaseModel):
    """An alarm condition (times ISO 8601, UTC)."""

    id: int
    kind: str
    severity: str
    subject: str
    first_seen: str
    last_seen: str
    count: int
    message: str
    standing: bool
    cleared_at: str | None
    acked_by: str | None
    acked_at: str | None


class Alarms(BaseModel):
    """Alarm conditions, most recently seen first, and unacknowledged standing ones per severity."""

    alarms: list[AlarmView]
    unacknowledged: dict[str, int]


# --- settlement ------------------------------------------------------------------------------
class WithdrawalAnswer(BaseModel):
    """A reserved withdrawal; the processor's webhook confirms or voids it."""

    withdrawal_id: str
    account: str
    coins_minor: int
    fiat_minor: int | None = Field(description="at the configured price; null: no price")
    status: str
    replayed: bool


class OwnerView(BaseModel):
    """Who owns a meter account (null: nobody registered)."""

    account: str
    owner: str | None


class OwnerAnswer(BaseModel):
    """The owner registered, and by whom."""

    account: str
    owner: str
    by: str


class ReadingsAnswer(BaseModel):
    """What became of a meter's own report."""

    accepted: int
    duplicates: int
    resettled_hours: list[str]


class DecisionRow(BaseModel):
    """One hour's decision for a meter [Wh, coin minor units]."""

    hour: str
    import_wh: int
    export_wh: int
    status: str
    charge_minor: int
    payout_minor: int
    balance_minor: int
    connected: bool
    state: str


class Decisions(BaseModel):
    """A meter's latest hourly decisions, newest first."""

    meter_id: str
    decisions: list[DecisionRow]


class WattView(BaseModel):
    """WATT storage tokens outstanding and per holder [Wh]."""

    outstanding_wh: int
    holders_wh: dict[str, int]
    battery_owner: str


# --- market ----------------------------------------------------------------------------------
class OrderView(BaseModel):
    """An open order [coin minor units per kWh, Wh]."""

    id: str
    owner: str
    side: str
    price_per_kwh_minor: int
    quantity_wh: int
    remaining_wh: int
    expires_at_us: int | None


class TradeView(BaseModel):
    """A matched trade (``at`` ISO 8601, UTC)."""

    id: str
    buyer: str
    seller: str
    price_per_kwh_minor: int
    quantity_wh: int
    cost_minor: int
    at: str
    aggressor: str


class BookLevel(BaseModel):
    """One price level of the book: listed and executable energy [Wh]."""

    side: str
    price_per_kwh_minor: int
    listed_wh: int
    executable_wh: int
    orders: int


class BookView(BaseModel):
    """Depth per price level and the best prices (null: no order on that side)."""

    best_bid: int | None
    best_ask: int | None
    best_executable_bid: int | None
    best_executable_ask: int | None
    levels: list[BookLevel]


class Trades(BaseModel):
    """Trades, newest first (or the ones an action caused)."""

    trades: list[TradeView]


class Orders(BaseModel):
    """Open orders, oldest first."""

    orders: list[OrderView]


class PlaceAnswer(BaseModel):
    """The order placed (null once filled), its trades and the agents' trades after it."""

    order: OrderView | None
    order_id: str | None
    trades: list[TradeView]
    agent_trades: list[TradeView]


class CancelAnswer(BaseModel):
    """The cancelled order's id."""

    cancelled: str


class AgentView(BaseModel):
    """A user's ZI agent settings."""

    owner: str
    buy_price_per_kwh_minor: int
    sell_price_per_kwh_minor: int
    low_wh: int
    high_wh: int


class Agents(BaseModel):
    """Every user's ZI agent settings."""

    agents: list[AgentView]


class AgentAnswer(BaseModel):
    """The user whose agent was set and the trades it made at once."""

    user: str
    trades: list[TradeView]


# --- console ---------------------------------------------------------------------------------
class PageConnection(BaseModel):
    """A connection's fixed facts."""

    id: str
    kind: str
    tariff: str
    relay_group: str | None
    prosumer: bool


class PageReading(BaseModel):
    """A meter reading [Wh registers]."""

    time: str
    import_wh: int
    export_wh: int


class PageTransaction(BaseModel):
    """A journal row as the connection's account sees it (``amount_minor`` < 0: out)."""

    seq: int
    time: str
    amount_minor: int
    asset: str
    code: str
    other: str
    batch: str = Field(default="", description="The ledger batch key")
    note: str | None = Field(default=None, description="Why, for a refund: the operator's reason")


class PagePlanRow(BaseModel):
    """The plan in force for the connection's unit in one period."""

    time: str
    unit: str | None
    closed: bool | None
    allotment_kw: float | None
    reason: str | None


class ContractStanding(BaseModel):
    """A band contract's standing now: band, metering, escrow, penalties [Wh, micro-coins].

    ``metered_wh`` is the import since the meter's last reading at or before the current
    interval's start, or its first reading inside it (``metered_since``); the bill's exact
    interpolation comes when the interval is charged.
    ``position`` compares it with the band widened by the tolerance: ``above`` is final,
    ``below`` only says the lower edge is not reached yet.
    """

    contract_id: str
    meter_id: str
    start: str
    end: str
    closed: bool
    interval_s: int
    intervals: int
    intervals_charged: int
    current_start: str | None = Field(description="The interval running now (null outside)")
    band_wh: list[int] | None = Field(description="[lower, upper] of the current interval [Wh]")
    tolerance_wh: int
    metered_wh: int | None = Field(description="Import in the current interval so far [Wh]")
    metered_since: str | None = Field(description="The reading ``metered_wh`` counts from")
    position: str | None = Field(description="below, within or above the band so far")
    bonus: int
    bonus_left: int = Field(description="Bonus left in escrow after the last charged interval")
    penalties: int = Field(description="Penalties charged so far")
    receivable: int = Field(description="Penalties the consumer owes beyond bonus and deposit")
    next_gate_closure: str | None = Field(
        description="When the band of the next revisable interval freezes (null: none left)"
    )
    next_gate_interval: str | None = Field(description="That interval's start")


class ContractStandings(BaseModel):
    """The band contracts the caller may see, with their standing."""

    time: str
    contracts: list[ContractStanding]


class ConnectionPage(BaseModel):
    """One connection: its customer, balance, readings, transactions, plan and reasons."""

    connection: PageConnection
    customer: Customer | None
    balance_minor: int
    credit: str | None
    hold: dict[str, Any] | None
    readings: list[PageReading]
    transactions: list[PageTransaction]
    plan: list[PagePlanRow]
    contracts: list[ContractStanding] = Field(
        default_factory=list, description="Band contracts on this connection, with standing"
    )


class MapContainer(BaseModel):
    """The container: the map's origin."""

    east_m: float
    north_m: float
    pv_kwp: float


class MapConnection(BaseModel):
    """A connection on the map [m from the container; Wh registers]."""

    id: str
    kind: str
    producer: bool
    east_m: float | None
    north_m: float | None
    on: bool
    import_wh: int | None
    export_wh: int | None


class MapView(BaseModel):
    """Every connection with its position and state."""

    time: str
    container: MapContainer
    simulated: bool
    connections: list[MapConnection]


class Wallet(BaseModel):
    """The user's wallet ``user:<name>``."""

    account: str
    balance_minor: int


class MeConnection(BaseModel):
    """A connection the user holds."""

    id: str
    balance_minor: int
    credit: str | None


class MeStake(BaseModel):
    """The household's stake tokens and its choice for the next round."""

    tokens_minor: int
    next_round_choice: str | None


class MeView(BaseModel):
    """The signed-in user's own wallet, connections, balances and stake."""

    name: str
    role: str
    household: str | None
    wallet: Wallet
    connections: list[MeConnection]
    stake: MeStake | None


class AdvanceAnswer(BaseModel):
    """The simulated clock after the step."""

    time: str
    advanced_hours: int


# --- contracts -------------------------------------------------------------------------------
class ContractView(BaseModel):
    """A band contract's terms (times ISO 8601, lengths in seconds, amounts in micro-coins)."""

    contract_id: str
    meter_id: str
    start: str
    interval_s: int
    bands_wh: list[list[int]] = Field(description="[lower, upper] per interval [Wh]")
    tolerance_wh: int
    bonus: int
    over_rate: int
    under_rate: int
    disconnect_penalty: int
    discount_ppm: int
    gate_closure_s: int
    missing_data: str


class ContractRow(BaseModel):
    """A contract's standing in a listing [micro-coins]."""

    contract_id: str
    meter_id: str
    start: str
    end: str
    closed: bool
    revision: int
    intervals_charged: int
    intervals: int
    penalties: int
    bonus_left: int
    receivable: int


class Contracts(BaseModel):
    """The contracts the caller may see."""

    contracts: list[ContractRow]


class BandRevisionAnswer(BaseModel):
    """The revision number and the revised terms."""

    revision: int
    contract: ContractView


class DepositAnswer(BaseModel):
    """The deposit's ledger batch."""

    batch: str
    replayed: bool


class StatementInterval(BaseModel):
    """One charged interval: energy, band, deviation, penalty and who paid it."""

    start: str
    energy_wh: int
    estimated: bool
    band_wh: list[int]
    over_wh: int
    under_wh: int
    grid_shortfall_waived: bool
    consumer_disconnects: int
    penalty: int
    from_bonus: int
    from_deposit: int
    receivable: int
    bonus_left: int


class StatementView(BaseModel):
    """A contract's statement [micro-coins]; ``discount`` null while the period is open."""

    contract: ContractView
    bonus: int
    penalties: int
    receivable: int
    bonus_left: int
    discount: int | None
    intervals: list[StatementInterval]


# --- setpoints -------------------------------------------------------------------------------
class SetpointPeriod(BaseModel):
    """One period's setpoints [kW; null = no limit] and energy budgets [Wh]."""

    start: str
    pv_limit_kw: float | None
    charge_limit_kw: float | None
    discharge_limit_kw: float | None
    relays: dict[str, bool]
    power_limit_kw: dict[str, float | None]
    energy_budget_wh: dict[str, int]


class SetpointsView(BaseModel):
    """The setpoints in force from the current period on."""

    switch_only: list[str]
    limited: list[str]
    periods: list[SetpointPeriod]
