"""The API's wire schema: strict request models and typed response models.

Requests are strict: no string, boolean or float is coerced into an amount or a flag
(``"5"``, ``true`` and ``1.0`` are not amounts; ``"no"`` and ``0`` are not ``false``),
unknown fields are refused, every amount is bounded by the ledger's
:data:`~settlement.ledger.MAX_AMOUNT` and every text has a length and a character set.
Responses are typed, so OpenAPI (``/docs``) shows every schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from settlement.ledger import MAX_AMOUNT

__all__ = [
    "ID",
    "VISIBLE_TEXT",
    "AccountId",
    "BalanceRow",
    "Balances",
    "BusinessAnswer",
    "ConnectionRow",
    "Connections",
    "ForecastView",
    "FundAnswer",
    "FundRequest",
    "Health",
    "History",
    "HistoryRow",
    "HoldCommand",
    "Jobs",
    "PlanView",
    "ReadingRow",
    "Readings",
    "RelayAnswer",
    "RelayCommand",
    "ReleaseAnswer",
    "ReplanAnswer",
    "ReserveAnswer",
    "ReserveCommand",
    "ScheduleView",
    "StakeAnswer",
    "StakeRequest",
    "Stakes",
    "Status",
    "Telemetry",
    "VerifyView",
    "WebhookAnswer",
]

ID = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""A connection, meter or business id: ASCII letters, digits and ``_ . -`` (≤ 64)."""
AccountId = Annotated[str, StringConstraints(pattern=r"^[a-z]+:[A-Za-z0-9_.:-]{1,100}$")]
"""A ledger account id ``<family>:<name>``."""
# Never in a text: C0/C1 controls, the zero-width space, line/paragraph separators, bidi
# embeddings, overrides and isolates (they reorder what the console shows: "Trojan
# source"), invisible operators, the BOM. Marks some scripts need (ZWNJ, ZWJ, LRM, RLM,
# ALM, soft hyphen) may appear, but not alone. ECMA/Python/Rust-compatible, so OpenAPI
# shows it and the fuzzer can generate from it.
_NEVER = r"\x00-\x1f\x7f-\x9f\u200b\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_MARKS = r"\u00ad\u061c\u200c-\u200f"
VISIBLE_TEXT = rf"^[^{_NEVER}]*[^{_NEVER}{_MARKS}\s][^{_NEVER}]*$"
"""Text with at least one visible character and no control or reordering character."""
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=VISIBLE_TEXT),
]
"""An operator's reason: visible text (not only spaces or invisible marks), no control,
bidi-override or zero-width-space characters."""

_STRICT = ConfigDict(strict=True, extra="forbid")
Row = dict[str, float | int | str | bool | None]


# --- requests --------------------------------------------------------------------------------
class FundRequest(BaseModel):
    """Fund a meter from the caller's wallet ``user:<name>``."""

    model_config = _STRICT
    amount_minor: int = Field(
        gt=0, le=MAX_AMOUNT, description="coin minor units (1 coin = 1 000 000), an integer"
    )
    key: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="idempotency key of the request",
    )


class StakeRequest(BaseModel):
    """Stake the household's tokens on a business from the next round (null: skip)."""

    model_config = _STRICT
    business_id: ID | None


class RelayCommand(BaseModel):
    """Hold a connection's relay closed or open until released."""

    model_config = _STRICT
    closed: bool = Field(description="true: hold closed; false: hold open (a JSON boolean)")
    reason: Reason


class HoldCommand(BaseModel):
    """Hold a business off until released."""

    model_config = _STRICT
    reason: Reason


class ReserveCommand(BaseModel):
    """Keep (or drop) the battery reserve for the next night's priority load."""

    model_config = _STRICT
    enabled: bool


# --- responses -------------------------------------------------------------------------------
class Health(BaseModel):
    """Liveness."""

    ok: bool
    time: str
    mode: str | None


class Status(BaseModel):
    """The container now (kW, kWh)."""

    site: str
    time: str
    timezone: str
    mode: str | None
    pv_kw: float | None
    pv_forecast_kw: dict[str, float | None] | None
    battery_kw: float | None
    soc_kwh: float | None
    soc_fraction: float | None
    battery_capacity_kwh: float
    pv_capacity_kwp: float
    load_kw: dict[str, float | None]
    meters_read: int | None
    faults: list[str]
    reserve_enabled: bool
    staking_round: int


