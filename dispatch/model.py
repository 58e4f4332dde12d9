r"""Problem → Pyomo model: one builder per constraint family, each stating its maths.

Notation used in the ``Notes`` of every builder: periods :math:`t` of length
:math:`\Delta` [h]; relay blocks :math:`h(t)` (several periods share one relay
decision); powers in kW, energies in kWh. Variable names follow
``<asset>_<quantity>``; constraint names ``<asset>_<quantity>_<bound>``.

Build with :func:`build_model`; solve with :mod:`dispatch.solve`; read the result with
:mod:`dispatch.schedule`. Nothing here touches the solver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from dispatch.fair_share import FairShareLayers, fair_share_layers
from dispatch.problem import BusinessLoad, DispatchProblem
from dispatch.reserve import reserve_requirement_kwh
from dispatch.weights import TierWeights, tier_weights

__all__ = ["ModelData", "build_model", "business_power_terms", "linear", "surplus_only"]

SURPLUS_VALUE_FACTOR = 0.1
"""Value of a surplus-only business's kWh, as a fraction of the flattest fair-share
slope: high enough to beat curtailment, too low to outbid any staked business or the
battery storing energy for one."""

TIME_PREFERENCE = 0.05
"""Household shedding costs up to 5 % more now than at the horizon's end: a kWh served now
beats one promised later, because forecasts worsen with lead time and the plan is redone
every period. Without it, equal plans put the served hours at the end of the horizon."""

TIE_BREAK_FACTOR = 0.01
"""Battery wear and relay switching costs, as a fraction of the surplus value: they only
break ties (no simultaneous charge and discharge, no needless relay chatter)."""


@dataclass(frozen=True)
class ModelData:
    """Numbers derived from the problem while building, kept for reading the result."""

    weights: TierWeights
    layers: FairShareLayers
    reserve_kwh: np.ndarray
    periods_per_block: int
    business_cap_kw: np.ndarray  # (businesses, relay blocks)
    business_floor_kw: np.ndarray  # (businesses, relay blocks): minimum power when on
    surplus_value: float


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


def surplus_only(business: BusinessLoad, problem: DispatchProblem) -> bool:
    """Whether a business may only take energy that would otherwise be curtailed."""
    policy = problem.policy
    return (policy.surplus_only_zero_stake and business.stake <= 0) or (
        policy.surplus_only_negative_score and business.value_score < 0
    )


def build_model(problem: DispatchProblem) -> tuple[pyo.ConcreteModel, ModelData]:
    """The dispatch MILP for one problem.

    Returns
    -------
    model : pyomo.environ.ConcreteModel
        With variables, constraints and the objective ``objective`` (minimise).
    data : ModelData
        Weights, fair-share layers and derived inputs, for reading the result.
    """
    model = pyo.ConcreteModel(name="lastwatt_dispatch")
    data = _model_data(problem)
    _add_index_sets(model, problem, data)
    add_supply(model, problem)
    add_battery(model, problem)
    add_priority(model, problem)
    add_households(model, problem, data)
    add_businesses(model, problem, data)
    add_relay_switching(model, problem, data)
    add_energy_balance(model, problem, data)
    add_reserve(model, problem, data)
    add_fair_share(model, problem, data)
    add_objective(model, problem, data)
    return model, data


def _model_data(problem: DispatchProblem) -> ModelData:
    step = problem.step_hours
    ratio = problem.policy.relay_step_hours / step
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        msg = (
            f"relay_step_hours ({problem.policy.relay_step_hours}) must be a whole multiple "
            f"of the period length ({step} h)"
        )
        raise ValueError(msg)
    k = round(ratio)
    blocks = -(-problem.periods // k)
    caps = np.zeros((len(problem.businesses), blocks))
    for i, b in enumerate(problem.businesses):
        if b.has_credit:
            per_period = np.clip(np.minimum(b.demand_kw, b.power_kw_max), 0.0, None)
            padded = np.pad(per_period, (0, blocks * k - per_period.size), mode="edge")
            caps[i] = padded.reshape(blocks, k).min(axis=1)
    staked = [
        i for i, b in enumerate(problem.businesses) if not surplus_only(b, problem) and b.stake > 0
    ]
    total_stake = sum(problem.businesses[i].stake for i in staked)
    expected = _expected_business_energy_kwh(problem)
    largest = max(
        (caps[i].sum() * k * step * total_stake / problem.businesses[i].stake for i in staked),
        default=1.0,
    )
    layers = fair_share_layers(expected, largest, 1.0 + problem.policy.fair_share_tolerance)
    return ModelData(
        weights=tier_weights(problem),
        layers=layers,
        reserve_kwh=reserve_requirement_kwh(problem),
        periods_per_block=k,
        business_cap_kw=caps,
        business_floor_kw=np.minimum(
            np.array([[b.power_kw_min] for b in problem.businesses]).reshape(-1, 1), caps
        ),
        surplus_value=SURPLUS_VALUE_FACTOR * layers.smallest_slope,
    )


def _expected_business_energy_kwh(problem: DispatchProblem) -> float:
    """A rough budget for the business tier, to centre the fine fair-share layers on."""
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
    r"""Household relay groups: on and served to demand, or shed as a whole.

    Notes
    -----
    .. math:: p^{hh}_{g,t} = d_{g,t}\, x_{g,h(t)}, \qquad x_{g,h} \in \{0, 1\}

    The served power is not a variable: the energy balance multiplies the binaries by
    the demand. A group with no demand in a block is left on (nothing to gain by
    shedding it).
    """
    demand = household_demand_kw(problem)
    k = data.periods_per_block
    model.household_on = pyo.Var(model.G, model.H, domain=pyo.Binary)
    for g in model.G:
        for h in model.H:
            if demand[g, h * k : (h + 1) * k].sum() <= 0.0:
                model.household_on[g, h].fix(1)


def household_demand_kw(problem: DispatchProblem) -> np.ndarray:
    """Demand of each household group per period, (groups, periods) [kW]."""
    return np.array([np.clip(g.demand_kw, 0.0, None) for g in problem.households]).reshape(
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
    for b, business in enumerate(problem.businesses):
        hold_hours = (
            problem.policy.min_on_hours if business.relay.closed else problem.policy.min_off_hours
        ) - business.relay.hours_in_state
        hold_blocks = int(np.ceil(max(hold_hours, 0.0) / block_hours - 1e-9))
        for h in range(min(hold_blocks, len(model.H))):
            if not model.business_on[b, h].fixed:
                model.business_on[b, h].fix(1 if business.relay.closed else 0)


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
        coefs = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, *(-household[:, t])]
        return linear(coefs, (*supply_and_tiers, *groups)) == 0.0


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
    Surplus-only businesses have no layers; they earn a flat, tiny value per kWh.
    """
    staked = [
        b
        for b, business in enumerate(problem.businesses)
        if business.stake > 0 and not surplus_only(business, problem)
    ]
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


