"""The HTTP API (FastAPI, OpenAPI at ``/docs``) and the dashboard, over a running service.

Who may read and write what
---------------------------
Personal data — balances, journal history, a meter's readings, a household's relay,
credit state and stake choice — needs credentials (HTTP Basic): a resident sees only
their own wallet ``user:<name>``, their household's meter and stake account; the
operator sees everything. The village's noticeboard (:class:`Noticeboard`: the plan per
tier, tier totals of the container and forecast, stake totals per business) is open
to the local network unless switched off; it never holds personal data.

========================================  =======================  ======================
endpoint                                   who                      refusal
========================================  =======================  ======================
``GET /api/health``                        anyone                   —
``GET /api/status|plan|forecast|schedule|  anyone (noticeboard on)  401
telemetry|stakes|connections``             personal fields: owner
``GET /api/meters/{id}/readings``,         that household's         401 / 403
``/api/accounts/{a}/history``              resident, operator
``GET /api/balances|readings/latest``      resident (own), operator 401
``GET /api/ledger/verify|jobs``            operator                 401 / 403
``POST /api/webhooks/fiat``                payment processor (HMAC) 401 bad signature
``POST /api/meters/{id}/fund``             resident, operator       401 / 403
``PUT /api/stakes/{household}``            that household's         401 / 403
                                           resident, operator
``POST|DELETE /api/operator/...``          operator                 401 / 403
========================================  =======================  ======================

Limits come before work (:mod:`lastwatt.guard`): an oversized body is refused (413)
before it is read, a busy client (429 with ``Retry-After``) before routing, and a
client or user name with too many wrong passwords before the password is hashed.
Inputs are strict (:mod:`lastwatt.api_models`); every malformed request is a 4xx with a
message.

Handlers are ``async``: they run on the service's event loop, which owns the SQLite
connections (a worker thread may not use them); password hashing and ledger
verification run in worker threads with their own resources.
"""

import asyncio
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from lastwatt import (
    api_alarms,
    api_community,
    api_console,
    api_contracts,
    api_market,
    api_metrics,
    api_plans,
    api_setpoints,
    api_settlement,
)
from lastwatt.api_auth import auth_dependencies
from lastwatt.api_models import (
    ID,
    AccountId,
    BalanceRow,
    Balances,
    BusinessAnswer,
    ConnectionRow,
    Connections,
    ForecastView,
    FundAnswer,
    FundRequest,
    Health,
    History,
    HistoryRow,
    HoldCommand,
    Jobs,
    LatestReadings,
    PlanView,
    ReadingRow,
    Readings,
    RelayAnswer,
    RelayCommand,
    ReleaseAnswer,
    ReplanAnswer,
    ReserveAnswer,
    ReserveCommand,
    ScheduleView,
    StakeAnswer,
    StakeRequest,
    Stakes,
    Status,
    Telemetry,
    VerifyView,
    WebhookAnswer,
)
from lastwatt.auth import Credentials, Role, User
from lastwatt.customers import CustomerRegistry
from lastwatt.guard import ApiLimits, RateLimits, RequestGuard
from lastwatt.service import Service
from microgrid.readings import MeterReading
from settlement import (
    Asset,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    Topup,
    fund_meter,
    handle_webhook,
    stake_totals,
)
from settlement.anchor import verify_store
from settlement.fiat import WebhookAuthError
from settlement.ledger import (
    VerifiedPoint,
    meter_account,
    stake_account,
    user_account,
)

