"""Rolling-horizon dispatch and delivery on what actually happens.

A plan is made on forecasts; the sun and the loads then do what they do. This module
closes that loop in simulated time, the way the service runs it live: every
``replan_every`` periods a new plan is made from the *measured* state of charge, relay
states and shed hours, warm-started from the previous plan; the periods until the next
plan are delivered on the actual PV and demand by :func:`deliver_period`, the physics
the container's controller would meet. Planners (scenarios) and the quality benchmark
use it; :func:`community_value` scores the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from dispatch.problem import (
    BatteryState,
    DispatchPolicy,
    DispatchProblem,
    RelayState,
    problem_from_site,
)
from dispatch.schedule import Schedule
from microgrid import Site, TimeGrid

__all__ = [
    "Delivery",
    "Planner",
    "TierValues",
    "community_value",
    "deliver_period",
    "roll",
]

Planner = Callable[[DispatchProblem, Schedule | None], Schedule]
"""Makes a plan for a problem, given the previous plan (for a warm start)."""


@dataclass(frozen=True)
class TierValues:
    """What a kWh is worth to the community, per tier, for scoring outcomes.

    Businesses are worth their own ``value_score`` per kWh (−10 … +10); households and
    priority users are worth more than any business, as the tier order says.

    Attributes
    ----------
    priority, household : float
        Value per kWh served [value/kWh].
    """

    priority: float = 20.0
    household: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """What was delivered, period by period.

    Attributes
    ----------
    grid : TimeGrid
        The delivered periods.
    served_kw : pandas.DataFrame
        Power served to each unit (priority user, household group, business) [kW].
    flows : pandas.DataFrame
        ``pv_kw`` (available), ``pv_used_kw``, ``curtailed_kw``, ``battery_kw``
        (discharge positive), ``soc_kwh`` (end of period), ``short_kw`` (load the
        battery could not carry) [kW, kWh].
    tiers : dict of str to tuple of str
        Unit ids per tier (``priority``, ``household``, ``business``).
    shed_hours : pandas.Series
        Hours each household group was off while it had demand [h].
    plans : list of Schedule
        The plans made, in order (empty unless kept).
    """

    grid: TimeGrid
    served_kw: pd.DataFrame
    flows: pd.DataFrame
    tiers: dict[str, tuple[str, ...]]
    shed_hours: pd.Series
    plans: list[Schedule] = field(default_factory=list)

    @property
    def shed_spread_hours(self) -> float:
        """Most minus fewest shed hours over the household groups [h]: 0 is even rotation."""
        return float(self.shed_hours.max() - self.shed_hours.min()) if len(self.shed_hours) else 0.0

    def tier_energy_kwh(self) -> pd.Series:
        """Energy served per tier over the whole run [kWh]."""
        energy = self.served_kw.sum() * self.grid.step_hours
        return pd.Series({tier: float(energy[list(ids)].sum()) for tier, ids in self.tiers.items()})


def deliver_period(
    schedule: Schedule,
    row: int,
    pv_kw: float,
    demand_kw: Mapping[str, float],
    battery: BatteryState,
    step_hours: float,
    tiers: Mapping[str, tuple[str, ...]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Deliver one period of a plan on the actual PV and demand.

    Relays are where the plan put them (priority users always on); a household group
    that is on draws its actual demand; a business draws its actual demand up to its
    allotment (a load limiter). PV serves the load, the battery covers the difference
    within its power and state-of-charge limits, surplus charges it and the rest is
    curtailed. If the battery cannot carry the load, the deficit is shed in reverse
    tier order: businesses, then household groups, then priority users — what the
    controller's under-frequency relays would do.

    Returns
    -------
    served : dict of str to float
        Power served per unit [kW].
    flows : dict of str to float
        ``pv_kw``, ``pv_used_kw``, ``curtailed_kw``, ``battery_kw``, ``soc_kwh``,
        ``short_kw``.
    """
    relays = schedule.relays.iloc[row]
    allotment = schedule.allotment_kw.iloc[row]
    draw: dict[str, float] = {}
    for unit in tiers["priority"]:
        draw[unit] = max(demand_kw[unit], 0.0)
    for unit in tiers["household"]:
        draw[unit] = max(demand_kw[unit], 0.0) if bool(relays[unit]) else 0.0
    for unit in tiers["business"]:
        on = bool(relays[unit])
        draw[unit] = min(max(demand_kw[unit], 0.0), float(allotment[unit])) if on else 0.0
    load = sum(draw.values())
    soc = battery.soc_kwh
    pv = max(pv_kw, 0.0)
    charge = discharge = curtailed = short = 0.0
    if pv >= load:
        room = max(battery.soc_kwh_max - soc, 0.0) / (battery.charge_efficiency * step_hours)
        charge = min(pv - load, battery.power_kw_max, room)
        curtailed = pv - load - charge
    else:
        stored = max(soc - battery.soc_kwh_min, 0.0) * battery.discharge_efficiency / step_hours
        discharge = min(load - pv, battery.power_kw_max, stored)
        short = load - pv - discharge
    remaining = short
    for tier in ("business", "household", "priority"):
        units = tiers[tier]
        total = sum(draw[u] for u in units)
        if remaining <= 1e-12 or total <= 0.0:
            continue
        cut = min(remaining, total)
        for u in units:
            draw[u] *= 1.0 - cut / total
        remaining -= cut
    soc += step_hours * (
        battery.charge_efficiency * charge - discharge / battery.discharge_efficiency
    )
    flows = {
        "pv_kw": pv,
        "pv_used_kw": pv - curtailed,
        "curtailed_kw": curtailed,
        "battery_kw": discharge - charge,
        "soc_kwh": soc,
        "short_kw": short,
    }
    return draw, flows


