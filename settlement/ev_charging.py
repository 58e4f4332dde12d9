"""EV charging sessions: authorise a vehicle, price its metered energy, pay from its wallet.

Seed 003: vehicles have "a digital ID and digital wallet" and pay "for the electricity it
receives at any given charging station", "unattended". Here a vehicle's wallet is the ledger
account ``ev:<id>``; a session's energy is priced at the charger's tariff in the local hour
the session started, plus the charger's service fee, and paid to ``charger:<id>`` in one
idempotent batch keyed by charger, transaction and start. The protocol (OCPP 1.6-J) lives in
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
from settlement.ledger import Asset, Batch, LedgerError, PostedBatch, Transfer, to_us
from settlement.orderbook import trade_cost
from settlement.store import LedgerStore

__all__ = [
    "MIN_AUTHORISED_WH",
    "Authorisation",
    "ChargeSession",
    "authorise",
    "charger_account",
    "ev_account",
    "pay_session",
    "session_batch",
    "session_price_per_kwh",
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


def session_price_per_kwh(site: Site, charger: Charger, started_at: datetime) -> int:
    """The charger's tariff at the session's local start hour plus its service fee [µcoin/kWh]."""
    local_hour = started_at.astimezone(ZoneInfo(site.location.timezone)).hour
    return price_at(site.tariffs[charger.tariff], local_hour) + charger.service_fee_per_kwh_minor


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


def session_batch(session: ChargeSession, price_per_kwh: int) -> Batch:
    """The payment of a finished session; an empty batch for zero energy (still idempotent)."""
    key = f"ev:{session.charger_id}:{session.transaction_id}:{to_us(session.started_at)}"
    cost = trade_cost(price_per_kwh, session.energy_wh)
    if cost == 0:
        return Batch(key, ())
    transfer = Transfer(
        ev_account(session.ev_id),
        charger_account(session.charger_id),
        Asset.COIN,
        cost,
        "settle.ev_charge",
    )
    return Batch(key, (transfer,))


def pay_session(
    store: LedgerStore, site: Site, session: ChargeSession, now: datetime | None = None
) -> tuple[PostedBatch, int]:
    """Post a finished session's payment; re-posting it (a repeated stop) changes nothing.

    Returns
    -------
    posted : PostedBatch
        The ledger's receipt.
    cost : int
        What the vehicle paid [coin minor units].
    """
    charger = site.charger(session.charger_id)
    if charger is None:
        msg = f"no charger {session.charger_id!r} in site {site.name!r}; add it under [[chargers]]"
        raise LedgerError(msg)
    batch = session_batch(session, session_price_per_kwh(site, charger, session.started_at))
    cost = sum(t.amount for t in batch.transfers)
    return store.post(batch, now), cost