__all__ = ["DASHBOARD_DIR", "ApiSettings", "Noticeboard", "create_app"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"

MAX_HOURS = 24 * 31
"""Longest look-back of the telemetry and readings endpoints [h]."""

ConnectionId = Annotated[ID, PathParam(description="connection (meter) id")]
Hours = Annotated[
    float,
    Query(gt=0, le=MAX_HOURS, allow_inf_nan=False, description=f"look-back [h], ≤ {MAX_HOURS}"),
]


@dataclass(frozen=True, slots=True)
class Noticeboard:
    """What anonymous callers on the local network may read (never personal data).

    Attributes
    ----------
    plan : bool
        The plan in force per tier: ``/api/schedule`` (no relays) and ``/api/plan``.
    tiers : bool
        Container state and forecast in tier totals: ``/api/status``, ``/api/forecast``,
        ``/api/telemetry``, and the list of connections without personal fields.
    stakes : bool
        Stake totals per business (``/api/stakes`` without the households' choices).
    """

    plan: bool = True
    tiers: bool = True
    stakes: bool = True


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The API's access and limit settings."""

    noticeboard: Noticeboard = field(default_factory=Noticeboard)
    limits: ApiLimits = field(default_factory=ApiLimits)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for time, row in frame.iterrows():
        item = {"time": pd.Timestamp(str(time)).isoformat()}
        item.update({str(k): _clean(v) for k, v in row.items()})
        out.append(item)
    return out


def _from_us(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).isoformat()


def _reading(r: MeterReading) -> ReadingRow:
    return ReadingRow(
        meter_id=r.meter_id,
        read_at=r.read_at.isoformat(),
        import_wh=r.import_wh,
        export_wh=r.export_wh,
    )


def _sees_connection(who: User | None, connection_id: str) -> bool:
    """Whether ``who`` may see a connection's personal data (relay, credit, readings)."""
    if who is None:
        return False
    return who.role is Role.OPERATOR or who.household == connection_id


def _own_accounts(who: User) -> set[str]:
    """A resident's accounts: their wallet, their household's meter and stake account."""
    own = {user_account(who.name)}
    if who.household is not None:
        own |= {meter_account(who.household), stake_account(who.household)}
    return own


def create_app(
    service: Service, credentials: Credentials, settings: ApiSettings | None = None
) -> FastAPI:
    """The API and dashboard of a started :class:`~lastwatt.service.Service`."""
    settings = settings or ApiSettings()
    board = settings.noticeboard
    app = FastAPI(
        title="LastWatt",
        version="0.1.0",
        description="Dispatch, control and settlement of an off-grid solar mini-grid.",
        docs_url=None,  # served below from the package: the container has no internet
        redoc_url=None,
    )
    rates = RateLimits(settings.limits)
    app.add_middleware(RequestGuard, limits=settings.limits, rates=rates)
    site = service.site
    connection_ids = {c.id for c in site.connections}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 echoes the input back; a 1 MB field would come back as 1 MB.
        problems = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:20]
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    auth = auth_dependencies(credentials, rates)
    app.state.auth = auth  # for routers added to this app: the same rules everywhere

    def noticeboard(enabled: bool, who: User | None) -> None:
        if not enabled and who is None:
            raise HTTPException(
                401,
                "this is not on the public noticeboard here; credentials required (HTTP Basic)",
                {"WWW-Authenticate": "Basic"},
            )

    def connection_or_404(connection_id: str) -> None:
        if connection_id not in connection_ids:
            raise HTTPException(404, f"no connection {connection_id!r} at this site")

    # Type aliases of this app's dependencies (closures, hence local; capitalised as types).
    Caller = Annotated[User | None, Depends(auth.caller)]  # noqa: N806
    AnyUser = Annotated[User, Depends(auth.user)]  # noqa: N806
    Operator = Annotated[User, Depends(auth.operator)]  # noqa: N806

    app.include_router(api_settlement.router(service, auth))
    app.include_router(api_alarms.router(service, auth.operator))

    # --- dashboard and offline API docs -------------------------------------------------
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="LastWatt API",
            swagger_js_url="/dashboard/vendor/swagger-ui-dist/swagger-ui-bundle.js",
            swagger_css_url="/dashboard/vendor/swagger-ui-dist/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from the internet
        )

    customers = CustomerRegistry(Path(service.config.data_dir) / "service.sqlite")
    customers.seed((c.id for c in site.connections), service.clock.now())
    app.include_router(api_console.router(service, customers, auth.user, auth.operator))
    app.include_router(api_contracts.router(service, customers, auth.user, auth.operator))
    app.include_router(
        api_community.router(
            service, customers, auth.caller, auth.user, auth.operator, public=board.stakes
        )
    )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html")

    # --- noticeboard reads ----------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    async def health() -> Health:
        """Liveness, service time and the controller's mode."""
        cycle = service.last_cycle
        return Health(
            ok=True,
            time=service.clock.now().isoformat(),
            mode=None if cycle is None else cycle.mode.value,
        )

    @app.get("/api/status", tags=["container"])
    async def status(who: Caller) -> Status:
        """The container now: PV (measured and forecast), battery, load per tier, mode."""
        noticeboard(board.tiers, who)
        now = service.clock.now()
        cycle = service.last_cycle
        measured = None if cycle is None else cycle.measured
        forecast_now = None
        if service.forecast is not None:
            pv = service.forecast.pv_kw
            position = int(pv.index.searchsorted(pd.Timestamp(now), side="right")) - 1
            if 0 <= position < len(pv):
                forecast_now = _clean(pv.iloc[position][["p10", "p50", "p90"]].to_dict())
        return Status(
            site=site.name,
            time=now.isoformat(),
            timezone=site.location.timezone,
            mode=None if cycle is None else cycle.mode.value,
            pv_kw=None if measured is None else _clean(measured.pv_kw),
            pv_forecast_kw=forecast_now,
            battery_kw=None if measured is None else _clean(measured.battery_kw),
            soc_kwh=None if measured is None else _clean(measured.soc_kwh),
            soc_fraction=None if measured is None else _clean(measured.soc_fraction),
            battery_capacity_kwh=site.battery.energy_capacity_kwh,
            pv_capacity_kwp=site.pv.dc_capacity_kwp,
            load_kw={} if measured is None else _clean(measured.load_kw),
            meters_read=None if measured is None else measured.meters_read,
            faults=[] if cycle is None else [f.device for f in cycle.faults],
            reserve_enabled=service.reserve_enabled,
            staking_round=service.current_round(now),
        )

    cache: dict[str, Any] = {"key": None}

    def schedule_view() -> dict[str, Any]:
        """Rows, relays and reasons of the schedule in force, built once per schedule."""
        stored = service.stored_schedule
        if stored is None:
            raise HTTPException(404, "no schedule yet; the first dispatch is running")
        if cache["key"] is not stored:
            by_time: dict[str, list[dict[str, Any]]] = {}
            reasons = stored.reasons
            if len(reasons):
                stamps = pd.to_datetime(reasons["time"], utc=True)
                for stamp, unit, tier, reason in zip(
                    stamps, reasons["unit"], reasons["tier"], reasons["reason"], strict=True
                ):
                    iso = stamp.isoformat()
                    by_time.setdefault(iso, []).append(
                        {"time": iso, "unit": unit, "tier": tier, "reason": reason}
                    )
            relays = {
                pd.Timestamp(str(t)).isoformat(): {str(u): bool(v) for u, v in row.items()}
                for t, row in (
                    stored.setpoints.relays if stored.setpoints is not None else pd.DataFrame()
                ).iterrows()
            }
            cache.update(
                key=stored,
                index=stored.plan.index,
                rows=_rows(stored.plan),
                relays=relays,
                reasons=by_time,
            )
        return cache

    def sees_unit(who: User | None, unit: str) -> bool:
        """Relays and reasons of a relay unit: a connection's are personal, a group's not."""
        if who is not None and who.role is Role.OPERATOR:
            return True
        if unit not in connection_ids:
            return who is not None  # household groups and businesses: any signed-in user
        return _sees_connection(who, unit)

    @app.get("/api/schedule", tags=["dispatch"])
    async def schedule(
        who: Caller, periods: Annotated[int, Query(ge=1, le=96)] = 8
    ) -> ScheduleView:
        """The plan in force: the current period and the next ones, with reason codes.

        Relays and reasons are shown for the units the caller may see (none when
        anonymous, every unit to the operator).
        """
        noticeboard(board.plan, who)
        view = schedule_view()
        stored = view["key"]
        now = pd.Timestamp(service.clock.now())
        position = max(int(view["index"].searchsorted(now, side="right")) - 1, 0)
        shown = view["rows"][position : position + periods]
        return ScheduleView.model_validate(
            {
                "issued_at": stored.issued_at.isoformat(),
                "status": stored.status,
                "summary": _clean(stored.summary),
                "current": shown[0] if shown else None,
                "periods": shown,
                "relays": {
                    r["time"]: {
                        u: v
                        for u, v in view["relays"].get(r["time"], {}).items()
                        if sees_unit(who, u)
                    }
                    for r in shown
                },
                "reasons": [
                    x
                    for r in shown
                    for x in view["reasons"].get(r["time"], [])
                    if sees_unit(who, str(x["unit"]))
                ],
            }
        )

    @app.get("/api/plan", tags=["dispatch"])
    async def plan(who: Caller) -> PlanView:
        """The whole plan in force per tier (for the stacked chart)."""
        noticeboard(board.plan, who)
        stored = service.stored_schedule
        if stored is None:
            raise HTTPException(404, "no schedule yet")
        columns = [
            c
            for c in stored.plan.columns
            if c.startswith(
                ("served_", "demand_", "pv_", "battery_", "soc", "curtailed", "reserve_")
            )
        ]
        return PlanView.model_validate(
            {"issued_at": stored.issued_at.isoformat(), "periods": _rows(stored.plan[columns])}
        )

    @app.get("/api/forecast", tags=["forecast"])
    async def forecast(who: Caller) -> ForecastView:
        """PV quantiles and demand per tier over the forecast horizon [kW]."""
        noticeboard(board.tiers, who)
        f = service.forecast
        if f is None:
            raise HTTPException(404, "no forecast yet")
        kinds = {c.id: c.kind.value for c in site.connections}
        tier_of = pd.Series(kinds)
        demand = f.demand_kw.T.groupby(tier_of.reindex(f.demand_kw.columns).to_numpy()).sum().T
        rows = _rows(f.pv_kw[["p10", "p50", "p90"]].join(demand.add_prefix("demand_")))
        return ForecastView.model_validate({"periods": rows})

    @app.get("/api/telemetry", tags=["container"])
    async def telemetry(who: Caller, hours: Hours = 24.0) -> Telemetry:
        """Recorded snapshots of the container (tier totals) over the last hours."""
        noticeboard(board.tiers, who)
        since = service.clock.now() - dt.timedelta(hours=hours)
        return Telemetry(samples=_clean(service.state.telemetry(since)))

    @app.get("/api/connections", tags=["connections"])
    async def connections(who: Caller) -> Connections:
        """Every connection: kind and group; relay, balance, credit and hold to its owner."""
        noticeboard(board.tiers, who)
        cycle = service.last_cycle
        relays = {} if cycle is None else cycle.measured.relays_closed
        meters_open = {} if cycle is None else cycle.measured.meters_open
        holds = service.state.holds()
        balances = service.store.balances(Asset.COIN, prefix="meter:")
        out = []
        for c in site.connections:
            row = ConnectionRow(
                id=c.id,
                kind=c.kind.value,
                relay_group=c.relay_group,
                relay_closed=None,
                group_closed=None,
                balance_minor=None,
                credit=None,
                hold=None,
            )
            if _sees_connection(who, c.id):
                status_ = service.credit.get(c.id)
                row.relay_closed = relays.get(c.id)
                row.group_closed = relays.get(c.relay_group) if c.relay_group else None
                row.meter_open = meters_open.get(c.id)
                row.balance_minor = balances.get((meter_account(c.id), Asset.COIN), 0)
                row.credit = None if status_ is None else status_.state.value
                row.hold = holds.get(c.id)
            out.append(row)
        return Connections(connections=out)

    @app.get("/api/stakes", tags=["staking"])
    async def stakes(who: Caller) -> Stakes:
        """Stake tokens per business this round and the next; households' own choices."""
        noticeboard(board.stakes, who)
        now_round = service.current_round()
        choices = service.store.stake_choices(now_round + 1)
        return Stakes(
            round=now_round,
            current=stake_totals(service.store, site, now_round),
            next=stake_totals(service.store, site, now_round + 1),
            choices={h: b for h, b in choices.items() if _sees_connection(who, h)},
        )

    # --- personal and operator reads -------------------------------------------------------
    @app.get("/api/meters/{meter_id}/readings", tags=["connections"])
    async def readings(meter_id: ConnectionId, who: AnyUser, hours: Hours = 24.0) -> Readings:
        """A meter's recorded readings over the last hours (its household, the operator)."""
        connection_or_404(meter_id)
        if not _sees_connection(who, meter_id):
            raise HTTPException(403, f"{who.name!r} may read only their own meter's readings")
        now = service.clock.now()
        rows = service.store.readings(now - dt.timedelta(hours=hours), now, [meter_id])
        return Readings(meter_id=meter_id, readings=[_reading(r) for r in rows])

    @app.get("/api/readings/latest", tags=["connections"])
    async def latest_readings(who: AnyUser) -> LatestReadings:
        """The last control cycle's readings of the meters the caller may see."""
        cycle = service.last_cycle
        rows = [] if cycle is None else cycle.readings
        return LatestReadings(
            readings=[_reading(r) for r in rows if _sees_connection(who, r.meter_id)]
        )

    @app.get("/api/balances", tags=["ledger"])
    async def balances(
        who: AnyUser,
        prefix: Annotated[str, Query(max_length=100)] = "",
        asset: Asset | None = None,
    ) -> Balances:
        """Non-zero balances [minor units] starting with ``prefix`` (residents: their own)."""
        found = service.store.balances(asset, prefix)
        if who.role is not Role.OPERATOR:
            own = _own_accounts(who)
            found = {k: v for k, v in found.items() if k[0] in own}
        return Balances(
            balances=[
                BalanceRow(account=account, asset=a.value, balance_minor=value)
                for (account, a), value in sorted(found.items())
            ]
        )

    @app.get("/api/accounts/{account}/history", tags=["ledger"])
    async def history(
        account: Annotated[AccountId, PathParam()],
        who: AnyUser,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> History:
        """The latest journal rows of one account, newest first (its owner, the operator)."""
        if who.role is not Role.OPERATOR and account not in _own_accounts(who):
            raise HTTPException(403, f"{who.name!r} may read only their own accounts")
        rows = service.store.history(account, limit)
        return History(
            account=account,
            balance_minor=service.store.balance(account),
            rows=[
                HistoryRow(
                    seq=r.seq,
                    batch=r.batch_key,
                    code=r.code,
                    debit=r.debit,
                    credit=r.credit,
                    asset=r.asset,
                    amount=r.amount,
                    posted_at=_from_us(r.posted_at_us),
                )
                for r in rows
            ],
        )

    verifying = asyncio.Lock()
    verified: dict[str, VerifiedPoint] = {}  # where the last clean verification ended

    @app.get("/api/ledger/verify", tags=["ledger"])
    async def verify(
        who: Operator,
        full: Annotated[
            bool, Query(description="from the first row, not the last verified")
        ] = False,
    ) -> VerifyView:
        """Verify the ledger: SQLite integrity, hash chain, invariants, checkpoints.

        Operator only; runs in a worker thread, one at a time. Incremental: the chain is
        read on from where the last clean verification ended (``full=true``: from the
        first row); the checkpoints are always checked in full.
        """
        async with verifying:
            since = None if full else verified.get("point")
            report = await asyncio.to_thread(
                verify_store, service.store, since, service.clock.now()
            )
            if report.point is None:
                verified.clear()
            else:
                verified["point"] = report.point
        return VerifyView(
            ok=report.ok,
            rows=report.rows,
            batches=report.batches,
            incremental_from=0 if since is None else since.rows,
            problems=[p.message for p in report.problems[:20]],
        )

    @app.get("/api/jobs", tags=["service"])
    async def jobs(who: Operator) -> Jobs:
        """Runs, failures and timing of each job."""
        return Jobs(jobs=_clean(service.state.job_stats()))

    # --- writes --------------------------------------------------------------------------
    def account_exists(account: str) -> bool:
        family, _, name = account.partition(":")
        if family == "meter":
            return name in connection_ids
        return family == "user" and any(u.name == name for u in credentials.users)

    @app.post("/api/webhooks/fiat", tags=["payments"], responses={401: {}, 409: {}})
    async def fiat_webhook(request: Request) -> WebhookAnswer:
        """The payment processor's calls (HMAC-signed; headers X-Signature, X-Timestamp)."""
        if service.fiat is None:
            raise HTTPException(503, "no webhook secret configured")
        body = await request.body()  # at most ApiLimits.max_body_bytes (RequestGuard)
        signature = request.headers.get("x-signature", "")
        timestamp = request.headers.get("x-timestamp", "")
        now = dt.datetime.now(dt.UTC)  # the processor signs with real time
        try:
            result = handle_webhook(
                service.store, service.fiat, body, signature, timestamp, now, account_exists
            )
        except WebhookAuthError as exc:
            raise HTTPException(401, str(exc)) from None
        except IdempotencyConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from None
        if isinstance(result, Topup):
            return WebhookAnswer(
                payment_id=result.payment_id,
                account=result.account,
                coins_minor=result.coins_minor,
                replayed=result.posted.replayed,
            )
        return WebhookAnswer(batch=result.key, replayed=result.replayed)

    @app.post("/api/meters/{meter_id}/fund", tags=["payments"])
    async def fund(meter_id: ConnectionId, body: FundRequest, who: AnyUser) -> FundAnswer:
        """Fund any meter from the caller's wallet (anyone may fund any meter)."""
        connection_or_404(meter_id)
        try:
            posted = fund_meter(
                service.store,
                who.name,
                meter_id,
                body.amount_minor,
                f"{who.name}:{body.key}",
                service.clock.now(),
            )
        except (InsufficientFundsError, IdempotencyConflictError) as exc:
            raise HTTPException(409, str(exc)) from None
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from None
        return FundAnswer(
            batch=posted.key,
            replayed=posted.replayed,
            balance_minor=service.store.balance(meter_account(meter_id)),
        )

    @app.put("/api/stakes/{household_id}", tags=["staking"])
    async def stake(household_id: ConnectionId, body: StakeRequest, who: AnyUser) -> StakeAnswer:
        """Place or change a household's stake (counts from the next round)."""
        effective = api_community.place_stake_as(service, who, household_id, body.business_id)
        return StakeAnswer(
            household=household_id, business_id=body.business_id, effective_round=effective
        )

    @app.post("/api/operator/relays/{connection_id}", tags=["operator"])
    async def force_relay(
        connection_id: ConnectionId, body: RelayCommand, who: Operator
    ) -> RelayAnswer:
        """Hold a connection's relay closed or open (the only way to open a priority relay)."""
        connection_or_404(connection_id)
        try:
            service.hold(connection_id, body.closed, f"{who.name}: {body.reason}")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return RelayAnswer(connection=connection_id, closed=body.closed)

    @app.delete("/api/operator/relays/{connection_id}", tags=["operator"])
    async def release_relay(connection_id: ConnectionId, who: Operator) -> ReleaseAnswer:
        """End a hold: the connection follows schedule and credit again."""
        connection_or_404(connection_id)
        return ReleaseAnswer(connection=connection_id, released=service.release(connection_id))

    def business_or_404(business_id: str) -> None:
        if business_id not in {b.id for b in site.businesses}:
            raise HTTPException(404, f"no business {business_id!r} at this site")

    @app.post("/api/operator/businesses/{business_id}/hold", tags=["operator"])
    async def hold_business(
        business_id: ConnectionId, body: HoldCommand, who: Operator
    ) -> BusinessAnswer:
        """Hold a business off (dispatch plans without it) until released."""
        business_or_404(business_id)
        try:
            service.hold(business_id, False, f"{who.name}: {body.reason}")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return BusinessAnswer(business=business_id, held=True)

    @app.delete("/api/operator/businesses/{business_id}/hold", tags=["operator"])
    async def release_business(business_id: ConnectionId, who: Operator) -> ReleaseAnswer:
        """Release a held business."""
        business_or_404(business_id)
        return ReleaseAnswer(business=business_id, released=service.release(business_id))

    @app.put("/api/operator/reserve", tags=["operator"])
    async def reserve(body: ReserveCommand, who: Operator) -> ReserveAnswer:
        """Keep or drop the battery reserve; used from the next dispatch."""
        service.set_reserve(body.enabled)
        return ReserveAnswer(reserve_enabled=body.enabled)

    @app.post("/api/operator/dispatch", tags=["operator"])
    async def replan(who: Operator) -> ReplanAnswer:
        """Re-plan now (waits for a dispatch already running)."""
        await service.dispatch_job(service.clock.now())
        stored = service.stored_schedule
        return ReplanAnswer(issued_at=None if stored is None else stored.issued_at.isoformat())

    app.include_router(api_market.router(service, auth))
    app.include_router(api_metrics.router(service))
    app.include_router(api_setpoints.router(service, auth.operator))
    app.include_router(api_plans.router(service, auth.operator))
    return app
