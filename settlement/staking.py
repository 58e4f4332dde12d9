"""Staking: one token per household, stakes on businesses, a pool that conserves tokens.

Rules (seeds 000/001, with the pool that makes them last)
---------------------------------------------------------
- Each household is issued 1 stake token (``STAKE_TOKEN_SCALE`` micro-tokens) once; the
  token supply never changes after that.
- Per round a household stakes its whole token balance on one business, splits it over
  several (weights in parts per million, the seeds' future work), or skips. A choice
  made during round ``r`` counts from round ``r + 1`` and stands until changed.
- A business **delivered** in a round when it was served and its value was positive.
- At the end of a round, in this order (one batch, :func:`plan_round`):

  1. **funding**: ``reward_share_ppm`` of the businesses' energy payments in the round
     (``BusinessOutcome.revenue_minor``) moves from ``policy.funder_account`` — the
     producer those payments went to — into :data:`~settlement.ledger.STAKING_POOL`
     (capped at what the funder holds). A business's own meter account is never debited.
  2. **rewards**: ``payout_ppm`` of the pool's coins go to the stakers of delivered
     businesses, pro rata to the tokens they staked on them (largest remainder), into
     their households' meter accounts. With no delivered staker the coins stay pooled.
  3. **slashing**: each token staked on a business that did not deliver loses
     ``slash_fraction_ppm`` (floored) to ``policy.slash_account`` (the pool). With
     ``slash_unserved=False`` a positive-value business that was not served neither
     rewards nor slashes.
  4. **refill**: every household below its 1 token gets ``refill_ppm`` (2 %) of its
     shortfall back from the pool's tokens (scaled down by largest remainder when the pool holds
     less), so that each household holds close to 1 token per round and a run of bad
     rounds never drives the stakes to zero.
  5. **recycling**: the pool's tokens left after the refill go to the stakers of
     delivered businesses, pro rata to their staked tokens.

  Tokens only move between households and the pool, so Σ household tokens + pool =
  tokens issued after any sequence of rounds (tested as a property).
- The stake total per business (:func:`stake_totals`) is dispatch's business-tier input.

Choices are state (a table), not transfers. A split choice is stored as one text value,
``"B01=600000;B02=400000"`` (:func:`format_choice`, :func:`parse_choice`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from microgrid.site import Site
from microgrid.units import STAKE_TOKEN_SCALE
from settlement.ledger import (
    MAX_AMOUNT,
    STAKE_ISSUER,
    STAKING_POOL,
    Asset,
    Batch,
    LedgerError,
    PostedBatch,
    Transfer,
    meter_account,
    stake_account,
)
from settlement.rounding import largest_remainder
from settlement.store import LedgerStore

__all__ = [
    "BusinessOutcome",
    "PoolState",
    "RoundPlan",
    "StakingPolicy",
    "format_choice",
    "issue_tokens",
    "parse_choice",
    "place_stake",
    "plan_round",
    "pool_state",
    "settle_round",
    "split_tokens",
    "stake_totals",
    "stake_totals_minor",
]

_PPM = 1_000_000
_MAX_SPLIT = 16
"""Most businesses one household's stake may be split over (a ballot people can read)."""


