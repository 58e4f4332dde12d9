"""Staking: one token per household, a business per round, rewards and partial slashing.

Rules (seeds 000/001)
---------------------
- Each household is issued 1 stake token (``STAKE_TOKEN_SCALE`` micro-tokens) once.
- Per round a household stakes its whole token balance on one business, or skips.
  A choice made during round ``r`` counts from round ``r + 1``; a choice stands until
  changed.
- At the end of a round, per business ``b`` with outcome (served, value, revenue):

  - **served and value > 0** → its stakers share ``revenue × reward_share_ppm / 10⁶``
    coins, paid from ``b``'s meter account (capped at what that account holds), pro
    rata to their tokens by largest remainder, into their households' meter accounts;
  - **otherwise** → each staker loses ``tokens × slash_fraction_ppm / 10⁶`` (floored)
    to ``slash_account``. With ``slash_unserved=False`` a business that was not served
    but had positive value neither rewards nor slashes.

- The stake total per business (:func:`stake_totals`) is dispatch's business-tier input.

Choices are state (a table), not transfers: tokens never leave a household's account
except by slashing, which is a journal transfer like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from microgrid.site import Site
from microgrid.units import STAKE_TOKEN_SCALE
from settlement.ledger import (
    STAKE_ISSUER,
    STAKE_SLASHED,
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
    "RoundPlan",
    "StakingPolicy",
    "issue_tokens",
    "place_stake",
    "plan_round",
    "settle_round",
    "stake_totals",
    "stake_totals_minor",
]

_PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class StakingPolicy:
    """Parameters of a staking round.

    Attributes
    ----------
    reward_share_ppm : int
        Share of a rewarded business's revenue paid to its stakers [parts per million].
    slash_fraction_ppm : int
        Share of a wrong staker's tokens slashed [parts per million].
    slash_account : str
        Where slashed tokens go (``stake:slashed``; ``stake:issuer`` recycles them).
    slash_unserved : bool
        Whether stakers of a positive-value business that was not served are slashed.
    """

    reward_share_ppm: int = 100_000
    slash_fraction_ppm: int = 100_000
    slash_account: str = STAKE_SLASHED
    slash_unserved: bool = True

    def __post_init__(self) -> None:
        for name in ("reward_share_ppm", "slash_fraction_ppm"):
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
        Its revenue in the round [coin minor units].
    """

    served: bool
    value: float
    revenue_minor: int


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """A round's rewards and slashes.

    Attributes
    ----------
    rewards : dict of str to int
        Coins per household [coin minor units].
    slashed : dict of str to int
        Tokens slashed per household [micro-tokens].
    transfers : tuple of Transfer
        The batch content.
    """

    rewards: dict[str, int]
    slashed: dict[str, int]
    transfers: tuple[Transfer, ...]


