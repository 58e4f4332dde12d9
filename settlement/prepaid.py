"""Prepaid credit: from a meter's balance to its relay, with hysteresis and safeguards.

Evaluated at every control cycle, so an empty account opens its relay at the next cycle
after the settlement that emptied it. Rules, for one connection with balance ``b``
[coin minor units]:

- **priority users are never cut**: their relay stays closed; past the debt ceiling
  (``b < −priority_debt_ceiling_minor``) an alarm is raised instead;
- a **connected** meter is disconnected when ``b ≤ −emergency_credit_minor`` (empty;
  with emergency credit 0 that is ``b ≤ 0``) — except in **friendly hours** (local time,
  e.g. the night), when it stays on and is disconnected at the first cycle after them;
- a **disconnected** meter reconnects only once ``b ≥ reconnect_threshold_minor``. The
  balance is net of debt, so a top-up must cover the debt *plus* the threshold: the
  gap between the two levels is the hysteresis that stops a relay from chattering;
- below ``low_credit_minor`` a connected meter gets a low-credit warning.
"""

from __future__ import annotations

import enum
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from microgrid.site import ConnectionKind, Site
from microgrid.units import COIN_SCALE
from settlement.alarms import Alarm, AlarmKind
from settlement.ledger import Asset, meter_account
from settlement.store import LedgerStore

__all__ = [
    "CreditPolicy",
    "CreditState",
    "CreditStatus",
    "credit_alarms",
    "credit_for_dispatch",
    "credit_status",
    "credit_statuses",
    "read_credit",
]


class CreditState(enum.StrEnum):
    """Where a connection stands."""

    OK = "ok"
    LOW = "low"
    """Connected, balance below the warning level."""
    EMERGENCY = "emergency"
    """Connected on emergency credit (balance ≤ 0 but above the emergency floor)."""
    FRIENDLY_HOLD = "friendly_hold"
    """Empty, but kept on during friendly hours."""
    DISCONNECTED = "disconnected"
    """Relay open until the balance reaches the reconnect threshold."""
    PRIORITY_DEBT = "priority_debt"
    """A priority user in debt: kept on."""


@dataclass(frozen=True, slots=True)
class CreditPolicy:
    """Parameters of prepaid control [coin minor units unless stated].

    Attributes
    ----------
    low_credit_minor : int
        Warn below this balance.
    reconnect_threshold_minor : int
        A disconnected meter reconnects at or above this balance (> 0: the hysteresis).
    emergency_credit_minor : int
        Debt a connected meter may run before it is cut; 0 disables emergency credit.
    friendly_hours : tuple of (int, int)
        Local ``(start, end)`` hours with no disconnects, ``end`` exclusive, may wrap past
        midnight; equal values mean none.
    priority_debt_ceiling_minor : int
        Debt of a priority user beyond which an alarm is raised.
    """

    low_credit_minor: int = COIN_SCALE // 2
    reconnect_threshold_minor: int = COIN_SCALE
    emergency_credit_minor: int = 0
    friendly_hours: tuple[int, int] = (18, 7)
    priority_debt_ceiling_minor: int = 20 * COIN_SCALE

    def __post_init__(self) -> None:
        if self.reconnect_threshold_minor <= 0:
            msg = (
                f"reconnect_threshold_minor must be > 0 (it is the hysteresis), got "
                f"{self.reconnect_threshold_minor}"
            )
            raise ValueError(msg)
        for name in ("low_credit_minor", "emergency_credit_minor", "priority_debt_ceiling_minor"):
            if getattr(self, name) < 0:
                msg = f"{name} must be ≥ 0, got {getattr(self, name)}"
                raise ValueError(msg)
        start, end = self.friendly_hours
        if not (0 <= start <= 23 and 0 <= end <= 24):
            msg = f"friendly_hours must be local hours (start 0–23, end 0–24), got {start, end}"
            raise ValueError(msg)

    def is_friendly(self, local_hour: int) -> bool:
        """Whether ``local_hour`` is in the friendly hours.

        Examples
        --------
        >>> p = CreditPolicy(friendly_hours=(18, 7))
        >>> p.is_friendly(23), p.is_friendly(6), p.is_friendly(7), p.is_friendly(12)
        (True, True, False, False)
        """
        start, end = self.friendly_hours
        if start == end % 24:
            return False
        if start < end:
            return start <= local_hour < end
        return local_hour >= start or local_hour < end