class ReasonRow(BaseModel):
    """Why a unit is not (fully) served in a period."""

    time: str
    unit: str
    tier: str
    reason: str


class ScheduleView(BaseModel):
    """The plan in force; relays and reasons only of the connections the caller may see."""

    issued_at: str
    status: str
    summary: dict[str, Any]
    current: Row | None
    periods: list[Row]
    relays: dict[str, dict[str, bool]]
    reasons: list[ReasonRow]


class PlanView(BaseModel):
    """The plan per tier [kW, kWh]."""

    issued_at: str
    periods: list[Row]


class ForecastView(BaseModel):
    """PV quantiles and demand per tier [kW]."""

    periods: list[Row]


class Telemetry(BaseModel):
    """Recorded container snapshots."""

    samples: list[dict[str, Any]]


class ConnectionRow(BaseModel):
    """A connection; personal fields are null unless the caller may see them."""

    id: str
    kind: str
    relay_group: str | None
    relay_closed: bool | None
    group_closed: bool | None
    meter_open: str | None = Field(
        default=None,
        description="Why its meter holds itself open: tripped (power limit) or budget_exhausted",
    )
    balance_minor: int | None
    credit: str | None
    hold: dict[str, Any] | None


class Connections(BaseModel):
    """Every connection of the site."""

    connections: list[ConnectionRow]


class ReadingRow(BaseModel):
    """A meter reading [Wh registers]."""

    meter_id: str
    read_at: str
    import_wh: int
    export_wh: int


class Readings(BaseModel):
    """One meter's readings."""

    meter_id: str
    readings: list[ReadingRow]


class LatestReadings(BaseModel):
    """The last control cycle's readings the caller may see."""

    readings: list[ReadingRow]


class BalanceRow(BaseModel):
    """One balance [minor units]."""

    account: str
    asset: str
    balance_minor: int


class Balances(BaseModel):
    """Non-zero balances the caller may see."""

    balances: list[BalanceRow]


class HistoryRow(BaseModel):
    """One journal row."""

    seq: int
    batch: str
    code: str
    debit: str
    credit: str
    asset: str
    amount: int
    posted_at: str


class History(BaseModel):
    """An account's latest journal rows, newest first."""

    account: str
    balance_minor: int
    rows: list[HistoryRow]


class VerifyView(BaseModel):
    """Hash chain, invariants, SQLite integrity and the anchor checkpoint."""

    ok: bool
    rows: int
    batches: int
    incremental_from: int = Field(description="rows taken as verified before (0: full)")
    problems: list[str]


class Stakes(BaseModel):
    """Stake tokens per business; ``choices`` only the ones the caller may see."""

    round: int
    current: dict[str, int]
    next: dict[str, int]
    choices: dict[str, str | None]


class Jobs(BaseModel):
    """Runs, failures and timing of each job."""

    jobs: dict[str, dict[str, Any]]


class WebhookAnswer(BaseModel):
    """A credited payment (``payment_id`` …) or a withdrawal batch (``batch``)."""

    payment_id: str | None = None
    account: str | None = None
    coins_minor: int | None = None
    batch: str | None = None
    replayed: bool


class FundAnswer(BaseModel):
    """The funding batch and the meter's new balance."""

    batch: str
    replayed: bool
    balance_minor: int


class StakeAnswer(BaseModel):
    """The recorded stake."""

    household: str
    business_id: str | None
    effective_round: int


class RelayAnswer(BaseModel):
    """The hold placed."""

    connection: str
    closed: bool


class ReleaseAnswer(BaseModel):
    """Whether a hold was released."""

    connection: str | None = None
    business: str | None = None
    released: bool


class BusinessAnswer(BaseModel):
    """A business held off."""

    business: str
    held: bool


class ReserveAnswer(BaseModel):
    """The reserve setting now."""

    reserve_enabled: bool


class ReplanAnswer(BaseModel):
    """When the new plan was issued."""

    issued_at: str | None
