"""EV charging sessions: authorise a vehicle, price its metered energy, pay from its wallet.

Seed 003: vehicles have "a digital ID and digital wallet" and pay "for the electricity it
receives at any given charging station", "unattended". Here a vehicle's wallet is the ledger
account ``ev:<id>``. A session's energy is bought either all at the charger's tariff (in the
local hour the session started) or, at a ``purchase = "market"`` charger, first from the
order book's sellers at no more than that tariff (:func:`buy_on_market`: the vehicle's
wallet is an owner like any other) and the rest at the tariff. The WATT bought is burned as
it leaves storage for the car; the tariff part and the charger's service fee on all the
energy go to ``charger:<id>``, in one idempotent batch keyed by charger, transaction and
start. The protocol (OCPP 1.6-J) lives in
:mod:`controllers.ocpp_central`; this module is the pure rule and the ledger call.

Energy already delivered must be paid for, so the payment uses a ``settle.*`` code, which the
ledger lets run a wallet into debt (like a meter's); authorisation refuses a vehicle whose
wallet cannot pay for :data:`MIN_AUTHORISED_WH` at the charger's price, so debt stays small.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from microgrid.site import Charger, Site
from settlement.hourly import price_at
from settlement.ledger import (
    WATT_ISSUER,
    Asset,
    Batch,
    LedgerError,
    PostedBatch,
    Transfer,
    to_us,
)
from settlement.market import Market
from settlement.orderbook import CancelOrder, PlaceOrder, Side, trade_cost
from settlement.store import LedgerStore

__all__ = [
    "MIN_AUTHORISED_WH",
    "Authorisation",
    "ChargeSession",
    "authorise",
    "buy_on_market",
    "charger_account",
    "ev_account",
    "pay_session",
    "session_batch",
    "session_price_per_kwh",
    "tariff_per_kwh",
]

MIN_AUTHORISED_WH = 1000
"""A vehicle is authorised only if its wallet pays for this much energy [Wh] (1 kWh, a few
minutes at the site's charger power): enough to make a session worth starting, little
enough that a nearly empty wallet can still top a battery up."""


class Authorisation(enum.StrEnum):
    """OCPP 1.6 ``AuthorizationStatus`` values the central system answers with."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    INVALID = "Invalid"


def ev_account(ev_id: str) -> str:
    """A vehicle's wallet: ``ev:<id>``."""
    return f"ev:{ev_id}"


def charger_account(charger_id: str) -> str:
    """Where a charging station's sales are paid: ``charger:<id>``."""
    return f"charger:{charger_id}"


@dataclass(frozen=True, slots=True)
class ChargeSession:
    """A finished (or running) charging session.

    Attributes
    ----------
    charger_id : str
        The charge point.
    connector_id : int
        Its connector.
    ev_id : str
        The vehicle.
    transaction_id : int
        The central system's OCPP transaction id.
    meter_start_wh : int
        The connector's energy register at the start [Wh].
    started_at : datetime
        When it started (aware).
    meter_stop_wh : int or None
        The register at the stop [Wh]; None while running.
    """

    charger_id: str
    connector_id: int
    ev_id: str
    transaction_id: int
    meter_start_wh: int
    started_at: datetime
    meter_stop_wh: int | None = None

    @property
    def energy_wh(self) -> int:
        """Energy delivered [Wh] (0 while running).

        Raises
        ------
        LedgerError
            If the register went backwards (a meter fault: nothing is charged).
        """
        if self.meter_stop_wh is None:
            return 0
        energy = self.meter_stop_wh - self.meter_start_wh
        if energy < 0:
            msg = (
                f"session {self.transaction_id} on {self.charger_id}: meter went back from "
                f"{self.meter_start_wh} to {self.meter_stop_wh} Wh; check the charger's meter"
            )
            raise LedgerError(msg)
        return energy


def tariff_per_kwh(site: Site, charger: Charger, started_at: datetime) -> int:
    """The charger's tariff in the local hour of ``started_at`` [µcoin/kWh]."""
    local_hour = started_at.astimezone(ZoneInfo(site.location.timezone)).hour
    return price_at(site.tariffs[charger.tariff], local_hour)


def session_price_per_kwh(site: Site, charger: Charger, started_at: datetime) -> int:
    """Tariff plus service fee: what a kWh costs at the tariff [µcoin/kWh]."""
    return tariff_per_kwh(site, charger, started_at) + charger.service_fee_per_kwh_minor


def authorise(
    site: Site, charger: Charger, id_tag: str, balance: int, now: datetime
) -> Authorisation:
    """Whether ``id_tag`` may charge now: a known vehicle whose wallet pays for a first kWh.

    Parameters
    ----------
    balance : int
        The vehicle's wallet [coin minor units] (ignored for unknown tags).
    """
    if site.vehicle_with_tag(id_tag) is None:
        return Authorisation.INVALID
    needed = trade_cost(session_price_per_kwh(site, charger, now), MIN_AUTHORISED_WH)
    return Authorisation.ACCEPTED if balance >= needed else Authorisation.BLOCKED


def session_batch(
    session: ChargeSession, tariff_per_kwh: int, fee_per_kwh: int, bought_wh: int = 0
) -> Batch:
    """The payment of a finished session (an empty batch for zero energy; still idempotent).

    Parameters
    ----------
    session : ChargeSession
        Finished.
    tariff_per_kwh, fee_per_kwh : int
        The tariff and the charger's service fee [µcoin/kWh].
    bought_wh : int
        Energy the vehicle bought on the market as WATT [Wh]; burned here, the rest of the
        session's energy is paid at the tariff.
    """
    energy = session.energy_wh
    if not 0 <= bought_wh <= energy:
        msg = f"bought_wh {bought_wh} must be within the session's {energy} Wh"
        raise LedgerError(msg)
    key = f"ev:{session.charger_id}:{session.transaction_id}:{to_us(session.started_at)}"
    wallet, charger = ev_account(session.ev_id), charger_account(session.charger_id)
    transfers = []
    if bought_wh:
        # The energy left storage for the car: its WATT leaves circulation.
        transfers.append(Transfer(wallet, WATT_ISSUER, Asset.WATT, bought_wh, "watt.ev_discharge"))
    for amount, code in (
        (trade_cost(tariff_per_kwh, energy - bought_wh), "settle.ev_charge"),
        (trade_cost(fee_per_kwh, energy), "settle.ev_fee"),
    ):
        if amount:
            transfers.append(Transfer(wallet, charger, Asset.COIN, amount, code))
    return Batch(key, tuple(transfers))


def buy_on_market(market: Market, session: ChargeSession, limit_per_kwh: int, at_us: int) -> int:
    """Buy the session's energy from the book's sellers at no more than ``limit_per_kwh``.

    An immediate-or-cancel bid from the vehicle's wallet: what does not fill at once is
    cancelled, and the caller pays it at the tariff.

    Returns
    -------
    int
        Energy bought [Wh]; its WATT is in the vehicle's wallet.
    """
    energy = session.energy_wh
    if energy == 0:
        return 0
    wallet = ev_account(session.ev_id)
    outcome = market.submit(PlaceOrder(wallet, Side.BUY, limit_per_kwh, energy, at_us))
    if outcome.order_id is not None and market.book.order(outcome.order_id) is not None:
        market.submit(CancelOrder(outcome.order_id, wallet, at_us))
    return sum(t.quantity_wh for t in outcome.trades)


def pay_session(
    store: LedgerStore,
    site: Site,
    session: ChargeSession,
    now: datetime | None = None,
    bought_wh: int = 0,
) -> tuple[PostedBatch, int]:
    """Post a finished session's payment; re-posting it (a repeated stop) changes nothing.

    Returns
    -------
    posted : PostedBatch
        The ledger's receipt.
    cost : int
        Coins the vehicle paid the charger [µcoin] (market purchases are paid to their
        sellers by the trades themselves).
    """
    charger = site.charger(session.charger_id)
    if charger is None:
        msg = f"no charger {session.charger_id!r} in site {site.name!r}; add it under [[chargers]]"
        raise LedgerError(msg)
    batch = session_batch(
        session,
        tariff_per_kwh(site, charger, session.started_at),
        charger.service_fee_per_kwh_minor,
        bought_wh,
    )
    cost = sum(t.amount for t in batch.transfers if t.asset is Asset.COIN)
    return store.post(batch, now), cost
