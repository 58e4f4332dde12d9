"""Staking over a year: 365 rounds on the real ledger with the staking pool.

The default site's 320 households and 70 businesses; stakers choose with
:mod:`scenarios.stakers` (``informed``: in proportion to the true positive values; or
``--mix default``: the planners' default mix of loyal, learning and random stakers). Each
round is settled by :func:`settlement.staking.settle_round` on an in-memory SQLite ledger.

Business service is a **simple stated model**, not the dispatch (365 MILP days take hours
on this box): on a day the weather allows businesses energy (a Bernoulli draw with
``--business-days`` probability, 0.8 by default), the I = ``--selected`` businesses with
the largest stakes are served (I of N by stake) with ``--kwh`` kWh each; a business's
realised value is its value score plus N(0, 1) noise; its energy payment is kWh × its
tariff's midday price, paid to the producer ``meter:pv_inverter`` (a fiat top-up stands
in for hourly settlement). ``reward_share_ppm`` of those payments funds the pool.

Reported: rounds until the stake share on truly valuable businesses (score > 0) settles
(:func:`scenarios.kpis.rounds_to_settle`), that share over the last 14 rounds, the same
for the share on the I most valuable businesses (the seeds' "I of N"), the token
supply after 365 rounds against tokens issued, rewards paid, and the run's wall time.

``--old-tokens`` runs the token rule before the pool (slashed tokens leave circulation, no
refill) for comparison.

Run: python benchmarks/bench_staking.py [--rounds 365] [--mix informed|default] [--seed 1]
[--old-tokens]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from microgrid import load_site
from microgrid.units import COIN_SCALE, STAKE_TOKEN_SCALE
from scenarios.config import StakerMix
from scenarios.kpis import rounds_to_settle
from scenarios.stakers import choose, initial_state, learn, payoff_per_token
from settlement import SqliteLedgerStore
from settlement.hourly import price_at
from settlement.ledger import (
    FIAT_BRIDGE,
    STAKE_ISSUER,
    STAKE_SLASHED,
    STAKING_POOL,
    Asset,
    Batch,
    Transfer,
    stake_account,
)
from settlement.staking import (
    BusinessOutcome,
    StakingPolicy,
    issue_tokens,
    settle_round,
    stake_totals_minor,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def run(args: argparse.Namespace) -> dict[str, float]:
    """One year of rounds; the figures of the module docstring."""
    site = load_site(None)
    households = [c.id for c in site.households]
    businesses = [c.id for c in site.businesses]
    value = np.array([c.business.value_score if c.business else 0.0 for c in site.businesses])
    price = {c.id: price_at(site.tariffs[c.tariff], 12) for c in site.businesses}
    mix = (
        StakerMix(loyal=0, learner=0, random=0, informed=1)
        if args.mix == "informed"
        else StakerMix()
    )
    rng = np.random.default_rng(args.seed)
    stakers = initial_state(len(households), len(businesses), mix, rng)
    available = np.ones(len(businesses), dtype=bool)
    # --old-tokens: the rule before the pool (slashed tokens leave circulation, no refill)
    policy = (
        StakingPolicy(slash_account=STAKE_SLASHED, refill_ppm=0)
        if args.old_tokens
        else StakingPolicy()
    )
    store = SqliteLedgerStore(":memory:", synchronous="NORMAL")
    issue_tokens(store, site, START)
    shares, rewards_minor, staked_tokens, top_shares = [], 0, [], []
    # The seeds' aim: stakes on the I most valuable of the N businesses.
    top = np.argsort(-value, kind="stable")[: args.selected]
    choice = choose(stakers, available, value, mix, rng)
    for r in range(1, args.rounds + 1):
        for h, c in zip(households, choice, strict=True):
            store.set_stake_choice(h, r, businesses[c] if c >= 0 else None)
        at = START + timedelta(days=r)
        stakes = stake_totals_minor(store, site, r)
        staked = np.array([stakes[b] for b in businesses], dtype=float)
        staked_tokens.append(staked.sum() / STAKE_TOKEN_SCALE)
        top_shares.append(staked[top].sum() / staked.sum() if staked.sum() else np.nan)
        shares.append(staked[value > 0].sum() / staked.sum() if staked.sum() else np.nan)
        sunny = rng.random() < args.business_days
        order = np.argsort(-staked, kind="stable")[: args.selected]
        served = {businesses[k] for k in order if sunny and staked[k] > 0}
        realised = value + rng.normal(0.0, 1.0, len(businesses))
        payment = {b: round(args.kwh * price[b]) if b in served else 0 for b in businesses}
        paid = sum(payment.values())
        if paid:  # the producer was paid for the businesses' energy (hourly settlement)
            store.post(
                Batch(
                    f"bench:pay:{r}",
                    (Transfer(FIAT_BRIDGE, policy.funder_account, Asset.COIN, paid, "fiat.topup"),),
                ),
                at,
            )
        outcomes = {
            b: BusinessOutcome(b in served, float(realised[k]), payment[b])
            for k, b in enumerate(businesses)
        }
        tokens_before = {h: store.balance(stake_account(h), Asset.STAKE) for h in households}
        plan, _ = settle_round(store, site, r, outcomes, policy, at)
        rewards_minor += sum(plan.rewards.values())
        # Learners count coins and tokens won or lost per token, as the planners' engine does.
        payoff = payoff_per_token(
            households, plan.rewards, plan.slashed, plan.recycled, tokens_before
        )
        learn(stakers, choice.copy(), payoff, mix)
        choice = choose(stakers, available, value, mix, rng)
    issued = -store.balance(STAKE_ISSUER, Asset.STAKE)
    held = sum(store.balance(stake_account(h), Asset.STAKE) for h in households)
    pooled = store.balance(STAKING_POOL, Asset.STAKE)
    share = pd.Series(shares)
    return {
        "rounds_to_settle": rounds_to_settle(share),
        "share_valuable_last14": float(share.iloc[-14:].mean()),
        "rounds_to_settle_top_i": rounds_to_settle(pd.Series(top_shares)),
        "share_top_i_first": float(top_shares[0]),
        "share_top_i_last14": float(np.mean(top_shares[-14:])),
        "tokens_issued": issued / STAKE_TOKEN_SCALE,
        "tokens_held": held / STAKE_TOKEN_SCALE,
        "tokens_pooled": pooled / STAKE_TOKEN_SCALE,
        "supply_vs_issued": (held + pooled) / issued,
        "held_vs_issued": held / issued,
        "rewards_coin": rewards_minor / COIN_SCALE,
        "staked_tokens_first": staked_tokens[0],
        "staked_tokens_min": min(staked_tokens),
        "staked_tokens_last": staked_tokens[-1],
        "ledger_verifies": float(store.verify().ok),
    }


def main() -> None:
    """Run the year and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=365)
    parser.add_argument("--mix", choices=["informed", "default"], default="informed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--business-days", type=float, default=0.8)
    parser.add_argument("--selected", type=int, default=10)
    parser.add_argument("--kwh", type=float, default=2.0)
    parser.add_argument("--old-tokens", action="store_true", help="slashed tokens burnt, no refill")
    args = parser.parse_args()
    print(machine())
    t0 = time.perf_counter()
    figures = run(args)
    seconds = time.perf_counter() - t0
    print(f"{args.rounds} rounds, {args.mix} stakers, seed {args.seed}:")
    for name, value in figures.items():
        print(f"  {name:24s} {value:.4f}")
    print(f"  {'seconds':24s} {seconds:.1f}")


if __name__ == "__main__":
    main()
