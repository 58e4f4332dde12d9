"""The result of a dispatch: the plan per period, relay states, allotments and the why.

A :class:`Schedule` is what the controller applies and what the operator reads. It is
built from a solved model by :func:`extract_schedule` (or by a baseline rule), and it
explains itself: unserved energy per tier, curtailment, a reason code for every shed or
switched-off unit, the binding limits, and every priced violation by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from dispatch.model import ModelData, held_periods, priority_demand_kw, surplus_only
from dispatch.problem import DispatchProblem
from microgrid.timegrid import TimeGrid

__all__ = [
    "DispatchStatus",
    "Reason",
    "Schedule",
    "SolverReport",
    "SolverStatus",
    "StageReport",
    "extract_schedule",
    "plan_table",
    "violations_kwh",
]

TIERS = ("priority", "household", "business")
TOLERANCE_KW = 1e-6  # below solver tolerances; smaller differences are noise
NOISE_KW = 1e-9  # allotments below this are solver noise, set to 0
VIOLATION_KWH = 1e-3
"""Violations up to 1 Wh are not reported: that is the tiers' stated solve tolerance."""


class DispatchStatus(enum.StrEnum):
    """How the plan was obtained."""

    OPTIMAL = "optimal"  # HiGHS proved it within the MIP gap
    TIME_LIMIT = "time_limit"  # the best plan found when the time limit struck
    FALLBACK = "fallback"  # the solver failed; a rule-based plan instead
    BASELINE = "baseline"  # produced by a baseline rule on purpose


class SolverStatus(enum.StrEnum):
    """What HiGHS did in one solve (or one stage of the lexicographic solve)."""

    OPTIMAL = "optimal"  # proven within the stage's absolute tolerance
    TIME_LIMIT = "time_limit"  # stopped by the time limit or the deadline, with a plan
    NO_SOLUTION = "no_solution"  # stopped by the time limit or the deadline, no plan
    INFEASIBLE = "infeasible"
    FAILED = "failed"  # any other HiGHS outcome, or a run abandoned at the deadline

    @classmethod
    def from_highs(cls, model_status: str, has_solution: bool) -> SolverStatus:
        """Map HiGHS's model status text (``Highs.modelStatusToString``) to ours.

        Interrupted, time-, iteration- or solution-limited runs count as a time limit:
        all are a search stopped early; whether a plan exists decides the rest.
        """
        text = model_status.lower()
        if text == "optimal":
            return cls.OPTIMAL
        if "infeasible" in text:
            return cls.INFEASIBLE
        if any(word in text for word in ("limit", "interrupt")):
            return cls.TIME_LIMIT if has_solution else cls.NO_SOLUTION
        return cls.FAILED


@dataclass(frozen=True)
class StageReport:
    """One tier's solve in the lexicographic sequence.

    Attributes
    ----------
    name : str
        The tier (``priority``, ``household``, ...) or ``polish:<tier>``.
    status : SolverStatus
        How the stage ended.
    value : float
        The tier's objective at the accepted solution, in the tier's units (kWh of
        shortfall, or value units for the business tier); NaN without one.
    bound : float
        HiGHS's proven bound on it (NaN without one).
    tolerance : float
        The absolute gap allowed for this tier, in the same units.
    iterations : int
        Simplex iterations.
    nodes : int
        Branch-and-bound nodes (0 for an LP).
    highs_s : float
        Wall time of the HiGHS run [s].
    highs_status : str
        HiGHS's own model status text.
    """

    name: str
    status: SolverStatus
    value: float
    bound: float
    tolerance: float
    iterations: int
    nodes: int
    highs_s: float
    highs_status: str = ""

    @property
    def gap(self) -> float:
        """Absolute gap between the accepted value and the proven bound (≥ 0, or NaN)."""
        return max(self.value - self.bound, 0.0)


