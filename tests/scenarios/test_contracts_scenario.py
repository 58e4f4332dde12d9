"""Planners' comparison of contracted and uncontracted large consumers (seed 004)."""

from __future__ import annotations

import numpy as np
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


def test_contracted_lower_edges_are_served_before_the_reserve_and_the_upper_caps_the_draw():
    # One hour, two consumers forecasting 6 kWh each; the first is contracted at 5 kWh
    # lower edge and 6.5 kWh upper edge plus tolerance, the second has no band.
    from scenarios.contracts import _serve

    forecast = np.array([[6.0], [6.0]])
    band = (np.array([[5.0], [0.0]]), np.array([[6.5], [np.inf]]))
    # Short: 10 kWh of supply, a 4 kWh reserve, both draw their forecast. The contract
    # tier first (5 kWh), then the reserve (4 kWh), the last 1 kWh by forecast, 1:6:
    # planned 5 1/7 and 6/7; what they draw above it (6/7 and 5 1/7) shares the reserve,
    # 4 of 6 kWh: + 4/7 and + 3 3/7.
    _, served = _serve(forecast, forecast, np.array([10.0]), 4.0, band)
    assert served[:, 0] == pytest.approx([5 + 5 / 7, 4 + 2 / 7])
    # Without the band: 3 and 3 planned, the reserve's 4 kWh split evenly, 5 and 5.
    _, served = _serve(forecast, forecast, np.array([10.0]), 4.0)
    assert served[:, 0] == pytest.approx([5.0, 5.0])
    # Plenty: 20 kWh, a reserve of 8; the first draws 8 kWh, its meter stops it at 6.5.
    actual = np.array([[8.0], [6.0]])
    _, served = _serve(forecast, actual, np.array([20.0]), 8.0, band)
    assert served[:, 0] == pytest.approx([6.5, 6.0])
    _, served = _serve(forecast, actual, np.array([20.0]), 8.0)
    assert served[:, 0] == pytest.approx([8.0, 6.0])
