"""Staker behaviours: how each household picks a business per round.

Pure and seeded: every decision draws from the :class:`numpy.random.Generator` passed
in. Businesses are columns of a fixed list (the run's final population); those not yet
joined are masked out. A choice is a column index, or ``-1`` for a skipped round.

Behaviours (seeds 000/001: one token, one business per round, may skip):

- **loyal**: a business chosen at random on the first round, kept;
- **learner** (follow the reward): keeps an estimate of its payoff per token for each
  business — coins received per token minus tokens slashed per token, a token counted
  as one coin — updated from its own rounds with learning rate α; picks the best
  estimate, or with probability ε a random business;
- **random**: a random business each round;
- **informed**: knows the true values and stakes on a business with probability
  proportional to its positive true value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from microgrid.units import COIN_SCALE, STAKE_TOKEN_SCALE
from scenarios.config import StakerMix

__all__ = ["BEHAVIOURS", "StakerState", "choose", "initial_state", "learn", "payoff_per_token"]

BEHAVIOURS = ("loyal", "learner", "random", "informed")
"""Behaviour names; a household's behaviour is its index here."""

_OPTIMISM = 0.0
"""Learners' initial payoff estimate [coins per token] (plus a tie-break draw below
:data:`_TIE_BREAK`): an untried business beats one that slashed and loses to one that
paid. It must sit below what a delivered round pays: a round's reward on the bundled year
is ≈ 0.01 coin per token, and the former 0.05 made every business a learner tried look
worse than any untried one, so learners went round all 70 businesses (≈ 6 visits each
before a business's estimate fell below the prior's pull) and never settled within a year."""

_TIE_BREAK = 1e-3
"""Spread of the learners' initial estimates [coins per token]: breaks ties between
untried businesses at random, and is small against one round's reward."""


@dataclass
class StakerState:
    """Every household's behaviour and memory.

    Attributes
    ----------
    behaviour : numpy.ndarray of int
        Index into :data:`BEHAVIOURS` per household.
    favourite : numpy.ndarray of int
        Loyal households' business.
    estimate : numpy.ndarray
        Learners' payoff estimate, households × businesses [coins per token].
    choice : numpy.ndarray of int
        Current choice per household (−1: none).
    """

    behaviour: npt.NDArray[np.int64]
    favourite: npt.NDArray[np.int64]
    estimate: npt.NDArray[np.float64]
    choice: npt.NDArray[np.int64]


def initial_state(
    households: int, businesses: int, mix: StakerMix, rng: np.random.Generator
) -> StakerState:
    """Assign behaviours by the scenario's shares (largest remainder, then shuffled)."""
    shares = np.array([mix.loyal, mix.learner, mix.random, mix.informed])
    exact = shares * households
    counts = np.floor(exact).astype(np.int64)
    for k in np.argsort(-(exact - counts), kind="stable")[: households - int(counts.sum())]:
        counts[k] += 1
    behaviour = rng.permutation(np.repeat(np.arange(len(BEHAVIOURS)), counts))
    return StakerState(
        behaviour=behaviour.astype(np.int64),
        favourite=np.full(households, -1, dtype=np.int64),
        estimate=np.full((households, businesses), _OPTIMISM)
        + rng.uniform(0.0, _TIE_BREAK, (households, businesses)),
        choice=np.full(households, -1, dtype=np.int64),
    )