def add_objective(model: pyo.ConcreteModel, problem: DispatchProblem, data: ModelData) -> None:
    r"""Minimise the priced shortfalls of the tiers, minus the business utility.

    Notes
    -----
    .. math::

        \min\; w_{soc} \sum_s (s^{lo}_s + s^{hi}_s)
        + w_p \Delta \sum_{i,t} (d_{i,t} - p^{pri}_{i,t})
        + \sum_{g,h} w_h f_g E_{g,h} (1 - x_{g,h})
        + w_r \sum_t r_t + w_r s^{end}
        - \sum_{b,k} \sigma_k z_{b,k} - \epsilon \Delta \sum_{b \in surplus} p^{bus}_{b,t}
        + \epsilon' (\text{throughput} + \text{switches})

    The constant unserved-demand terms are kept, so the objective is the cost of what
    is not served. The rotation factor
    :math:`f_g = 1 + \rho\,(H_g - \bar H)/\max(\bar H, 1)`, clipped to
    :math:`[1-\rho, 1+\rho]`, makes a group that was shed more hours :math:`H_g` than
    the mean dearer to shed again, which rotates shedding across groups.
    """
    w = data.weights
    step = problem.step_hours
    k = data.periods_per_block
    history = np.array([g.shed_hours for g in problem.households], dtype=float)
    mean_history = float(history.mean()) if history.size else 0.0
    factor = np.clip(
        1.0 + w.household_rotation * (history - mean_history) / max(mean_history, 1.0),
        1.0 - w.household_rotation,
        1.0 + w.household_rotation,
    )
    blocks = len(model.H)
    group_block_energy = {
        (g, h): float(problem.households[g].demand_kw[h * k : (h + 1) * k].sum() * step)
        * (1.0 + TIME_PREFERENCE * (1.0 - h / blocks))
        for g in model.G
        for h in model.H
    }
    priority_demand = float(priority_demand_kw(problem).sum()) * step
    block_hours = k * step
    surplus = [
        b for b, business in enumerate(problem.businesses) if surplus_only(business, problem)
    ]
    tie = TIE_BREAK_FACTOR * data.surplus_value
    stops = model.component("business_stop")  # only with a minimum off time > 1 block

    coefs: list[float] = []
    variables: list[object] = []

    def add(coef: float, variable: object) -> None:
        coefs.append(coef)
        variables.append(variable)

    for s in model.S:
        add(w.soc_window, model.battery_soc_below_min[s])
        add(w.soc_window, model.battery_soc_above_max[s])
    # Unserved priority energy: the constant demand minus what is served.
    constant = w.priority * priority_demand
    for t in model.T:
        add(-w.priority * step, model.priority_power[t])
        add(w.reserve, model.reserve_short[t])
        add(tie * step, model.battery_charge[t])
        add(tie * step, model.battery_discharge[t])
    add(w.end_soc, model.battery_end_short)
    # Shed household energy: w·f·E·(1 − x) = w·f·E − w·f·E·x.
    for (g, h), e in group_block_energy.items():
        if e > 0.0:
            price = w.household * float(factor[g]) * e
            constant += price
            add(-price, model.household_on[g, h])
    for b, kk in model.FairShareIndex:
        add(-float(data.layers.slopes[kk]), model.business_layer[b, kk])
    for b in surplus:
        for h in model.H:
            c, v = business_power_terms(model, data, b, h, scale=-data.surplus_value * block_hours)
            coefs += c
            variables += v
    for switch in (model.business_start, stops):
        for variable in switch.values() if switch is not None else ():
            add(tie, variable)
    cost = linear(coefs, variables, constant)
    model.objective = pyo.Objective(expr=cost, sense=pyo.minimize)
