"""Settlement endpoints for producers and meters (issue 15), included by :mod:`lastwatt.api`.

==========================================  ========================  ===================
endpoint                                     who                       refusal
==========================================  ========================  ===================
``POST /api/withdrawals``                    the account's owner       401 / 403 / 409
``GET /api/owners/{account}``                operator                  401 / 403
``PUT /api/operator/owners/{account}``       operator                  401 / 403 / 400
``POST /api/readings``                       the meter (its own token) 401 / 400 / 409
``GET /api/meters/{id}/decisions``           its resident, operator    401 / 403 / 404
``GET /api/watt``                            operator                  401 / 403
==========================================  ========================  ===================

A withdrawal is reserved here and completed by the payment processor's signed webhook
(``withdrawal.succeeded`` / ``.failed``, or seed 002's negative ``payment``), which
confirms or voids it. Self-reporting meters feed the same path as Modbus readings
(:func:`settlement.record_readings`, late hours re-settled at once).
"""

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field

from lastwatt.api_auth import AuthDependencies
from lastwatt.api_views import (
    DecisionRow,
    Decisions,
    OwnerAnswer,
    OwnerView,
    ReadingsAnswer,
    WattView,
    WithdrawalAnswer,
)
from lastwatt.auth import Role, User
from lastwatt.device_auth import DeviceCredentials
from lastwatt.service import Service
from lastwatt.storage_commands import owned_account
from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.units import COIN_SCALE
from settlement import (
    Asset,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    NotOwnerError,
    record_readings,
    reserve_withdrawal,
    settle_hour,
)
from settlement.ledger import WATT_ISSUER
from settlement.storage import STORAGE_PRODUCER

__all__ = ["router"]

_MAX_COINS_MINOR = 10**15
"""Largest single withdrawal [micro-coins]: a billion coins, far inside int64."""


class WithdrawalRequest(BaseModel):
    """Sell coins of an account you own for fiat (the processor pays out)."""

    account: str = Field(min_length=1, max_length=100, description="e.g. meter:angel")
    coins_minor: int = Field(gt=0, le=_MAX_COINS_MINOR, description="micro-coins to sell")
    key: str = Field(min_length=1, max_length=100, description="idempotency key of the request")


class OwnerRequest(BaseModel):
    """Who owns a meter account (an API user name)."""

    owner: str = Field(min_length=1, max_length=100)


class ReportedReading(BaseModel):
    """One snapshot of a meter's cumulative registers."""

    read_at: dt.datetime = Field(description="ISO 8601 with offset")
    import_wh: int = Field(ge=0, lt=ENERGY_REGISTER_MODULUS_WH)
    export_wh: int = Field(default=0, ge=0, lt=ENERGY_REGISTER_MODULUS_WH)


class ReadingsReport(BaseModel):
    """A meter's own report: its id and one or more readings."""

    meter_id: str = Field(min_length=1, max_length=100)
    readings: list[ReportedReading] = Field(min_length=1, max_length=1000)