@dataclass(frozen=True)
class SolverReport:
    """How a plan was computed: per-tier stages, timings and the final status.

    Attributes
    ----------
    status : SolverStatus
        The worst stage status of the accepted plan (``optimal`` when every stage was
        proven within its tolerance).
    stages : tuple of StageReport
        The MILP stages then the polishing stages, in order.
    polished : bool
        True when the plan passed the polishing LPs (binaries fixed).
    build_s, compile_s, highs_s, extract_s, total_s : float
        Wall time of building the Pyomo model(s), handing them to HiGHS, HiGHS's own
        runs, reading the schedule, and the whole dispatch [s].
    deadline_hit : bool
        True when the wall-clock deadline cut a stage short or skipped stages.
    note : str
        Why the plan is what it is when not optimal (empty otherwise).
    """

    status: SolverStatus
    stages: tuple[StageReport, ...] = ()
    polished: bool = False
    build_s: float = 0.0
    compile_s: float = 0.0
    highs_s: float = 0.0
    extract_s: float = 0.0
    total_s: float = 0.0
    deadline_hit: bool = False
    note: str = ""

    @property
    def gaps(self) -> dict[str, float]:
        """Absolute gap per MILP tier, in the tier's own units."""
        return {s.name: s.gap for s in self.stages if not s.name.startswith("polish:")}

    @property
    def highs_status(self) -> str:
        """HiGHS's status text of the last stage run (empty without one)."""
        return self.stages[-1].highs_status if self.stages else ""


class Reason(enum.StrEnum):
    """Why a unit is off or short in a period."""

    SHED_SHORTAGE = "shed_shortage"  # households: not enough energy; rotated by history
    NO_CREDIT = "no_credit"  # prepaid account empty
    NOT_SELECTED = "not_selected"  # business: budget cannot cover its minimum power
    SURPLUS_ONLY = "surplus_only"  # zero stake or negative score, and no surplus
    HELD_OFF = "held_off"  # measured relay held open: minimum off time after a recent switch
    PARTIAL = "partial"  # on, but given less than its demand
    PRIORITY_SHORT = "priority_short"  # priority user: supply physically short


@dataclass(frozen=True)
class Schedule:
    """A dispatch plan.

    Attributes
    ----------
    status : DispatchStatus
        How the plan was obtained.
    grid : TimeGrid
        Its periods.
    plan : pandas.DataFrame
        One row per period (UTC start): PV forecast, used and curtailed; battery power
        (discharge positive) and SoC at the period's end; reserve requirement and
        shortfall; demand and served power per tier [kW, kWh for SoC]; ``binding``,
        the limits that bind.
    relays : pandas.DataFrame
        Relay state per period and switchable unit (household groups, businesses);
        True = closed.
    allotment_kw : pandas.DataFrame
        Power allotted per period to each priority user, household group and business.
    reasons : pandas.DataFrame
        One row per (period, unit) that is off or short: ``time``, ``unit``, ``tier``,
        ``reason``.
    violations_kwh : dict of str to float
        Priced violations by name (``priority_unserved``, ``soc_below_min``,
        ``soc_above_max``, ``end_soc_short``, ``reserve_short``) [kWh].
    household_groups : tuple of str
        Which relay columns are household groups.
    solver : SolverReport or None
        How the plan was computed; None for a baseline rule run on purpose.
    """

    status: DispatchStatus
    grid: TimeGrid
    plan: pd.DataFrame
    relays: pd.DataFrame
    allotment_kw: pd.DataFrame
    reasons: pd.DataFrame
    violations_kwh: dict[str, float]
    household_groups: tuple[str, ...] = ()
    solver: SolverReport | None = None

    def tier_energy_kwh(self) -> pd.DataFrame:
        """Demand, served and unserved energy per tier over the horizon [kWh]."""
        step = self.grid.step_hours
        rows = {}
        for tier in TIERS:
            demand = float(self.plan[f"demand_{tier}_kw"].sum() * step)
            served = float(self.plan[f"served_{tier}_kw"].sum() * step)
            rows[tier] = {"demand": demand, "served": served, "unserved": demand - served}
        return pd.DataFrame(rows).T

    def shed_hours(self) -> pd.Series:
        """Hours each household group is planned off [h]."""
        return (~self.relays[list(self.household_groups)]).sum() * self.grid.step_hours

    @property
    def curtailed_kwh(self) -> float:
        """PV energy forecast but not used [kWh]."""
        return float(self.plan["curtailed_kw"].sum() * self.grid.step_hours)