def roll(
    site: Site,
    grid: TimeGrid,
    forecast_pv_kw: tuple[np.ndarray, np.ndarray],
    forecast_demand_kw: Mapping[str, np.ndarray],
    actual_pv_kw: np.ndarray,
    actual_demand_kw: Mapping[str, np.ndarray],
    planner: Planner,
    soc_kwh: float,
    horizon_periods: int,
    replan_every: int = 1,
    stakes: Mapping[str, int] | None = None,
    policy: DispatchPolicy | None = None,
    keep_plans: bool = False,
) -> Delivery:
    """Plan and deliver ``grid`` period by period with a rolling horizon.

    Parameters
    ----------
    site : Site
        The site.
    grid : TimeGrid
        The periods to deliver.
    forecast_pv_kw : (numpy.ndarray, numpy.ndarray)
        P50 and P10 PV forecasts [kW] covering ``grid.periods + horizon_periods - 1``
        periods from ``grid.start`` (each plan looks ``horizon_periods`` ahead).
    forecast_demand_kw : mapping of str to numpy.ndarray
        Demand forecast per connection [kW], same length.
    actual_pv_kw : numpy.ndarray
        PV that was available, on ``grid`` [kW].
    actual_demand_kw : mapping of str to numpy.ndarray
        Demand per connection that materialised, on ``grid`` [kW].
    planner : Planner
        E.g. ``lambda p, prev: solve_dispatch(p, settings, warm_start=prev)`` or
        ``lambda p, prev: proportional_rule(p)``.
    soc_kwh : float
        Battery state of charge at the start [kWh].
    horizon_periods : int
        Periods each plan covers.
    replan_every : int
        Periods delivered from one plan before the next (1 = replan every period).
    stakes, policy
        As for :func:`dispatch.problem.problem_from_site`.
    keep_plans : bool
        Keep every plan in the result (memory grows with the run).

    Returns
    -------
    Delivery
    """
    n, step = grid.periods, grid.step_hours
    needed = n + horizon_periods - 1
    for name, series in (("P50", forecast_pv_kw[0]), ("P10", forecast_pv_kw[1])):
        if len(series) < needed:
            msg = (
                f"the {name} PV forecast has {len(series)} periods; rolling {n} periods "
                f"with a {horizon_periods}-period horizon needs {needed}"
            )
            raise ValueError(msg)
    if not 1 <= replan_every <= horizon_periods:
        msg = f"replan_every must be between 1 and horizon_periods, got {replan_every}"
        raise ValueError(msg)
    # The units and their actual demand, aggregated exactly as dispatch aggregates them.
    actual = problem_from_site(
        site, grid, actual_pv_kw, actual_pv_kw, actual_demand_kw, soc_kwh, stakes, policy=policy
    )
    tiers = {
        "priority": tuple(p.id for p in actual.priority),
        "household": tuple(g.id for g in actual.households),
        "business": tuple(b.id for b in actual.businesses),
    }
    actual_units: dict[str, np.ndarray] = {p.id: p.demand_kw for p in actual.priority}
    actual_units |= {g.id: g.demand_kw for g in actual.households}
    actual_units |= {b.id: b.demand_kw for b in actual.businesses}
    served = {u: np.zeros(n) for u in actual_units}
    flows: dict[str, np.ndarray] = {}
    relays: dict[str, RelayState] = {}
    shed = dict.fromkeys(tiers["household"], 0.0)
    battery = actual.battery
    plans: list[Schedule] = []
    previous: Schedule | None = None
    for t in range(0, n, replan_every):
        window = TimeGrid(start=grid.index[t], periods=horizon_periods, step=grid.step)
        horizon = slice(t, t + horizon_periods)
        problem = problem_from_site(
            site,
            window,
            forecast_pv_kw[0][horizon],
            forecast_pv_kw[1][horizon],
            {c: np.asarray(d)[horizon] for c, d in forecast_demand_kw.items()},
            battery.soc_kwh,
            stakes,
            relays=relays,
            shed_hours=shed,
            policy=policy,
        )
        plan = planner(problem, previous)
        previous = plan
        if keep_plans:
            plans.append(plan)
        for row in range(min(replan_every, n - t)):
            now = t + row
            demand_now = {u: float(d[now]) for u, d in actual_units.items()}
            draw, flow = deliver_period(
                plan, row, float(actual_pv_kw[now]), demand_now, battery, step, tiers
            )
            battery = replace(battery, soc_kwh=flow["soc_kwh"])
            for u, kw in draw.items():
                served[u][now] = kw
            for key, value in flow.items():
                flows.setdefault(key, np.zeros(n))[now] = value
            for unit in (*tiers["household"], *tiers["business"]):
                closed = bool(plan.relays.iloc[row][unit])
                before = relays.get(unit, RelayState())
                held = before.hours_in_state + step if before.closed == closed else step
                relays[unit] = RelayState(closed=closed, hours_in_state=held)
            for g in tiers["household"]:
                if draw[g] <= 1e-9 and demand_now[g] > 1e-9:
                    shed[g] += step
    index = grid.index
    return Delivery(
        grid=grid,
        served_kw=pd.DataFrame(served, index=index),
        flows=pd.DataFrame(flows, index=index),
        tiers=tiers,
        shed_hours=pd.Series(shed, name="shed_hours"),
        plans=plans,
    )


def community_value(delivery: Delivery, site: Site, values: TierValues | None = None) -> float:
    r"""The community's value of what was delivered [value units].

    .. math:: V = v_{pri} E_{pri} + v_{hh} E_{hh} + \sum_b s_b E_b

    with :math:`s_b` the business's value score per kWh.
    """
    values = values or TierValues()
    energy = delivery.served_kw.sum() * delivery.grid.step_hours
    score = {c.id: c.business.value_score for c in site.businesses if c.business is not None}
    total = values.priority * float(energy[list(delivery.tiers["priority"])].sum())
    total += values.household * float(energy[list(delivery.tiers["household"])].sum())
    total += sum(score[b] * float(energy[b]) for b in delivery.tiers["business"])
    return total