@dataclass(frozen=True, slots=True)
class StakingPolicy:
    """Parameters of a staking round (module docstring).

    Attributes
    ----------
    reward_share_ppm : int
        Share of the businesses' energy payments that funds the pool [parts per million].
    slash_fraction_ppm : int
        Share of a wrong staker's tokens slashed [parts per million].
    slash_account : str
        Where slashed tokens go: the pool (conserved), or ``stake:slashed`` (the old rule:
        out of circulation).
    slash_unserved : bool
        Whether stakers of a positive-value business that was not served are slashed.
    funder_account : str
        The account the businesses' energy payments went to (the container's producer
        meter), which funds the pool.
    payout_ppm : int
        Share of the pool's coins paid out per round [parts per million].
    refill_ppm : int
        Share of each household's shortfall below 1 token refilled per round from the
        pool's tokens [parts per million]. Small against slashing, so that slashing
        still moves stakes: a household slashed every round levels off at
        ``r / (s + r − s·r)`` of a token (s, r the slash and refill fractions; 0.17 token
        with the defaults 10 % and 2 %), never at zero.
    """

    reward_share_ppm: int = 100_000
    slash_fraction_ppm: int = 100_000
    slash_account: str = STAKING_POOL
    slash_unserved: bool = True
    funder_account: str = field(default=meter_account("pv_inverter"))
    payout_ppm: int = _PPM
    refill_ppm: int = 20_000

    def __post_init__(self) -> None:
        for name in ("reward_share_ppm", "slash_fraction_ppm", "payout_ppm", "refill_ppm"):
            value = getattr(self, name)
            if not 0 <= value <= _PPM:
                msg = f"{name} must be in [0, {_PPM}] parts per million, got {value}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class BusinessOutcome:
    """How a business did in a round.

    Attributes
    ----------
    served : bool
        Whether dispatch gave it energy.
    value : float
        The value it produced for the community (its sign decides).
    revenue_minor : int
        Its energy payments in the round [coin minor units]; a share funds the pool.
    """

    served: bool
    value: float
    revenue_minor: int

    @property
    def delivered(self) -> bool:
        """Served and of positive value: its stakers are rewarded."""
        return self.served and self.value > 0


@dataclass(frozen=True, slots=True)
class PoolState:
    """Balances a round's plan starts from.

    Attributes
    ----------
    coin_minor : int
        Coins in the staking pool [coin minor units].
    tokens_minor : int
        Tokens in the staking pool [micro-tokens].
    funder_minor : int
        Coins the funder holds (caps the round's funding) [coin minor units].
    """

    coin_minor: int = 0
    tokens_minor: int = 0
    funder_minor: int = 0


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """A round's funding, rewards, slashes, refills and recycled tokens.

    Attributes
    ----------
    rewards : dict of str to int
        Coins per household [coin minor units].
    slashed : dict of str to int
        Tokens slashed per household [micro-tokens].
    transfers : tuple of Transfer
        The batch content.
    funded_minor : int
        Coins moved into the pool [coin minor units].
    refilled : dict of str to int
        Tokens refilled per household [micro-tokens].
    recycled : dict of str to int
        Pool tokens given to stakers of delivered businesses [micro-tokens].
    """

    rewards: dict[str, int]
    slashed: dict[str, int]
    transfers: tuple[Transfer, ...]
    funded_minor: int = 0
    refilled: dict[str, int] = field(default_factory=dict)
    recycled: dict[str, int] = field(default_factory=dict)


def parse_choice(choice: str | Mapping[str, int] | None) -> dict[str, int]:
    """A stored choice as business → weight [parts per million, summing to 10⁶].

    Examples
    --------
    >>> parse_choice("B01"), parse_choice(None)
    ({'B01': 1000000}, {})
    >>> parse_choice("B01=600000;B02=400000")
    {'B01': 600000, 'B02': 400000}
    """
    if choice is None:
        return {}
    if not isinstance(choice, str):
        weights = dict(choice)
    elif "=" not in choice:
        return {choice: _PPM}
    else:
        weights = {}
        for part in choice.split(";"):
            name, _, weight = part.partition("=")
            if not weight.isdigit():
                msg = f"stake split {choice!r}: {part!r} is not business=weight_ppm"
                raise ValueError(msg)
            weights[name] = int(weight)
    if not weights or len(weights) > _MAX_SPLIT:
        msg = f"a stake split names 1 to {_MAX_SPLIT} businesses, got {len(weights)}"
        raise ValueError(msg)
    if any(w <= 0 for w in weights.values()) or sum(weights.values()) != _PPM:
        msg = f"stake split weights must be > 0 and add up to {_PPM} ppm, got {weights}"
        raise ValueError(msg)
    return weights


