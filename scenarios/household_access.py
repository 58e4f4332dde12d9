"""What each household got in a simulated day: MTF tiers and the evening lifeline.

The engine delivers to household *groups* (a feeder relay is switch-only; the group's
meters together are held to the sum of their plans). The planners' KPIs are per household
and day, so each delivered block is split onto the group's households here:

- a household **can draw** (the MTF's "supply") in a period when its group's relay is
  closed, the container is not dark (the inverter did not trip) and its meter lets at least
  the MTF tier-1 power through; what it can draw is its meter's limit, or, while its meter
  is free (or it has no plan), its demand and at least its plan's power — the rule of
  :func:`dispatch.schedule.household_access`;
- the group's delivered energy is shared among its households in proportion to what each
  drew: its actual demand capped at its meter's limit;
- the **evening lifeline was delivered** to a household on a day when it could draw in
  every period of its plan's evening window (the MTF evening, 18–22 local, without a plan);
- **physics allows** a day's evening lifelines when, at the start of the evening window,
  the usable battery energy (state of charge above the minimum, times the discharge
  efficiency) plus the realised PV over the window covers the realised priority demand plus
  every household's lifeline over the window (its plan's power for the window's hours,
  capped at its daily budget; without a plan, its realised demand). It is an energy
  balance on the state the policy left at the evening's start, with the one physics'
  battery parameters; the battery's power limit is not checked (20 kW against ≈ 12 kW of
  evening lifelines and priority load on the default site). A day the policy emptied the
  battery on businesses at midday therefore counts as not allowed — the KPI
  ``evening_lifeline_share`` over all days is the one that catches that.

Tiers come from :func:`microgrid.access.mtf_daily` (one truth for the MTF).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dispatch import DispatchProblem, Schedule
from dispatch.problem import BatteryState
from microgrid.access import MTF_THRESHOLDS, MtfThresholds, mtf_daily

__all__ = ["TIERS", "DayAccess", "evening_physics_allows"]

TIERS = range(6)
"""MTF tiers 0–5 (0: below tier 1)."""


def evening_physics_allows(
    evening: np.ndarray,
    pv_kw: np.ndarray,
    soc_start_kwh: np.ndarray,
    priority_kw: np.ndarray,
    lifeline_kwh: float,
    battery: BatteryState,
    step_hours: float,
) -> bool:
    """Whether the realised PV and usable battery at the evening's start carry its lifelines.

    Parameters
    ----------
    evening : numpy.ndarray of bool
        Periods of the day inside the evening window.
    pv_kw : numpy.ndarray
        Realised PV available per period [kW].
    soc_start_kwh : numpy.ndarray
        State of charge at the start of each period [kWh].
    priority_kw : numpy.ndarray
        Realised priority demand per period [kW].
    lifeline_kwh : float
        Every household's lifeline over the window [kWh].
    battery : BatteryState
        Minimum state of charge [kWh] and discharge efficiency [-].
    step_hours : float
        Period length [h].

    Examples
    --------
    20 kWh above the minimum at 90 % and 1 kWh of PV carry 10 kWh of priority load and
    9 kWh of lifelines (18 + 1 ≥ 19), not 10 kWh:

    >>> b = BatteryState(soc_kwh=30.0, soc_kwh_min=10.0, soc_kwh_max=60.0,
    ...                  power_kw_max=20.0, charge_efficiency=0.95, discharge_efficiency=0.9)
    >>> ev = np.array([False, True, True, True, True])
    >>> args = (ev, np.array([0, 1, 0, 0, 0.0]), np.full(5, 30.0), np.full(5, 2.5))
    >>> evening_physics_allows(*args, 9.0, b, 1.0), evening_physics_allows(*args, 10.0, b, 1.0)
    (True, False)
    """
    if not evening.any():
        return True
    first = int(np.flatnonzero(evening)[0])
    usable = max(float(soc_start_kwh[first]) - battery.soc_kwh_min, 0.0)
    available = usable * battery.discharge_efficiency + float(pv_kw[evening].sum()) * step_hours
    need = float(priority_kw[evening].sum()) * step_hours + lifeline_kwh
    # 1 Wh of slack: the energies are sums of 96 floats.
    return available + 1e-3 >= need


@dataclass
class DayAccess:
    """Collects a day's delivered blocks per household and rates the day.

    Parameters
    ----------
    households : list of str
        Every household of the run (columns of the day's tables).
    timezone : str
        The site's timezone.
    """

    households: list[str]
    timezone: str
    thresholds: MtfThresholds = MTF_THRESHOLDS
    _supply: list[pd.DataFrame] = field(default_factory=list)
    _energy: list[pd.DataFrame] = field(default_factory=list)
    _evening: list[pd.DataFrame] = field(default_factory=list)
    _lifeline_kwh: dict[str, float] = field(default_factory=dict)

    def add_block(
        self,
        plan: Schedule,
        problem: DispatchProblem,
        unit_ids: list[str],
        served_kw: np.ndarray,
        short_kw: np.ndarray,
        demand_kw: np.ndarray,
        connection_ids: list[str],
    ) -> None:
        """Split one delivered block onto the households (module docstring).

        Parameters
        ----------
        plan, problem : Schedule, DispatchProblem
            The plan delivered and its problem.
        unit_ids : list of str
            Columns of ``served_kw``.
        served_kw : numpy.ndarray
            Delivered power, periods × units [kW].
        short_kw : numpy.ndarray
            Load dark because the inverter tripped, per period [kW].
        demand_kw : numpy.ndarray
            Realised demand, periods × connections [kW].
        connection_ids : list of str
            Columns of ``demand_kw``.
        """
        rows = served_kw.shape[0]
        index = problem.grid.index[:rows]
        column = {c: k for k, c in enumerate(connection_ids)}
        unit = {u: k for k, u in enumerate(unit_ids)}
        supply = np.zeros((rows, len(self.households)))
        energy = np.zeros_like(supply)
        evening = np.zeros_like(supply, dtype=bool)
        position = {h: k for k, h in enumerate(self.households)}
        local_hour = index.tz_convert(self.timezone).hour.to_numpy()
        start, end = self.thresholds.evening
        mtf_evening = (local_hour >= start) & (local_hour < end)
        lit = short_kw[:rows] <= 0.0
        limits = plan.meter_limit_kw
        for group in problem.households:
            if not group.members:
                continue
            closed = plan.relays[group.id].to_numpy(bool)[:rows] & lit
            window = group.evening[:rows] if group.evening is not None else mtf_evening
            members = [position[m] for m in group.members]
            demand = np.stack([demand_kw[:rows, column[m]] for m in group.members], axis=1)
            plan_kw = np.array([p[0] for p in group.member_plans] or [0.0] * len(members))
            limit = np.full_like(demand, np.inf)
            if limits is not None:
                for i, m in enumerate(group.members):
                    if m in limits:
                        limit[:, i] = limits[m].to_numpy(float)[:rows]
            could = np.where(np.isinf(limit), np.maximum(demand, plan_kw), limit)
            supply[:, members] = np.where(closed[:, None], could, 0.0) * 1000.0
            drawn = np.where(closed[:, None], np.minimum(demand, limit), 0.0)
            total = drawn.sum(axis=1, keepdims=True)
            share = np.divide(drawn, total, out=np.zeros_like(drawn), where=total > 0)
            served = served_kw[:rows, unit[group.id]]
            energy[:, members] = share * served[:, None] * problem.step_hours * 1000.0
            evening[:, members] = window[:, None]
            hours = float(window.sum()) * problem.step_hours
            for i, m in enumerate(group.members):
                if group.member_plans:
                    power_kw, budget_wh = group.member_plans[i]
                    lifeline = min(power_kw * hours, budget_wh / 1000.0)
                else:
                    lifeline = float(demand[window, i].sum()) * problem.step_hours
                self._lifeline_kwh[m] = self._lifeline_kwh.get(m, 0.0) + lifeline
        self._supply.append(pd.DataFrame(supply, index=index, columns=self.households))
        self._energy.append(pd.DataFrame(energy, index=index, columns=self.households))
        self._evening.append(pd.DataFrame(evening, index=index, columns=self.households))

    def end_day(
        self,
        pv_kw: np.ndarray,
        soc_end_kwh: np.ndarray,
        soc_start_kwh: float,
        priority_kw: np.ndarray,
        battery: BatteryState,
        step_hours: float,
    ) -> dict[str, float]:
        """The day's household-access row for the engine's daily table; resets for the next.

        Returns
        -------
        dict of str to float
            ``mtf_tier_0`` … ``mtf_tier_5`` (households per overall tier), ``lifeline_households``
            (households held to a plan or counted for the evening), ``lifeline_delivered``
            (of them, those whose evening lifeline was delivered) and ``physics_allows``
            (1 when physics allows the day's evening lifelines, else 0).
        """
        supply = pd.concat(self._supply)
        energy = pd.concat(self._energy)
        evening = pd.concat(self._evening)
        self._supply, self._energy, self._evening = [], [], []
        lifeline_kwh = sum(self._lifeline_kwh.values())
        counted = [h for h in self.households if h in self._lifeline_kwh]
        self._lifeline_kwh = {}
        daily = mtf_daily(supply, energy, self.timezone, self.thresholds)
        # One local day per simulated day: a block starting at local midnight.
        tiers = daily["tier"].groupby(level="household").min().reindex(counted)
        row = {f"mtf_tier_{k}": float((tiers == k).sum()) for k in TIERS}
        can_draw = supply >= self.thresholds.capacity_w[0]
        dark_in_evening = (evening & ~can_draw).any(axis=0)
        has_evening = evening.any(axis=0)
        delivered = has_evening & ~dark_in_evening
        row["lifeline_households"] = float(has_evening[counted].sum())
        row["lifeline_delivered"] = float(delivered[counted].sum())
        soc_start = np.concatenate([[soc_start_kwh], soc_end_kwh[:-1]])
        window = evening[counted].any(axis=1).to_numpy()
        row["physics_allows"] = float(
            evening_physics_allows(
                window, pv_kw, soc_start, priority_kw, lifeline_kwh, battery, step_hours
            )
        )
        return row
