"""Planners' comparison of contracted and uncontracted large consumers (seed 004)."""

from __future__ import annotations

import pytest

from lastwatt.cli import main
from microgrid import load_site
from scenarios.contracts import ContractScenario, compare_contracts, large_consumers

SMALL = ContractScenario(weeks=1, runs=2, seed=3)


@pytest.fixture(scope="module")
def site():
    return load_site(None)


def test_a_contract_halves_forecast_error_and_reserve_and_serves_more(site):
    frame = compare_contracts(site, SMALL)
    means = frame.drop(columns="run").groupby("mode").mean()
    c, u = means.loc["contracted"], means.loc["uncontracted"]
    # The band reveals the consumer's own plan: the operator's error and reserve shrink.
    assert c.forecast_mae_kwh_per_h < 0.5 * u.forecast_mae_kwh_per_h
    assert c.reserve_kw < 0.5 * u.reserve_kw
    assert c.served_kwh_per_day > u.served_kwh_per_day
    assert c.community_value_per_day > u.community_value_per_day
    # Only contracts pay penalties and earn discounts; a discount never exceeds the bonus.
    assert u.penalties_coin_per_week == u.discounts_coin_per_week == 0
    assert c.penalties_coin_per_week > 0
    consumers = len(large_consumers(site, SMALL.min_power_kw))
    most = consumers * SMALL.bonus_per_week * SMALL.discount_ppm / 1e6 / 1e6
    assert 0 < c.discounts_coin_per_week <= most


def test_runs_are_reproducible_from_their_seed(site):
    assert compare_contracts(site, SMALL).equals(compare_contracts(site, SMALL))


def test_no_slips_no_penalties(site):
    frame = compare_contracts(site, ContractScenario(weeks=1, runs=1, slip_probability=0.0))
    contracted = frame[frame["mode"] == "contracted"].iloc[0]
    assert contracted.penalties_coin_per_week == 0


def test_compare_command_prints_the_table_and_refuses_bad_input(capsys):
    assert main(["contracts", "compare", "--weeks", "1", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "reserve_kw" in out
    assert "contracted" in out
    assert main(["contracts", "compare", "--runs", "0"]) == 2
    assert "--runs must be at least 1" in capsys.readouterr().err
