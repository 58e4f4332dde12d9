"""Storage accounting, pure: the battery as a producer, WATT tokens, commission and Bmax.

Seed 003 (Energo) stores energy as WATT tokens, 1 WATT = 1 kWh stored; here WATT are
counted in Wh (:data:`microgrid.units.WATT_SCALE`). One settlement hour is settled as
its four 15-minute periods in order, each applying the rules below, in this order, to
its own flows (from the readings, or the hour's spread evenly):

1. **Commission** [003]: at the start of each 15-minute period every holder pays
   ``floor(balance × commission_ppm / 10⁶)`` WATT on its balance *at that time* (after
   the previous quarter's charge and discharge). Each quarter's total is split by
   largest remainder: 80 % to the storage owners pro rata to the capacity each owns,
   10 % to the education fund, 10 % to the network; the shares are configurable. Each
   quarter's commission is posted as its own transfers (``watt.commission.q1`` … ``q4``).
2. **Discharge** pays holders: the battery inverter's exported energy ``D`` [Wh AC] is
   production of the consuming hour. Its holders burn ``ceil(D × 10⁶ / round_trip_ppm)``
   WATT pro rata to their balances (largest remainder): **the round-trip loss is a
   haircut borne pro rata by the holders at discharge**, so Σ WATT × charge efficiency
   stays equal to the stored energy they own. Each holder is paid, as production, the
   delivered energy pro rata to what it burned. Energy delivered beyond what the WATT
   outstanding covers (charge nobody holds, e.g. the battery's initial state of charge)
   is the storage owner's production (:data:`STORAGE_PRODUCER`).
3. **Charge** credits producers: the battery inverter's imported energy ``C`` [Wh AC]
   came from the period's producers; ``min(C, Σ production)`` is minted as WATT to them
   pro rata to their export (largest remainder). Charge beyond the period's known
   production is minted to :data:`STORAGE_PRODUCER`.
4. **Bmax** [003]: a capped holder's WATT balance never exceeds ``bmax_wh`` after any
   credit. A producer's stored share above its room is **sold to the hour's pool**: it
   is paid in coins like energy delivered directly, and its WATT are minted to
   :data:`STORAGE_PRODUCER`, which owns the stored energy from then on.

What each producer is paid for in coins is then ``export − WATT credited`` (energy it
delivered directly, plus energy sold above its cap), and each holder's delivered
discharge. Integers only; every split is exact.

Reconciliation
--------------
The loss policy makes ``Σ WATT outstanding × charge efficiency`` the stored (DC) energy
the holders own: a charge of ``C`` Wh AC stores ``η_c·C`` and mints ``C``; a delivery of
``D`` takes ``D/η_d`` from the cells and burns ``D/(η_c·η_d)``. The rest of the stored
energy, held by nobody (the charge the battery had before accounting began), can only
shrink: it pays for discharge no WATT covers. :func:`reconcile_watt` checks both every
settled period against the battery's measured state of charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from settlement.ledger import WATT_ISSUER, meter_account
from settlement.rounding import largest_remainder

__all__ = [
    "EDUCATION_FUND",
    "NETWORK_FUND",
    "QUARTERS_PER_HOUR",
    "STORAGE_PRODUCER",
    "QuarterFlows",
    "StorageHour",
    "StoragePolicy",
    "WattReconciliation",
    "commission_code",
    "plan_storage",
    "reconcile_watt",
    "split_commission",
    "split_hour",
    "watt_invariant_problems",
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
    commission_moves : tuple of dict of str to int
        Per quarter of the hour, the commission's WATT moves: payers negative, the
        storage owners and funds positive; each sums to zero. Posted per quarter
        (:func:`commission_code`); included in ``watt_net``.
    """

    watt_net: dict[str, int]
    commission: dict[str, int]
    burned: dict[str, int]
    minted: dict[str, int]
    sold_wh: dict[str, int]
    over_cap_wh: dict[str, int]
    commission_moves: tuple[dict[str, int], ...] = ()

    def flow_net(self) -> dict[str, int]:
        """Net WATT change per holder from charge and discharge only [Wh]."""
        net = dict(self.watt_net)
        for quarter in self.commission_moves:
            for account, amount in quarter.items():
                net[account] = net.get(account, 0) - amount
        return {a: v for a, v in net.items() if v}

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


