"""The one physics: meters' limits and budgets, inverter overload protection, balance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.physics import (
    POWER_ROUNDING_KW,
    SOC_ROUNDING_KWH,
    BatteryLimits,
    ContainerState,
    Protection,
    StepInputs,
    step,
)

BATTERY = BatteryLimits(10.0, 1.0, 10.0, 4.0, 0.95, 0.95)
MINUTE_H = 1.0 / 60.0


def inputs(demand, closed=None, pv=0.0, limit=None, budget=None, dt=MINUTE_H, discharge=4.0):
    demand = np.asarray(demand, dtype=float)
    return StepInputs(
        dt_h=dt,
        pv_available_kw=pv,
        pv_limit_kw=np.inf,
        charge_limit_kw=4.0,
        discharge_limit_kw=discharge,
        demand_kw=demand,
        closed=np.ones(len(demand), bool) if closed is None else np.asarray(closed),
        power_limit_kw=None if limit is None else np.asarray(limit, dtype=float),
        energy_budget_wh=None if budget is None else np.asarray(budget, dtype=float),
    )


def test_meter_trips_above_its_limit_recloses_after_the_delay_then_runs_what_fits():
    state = ContainerState.new(5.0, 1)
    protection = Protection(meter_reclose_h=2 * MINUTE_H)
    first = step(state, BATTERY, inputs([1.5], limit=[1.0]), protection)
    assert first.meter_trips.tolist() == [True]
    assert first.drawn_kw[0] == 0.0
    second = step(state, BATTERY, inputs([1.5], limit=[1.0]), protection)
    assert second.drawn_kw[0] == 0.0  # still open: 2 min delay
    assert not second.meter_trips.any()  # one trip, not one per step
    third = step(state, BATTERY, inputs([1.5], limit=[1.0]), protection)
    assert third.drawn_kw[0] == pytest.approx(1.0)  # reclosed, within the limit
    assert state.meter_trips.tolist() == [1]
    # Demand falls below the limit and rises again: a new trip.
    step(state, BATTERY, inputs([0.5], limit=[1.0]), protection)
    again = step(state, BATTERY, inputs([1.5], limit=[1.0]), protection)
    assert again.meter_trips.tolist() == [True]
    assert state.meter_trips.tolist() == [2]


def test_exhausted_budget_opens_the_meter_until_the_next_budget_period():
    state = ContainerState.new(9.0, 2)
    budget = [500.0, np.inf]  # Wh
    flows = step(state, BATTERY, inputs([1.0, 1.0], budget=budget, dt=1.0))
    assert flows.budgets_exhausted.tolist() == [True, False]
    assert state.meter_wh.tolist() == pytest.approx([500.0, 1000.0])
    later = step(state, BATTERY, inputs([1.0, 1.0], budget=budget, dt=0.1))
    assert later.drawn_kw.tolist() == pytest.approx([0.0, 1.0])
    state.start_budget_period()
    fresh = step(state, BATTERY, inputs([1.0, 1.0], budget=budget, dt=0.1))
    assert fresh.drawn_kw.tolist() == pytest.approx([1.0, 1.0])
    assert state.budget_exhaustions.tolist() == [1, 0]


def test_inverter_trips_on_overload_stays_dark_then_restarts():
    state = ContainerState.new(5.0, 2)
    protection = Protection(inverter_restart_h=3 * MINUTE_H)
    trip = step(state, BATTERY, inputs([3.0, 2.0], pv=0.0), protection)  # 5 kW > 4 kW
    assert trip.inverter_trip
    assert trip.tripped
    assert trip.load_kw == 0.0
    assert state.inverter_trips == 1
    # The load falls within the rating, but the inverter restarts only after 3 min.
    for _ in range(2):
        dark = step(state, BATTERY, inputs([3.0, 0.0]), protection)
        assert dark.tripped
        assert not dark.inverter_trip
        assert dark.load_kw == 0.0
    back = step(state, BATTERY, inputs([3.0, 0.0]), protection)
    assert not back.tripped
    assert back.load_kw == pytest.approx(3.0)
    assert state.inverter_trips == 1
    assert state.tripped_h == pytest.approx(3 * MINUTE_H)


def test_a_meter_limit_prevents_the_overload_that_switching_cannot():
    # The same business demand: limited at the meter it fits; unlimited it trips everyone.
    limited = step(ContainerState.new(5.0, 2), BATTERY, inputs([1.0, 5.0], limit=[np.inf, 2.5]))
    unlimited = step(ContainerState.new(5.0, 2), BATTERY, inputs([1.0, 5.0]))
    assert not limited.inverter_trip
    assert limited.drawn_kw[0] == pytest.approx(1.0)
    assert unlimited.inverter_trip
    assert unlimited.drawn_kw[0] == 0.0


@settings(max_examples=200, deadline=None)
@given(
    soc=st.floats(0.0, 10.0),
    pv=st.floats(0.0, 10.0),
    demand=st.lists(st.floats(0.0, 3.0), min_size=3, max_size=3),
    closed=st.lists(st.booleans(), min_size=3, max_size=3),
    limit=st.lists(st.floats(0.1, 3.0) | st.just(np.inf), min_size=3, max_size=3),
    budget=st.lists(st.floats(1.0, 2000.0) | st.just(np.inf), min_size=3, max_size=3),
    dts=st.lists(st.floats(0.001, 0.5), min_size=1, max_size=6),
)
def test_every_step_balances_energy_and_respects_limits(
    soc, pv, demand, closed, limit, budget, dts
):
    state = ContainerState.new(soc, 3)
    for dt in dts:
        before_soc, before_meters = state.soc_kwh, state.meter_wh.copy()
        flows = step(state, BATTERY, inputs(demand, closed, pv, limit, budget, dt))
        # Power balance: PV + battery = load = sum of what the meters delivered.
        assert flows.pv_kw + flows.battery_kw == pytest.approx(flows.load_kw, abs=1e-9)
        assert flows.drawn_kw.sum() == pytest.approx(flows.load_kw, abs=1e-9)
        assert flows.pv_kw <= pv + 1e-9
        assert (flows.drawn_kw <= np.minimum(demand, limit) + 1e-9).all()
        assert (flows.drawn_kw[~np.asarray(closed)] == 0.0).all()
        assert np.all(state.meter_wh - before_meters >= -1e-12)
        assert (state.budget_used_wh <= np.asarray(budget) + 1e-6).all()
        # The battery stays in its window (it may start below it; then it does not drop).
        # Below the floor by at most the rounding a plan is solved to (SOC_ROUNDING_KWH).
        assert state.soc_kwh >= min(before_soc, BATTERY.soc_kwh_min - SOC_ROUNDING_KWH) - 1e-9
        assert state.soc_kwh <= max(before_soc, BATTERY.soc_kwh_max) + 1e-9
        assert abs(flows.battery_kw) <= BATTERY.power_kw_max + POWER_ROUNDING_KW + 1e-9
    assert state.bulk_wh == pytest.approx(state.meter_wh.sum(), rel=1e-9, abs=1e-6)


def test_an_empty_battery_is_a_low_battery_cut_off_not_an_overload():
    state = ContainerState.new(1.01, 1)  # 0.01 kWh above the minimum
    flows = step(state, BATTERY, inputs([2.0], dt=0.1))
    assert flows.tripped
    assert flows.low_battery
    assert not flows.inverter_trip
    assert (state.low_battery_trips, state.inverter_trips) == (1, 0)


def test_a_shortfall_below_a_plans_tolerance_is_rounding_granted_once():
    # A plan meets the SoC floor and the rating only to its solve tolerance; the physics
    # carries a shortfall that small instead of darkening the whole period.
    at_floor = ContainerState.new(BATTERY.soc_kwh_min, 1)
    flows = step(at_floor, BATTERY, inputs([0.0015], pv=0.0, dt=1.0))  # 1.5 Wh short
    assert not flows.tripped
    assert at_floor.soc_kwh >= BATTERY.soc_kwh_min - SOC_ROUNDING_KWH
    # The room below the floor does not refill: the next step cuts off.
    again = step(at_floor, BATTERY, inputs([0.0015], pv=0.0, dt=1.0))
    assert again.low_battery
    # Over the rating by rounding is carried; by more, it trips.
    full = ContainerState.new(5.0, 1)
    rating = BATTERY.power_kw_max
    assert not step(full, BATTERY, inputs([rating + POWER_ROUNDING_KW / 2], pv=0.0)).tripped
    assert step(full, BATTERY, inputs([rating + 1e-3], pv=0.0)).inverter_trip
