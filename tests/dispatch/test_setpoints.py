"""Setpoints: the one typed structure from dispatch to the devices, and executable plans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dispatch import HouseholdGroupLoad, solve_dispatch
from dispatch.rolling import UnitTiers, deliver_block
from dispatch.schedule import VIOLATION_KWH
from dispatch.setpoints import Setpoints, safe_setpoints
from microgrid.physics import SOC_ROUNDING_KWH, Protection
from tests.dispatch.test_dispatch import battery, business, problem
from tests.sites import village

INDEX = pd.date_range("2026-03-20", periods=2, freq="15min", tz="UTC")


def plan_frames():
    plan = pd.DataFrame(
        {"pv_used_kw": [4.0, 5.0], "curtailed_kw": [1.0, 0.0], "battery_power_kw": [-1.0, 2.0]},
        index=INDEX,
    )
    relays = pd.DataFrame({"G1": [True, False], "B1": [True, True]}, index=INDEX)
    allotment = pd.DataFrame({"P1": [0.3, 0.3], "G1": [2.0, 0.0], "B1": [1.5, 0.5]}, index=INDEX)
    return plan, relays, allotment


def test_a_plan_becomes_typed_setpoints_switch_only_groups_and_limited_businesses():
    sp = Setpoints.from_plan(*plan_frames(), household_groups=("G1",))
    assert sp.switch_only == ("G1",)
    assert list(sp.power_limit_kw.columns) == ["B1"]  # groups are never allotted a fraction
    first, second = sp.at(INDEX[0]), sp.at(INDEX[1] + pd.Timedelta("14min"))
    assert first is not None
    assert second is not None
    assert first.pv_limit_kw == 4.0  # curtailing: PV limited to what the plan uses
    assert second.pv_limit_kw == np.inf  # not curtailing: runs free
    assert (first.discharge_limit_kw, second.discharge_limit_kw) == (0.0, 2.0)
    assert second.relays == {"G1": False, "B1": True}
    assert second.power_limit_kw == {"B1": 0.5}
    assert sp.at(INDEX[1] + pd.Timedelta("15min")) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, r, a: (p.drop(columns="curtailed_kw"), r, a), "lacks the column"),
        (lambda p, r, a: (p.tz_localize(None), r, a), "timezone-aware"),
        (lambda p, r, a: (p, r, a.assign(B1=[-1.0, 0.0])), "≥ 0 kW"),
    ],
)
def test_bad_setpoints_are_refused_with_a_message(change, message):
    with pytest.raises(ValueError, match=message):
        Setpoints.from_plan(*change(*plan_frames()), household_groups=("G1",))


def test_safe_setpoints_are_a_function_of_the_site():
    site = village(("HG01", "HG02"), lambda all_: all_[:2], 2, 4.0, 3.5, 12.0, 5.0)
    sp = safe_setpoints(site, pd.Timestamp("2026-03-20T10:00", tz="UTC"), pv_limit_kw=6.0)
    period = sp.at(pd.Timestamp("2026-03-20T12:07", tz="UTC"))
    assert period is not None
    assert period.pv_limit_kw == 6.0
    assert not any(period.relays.values())
    assert set(period.relays) == {"HG01", "HG02", *(b.id for b in site.businesses)}
    assert sp.switch_only == ("HG01", "HG02")
    assert len(sp.index) == 96


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pv=st.lists(st.floats(0, 8), min_size=4, max_size=4),
    soc=st.floats(0, 10),
    priority=st.floats(0, 2),
    group_demand=st.lists(st.floats(0, 3), min_size=2, max_size=2),
    demand=st.lists(st.floats(0.5, 4), min_size=2, max_size=2),
    stakes=st.lists(st.integers(0, 5), min_size=2, max_size=2),
)
# Found by random runs (400 examples, --hypothesis-seed=random); each went dark for a
# whole period on a shortfall the plan's solve tolerance allows (microgrid.physics
# POWER_ROUNDING_KW, SOC_ROUNDING_KWH):
# the battery planned down to its floor, 1.06e-7 kWh short (priority 1 kW dark for 1 h);
@example([0.0, 2.0, 0.0, 0.0], 3.0, 1.0, [0.0, 0.0], [1.0, 1.0], [1, 0])
# the battery planned at its rating, 1.01e-7 kW over (5.7 kW dark for 1 h);
@example(
    [2.255022618916337, 1.7217453373037888, 5.114651040532703, 6.440438665160078],
    9.636708728449708,
    0.30104966084235496,
    [1.4466371645980096, 2.6841475865885203],
    [1.9795091743090305, 2.5632572172941686],
    [5, 0],
)
# a priority user planned 0.9 Wh short (within the tiers' 1 Wh) while a household group
# stays on: the physics serves the priority user in full from the battery (3.3 kW dark).
@example(
    [0.8982742529412118, 1.210333356733206, 1.6938059536305214, 4.584730899412304],
    4.3021383763751375,
    0.836609300041798,
    [0.4348109950557283, 2.4728490895017945],
    [2.1780728529400113, 3.5300471852459383],
    [0, 0],
)
def test_every_plan_dispatch_emits_is_executable_by_the_one_physics(
    pv, soc, priority, group_demand, demand, stakes
):
    p = problem(
        pv=pv,
        priority=priority,
        households=tuple(
            HouseholdGroupLoad(f"HG{i}", np.full(4, d)) for i, d in enumerate(group_demand)
        ),
        businesses=(
            business("A", stake=stakes[0], demand=demand[0]),
            business("B", stake=stakes[1], demand=demand[1], pmin=0.5),
        ),
        bat=battery(soc=soc, capacity=10.0, power=4.0, eta=0.95),
    )
    schedule = solve_dispatch(p)
    # Priority users cannot be switched or limited: a plan that is short for them is
    # short because the physics is; that case is the inverter's to protect.
    assume("priority_unserved" not in schedule.violations_kwh)
    sp = Setpoints.from_schedule(schedule)
    units = ["clinic", "HG0", "HG1", "A", "B"]
    relays = sp.relays.reindex(columns=units, fill_value=True).to_numpy(bool)
    limits = sp.power_limit_kw.reindex(columns=units, fill_value=np.inf).to_numpy(float)
    wanted = np.column_stack(
        [
            np.full(4, priority),
            *(np.full(4, d) for d in group_demand),
            *(np.full(4, d) for d in demand),
        ]
    )
    tiers = UnitTiers.of(1, 2, 2)
    block = deliver_block(relays, limits, np.asarray(pv), wanted, p.battery, 1.0, tiers)
    # Executable: no overload trip, the battery inside its window, the plan delivered.
    assert (block.short_kw == 0.0).all()
    assert block.state.inverter_trips == 0
    assert (block.soc_kwh >= -SOC_ROUNDING_KWH).all()
    assert (block.soc_kwh <= 10.0 + 1e-6).all()
    served = block.served_kw
    # Households get what the plan switched on; the priority user, never limited, its
    # demand, which the plan may leave short by its tiers' tolerance (1 Wh, 1 h periods).
    np.testing.assert_allclose(served[:, 1:3], schedule.allotment_kw[units[1:3]], atol=1e-6)
    np.testing.assert_allclose(served[:, 0], priority, atol=1e-9)
    np.testing.assert_allclose(served[:, 0], schedule.allotment_kw["clinic"], atol=VIOLATION_KWH)
    # A business meter trips once when its demand rises above its limit and recloses
    # after 60 s: at most that share of an hour is lost, never more than allotted.
    allotted = schedule.allotment_kw[units[3:]].to_numpy()
    reclose = Protection().meter_reclose_h
    assert (served[:, 3:] <= allotted + 1e-6).all()
    assert (served[:, 3:] >= allotted * (1 - reclose) - 1e-6).all()
