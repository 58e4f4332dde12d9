"""The market-day planner scenario: ZI agents trade rooftop surplus on a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scenarios.market import MarketScenario, run_market_day
from settlement import SqliteLedgerStore
from settlement.ledger import WATT_ISSUER, Asset
from tests.sites import village

DAY = datetime(2026, 8, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def site():
    return village(("HG01", "HG02"), lambda b: b[:2], 1, 10.0, 9.0, 20.0, 10.0)


def run(tmp_path, site, **kwargs):
    scenario = MarketScenario(DAY, prosumer_share=0.4, seed=5, **kwargs)
    with SqliteLedgerStore(tmp_path / f"{len(kwargs)}.sqlite", synchronous="NORMAL") as store:
        result = run_market_day(site, scenario, store)
        users = {h.id: h for h in site.households}
        coins = store.balances(Asset.COIN, "user:")
        watt = store.balances(Asset.WATT, "user:")
        return result, coins, watt, store.balance(WATT_ISSUER, Asset.WATT), len(users)


def test_neighbours_trade_the_surplus_and_the_books_balance(tmp_path, site):
    result, coins, watt, issuer, n = run(tmp_path, site)
    assert result.ledger_ok
    assert result.surplus_wh > 0
    assert result.trades > 0
    assert 0 < result.traded_wh <= result.stored_wh
    assert result.mean_price_per_kwh <= result.tariff_per_kwh  # agents never bid above it
    # coins only moved between households; WATT outstanding is what the battery issued
    assert sum(coins.values()) == n * MarketScenario(DAY).opening_coins
    assert sum(watt.values()) == -issuer
    assert max(watt.values()) <= MarketScenario(DAY).bmax_wh
    assert result.spilled_wh + result.stored_wh == result.surplus_wh


def test_the_day_is_reproducible_and_bad_parameters_are_named(tmp_path, site):
    first = run(tmp_path / "a", site)[0]
    again = run(tmp_path / "b", site)[0]
    assert first == again
    with pytest.raises(ValueError, match="prosumer_share"):
        run_market_day(site, MarketScenario(DAY, prosumer_share=2.0), None)