@dataclass(frozen=True, slots=True)
class QuarterFlows:
    """The storage flows of one 15-minute period.

    Attributes
    ----------
    production_wh : mapping of str to int
        Each producer account's export in the quarter, battery excluded [Wh].
    charge_wh, discharge_wh : int
        Energy into and out of the battery at its AC side in the quarter [Wh].
    """

    production_wh: Mapping[str, int]
    charge_wh: int
    discharge_wh: int


def split_hour(
    production_wh: Mapping[str, int], charge_wh: int, discharge_wh: int
) -> tuple[QuarterFlows, ...]:
    """An hour's flows spread evenly over its quarters (largest remainder).

    For when the readings do not resolve the quarters.

    Examples
    --------
    >>> [q.charge_wh for q in split_hour({}, 1001, 0)]
    [251, 250, 250, 250]
    """
    names = [f"q{q}" for q in range(QUARTERS_PER_HOUR)]
    even = dict.fromkeys(names, 1)
    charge = largest_remainder(even, charge_wh)
    discharge = largest_remainder(even, discharge_wh)
    production = {a: largest_remainder(even, v) for a, v in production_wh.items()}
    return tuple(
        QuarterFlows({a: p[q] for a, p in production.items()}, charge[q], discharge[q])
        for q in names
    )


def commission_code(quarter: int) -> str:
    """The transfer code of the commission of the hour's quarter ``quarter`` (0–3).

    Examples
    --------
    >>> commission_code(0), commission_code(3)
    ('watt.commission.q1', 'watt.commission.q4')
    """
    if not 0 <= quarter < QUARTERS_PER_HOUR:
        msg = f"quarter must be 0–{QUARTERS_PER_HOUR - 1}, got {quarter}"
        raise ValueError(msg)
    return f"watt.commission.q{quarter + 1}"


