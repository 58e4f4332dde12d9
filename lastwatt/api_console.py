"""The operator console's endpoints: customers, a page per connection, the village map, ``me``.

Included by :func:`lastwatt.api.create_app` with the app's own authentication
dependencies, so the console follows the same roles as the rest of the API:

=====================================  ===========================================
endpoint                               who
=====================================  ===========================================
``GET /api/customers``                 operator (search, sort, page)
``PUT /api/customers/{id}``            operator
``GET /api/connections/{id}/page``     operator, or the resident holding it
``GET /api/map``                       operator
``GET /api/me``                        any signed-in user: their own accounts only
``POST /api/sim/advance``              operator, simulated service only
``GET /api/console/contracts``         operator (all), a resident (their meters')
``POST|GET /api/refunds``              operator (:mod:`lastwatt.api_refunds`)
=====================================  ===========================================
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations,
# which name this module's closures.
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from lastwatt.api_refunds import RefundLog
from lastwatt.api_refunds import router as refunds_router
from lastwatt.api_views import (
    AdvanceAnswer,
    ConnectionPage,
    ContractStanding,
    ContractStandings,
    MapConnection,
    MapContainer,
    MapView,
    MeConnection,
    MeStake,
    MeView,
    PageConnection,
    PagePlanRow,
    PageReading,
    PageTransaction,
    Wallet,
)
from lastwatt.auth import User
from lastwatt.contract_job import open_registry
from lastwatt.customers import Customer, CustomerIn, CustomerPage, CustomerRegistry, SortKey
from microgrid.readings import ENERGY_REGISTER_MODULUS_WH
from microgrid.site import ConnectionKind
from settlement import Asset, LedgerStore
from settlement.contract_registry import ContractRegistry
from settlement.contracts import BandContract, statement

if TYPE_CHECKING:
    from lastwatt.service import Service

__all__ = ["AdvanceRequest", "next_revisable", "router"]

log = logging.getLogger(__name__)

_MAX_HOURS = 24.0 * 31


class AdvanceRequest(BaseModel):
    """How far to move a simulated service's clock."""

    model_config = ConfigDict(strict=True, extra="forbid")

    hours: int = Field(default=1, ge=1, le=24, description="Whole hours to step ahead")


