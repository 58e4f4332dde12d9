"""Storage accounting, pure: the battery as a producer, WATT tokens, commission and Bmax.

Seed 003 (Energo) stores energy as WATT tokens, 1 WATT = 1 kWh stored; here WATT are
counted in Wh (:data:`microgrid.units.WATT_SCALE`). One settlement hour is four
15-minute commission periods; the rules, in the order they apply:

1. **Commission** [003]: at each of the hour's four quarter-hours every holder pays
   ``floor(balance × commission_ppm / 10⁶)`` WATT (its balance falls between quarters,
   so the four charges compound). The hour's total is split by largest remainder:
   80 % to the storage owners pro rata to the capacity each owns, 10 % to the education
   fund, 10 % to the network; the shares are configurable.
2. **Discharge** pays holders: the battery inverter's exported energy ``D`` [Wh AC] is
   production of the consuming hour. Its holders burn ``ceil(D × 10⁶ / round_trip_ppm)``
   WATT pro rata to their balances (largest remainder): **the round-trip loss is a
   haircut borne pro rata by the holders at discharge**, so Σ WATT × charge efficiency
   stays equal to the stored energy they own. Each holder is paid, as production, the
   delivered energy pro rata to what it burned. Energy delivered beyond what the WATT
   outstanding covers (charge nobody holds, e.g. the battery's initial state of charge)
   is the storage owner's production (:data:`STORAGE_PRODUCER`).
3. **Charge** credits producers: the battery inverter's imported energy ``C`` [Wh AC]
   came from the hour's producers; ``min(C, Σ production)`` is minted as WATT to them
   pro rata to their export (largest remainder). Charge beyond the hour's known
   production is minted to :data:`STORAGE_PRODUCER`.
4. **Bmax** [003]: a capped holder's WATT balance never exceeds ``bmax_wh`` after any
   credit. A producer's stored share above its room is **sold to the hour's pool**: it
   is paid in coins like energy delivered directly, and its WATT are minted to
   :data:`STORAGE_PRODUCER`, which owns the stored energy from then on.

What each producer is paid for in coins is then ``export − WATT credited`` (energy it
delivered directly, plus energy sold above its cap), and each holder's delivered
discharge. Integers only; every split is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from settlement.ledger import WATT_ISSUER, meter_account
from settlement.rounding import largest_remainder

__all__ = [
    "EDUCATION_FUND",
    "NETWORK_FUND",
    "QUARTERS_PER_HOUR",
    "STORAGE_PRODUCER",
    "StorageHour",
    "StoragePolicy",
    "plan_storage",
    "split_commission",
]

STORAGE_PRODUCER = meter_account("battery_inverter")
"""The container owner's storage account: holds WATT nobody else can (unattributed
charge, production above a holder's Bmax) and is paid for discharge no WATT covers."""
EDUCATION_FUND = "fund:education"
"""Seed 003's 10 % of the commission for educating the market and new users."""
NETWORK_FUND = "fund:network"
"""Seed 003's 10 % of the commission for the network."""
QUARTERS_PER_HOUR = 4
"""The commission is charged every 15 minutes [003]."""
_PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """Parameters of storage accounting.

    Attributes
    ----------
    round_trip_ppm : int
        Round-trip efficiency of the battery [parts per million]; the holders' haircut
        at discharge. From the site: charge × discharge efficiency.
    charge_ppm : int
        Charge efficiency [ppm]: stored DC energy per WATT, for reconciliation.
    commission_ppm : int
        Storage commission per 15-minute period on each holder's balance [ppm of WATT].
    owners_share, education_share, network_share : int
        Commission split [integer weights]; seed 003: 80 / 10 / 10.
    storage_owners : mapping of str to int
        Account → storage capacity it owns [Wh]; the owners' share is split pro rata.
    education_account, network_account : str
        Where the education and network shares go.
    bmax_wh : int or None
        Cap on a capped holder's WATT balance [Wh]; None for no cap.
    """

    round_trip_ppm: int = 900_000
    charge_ppm: int = 950_000
    commission_ppm: int = 25
    owners_share: int = 80
    education_share: int = 10
    network_share: int = 10
    storage_owners: Mapping[str, int] = field(default_factory=lambda: {STORAGE_PRODUCER: 1})
    education_account: str = EDUCATION_FUND
    network_account: str = NETWORK_FUND
    bmax_wh: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.round_trip_ppm <= _PPM:
            problems.append(f"round_trip_ppm must be in (0, {_PPM}], got {self.round_trip_ppm}")
        if not 0 < self.charge_ppm <= _PPM:
            problems.append(f"charge_ppm must be in (0, {_PPM}], got {self.charge_ppm}")
        if not 0 <= self.commission_ppm < _PPM:
            problems.append(f"commission_ppm must be in [0, {_PPM}), got {self.commission_ppm}")
        shares = (self.owners_share, self.education_share, self.network_share)
        if min(shares) < 0 or sum(shares) == 0:
            problems.append(f"commission shares must be ≥ 0 and not all zero, got {shares}")
        if not self.storage_owners or min(self.storage_owners.values()) < 0:
            problems.append("storage_owners needs at least one account with capacity ≥ 0 Wh")
        elif sum(self.storage_owners.values()) == 0:
            problems.append("storage_owners' capacities are all zero; give one a capacity")
        if self.bmax_wh is not None and self.bmax_wh < 0:
            problems.append(f"bmax_wh must be ≥ 0 or None, got {self.bmax_wh}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class StorageHour:
    """Storage accounting of one hour: WATT moves and the energy each account sells.

    Attributes
    ----------
    watt_net : dict of str to int
        Net WATT change per holder account this hour [Wh]; the issuer
        (:data:`~settlement.ledger.WATT_ISSUER`) balances it.
    commission : dict of str to int
        WATT each holder paid as commission [Wh].
    burned, minted : dict of str to int
        WATT burned on discharge and minted on charge, per account [Wh].
    sold_wh : dict of str to int
        Energy each account is paid for in coins this hour [Wh]: producers' export minus
        what they stored, holders' delivered discharge, the storage owner's uncovered
        discharge.
    over_cap_wh : dict of str to int
        Stored energy a capped producer could not hold (sold to the pool instead) [Wh].
    """

    watt_net: dict[str, int]
    commission: dict[str, int]
    burned: dict[str, int]
    minted: dict[str, int]
    sold_wh: dict[str, int]
    over_cap_wh: dict[str, int]

    @property
    def issuer_net(self) -> int:
        """The issuer's WATT change: minus the change in WATT outstanding [Wh]."""
        return -sum(self.watt_net.values())


def split_commission(total: int, policy: StoragePolicy) -> dict[str, int]:
    """Split a commission total [WATT Wh] 80/10/10, owners pro rata to capacity, exactly.

    Examples
    --------
    >>> split_commission(1001, StoragePolicy(storage_owners={"storage:a": 3, "storage:b": 1}))
    {'storage:a': 601, 'storage:b': 200, 'fund:education': 100, 'fund:network': 100}
    """
    top = largest_remainder(
        {
            "owners": policy.owners_share,
            "education": policy.education_share,
            "network": policy.network_share,
        },
        total,
    )
    out = dict(largest_remainder(dict(policy.storage_owners), top["owners"]))
    out[policy.education_account] = out.get(policy.education_account, 0) + top["education"]
    out[policy.network_account] = out.get(policy.network_account, 0) + top["network"]
    return {a: v for a, v in out.items() if v}


def _room(account: str, balance: int, capped: Set[str], policy: StoragePolicy) -> int | None:
    if policy.bmax_wh is None or account not in capped:
        return None
    return max(0, policy.bmax_wh - balance)


def plan_storage(
    production_wh: Mapping[str, int],
    charge_wh: int,
    discharge_wh: int,
    balances: Mapping[str, int],
    policy: StoragePolicy,
    capped: Set[str] = frozenset(),
) -> StorageHour:
    """Storage accounting of one hour (module docstring).

    Parameters
    ----------
    production_wh : mapping of str to int
        Each producer account's export this hour, battery excluded [Wh].
    charge_wh, discharge_wh : int
        Energy into and out of the battery at its AC side this hour [Wh].
    balances : mapping of str to int
        WATT balance of every holder at the start of the hour [Wh]; the issuer excluded.
    policy : StoragePolicy
        Efficiency, commission, Bmax.
    capped : set of str
        Accounts Bmax applies to (the users'); institutional accounts are not capped.

    Returns
    -------
    StorageHour

    Raises
    ------
    ValueError
        If an energy or balance is negative.

    Examples
    --------
    Angel and Bennie export 3 and 2.5 kWh; 1.1 kWh of it charges the battery:

    >>> h = plan_storage({"meter:angel": 3000, "meter:bennie": 2500}, 1100, 0, {},
    ...                  StoragePolicy(commission_ppm=0))
    >>> h.minted, h.sold_wh
    ({'meter:angel': 600, 'meter:bennie': 500}, {'meter:angel': 2400, 'meter:bennie': 2000})
    """
    bad = [f"{k}={v}" for k, v in {**production_wh, **balances}.items() if v < 0]
    if charge_wh < 0 or discharge_wh < 0 or bad:
        msg = (
            f"storage energies and balances must be ≥ 0; got charge {charge_wh}, discharge "
            f"{discharge_wh}{', ' + ', '.join(bad) if bad else ''}"
        )
        raise ValueError(msg)
    recipients = set(policy.storage_owners) | {policy.education_account, policy.network_account}
    if policy.bmax_wh is not None and recipients & set(capped):
        msg = (
            f"commission recipients {sorted(recipients & set(capped))} are capped by Bmax; "
            "commission goes to institutional accounts — give storage owners their own account"
        )
        raise ValueError(msg)
    bal = {a: v for a, v in balances.items() if v and a != WATT_ISSUER}
    net: dict[str, int] = {}

    def move(account: str, amount: int) -> None:
        if amount:
            bal[account] = bal.get(account, 0) + amount
            net[account] = net.get(account, 0) + amount

    # 1. Commission, compounding over the hour's four quarters.
    commission: dict[str, int] = {}
    if policy.commission_ppm:
        for account in sorted(bal):
            left = bal[account]
            paid = 0
            for _ in range(QUARTERS_PER_HOUR):
                fee = left * policy.commission_ppm // _PPM
                paid += fee
                left -= fee
            if paid:
                commission[account] = paid
                move(account, -paid)
        for account, amount in split_commission(sum(commission.values()), policy).items():
            move(account, amount)
    # 2. Discharge: burn WATT pro rata to balances, with the round-trip haircut.
    sold: dict[str, int] = {}
    burned: dict[str, int] = {}
    if discharge_wh:
        outstanding = sum(bal.values())
        needed = -(-discharge_wh * _PPM // policy.round_trip_ppm)  # ceil
        burn_total = min(needed, outstanding)
        burned = {
            a: v for a, v in largest_remainder(dict(sorted(bal.items())), burn_total).items() if v
        }
        covered = (
            discharge_wh if burn_total == needed else burn_total * policy.round_trip_ppm // _PPM
        )
        for account, amount in largest_remainder(burned, covered).items():
            if amount:
                sold[account] = sold.get(account, 0) + amount
        for account, amount in burned.items():
            move(account, -amount)
        uncovered = discharge_wh - covered
        if uncovered:
            sold[STORAGE_PRODUCER] = sold.get(STORAGE_PRODUCER, 0) + uncovered
    # 3. Charge: mint WATT to the hour's producers pro rata; 4. Bmax on every credit.
    production = {a: v for a, v in sorted(production_wh.items()) if v}
    stored_total = min(charge_wh, sum(production.values()))
    minted: dict[str, int] = {}
    over_cap: dict[str, int] = {}
    to_owner = charge_wh - stored_total
    for account, share in largest_remainder(production, stored_total).items():
        room = _room(account, bal.get(account, 0), capped, policy)
        credit = share if room is None else min(share, room)
        if credit:
            minted[account] = credit
            move(account, credit)
        if share > credit:
            over_cap[account] = share - credit
            to_owner += share - credit
        direct = production[account] - credit
        if direct:
            sold[account] = sold.get(account, 0) + direct
    if to_owner:
        minted[STORAGE_PRODUCER] = minted.get(STORAGE_PRODUCER, 0) + to_owner
        move(STORAGE_PRODUCER, to_owner)
    return StorageHour(
        watt_net={a: v for a, v in net.items() if v},
        commission=commission,
        burned=burned,
        minted=minted,
        sold_wh=sold,
        over_cap_wh=over_cap,
    )
