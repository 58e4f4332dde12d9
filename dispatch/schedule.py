"""The result of a dispatch: the plan per period, relay states, allotments and the why.

A :class:`Schedule` is what the controller applies and what the operator reads. It is
built from a solved model by :func:`extract_schedule` (or by a baseline rule), and it
explains itself: unserved energy per tier, curtailment, a reason code for every shed or
switched-off unit, the binding limits, and every priced violation by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from dispatch.model import (
    ModelData,
    community_value,
    held_periods,
    priority_demand_kw,
    surplus_only,
)
from dispatch.problem import DispatchProblem, business_weights, firm_demand_kw
from microgrid.access import MTF_THRESHOLDS, MtfThresholds, mtf_daily
from microgrid.timegrid import TimeGrid

__all__ = [
    "AUXILIARY_STAGES",
    "DispatchStatus",
    "Reason",
    "Schedule",
    "SolverReport",
    "SolverStatus",
    "StageReport",
    "business_selection",
    "extract_schedule",
    "household_access",
    "household_meters",
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


AUXILIARY_STAGES = ("level:", "windows:", "polish:")
"""Name prefixes of the runs that are not a tier's own MILP stage: the relaxed business
level, the day-window improvement of a tier's start (its value is the improved start's,
its time the windows' total) and the polishing LPs."""


