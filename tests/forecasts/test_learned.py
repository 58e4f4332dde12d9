"""Demand learned from meters: the profile as prior, censored hours left out, error reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.learned import DemandLearner


def test_a_persistent_change_is_learned_and_beats_the_profile():
    learner = DemandLearner(["H001", "H002"], prior_days=7, error_window=24 * 60)
    rng = np.random.default_rng(1)
    for _ in range(60):
        for hour in range(24):
            profile = {"H001": 0.2, "H002": 0.1}
            metered = {"H001": 0.4 * rng.uniform(0.8, 1.2), "H002": 0.1 * rng.uniform(0.8, 1.2)}
            learner.observe(hour, metered, profile, censored=set())
    assert learner.factor("H001", 19) == pytest.approx(2.0, abs=0.15)
    assert learner.factor("H002", 19) == pytest.approx(1.0, abs=0.1)
    error = learner.error()
    assert error.mae_kwh < 0.6 * error.profile_mae_kwh
    assert error.profile_bias_kwh == pytest.approx(-0.1, abs=0.01)  # the profile under-forecasts


def test_censored_hours_teach_nothing():
    learner = DemandLearner(["H001"])
    for _ in range(30):
        # Switched off (prepaid credit gone): the meter reads zero, the want was not zero.
        learner.observe(20, {"H001": 0.0}, {"H001": 0.3}, censored={"H001"})
    assert learner.factor("H001", 20) == 1.0
    assert learner.seen.sum() == 0
    assert learner.error().hours == 0


def test_the_learned_factors_scale_the_static_demand_by_local_hour():
    learner = DemandLearner(["H001", "B01"])
    for _ in range(50):
        learner.observe(19, {"H001": 0.6}, {"H001": 0.2}, censored=set())
    index = pd.date_range("2026-08-01T17:00Z", periods=12, freq="15min")  # 18:00–20:45 local
    static = pd.DataFrame({"H001": 0.8, "B01": 1.0}, index=index)
    learned = learner.apply(static, "Africa/Niamey")
    local = index.tz_convert("Africa/Niamey").hour
    assert (learned.loc[local == 19, "H001"] > 2 * 0.8).all()
    assert (learned.loc[local != 19, "H001"] == 0.8).all()
    assert (learned["B01"] == 1.0).all()


def test_state_survives_a_restart_and_a_changed_site():
    learner = DemandLearner(["H001", "H002"])
    learner.observe(7, {"H001": 0.5, "H002": 0.2}, {"H001": 0.25, "H002": 0.2}, set())
    again = DemandLearner.from_json(learner.to_json(), ["H002", "H003"])
    assert again.factor("H002", 7) == learner.factor("H002", 7)
    assert again.factor("H003", 7) == 1.0
    assert again.error() == learner.error()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 5), st.floats(0.01, 5), st.booleans()), min_size=1, max_size=60)
)
def test_factor_stays_between_one_and_the_metered_ratio(hours):
    learner = DemandLearner(["H001"])
    for metered, profile, censored in hours:
        learner.observe(12, {"H001": metered}, {"H001": profile}, {"H001"} if censored else set())
    seen = [(m, p) for m, p, c in hours if not c]
    factor = learner.factor("H001", 12)
    if not seen:
        assert factor == 1.0
    else:
        ratio = sum(m for m, _ in seen) / sum(p for _, p in seen)
        assert min(1.0, ratio) - 1e-9 <= factor <= max(1.0, ratio) + 1e-9