def plan_table(
    problem: DispatchProblem,
    pv_kw: np.ndarray,
    charge_kw: np.ndarray,
    discharge_kw: np.ndarray,
    soc_kwh: np.ndarray,
    allotment: pd.DataFrame,
    reserve_kwh: np.ndarray,
) -> pd.DataFrame:
    """The per-period plan from decided flows; shared by the MILP and the baselines."""
    index = problem.grid.index
    battery = problem.battery
    demand = {
        "priority": priority_demand_kw(problem),
        "household": sum(
            (g.demand_kw for g in problem.households), start=np.zeros(problem.periods)
        ),
        "business": sum(
            (np.minimum(b.demand_kw, b.power_kw_max) for b in problem.businesses),
            start=np.zeros(problem.periods),
        ),
    }
    units = {
        "priority": [p.id for p in problem.priority],
        "household": [g.id for g in problem.households],
        "business": [b.id for b in problem.businesses],
    }
    table = pd.DataFrame(
        {
            "pv_forecast_kw": problem.pv_p50_kw,
            "pv_used_kw": pv_kw,
            "curtailed_kw": problem.pv_p50_kw - pv_kw,
            "battery_power_kw": discharge_kw - charge_kw,
            "soc_kwh": soc_kwh[1:],  # at the end of each period
            "reserve_kwh": reserve_kwh[1:],
            "reserve_short_kwh": np.maximum(reserve_kwh[1:] - soc_kwh[1:], 0.0),
        },
        index=index,
    )
    for tier in TIERS:
        table[f"demand_{tier}_kw"] = demand[tier]
        table[f"served_{tier}_kw"] = allotment[units[tier]].sum(axis=1).to_numpy()
    binding = []
    for t in range(problem.periods):
        limits = []
        if soc_kwh[t + 1] <= battery.soc_kwh_min + 1e-6:
            limits.append("battery_empty")
        if soc_kwh[t + 1] >= battery.soc_kwh_max - 1e-6:
            limits.append("battery_full")
        if max(charge_kw[t], discharge_kw[t]) >= battery.power_kw_max - 1e-6:
            limits.append("battery_power")
        if problem.pv_p50_kw[t] - pv_kw[t] > TOLERANCE_KW:
            limits.append("pv_curtailed")
        binding.append(",".join(limits))
    table["binding"] = binding
    return table


def extract_schedule(
    model: pyo.ConcreteModel,
    problem: DispatchProblem,
    data: ModelData,
    status: DispatchStatus,
    solver: SolverReport | None,
) -> Schedule:
    """Read a solved model into a :class:`Schedule`."""
    n = problem.periods
    k = data.periods_per_block

    def series(var: pyo.Var) -> np.ndarray:
        return np.array([var[t].value or 0.0 for t in range(len(var))], dtype=float)

    pv = series(model.pv_power)
    charge = series(model.battery_charge)
    discharge = series(model.battery_discharge)
    soc = series(model.battery_soc)
    blocks = np.arange(n) // k
    n_blocks = len(model.H)
    household_on = np.array(
        [[round(model.household_on[g, h].value or 0.0) for h in model.H] for g in model.G],
        dtype=bool,
    ).reshape(len(problem.households), n_blocks)
    business_on = np.array(
        [[round(model.business_on[b, h].value or 0.0) for h in model.H] for b in model.B],
        dtype=bool,
    ).reshape(len(problem.businesses), n_blocks)
    columns: dict[str, np.ndarray] = {}
    # A priority shortfall is shared in proportion to demand (their relays stay closed).
    priority_total = priority_demand_kw(problem)
    priority_served = series(model.priority_power)
    fraction = np.divide(
        priority_served, priority_total, out=np.ones(n), where=priority_total > 0
    ).clip(0.0, 1.0)
    for p in problem.priority:
        columns[p.id] = p.demand_kw * fraction
    for g, group in enumerate(problem.households):
        columns[group.id] = group.demand_kw * household_on[g, blocks]
    business_block_kw = data.business_floor_kw * business_on + np.array(
        [[model.business_extra[b, h].value or 0.0 for h in model.H] for b in model.B]
    ).reshape(len(problem.businesses), n_blocks)
    for b, business in enumerate(problem.businesses):
        columns[business.id] = business_block_kw[b, blocks]
    allotment = pd.DataFrame(columns, index=problem.grid.index)
    # Solver noise (1e-15 kW) is not an allotment; a real 1e-6 kW demand served is.
    allotment = allotment.where(allotment > NOISE_KW, 0.0)
    relays = pd.DataFrame(
        {g.id: household_on[i, blocks] for i, g in enumerate(problem.households)}
        | {b.id: business_on[i, blocks] for i, b in enumerate(problem.businesses)},
        index=problem.grid.index,
    )
    plan = plan_table(problem, pv, charge, discharge, soc, allotment, data.reserve_kwh)
    return Schedule(
        status=status,
        grid=problem.grid,
        plan=plan,
        relays=relays,
        allotment_kw=allotment,
        reasons=explain(problem, relays, allotment),
        violations_kwh=violations_kwh(problem, plan, soc),
        household_groups=tuple(g.id for g in problem.households),
        solver=solver,
    )


