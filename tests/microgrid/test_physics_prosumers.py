"""The one physics counts prosumers' export as supply at their connection [002]."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.physics import BatteryLimits, ContainerState, StepInputs, step

BATTERY = BatteryLimits(10.0, 1.0, 9.0, 4.0, 0.95, 0.95)


def inputs(demand, own_pv, pv=0.0, closed=None, dt=1.0, charge=4.0, discharge=4.0):
    demand = np.asarray(demand, dtype=float)
    return StepInputs(
        dt_h=dt,
        pv_available_kw=pv,
        pv_limit_kw=np.inf,
        charge_limit_kw=charge,
        discharge_limit_kw=discharge,
        demand_kw=demand,
        closed=np.ones(len(demand), bool) if closed is None else np.asarray(closed),
        own_pv_kw=np.asarray(own_pv, dtype=float),
    )


def test_seed_002_hour_export_is_supply_that_serves_the_consumers():
    """Carlos 3 kW and Danny 2 kW; Angel's and Bennie's roofs 3 and 2.5 kW; no container PV."""
    state = ContainerState.new(5.0, 4)
    flows = step(state, BATTERY, inputs([3.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 2.5]))
    assert state.meter_wh.tolist() == pytest.approx([3000.0, 2000.0, 0.0, 0.0])
    assert state.export_wh.tolist() == pytest.approx([0.0, 0.0, 3000.0, 2500.0])
    # The 0.5 kWh surplus charges the battery: the export is supply, not negative demand.
    assert flows.battery_kw == pytest.approx(-0.5)
    assert state.battery_charge_wh == pytest.approx(500.0)
    assert state.soc_kwh == pytest.approx(5.0 + 0.5 * 0.95)
    # The bulk meter sees the net flow: 0.5 kWh back from the village into the container.
    assert (state.bulk_wh, state.bulk_export_wh) == pytest.approx((0.0, 500.0))


def test_a_prosumer_serves_its_own_load_first_and_imports_only_the_rest():
    state = ContainerState.new(5.0, 2)
    step(state, BATTERY, inputs([1.0, 0.5], [0.4, 0.0]))
    assert state.meter_wh.tolist() == pytest.approx([600.0, 500.0])
    assert state.export_wh.tolist() == pytest.approx([0.0, 0.0])
    assert state.battery_discharge_wh == pytest.approx(1100.0)


def test_export_the_grid_cannot_absorb_is_curtailed_and_not_metered():
    state = ContainerState.new(9.0, 2)  # full: the battery takes nothing
    flows = step(state, BATTERY, inputs([1.0, 0.0], [0.0, 3.0], pv=5.0))
    assert flows.exported_kw.tolist() == pytest.approx([0.0, 1.0])
    assert flows.pv_kw == pytest.approx(0.0)  # the roof goes first; the container's array waits
    assert state.export_wh[1] == pytest.approx(1000.0)


def test_an_open_relay_or_a_dark_inverter_exports_nothing():
    state = ContainerState.new(5.0, 2)
    flows = step(state, BATTERY, inputs([0.5, 0.0], [0.0, 2.0], closed=[True, False]))
    assert flows.exported_kw.tolist() == [0.0, 0.0]
    # Overload: the inverter trips; grid-tied roofs stop with it (anti-islanding).
    dark = step(state, BATTERY, inputs([9.0, 0.0], [0.0, 2.0], discharge=1.0, dt=0.01))
    assert dark.tripped
    assert dark.exported_kw.tolist() == [0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(
    soc=st.floats(0.0, 10.0),
    pv=st.floats(0.0, 10.0),
    demand=st.lists(st.floats(0.0, 3.0), min_size=3, max_size=3),
    own_pv=st.lists(st.floats(0.0, 4.0), min_size=3, max_size=3),
    closed=st.lists(st.booleans(), min_size=3, max_size=3),
    dts=st.lists(st.floats(0.001, 0.5), min_size=1, max_size=6),
)
def test_every_step_balances_with_prosumers_as_supply(soc, pv, demand, own_pv, closed, dts):
    state = ContainerState.new(soc, 3)
    for dt in dts:
        flows = step(state, BATTERY, inputs(demand, own_pv, pv, closed, dt))
        # Supply = PV + battery + export = load; nothing is negative demand.
        assert flows.pv_kw + flows.battery_kw + flows.exported_kw.sum() == pytest.approx(
            flows.load_kw, abs=1e-9
        )
        assert (flows.drawn_kw >= 0).all()
        assert (flows.exported_kw >= 0).all()
        surplus = np.maximum(np.asarray(own_pv) - np.asarray(demand), 0.0)
        assert (flows.exported_kw <= surplus + 1e-9).all()
        assert (flows.exported_kw[~np.asarray(closed)] == 0.0).all()
    # The bulk meter's net flow is the connections' net import.
    assert state.bulk_wh - state.bulk_export_wh == pytest.approx(
        state.meter_wh.sum() - state.export_wh.sum(), rel=1e-9, abs=1e-6
    )
