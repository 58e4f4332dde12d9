"""The contract tier: a contracted consumer's band is firm demand in dispatch and control.

Hand-solvable cases on 4 one-hour periods (relay blocks of one hour, efficiencies of 1):
the band's lower edge is served before the reserve and before other businesses when
supply allows; below it the shortfall is the grid's (waived, no penalty); the upper edge
plus tolerance caps the consumer; the Setpoints' meter limit lies inside the band.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatch import DispatchPolicy, DispatchStatus, solve_dispatch
from dispatch.model import TIER_TOLERANCE_KWH
from dispatch.problem import (
    TIER_ORDER,
    ContractBand,
    ProblemError,
    contract_band,
    firm_demand_kw,
)
from dispatch.setpoints import Setpoints
from lastwatt.contract_job import dispatch_band, plan_allotment_wh
from microgrid.site import SitePolicy, complete_tier_order
from settlement import SqliteLedgerStore
from settlement.contracts import (
    CONTRACT_BUDGET,
    BandContract,
    IntervalUsage,
    assess_period,
    open_contract,
    settle_interval,
    statement,
)
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer
from tests.dispatch.test_dispatch import battery, business, energy, problem

START = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def band(lower: float, upper: float, *, tolerance: float = 0.0, periods: int = 4) -> ContractBand:
    return contract_band("mill-mar", "mill", [(lower, upper)] * periods, tolerance)


def mill_and_shop(*, mill_demand: float = 10.0) -> tuple:
    # The shop carries almost every stake: without the contract tier it takes nearly all.
    return (
        business("mill", stake=1, demand=mill_demand),
        business("shop", stake=100, demand=10.0),
    )


def test_the_band_is_served_before_other_businesses_when_supply_allows():
    # 5 kW of sun; the mill's band is 3–6 kW. Stakes alone would give it 5/101 of 20 kWh.
    p = replace(problem(pv=5.0, businesses=mill_and_shop()), contracts=(band(3.0, 6.0),))
    s = solve_dispatch(p)
    assert s.status is DispatchStatus.OPTIMAL
    assert s.allotment_kw["mill"].tolist() == pytest.approx([3.0] * 4, abs=1e-6)
    assert s.allotment_kw["shop"].tolist() == pytest.approx([2.0] * 4, abs=1e-6)
    assert "contract_short" not in s.violations_kwh


def test_a_contracted_consumer_without_stake_still_gets_its_band_first():
    # Without stake the mill is surplus-only: only curtailed energy would reach it. The
    # band's blocks are the contract tier's to switch, so it gets 3 kW, the shop the rest.
    unstaked = (business("mill", stake=0, demand=10.0), business("shop", stake=100, demand=10.0))
    p = replace(problem(pv=5.0, businesses=unstaked), contracts=(band(3.0, 6.0),))
    s = solve_dispatch(p)
    assert s.allotment_kw["mill"].tolist() == pytest.approx([3.0] * 4, abs=1e-6)
    assert s.allotment_kw["shop"].tolist() == pytest.approx([2.0] * 4, abs=1e-6)


def test_no_lower_tier_relay_takes_a_sliver_of_the_band():
    # 3.75 kW of sun; the band asks 3 kW; a carpenter staked 100:1 runs at 0.8 kW or not
    # at all. Switching it on would take 0.05 kW of the band each hour: the band holds
    # (a gap of 1 Wh, not the relay tiers' 0.1 kWh) and the carpenter stays off.
    carpenter = business("carpenter", stake=100, demand=0.8, pmin=0.8)
    mill = business("mill", stake=1, demand=10.0)
    p = replace(problem(pv=3.75, businesses=(mill, carpenter)), contracts=(band(3.0, 6.0),))
    s = solve_dispatch(p)
    assert s.allotment_kw["mill"].tolist() == pytest.approx([3.75] * 4, abs=1e-6)
    assert energy(s, "carpenter") == pytest.approx(0.0, abs=1e-6)


def test_the_band_is_served_before_the_reserve_and_the_site_policy_can_move_it():
    # Dark; a 20 kWh battery, full. The clinic draws 1 kW: 4 kWh over the horizon and a
    # reserve of 4 kWh at its end (P10 = 0, the next 4 h repeat). The mill's band asks
    # 4 kW a hour: 16 kWh + 4 kWh = all the battery holds, so the reserve goes short.
    bat = battery(soc=20.0, capacity=20.0, power=20.0)
    p = problem(pv=0.0, priority=1.0, bat=bat, businesses=mill_and_shop(), policy=DispatchPolicy())
    p = replace(p, contracts=(band(4.0, 6.0),))
    first = solve_dispatch(p)
    assert energy(first, "mill") == pytest.approx(16.0, abs=1e-6)
    assert energy(first, "shop") == pytest.approx(0.0, abs=1e-6)
    assert first.violations_kwh["reserve_short"] == pytest.approx(4.0, abs=1e-6)
    # A site that ranks the reserve first ([policy] tier_order) keeps it: 12 kWh for the mill.
    order = [t for t in TIER_ORDER if t != "contract"]
    order.insert(order.index("reserve") + 1, "contract")
    after = solve_dispatch(replace(p, policy=DispatchPolicy(tier_order=tuple(order))))
    assert energy(after, "mill") == pytest.approx(12.0, abs=1e-6)
    assert "reserve_short" not in after.violations_kwh


def test_below_the_band_the_shortfall_is_the_grids_waived_and_never_a_penalty(tmp_path):
    # 2 kW of sun against a 3–5 kW band: the mill gets all of it, ahead of the shop, and
    # the plan's figure (2 kWh an hour) waives the 1 kWh under the band in every hour.
    p = replace(problem(pv=2.0, businesses=mill_and_shop()), contracts=(band(3.0, 5.0),))
    s = solve_dispatch(p)
    assert s.allotment_kw["mill"].tolist() == pytest.approx([2.0] * 4, abs=1e-6)
    assert energy(s, "shop") == pytest.approx(0.0, abs=1e-6)
    assert s.violations_kwh["contract_short"] == pytest.approx(4.0, abs=1e-6)  # the plan says so
    contract = BandContract(
        "mill-mar", "mill", START, H, ((3000, 5000),) * 4, 0, 2_000_000, 400_000, 200_000, 0
    )
    allotted = plan_allotment_wh(contract, s.allotment_kw["mill"], START)
    assert allotted == dict.fromkeys(contract.interval_starts(), 2000)
    # The mill draws what it was allotted: 1 kWh under the band, the grid's every hour.
    usage = {t: IntervalUsage(2000, allotted_wh=wh) for t, wh in allotted.items()}
    outcomes = assess_period(contract, usage)
    assert [o.under_waived for o in outcomes] == [True] * 4
    # Posted and read back: the statement shows every hour waived, the bonus untouched.
    with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        budget = Transfer(FIAT_BRIDGE, CONTRACT_BUDGET, Asset.COIN, 2_000_000, "fiat.topup")
        store.post(Batch("budget", (budget,)), START)
        open_contract(store, contract, START)
        for outcome in outcomes:
            settle_interval(store, contract, outcome, outcome.start + H)
        standing = statement(store, contract, outcomes)
        assert store.verify().ok
    assert [row.outcome.under_waived for row in standing.rows] == [True] * 4
    assert standing.penalties == 0
    assert standing.bonus_left == 2_000_000
    # Had the plan allotted the band, the same draw would be the mill's: 0.2 coin an hour.
    usage = {t: IntervalUsage(2000, allotted_wh=3000) for t in allotted}
    assert [o.penalty for o in assess_period(contract, usage)] == [200_000] * 4


def test_the_consumer_never_gets_more_than_the_upper_edge_plus_tolerance():
    # 10 kW of sun, nobody else: the mill would take 10 kW; its band stops it at 4.5.
    alone = (business("mill", stake=1, demand=10.0),)
    p = replace(problem(pv=10.0, businesses=alone), contracts=(band(2.0, 4.0, tolerance=0.5),))
    s = solve_dispatch(p)
    assert s.allotment_kw["mill"].tolist() == pytest.approx([4.5] * 4, abs=1e-6)
    assert s.curtailed_kwh == pytest.approx(4 * 5.5, abs=1e-6)


@pytest.mark.parametrize("pv", [6.0, 20.0], ids=["short", "plenty"])
def test_the_setpoints_hold_the_consumers_meter_limit_inside_its_band(pv):
    # The shop is staked 100:1. Short: 6 kW, stakes would leave the mill nothing; plenty:
    # 20 kW, it would take 10. Either way its meter limit stays in [3, 4 + 0.5] kW.
    p = replace(
        problem(pv=pv, businesses=mill_and_shop()), contracts=(band(3.0, 4.0, tolerance=0.5),)
    )
    setpoints = Setpoints.from_schedule(solve_dispatch(p))
    for start in setpoints.index:
        now = setpoints.at(start)
        assert now is not None
        assert now.relays["mill"]
        assert 3.0 - 1e-6 <= now.power_limit_kw["mill"] <= 4.5 + 1e-6


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pv=st.floats(0.0, 12.0),
    lower=st.floats(0.0, 6.0),
    width=st.floats(0.0, 4.0),
    tolerance=st.floats(0.0, 1.0),
)
@example(pv=0.5, lower=1e-5, width=0.0, tolerance=0.5)
def test_the_consumer_gets_its_lower_edge_or_all_the_supply_and_never_above_its_band(
    pv, lower, width, tolerance
):
    p = replace(
        problem(pv=pv, businesses=mill_and_shop()),
        contracts=(band(lower, lower + width, tolerance=tolerance),),
    )
    mill = solve_dispatch(p).allotment_kw["mill"].to_numpy()
    # Short of the lower edge by at most the contract tier's stated gap (1 Wh): a band
    # of 0.01 W (4e-5 kWh over the horizon) may be left off inside it.
    shortfall_kwh = np.clip(min(lower, pv) - mill, 0.0, None).sum() * p.step_hours
    assert shortfall_kwh <= TIER_TOLERANCE_KWH + 1e-6
    assert np.all(mill <= lower + width + tolerance + 1e-6)


def test_firm_demand_is_the_forecast_clipped_into_the_band_and_untouched_outside():
    mill = business("mill", stake=1, demand=[0.5, 3.0, 9.0, 9.0])
    b = contract_band("c", "mill", [(1.0, 4.0), (1.0, 4.0), (1.0, 4.0), None], 0.5)
    assert firm_demand_kw(mill, b).tolist() == [1.0, 3.0, 4.5, 9.0]
    assert firm_demand_kw(mill, None).tolist() == [0.5, 3.0, 9.0, 9.0]


def test_a_contract_on_the_dispatch_grid_is_its_bands_as_mean_power_plus_tolerance():
    contract = BandContract(
        "mill-mar", "mill", START + H, H, ((3000, 5000), (1000, 2000)), 500, 0, 1, 1, 0
    )
    index = pd.date_range(START, periods=16, freq="15min")
    b = dispatch_band(contract, index, dt.timedelta(minutes=15))
    assert b is not None
    assert b.lower_kw.tolist() == [0.0] * 4 + [3.0] * 4 + [1.0] * 4 + [0.0] * 4
    assert b.upper_kw.tolist() == [np.inf] * 4 + [5.5] * 4 + [2.5] * 4 + [np.inf] * 4
    later = pd.date_range(START + 3 * H, periods=4, freq="15min")
    assert dispatch_band(contract, later, dt.timedelta(minutes=15)) is None


def test_a_tier_order_written_before_the_contract_tier_gets_it_after_the_lifeline():
    old = ("soc_window", "priority", "household", "reserve", "business", "beyond_plan")
    assert complete_tier_order(old) == TIER_ORDER
    assert SitePolicy(tier_order=old).tier_order == TIER_ORDER
    assert DispatchPolicy(tier_order=old).tier_order == TIER_ORDER


@pytest.mark.parametrize(
    ("contracts", "field"),
    [
        ((replace(band(1.0, 2.0), connection_id="bakery"),), "connection_id"),
        ((band(1.0, 2.0), band(1.0, 2.0)), "connection_id"),
        ((band(1.0, 2.0, periods=3),), "lower_kw"),
        ((band(3.0, 2.0),), "upper_kw"),
    ],
    ids=["not-a-business", "twice", "wrong-length", "upper-below-lower"],
)
def test_a_band_dispatch_cannot_plan_with_is_refused_naming_the_field(contracts, field):
    p = replace(problem(pv=1.0, businesses=mill_and_shop()), contracts=contracts)
    with pytest.raises(ProblemError, match=rf"\.{field}:"):
        solve_dispatch(p)


def test_the_fallback_rule_serves_the_band_first_and_caps_it_too():
    """When the MILP cannot plan, the rule's plan keeps the band as the tier does: the
    lower edge before stake-weighted shares, the upper edge plus tolerance as a cap."""
    from dispatch import proportional_rule

    short = replace(problem(pv=5.0, businesses=mill_and_shop()), contracts=(band(3.0, 6.0),))
    s = proportional_rule(short)
    # 3 kW of band first; the 2 kW left shared 1:100 by stake (the mill's 1/101 on top).
    assert s.allotment_kw["mill"].tolist() == pytest.approx([3.0 + 2.0 / 101] * 4, abs=1e-6)
    assert "contract_short" not in s.violations_kwh
    alone = (business("mill", stake=1, demand=10.0),)
    plenty = replace(problem(pv=10.0, businesses=alone), contracts=(band(2.0, 4.0, tolerance=0.5),))
    assert proportional_rule(plenty).allotment_kw["mill"].tolist() == pytest.approx([4.5] * 4)