def choose(
    state: StakerState,
    available: npt.NDArray[np.bool_],
    true_value: npt.NDArray[np.float64],
    mix: StakerMix,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Every household's choice for the next round (−1: skip); updates ``state.choice``.

    Parameters
    ----------
    state : StakerState
        Behaviours and memory.
    available : numpy.ndarray of bool
        Businesses that exist this round.
    true_value : numpy.ndarray
        True value per business (only informed households use it).
    mix : StakerMix
        Skip probability and ε.
    rng : numpy.random.Generator
        The stakers' generator.
    """
    n = state.behaviour.size
    columns = np.flatnonzero(available)
    choice = np.full(n, -1, dtype=np.int64)
    if columns.size == 0:
        state.choice = choice
        return choice
    # Draw every random number every round, whatever the behaviours, so that a change of
    # one household's behaviour does not shift the others' streams.
    uniform_pick = columns[rng.integers(columns.size, size=n)]
    explore = rng.random(n) < mix.exploration
    skip = rng.random(n) < mix.skip_probability
    positive = np.clip(true_value[columns], 0.0, None)
    weights = (
        positive / positive.sum()
        if positive.sum() > 0
        else np.full(columns.size, 1.0 / columns.size)
    )
    informed_pick = columns[
        np.minimum(
            np.searchsorted(np.cumsum(weights), rng.random(n), side="right"), columns.size - 1
        )
    ]
    loyal = state.behaviour == 0
    unset = loyal & ((state.favourite < 0) | ~available[np.maximum(state.favourite, 0)])
    state.favourite[unset] = uniform_pick[unset]
    choice[loyal] = state.favourite[loyal]
    learner = state.behaviour == 1
    if learner.any():
        masked = np.where(available[None, :], state.estimate[learner], -np.inf)
        best = masked.argmax(axis=1)
        choice[learner] = np.where(explore[learner], uniform_pick[learner], best)
    rand = state.behaviour == 2
    choice[rand] = uniform_pick[rand]
    informed = state.behaviour == 3
    choice[informed] = informed_pick[informed]
    choice[skip] = -1
    state.choice = choice
    return choice


def learn(
    state: StakerState,
    staked: npt.NDArray[np.int64],
    payoff_per_token: npt.NDArray[np.float64],
    mix: StakerMix,
) -> None:
    """Learners update the estimate of the business they staked on in the round.

    Parameters
    ----------
    staked : numpy.ndarray of int
        The round's choice per household (−1: skipped).
    payoff_per_token : numpy.ndarray
        Each household's payoff in the round [coins per token]: reward minus slash.
    """
    rows = np.flatnonzero((state.behaviour == 1) & (staked >= 0))
    cols = staked[rows]
    old = state.estimate[rows, cols]
    state.estimate[rows, cols] = old + mix.learning_rate * (payoff_per_token[rows] - old)


def payoff_per_token(
    households: list[str],
    rewards_minor: Mapping[str, int],
    slashed_minor: Mapping[str, int],
    recycled_minor: Mapping[str, int],
    tokens_minor: Mapping[str, int],
) -> npt.NDArray[np.float64]:
    """Each household's payoff of a round per token it held [coins per token], for :func:`learn`.

    Coins rewarded plus pool tokens recycled to it minus tokens slashed (a token counted
    as one coin), divided by the tokens it held at the round's start. The refill is not
    a reward for the choice and is left out. Per token, so that a household holding 3
    tokens does not judge a business 3 times as good as one holding 1 does.

    Parameters
    ----------
    households : list of str
        Order of the result.
    rewards_minor : mapping of str to int
        Coins rewarded [coin minor units].
    slashed_minor, recycled_minor : mapping of str to int
        Tokens slashed and recycled [micro-tokens].
    tokens_minor : mapping of str to int
        Tokens held at the round's start [micro-tokens].

    Examples
    --------
    H1 held 2 tokens, got 0.02 coin and 0.01 recycled token; H2 held 0.5 token and lost
    0.05 of it:

    >>> payoff_per_token(["H1", "H2"], {"H1": 20_000}, {"H2": 50_000}, {"H1": 10_000},
    ...                  {"H1": 2_000_000, "H2": 500_000}).round(4).tolist()
    [0.015, -0.1]
    """
    payoff = np.zeros(len(households))
    for k, h in enumerate(households):
        won = rewards_minor.get(h, 0) / COIN_SCALE + recycled_minor.get(h, 0) / STAKE_TOKEN_SCALE
        lost = slashed_minor.get(h, 0) / STAKE_TOKEN_SCALE
        held = tokens_minor.get(h, 0) / STAKE_TOKEN_SCALE
        payoff[k] = (won - lost) / held if held > 0 else 0.0
    return payoff
