r"""Problem → Pyomo model: one builder per constraint family, each stating its maths.

Notation used in the ``Notes`` of every builder: periods :math:`t` of length
:math:`\Delta` [h]; relay blocks :math:`h(t)` (several periods share one relay
decision); powers in kW, energies in kWh. Variable names follow
``<asset>_<quantity>``; constraint names ``<asset>_<quantity>_<bound>``.

Build with :func:`build_model`; solve with :mod:`dispatch.solve`; read the result with
:mod:`dispatch.schedule`. Nothing here touches the solver.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from dispatch.fair_share import FairShareLayers, fair_share_layers
from dispatch.problem import (
    TIER_ORDER,
    BusinessLoad,
    DispatchProblem,
    business_weights,
    firm_demand_kw,
)
from dispatch.reserve import reserve_requirement_kwh

__all__ = [
    "CONSERVATION",
    "TIERS",
    "ModelData",
    "build_model",
    "business_power_terms",
    "column_blocks",
    "held_periods",
    "linear",
    "surplus_only",
    "tier_binaries",
    "tier_tolerance",
]

TIERS = TIER_ORDER
"""Tiers the model knows, each with its own objective ``objective_<tier>`` (minimise),
solved in the order :attr:`DispatchPolicy.tier_order` gives."""


CONSERVATION = "conservation"
"""The objective solved after every tier: curtailment, then surplus-only use and wear."""

BUSINESS_LEVEL = "business_energy"
"""An auxiliary objective (minus the staked businesses' energy), solved relaxed after the
upper tiers to centre the fair-share layers on what they actually leave."""

TIER_TOLERANCE_KWH = 1e-3
"""Absolute gap accepted per tier [kWh of the tier's shortfall]: 1 Wh, far below any
meter's resolution and ≥ 100× HiGHS's feasibility tolerance on rows of a few hundred kWh.
Tiers whose decisions are relay blocks take :data:`BLOCK_TOLERANCE_KWH` instead."""

BLOCK_TOLERANCE_KWH = 0.1
"""Absolute gap accepted for the household, reserve and business tiers per day planned
[kWh, kWh·h per day; a horizon of a day or less counts as one]: a tenth of one household
group's hour (≈ 1 kWh on the default site). Proving 1 Wh there took 2.5–8.6 s of branch
and bound per plan on the default site (its optimum is a knapsack with near-ties from
rotation and time preference); the polish cannot change relays, so this is the only
place a gap reaches the plan, and it is bounded by this amount per day.

Per day, because a longer plan decides proportionally more relay blocks: a week held to
one day's 0.1 kWh was 7× more precise per decision than the live day-ahead plan, for
what the forecast cannot tell apart. It cost the week at 1 h its proof: the household
tier of the week from 2026-09-10 has an integrality gap of 0.114 (not proven in 90 s),
the business tier of the week from 2026-03-20 took 6–8 s of branch and bound from a
plan 0.31 below its root bound (``benchmarks/bench_dispatch.py --week``)."""

SURPLUS_ONLY_COST = 0.01
"""Cost of a surplus-only business's kWh in the conservation stage, per curtailed kWh
avoided (1): it takes what would be curtailed, never what the battery could store."""

WEAR_COST = 0.001
"""Cost of a kWh of battery throughput and of a relay start, per curtailed kWh: below
the surplus-only cost, so they only break ties (no simultaneous charge and discharge,
no relay chatter between equal plans)."""

EVENING_WEIGHT = 10.0
"""A lifeline kWh shed inside the households' guaranteed evening window costs this many
daytime lifeline kWh: the evening is shed last. 10 puts one evening hour of a group above
any daytime block of the same group (a group's daytime lifeline is at most ≈ 6× its
evening hour's on the default site's profiles), without coefficients so wide (≥ 1e3)
that the household tier's 0.1 kWh tolerance would blur daytime shedding."""

TIME_PREFERENCE = 0.05
"""Household shedding costs up to 5 % more now than at the horizon's end: a kWh served now
beats one promised later, because forecasts worsen with lead time and the plan is redone
every period. Without it, equal plans put the served hours at the end of the horizon."""


@dataclass(frozen=True)
class ModelData:
    """Numbers derived from the problem while building, kept for reading the result."""

    layers: FairShareLayers
    business_level_kwh: float  # what the fine fair-share layers are centred on
    reserve_kwh: np.ndarray
    periods_per_block: int
    business_cap_kw: np.ndarray  # (businesses, relay blocks)
    business_floor_kw: np.ndarray  # (businesses, relay blocks): minimum power when on
    days_planned: float  # horizon length [days], at least 1: block tolerances are per day


def tier_binaries(model: pyo.ConcreteModel, problem: DispatchProblem, tier: str) -> list[pyo.Var]:
    """The relay binaries a tier decides (empty for a tier without any).

    Notes
    -----
    Household relays belong to the household tier, staked businesses' relays to the
    business tier, surplus-only businesses' relays to the conservation stage. After a
    tier is solved its binaries are fixed, so a tier without binaries of its own is an
    LP whose relaxation is exact: every binary still free belongs to a lower tier, and
    setting it to 0 (a unit off consumes nothing) never hurts a higher tier.
    """
    if tier == "household":
        return list(model.household_on.values())
    if tier == "beyond_plan":
        return list(model.household_free.values())
    contracted = set(model.ContractBlocks)  # blocks with a band to serve: the contract tier's
    if tier == "contract":
        return [model.business_on[b, h] for b, h in model.ContractBlocks]
    if tier in ("business", CONSERVATION):
        wanted = tier == CONSERVATION
        return [
            model.business_on[b, h]
            for b, business in enumerate(problem.businesses)
            if surplus_only(business, problem) == wanted
            for h in model.H
            if (b, h) not in contracted
        ]
    return []


def column_blocks(
    model: pyo.ConcreteModel, columns: Sequence[pyo.Var], periods_per_block: int
) -> np.ndarray:
    """The relay block each column's decision falls in; -1 for a column of the whole horizon.

    A column indexed last by period (``T``) falls in its period's block, a SoC point
    (``S``) in the block of the period it ends, a relay column (``H``) in its block;
    the fair-share layers, the contract shortfalls and the end-of-horizon SoC wish span
    the horizon.

    Returns
    -------
    numpy.ndarray
        One block index per column (int).
    """
    to_block = {
        id(model.T): lambda i: i // periods_per_block,
        id(model.S): lambda i: max(i - 1, 0) // periods_per_block,
        id(model.H): lambda i: i,
    }
    blocks: dict[int, int] = {}
    for component in model.component_objects(pyo.Var, descend_into=False):
        sets = list(component.index_set().subsets()) if component.is_indexed() else []
        rule = to_block.get(id(sets[-1])) if sets else None
        for index, var in component.items():
            last = index[-1] if isinstance(index, tuple) else index
            blocks[id(var)] = -1 if rule is None else rule(int(last))
    return np.array([blocks[id(var)] for var in columns], dtype=np.int64)


def level_slope(data: ModelData) -> float:
    """Slope of the fair-share layer holding the expected level [value/kWh]."""
    layers = data.layers
    at = int(np.searchsorted(layers.breaks_kwh, data.business_level_kwh)) - 1
    return float(layers.slopes[min(max(at, 0), layers.slopes.size - 1)])


def tier_tolerance(tier: str, data: ModelData) -> float:
    """Absolute gap accepted for a tier's objective, in that objective's units.

    Every tier's objective is in kWh (of shortfall, rotation-weighted for households;
    kWh·h for the reserve), so a tier without relays of its own takes
    :data:`TIER_TOLERANCE_KWH`, and a tier deciding relay blocks
    :data:`BLOCK_TOLERANCE_KWH` per day planned. The business value is scaled to kWh at
    the level its energy lies at (:func:`level_slope`), so its tolerance is in kWh there.
    (1 Wh at the flattest slope, ≈ 2e-6 of the steepest, sat below HiGHS's tolerances
    and was never proven in 2.8 s.)
    """
    if tier in ("household", "reserve", "beyond_plan", "business"):
        return BLOCK_TOLERANCE_KWH * data.days_planned
    # The contract tier keeps 1 Wh: a lower tier's relay decided within a coarser gap
    # (a carpenter's minimum power) took 63 Wh of a mill's band that the polish, relays
    # fixed, could not give back; a band's hour is a promise, its few relays prove fast.
    return TIER_TOLERANCE_KWH


def linear(
    coefs: Iterable[float], variables: Iterable[object], constant: float = 0.0
) -> LinearExpression:
    """``constant + Σ coefs[i] · variables[i]`` as one flat linear expression.

    Pyomo's compiler reads a flat expression term by term; a nested one (a number
    times a sum, a sum of sums) it must expand first, which took most of the hand-over
    time. Every row with more than a couple of terms is written with this.
    """
    return LinearExpression(
        constant=float(constant),
        linear_coefs=[float(c) for c in coefs],
        linear_vars=list(variables),
    )


def valued_businesses(problem: DispatchProblem) -> list[int]:
    """Businesses the business tier serves (not surplus-only; staked, or valued by score)."""
    if community_value(problem):
        weights = business_weights(problem.businesses, problem.policy.stake_weight)
        return [
            b
            for b, business in enumerate(problem.businesses)
            if weights[b] > 0 and not surplus_only(business, problem)
        ]
    return [
        b
        for b, business in enumerate(problem.businesses)
        if business.stake > 0 and not surplus_only(business, problem)
    ]


def community_value(problem: DispatchProblem) -> bool:
    """Whether the business tier maximises community value (else stake-weighted fairness)."""
    return problem.policy.business_objective == "community_value"


def surplus_only(business: BusinessLoad, problem: DispatchProblem) -> bool:
    """Whether a business may only take energy that would otherwise be curtailed."""
    policy = problem.policy
    return (policy.surplus_only_zero_stake and business.stake <= 0) or (
        policy.surplus_only_negative_score and business.value_score < 0
    )


def build_model(
    problem: DispatchProblem, business_level_kwh: float | None = None
) -> tuple[pyo.ConcreteModel, ModelData]:
    """The dispatch MILP for one problem.

    Parameters
    ----------
    problem : DispatchProblem
        A problem that passed :func:`dispatch.problem.check_problem`.
    business_level_kwh : float, optional
        The business tier's energy to centre the fine fair-share layers on [kWh]; a
        rough estimate from the demand when not given.

    Returns
    -------
    model : pyomo.environ.ConcreteModel
        With variables, constraints and one objective per tier, ``objective_<tier>``
        (see :data:`TIERS`), plus ``objective_conservation`` and
        ``objective_business_energy`` (all minimise; solved lexicographically).
    data : ModelData
        Fair-share layers and derived inputs, for reading the result.
    """
    model = pyo.ConcreteModel(name="lastwatt_dispatch")
    data = _model_data(problem, business_level_kwh)
    _add_index_sets(model, problem, data)
    add_supply(model, problem)
    add_battery(model, problem)
    add_priority(model, problem)
    add_households(model, problem, data)
    add_businesses(model, problem, data)
    add_contracts(model, problem, data)
    add_relay_switching(model, problem, data)
    add_energy_balance(model, problem, data)
    add_reserve(model, problem, data)
    add_fair_share(model, problem, data)
    add_objectives(model, problem, data)
    return model, data


def _model_data(problem: DispatchProblem, business_level_kwh: float | None) -> ModelData:
    step = problem.step_hours
    k = round(problem.policy.relay_step_hours / step)
    blocks = -(-problem.periods // k)
    caps = np.zeros((len(problem.businesses), blocks))
    for i, b in enumerate(problem.businesses):
        if b.has_credit:
            demand = firm_demand_kw(b, problem.band_of(b.id))  # a band is firm demand
            per_period = np.clip(np.minimum(demand, b.power_kw_max), 0.0, None)
            padded = np.pad(per_period, (0, blocks * k - per_period.size), mode="edge")
            caps[i] = padded.reshape(blocks, k).min(axis=1)
    staked = [
        i for i, b in enumerate(problem.businesses) if not surplus_only(b, problem) and b.stake > 0
    ]
    total_stake = sum(problem.businesses[i].stake for i in staked)
    expected = (
        _expected_business_energy_kwh(problem)
        if business_level_kwh is None
        else max(business_level_kwh, MIN_LEVEL_KWH)
    )
    largest = max(
        (caps[i].sum() * k * step * total_stake / problem.businesses[i].stake for i in staked),
        default=1.0,
    )
    layers = fair_share_layers(expected, largest, 1.0 + problem.policy.fair_share_tolerance)
    return ModelData(
        layers=layers,
        business_level_kwh=expected,
        reserve_kwh=reserve_requirement_kwh(problem),
        periods_per_block=k,
        business_cap_kw=caps,
        business_floor_kw=np.minimum(
            np.array([[b.power_kw_min] for b in problem.businesses]).reshape(-1, 1), caps
        ),
        days_planned=max(problem.periods * step / 24.0, 1.0),
    )


MIN_LEVEL_KWH = 0.05
"""Smallest level the fair-share layers are centred on [kWh]: below it the layers'
widths (level/30) would reach HiGHS's tolerances."""


def _expected_business_energy_kwh(problem: DispatchProblem) -> float:
    """A rough budget for the business tier, to centre the fine fair-share layers on.

    Only a first guess: :func:`dispatch.solve_dispatch` replaces it by what the upper
    tiers actually leave (their solved plan) before the business tier is solved.
    """
    step = problem.step_hours
    supply = problem.pv_p50_kw.sum() * step + max(
        problem.battery.soc_kwh - problem.battery.soc_kwh_min, 0.0
    )
    served_above = sum(p.demand_kw.sum() for p in problem.priority) + sum(
        g.demand_kw.sum() for g in problem.households
    )
    budget = supply - served_above * step
    return float(max(budget, 0.05 * problem.pv_p50_kw.sum() * step, 1.0))


def _add_index_sets(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    n = problem.periods
    model.T = pyo.RangeSet(0, n - 1)
    model.S = pyo.RangeSet(0, n)  # SoC points: start of each period, and the end
    model.H = pyo.RangeSet(0, (n - 1) // data.periods_per_block)
    model.P = pyo.RangeSet(0, len(problem.priority) - 1)
    model.G = pyo.RangeSet(0, len(problem.households) - 1)
    model.B = pyo.RangeSet(0, len(problem.businesses) - 1)


def add_supply(model: pyo.ConcreteModel, problem: DispatchProblem) -> None:
    r"""PV used, the rest curtailed.

    Notes
    -----
    .. math:: 0 \le p^{pv}_t \le \hat p^{P50}_t, \qquad
              c_t = \hat p^{P50}_t - p^{pv}_t \;(\text{curtailment, reported})

    The P50 forecast is already clipped at the inverter's AC rating, so the inverter
    limit the controller applies is :math:`p^{pv}_t`.
    """
    pv = problem.pv_p50_kw
    model.pv_power = pyo.Var(model.T, bounds=lambda m, t: (0.0, max(float(pv[t]), 0.0)))


def add_battery(model: pyo.ConcreteModel, problem: DispatchProblem) -> None:
    r"""Battery power limits and state-of-charge dynamics with a soft SoC window.

    Notes
    -----
    .. math::

        e_{t+1} &= e_t + (\eta_c p^{ch}_t - p^{dis}_t/\eta_d)\,\Delta,
                   \quad e_0 = \text{measured} \\
        0 \le p^{ch}_t, p^{dis}_t &\le \bar P \\
        \underline E - s^{lo}_t \le e_t &\le \overline E + s^{hi}_t

    The window is soft (slacks :math:`s^{lo}, s^{hi}`, priced above every tier) so that
    a measured SoC outside it yields a plan that recovers, not an infeasible model.
    """
    battery = problem.battery
    step = problem.step_hours
    model.battery_charge = pyo.Var(model.T, bounds=(0.0, battery.power_kw_max))
    model.battery_discharge = pyo.Var(model.T, bounds=(0.0, battery.power_kw_max))
    model.battery_soc = pyo.Var(model.S, bounds=(0.0, None))
    model.battery_soc[0].fix(max(battery.soc_kwh, 0.0))
    model.battery_soc_below_min = pyo.Var(model.S, bounds=(0.0, None))
    model.battery_soc_above_max = pyo.Var(model.S, bounds=(0.0, None))

    charge = step * battery.charge_efficiency
    discharge = step / battery.discharge_efficiency

    @model.Constraint(model.T)
    def battery_soc_dynamics(m: pyo.ConcreteModel, t: int) -> object:
        terms = (
            m.battery_soc[t + 1],
            m.battery_soc[t],
            m.battery_charge[t],
            m.battery_discharge[t],
        )
        return linear((1.0, -1.0, -charge, discharge), terms) == 0.0

    @model.Constraint(model.S)
    def battery_soc_lower(m: pyo.ConcreteModel, s: int) -> object:
        return m.battery_soc[s] + m.battery_soc_below_min[s] >= battery.soc_kwh_min

    @model.Constraint(model.S)
    def battery_soc_upper(m: pyo.ConcreteModel, s: int) -> object:
        return m.battery_soc[s] - m.battery_soc_above_max[s] <= battery.soc_kwh_max

    model.battery_end_short = pyo.Var(bounds=(0.0, None))
    if battery.soc_kwh_end_min is not None:
        end = problem.periods
        model.battery_soc_end_lower = pyo.Constraint(
            expr=model.battery_soc[end] + model.battery_end_short >= battery.soc_kwh_end_min
        )
    else:
        model.battery_end_short.fix(0.0)


def add_priority(model: pyo.ConcreteModel, problem: DispatchProblem) -> None:
    r"""Priority users: served up to their demand; what is not served is priced.

    Notes
    -----
    .. math:: 0 \le p^{pri}_t \le \sum_i d_{i,t}

    One variable per period for the whole tier: their relays are never opened by
    dispatch, so a shortfall (physically unavoidable) is shared in proportion to demand
    when the schedule is read.
    """
    demand = priority_demand_kw(problem)
    model.priority_power = pyo.Var(model.T, bounds=lambda m, t: (0.0, float(demand[t])))


def priority_demand_kw(problem: DispatchProblem) -> np.ndarray:
    """Demand of the priority tier per period [kW]."""
    return np.clip(
        sum((p.demand_kw for p in problem.priority), start=np.zeros(problem.periods)), 0.0, None
    )


def add_households(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""Household relay groups: lifeline on or shed as a whole; beyond their plans or not.

    Notes
    -----
    .. math:: p^{hh}_{g,t} = \ell_{g,t}\, x_{g,h(t)} + \beta_{g,t}\, f_{g,h(t)}, \qquad
              f_{g,h} \le x_{g,h}, \qquad x, f \in \{0, 1\}

    with :math:`\ell` the group's demand within its households' service plans (each
    household capped at its plan's power limit until its daily budget is used: what its
    meter lets through) and :math:`\beta` the rest. :math:`x` is the feeder relay (the
    lifeline tier decides it); :math:`f` lifts the members' meter limits (the
    beyond-plan tier decides it). Per group, not per household, so the MILP stays as
    small as before plus one binary per group and block. Without plans :math:`\beta = 0`
    and :math:`f` is fixed at 0. A group with no demand in a block is left on.
    """
    demand = household_demand_kw(problem)
    beyond = household_beyond_kw(problem)
    k = data.periods_per_block
    model.household_on = pyo.Var(model.G, model.H, domain=pyo.Binary)
    model.household_free = pyo.Var(model.G, model.H, domain=pyo.Binary)
    for g in model.G:
        for h in model.H:
            if demand[g, h * k : (h + 1) * k].sum() + beyond[g, h * k : (h + 1) * k].sum() <= 0.0:
                model.household_on[g, h].fix(1)
            if beyond[g, h * k : (h + 1) * k].sum() <= 0.0:
                model.household_free[g, h].fix(0)

    @model.Constraint(model.G, model.H)
    def household_free_upper(m: pyo.ConcreteModel, g: int, h: int) -> object:
        if m.household_free[g, h].fixed:
            return pyo.Constraint.Skip
        return m.household_free[g, h] - m.household_on[g, h] <= 0.0


def household_beyond_kw(problem: DispatchProblem) -> np.ndarray:
    """Demand beyond the plans of each household group per period, (groups, periods) [kW]."""
    return np.array([g.beyond_plan_kw for g in problem.households]).reshape(
        len(problem.households), problem.periods
    )


def household_demand_kw(problem: DispatchProblem) -> np.ndarray:
    """Lifeline demand of each household group per period, (groups, periods) [kW]."""
    return np.array([g.within_plan_kw for g in problem.households]).reshape(
        len(problem.households), problem.periods
    )


def add_businesses(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""Business power per relay block, within its cap and above its minimum when on.

    Notes
    -----
    .. math::

        p^{bus}_{b,h} = \underline p_{b,h}\, y_{b,h} + q_{b,h}, \qquad
        0 \le q_{b,h} \le (\bar d_{b,h} - \underline p_{b,h})\, y_{b,h}, \qquad
        y_{b,h} \in \{0,1\}

    with :math:`\bar d_{b,h} = \min_{t \in h} \min(d_{b,t}, \bar p_b)` (0 without
    credit), the power a load limiter can grant for the whole block and the business
    will draw in every period of it, and :math:`\underline p_{b,h} = \min(\underline
    p_b, \bar d_{b,h})` its minimum. Writing the power as the minimum plus an extra
    :math:`q` states :math:`\underline p\,y \le p \le \bar d\,y` in one row instead of
    two. When the budget cannot cover every minimum, the binaries choose the subset
    (I of N). Other rows take the power from :func:`business_power_terms`.
    """
    caps = data.business_cap_kw
    floor = data.business_floor_kw
    model.business_on = pyo.Var(model.B, model.H, domain=pyo.Binary)
    model.business_extra = pyo.Var(
        model.B, model.H, bounds=lambda m, b, h: (0.0, float(caps[b, h] - floor[b, h]))
    )
    for b in model.B:
        for h in model.H:
            if caps[b, h] <= 0.0:
                model.business_on[b, h].fix(0)

    @model.Constraint(model.B, model.H)
    def business_extra_upper(m: pyo.ConcreteModel, b: int, h: int) -> object:
        room = float(caps[b, h] - floor[b, h])
        if room <= 0.0:
            return pyo.Constraint.Skip
        return linear((1.0, -room), (m.business_extra[b, h], m.business_on[b, h])) <= 0.0


def add_contracts(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""The contract tier: each contracted business's band lower edge, as a priced shortfall.

    Notes
    -----
    For a contract on business :math:`b` with band lower edge :math:`\ell_t` [kW]:

    .. math:: p^{bus}_{b,h} + u_{c,h} \ge L_{c,h}, \quad u_{c,h} \ge 0, \qquad
              L_{c,h} = \min\big(\min_{t \in h} \ell_t,\ \bar d_{b,h}\big)

    and ``objective_contract`` :math:`= \Delta_h \sum_{c,h} u_{c,h}` [kWh]. The block's
    relay :math:`y_{b,h}` belongs to this tier where :math:`L_{c,h} > 0`
    (:func:`tier_binaries`); the cap :math:`\bar d_{b,h}` already holds the band's upper
    edge plus tolerance (:func:`dispatch.problem.firm_demand_kw`). A positive
    :math:`u` is the grid's shortfall: the contracts job waives it.
    """
    k = data.periods_per_block
    target: dict[tuple[int, int], float] = {}  # (contract, block) → L [kW]
    business_of: dict[int, int] = {}
    for c, band in enumerate(problem.contracts):
        b = next(i for i, x in enumerate(problem.businesses) if x.id == band.connection_id)
        business_of[c] = b
        lower = np.pad(band.lower_kw, (0, len(model.H) * k - problem.periods), mode="edge")
        for h in model.H:
            firm = min(float(lower[h * k : (h + 1) * k].min()), float(data.business_cap_kw[b, h]))
            if firm > 0.0:
                target[c, h] = firm
    model.ContractBlocks = pyo.Set(
        initialize=sorted({(business_of[c], h) for c, h in target}), dimen=2, ordered=True
    )
    model.ContractRows = pyo.Set(initialize=sorted(target), dimen=2, ordered=True)
    model.contract_shortfall = pyo.Var(model.ContractRows, bounds=(0.0, None))

    @model.Constraint(model.ContractRows)
    def contract_lower(m: pyo.ConcreteModel, c: int, h: int) -> object:
        coefs, variables = business_power_terms(m, data, business_of[c], h)
        return linear([*coefs, 1.0], [*variables, m.contract_shortfall[c, h]]) >= target[c, h]

    block_hours = k * problem.step_hours
    shortfall = list(model.contract_shortfall.values())
    model.objective_contract = pyo.Objective(
        expr=linear([block_hours] * len(shortfall), shortfall), sense=pyo.minimize
    )


def business_power_terms(
    model: pyo.ConcreteModel, data: ModelData, b: int, h: int, scale: float = 1.0
) -> tuple[list[float], list[object]]:
    """``scale`` × business ``b``'s power in relay block ``h`` as (coefficients, variables)."""
    floor = float(data.business_floor_kw[b, h])
    return [scale * floor, scale], [model.business_on[b, h], model.business_extra[b, h]]


def add_relay_switching(
    model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData
) -> None:
    r"""Minimum on and off times of business relays, from their measured state.

    Notes
    -----
    With :math:`U` and :math:`D` the minimum on and off times in blocks:

    .. math::

        v_{b,h} \ge y_{b,h} - y_{b,h-1}, \quad w_{b,h} \ge y_{b,h-1} - y_{b,h}, \\
        \sum_{\tau=h-U+1}^{h} v_{b,\tau} \le y_{b,h}, \quad
        \sum_{\tau=h-D+1}^{h} w_{b,\tau} \le 1 - y_{b,h}

    with :math:`y_{b,-1}` the measured relay state; a relay that switched less than
    :math:`U` (or :math:`D`) ago keeps its state for the remainder. Starts carry a tiny
    cost so that relays do not chatter between equal plans. With :math:`D = 1` the stop
    variables :math:`w` and their rows are left out: nothing would constrain them.
    """
    block_hours = problem.policy.relay_step_hours
    up = max(1, int(np.ceil(problem.policy.min_on_hours / block_hours - 1e-9)))
    down = max(1, int(np.ceil(problem.policy.min_off_hours / block_hours - 1e-9)))
    initial = [1.0 if b.relay.closed else 0.0 for b in problem.businesses]

    def previous(m: pyo.ConcreteModel, b: int, h: int) -> object:
        return m.business_on[b, h - 1] if h > 0 else initial[b]

    # Starts are always counted: their cost stops relay chatter between equal plans.
    # Stops are only needed for a minimum off time longer than one block.
    model.business_start = pyo.Var(model.B, model.H, bounds=(0.0, 1.0))

    @model.Constraint(model.B, model.H)
    def business_start_lower(m: pyo.ConcreteModel, b: int, h: int) -> object:
        return m.business_start[b, h] - m.business_on[b, h] + previous(m, b, h) >= 0.0

    if up > 1:

        @model.Constraint(model.B, model.H)
        def business_min_on(m: pyo.ConcreteModel, b: int, h: int) -> object:
            window = range(max(0, h - up + 1), h + 1)
            return sum(m.business_start[b, tau] for tau in window) <= m.business_on[b, h]

    if down > 1:
        model.business_stop = pyo.Var(model.B, model.H, bounds=(0.0, 1.0))

        @model.Constraint(model.B, model.H)
        def business_stop_lower(m: pyo.ConcreteModel, b: int, h: int) -> object:
            return m.business_stop[b, h] + m.business_on[b, h] - previous(m, b, h) >= 0.0

        @model.Constraint(model.B, model.H)
        def business_min_off(m: pyo.ConcreteModel, b: int, h: int) -> object:
            window = range(max(0, h - down + 1), h + 1)
            return sum(m.business_stop[b, tau] for tau in window) <= 1 - m.business_on[b, h]

    # A relay that switched recently holds its measured state until its minimum time is up.
    k = data.periods_per_block
    for b, business in enumerate(problem.businesses):
        hold_blocks = -(-held_periods(business, problem) // k)
        for h in range(min(hold_blocks, len(model.H))):
            if not model.business_on[b, h].fixed:
                model.business_on[b, h].fix(1 if business.relay.closed else 0)


def held_periods(business: BusinessLoad, problem: DispatchProblem) -> int:
    """Periods from the start during which a business relay keeps its measured state.

    A relay that switched less than the minimum on (or off) time ago holds its state
    for the rest of that time, rounded up to whole relay blocks.
    """
    policy = problem.policy
    hold_hours = (
        policy.min_on_hours if business.relay.closed else policy.min_off_hours
    ) - business.relay.hours_in_state
    blocks = int(np.ceil(max(hold_hours, 0.0) / policy.relay_step_hours - 1e-9))
    return min(blocks * round(policy.relay_step_hours / problem.step_hours), problem.periods)


def add_energy_balance(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""Supply equals served demand in every period.

    Notes
    -----
    .. math::

        p^{pv}_t + p^{pro}_t + p^{dis}_t - p^{ch}_t = p^{pri}_t + \sum_g p^{hh}_{g,t}
        + P^{bus}_{h(t)}, \qquad P^{bus}_h = \sum_b p^{bus}_{b,h},
        \qquad 0 \le p^{pro}_t \le X_t

    with :math:`X_t` the prosumers' forecast export (supply at their connections).

    The business total is one variable per relay block: every period of a block shares
    it, so the balance rows hold one business term instead of one per business.
    """
    k = data.periods_per_block
    model.business_total = pyo.Var(model.H, bounds=(0.0, None))

    @model.Constraint(model.H)
    def business_total_sum(m: pyo.ConcreteModel, h: int) -> object:
        coefs: list[float] = [1.0]
        variables: list[object] = [m.business_total[h]]
        for b in m.B:
            c, v = business_power_terms(m, data, b, h, scale=-1.0)
            coefs += c
            variables += v
        return linear(coefs, variables) == 0.0

    household = household_demand_kw(problem)
    beyond = household_beyond_kw(problem)
    # Prosumers' export is supply at their connections, up to its forecast; the grid-
    # forming inverter can curtail it (frequency shift), like the container's own PV.
    export = problem.prosumer_export_kw
    model.prosumer_power = pyo.Var(
        model.T, bounds=lambda m, t: (0.0, 0.0 if export is None else max(float(export[t]), 0.0))
    )

    @model.Constraint(model.T)
    def energy_balance(m: pyo.ConcreteModel, t: int) -> object:
        h = t // k
        supply_and_tiers = (
            m.pv_power[t],
            m.prosumer_power[t],
            m.battery_discharge[t],
            m.battery_charge[t],
            m.priority_power[t],
            m.business_total[h],
        )
        groups = [m.household_on[g, h] for g in m.G]
        free = [m.household_free[g, h] for g in m.G if beyond[g, t] > 0.0]
        coefs = [
            1.0, 1.0, 1.0, -1.0, -1.0, -1.0,
            *(-household[:, t]),
            *(-beyond[g, t] for g in range(beyond.shape[0]) if beyond[g, t] > 0.0),
        ]  # fmt: skip
        return linear(coefs, (*supply_and_tiers, *groups, *free)) == 0.0


def add_reserve(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""The reserve tier: SoC kept at the priority users' requirement, softly.

    Notes
    -----
    .. math:: e_s + r_s \ge R_s, \quad r_s \ge 0, \quad s = 1 \ldots n

    with :math:`R_t` from :func:`dispatch.reserve.reserve_requirement_kwh` (P10 PV);
    :math:`r_t` is priced below households and above businesses.
    """
    requirement = data.reserve_kwh
    model.reserve_short = pyo.Var(model.T, bounds=(0.0, None))
    if not problem.policy.reserve:
        for t in model.T:
            model.reserve_short[t].fix(0.0)
        return

    # The SoC at the start of the horizon is measured; the requirement binds after it.
    @model.Constraint(model.T)
    def reserve_lower(m: pyo.ConcreteModel, t: int) -> object:
        return m.battery_soc[t + 1] + m.reserve_short[t] >= float(requirement[t + 1])


def add_fair_share(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""Business energy over the horizon split into fair-share layers.

    Notes
    -----
    For each staked business with stake share :math:`w_b`:

    .. math::

        \Delta_h \sum_h p^{bus}_{b,h} = \sum_k z_{b,k}, \qquad
        0 \le z_{b,k} \le w_b (u_{k+1} - u_k)

    and the utility :math:`\sum_k \sigma_k z_{b,k}` (see :mod:`dispatch.fair_share`).
    Surplus-only businesses have no layers: they are served in the conservation stage,
    after the business tier is fixed, so they can never reduce what staked ones get.
    """
    staked = [
        b
        for b, business in enumerate(problem.businesses)
        if business.stake > 0 and not surplus_only(business, problem)
    ]
    if community_value(problem):
        # Σ R_b(E_b) is linear in each E_b: no layers (objective_business reads the power).
        staked = []
    total = sum(problem.businesses[b].stake for b in staked)
    widths = data.layers.widths_kwh
    step = problem.step_hours
    block_hours = data.periods_per_block * step
    energy_max = data.business_cap_kw.sum(axis=1) * block_hours
    share = {b: problem.businesses[b].stake / total for b in staked}
    # Only the layers a business can reach: the rest could never fill. (The last layer
    # ends at the largest reach, but ``E / share`` may round a hair above it: clip.)
    n_layers = widths.size
    reach = {
        b: min(
            int(np.searchsorted(data.layers.breaks_kwh, energy_max[b] / share[b], side="left")),
            n_layers,
        )
        for b in staked
    }
    index = [(b, k) for b in staked for k in range(max(reach[b], 1))]
    model.BusinessStaked = pyo.Set(initialize=staked, ordered=True)
    model.FairShareIndex = pyo.Set(initialize=index, dimen=2, ordered=True)
    model.business_layer = pyo.Var(
        model.FairShareIndex, bounds=lambda m, b, k: (0.0, share[b] * float(widths[k]))
    )

    @model.Constraint(staked)
    def business_layers_sum(m: pyo.ConcreteModel, b: int) -> object:
        layers = [m.business_layer[b, k] for k in range(max(reach[b], 1))]
        coefs: list[float] = [1.0] * len(layers)
        variables: list[object] = list(layers)
        for h in m.H:
            c, v = business_power_terms(m, data, b, h, scale=-block_hours)
            coefs += c
            variables += v
        return linear(coefs, variables) == 0.0


def add_objectives(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""One objective per tier, each in its own units, for the lexicographic solve.

    Notes
    -----
    All minimise; none carries a weight relative to another (the order does that):

    .. math::

        f_{soc} &= \sum_s (s^{lo}_s + s^{hi}_s) \quad [\text{kWh}] \\
        f_{pri} &= \Delta \sum_t (d_t - p^{pri}_t) \quad [\text{kWh}] \\
        f_{hh} &= \sum_{g,h} \phi_g\,\tau_h\,E_{g,h}\,(1 - x_{g,h})
                   \quad [\text{kWh, rotation-weighted}] \\
        f_{res} &= \Delta \sum_t r_t + s^{end} \quad [\text{kWh·h}] \\
        f_{bus} &= -\sum_{b,k} \sigma_k z_{b,k} \quad [\text{value; } \sigma_0 = 1/\text{kWh}] \\
        f_{cons} &= \Delta \sum_t (\hat p^{P50}_t - p^{pv}_t)
                   + c_{s} \sum_{b \in surplus,h} \Delta_h p^{bus}_{b,h}
                   + c_w (\Delta \sum_t (p^{ch}_t + p^{dis}_t) + \sum v)

    The constants (unserved demand) stay in the objectives, which is harmless now:
    every tier's gap is absolute. The rotation factor
    :math:`\phi_g = 1 + \rho\,(H_g - \bar H)/\max(\bar H, 1)`, clipped to
    :math:`[1-\rho, 1+\rho]`, makes a group that was shed more hours :math:`H_g` than
    the mean dearer to shed again; the time preference :math:`\tau_h` (up to
    :data:`TIME_PREFERENCE`) serves earlier hours first. ``objective_business_energy``
    (minus the staked businesses' energy) is solved relaxed only to centre the
    fair-share layers.
    """
    step = problem.step_hours
    k = data.periods_per_block
    block_hours = k * step
    rho = problem.policy.rotation_strength
    history = np.array([g.shed_hours for g in problem.households], dtype=float)
    mean_history = float(history.mean()) if history.size else 0.0
    factor = np.clip(
        1.0 + rho * (history - mean_history) / max(mean_history, 1.0), 1.0 - rho, 1.0 + rho
    )
    blocks = len(model.H)

    def objective(name: str, coefs: list[float], variables: list[object], constant: float) -> None:
        model.add_component(
            f"objective_{name}",
            pyo.Objective(expr=linear(coefs, variables, constant), sense=pyo.minimize),
        )

    soc_slacks = [*model.battery_soc_below_min.values(), *model.battery_soc_above_max.values()]
    objective("soc_window", [1.0] * len(soc_slacks), soc_slacks, 0.0)

    priority_demand = float(priority_demand_kw(problem).sum()) * step
    objective(
        "priority", [-step] * len(model.T), list(model.priority_power.values()), priority_demand
    )

    coefs: list[float] = []
    variables: list[object] = []
    constant = 0.0
    for g, group in enumerate(problem.households):
        lifeline = group.within_plan_kw
        evening = np.zeros(problem.periods) if group.evening is None else group.evening
        weighted = lifeline * (1.0 + (EVENING_WEIGHT - 1.0) * evening)
        for h in model.H:
            e = float(weighted[h * k : (h + 1) * k].sum() * step)
            if e > 0.0:
                price = float(factor[g]) * e * (1.0 + TIME_PREFERENCE * (1.0 - h / blocks))
                constant += price
                coefs.append(-price)
                variables.append(model.household_on[g, h])
    objective("household", coefs, variables, constant)

    # Use beyond the plans: kWh not served, earlier hours first, no rotation (it is the
    # surplus's to give, and a group off its lifeline cannot take it anyway).
    coefs, variables, constant = [], [], 0.0
    beyond = household_beyond_kw(problem)
    for g in model.G:
        for h in model.H:
            e = float(beyond[g, h * k : (h + 1) * k].sum() * step)
            if e > 0.0:
                price = e * (1.0 + TIME_PREFERENCE * (1.0 - h / blocks))
                constant += price
                coefs.append(-price)
                variables.append(model.household_free[g, h])
    objective("beyond_plan", coefs, variables, constant)

    # Reserve shortfall in kWh·h (per period × its length), so that its tolerance means
    # the same on any grid; the end-of-horizon wish counts as one hour short.
    reserve = [*model.reserve_short.values(), model.battery_end_short]
    objective("reserve", [step] * len(model.T) + [1.0], reserve, 0.0)

    # Business value in kWh at the expected level: the slope of the layer holding it is
    # 1, so the tier's tolerance is in kWh there and its row sits well inside HiGHS's
    # tolerances (unscaled, that slope was ≈ 0.03 and 1e-7 of slack leaked 3 Wh).
    valued = valued_businesses(problem)
    if community_value(problem):
        # Σ R_b(E_b) = Σ w_b E_b [kWh of the most valuable business]: its tolerance is
        # 0.1 kWh of that business; I of N by value wherever minimum powers bind.
        weights = business_weights(problem.businesses, problem.policy.stake_weight)
        coefs, variables = [], []
        for b in valued:
            for h in model.H:
                c, v = business_power_terms(
                    model, data, b, h, scale=-block_hours * float(weights[b])
                )
                coefs += c
                variables += v
        objective("business", coefs, variables, 0.0)
    else:
        unit = level_slope(data)
        layers = list(model.FairShareIndex)
        objective(
            "business",
            [-float(data.layers.slopes[kk]) / unit for _, kk in layers],
            [model.business_layer[b, kk] for b, kk in layers],
            0.0,
        )
    coefs, variables = [], []
    for b in valued:
        for h in model.H:
            c, v = business_power_terms(model, data, b, h, scale=-block_hours)
            coefs += c
            variables += v
    objective(BUSINESS_LEVEL, coefs, variables, 0.0)

    coefs = [-step] * len(model.T)
    variables = list(model.pv_power.values())
    constant = float(np.clip(problem.pv_p50_kw, 0.0, None).sum() * step)
    for b, business in enumerate(problem.businesses):
        if surplus_only(business, problem):
            for h in model.H:
                c, v = business_power_terms(
                    model, data, b, h, scale=SURPLUS_ONLY_COST * block_hours
                )
                coefs += c
                variables += v
    for t in model.T:
        coefs += [WEAR_COST * step, WEAR_COST * step]
        variables += [model.battery_charge[t], model.battery_discharge[t]]
    stops = model.component("business_stop")  # only with a minimum off time > 1 block
    for switch in (model.business_start, stops):
        for variable in switch.values() if switch is not None else ():
            coefs.append(WEAR_COST)
            variables.append(variable)
    objective(CONSERVATION, coefs, variables, constant)
