"""Planner scenarios: simulate months of the community, compare policies, report.

Entry points: :func:`load_scenario` (TOML → :class:`Scenario`), :func:`run_scenario` (one
seeded run), :func:`run_many` / :func:`sweep` (Monte Carlo and cartesian sweeps on
several processes), :func:`tidy` and :func:`run_kpis` (tidy DataFrames and KPIs), and
:func:`write_report` (a single-file HTML report).
"""

from scenarios.config import (
    Scenario,
    ScenarioFileError,
    bundled_scenario,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    with_parameter,
)
from scenarios.engine import RunResult, run_scenario

__all__ = [
    "RunResult",
    "Scenario",
    "ScenarioFileError",
    "bundled_scenario",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "with_parameter",
]