def plan_round(
    choices: Mapping[str, str | None],
    tokens_minor: Mapping[str, int],
    outcomes: Mapping[str, BusinessOutcome],
    payer_balances_minor: Mapping[str, int],
    policy: StakingPolicy,
) -> RoundPlan:
    """Rewards and slashes of one round (module docstring); pure.

    Parameters
    ----------
    choices : mapping of str to str or None
        Business each household staked on in this round (None: skipped).
    tokens_minor : mapping of str to int
        Each household's token balance [micro-tokens].
    outcomes : mapping of str to BusinessOutcome
        Per business; a staked business without an outcome is an error.
    payer_balances_minor : mapping of str to int
        Coin balance of each business's meter account (caps its reward pot).
    policy : StakingPolicy

    Examples
    --------
    >>> plan = plan_round({"H1": "B1", "H2": "B1", "H3": "B2", "H4": None},
    ...     dict.fromkeys(["H1", "H2", "H3", "H4"], 1_000_000),
    ...     {"B1": BusinessOutcome(True, 5.0, 3_000_010), "B2": BusinessOutcome(True, -2.0, 0)},
    ...     {"B1": 10_000_000}, StakingPolicy())
    >>> plan.rewards, plan.slashed
    ({'H1': 150001, 'H2': 150000}, {'H3': 100000})
    """
    missing = sorted({b for b in choices.values() if b is not None} - set(outcomes))
    if missing:
        msg = f"no round outcome for staked businesses: {', '.join(missing)}; pass one for each"
        raise ValueError(msg)
    stakers: dict[str, dict[str, int]] = {}
    for household in sorted(choices):
        business = choices[household]
        tokens = tokens_minor.get(household, 0)
        if business is not None and tokens > 0:
            stakers.setdefault(business, {})[household] = tokens
    rewards: dict[str, int] = {}
    slashed: dict[str, int] = {}
    transfers: list[Transfer] = []
    for business in sorted(stakers):
        outcome = outcomes[business]
        backers = stakers[business]
        if outcome.served and outcome.value > 0:
            pot = outcome.revenue_minor * policy.reward_share_ppm // _PPM
            pot = max(0, min(pot, payer_balances_minor.get(business, 0)))
            for household, coins in largest_remainder(backers, pot).items():
                if coins:
                    rewards[household] = coins
                    transfers.append(
                        Transfer(
                            meter_account(business),
                            meter_account(household),
                            Asset.COIN,
                            coins,
                            "stake.reward",
                        )
                    )
        elif outcome.served or policy.slash_unserved or outcome.value <= 0:
            for household, tokens in backers.items():
                cut = tokens * policy.slash_fraction_ppm // _PPM
                if cut:
                    slashed[household] = cut
                    transfers.append(
                        Transfer(
                            stake_account(household),
                            policy.slash_account,
                            Asset.STAKE,
                            cut,
                            "stake.slash",
                        )
                    )
    return RoundPlan(rewards, slashed, tuple(transfers))


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
    store: LedgerStore, site: Site, household_id: str, business_id: str | None, current_round: int
) -> int:
    """Stake a household's tokens on a business (None: skip) from the next round on.

    Returns
    -------
    int
        The round from which the choice counts (``current_round + 1``).

    Raises
    ------
    LedgerError
        If the household or business is not one of the site's.
    """
    households = {c.id for c in site.households}
    if household_id not in households:
        msg = f"{household_id!r} is not a household of {site.name!r}; only households stake"
        raise LedgerError(msg)
    if business_id is not None and business_id not in {c.id for c in site.businesses}:
        msg = f"{business_id!r} is not a business of {site.name!r}; stake on a business id"
        raise LedgerError(msg)
    effective = current_round + 1
    store.set_stake_choice(household_id, effective, business_id)
    return effective


def stake_totals_minor(store: LedgerStore, site: Site, round_number: int) -> dict[str, int]:
    """Staked micro-tokens per business in a round (every business, zeros included)."""
    choices = store.stake_choices(round_number)
    balances = store.balances(Asset.STAKE, prefix="stake:")
    totals = dict.fromkeys((c.id for c in site.businesses), 0)
    for household, business in choices.items():
        if business is not None and business in totals:
            totals[business] += balances.get((stake_account(household), Asset.STAKE), 0)
    return totals


def stake_totals(store: LedgerStore, site: Site, round_number: int) -> dict[str, int]:
    """Whole stake tokens per business in a round: dispatch's ``stakes`` argument.

    Slashing leaves fractions of tokens; the totals are rounded by largest remainder so
    that they add up to the whole tokens staked.
    """
    minor = stake_totals_minor(store, site, round_number)
    return largest_remainder(minor, sum(minor.values()) // STAKE_TOKEN_SCALE)


def settle_round(
    store: LedgerStore,
    site: Site,
    round_number: int,
    outcomes: Mapping[str, BusinessOutcome],
    policy: StakingPolicy | None = None,
    now: datetime | None = None,
) -> tuple[RoundPlan, PostedBatch]:
    """End a round: post its rewards and slashes as one idempotent batch.

    Re-running a round returns the first result (same content) or, if the inputs
    changed since, raises :class:`settlement.ledger.IdempotencyConflictError`.
    """
    policy = policy or StakingPolicy()
    key = f"stake:round:{site.name}:{round_number}"
    choices = store.stake_choices(round_number)
    done = store.posted(key)
    if done is not None:
        transfers = store.transfers_of(key)
        rewards = {
            t.credit.removeprefix("meter:"): t.amount for t in transfers if t.code == "stake.reward"
        }
        slashed = {
            t.debit.removeprefix("stake:"): t.amount for t in transfers if t.code == "stake.slash"
        }
        return RoundPlan(rewards, slashed, transfers), replace(done, replayed=True)
    tokens = {
        account.removeprefix("stake:"): amount
        for (account, _), amount in store.balances(Asset.STAKE, prefix="stake:").items()
    }
    payers = {b: store.balance(meter_account(b)) for b in {b for b in choices.values() if b}}
    plan = plan_round(choices, tokens, outcomes, payers, policy)
    return plan, store.post(Batch(key, plan.transfers), now)
