"""A planner scenario: seed 003's ZI agents trade the community's surplus for a day.

Some households get rooftop PV (the site's pvlib chain under clear sky, scaled per kWp);
every household draws its demand profile (:func:`forecasts.demand.demand_kw`). Each period:

1. a household's surplus is stored as WATT (minted by ``watt:battery``), up to its cap Bmax;
   what the cap refuses is spilled (sold to the hour's pool or curtailed: counted here);
2. its deficit burns its own WATT first; what remains comes from the container at the
   tariff (counted, not traded);
3. every household's ZI agent (:func:`settlement.agents.zi_orders`) posts a buy below its low
   threshold or a sell above its high one at its own target prices, in random order; orders
   expire after ``order_life``; the book retries crossed orders (holdings changed).

Trades settle one by one on a real SQLite ledger (:class:`settlement.market.Market`), so the
day ends with a ledger that verifies, coins and WATT conserved between users.

What it tells a planner: how much of the surplus neighbours buy from each other at the
prices people set, and at what mean price, against the container's tariff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from forecasts.demand import demand_kw
from forecasts.pv import clear_sky, pv_ac_power_kw
from microgrid import Site, TimeGrid
from settlement.agents import ZiSettings, zi_orders
from settlement.hourly import price_at
from settlement.ledger import (
    FIAT_BRIDGE,
    WATT_ISSUER,
    Asset,
    Batch,
    Transfer,
    user_account,
)
from settlement.market import Market
from settlement.orderbook import Tick
from settlement.store import LedgerStore

__all__ = ["MarketDayResult", "MarketScenario", "run_market_day"]


@dataclass(frozen=True, slots=True)
class MarketScenario:
    """What the market day varies.

    Attributes
    ----------
    day : datetime
        Start of the simulated day (aware; UTC midnight is fine).
    prosumer_share : float
        Fraction of households with rooftop PV.
    rooftop_kwp : tuple of float
        Range of their array sizes [kWp], drawn uniformly.
    bmax_wh : int
        Cap on each household's WATT [Wh].
    opening_coins : int
        Coins each household starts with [µcoin].
    thresholds_wh : tuple of int
        Each agent's ``(low, high)`` balance thresholds [Wh].
    price_fraction : tuple of float
        Agents' target prices as fractions of the household tariff, drawn uniformly: buyers
        below the tariff (why buy from a neighbour otherwise), sellers above a floor.
    order_life : timedelta
        How long an agent's order stands.
    step : timedelta
        Period length.
    seed : int
        Random seed (prosumers, array sizes, prices, agent order).
    """

    day: datetime
    prosumer_share: float = 0.2
    rooftop_kwp: tuple[float, float] = (0.3, 1.0)
    bmax_wh: int = 4_000
    opening_coins: int = 2_000_000
    thresholds_wh: tuple[int, int] = (300, 1_500)
    price_fraction: tuple[float, float] = (0.4, 1.0)
    order_life: timedelta = timedelta(hours=1)
    step: timedelta = timedelta(minutes=15)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class MarketDayResult:
    """What the day produced.

    Attributes
    ----------
    surplus_wh, stored_wh, spilled_wh : int
        Rooftop energy above the household's own demand; the part stored as WATT; the part
        Bmax refused [Wh].
    traded_wh : int
        WATT that changed hands between neighbours [Wh].
    trades : int
        Number of trades.
    coins_moved : int
        Coins paid for them [µcoin].
    mean_price_per_kwh : float
        Volume-weighted mean trade price [µcoin/kWh] (NaN without trades).
    tariff_per_kwh : int
        The household tariff at noon [µcoin/kWh], for comparison.
    from_container_wh : int
        Household demand neither own PV nor own WATT covered [Wh].
    ledger_ok : bool
        The ledger verified at the end of the day.
    """

    surplus_wh: int
    stored_wh: int
    spilled_wh: int
    traded_wh: int
    trades: int
    coins_moved: int
    mean_price_per_kwh: float
    tariff_per_kwh: int
    from_container_wh: int
    ledger_ok: bool


def _rooftop_kw_per_kwp(site: Site, grid: TimeGrid) -> pd.Series:
    """Clear-sky AC power of 1 kWp of the site's array type at each period's midpoint [kW]."""
    per_kwp = site.pv.model_copy(update={"dc_capacity_kwp": 1.0, "inverter_ac_capacity_kw": 1.0})
    weather = clear_sky(site.location, grid.midpoints)
    power = pv_ac_power_kw(per_kwp, site.location, weather)
    return pd.Series(power.to_numpy(), index=grid.index)


def run_market_day(site: Site, scenario: MarketScenario, store: LedgerStore) -> MarketDayResult:
    """Simulate one day of the peer-to-peer market on ``store`` (an empty ledger).

    Raises
    ------
    ValueError
        If the scenario's parameters are out of range.
    """
    _check(scenario)
    rng = random.Random(scenario.seed)
    steps = round(timedelta(days=1) / scenario.step)
    grid = TimeGrid(pd.Timestamp(scenario.day), steps, pd.Timedelta(scenario.step))
    step_h = grid.step_hours
    households = [c.id for c in site.households]
    demand = demand_kw(site, grid)[households]
    per_kwp = _rooftop_kw_per_kwp(site, grid)
    low_kwp, high_kwp = scenario.rooftop_kwp
    kwp = {
        h: rng.uniform(low_kwp, high_kwp)
        for h in households
        if rng.random() < scenario.prosumer_share
    }
    tariff = price_at(site.tariffs[site.households[0].tariff], 12)
    low_f, high_f = scenario.price_fraction
    agents = []
    for h in households:
        buy = max(1, round(tariff * rng.uniform(low_f, high_f)))
        sell = max(1, round(tariff * rng.uniform(low_f, high_f)))
        agents.append(ZiSettings(user_account(h), buy, sell, *scenario.thresholds_wh))
    store.post(
        Batch(
            f"market-day:{scenario.seed}:opening",
            tuple(
                Transfer(
                    FIAT_BRIDGE, user_account(h), Asset.COIN, scenario.opening_coins, "fiat.topup"
                )
                for h in households
            ),
        ),
        scenario.day,
    )
    market = Market(
        store,
        {user_account(h): scenario.bmax_wh for h in households},
        prefix=f"market-day:{scenario.seed}",
    )
    surplus = stored = spilled = from_container = 0
    for k, start in enumerate(grid.index):
        moves: list[Transfer] = []
        for h in households:
            pv_wh = round(kwp.get(h, 0.0) * float(per_kwp.iloc[k]) * step_h * 1000)
            need_wh = round(float(demand[h].iloc[k]) * step_h * 1000)
            balance = store.balance(user_account(h), Asset.WATT)
            if pv_wh > need_wh:
                extra = pv_wh - need_wh
                keep = min(extra, max(scenario.bmax_wh - balance, 0))
                surplus += extra
                stored += keep
                spilled += extra - keep
                if keep:
                    moves.append(
                        Transfer(WATT_ISSUER, user_account(h), Asset.WATT, keep, "watt.charge")
                    )
            elif need_wh > pv_wh:
                short = need_wh - pv_wh
                burn = min(short, balance)
                from_container += short - burn
                if burn:
                    moves.append(
                        Transfer(user_account(h), WATT_ISSUER, Asset.WATT, burn, "watt.discharge")
                    )
        at = start.to_pydatetime()
        if moves:
            store.post(Batch(f"market-day:{scenario.seed}:energy:{k}", tuple(moves)), at)
        at_us = market.now_us(at)
        market.submit(Tick(at_us))
        expires = at_us + round(scenario.order_life / timedelta(microseconds=1))
        for settings in rng.sample(agents, len(agents)):
            balance = store.balance(settings.owner, Asset.WATT)
            for action in zi_orders(
                settings, balance, market.book.orders(settings.owner), at_us, expires
            ):
                market.submit(action)
    traded = sum(t.quantity_wh for t in market.trades)
    coins = sum(t.cost for t in market.trades)
    mean_price = (
        sum(t.price_per_kwh * t.quantity_wh for t in market.trades) / traded
        if traded
        else float("nan")
    )
    return MarketDayResult(
        surplus_wh=surplus,
        stored_wh=stored,
        spilled_wh=spilled,
        traded_wh=traded,
        trades=len(market.trades),
        coins_moved=coins,
        mean_price_per_kwh=mean_price,
        tariff_per_kwh=tariff,
        from_container_wh=from_container,
        ledger_ok=store.verify().ok,
    )


def _check(scenario: MarketScenario) -> None:
    problems = []
    if scenario.day.tzinfo is None:
        problems.append("day must be timezone-aware (e.g. 2026-08-01T00:00Z)")
    if not 0 <= scenario.prosumer_share <= 1:
        problems.append(f"prosumer_share {scenario.prosumer_share} must be in 0…1")
    low_kwp, high_kwp = scenario.rooftop_kwp
    if not 0 < low_kwp <= high_kwp:
        problems.append(f"rooftop_kwp {scenario.rooftop_kwp} must be 0 < low ≤ high")
    low_f, high_f = scenario.price_fraction
    if not 0 < low_f <= high_f:
        problems.append(f"price_fraction {scenario.price_fraction} must be 0 < low ≤ high")
    if scenario.bmax_wh < 0 or scenario.opening_coins < 0:
        problems.append("bmax_wh and opening_coins must be ≥ 0")
    if timedelta(days=1) % scenario.step:
        problems.append(f"step {scenario.step} must divide a day")
    if problems:
        raise ValueError("; ".join(problems))
