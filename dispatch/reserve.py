"""The reserve tier: how much energy the battery must hold for the priority users."""

from __future__ import annotations

import numpy as np

from dispatch.problem import DispatchProblem

__all__ = ["reserve_requirement_kwh"]


def reserve_requirement_kwh(problem: DispatchProblem) -> np.ndarray:
    r"""Least state of charge from which the priority load survives on P10 PV alone [kWh].

    Returns the requirement at the start of each period and at the end of the horizon
    (length ``periods + 1``, aligned with the state-of-charge points).

    Notes
    -----
    With priority demand :math:`d_t`, pessimistic PV :math:`p_t` (P10), period length
    :math:`\Delta`, efficiencies :math:`\eta_c, \eta_d` and charge limit
    :math:`\bar P`, the requirement above the SoC floor runs backwards:

    .. math::

        r_t = \max\Bigl(0,\; r_{t+1}
              + \frac{\max(d_t - p_t, 0)\,\Delta}{\eta_d}
              - \eta_c \min(\max(p_t - d_t, 0), \bar P)\,\Delta\Bigr),
        \qquad R_t = \underline{E} + r_t

    capped at the SoC ceiling. Beyond the horizon the demand and PV are taken to repeat
    (a rolling 24 h horizon sees tomorrow as today), so the recursion runs over two
    copies of the horizon and keeps the first.
    """
    battery = problem.battery
    step = problem.step_hours
    demand = sum((load.demand_kw for load in problem.priority), start=np.zeros(problem.periods))
    pv = problem.pv_p10_kw
    deficit = np.maximum(demand - pv, 0.0) * step / battery.discharge_efficiency
    surplus = np.minimum(np.maximum(pv - demand, 0.0), battery.power_kw_max)
    refill = surplus * step * battery.charge_efficiency
    net = np.tile(deficit - refill, 2)
    headroom = battery.soc_kwh_max - battery.soc_kwh_min
    above_floor = np.zeros(net.size + 1)
    for t in range(net.size - 1, -1, -1):
        above_floor[t] = min(max(0.0, above_floor[t + 1] + net[t]), headroom)
    return battery.soc_kwh_min + above_floor[: problem.periods + 1]
