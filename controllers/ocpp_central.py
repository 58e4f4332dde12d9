"""OCPP 1.6-J central system for the site's EV chargers (the ``ocpp`` package over WebSocket).

A charger connects to ``ws://<host>:<port>/ocpp/<charger id>`` with the ``ocpp1.6``
subprotocol; an id not in the site's ``[[chargers]]`` is refused at the handshake. The
central system answers:

- ``BootNotification`` (accepted), ``Heartbeat``, ``StatusNotification``;
- ``Authorize`` and ``StartTransaction``: :func:`settlement.ev_charging.authorise` — a known
  vehicle whose wallet (``ev:<id>``) pays for a first kWh;
- ``MeterValues``: the connector's energy register, kept per running transaction;
- ``StopTransaction``: the session's energy (``meterStop − meterStart``) is paid from the
  vehicle's wallet, unattended: at a ``purchase = "market"`` charger first bought from the
  order book's sellers at no more than the tariff, the rest at the tariff, plus the
  charger's service fee (:mod:`settlement.ev_charging`); a repeated stop pays nothing twice.

A charger that misbehaves (bad JSON, unknown transaction, a register that goes back) gets an
OCPP error or an empty answer and is logged; it never stops the server or other chargers.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection

from microgrid.site import Charger, Site
from settlement.ev_charging import (
    Authorisation,
    ChargeSession,
    authorise,
    buy_on_market,
    ev_account,
    pay_session,
    tariff_per_kwh,
)
from settlement.ledger import Asset, LedgerError
from settlement.market import Market
from settlement.store import LedgerStore

__all__ = ["OCPP_SUBPROTOCOL", "CentralSystem", "MeterSample", "PaidSession"]

OCPP_SUBPROTOCOL = "ocpp1.6"
"""The WebSocket subprotocol of OCPP 1.6-J."""
HEARTBEAT_INTERVAL_S = 300
"""Heartbeat interval the central system asks for [s]; chargers report sessions anyway, so a
slow heartbeat only delays noticing a silent charger."""

_LOG = logging.getLogger(__name__)
_ENERGY_REGISTER = "Energy.Active.Import.Register"


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One energy register reading of a running transaction [Wh] at ``at``."""

    at: datetime
    register_wh: int


@dataclass(frozen=True, slots=True)
class PaidSession:
    """A finished session, what its vehicle paid the charger and bought on the market.

    Attributes
    ----------
    session : ChargeSession
        The session, with its stop register.
    cost : int
        Coins paid to the charger (tariff part and service fee) [µcoin].
    replayed : bool
        True when the stop was seen before (nothing was paid again).
    bought_wh : int
        Energy bought from the order book's sellers [Wh].
    """

    session: ChargeSession
    cost: int
    replayed: bool
    bought_wh: int = 0


