"""Staking with a pool: funding from energy payments, rewards, slashing, refill, recycling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.units import STAKE_TOKEN_SCALE
from settlement import (
    Asset,
    BusinessOutcome,
    LedgerError,
    StakingPolicy,
    fund_meter,
    issue_tokens,
    place_stake,
    settle_round,
    stake_totals,
)
from settlement.ledger import (
    FIAT_BRIDGE,
    STAKE_ISSUER,
    STAKING_POOL,
    Batch,
    Transfer,
    apply_transfers,
    meter_account,
    stake_account,
)
from settlement.staking import PoolState, plan_round, stake_totals_minor
from tests.settlement.test_mechanisms import fund_store

PRODUCER = meter_account("pv_inverter")
TOKEN = STAKE_TOKEN_SCALE


def test_round_by_hand(site, store):
    """Every number of a round worked out by hand: 4 households, 2 businesses."""
    issue_tokens(store, site)
    good, bad = site.businesses[0].id, site.businesses[1].id
    fund_store(store, "owner", 65_000)  # 100 coins
    fund_meter(store, "owner", good, 50_000_000, "g")  # the business's electricity credit
    # The producer was paid for the businesses' energy: 20 coins.
    store.post(
        Batch("pay", (Transfer(FIAT_BRIDGE, PRODUCER, Asset.COIN, 20_000_000, "fiat.topup"),))
    )
    assert place_stake(store, site, "H001", good, current_round=1) == 2
    place_stake(store, site, "H002", good, current_round=1)
    place_stake(store, site, "H003", bad, current_round=1)
    place_stake(store, site, "H004", None, current_round=1)
    assert stake_totals(store, site, 1)[good] == 0  # counts from the next round
    assert stake_totals(store, site, 2)[good] == 2
    outcomes = {good: BusinessOutcome(True, 4.0, 10_000_000), bad: BusinessOutcome(True, -3.0, 0)}
    plan, _ = settle_round(store, site, 2, outcomes, StakingPolicy())
    # Funding: 10 % of 10 coins of energy payments, from the producer, not the business.
    assert plan.funded_minor == 1_000_000
    assert store.balance(PRODUCER) == 19_000_000
    assert store.balance(meter_account(good)) == 50_000_000  # electricity credit untouched
    # Rewards: the whole pool (1 coin) to the 2 tokens on the delivered business.
    assert plan.rewards == {"H001": 500_000, "H002": 500_000}
    assert store.balance(STAKING_POOL) == 0
    # H003 loses 10 % of its token; 2 % of its shortfall comes back; the rest is recycled.
    assert plan.slashed == {"H003": 100_000}
    assert plan.refilled == {"H003": 2_000}
    assert plan.recycled == {"H001": 49_000, "H002": 49_000}
    assert store.balance(stake_account("H003"), Asset.STAKE) == 902_000
    assert store.balance(stake_account("H001"), Asset.STAKE) == 1_049_000
    assert store.balance(STAKING_POOL, Asset.STAKE) == 0
    held = sum(store.balance(stake_account(c.id), Asset.STAKE) for c in site.households)
    assert held == len(site.households) * TOKEN  # conserved
    replay, posted = settle_round(store, site, 2, outcomes)
    assert posted.replayed
    assert (replay.rewards, replay.slashed, replay.refilled, replay.recycled) == (
        plan.rewards,
        plan.slashed,
        plan.refilled,
        plan.recycled,
    )
    with pytest.raises(LedgerError, match="not a business"):
        place_stake(store, site, "H001", "H002", 2)
    assert store.verify().ok


def test_rewards_never_debit_a_business_meter():
    """A delivered business with credit and a pool with coins: only the pool pays."""
    plan = plan_round(
        {"H1": "B1"},
        {"H1": TOKEN},
        {"B1": BusinessOutcome(True, 5.0, 7_000_000)},
        PoolState(coin_minor=300, funder_minor=10**9),
        StakingPolicy(),
    )
    assert all(t.debit != meter_account("B1") for t in plan.transfers)
    assert plan.rewards == {"H1": 700_300}
    debits = {t.debit for t in plan.transfers if t.asset is Asset.COIN}
    assert debits == {PRODUCER, STAKING_POOL}


def test_funding_is_capped_by_the_funder_and_unstaked_payments_count():
    plan = plan_round(
        {"H1": "B1"},
        {"H1": TOKEN},
        {"B1": BusinessOutcome(True, 5.0, 0), "B2": BusinessOutcome(True, 1.0, 50_000_000)},
        PoolState(funder_minor=2_000_000),
        StakingPolicy(),
    )
    assert plan.funded_minor == 2_000_000  # wanted 5 coins, the producer holds 2


def test_no_delivered_business_keeps_coins_and_tokens_in_the_pool():
    plan = plan_round(
        {"H1": "B1", "H2": "B1"},
        {"H1": TOKEN, "H2": TOKEN},
        {"B1": BusinessOutcome(False, 5.0, 0)},
        PoolState(coin_minor=1_000, tokens_minor=0),
        StakingPolicy(),
    )
    assert plan.rewards == {}
    assert plan.slashed == {"H1": 100_000, "H2": 100_000}
    assert plan.refilled == {"H1": 2_000, "H2": 2_000}
    assert plan.recycled == {}


def test_stakes_last_when_nothing_is_ever_served():
    """The old rule took stakes to 0 by round 55; with the refill they level off."""
    policy = StakingPolicy()
    tokens = {"H1": TOKEN}
    pool = 0
    for _ in range(400):
        plan = plan_round(
            {"H1": "B1"},
            tokens,
            {"B1": BusinessOutcome(False, 5.0, 0)},
            PoolState(0, pool, 0),
            policy,
        )
        tokens = {"H1": tokens["H1"] - plan.slashed.get("H1", 0) + plan.refilled.get("H1", 0)}
        pool += plan.slashed.get("H1", 0) - plan.refilled.get("H1", 0)
        assert tokens["H1"] + pool == TOKEN
    # Fixed point of b' = 0.9 b + 0.02 (1 − 0.9 b): b = 0.02 / 0.118 ≈ 0.169 token.
    assert tokens["H1"] == pytest.approx(TOKEN * 0.02 / 0.118, rel=1e-3)


def test_split_stake(site, store):
    issue_tokens(store, site)
    a, b, c = (x.id for x in site.businesses[:3])
    place_stake(store, site, "H001", {a: 750_000, b: 250_000}, current_round=1)
    totals = stake_totals_minor(store, site, 2)
    assert (totals[a], totals[b], totals[c]) == (750_000, 250_000, 0)
    assert store.stake_choices(2)["H001"] == f"{a}=750000;{b}=250000"
    outcomes = {a: BusinessOutcome(True, 3.0, 0), b: BusinessOutcome(True, -1.0, 0)}
    plan, _ = settle_round(store, site, 2, outcomes)
    assert plan.slashed == {"H001": 25_000}  # 10 % of the part on the bad business
    for bad_split in ({a: 500_000}, {a: 0, b: 1_000_000}, {a: 500_000, "nope": 500_000}):
        with pytest.raises(LedgerError):
            place_stake(store, site, "H001", bad_split, current_round=2)


# --- property: tokens conserved, ledger balanced, over any sequence of rounds -----------

HOUSEHOLDS = [f"H{i}" for i in range(5)]
BUSINESSES = ["B0", "B1", "B2"]

choice = st.one_of(
    st.none(),
    st.sampled_from(BUSINESSES),
    st.fixed_dictionaries({"B0": st.just(300_000), "B2": st.just(700_000)}),
)
outcome = st.builds(
    BusinessOutcome,
    st.booleans(),
    st.sampled_from([-2.0, 0.0, 3.0]),
    st.integers(0, 10**9),
)
round_ = st.tuples(
    st.fixed_dictionaries(dict.fromkeys(HOUSEHOLDS, choice)),
    st.fixed_dictionaries(dict.fromkeys(BUSINESSES, outcome)),
)
policy = st.builds(
    StakingPolicy,
    reward_share_ppm=st.integers(0, 1_000_000),
    slash_fraction_ppm=st.integers(0, 1_000_000),
    slash_unserved=st.booleans(),
    payout_ppm=st.integers(0, 1_000_000),
    refill_ppm=st.integers(0, 1_000_000),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(round_, min_size=1, max_size=25), policy, st.integers(0, 10**12))
def test_tokens_conserved_and_ledger_balanced(rounds, staking, producer_coins):
    balances = {
        (STAKE_ISSUER, Asset.STAKE): -len(HOUSEHOLDS) * TOKEN,
        (FIAT_BRIDGE, Asset.COIN): -producer_coins,
        (PRODUCER, Asset.COIN): producer_coins,
    }
    for h in HOUSEHOLDS:
        balances[(stake_account(h), Asset.STAKE)] = TOKEN
    for choices, outcomes in rounds:
        tokens = {h: balances.get((stake_account(h), Asset.STAKE), 0) for h in HOUSEHOLDS}
        pool = PoolState(
            balances.get((STAKING_POOL, Asset.COIN), 0),
            balances.get((STAKING_POOL, Asset.STAKE), 0),
            balances.get((PRODUCER, Asset.COIN), 0),
        )
        plan = plan_round(choices, tokens, outcomes, pool, staking)
        # apply_transfers refuses any debit the account does not cover
        balances.update(apply_transfers(balances, plan.transfers))
        assert all(t.debit not in {meter_account(b) for b in BUSINESSES} for t in plan.transfers)
    for asset in (Asset.COIN, Asset.STAKE):
        assert sum(v for (_, a), v in balances.items() if a is asset) == 0
    held = sum(balances.get((stake_account(h), Asset.STAKE), 0) for h in HOUSEHOLDS)
    assert held + balances.get((STAKING_POOL, Asset.STAKE), 0) == len(HOUSEHOLDS) * TOKEN
    assert all(v >= 0 for (acc, _), v in balances.items() if acc not in (STAKE_ISSUER, FIAT_BRIDGE))