@dataclass(frozen=True)
class StageReport:
    """One tier's solve in the lexicographic sequence.

    Attributes
    ----------
    name : str
        The tier (``priority``, ``household``, ...), or an auxiliary run named with
        one of :data:`AUXILIARY_STAGES`.
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
        return {s.name: s.gap for s in self.stages if not s.name.startswith(AUXILIARY_STAGES)}

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
    HELD_TO_PLAN = "held_to_plan"  # household group: its meters hold it to its plans
    BUDGET_USED = "budget_used"  # household group: its members' daily budgets are used up
    CHOSEN = "chosen"  # business: served in the horizon
    LOWER_VALUE = "lower_value"  # business: its minimum power did not fit; others worth more
    NO_VALUE = "no_value"  # business: neither value score nor stake gives it a weight
    NO_DEMAND = "no_demand"  # business: closed, or nothing to draw in the horizon


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
    household_free : pandas.DataFrame or None
        Per period and household group: True when its members' meters let them use
        beyond their service plans (no power limit); False when held to their plans.
        None without service plans.
    meter_limit_kw : pandas.DataFrame or None
        Per period and planned household: its meter's power limit [kW] (``inf`` while
        free). None without service plans.
    energy_budget_wh : dict of str to int
        Per planned household: its meter's budget for the local day of the first period
        [Wh]: its plan's budget plus the use beyond plan this schedule grants it that day.
    business_choice : pandas.DataFrame or None
        One row per business: ``weight`` (community value per kWh), ``stake``,
        ``value_score``, ``energy_kwh``, ``chosen`` and ``reason`` (:class:`Reason`):
        which of the N were chosen, and why the others were not.
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
    household_free: pd.DataFrame | None = None
    meter_limit_kw: pd.DataFrame | None = None
    energy_budget_wh: dict[str, int] = field(default_factory=dict)
    business_choice: pd.DataFrame | None = None

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
    household_free = np.array(
        [[round(model.household_free[g, h].value or 0.0) for h in model.H] for g in model.G],
        dtype=bool,
    ).reshape(len(problem.households), n_blocks)
    household_free &= household_on
    relay_on = household_on.copy()
    for g, group in enumerate(problem.households):
        lifeline = group.within_plan_kw
        beyond = group.beyond_plan_kw
        columns[group.id] = lifeline * household_on[g, blocks] + beyond * household_free[g, blocks]
        # A group held to its plans with every budget used up draws nothing: its relay
        # opens, so no meter with budget to spare lets a household in (physics = plan).
        for h in range(n_blocks):
            rows = slice(h * k, (h + 1) * k)
            if lifeline[rows].sum() <= 0.0 < beyond[rows].sum() and not household_free[g, h]:
                relay_on[g, h] = False
    business_block_kw = data.business_floor_kw * business_on + np.array(
        [[model.business_extra[b, h].value or 0.0 for h in model.H] for b in model.B]
    ).reshape(len(problem.businesses), n_blocks)
    for b, business in enumerate(problem.businesses):
        columns[business.id] = business_block_kw[b, blocks]
    allotment = pd.DataFrame(columns, index=problem.grid.index)
    # Solver noise (1e-15 kW) is not an allotment; a real 1e-6 kW demand served is.
    allotment = allotment.where(allotment > NOISE_KW, 0.0)
    relays = pd.DataFrame(
        {g.id: relay_on[i, blocks] for i, g in enumerate(problem.households)}
        | {b.id: business_on[i, blocks] for i, b in enumerate(problem.businesses)},
        index=problem.grid.index,
    )
    plan = plan_table(problem, pv, charge, discharge, soc, allotment, data.reserve_kwh)
    free = pd.DataFrame(
        {g.id: household_free[i, blocks] for i, g in enumerate(problem.households)},
        index=problem.grid.index,
    )
    limits, budgets = household_meters(problem, free)
    return Schedule(
        status=status,
        grid=problem.grid,
        plan=plan,
        relays=relays,
        allotment_kw=allotment,
        reasons=explain(problem, relays, allotment, free),
        violations_kwh=violations_kwh(problem, plan, soc, allotment),
        household_groups=tuple(g.id for g in problem.households),
        solver=solver,
        household_free=free if any(g.lifeline_kw is not None for g in problem.households) else None,
        meter_limit_kw=limits,
        energy_budget_wh=budgets,
        business_choice=business_selection(problem, allotment),
    )


def household_meters(
    problem: DispatchProblem, free: pd.DataFrame
) -> tuple[pd.DataFrame | None, dict[str, int]]:
    """Each planned household's meter limit per period [kW] and its day's budget [Wh].

    Held to its plan, a household's meter limits it to the plan's power; free (its group
    granted use beyond plans), the limit is lifted (``inf``). The budget is the plan's
    daily budget plus the use beyond plan granted in the first local day: the meter counts
    every Wh, so without that addition a midday surplus would eat the evening's lifeline.
    """
    limits: dict[str, np.ndarray] = {}
    budgets: dict[str, int] = {}
    step = problem.step_hours
    index = problem.grid.index
    days = np.asarray(index.tz_convert(problem.timezone).normalize().asi8)
    first_day = days == days[0] if len(index) else np.zeros(0, dtype=bool)
    for group in problem.households:
        if not group.member_plans or group.member_demand_kw is None:
            continue
        lifeline = group.member_lifeline_kw
        is_free = free[group.id].to_numpy(bool)
        for i, member in enumerate(group.members):
            power_kw, budget_wh = group.member_plans[i]
            capped = np.minimum(group.member_demand_kw[i], power_kw)
            within = lifeline[i] if lifeline is not None else capped
            # Held: the plan's power while the day's share lasts, then what is left of it
            # (0 once used: the evening's share is not the day's to spend).
            held = np.where(within >= capped - 1e-9, power_kw, within)
            limits[member] = np.where(is_free, np.inf, held)
            extra = group.member_demand_kw[i] - (lifeline[i] if lifeline is not None else 0.0)
            extra_wh = float((np.clip(extra, 0.0, None) * is_free * first_day).sum() * step * 1000)
            # Whole Wh, rounded up past float noise (1 µWh) so the meter never stops short.
            budgets[member] = int(min(budget_wh + np.ceil(extra_wh - 1e-6), 2**32 - 1))
    if not limits:
        return None, {}
    return pd.DataFrame(limits, index=index), budgets


def business_selection(problem: DispatchProblem, allotment: pd.DataFrame) -> pd.DataFrame:
    """Which of the N businesses were chosen over the horizon, and why the others were not.

    A business that wanted energy, could be served and got none was not chosen: its
    minimum power did not fit in what the higher tiers left, and the businesses chosen
    were worth more per kWh (``lower_value``), or it gets only surplus (``surplus_only``).
    """
    step = problem.step_hours
    weights = (
        business_weights(problem.businesses, problem.policy.stake_weight)
        if community_value(problem)
        else np.array([float(b.stake) for b in problem.businesses])
    )
    rows = []
    for b, business in enumerate(problem.businesses):
        energy = float(allotment[business.id].sum() * step) if business.id in allotment else 0.0
        wants = float(np.minimum(business.demand_kw, business.power_kw_max).sum() * step)
        if energy > TOLERANCE_KW:
            reason = Reason.CHOSEN
        elif not business.has_credit:
            reason = Reason.NO_CREDIT
        elif wants <= TOLERANCE_KW:
            reason = Reason.NO_DEMAND
        elif surplus_only(business, problem):
            reason = Reason.SURPLUS_ONLY
        elif weights[b] <= 0:
            reason = Reason.NO_VALUE
        else:
            reason = Reason.LOWER_VALUE
        rows.append(
            {
                "business": business.id,
                "weight": float(weights[b]),
                "stake": business.stake,
                "value_score": business.value_score,
                "energy_kwh": energy,
                "chosen": reason is Reason.CHOSEN,
                "reason": str(reason),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=["business", "weight", "stake", "value_score", "energy_kwh", "chosen", "reason"],
    )
    return frame.set_index("business")


def household_access(
    schedule: Schedule,
    problem: DispatchProblem,
    timezone: str | None = None,
    thresholds: MtfThresholds = MTF_THRESHOLDS,
) -> pd.DataFrame:
    """The planned MTF attributes and tier of every planned household per local day.

    A household can draw (MTF "supply") while its group's relay is closed and its meter
    lets power through: up to its plan's limit while held to it and its budget lasts, its
    demand (at least the plan's limit) while free. Uses :func:`microgrid.access.mtf_daily`.
    """
    supply: dict[str, np.ndarray] = {}
    energy: dict[str, np.ndarray] = {}
    step = problem.step_hours
    free = schedule.household_free
    limits = schedule.meter_limit_kw
    for group in problem.households:
        if not group.member_plans or group.member_demand_kw is None or free is None:
            continue
        if limits is None:
            continue
        on = schedule.relays[group.id].to_numpy(bool)
        is_free = free[group.id].to_numpy(bool) & on
        lifeline = group.member_lifeline_kw
        for i, member in enumerate(group.members):
            power_kw, _ = group.member_plans[i]
            demand = group.member_demand_kw[i]
            within = lifeline[i] if lifeline is not None else demand
            limit = limits[member].to_numpy(float)
            could = np.where(np.isinf(limit), np.maximum(demand, power_kw), limit)
            supply[member] = np.where(on, could, 0.0) * 1000.0
            served = np.where(is_free, demand, np.where(on, within, 0.0))
            energy[member] = served * step * 1000.0
    index = problem.grid.index
    if not supply:
        return pd.DataFrame()
    return mtf_daily(
        pd.DataFrame(supply, index=index),
        pd.DataFrame(energy, index=index),
        timezone or problem.timezone,
        thresholds,
    )


def violations_kwh(
    problem: DispatchProblem,
    plan: pd.DataFrame,
    soc_kwh: np.ndarray,
    allotment_kw: pd.DataFrame | None = None,
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
        and ``reserve_short`` (the largest shortfall); with ``allotment_kw``,
        ``contract_short``: energy allotted below contracted bands' lower edges (what the
        consumers could draw), the grid's shortfall; only those above 1 Wh.
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
        "contract_short": _contract_short_kwh(problem, allotment_kw),
    }
    return {name: value for name, value in violations.items() if value > VIOLATION_KWH}


def _contract_short_kwh(problem: DispatchProblem, allotment_kw: pd.DataFrame | None) -> float:
    """Energy allotted below the contracted bands' lower edges [kWh] (0 without allotment)."""
    if allotment_kw is None:
        return 0.0
    short = 0.0
    for business in problem.businesses:
        band = problem.band_of(business.id)
        if band is None or business.id not in allotment_kw.columns or not business.has_credit:
            continue
        drawable = np.minimum(firm_demand_kw(business, band), business.power_kw_max)
        wanted = np.minimum(band.lower_kw, drawable)
        given = allotment_kw[business.id].to_numpy(float)
        short += float(np.clip(wanted - given, 0.0, None).sum() * problem.step_hours)
    return short


def explain(
    problem: DispatchProblem,
    relays: pd.DataFrame,
    allotment: pd.DataFrame,
    free: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A reason code for every unit that is off or short in a period."""
    rows: list[tuple[pd.Timestamp, str, str, str]] = []
    index = list(problem.grid.index)
    for p in problem.priority:
        short = p.demand_kw - allotment[p.id].to_numpy() > TOLERANCE_KW
        rows += [(index[t], p.id, "priority", Reason.PRIORITY_SHORT) for t in np.flatnonzero(short)]
    for g in problem.households:
        lifeline = g.within_plan_kw
        on = relays[g.id].to_numpy()
        off = ~on & (lifeline > TOLERANCE_KW)
        rows += [(index[t], g.id, "household", Reason.SHED_SHORTAGE) for t in np.flatnonzero(off)]
        spent = ~on & (lifeline <= TOLERANCE_KW) & (g.beyond_plan_kw > TOLERANCE_KW)
        rows += [(index[t], g.id, "household", Reason.BUDGET_USED) for t in np.flatnonzero(spent)]
        if free is not None and g.id in free:
            held = on & ~free[g.id].to_numpy(bool) & (g.beyond_plan_kw > TOLERANCE_KW)
            rows += [
                (index[t], g.id, "household", Reason.HELD_TO_PLAN) for t in np.flatnonzero(held)
            ]
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