def violations_kwh(
    problem: DispatchProblem, plan: pd.DataFrame, soc_kwh: np.ndarray
) -> dict[str, float]:
    """Priced violations of a plan by name [kWh], the same for the MILP and the rules.

    Parameters
    ----------
    problem : DispatchProblem
        The problem planned.
    plan : pandas.DataFrame
        From :func:`plan_table`.
    soc_kwh : numpy.ndarray
        State of charge at the start of each period and at the end (``periods + 1``).

    Returns
    -------
    dict of str to float
        ``priority_unserved`` (energy), ``soc_below_min`` and ``soc_above_max`` (summed
        over the state-of-charge points, as the model prices them), ``end_soc_short``
        and ``reserve_short`` (the largest shortfall); only those above 1 Wh.
    """
    battery = problem.battery
    step = problem.step_hours
    end_short = (
        max(battery.soc_kwh_end_min - float(soc_kwh[-1]), 0.0)
        if battery.soc_kwh_end_min is not None
        else 0.0
    )
    violations = {
        "priority_unserved": float(
            (plan["demand_priority_kw"] - plan["served_priority_kw"]).clip(lower=0).sum() * step
        ),
        "soc_below_min": float(np.clip(battery.soc_kwh_min - soc_kwh, 0.0, None).sum()),
        "soc_above_max": float(np.clip(soc_kwh - battery.soc_kwh_max, 0.0, None).sum()),
        "end_soc_short": end_short,
        "reserve_short": float(plan["reserve_short_kwh"].max()),
    }
    return {name: value for name, value in violations.items() if value > VIOLATION_KWH}


def explain(
    problem: DispatchProblem,
    relays: pd.DataFrame,
    allotment: pd.DataFrame,
) -> pd.DataFrame:
    """A reason code for every unit that is off or short in a period."""
    rows: list[tuple[pd.Timestamp, str, str, str]] = []
    index = list(problem.grid.index)
    for p in problem.priority:
        short = p.demand_kw - allotment[p.id].to_numpy() > TOLERANCE_KW
        rows += [(index[t], p.id, "priority", Reason.PRIORITY_SHORT) for t in np.flatnonzero(short)]
    for g in problem.households:
        off = ~relays[g.id].to_numpy() & (g.demand_kw > TOLERANCE_KW)
        rows += [(index[t], g.id, "household", Reason.SHED_SHORTAGE) for t in np.flatnonzero(off)]
        for member in g.no_credit:
            rows += [(time, member, "household", Reason.NO_CREDIT) for time in index]
    for b in problem.businesses:
        held = held_periods(b, problem) if not b.relay.closed else 0
        given = allotment[b.id].to_numpy()
        on = relays[b.id].to_numpy()
        wants = np.minimum(b.demand_kw, b.power_kw_max)
        for t in range(problem.periods):
            if wants[t] <= TOLERANCE_KW:
                if not on[t] and b.has_credit:
                    continue  # closed and off: nothing to explain
                reason = None
            elif not b.has_credit:
                reason = Reason.NO_CREDIT
            elif not on[t] and t < held:
                reason = Reason.HELD_OFF
            elif not on[t] or given[t] <= TOLERANCE_KW:
                reason = Reason.SURPLUS_ONLY if surplus_only(b, problem) else Reason.NOT_SELECTED
            elif wants[t] - given[t] > TOLERANCE_KW:
                reason = Reason.PARTIAL
            else:
                reason = None
            if reason is not None:
                rows.append((index[t], b.id, "business", reason))
    frame = pd.DataFrame(rows, columns=["time", "unit", "tier", "reason"])
    frame["reason"] = frame["reason"].astype(str)
    return frame