def router(
    service: "Service",
    customers: CustomerRegistry,
    user: Callable[..., Awaitable[User]],
    operator: Callable[..., Awaitable[User]],
) -> APIRouter:
    """The console's routes over a started service (module docstring)."""
    api = APIRouter(tags=["console"])
    site = service.site
    refund_log = RefundLog(customers.path)
    contracts = open_registry(service.store, Path(service.config.data_dir))
    api.include_router(refunds_router(service, refund_log, operator))

    def connection_or_404(connection_id: str) -> Any:
        try:
            return site.connection(connection_id)
        except KeyError:
            # Cut: an id from the URL may be kilobytes long, and the answer need not echo it.
            raise HTTPException(404, f"no connection {connection_id[:64]!r} at this site") from None

    @api.get("/api/customers", response_model=CustomerPage)
    async def list_customers(
        _: Annotated[User, Depends(operator)],
        q: Annotated[str, Query(max_length=100)] = "",
        sort: SortKey = "id",
        desc: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> CustomerPage:
        """Customers whose id, name, phone, plan or connections contain ``q``."""
        return customers.search(q, sort, desc, limit, offset)

    @api.put("/api/customers/{customer_id}", response_model=Customer)
    async def put_customer(
        customer_id: str, body: CustomerIn, who: Annotated[User, Depends(operator)]
    ) -> Customer:
        """Create or replace a customer (the operator's registry)."""
        for connection_id in body.connections:
            connection_or_404(connection_id)
        try:
            return customers.put(customer_id, body, who.name, service.clock.now())
        except ValueError as exc:
            raise HTTPException(409 if "belongs to" in str(exc) else 422, str(exc)) from None

    @api.get("/api/connections/{connection_id}/page")
    async def connection_page(
        connection_id: str,
        who: Annotated[User, Depends(user)],
        hours: Annotated[float, Query(gt=0, le=_MAX_HOURS)] = 48.0,
    ) -> ConnectionPage:
        """One connection: its customer, balance, readings, transactions, plan and reasons."""
        connection = connection_or_404(connection_id)
        if not customers.may_see(who, connection_id):
            raise HTTPException(403, f"{who.name!r} does not hold connection {connection_id!r}")
        now = service.clock.now()
        account = f"meter:{connection_id}"
        readings = service.store.readings(now - dt.timedelta(hours=hours), now, [connection_id])
        credit = service.credit.get(connection_id)
        journal = service.store.history(account, 50)
        notes = refund_log.notes(row.batch_key for row in journal)
        return ConnectionPage(
            connection=PageConnection(
                id=connection.id,
                kind=connection.kind.value,
                tariff=connection.tariff,
                relay_group=connection.relay_group,
                prosumer=getattr(connection, "pv", None) is not None,
            ),
            customer=customers.holder_of(connection_id),
            balance_minor=service.store.balance(account, Asset.COIN),
            credit=None if credit is None else credit.state.value,
            hold=service.state.holds().get(connection_id),
            readings=[
                PageReading(
                    time=r.read_at.isoformat(), import_wh=r.import_wh, export_wh=r.export_wh
                )
                for r in readings
            ],
            transactions=[
                PageTransaction(
                    seq=row.seq,
                    time=dt.datetime.fromtimestamp(row.posted_at_us / 1e6, dt.UTC).isoformat(),
                    amount_minor=row.amount if row.credit == account else -row.amount,
                    asset=row.asset,
                    code=row.code,
                    other=row.debit if row.credit == account else row.credit,
                    batch=row.batch_key,
                    note=notes[row.batch_key].reason if row.batch_key in notes else None,
                )
                for row in journal
            ],
            plan=_unit_plan(service, connection),
            contracts=[
                _standing(service.store, contracts, record.contract, record.closed, now)
                for record in contracts.all()
                if record.contract.meter_id == connection_id
            ],
        )

    @api.get("/api/console/contracts")
    async def contract_standings(who: Annotated[User, Depends(user)]) -> ContractStandings:
        """Every band contract the caller may see, with its standing now."""
        now = service.clock.now()
        return ContractStandings(
            time=now.isoformat(),
            contracts=[
                _standing(service.store, contracts, record.contract, record.closed, now)
                for record in contracts.all()
                if customers.may_see(who, record.contract.meter_id)
            ],
        )

    @api.get("/api/map")
    async def village_map(_: Annotated[User, Depends(operator)]) -> MapView:
        """Every connection with its position (metres from the container) and state."""
        cycle = service.last_cycle
        relays = {} if cycle is None else cycle.measured.relays_closed
        latest = {} if cycle is None else {r.meter_id: r for r in cycle.readings}
        points = []
        for c in site.connections:
            position = getattr(c, "position", None)
            reading = latest.get(c.id)
            group_on = relays.get(c.relay_group) if c.relay_group else None
            points.append(
                MapConnection(
                    id=c.id,
                    kind=c.kind.value,
                    producer=getattr(c, "pv", None) is not None,
                    east_m=None if position is None else position.east_m,
                    north_m=None if position is None else position.north_m,
                    on=relays.get(c.id, True) is not False and group_on is not False,
                    import_wh=None if reading is None else reading.import_wh,
                    export_wh=None if reading is None else reading.export_wh,
                )
            )
        return MapView(
            time=service.clock.now().isoformat(),
            container=MapContainer(east_m=0.0, north_m=0.0, pv_kwp=site.pv.dc_capacity_kwp),
            simulated=callable(getattr(service.clock, "advance", None)),
            connections=points,
        )

    @api.get("/api/me")
    async def me(who: Annotated[User, Depends(user)]) -> MeView:
        """The signed-in user's own wallet, connections, balances and stake."""
        held = [c for c in customers.all() if c.wallet == who.name]
        connections = sorted(
            {cid for c in held for cid in c.connections}
            | ({who.household} if who.household else set())
        )
        stake: MeStake | None = None
        if who.household:
            choices = service.store.stake_choices(service.current_round() + 1)
            stake = MeStake(
                tokens_minor=service.store.balance(f"stake:{who.household}", Asset.STAKE),
                next_round_choice=choices.get(who.household),
            )
        return MeView(
            name=who.name,
            role=who.role.value,
            household=who.household,
            wallet=Wallet(
                account=f"user:{who.name}",
                balance_minor=service.store.balance(f"user:{who.name}", Asset.COIN),
            ),
            connections=[
                MeConnection(
                    id=cid,
                    balance_minor=service.store.balance(f"meter:{cid}", Asset.COIN),
                    credit=None
                    if service.credit.get(cid) is None
                    else service.credit[cid].state.value,
                )
                for cid in connections
            ],
            stake=stake,
        )

    @api.post("/api/sim/advance")
    async def advance(
        body: AdvanceRequest, who: Annotated[User, Depends(operator)]
    ) -> AdvanceAnswer:
        """Step a simulated service's clock ahead (seed 002's clock); 409 on a live service."""
        step = getattr(service.clock, "advance", None)
        if not callable(step):
            raise HTTPException(409, "the clock of a live service cannot be moved")
        step(3600.0 * body.hours)
        anchor = service.state.get("clock_anchor")
        if anchor is not None:  # a restart continues from the moved clock
            start = dt.datetime.fromisoformat(anchor["start"]) + dt.timedelta(hours=body.hours)
            service.state.set("clock_anchor", anchor | {"start": start.isoformat()})
        log.info("%s moved the simulated clock %d h ahead", who.name, body.hours)
        return AdvanceAnswer(time=service.clock.now().isoformat(), advanced_hours=body.hours)

    return api


def _unit_plan(service: "Service", connection: Any) -> list[PagePlanRow]:
    """The plan in force for a connection: relay, allotment and reason per period."""
    stored = service.stored_schedule
    if stored is None:
        return []
    unit = connection.relay_group if connection.kind is ConnectionKind.HOUSEHOLD else connection.id
    setpoints = stored.setpoints
    relays = (
        setpoints.relays[unit]
        if setpoints is not None and unit in setpoints.relays.columns
        else None
    )
    allotment = stored.allotment_kw.get(unit) if unit in stored.allotment_kw else None
    reasons: dict[str, str] = {}
    if len(stored.reasons):
        mine = stored.reasons[stored.reasons["unit"] == unit]
        reasons = {
            pd.Timestamp(t).isoformat(): str(r)
            for t, r in zip(mine["time"], mine["reason"], strict=True)
        }
    rows = []
    for time in stored.plan.index[:96]:
        iso = pd.Timestamp(time).isoformat()
        rows.append(
            PagePlanRow(
                time=iso,
                unit=unit,
                closed=None if relays is None else bool(relays.get(time, True)),
                allotment_kw=None if allotment is None else float(allotment.get(time, 0.0)),
                reason=reasons.get(iso),
            )
        )
    return rows


def next_revisable(contract: BandContract, now: dt.datetime) -> dt.datetime | None:
    """The first interval whose band may still be revised at ``now``, or None.

    :func:`settlement.contracts.revise_band` accepts an interval starting at least the
    gate closure after the revision; its gate closes ``gate_closure`` before its start.

    Examples
    --------
    >>> start = dt.datetime(2026, 8, 1, 6, tzinfo=dt.UTC)
    >>> c = BandContract("c", "B01", start, dt.timedelta(hours=1), ((0, 9),) * 4, 0, 0, 0, 0, 0)
    >>> next_revisable(c, start + dt.timedelta(minutes=20)).hour  # 07:20 is past 07:00's gate
    8
    >>> next_revisable(c, start + dt.timedelta(hours=3)) is None  # no interval left
    True
    """
    first = max(now + contract.gate_closure, contract.start)
    k = -(-(first - contract.start) // contract.interval)  # ceiling: the next edge
    return contract.start + k * contract.interval if k < len(contract.bands_wh) else None


def _standing(
    store: LedgerStore,
    registry: ContractRegistry,
    contract: BandContract,
    closed: bool,
    now: dt.datetime,
) -> ContractStanding:
    """A contract's standing at ``now`` (:class:`lastwatt.api_views.ContractStanding`)."""
    report = statement(store, contract, registry.outcomes(contract.contract_id))
    current: dt.datetime | None = None
    band: tuple[int, int] | None = None
    metered: int | None = None
    since: dt.datetime | None = None
    position: str | None = None
    if contract.start <= now < contract.end and not closed:
        k = (now - contract.start) // contract.interval
        current = contract.start + k * contract.interval
        band = contract.bands_wh[k]
        latest = store.reading_before(contract.meter_id, now + dt.timedelta(microseconds=1))
        # From the last reading at or before the interval's start; a meter first read
        # inside the interval counts from that reading (``metered_since`` says which).
        base = store.reading_before(
            contract.meter_id, current + dt.timedelta(microseconds=1)
        ) or store.reading_after(contract.meter_id, current)
        if latest is not None and base is not None and base.read_at <= latest.read_at:
            since = base.read_at
            # Cumulative registers wrap at their modulus (as hourly settlement reads them).
            metered = (latest.import_wh - base.import_wh) % ENERGY_REGISTER_MODULUS_WH
            lower, upper = band
            if metered > upper + contract.tolerance_wh:
                position = "above"
            elif metered >= lower - contract.tolerance_wh:
                position = "within"
            else:
                position = "below"
    gate = None if closed else next_revisable(contract, now)
    return ContractStanding(
        contract_id=contract.contract_id,
        meter_id=contract.meter_id,
        start=contract.start.isoformat(),
        end=contract.end.isoformat(),
        closed=closed,
        interval_s=int(contract.interval.total_seconds()),
        intervals=len(contract.bands_wh),
        intervals_charged=len(report.rows),
        current_start=None if current is None else current.isoformat(),
        band_wh=None if band is None else list(band),
        tolerance_wh=contract.tolerance_wh,
        metered_wh=metered,
        metered_since=None if since is None else since.isoformat(),
        position=position,
        bonus=report.bonus,
        bonus_left=report.bonus_left,
        penalties=report.penalties,
        receivable=report.receivable,
        next_gate_closure=None if gate is None else (gate - contract.gate_closure).isoformat(),
        next_gate_interval=None if gate is None else gate.isoformat(),
    )
