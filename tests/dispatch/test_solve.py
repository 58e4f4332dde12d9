"""The lexicographic solver's bound handling: later tiers' relays held off while a tier solves.

A tiny hand-solvable model: one unit of supply, a first tier's unit ``x`` (0.6) and a
later tier's unit ``y`` (0.5), both switched by binaries; curtailment takes the rest.
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo

from dispatch.problem import SolverSettings
from dispatch.solve import LexicographicSolver


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
