"""Band contracts over HTTP (seed 004): the operator runs them, the consumer reads their own.

=============================================  ==============================================
endpoint                                       who
=============================================  ==============================================
``GET /api/contracts``                         operator (all), a consumer (those on meters
                                               they hold)
``POST /api/contracts``                        operator: create, escrow the bonus
``PUT /api/contracts/{id}/bands``              operator: revise before the gate closes
``POST /api/contracts/{id}/deposit``           the consumer or the operator
``POST /api/contracts/{id}/close``             operator, after the period
``GET /api/contracts/{id}/statement``          operator, or the consumer holding the meter
=============================================  ==============================================

The rules are in :mod:`settlement.contracts`; the terms live in the ledger's file
(:class:`settlement.contract_registry.ContractRegistry`).
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations,
# which name this module's closures.
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from lastwatt.api_views import (
    BandRevisionAnswer,
    ContractRow,
    Contracts,
    ContractView,
    DepositAnswer,
    StatementInterval,
    StatementView,
)
from lastwatt.auth import User
from lastwatt.contract_job import open_registry
from lastwatt.customers import CustomerRegistry
from settlement import LedgerError
from settlement.contract_registry import contract_from_json, contract_to_json
from settlement.contracts import (
    MAX_CONTRACT_AMOUNT,
    BandContract,
    ContractStatement,
    close_contract,
    fund_deposit,
    open_contract,
    revise_band,
    statement,
)

if TYPE_CHECKING:
    from lastwatt.service import Service

__all__ = ["ContractTerms", "router"]

_Amount = Annotated[StrictInt, Field(ge=0, le=MAX_CONTRACT_AMOUNT)]
_Wh = Annotated[StrictInt, Field(ge=0, le=MAX_CONTRACT_AMOUNT)]


class ContractTerms(BaseModel):
    """A band contract's terms (see ``lastwatt contracts create --help`` for an example)."""

    # Strict integers (no "5", true or 1.0 as an amount); times and pairs parse from JSON.
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    meter_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    start: AwareDatetime
    interval_s: StrictInt = Field(description="900 (15 min) or 3600 (1 h)")
    bands_wh: list[tuple[_Wh, _Wh]] = Field(min_length=1, max_length=24 * 4 * 31)
    tolerance_wh: _Wh
    bonus: _Amount
    over_rate: _Amount
    under_rate: _Amount
    disconnect_penalty: _Amount
    discount_ppm: StrictInt = Field(default=1_000_000, ge=0, le=1_000_000)
    gate_closure_s: StrictInt = Field(default=3600, ge=0, le=31 * 86_400)
    missing_data: str = Field(default="last_value", pattern=r"^(last_value|waive)$")


class BandRevision(BaseModel):
    """New bands from one interval on."""

    # Strict integers (no "5", true or 1.0 as an amount); times and pairs parse from JSON.
    model_config = ConfigDict(extra="forbid")

    first: AwareDatetime = Field(description="Start of the first revised interval")
    bands_wh: list[tuple[_Wh, _Wh]] = Field(min_length=1, max_length=24 * 4 * 31)


class DepositRequest(BaseModel):
    """Coins from the consumer's meter account into the contract's deposit."""

    # Strict integers (no "5", true or 1.0 as an amount); times and pairs parse from JSON.
    model_config = ConfigDict(extra="forbid")

    amount_minor: StrictInt = Field(gt=0, le=MAX_CONTRACT_AMOUNT)
    key: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


def _contract_view(contract: BandContract) -> ContractView:
    return ContractView.model_validate(contract_to_json(contract))


def _statement_view(contract: BandContract, report: ContractStatement) -> StatementView:
    return StatementView(
        contract=_contract_view(contract),
        bonus=report.bonus,
        penalties=report.penalties,
        receivable=report.receivable,
        bonus_left=report.bonus_left,
        discount=report.discount,
        intervals=[
            StatementInterval(
                start=row.outcome.start.isoformat(),
                energy_wh=row.outcome.energy_wh,
                estimated=row.outcome.estimated,
                band_wh=list(contract.bands_wh[contract.index_of(row.outcome.start)]),
                over_wh=row.outcome.over_wh,
                under_wh=row.outcome.under_wh,
                grid_shortfall_waived=row.outcome.under_waived,
                consumer_disconnects=row.outcome.consumer_disconnects,
                penalty=row.outcome.penalty,
                from_bonus=row.from_bonus,
                from_deposit=row.from_deposit,
                receivable=row.receivable,
                bonus_left=row.bonus_left,
            )
            for row in report.rows
        ],
    )