@dataclass(frozen=True, slots=True)
class CreditStatus:
    """One connection's credit decision.

    Attributes
    ----------
    connection_id : str
        The connection.
    balance_minor : int
        Its meter account's balance [coin minor units].
    connected : bool
        Whether its relay should be closed this cycle.
    state : CreditState
        Why.
    warning : bool
        Low credit (or running on emergency credit / kept on in friendly hours).
    alarms : tuple of Alarm
        Priority debt past the ceiling.
    """

    connection_id: str
    balance_minor: int
    connected: bool
    state: CreditState
    warning: bool
    alarms: tuple[Alarm, ...] = ()


def credit_status(
    connection_id: str,
    kind: ConnectionKind,
    balance_minor: int,
    currently_connected: bool,
    local_hour: int,
    at: datetime,
    policy: CreditPolicy,
) -> CreditStatus:
    """Decide one connection's relay for this control cycle (module docstring).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> now, p = datetime(2026, 8, 1, 12, tzinfo=UTC), CreditPolicy()
    >>> credit_status("H001", ConnectionKind.HOUSEHOLD, 0, True, 12, now, p).connected
    False
    >>> credit_status("H001", ConnectionKind.HOUSEHOLD, 0, True, 22, now, p).state.value
    'friendly_hold'
    >>> credit_status("H001", ConnectionKind.HOUSEHOLD, 900_000, False, 12, now, p).connected
    False
    """
    low = balance_minor < policy.low_credit_minor
    if kind is ConnectionKind.PRIORITY:
        alarms: tuple[Alarm, ...] = ()
        if balance_minor < -policy.priority_debt_ceiling_minor:
            alarms = (
                Alarm(
                    AlarmKind.PRIORITY_DEBT,
                    connection_id,
                    at,
                    f"priority user {connection_id} owes {-balance_minor} coin minor units, "
                    f"past the ceiling of {policy.priority_debt_ceiling_minor}; it stays "
                    "connected — arrange funding (anyone may fund its meter)",
                ),
            )
        state = (
            CreditState.PRIORITY_DEBT
            if balance_minor < 0
            else (CreditState.LOW if low else CreditState.OK)
        )
        return CreditStatus(connection_id, balance_minor, True, state, low, alarms)
    if not currently_connected:
        if balance_minor >= policy.reconnect_threshold_minor:
            state = CreditState.LOW if low else CreditState.OK
            return CreditStatus(connection_id, balance_minor, True, state, low)
        return CreditStatus(connection_id, balance_minor, False, CreditState.DISCONNECTED, True)
    if balance_minor <= -policy.emergency_credit_minor:
        if policy.is_friendly(local_hour):
            return CreditStatus(connection_id, balance_minor, True, CreditState.FRIENDLY_HOLD, True)
        return CreditStatus(connection_id, balance_minor, False, CreditState.DISCONNECTED, True)
    if balance_minor <= 0:
        return CreditStatus(connection_id, balance_minor, True, CreditState.EMERGENCY, True)
    return CreditStatus(
        connection_id, balance_minor, True, CreditState.LOW if low else CreditState.OK, low
    )