def plan_storage(
    production_wh: Mapping[str, int],
    charge_wh: int,
    discharge_wh: int,
    balances: Mapping[str, int],
    policy: StoragePolicy,
    capped: Set[str] = frozenset(),
    quarters: Sequence[QuarterFlows] | None = None,
) -> StorageHour:
    """Storage accounting of one hour, quarter by quarter (module docstring).

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
    quarters : sequence of QuarterFlows, optional
        The same flows resolved into the hour's four quarters (from the readings); they
        must add up to the hour's. None: spread evenly (:func:`split_hour`).

    Returns
    -------
    StorageHour

    Raises
    ------
    ValueError
        If an energy or balance is negative, or the quarters do not add up to the hour.

    Examples
    --------
    Angel and Bennie export 3 and 2.5 kWh; 1.1 kWh of it charges the battery:

    >>> h = plan_storage({"meter:angel": 3000, "meter:bennie": 2500}, 1100, 0, {},
    ...                  StoragePolicy(commission_ppm=0))
    >>> h.minted, h.sold_wh
    ({'meter:angel': 600, 'meter:bennie': 500}, {'meter:angel': 2400, 'meter:bennie': 2000})
    """
    bad = [f"{k}={v}" for k, v in {**production_wh, **balances}.items() if v < 0]
    if quarters is not None:
        bad += [
            f"quarter {n + 1}: {k}={v}"
            for n, q in enumerate(quarters)
            for k, v in {
                **q.production_wh,
                "charge": q.charge_wh,
                "discharge": q.discharge_wh,
            }.items()
            if v < 0
        ]
    if charge_wh < 0 or discharge_wh < 0 or bad:
        msg = (
            f"storage energies and balances must be ≥ 0; got charge {charge_wh}, discharge "
            f"{discharge_wh}{', ' + ', '.join(bad) if bad else ''}"
        )
        raise ValueError(msg)
    if quarters is None:
        quarters = split_hour(production_wh, charge_wh, discharge_wh)
    else:
        totals: dict[str, int] = {}
        for q in quarters:
            for a, v in q.production_wh.items():
                totals[a] = totals.get(a, 0) + v
        if (
            len(quarters) != QUARTERS_PER_HOUR
            or sum(q.charge_wh for q in quarters) != charge_wh
            or sum(q.discharge_wh for q in quarters) != discharge_wh
            or {a: v for a, v in totals.items() if v}
            != {a: v for a, v in production_wh.items() if v}
        ):
            msg = (
                f"the {QUARTERS_PER_HOUR} quarters' flows must add up to the hour's "
                f"(charge {charge_wh}, discharge {discharge_wh}, production {dict(production_wh)})"
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

    def add(into: dict[str, int], account: str, amount: int) -> None:
        if amount:
            into[account] = into.get(account, 0) + amount

    commission: dict[str, int] = {}
    moves: list[dict[str, int]] = []
    sold: dict[str, int] = {}
    burned: dict[str, int] = {}
    minted: dict[str, int] = {}
    over_cap: dict[str, int] = {}
    for q in quarters:
        # 1. Commission on each holder's balance at the start of this quarter.
        quarter_moves: dict[str, int] = {}
        if policy.commission_ppm:
            for account in sorted(bal):
                fee = bal[account] * policy.commission_ppm // _PPM
                if fee:
                    add(commission, account, fee)
                    add(quarter_moves, account, -fee)
                    move(account, -fee)
            paid = -sum(quarter_moves.values())
            for account, amount in split_commission(paid, policy).items():
                add(quarter_moves, account, amount)
                move(account, amount)
        moves.append({a: v for a, v in quarter_moves.items() if v})
        # 2. Discharge: burn WATT pro rata to balances, with the round-trip haircut.
        if q.discharge_wh:
            outstanding = sum(bal.values())
            needed = -(-q.discharge_wh * _PPM // policy.round_trip_ppm)  # ceil
            burn_total = min(needed, outstanding)
            burn = {
                a: v
                for a, v in largest_remainder(dict(sorted(bal.items())), burn_total).items()
                if v
            }
            covered = (
                q.discharge_wh
                if burn_total == needed
                else burn_total * policy.round_trip_ppm // _PPM
            )
            for account, amount in largest_remainder(burn, covered).items():
                add(sold, account, amount)
            for account, amount in burn.items():
                add(burned, account, amount)
                move(account, -amount)
            add(sold, STORAGE_PRODUCER, q.discharge_wh - covered)
        # 3. Charge: mint WATT to the quarter's producers pro rata; 4. Bmax on every credit.
        production = {a: v for a, v in sorted(q.production_wh.items()) if v}
        stored_total = min(q.charge_wh, sum(production.values()))
        to_owner = q.charge_wh - stored_total
        for account, share in largest_remainder(production, stored_total).items():
            room = _room(account, bal.get(account, 0), capped, policy)
            credit = share if room is None else min(share, room)
            add(minted, account, credit)
            move(account, credit)
            add(over_cap, account, share - credit)
            to_owner += share - credit
            add(sold, account, production[account] - credit)
        add(minted, STORAGE_PRODUCER, to_owner)
        move(STORAGE_PRODUCER, to_owner)
    return StorageHour(
        watt_net={a: v for a, v in net.items() if v},
        commission=commission,
        burned=burned,
        minted=minted,
        sold_wh={a: v for a, v in sold.items() if v},
        over_cap_wh=over_cap,
        commission_moves=tuple(moves),
    )


@dataclass(frozen=True, slots=True)
class WattReconciliation:
    """Σ WATT outstanding against the battery's measured energy, after one period.

    Attributes
    ----------
    outstanding_wh : int
        WATT outstanding [Wh AC charged].
    stored_wh : float
        Energy the battery holds, measured (state of charge × capacity) [Wh DC].
    held_wh : float
        Stored energy the holders own: ``outstanding × charge efficiency`` [Wh DC].
    unheld_wh : float
        Stored energy nobody holds: ``stored − held`` [Wh DC].
    tolerance_wh : float
        What measurement and rounding may explain [Wh].
    problems : tuple of str
        Empty when the WATT reconcile.
    """

    outstanding_wh: int
    stored_wh: float
    held_wh: float
    unheld_wh: float
    tolerance_wh: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the WATT reconcile with the battery within the tolerance."""
        return not self.problems


def reconcile_watt(
    outstanding_wh: int,
    stored_wh: float,
    policy: StoragePolicy,
    unheld_before_wh: float | None,
    tolerance_wh: float,
) -> WattReconciliation:
    """Check Σ WATT against the battery's measured energy after a settled period.

    Two conditions (module notes, *Reconciliation*): the holders never own more than is
    stored (``held ≤ stored``), and the energy nobody holds never grows (``unheld ≤
    unheld before``), each within ``tolerance_wh``.

    Parameters
    ----------
    outstanding_wh : int
        WATT outstanding after the period [Wh].
    stored_wh : float
        Stored energy measured at the period's end [Wh DC].
    policy : StoragePolicy
        Its ``charge_ppm`` converts WATT to stored energy.
    unheld_before_wh : float or None
        ``unheld_wh`` of the previous period; None for the first period checked.
    tolerance_wh : float
        Measurement resolution of the state of charge plus rounding [Wh], ≥ 0.

    Returns
    -------
    WattReconciliation

    Examples
    --------
    1 000 WATT at 95 % charge efficiency are 950 Wh of a 5 000 Wh store:

    >>> r = reconcile_watt(1000, 5000.0, StoragePolicy(charge_ppm=950_000), 4100.0, 10.0)
    >>> r.ok, r.unheld_wh
    (True, 4050.0)
    >>> r = reconcile_watt(1000, 5000.0, StoragePolicy(charge_ppm=950_000), 3000.0, 10.0)
    >>> r.problems[0][:60]
    'stored energy nobody holds grew from 3000 to 4050 Wh (tolera'
    """
    if tolerance_wh < 0 or outstanding_wh < 0:
        msg = f"tolerance_wh and outstanding_wh must be ≥ 0, got {tolerance_wh}, {outstanding_wh}"
        raise ValueError(msg)
    held = outstanding_wh * policy.charge_ppm / _PPM
    unheld = stored_wh - held
    problems = []
    if unheld < -tolerance_wh:
        problems.append(
            f"holders own {held:.0f} Wh ({outstanding_wh} WATT) but the battery stores "
            f"{stored_wh:.0f} Wh (tolerance {tolerance_wh:.0f} Wh): WATT minted for energy "
            "that was never stored, or the battery lost energy (self-discharge, a cell fault)"
        )
    if unheld_before_wh is not None and unheld > unheld_before_wh + tolerance_wh:
        problems.append(
            f"stored energy nobody holds grew from {unheld_before_wh:.0f} to {unheld:.0f} Wh "
            f"(tolerance {tolerance_wh:.0f} Wh): charge was not minted as WATT"
        )
    return WattReconciliation(
        outstanding_wh, stored_wh, held, unheld, tolerance_wh, tuple(problems)
    )


def watt_invariant_problems(
    balances: Mapping[str, int],
    policy: StoragePolicy,
    max_stored_wh: float,
    capped: Set[str] = frozenset(),
    stored_wh: float | None = None,
    tolerance_wh: float = 0.0,
) -> list[str]:
    """What breaks the WATT invariant in a ledger's WATT balances (``ledger verify``).

    Every WATT was minted for energy stored, so: the issuer's balance is minus the WATT
    outstanding (the balances sum to zero); no holder is negative; the holders never own
    more than the battery can store (``outstanding × η_c ≤ max_stored_wh``), nor, given
    a measurement, more than it stores now; no capped holder is above Bmax.

    Parameters
    ----------
    balances : mapping of str to int
        WATT balance of every account, the issuer included [Wh].
    policy : StoragePolicy
        Charge efficiency and Bmax.
    max_stored_wh : float
        The battery's largest stored energy (its upper state-of-charge limit) [Wh DC].
    capped : set of str
        Accounts Bmax applies to.
    stored_wh : float, optional
        Stored energy measured now [Wh DC].
    tolerance_wh : float
        Measurement tolerance of ``stored_wh`` [Wh].

    Returns
    -------
    list of str
        Empty when the invariant holds.

    Examples
    --------
    >>> policy = StoragePolicy(charge_ppm=1_000_000, bmax_wh=500)
    >>> watt_invariant_problems({"watt:battery": -700, "meter:a": 700}, policy, 10_000,
    ...                         {"meter:a"})
    ['meter:a holds 700 WATT, above Bmax 500']
    """
    problems = []
    total = sum(balances.values())
    if total:
        problems.append(f"WATT balances sum to {total}, not 0: a WATT row is unbalanced")
    negative = sorted(a for a, v in balances.items() if v < 0 and a != WATT_ISSUER)
    if negative:
        problems.append(f"negative WATT balances: {', '.join(negative[:5])}")
    outstanding = -balances.get(WATT_ISSUER, 0)
    held = outstanding * policy.charge_ppm / _PPM
    if held > max_stored_wh:
        problems.append(
            f"{outstanding} WATT outstanding own {held:.0f} Wh, more than the battery can "
            f"store ({max_stored_wh:.0f} Wh): WATT minted for energy never stored"
        )
    if stored_wh is not None and held > stored_wh + tolerance_wh:
        problems.append(
            f"{outstanding} WATT outstanding own {held:.0f} Wh but the battery stores "
            f"{stored_wh:.0f} Wh (tolerance {tolerance_wh:.0f} Wh)"
        )
    if policy.bmax_wh is not None:
        problems += [
            f"{a} holds {balances[a]} WATT, above Bmax {policy.bmax_wh}"
            for a in sorted(capped)
            if balances.get(a, 0) > policy.bmax_wh
        ]
    return problems