def router(
    service: "Service",
    customers: CustomerRegistry,
    user: Callable[..., Awaitable[User]],
    operator: Callable[..., Awaitable[User]],
) -> APIRouter:
    """The contract routes over a started service (module docstring)."""
    api = APIRouter(tags=["contracts"])
    # The registry is a SQLite file: the ledger's own on SQLite, beside the service's data
    # on a PostgreSQL ledger (which has no file).
    registry = open_registry(service.store, Path(service.config.data_dir))

    def contract_or_404(contract_id: str, who: User) -> tuple[BandContract, bool]:
        record = registry.get(contract_id)
        if record is None or not customers.may_see(who, record.contract.meter_id):
            # The same answer for "not yours" and "none": ids are not to be probed.
            raise HTTPException(404, f"no contract {contract_id!r} you may see")
        return record.contract, record.closed

    def ledger_error(exc: LedgerError) -> HTTPException:
        return HTTPException(409, str(exc))

    @api.get("/api/contracts")
    async def list_contracts(who: Annotated[User, Depends(user)]) -> Contracts:
        """Contracts the caller may see, with their standing."""
        out = []
        for record in registry.all():
            c = record.contract
            if not customers.may_see(who, c.meter_id):
                continue
            report = statement(service.store, c, registry.outcomes(c.contract_id))
            out.append(
                ContractRow(
                    contract_id=c.contract_id,
                    meter_id=c.meter_id,
                    start=c.start.isoformat(),
                    end=c.end.isoformat(),
                    closed=record.closed,
                    revision=record.revision,
                    intervals_charged=len(report.rows),
                    intervals=len(c.bands_wh),
                    penalties=report.penalties,
                    bonus_left=report.bonus_left,
                    receivable=report.receivable,
                )
            )
        return Contracts(contracts=out)

    @api.post("/api/contracts", status_code=201)
    async def create(terms: ContractTerms, who: Annotated[User, Depends(operator)]) -> ContractView:
        """Record a contract and escrow its bonus from the contract budget."""
        try:
            service.site.connection(terms.meter_id)
        except KeyError:
            raise HTTPException(404, f"no connection {terms.meter_id!r} at this site") from None
        body = terms.model_dump()
        body["start"] = terms.start.isoformat()
        body["bands_wh"] = [list(b) for b in terms.bands_wh]
        try:
            contract = contract_from_json(body)
        except LedgerError as exc:
            raise HTTPException(422, str(exc)) from None
        if registry.get(contract.contract_id) is not None:
            raise HTTPException(409, f"contract {contract.contract_id!r} exists")
        now = service.clock.now()
        try:
            open_contract(service.store, contract, now)
        except LedgerError as exc:
            raise ledger_error(exc) from None
        registry.create(contract, now)
        return _contract_view(contract)

    @api.put("/api/contracts/{contract_id}/bands")
    async def revise(
        contract_id: str, body: BandRevision, who: Annotated[User, Depends(operator)]
    ) -> BandRevisionAnswer:
        """Replace bands from ``first`` on; refused past the gate closure."""
        contract, _ = contract_or_404(contract_id, who)
        try:
            revised = revise_band(contract, body.first, body.bands_wh, service.clock.now())
            record = registry.revise(revised, service.clock.now())
        except LedgerError as exc:
            raise HTTPException(409, str(exc)) from None
        return BandRevisionAnswer(revision=record.revision, contract=_contract_view(revised))

    @api.post("/api/contracts/{contract_id}/deposit")
    async def deposit(
        contract_id: str, body: DepositRequest, who: Annotated[User, Depends(user)]
    ) -> DepositAnswer:
        """Move coins from the consumer's meter account into the contract's deposit."""
        contract, closed = contract_or_404(contract_id, who)
        if closed:
            raise HTTPException(409, f"contract {contract_id!r} is closed")
        try:
            posted = fund_deposit(
                service.store, contract, body.amount_minor, body.key, service.clock.now()
            )
        except LedgerError as exc:
            raise ledger_error(exc) from None
        return DepositAnswer(batch=posted.key, replayed=posted.replayed)

    @api.post("/api/contracts/{contract_id}/close")
    async def close(contract_id: str, who: Annotated[User, Depends(operator)]) -> StatementView:
        """Close the period: the remaining bonus becomes a discount and returns to the budget."""
        contract, _ = contract_or_404(contract_id, who)
        now: datetime = service.clock.now()
        if now < contract.end:
            raise HTTPException(409, f"contract {contract_id!r} runs until {contract.end}")
        try:
            close_contract(service.store, contract, now)
        except LedgerError as exc:
            raise ledger_error(exc) from None
        registry.mark_closed(contract_id, now)
        report = statement(service.store, contract, registry.outcomes(contract_id))
        return _statement_view(contract, report)

    @api.get("/api/contracts/{contract_id}/statement")
    async def contract_statement(
        contract_id: str, who: Annotated[User, Depends(user)]
    ) -> StatementView:
        """Every charged interval: energy, band, deviation, penalty and who paid it."""
        contract, _ = contract_or_404(contract_id, who)
        report = statement(service.store, contract, registry.outcomes(contract_id))
        return _statement_view(contract, report)

    return api
