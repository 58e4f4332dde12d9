"""The engine rates every household-day it delivers (MTF tier, evening lifeline)."""

from __future__ import annotations

from scenarios import run_scenario
from scenarios.kpis import run_kpis


def test_every_household_day_is_rated_once(make_scenario):
    result = run_scenario(make_scenario(days=3))
    d = result.daily
    tiers = d[[f"mtf_tier_{k}" for k in range(6)]].sum(axis=1)
    assert (tiers == d["lifeline_households"]).all()
    assert (d["lifeline_households"] <= d["households"]).all()
    assert (d["lifeline_households"] > 0).all()  # the village's 40 homes have credit
    assert (d["lifeline_delivered"] <= d["lifeline_households"]).all()
    assert set(d["physics_allows"]) <= {0.0, 1.0}
    kpis = run_kpis(result)
    shares = [kpis[f"mtf_tier_{k}_share"] for k in range(6)]
    assert abs(sum(shares) - 1.0) < 1e-9
    assert 0.0 <= kpis["evening_lifeline_share"] <= 1.0
    assert 0.0 <= kpis["business_share"] <= 1.0
