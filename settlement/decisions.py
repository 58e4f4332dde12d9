"""The two-way meter decision of seed 002, pure: what each meter is told after its hour.

"The hourly communication between the meters and the contract is two way: the meter
reports the usage and gets back a decision to keep the connection open or not." After
an hour is settled each connection's meter gets a :class:`MeterDecision`: its hour's
energy and money, its balance, and whether its relay stays closed — decided by prepaid
control (:func:`settlement.prepaid.credit_statuses`) from the balance after the hour
and the meter's previous decision (hysteresis). Decisions are stored per (meter, hour)
and served by ``GET /api/meters/{id}/decisions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from microgrid.site import Site
from settlement.hourly import EnergyStatus, HourPlan
from settlement.prepaid import CreditPolicy, CreditState, credit_statuses

__all__ = ["MeterDecision", "decide_hour"]


@dataclass(frozen=True, slots=True)
class MeterDecision:
    """One meter's hour, settled, and what it is told to do.

    Attributes
    ----------
    meter_id : str
        The connection.
    hour : datetime
        Start of the settled hour (UTC).
    import_wh, export_wh : int
        Its settled energy [Wh] (0 when its reading is missing).
    status : str
        ``measured``, ``partial`` or ``missing`` (:class:`~settlement.hourly.EnergyStatus`).
    charge_minor, payout_minor : int
        What it paid into and received from the hour's pool [coin minor units].
    balance_minor : int
        Its account's balance after the hour [coin minor units].
    connected : bool
        Keep the connection open (relay closed) until the next decision.
    state : str
        Why (:class:`~settlement.prepaid.CreditState`).
    """

    meter_id: str
    hour: datetime
    import_wh: int
    export_wh: int
    status: str
    charge_minor: int
    payout_minor: int
    balance_minor: int
    connected: bool
    state: str


def decide_hour(
    site: Site,
    plan: HourPlan,
    balances_minor: Mapping[str, int],
    previously_connected: Mapping[str, bool],
    policy: CreditPolicy | None = None,
) -> list[MeterDecision]:
    """Every connection's decision after ``plan``'s hour (module docstring).

    Parameters
    ----------
    site : Site
        Connections and timezone.
    plan : HourPlan
        The settled hour.
    balances_minor : mapping of str to int
        Balance per connection id after the hour [coin minor units].
    previously_connected : mapping of str to bool
        Each meter's previous decision (missing: connected).
    policy : CreditPolicy, optional
        Prepaid thresholds.
    """
    decided_at = plan.hour + timedelta(hours=1)
    statuses = credit_statuses(site, balances_minor, previously_connected, decided_at, policy)
    out = []
    for c in site.connections:
        energy = plan.energies.get(c.id)
        status = statuses[c.id]
        out.append(
            MeterDecision(
                c.id,
                plan.hour,
                energy.import_wh if energy else 0,
                energy.export_wh if energy else 0,
                (energy.status if energy else EnergyStatus.MISSING).value,
                plan.charges.get(c.id, 0),
                plan.payouts.get(c.id, 0),
                status.balance_minor,
                status.connected,
                CreditState(status.state).value,
            )
        )
    return out
