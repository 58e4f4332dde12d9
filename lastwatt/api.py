"""The HTTP API (FastAPI, OpenAPI at ``/docs``) and the dashboard, over a running service.

Reads are open to the local network (the schedule, meters, balances and stakes are the
village's noticeboard); every write needs credentials:

========================================  =======================  ======================
endpoint                                   who                      refusal
========================================  =======================  ======================
``POST /api/webhooks/fiat``                payment processor (HMAC) 401 bad signature
``POST /api/meters/{id}/fund``             resident, operator       401 / 403
``PUT /api/stakes/{household}``            that household's         401 / 403
                                           resident, operator
``POST|DELETE /api/operator/...``          operator                 401 / 403
========================================  =======================  ======================

Handlers are ``async``: they run on the service's event loop, which owns the SQLite
connections (a worker thread may not use them).
"""

import datetime as dt
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from lastwatt import api_setpoints
from lastwatt.auth import Credentials, Role, User
from lastwatt.service import Service
from microgrid.readings import MeterReading
from settlement import (
    Asset,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    Topup,
    WebhookRejectedError,
    fund_meter,
    handle_webhook,
    place_stake,
)
from settlement.fiat import verify_webhook

__all__ = ["DASHBOARD_DIR", "create_app"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"

_basic = HTTPBasic(auto_error=False, realm="lastwatt")


class FundRequest(BaseModel):
    """Fund a meter from the caller's wallet ``user:<name>``."""

    amount_minor: int = Field(gt=0, description="coin minor units (1 coin = 1 000 000)")
    key: str = Field(min_length=1, max_length=100, description="idempotency key of the request")


class StakeRequest(BaseModel):
    """Stake the household's tokens on a business from the next round (null: skip)."""

    business_id: str | None


class RelayCommand(BaseModel):
    """Hold a connection's relay closed or open until released."""

    closed: bool
    reason: str = Field(min_length=1, max_length=200)


class HoldCommand(BaseModel):
    """Hold a business off until released."""

    reason: str = Field(min_length=1, max_length=200)


class ReserveCommand(BaseModel):
    """Keep (or drop) the battery reserve for the next night's priority load."""

    enabled: bool


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


def _reading(r: MeterReading) -> dict[str, Any]:
    return {
        "meter_id": r.meter_id,
        "read_at": r.read_at.isoformat(),
        "import_wh": r.import_wh,
        "export_wh": r.export_wh,
    }


def create_app(service: Service, credentials: Credentials) -> FastAPI:
    """The API and dashboard of a started :class:`~lastwatt.service.Service`."""
    app = FastAPI(
        title="LastWatt",
        version="0.1.0",
        description="Dispatch, control and settlement of an off-grid solar mini-grid.",
    )
    site = service.site

    def user(
        given: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> User:
        if given is None:
            raise HTTPException(
                401, "credentials required (HTTP Basic)", {"WWW-Authenticate": "Basic"}
            )
        found = credentials.check(given.username, given.password)
        if found is None:
            raise HTTPException(401, "wrong user name or password", {"WWW-Authenticate": "Basic"})
        return found

    def operator(who: Annotated[User, Depends(user)]) -> User:
        if who.role is not Role.OPERATOR:
            raise HTTPException(403, f"{who.name!r} is a {who.role.value}; operators only")
        return who

    def connection_or_404(connection_id: str) -> None:
        try:
            site.connection(connection_id)
        except KeyError:
            raise HTTPException(404, f"no connection {connection_id!r} at this site") from None

    # --- dashboard ---------------------------------------------------------------------
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html")

    # --- reads -------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness, service time and the controller's mode."""
        cycle = service.last_cycle
        return {
            "ok": True,
            "time": service.clock.now().isoformat(),
            "mode": None if cycle is None else cycle.mode.value,
        }

    @app.get("/api/status", tags=["container"])
    async def status() -> dict[str, Any]:
        """The container now: PV (measured and forecast), battery, load per tier, mode."""
        now = service.clock.now()
        cycle = service.last_cycle
        measured = None if cycle is None else cycle.measured
        forecast_now = None
        if service.forecast is not None:
            pv = service.forecast.pv_kw
            position = int(pv.index.searchsorted(pd.Timestamp(now), side="right")) - 1
            if 0 <= position < len(pv):
                forecast_now = _clean(pv.iloc[position][["p10", "p50", "p90"]].to_dict())
        return {
            "site": site.name,
            "time": now.isoformat(),
            "timezone": site.location.timezone,
            "mode": None if cycle is None else cycle.mode.value,
            "pv_kw": None if measured is None else _clean(measured.pv_kw),
            "pv_forecast_kw": forecast_now,
            "battery_kw": None if measured is None else _clean(measured.battery_kw),
            "soc_kwh": None if measured is None else _clean(measured.soc_kwh),
            "soc_fraction": None if measured is None else _clean(measured.soc_fraction),
            "battery_capacity_kwh": site.battery.energy_capacity_kwh,
            "pv_capacity_kwp": site.pv.dc_capacity_kwp,
            "load_kw": {} if measured is None else _clean(measured.load_kw),
            "meters_read": None if measured is None else measured.meters_read,
            "faults": [] if cycle is None else [f.device for f in cycle.faults],
            "reserve_enabled": service.reserve_enabled,
            "staking_round": service.current_round(now),
        }

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
                for t, row in stored.relays.iterrows()
            }
            cache.update(
                key=stored,
                index=stored.plan.index,
                rows=_rows(stored.plan),
                relays=relays,
                reasons=by_time,
            )
        return cache

    @app.get("/api/schedule", tags=["dispatch"])
    async def schedule(periods: int = 8) -> dict[str, Any]:
        """The plan in force: the current period and the next ones, with reason codes."""
        view = schedule_view()
        stored = view["key"]
        now = pd.Timestamp(service.clock.now())
        position = max(int(view["index"].searchsorted(now, side="right")) - 1, 0)
        shown = view["rows"][position : position + max(1, min(periods, 96))]
        return {
            "issued_at": stored.issued_at.isoformat(),
            "status": stored.status,
            "summary": stored.summary,
            "current": shown[0] if shown else None,
            "periods": shown,
            "relays": {r["time"]: view["relays"].get(r["time"], {}) for r in shown},
            "reasons": [x for r in shown for x in view["reasons"].get(r["time"], [])],
        }

    @app.get("/api/plan", tags=["dispatch"])
    async def plan() -> dict[str, Any]:
        """The whole plan in force per tier (for the stacked chart)."""
        stored = service.stored_schedule
        if stored is None:
            raise HTTPException(404, "no schedule yet")
        columns = [
            c
            for c in stored.plan.columns
            if c.startswith(("served_", "demand_", "pv_", "battery_", "soc", "curtailed"))
        ]
        return {"issued_at": stored.issued_at.isoformat(), "periods": _rows(stored.plan[columns])}

    @app.get("/api/forecast", tags=["forecast"])
    async def forecast() -> dict[str, Any]:
        """PV quantiles and demand per tier over the forecast horizon [kW]."""
        f = service.forecast
        if f is None:
            raise HTTPException(404, "no forecast yet")
        kinds = {c.id: c.kind.value for c in site.connections}
        tier_of = pd.Series(kinds)
        demand = f.demand_kw.T.groupby(tier_of.reindex(f.demand_kw.columns).to_numpy()).sum().T
        return {"periods": _rows(f.pv_kw[["p10", "p50", "p90"]].join(demand.add_prefix("demand_")))}

    @app.get("/api/telemetry", tags=["container"])
    async def telemetry(hours: float = 24.0) -> dict[str, Any]:
        """Recorded snapshots of the container over the last hours."""
        since = service.clock.now() - dt.timedelta(hours=hours)
        return {"samples": _clean(service.state.telemetry(since))}

    @app.get("/api/connections", tags=["connections"])
    async def connections() -> dict[str, Any]:
        """Every connection: kind, relay (measured), balance, credit state, operator hold."""
        cycle = service.last_cycle
        relays = {} if cycle is None else cycle.measured.relays_closed
        holds = service.state.holds()
        balances = service.store.balances(Asset.COIN, prefix="meter:")
        out = []
        for c in site.connections:
            status_ = service.credit.get(c.id)
            group_on = relays.get(c.relay_group) if c.relay_group else None
            out.append(
                {
                    "id": c.id,
                    "kind": c.kind.value,
                    "relay_group": c.relay_group,
                    "relay_closed": relays.get(c.id),
                    "group_closed": group_on,
                    "balance_minor": balances.get((f"meter:{c.id}", Asset.COIN), 0),
                    "credit": None if status_ is None else status_.state.value,
                    "hold": holds.get(c.id),
                }
            )
        return {"connections": out}

    @app.get("/api/meters/{meter_id}/readings", tags=["connections"])
    async def readings(meter_id: str, hours: float = 24.0) -> dict[str, Any]:
        """A meter's recorded readings over the last hours."""
        now = service.clock.now()
        rows = service.store.readings(now - dt.timedelta(hours=hours), now, [meter_id])
        return {"meter_id": meter_id, "readings": [_reading(r) for r in rows]}

    @app.get("/api/readings/latest", tags=["connections"])
    async def latest_readings() -> dict[str, Any]:
        """The last control cycle's meter readings."""
        cycle = service.last_cycle
        return {"readings": [] if cycle is None else [_reading(r) for r in cycle.readings]}

    @app.get("/api/balances", tags=["ledger"])
    async def balances(prefix: str = "", asset: Asset | None = None) -> dict[str, Any]:
        """Non-zero balances [minor units] of accounts starting with ``prefix``."""
        found = service.store.balances(asset, prefix)
        return {
            "balances": [
                {"account": account, "asset": a.value, "balance_minor": value}
                for (account, a), value in sorted(found.items())
            ]
        }

    @app.get("/api/accounts/{account}/history", tags=["ledger"])
    async def history(account: str, limit: int = 50) -> dict[str, Any]:
        """The latest journal rows of one account, newest first."""
        rows = service.store.history(account, max(1, min(limit, 500)))
        return {
            "account": account,
            "balance_minor": service.store.balance(account),
            "rows": [
                {
                    "seq": r.seq,
                    "batch": r.batch_key,
                    "code": r.code,
                    "debit": r.debit,
                    "credit": r.credit,
                    "asset": r.asset,
                    "amount": r.amount,
                    "posted_at": _from_us(r.posted_at_us),
                }
                for r in rows
            ],
        }

    @app.get("/api/ledger/verify", tags=["ledger"])
    async def verify() -> dict[str, Any]:
        """Recompute the hash chain and the ledger's invariants."""
        report = service.store.verify()
        return {
            "ok": report.ok,
            "rows": report.rows,
            "batches": report.batches,
            "problems": [p.message for p in report.problems[:20]],
        }

    @app.get("/api/stakes", tags=["staking"])
    async def stakes() -> dict[str, Any]:
        """Stake tokens per business in force this round (and from the next)."""
        from settlement import stake_totals

        now_round = service.current_round()
        return {
            "round": now_round,
            "current": stake_totals(service.store, site, now_round),
            "next": stake_totals(service.store, site, now_round + 1),
            "choices": service.store.stake_choices(now_round + 1),
        }

    @app.get("/api/jobs", tags=["service"])
    async def jobs() -> dict[str, Any]:
        """Runs, failures and timing of each job."""
        return {"jobs": service.state.job_stats()}

    # --- writes --------------------------------------------------------------------------
    @app.post("/api/webhooks/fiat", tags=["payments"])
    async def fiat_webhook(request: Request) -> dict[str, Any]:
        """The payment processor's calls (HMAC-signed; headers X-Signature, X-Timestamp)."""
        if service.fiat is None:
            raise HTTPException(503, "no webhook secret configured")
        body = await request.body()
        signature = request.headers.get("x-signature", "")
        timestamp = request.headers.get("x-timestamp", "")
        now = dt.datetime.now(dt.UTC)  # the processor signs with real time
        try:
            verify_webhook(service.fiat, body, signature, timestamp, now)
        except WebhookRejectedError as exc:
            raise HTTPException(401, str(exc)) from None
        try:
            result = handle_webhook(service.store, service.fiat, body, signature, timestamp, now)
        except IdempotencyConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from None
        if isinstance(result, Topup):
            return {
                "payment_id": result.payment_id,
                "account": result.account,
                "coins_minor": result.coins_minor,
                "replayed": result.posted.replayed,
            }
        return {"batch": result.key, "replayed": result.replayed}

    @app.post("/api/meters/{meter_id}/fund", tags=["payments"])
    async def fund(
        meter_id: str, body: FundRequest, who: Annotated[User, Depends(user)]
    ) -> dict[str, Any]:
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
        return {
            "batch": posted.key,
            "replayed": posted.replayed,
            "balance_minor": service.store.balance(f"meter:{meter_id}"),
        }

    @app.put("/api/stakes/{household_id}", tags=["staking"])
    async def stake(
        household_id: str, body: StakeRequest, who: Annotated[User, Depends(user)]
    ) -> dict[str, Any]:
        """Place or change a household's stake (counts from the next round)."""
        if who.role is not Role.OPERATOR and who.household != household_id:
            raise HTTPException(
                403, f"{who.name!r} may stake only for their own household ({who.household})"
            )
        try:
            effective = place_stake(
                service.store, site, household_id, body.business_id, service.current_round()
            )
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from None
        return {
            "household": household_id,
            "business_id": body.business_id,
            "effective_round": effective,
        }

    @app.post("/api/operator/relays/{connection_id}", tags=["operator"])
    async def force_relay(
        connection_id: str, body: RelayCommand, who: Annotated[User, Depends(operator)]
    ) -> dict[str, Any]:
        """Hold a connection's relay closed or open (the only way to open a priority relay)."""
        connection_or_404(connection_id)
        try:
            service.hold(connection_id, body.closed, f"{who.name}: {body.reason}")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"connection": connection_id, "closed": body.closed}

    @app.delete("/api/operator/relays/{connection_id}", tags=["operator"])
    async def release_relay(
        connection_id: str, who: Annotated[User, Depends(operator)]
    ) -> dict[str, Any]:
        """End a hold: the connection follows schedule and credit again."""
        connection_or_404(connection_id)
        return {"connection": connection_id, "released": service.release(connection_id)}

    @app.post("/api/operator/businesses/{business_id}/hold", tags=["operator"])
    async def hold_business(
        business_id: str, body: HoldCommand, who: Annotated[User, Depends(operator)]
    ) -> dict[str, Any]:
        """Hold a business off (dispatch plans without it) until released."""
        if business_id not in {b.id for b in site.businesses}:
            raise HTTPException(404, f"no business {business_id!r} at this site")
        try:
            service.hold(business_id, False, f"{who.name}: {body.reason}")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"business": business_id, "held": True}

    @app.delete("/api/operator/businesses/{business_id}/hold", tags=["operator"])
    async def release_business(
        business_id: str, who: Annotated[User, Depends(operator)]
    ) -> dict[str, Any]:
        """Release a held business."""
        if business_id not in {b.id for b in site.businesses}:
            raise HTTPException(404, f"no business {business_id!r} at this site")
        return {"business": business_id, "released": service.release(business_id)}

    @app.put("/api/operator/reserve", tags=["operator"])
    async def reserve(
        body: ReserveCommand, who: Annotated[User, Depends(operator)]
    ) -> dict[str, Any]:
        """Keep or drop the battery reserve; used from the next dispatch."""
        service.set_reserve(body.enabled)
        return {"reserve_enabled": body.enabled}

    @app.post("/api/operator/dispatch", tags=["operator"])
    async def replan(who: Annotated[User, Depends(operator)]) -> dict[str, Any]:
        """Re-plan now (waits for a dispatch already running)."""
        await service.dispatch_job(service.clock.now())
        stored = service.stored_schedule
        return {"issued_at": None if stored is None else stored.issued_at.isoformat()}

    app.include_router(api_setpoints.router(service, credentials))
    return app
