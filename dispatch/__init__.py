"""Tiered dispatch: problem → Pyomo model → HiGHS → Schedule."""

from dispatch.baselines import oracle_problem, proportional_rule
from dispatch.dispatch import solve_dispatch
from dispatch.problem import (
    BatteryState,
    BusinessLoad,
    DispatchPolicy,
    DispatchProblem,
    HouseholdGroupLoad,
    PriorityLoad,
    RelayState,
    SolverSettings,
    default_stakes,
    problem_from_site,
)
from dispatch.schedule import DispatchStatus, Reason, Schedule, household_access

__all__ = [
    "BatteryState",
    "BusinessLoad",
    "DispatchPolicy",
    "DispatchProblem",
    "DispatchStatus",
    "HouseholdGroupLoad",
    "PriorityLoad",
    "Reason",
    "RelayState",
    "Schedule",
    "SolverSettings",
    "default_stakes",
    "household_access",
    "oracle_problem",
    "problem_from_site",
    "proportional_rule",
    "solve_dispatch",
]
