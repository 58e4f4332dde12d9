"""Learning stakers: the rules that decide whether stakes settle, solved by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scenarios.config import StakerMix
from scenarios.stakers import choose, initial_state, learn, payoff_per_token

LEARNERS = StakerMix(
    loyal=0.0, learner=1.0, random=0.0, skip_probability=0.0, exploration=0.0, learning_rate=0.3
)


def one_learner(businesses: int = 3) -> tuple[object, np.random.Generator]:
    rng = np.random.default_rng(7)
    return initial_state(1, businesses, LEARNERS, rng), rng


def test_a_learner_keeps_a_business_that_paid():
    """Round 1 pays 0.01 coin per token on its business: the estimate becomes
    0 + 0.3 · (0.01 − 0) = 0.003 (+ at most 0.001 of tie-break), above every untried
    business (< 0.001), so round 2 stakes on the same business. With the former prior
    0.05 it was 0.05 + 0.3 · (0.01 − 0.05) = 0.038 < 0.05 and the learner left."""
    state, rng = one_learner()
    available = np.ones(3, dtype=bool)
    values = np.zeros(3)
    first = choose(state, available, values, LEARNERS, rng).copy()
    learn(state, first, np.array([0.01]), LEARNERS)
    assert 0.003 <= state.estimate[0, first[0]] < 0.004
    second = choose(state, available, values, LEARNERS, rng)
    assert second[0] == first[0]


def test_a_learner_leaves_a_business_that_slashed():
    """A slash of 0.1 token per token: the estimate becomes −0.03, below any untried one."""
    state, rng = one_learner()
    available = np.ones(3, dtype=bool)
    first = choose(state, available, np.zeros(3), LEARNERS, rng).copy()
    learn(state, first, np.array([-0.1]), LEARNERS)
    assert -0.0301 < state.estimate[0, first[0]] < -0.029  # −0.03 + 0.7 · tie-break
    assert choose(state, available, np.zeros(3), LEARNERS, rng)[0] != first[0]


def test_payoff_is_per_token_held():
    """3 tokens rewarded 0.03 coin earn what 1 token rewarded 0.01 coin earns."""
    payoff = payoff_per_token(
        ["H1", "H2"],
        {"H1": 30_000, "H2": 10_000},
        {},
        {},
        {"H1": 3_000_000, "H2": 1_000_000},
    )
    assert np.allclose(payoff, [0.01, 0.01])


@given(
    tokens=st.integers(1, 10_000_000),
    reward=st.integers(0, 10_000_000),
    slashed=st.integers(0, 10_000_000),
    factor=st.integers(2, 5),
)
def test_payoff_does_not_depend_on_how_many_tokens(tokens, reward, slashed, factor):
    """Scaling a household's tokens, coins and slashes by k leaves its payoff per token."""
    one = payoff_per_token(["H"], {"H": reward}, {"H": slashed}, {}, {"H": tokens})
    many = payoff_per_token(
        ["H"], {"H": reward * factor}, {"H": slashed * factor}, {}, {"H": tokens * factor}
    )
    assert np.allclose(one, many)
