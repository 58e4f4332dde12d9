"""The lexicographic solver's bound handling: later tiers' relays held off while a tier solves.

A tiny hand-solvable model: one unit of supply, a first tier's unit ``x`` (0.6) and a
later tier's unit ``y`` (0.5), both switched by binaries; curtailment takes the rest.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pyomo.environ as pyo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch import solve_dispatch
from dispatch.dispatch import _knapsack, _packed_groups, _packed_relays
from dispatch.model import (
    BLOCK_TOLERANCE_KWH,
    TIER_TOLERANCE_KWH,
    build_model,
    column_blocks,
)
from dispatch.problem import DispatchPolicy, DispatchProblem, HouseholdGroupLoad, SolverSettings
from dispatch.schedule import SolverStatus
from dispatch.solve import LexicographicSolver
from tests.dispatch.test_dispatch import battery, business, grid, problem


def _model() -> tuple[pyo.ConcreteModel, LexicographicSolver]:
    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.Binary)  # the first tier's relay
    m.y = pyo.Var(domain=pyo.Binary)  # a later tier's relay
    m.curtailed = pyo.Var(bounds=(0.0, 1.0))
    m.balance = pyo.Constraint(expr=0.6 * m.x + 0.5 * m.y + m.curtailed == 1.0)
    m.objective_first = pyo.Objective(expr=0.6 * (1 - m.x))  # kWh unserved
    m.objective_later = pyo.Objective(expr=0.5 * (1 - m.y))
    solver = LexicographicSolver(m, SolverSettings(), time.monotonic() + 30.0)
    return m, solver


def _column(solver: LexicographicSolver, var: pyo.Var) -> int:
    # Pyomo variables compare as expressions: find the column by identity.
    return next(i for i, column in enumerate(solver.columns) if column is var)


def _upper(solver: LexicographicSolver, var: pyo.Var) -> float:
    return float(solver.highs.getLp().col_upper_[_column(solver, var)])


def test_held_off_relays_stay_off_through_a_pinned_plan_and_come_back() -> None:
    m, solver = _model()
    solver.pin_off([m.y])
    # plan_pinned pins every binary (y held off wins over the pins) and then restores
    # the bounds in force: y stays off.
    pins = np.zeros(len(solver.columns))
    pins[[_column(solver, m.x), _column(solver, m.y)]] = 1.0
    assert solver.plan_pinned("first", pins)
    assert _upper(solver, m.y) == 0.0
    report = solver.solve("first", 1e-6)
    assert report.value == 0.0  # the first tier is whole with y held off
    assert solver.solution is not None
    assert solver.solution[_column(solver, m.y)] == 0.0
    solver.fix_integers([m.x])
    solver.unpin()
    assert _upper(solver, m.y) == 1.0
    # x (0.6) is fixed on: y (0.5) cannot fit in the 0.4 left, the later tier stays short.
    later = solver.solve("later", 1e-6)
    assert abs(later.value - 0.5) < 1e-9
    assert _upper(solver, m.x) == 1.0  # fixed at 1 by fix_integers, not touched by unpin


def test_unpin_leaves_fixed_binaries_fixed() -> None:
    m, solver = _model()
    solver.pin_off([m.y])
    solver.solve("first", 1e-6)
    solver.fix_integers([m.y])  # fixed at 0 while held off: decided, not released
    solver.unpin()
    assert _upper(solver, m.y) == 0.0


def test_packing_gives_a_dropped_marginal_business_power_to_one_whose_minimum_fits() -> None:
    # One hour, 0.8 kW for businesses. The relaxed plan gives all of it to the mill (the
    # most valuable; minimum 1 kW, so y = 0.8): rounding switches the mill on (it cannot
    # be fed) and rounding down serves nobody. Packing keeps the 0.8 kW for the tailor.
    p = problem(
        pv=0.8,
        periods=1,
        bat=battery(soc=0.0),
        businesses=(
            business("mill", stake=10, score=9.0, demand=2.0, periods=1, pmin=1.0, pmax=2.0),
            business("tailor", stake=2, score=3.0, demand=1.0, periods=1, pmin=0.1, pmax=1.0),
        ),
        policy=DispatchPolicy(business_objective="community_value"),
    )
    model, data = build_model(p)
    solver = LexicographicSolver(model, SolverSettings(), time.monotonic() + 30.0)
    relaxed = np.zeros(len(solver.columns))
    relaxed[_column(solver, model.business_on[0, 0])] = 0.8
    relaxed[_column(solver, model.business_extra[0, 0])] = 0.0
    pins = _packed_relays(model, p, data, solver, "business", relaxed)
    assert pins is not None
    assert pins[_column(solver, model.business_on[0, 0])] == 0.0  # its minimum does not fit
    assert pins[_column(solver, model.business_on[1, 0])] == 1.0  # the tailor's does
    assert solver.plan_pinned("business", pins)  # a feasible plan that serves the tailor
    assert solver.value_of("business", solver.solution) < -1e-3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    floors=st.lists(st.floats(0.05, 2.0), min_size=2, max_size=5),
    shares=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5),
)
def test_packing_never_switches_on_more_minimum_power_than_the_relaxed_plan_hands_out(
    floors: list[float], shares: list[float]
) -> None:
    # Any relaxed plan: business b draws shares[b] of its cap (y = power / cap, the
    # extra above the minimum to match). The packed relays keep every decided relay,
    # add to the rounded-down plan only, and the minimum powers of the relays they switch
    # on fit in the power the relaxed plan gave the undecided ones.
    units = tuple(
        business(f"b{i}", stake=1 + i, demand=2.0, periods=1, pmin=f, pmax=2.0)
        for i, f in enumerate(floors)
    )
    p = problem(pv=0.0, periods=1, bat=battery(soc=0.0), businesses=units)
    model, data = build_model(p)
    solver = LexicographicSolver(model, SolverSettings(), time.monotonic() + 30.0)
    relaxed = np.zeros(len(solver.columns))
    budget = 0.0
    undecided = []
    for b, share in enumerate(shares[: len(units)]):
        floor, cap = float(data.business_floor_kw[b, 0]), float(data.business_cap_kw[b, 0])
        power = share * cap
        on, extra = (
            _column(solver, model.business_on[b, 0]),
            _column(solver, model.business_extra[b, 0]),
        )
        relaxed[on] = power / cap
        relaxed[extra] = power - floor * power / cap
        if 0.0 < relaxed[on] < 1.0:
            budget += power
            undecided.append((b, on))
    pins = _packed_relays(model, p, data, solver, "business", relaxed)
    assert pins is not None
    rounded_down = np.floor(relaxed + 1e-6)
    assert np.all(pins >= rounded_down)  # nothing decided on is switched off
    switched_on = [b for b, on in undecided if pins[on] == 1.0]
    assert sum(float(data.business_floor_kw[b, 0]) for b in switched_on) <= budget + 1e-6


def _relaxed_households(
    shares: dict[tuple[int, int], float], demand_kw: list[float], periods: int
) -> tuple:
    """A battery-fed problem of groups with ``demand_kw`` and a relaxed plan ``shares``."""
    groups = tuple(
        HouseholdGroupLoad(f"HG{g}", np.full(periods, d)) for g, d in enumerate(demand_kw)
    )
    p = problem(
        pv=0.0, periods=periods, households=groups, bat=battery(soc=5.0, capacity=10.0, power=10.0)
    )
    model, data = build_model(p)
    solver = LexicographicSolver(model, SolverSettings(), time.monotonic() + 30.0)
    relaxed = np.zeros(len(solver.columns))
    for (g, h), share in shares.items():
        relaxed[_column(solver, model.household_on[g, h])] = share
    for t in range(periods):
        fed = sum(s * demand_kw[g] for (g, h), s in shares.items() if h == t)
        relaxed[_column(solver, model.battery_discharge[t])] = fed
    return p, model, data, solver, relaxed


def _on(model: pyo.ConcreteModel, solver: LexicographicSolver, pins: np.ndarray, h: int) -> list:
    return [int(pins[_column(solver, model.household_on[g, h])]) for g in model.G]


def test_the_household_knapsack_fills_the_block_rounding_leaves_short() -> None:
    # One hour, 0.6 kWh for groups of 0.5, 0.3 and 0.3 kW; the relaxed plan serves the
    # first whole and the second a third. Rounded down that is 0.5 kWh; the knapsack
    # serves the two small groups, the whole 0.6 kWh.
    p, model, data, solver, relaxed = _relaxed_households(
        {(0, 0): 1.0, (1, 0): 1 / 3}, [0.5, 0.3, 0.3], 1
    )
    pins = _packed_groups(model, p, data, solver, "household", relaxed, joint=False)
    assert pins is not None
    assert _on(model, solver, pins, 0) == [0, 1, 1]
    assert solver.plan_pinned("household", pins)
    packed = solver.value_of("household", solver.solution)
    assert not solver.plan_pinned("household", np.floor(relaxed))  # rounding is worse
    assert packed < solver.value_of("household", np.floor(relaxed)) - 0.09


def test_the_household_knapsack_moves_energy_between_blocks_the_battery_feeds() -> None:
    # Two battery-fed hours with 0.45 and 0.75 kWh for the groups (0.5, 0.3, 0.3 kW).
    # Block by block the best fits are 0.3 and 0.6 kWh (0.9 together); across both
    # hours, as the battery allows, 1.2 kWh: 0.6 in each.
    shares = {(0, 0): 0.9, (0, 1): 1.0, (1, 1): 0.25 / 0.3}
    p, model, data, solver, relaxed = _relaxed_households(shares, [0.5, 0.3, 0.3], 2)
    by_block = _packed_groups(model, p, data, solver, "household", relaxed, joint=False)
    joint = _packed_groups(model, p, data, solver, "household", relaxed, joint=True)
    assert by_block is not None
    assert joint is not None
    demand = np.array([0.5, 0.3, 0.3])

    def served(pins: np.ndarray) -> float:
        return float(sum(np.dot(_on(model, solver, pins, h), demand) for h in (0, 1)))

    assert served(by_block) == pytest.approx(0.9)
    assert served(joint) == pytest.approx(1.2)


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 30), st.floats(0.0, 10.0)), min_size=1, max_size=9),
    capacity=st.floats(0.0, 120.0),
)
def test_the_knapsack_is_the_best_set_that_fits(items: list, capacity: float) -> None:
    weights = np.array([w for w, _ in items])
    values = np.array([v for _, v in items])
    chosen = _knapsack(weights, values, capacity)
    assert chosen @ weights <= capacity + 1e-9
    best = max(
        sum(values[i] for i in range(len(items)) if mask >> i & 1)
        for mask in range(1 << len(items))
        if sum(weights[i] for i in range(len(items)) if mask >> i & 1) <= capacity
    )
    assert chosen @ values == pytest.approx(best)


def _two_days_mill_and_tailor() -> DispatchProblem:
    """Two days at 1 h: PV 1 kW at 11:00 and 1.5 kW at 12:00, a battery that loses nothing.

    The mill (minimum power 2 kW, worth most) can only run on energy stored for an hour:
    2 kWh for the mill and 0.5 kWh for the tailor a day. The relaxed plan runs the mill
    in part at both hours; packing, whose minimum fits neither hour, feeds the tailor
    alone (1 kW each hour).
    """
    pv = np.zeros(48)
    pv[[11, 35]] = 1.0
    pv[[12, 36]] = 1.5
    return problem(
        pv=pv.tolist(),
        periods=48,
        bat=battery(capacity=5.0, power=5.0),
        businesses=(
            business("mill", stake=10, score=9.0, demand=2.0, periods=48, pmin=2.0, pmax=2.0),
            business("tailor", stake=2, score=3.0, demand=1.0, periods=48, pmin=0.1, pmax=1.0),
        ),
        policy=DispatchPolicy(reserve=False, business_objective="community_value"),
    )


def test_a_window_improves_only_its_own_columns_and_the_bounds_come_back() -> None:
    p = _two_days_mill_and_tailor()
    model, data = build_model(p)
    solver = LexicographicSolver(model, SolverSettings(), time.monotonic() + 30.0)
    assert solver.plan_pinned()  # every relay off: a poor plan, but a plan
    lp = solver.highs.getLp()
    bounds = (list(lp.col_lower_), list(lp.col_upper_))
    blocks = column_blocks(model, solver.columns, data.periods_per_block)
    first_day = np.flatnonzero(blocks < 24)
    assert solver.improve_in_windows("business", [first_day], 1e-4, solver.deadline)
    mill_hours = [
        sum(solver.solution[_column(solver, model.business_on[0, h])] for h in day)
        for day in (range(24), range(24, 48))
    ]
    assert mill_hours == [1.0, 0.0]  # the second day's relays were fixed at the plan's
    assert solver.value_of("business", solver.solution) < -2.0 + 1e-6  # 2 kWh of the mill
    lp = solver.highs.getLp()
    assert (list(lp.col_lower_), list(lp.col_upper_)) == bounds


def test_a_plan_over_days_is_improved_one_day_at_a_time_before_branching() -> None:
    schedule = solve_dispatch(_two_days_mill_and_tailor(), SolverSettings(time_limit_s=30.0))
    assert schedule.solver is not None
    stages = {s.name: s for s in schedule.solver.stages}
    # The windows took the packed plan (the tailor alone) to the optimum: the mill at noon
    # on the kWh stored at 11:00, on both days; branch and bound had nothing left to find.
    assert stages["windows:business"].value == pytest.approx(stages["business"].value, abs=1e-6)
    assert stages["business"].nodes <= 1
    mill = schedule.allotment_kw["mill"].to_numpy()  # 1 h periods: kW is kWh
    assert [mill[:24].sum(), mill[24:].sum()] == pytest.approx([2.0, 2.0])
    assert schedule.solver.status is SolverStatus.OPTIMAL


def _first_day(p: DispatchProblem) -> DispatchProblem:
    return replace(
        p,
        grid=grid(periods=24),
        pv_p50_kw=p.pv_p50_kw[:24],
        pv_p10_kw=p.pv_p10_kw[:24],
        priority=tuple(replace(u, demand_kw=u.demand_kw[:24]) for u in p.priority),
        businesses=tuple(replace(b, demand_kw=b.demand_kw[:24]) for b in p.businesses),
    )


def test_a_plan_of_one_day_has_no_windows() -> None:
    schedule = solve_dispatch(_first_day(_two_days_mill_and_tailor()), SolverSettings())
    assert schedule.solver is not None
    assert not [s for s in schedule.solver.stages if s.name.startswith("windows:")]


def test_the_relay_tiers_tolerance_is_per_day_planned() -> None:
    two_days = _two_days_mill_and_tailor()
    tolerances = {}
    for days, p in ((1, _first_day(two_days)), (2, two_days)):
        schedule = solve_dispatch(p, SolverSettings())
        assert schedule.solver is not None
        tolerances[days] = {s.name: s.tolerance for s in schedule.solver.stages}
    for tier in ("household", "reserve", "business"):
        assert tolerances[1][tier] == pytest.approx(BLOCK_TOLERANCE_KWH)
        assert tolerances[2][tier] == pytest.approx(2 * BLOCK_TOLERANCE_KWH)
    # Tiers without relays keep their 1 Wh (fixed exactly, as LPs), whatever the horizon.
    assert tolerances[2]["priority"] == tolerances[1]["priority"] <= TIER_TOLERANCE_KWH