@dataclass
class CentralSystem:
    """The chargers' counterpart: authorises vehicles, meters sessions, takes payment.

    Parameters
    ----------
    site : Site
        Chargers, vehicles and tariffs.
    store : LedgerStore
        The ledger that holds the vehicles' wallets.
    clock : callable
        Now (aware); used when a charger sends no usable timestamp.
    market : Market, optional
        The order book ``purchase = "market"`` chargers buy from (the service's one book);
        without it they buy at the tariff.
    """

    site: Site
    store: LedgerStore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    market: Market | None = None
    running: dict[int, ChargeSession] = field(default_factory=dict)
    samples: dict[int, list[MeterSample]] = field(default_factory=dict)
    paid: dict[int, PaidSession] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- the rules, independent of the transport ------------------------------------------
    def authorise(self, charger: Charger, id_tag: str) -> Authorisation:
        """Whether the vehicle with ``id_tag`` may charge at ``charger`` now."""
        vehicle = self.site.vehicle_with_tag(id_tag)
        balance = 0 if vehicle is None else self.store.balance(ev_account(vehicle.id), Asset.COIN)
        return authorise(self.site, charger, id_tag, balance, self.clock())

    def start(
        self, charger: Charger, connector_id: int, id_tag: str, meter_start_wh: int, at: datetime
    ) -> tuple[int, Authorisation]:
        """Open a transaction; only an accepted vehicle's session is recorded."""
        transaction_id = next(self._ids)
        status = self.authorise(charger, id_tag)
        vehicle = self.site.vehicle_with_tag(id_tag)
        if status is Authorisation.ACCEPTED and vehicle is not None:
            self.running[transaction_id] = ChargeSession(
                charger.id, connector_id, vehicle.id, transaction_id, meter_start_wh, at
            )
            self.samples[transaction_id] = [MeterSample(at, meter_start_wh)]
        return transaction_id, status

    def meter(self, transaction_id: int, at: datetime, register_wh: int) -> None:
        """Record a register reading of a running transaction (others are ignored)."""
        if transaction_id in self.running:
            self.samples[transaction_id].append(MeterSample(at, register_wh))

    def stop(self, transaction_id: int, meter_stop_wh: int) -> PaidSession | None:
        """Close a transaction and take payment; None for a transaction never started.

        Raises
        ------
        settlement.ledger.LedgerError
            If the register went back (the session stays open for an operator to look at).
        """
        if transaction_id in self.paid:
            done = self.paid[transaction_id]
            return PaidSession(done.session, done.cost, True, done.bought_wh)
        running = self.running.get(transaction_id)
        if running is None:
            return None
        session = ChargeSession(
            running.charger_id,
            running.connector_id,
            running.ev_id,
            transaction_id,
            running.meter_start_wh,
            running.started_at,
            meter_stop_wh,
        )
        charger = self.site.charger(session.charger_id)
        bought = 0
        if charger is not None and charger.purchase == "market":
            if self.market is None:
                _LOG.warning("%s buys from the market but no book is attached: tariff", charger.id)
            else:
                limit = tariff_per_kwh(self.site, charger, session.started_at)
                at_us = self.market.now_us(self.clock())
                bought = buy_on_market(self.market, session, limit, at_us)
        posted, cost = pay_session(self.store, self.site, session, bought_wh=bought)
        del self.running[transaction_id]
        self.paid[transaction_id] = PaidSession(session, cost, posted.replayed, bought)
        return self.paid[transaction_id]

    # --- the transport ---------------------------------------------------------------------
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> Server:
        """Start listening; ``port`` 0 picks a free one (``server.sockets[0].getsockname()``)."""
        return await websockets.serve(
            self._connection,
            host,
            port,
            subprotocols=[websockets.Subprotocol(OCPP_SUBPROTOCOL)],
            process_request=self._check_path,
        )

    def _check_path(self, connection: ServerConnection, request: Any) -> Any:
        charger_id = str(request.path).rstrip("/").rsplit("/", 1)[-1]
        if self.site.charger(charger_id) is None:
            _LOG.warning("refused unknown charge point %r", charger_id)
            return connection.respond(404, f"unknown charge point {charger_id!r}\n")
        return None

    async def _connection(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # the handshake is done
        charger_id = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        charger = self.site.charger(charger_id)
        if charger is None or connection.subprotocol != OCPP_SUBPROTOCOL:
            await connection.close(1002, "OCPP 1.6-J needs the ocpp1.6 subprotocol")
            return
        handler = _ChargePointHandler(charger_id, connection, self, charger)
        try:
            await handler.start()
        except websockets.ConnectionClosed:
            _LOG.info("charge point %s disconnected", charger_id)

    def timestamp(self, text: str | None) -> datetime:
        """A charger's ISO 8601 timestamp, or the central clock if it sent none or a naive one."""
        if text:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                _LOG.warning("unreadable charger timestamp %r; using the central clock", text)
            else:
                if moment.tzinfo is not None:
                    return moment.astimezone(UTC)
        return self.clock()


class _ChargePointHandler(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """One connected charger: OCPP messages in, :class:`CentralSystem` calls out."""

    def __init__(
        self,
        charger_id: str,
        connection: ServerConnection,
        central: CentralSystem,
        charger: Charger,
    ) -> None:
        super().__init__(charger_id, connection)
        self.central = central
        self.charger = charger

    @on(Action.boot_notification)  # type: ignore[untyped-decorator]
    def on_boot_notification(self, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=self.central.clock().isoformat(),
            interval=HEARTBEAT_INTERVAL_S,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)  # type: ignore[untyped-decorator]
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=self.central.clock().isoformat())

    @on(Action.status_notification)  # type: ignore[untyped-decorator]
    def on_status_notification(self, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on(Action.authorize)  # type: ignore[untyped-decorator]
    def on_authorize(self, id_tag: str, **_: Any) -> Any:
        status = self.central.authorise(self.charger, id_tag)
        return call_result.Authorize(id_tag_info=IdTagInfo(AuthorizationStatus(status.value)))

    @on(Action.start_transaction)  # type: ignore[untyped-decorator]
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        at = self.central.timestamp(timestamp)
        transaction_id, status = self.central.start(
            self.charger, connector_id, id_tag, meter_start, at
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id,
            id_tag_info=IdTagInfo(AuthorizationStatus(status.value)),
        )

    @on(Action.meter_values)  # type: ignore[untyped-decorator]
    def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **_: Any,
    ) -> Any:
        if transaction_id is not None:
            for value in meter_value:
                register = _energy_register_wh(value.get("sampled_value", []))
                if register is not None:
                    at = self.central.timestamp(value.get("timestamp"))
                    self.central.meter(transaction_id, at, register)
        return call_result.MeterValues()

    @on(Action.stop_transaction)  # type: ignore[untyped-decorator]
    def on_stop_transaction(self, meter_stop: int, transaction_id: int, **_: Any) -> Any:
        try:
            paid = self.central.stop(transaction_id, meter_stop)
        except LedgerError:
            _LOG.exception("transaction %s on %s was not paid", transaction_id, self.id)
            return call_result.StopTransaction()
        if paid is None:
            _LOG.warning("stop of unknown transaction %s on %s", transaction_id, self.id)
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=IdTagInfo(AuthorizationStatus.accepted))


def _energy_register_wh(sampled: list[dict[str, Any]]) -> int | None:
    """The energy import register of one MeterValue [Wh], if it carries one."""
    for sample in sampled:
        if sample.get("measurand", _ENERGY_REGISTER) != _ENERGY_REGISTER:
            continue
        try:
            value = float(sample["value"])
        except (KeyError, ValueError):
            return None
        return round(value * 1000) if sample.get("unit") == "kWh" else round(value)
    return None