def credit_statuses(
    site: Site,
    balances_minor: Mapping[str, int],
    connected: Mapping[str, bool],
    now: datetime,
    policy: CreditPolicy | None = None,
) -> dict[str, CreditStatus]:
    """Decide every connection's relay for this control cycle.

    Parameters
    ----------
    site : Site
        Connections, their kinds and the timezone of friendly hours.
    balances_minor : mapping of str to int
        Balance per connection id [coin minor units]; missing means 0.
    connected : mapping of str to bool
        Current relay state per connection id; missing means connected.
    now : datetime
        The cycle's time (aware).
    policy : CreditPolicy, optional
        Thresholds; defaults otherwise.
    """
    policy = policy or CreditPolicy()
    local_hour = now.astimezone(zoneinfo.ZoneInfo(site.location.timezone)).hour
    return {
        c.id: credit_status(
            c.id,
            c.kind,
            balances_minor.get(c.id, 0),
            connected.get(c.id, True),
            local_hour,
            now,
            policy,
        )
        for c in site.connections
    }


def credit_for_dispatch(statuses: Mapping[str, CreditStatus]) -> dict[str, bool]:
    """The ``credit`` argument of :func:`dispatch.problem_from_site`: relay closed or not."""
    return {cid: status.connected for cid, status in statuses.items()}


def read_credit(
    store: LedgerStore,
    site: Site,
    now: datetime,
    connected: Mapping[str, bool] | None = None,
    policy: CreditPolicy | None = None,
) -> dict[str, CreditStatus]:
    """Credit status of every connection from the store's balances (for the controller).

    A pure read: the alarms the statuses call for are raised by :func:`credit_alarms`
    when a status changes, not here at every control cycle.
    """
    balances = store.balances(Asset.COIN, prefix="meter:")
    by_connection = {
        c.id: balances.get((meter_account(c.id), Asset.COIN), 0) for c in site.connections
    }
    return credit_statuses(site, by_connection, connected or {}, now, policy)


def _conditions(status: CreditStatus, at: datetime) -> dict[AlarmKind, Alarm]:
    cid, balance = status.connection_id, status.balance_minor
    found: dict[AlarmKind, Alarm] = {a.kind: a for a in status.alarms}
    if status.state is CreditState.DISCONNECTED:
        found[AlarmKind.CREDIT_DISCONNECT] = Alarm(
            AlarmKind.CREDIT_DISCONNECT,
            cid,
            at,
            f"{cid} disconnected for lack of credit (balance {balance} coin minor units); "
            "it reconnects once a top-up reaches the reconnect threshold",
        )
    elif status.warning and status.state is not CreditState.PRIORITY_DEBT:
        found[AlarmKind.LOW_CREDIT] = Alarm(
            AlarmKind.LOW_CREDIT,
            cid,
            at,
            f"{cid} is low on credit (balance {balance} coin minor units, {status.state.value}); "
            "it will be disconnected when empty outside friendly hours — tell the customer "
            "to top up",
        )
    return found


def credit_alarms(
    previous: Mapping[str, CreditStatus],
    current: Mapping[str, CreditStatus],
    at: datetime,
) -> tuple[list[Alarm], list[tuple[AlarmKind, str]]]:
    """The alarms that changes of credit status raise and clear.

    Low credit (a warning before a disconnect), a disconnect for credit and a priority
    user's debt past its ceiling are conditions: raised when a connection enters one,
    cleared when it leaves it — not repeated while it stands.

    Parameters
    ----------
    previous, current : mapping of str to CreditStatus
        Statuses of the last and this control cycle (``previous`` empty at start-up:
        every standing condition is observed again).
    at : datetime
        This cycle's time.

    Returns
    -------
    raised : list of Alarm
        Conditions a connection entered.
    cleared : list of (AlarmKind, str)
        ``(kind, connection)`` conditions a connection left.
    """
    raised: list[Alarm] = []
    cleared: list[tuple[AlarmKind, str]] = []
    for cid, status in current.items():
        now_on = _conditions(status, at)
        before = previous.get(cid)
        was_on = {} if before is None else _conditions(before, at)
        raised += [alarm for kind, alarm in now_on.items() if kind not in was_on]
        cleared += [(kind, cid) for kind in was_on if kind not in now_on]
    return raised, cleared