def router(service: Service, auth: AuthDependencies) -> APIRouter:
    """The settlement endpoints of a started service (module docstring)."""
    api = APIRouter()
    site = service.site
    devices = DeviceCredentials.load(service.config.data_dir)

    # The app's own dependencies (lastwatt.api_auth): the same checks and rate limits.
    user, operator = auth.user, auth.operator

    def meter_account_or_400(account: str) -> str:
        try:
            return owned_account(site, account)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.post("/api/withdrawals", tags=["payments"])
    async def withdraw(
        body: WithdrawalRequest, who: Annotated[User, Depends(user)]
    ) -> WithdrawalAnswer:
        """Reserve coins for a fiat payout; the processor's webhook confirms or voids it."""
        withdrawal_id = f"{who.name}-{body.key}"
        try:
            posted = reserve_withdrawal(
                service.store,
                who.name,
                body.account,
                body.coins_minor,
                withdrawal_id,
                service.clock.now(),
            )
        except NotOwnerError as exc:
            raise HTTPException(403, str(exc)) from None
        except (InsufficientFundsError, IdempotencyConflictError) as exc:
            raise HTTPException(409, str(exc)) from None
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from None
        price = service.fiat.coin_price_fiat_minor if service.fiat else None
        return WithdrawalAnswer(
            withdrawal_id=withdrawal_id,
            account=body.account,
            coins_minor=body.coins_minor,
            fiat_minor=None if price is None else body.coins_minor * price // COIN_SCALE,
            status="reserved",
            replayed=posted.replayed,
        )

    @api.get("/api/owners/{account}", tags=["payments"])
    async def get_owner(account: str, _: Annotated[User, Depends(operator)]) -> OwnerView:
        """Who owns a meter account (may sell its coins)."""
        meter_account_or_400(account)
        return OwnerView(account=account, owner=service.store.owner_of(account))

    @api.put("/api/operator/owners/{account}", tags=["operator"])
    async def set_owner(
        account: str, body: OwnerRequest, who: Annotated[User, Depends(operator)]
    ) -> OwnerAnswer:
        """Register the owner of a meter account."""
        meter_account_or_400(account)
        service.store.set_owner(account, body.owner)
        return OwnerAnswer(account=account, owner=body.owner, by=who.name)

    @api.post("/api/readings", tags=["connections"])
    async def report_readings(
        body: ReadingsReport, authorization: Annotated[str | None, Header()] = None
    ) -> ReadingsAnswer:
        """A meter reports its own readings (bearer token of that meter); idempotent."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not devices.check(body.meter_id, token.strip()):
            raise HTTPException(
                401,
                f"meter {body.meter_id!r}: missing or wrong device credential (Authorization: "
                "Bearer <token> from 'lastwatt meters credential')",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            readings = [
                MeterReading(body.meter_id, r.read_at, r.import_wh, r.export_wh)
                for r in body.readings
            ]
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        now = service.clock.now()
        outcome = record_readings(service.store, site, readings, recorded_at=now)
        if outcome.unknown:
            raise HTTPException(400, f"meter {body.meter_id!r} is not part of this site")
        for hour in outcome.late_hours:
            settle_hour(service.store, site, hour, service.settlement, now)
        if outcome.conflicts:
            new, old = outcome.conflicts[0]
            raise HTTPException(
                409,
                f"meter {body.meter_id}: a different reading at {new.read_at.isoformat()} is "
                f"already recorded (import {old.import_wh}, export {old.export_wh} Wh); "
                f"{len(outcome.accepted)} other reading(s) were recorded",
            )
        return ReadingsAnswer(
            accepted=len(outcome.accepted),
            duplicates=len(outcome.duplicates),
            resettled_hours=[h.isoformat() for h in outcome.late_hours],
        )

    @api.get("/api/meters/{meter_id}/decisions", tags=["connections"])
    async def decisions(
        meter_id: str, who: Annotated[User, Depends(user)], limit: int = 24
    ) -> Decisions:
        """A meter's latest hourly decisions (seed 002's two-way report), newest first.

        Balances and charges are personal: the meter's own resident and the operator only.
        """
        try:
            site.connection(meter_id)
        except KeyError:
            raise HTTPException(404, f"no connection {meter_id!r} at this site") from None
        if who.role is not Role.OPERATOR and who.household != meter_id:
            raise HTTPException(403, f"{who.name!r} may read only their own meter's decisions")
        if not 1 <= limit <= 24 * 31:
            raise HTTPException(400, f"limit must be 1–744 hours, got {limit}")
        rows = service.store.decisions(service.settlement.site_key(site), meter_id, limit)
        return Decisions(
            meter_id=meter_id,
            decisions=[
                DecisionRow(
                    hour=d.hour.isoformat(),
                    import_wh=d.import_wh,
                    export_wh=d.export_wh,
                    status=d.status,
                    charge_minor=d.charge_minor,
                    payout_minor=d.payout_minor,
                    balance_minor=d.balance_minor,
                    connected=d.connected,
                    state=d.state,
                )
                for d in rows
            ],
        )

    @api.get("/api/watt", tags=["ledger"])
    async def watt(_: Annotated[User, Depends(operator)]) -> WattView:
        """WATT storage tokens: each holder's balance and the total outstanding [Wh]."""
        table = service.store.balances(Asset.WATT)
        holders = {a: v for (a, _), v in table.items() if a != WATT_ISSUER}
        return WattView(
            outstanding_wh=-table.get((WATT_ISSUER, Asset.WATT), 0),
            holders_wh=holders,
            battery_owner=STORAGE_PRODUCER,
        )

    return api