def format_choice(weights: Mapping[str, int]) -> str:
    """The stored text of a choice (a single business is stored as its id).

    Examples
    --------
    >>> format_choice({"B01": 600_000, "B02": 400_000}), format_choice({"B03": 1_000_000})
    ('B01=600000;B02=400000', 'B03')
    """
    checked = parse_choice(weights)
    if len(checked) == 1:
        return next(iter(checked))
    return ";".join(f"{b}={w}" for b, w in sorted(checked.items()))


def split_tokens(choice: str | Mapping[str, int] | None, tokens_minor: int) -> dict[str, int]:
    """A household's tokens per business under its choice (largest remainder, exact).

    Examples
    --------
    >>> split_tokens("B01=500000;B02=500000", 1_000_001)
    {'B01': 500001, 'B02': 500000}
    """
    weights = parse_choice(choice)
    if not weights or tokens_minor <= 0:
        return {}
    return {b: t for b, t in largest_remainder(weights, tokens_minor).items() if t}


def plan_round(
    choices: Mapping[str, str | Mapping[str, int] | None],
    tokens_minor: Mapping[str, int],
    outcomes: Mapping[str, BusinessOutcome],
    pool: PoolState,
    policy: StakingPolicy,
) -> RoundPlan:
    """Funding, rewards, slashes, refills and recycling of one round (module docstring); pure.

    Parameters
    ----------
    choices : mapping of str to (str or mapping or None)
        Each household's choice in force this round (None: skipped).
    tokens_minor : mapping of str to int
        Each household's token balance [micro-tokens]; every household that may be
        refilled must be a key (0 for none).
    outcomes : mapping of str to BusinessOutcome
        Per business; a staked business without an outcome is an error. Every
        business's energy payments fund the pool, staked on or not.
    pool : PoolState
        The pool's and the funder's balances before the round's end.
    policy : StakingPolicy

    Examples
    --------
    Two households back B1 (delivered), H3 backs B2 (negative value), H4 skips; the
    businesses paid 3 coins for energy, 10 % of which funds the pool:

    >>> plan = plan_round({"H1": "B1", "H2": "B1", "H3": "B2", "H4": None},
    ...     dict.fromkeys(["H1", "H2", "H3", "H4"], 1_000_000),
    ...     {"B1": BusinessOutcome(True, 5.0, 3_000_010), "B2": BusinessOutcome(True, -2.0, 0)},
    ...     PoolState(funder_minor=10_000_000), StakingPolicy())
    >>> plan.funded_minor, plan.rewards, plan.slashed
    (300001, {'H1': 150001, 'H2': 150000}, {'H3': 100000})
    >>> plan.refilled, plan.recycled  # 2 % of H3's shortfall back, the rest to B1's backers
    ({'H3': 2000}, {'H1': 49000, 'H2': 49000})
    """
    parts: dict[str, dict[str, int]] = {}  # business → household → tokens
    for household in sorted(choices):
        tokens = tokens_minor.get(household, 0)
        for business, share in split_tokens(choices[household], tokens).items():
            parts.setdefault(business, {})[household] = share
    missing = sorted(set(parts) - set(outcomes))
    if missing:
        msg = f"no round outcome for staked businesses: {', '.join(missing)}; pass one for each"
        raise ValueError(msg)
    transfers: list[Transfer] = []

    # 1. funding: a share of the energy payments, from the producer they went to
    payments = sum(max(0, o.revenue_minor) for o in outcomes.values())
    funded = min(payments * policy.reward_share_ppm // _PPM, max(0, pool.funder_minor), MAX_AMOUNT)
    if funded:
        transfers.append(
            Transfer(policy.funder_account, STAKING_POOL, Asset.COIN, funded, "stake.fund")
        )

    # 2. rewards: pro rata to the tokens staked on delivered businesses
    delivered: dict[str, int] = {}
    for business in sorted(parts):
        if outcomes[business].delivered:
            for household, tokens in parts[business].items():
                delivered[household] = delivered.get(household, 0) + tokens
    rewards: dict[str, int] = {}
    pot = (pool.coin_minor + funded) * policy.payout_ppm // _PPM
    if delivered and pot > 0:
        for household, coins in largest_remainder(delivered, pot).items():
            if coins:
                rewards[household] = coins
                transfers.append(
                    Transfer(
                        STAKING_POOL, meter_account(household), Asset.COIN, coins, "stake.reward"
                    )
                )

    # 3. slashing: tokens staked on a business that did not deliver
    slashed: dict[str, int] = {}
    for business in sorted(parts):
        outcome = outcomes[business]
        if outcome.delivered or not (outcome.served or policy.slash_unserved or outcome.value <= 0):
            continue
        for household, tokens in parts[business].items():
            cut = tokens * policy.slash_fraction_ppm // _PPM
            if cut:
                slashed[household] = slashed.get(household, 0) + cut
    for household, cut in sorted(slashed.items()):
        transfers.append(
            Transfer(
                stake_account(household), policy.slash_account, Asset.STAKE, cut, "stake.slash"
            )
        )

    # 4. refill towards 1 token, from the pool's tokens
    pool_tokens = pool.tokens_minor + (
        sum(slashed.values()) if policy.slash_account == STAKING_POOL else 0
    )
    shortfall = {}
    for household in sorted(tokens_minor):
        after = tokens_minor[household] - slashed.get(household, 0)
        want = max(0, STAKE_TOKEN_SCALE - after) * policy.refill_ppm // _PPM
        if want:
            shortfall[household] = want
    wanted = sum(shortfall.values())
    refilled = shortfall if wanted <= pool_tokens else largest_remainder(shortfall, pool_tokens)
    refilled = {h: t for h, t in refilled.items() if t}
    for household, tokens in refilled.items():
        transfers.append(
            Transfer(STAKING_POOL, stake_account(household), Asset.STAKE, tokens, "stake.refill")
        )
    pool_tokens -= sum(refilled.values())

    # 5. recycling: the rest of the pool's tokens to the stakers of delivered businesses
    recycled: dict[str, int] = {}
    if delivered and pool_tokens > 0:
        recycled = {h: t for h, t in largest_remainder(delivered, pool_tokens).items() if t}
        for household, tokens in recycled.items():
            transfers.append(
                Transfer(
                    STAKING_POOL, stake_account(household), Asset.STAKE, tokens, "stake.recycle"
                )
            )
    return RoundPlan(rewards, slashed, tuple(transfers), funded, refilled, recycled)


def issue_tokens(store: LedgerStore, site: Site, now: datetime | None = None) -> list[PostedBatch]:
    """Issue each household its one token (idempotent: once per household, ever)."""
    batches = [
        Batch(
            f"stake:issue:{c.id}",
            (
                Transfer(
                    STAKE_ISSUER, stake_account(c.id), Asset.STAKE, STAKE_TOKEN_SCALE, "stake.issue"
                ),
            ),
        )
        for c in site.households
    ]
    return store.post_many(batches, now)


def place_stake(
    store: LedgerStore,
    site: Site,
    household_id: str,
    business_id: str | Mapping[str, int] | None,
    current_round: int,
) -> int:
    """Stake a household's tokens on a business, a split, or skip (None), from the next round.

    Parameters
    ----------
    business_id : str, mapping of str to int, or None
        One business id; or business → weight [parts per million, adding up to 10⁶];
        or None to skip.

    Returns
    -------
    int
        The round from which the choice counts (``current_round + 1``).

    Raises
    ------
    LedgerError
        If the household or a business is not one of the site's, or a split's weights
        are not positive parts per million adding up to 10⁶.
    """
    households = {c.id for c in site.households}
    if household_id not in households:
        msg = f"{household_id!r} is not a household of {site.name!r}; only households stake"
        raise LedgerError(msg)
    stored: str | None = None
    if business_id is not None:
        try:
            weights = parse_choice(business_id)
        except ValueError as exc:
            raise LedgerError(str(exc)) from None
        businesses = {c.id for c in site.businesses}
        unknown = sorted(set(weights) - businesses)
        if unknown:
            msg = (
                f"{', '.join(map(repr, unknown))} is not a business of {site.name!r}; "
                "stake on a business id"
            )
            raise LedgerError(msg)
        stored = format_choice(weights)
    effective = current_round + 1
    store.set_stake_choice(household_id, effective, stored)
    return effective


def _household_tokens(store: LedgerStore, site: Site) -> dict[str, int]:
    balances = store.balances(Asset.STAKE, prefix="stake:")
    return {c.id: balances.get((stake_account(c.id), Asset.STAKE), 0) for c in site.households}


def stake_totals_minor(store: LedgerStore, site: Site, round_number: int) -> dict[str, int]:
    """Staked micro-tokens per business in a round (every business, zeros included)."""
    choices = store.stake_choices(round_number)
    tokens = _household_tokens(store, site)
    totals = dict.fromkeys((c.id for c in site.businesses), 0)
    for household, choice in choices.items():
        for business, share in split_tokens(choice, tokens.get(household, 0)).items():
            if business in totals:
                totals[business] += share
    return totals


def stake_totals(store: LedgerStore, site: Site, round_number: int) -> dict[str, int]:
    """Whole stake tokens per business in a round: dispatch's ``stakes`` argument.

    Slashing, refills and splits leave fractions of tokens; the totals are rounded by
    largest remainder so that they add up to the whole tokens staked.
    """
    minor = stake_totals_minor(store, site, round_number)
    return largest_remainder(minor, sum(minor.values()) // STAKE_TOKEN_SCALE)


def pool_state(store: LedgerStore, policy: StakingPolicy) -> PoolState:
    """The pool's coins and tokens and the funder's coins, from the ledger."""
    return PoolState(
        coin_minor=store.balance(STAKING_POOL, Asset.COIN),
        tokens_minor=store.balance(STAKING_POOL, Asset.STAKE),
        funder_minor=store.balance(policy.funder_account, Asset.COIN),
    )


def settle_round(
    store: LedgerStore,
    site: Site,
    round_number: int,
    outcomes: Mapping[str, BusinessOutcome],
    policy: StakingPolicy | None = None,
    now: datetime | None = None,
) -> tuple[RoundPlan, PostedBatch]:
    """End a round: post its funding, rewards, slashes and token moves as one batch.

    Re-running a round returns the first result (same content) or, if the inputs
    changed since, raises :class:`settlement.ledger.IdempotencyConflictError`.
    """
    policy = policy or StakingPolicy()
    key = f"stake:round:{site.name}:{round_number}"
    done = store.posted(key)
    if done is not None:
        transfers = store.transfers_of(key)

        def moved(code: str, prefix: str, credit: bool) -> dict[str, int]:
            out: dict[str, int] = {}
            for t in transfers:
                if t.code == code:
                    who = (t.credit if credit else t.debit).removeprefix(prefix)
                    out[who] = out.get(who, 0) + t.amount
            return out

        funded = sum(t.amount for t in transfers if t.code == "stake.fund")
        return RoundPlan(
            moved("stake.reward", "meter:", credit=True),
            moved("stake.slash", "stake:", credit=False),
            transfers,
            funded,
            moved("stake.refill", "stake:", credit=True),
            moved("stake.recycle", "stake:", credit=True),
        ), replace(done, replayed=True)
    choices = store.stake_choices(round_number)
    plan = plan_round(
        choices, _household_tokens(store, site), outcomes, pool_state(store, policy), policy
    )
    return plan, store.post(Batch(key, plan.transfers), now)
