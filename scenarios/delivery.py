"""Delivery of a plan on what actually happens, vectorised over units.

The same physics as :func:`dispatch.rolling.deliver_period` — relays where the plan put
them, businesses limited to their allotment, PV then battery, surplus charges the battery
and the rest is curtailed, a deficit shed in reverse tier order — on numpy arrays, so a
simulated year does not pay for a pandas row lookup per unit and period
(``tests/scenarios/test_delivery.py`` checks that both give the same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dispatch.problem import BatteryState

__all__ = ["BlockDelivery", "UnitTiers", "deliver_block"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_EPS = 1e-12


@dataclass(frozen=True)
class UnitTiers:
    """Column positions of each tier among the units (priority, household groups, businesses).

    Attributes
    ----------
    priority, household, business : numpy.ndarray
        Integer column indices.
    """

    priority: npt.NDArray[np.intp]
    household: npt.NDArray[np.intp]
    business: npt.NDArray[np.intp]

    @classmethod
    def of(cls, n_priority: int, n_household: int, n_business: int) -> UnitTiers:
        """Units ordered priority, households, businesses."""
        a, b = n_priority, n_priority + n_household
        return cls(np.arange(0, a), np.arange(a, b), np.arange(b, b + n_business))


@dataclass(frozen=True)
class BlockDelivery:
    """What a block of periods delivered.

    Attributes
    ----------
    served_kw : numpy.ndarray
        Power served, periods × units [kW].
    pv_kw, pv_used_kw, curtailed_kw, battery_kw, soc_kwh, short_kw : numpy.ndarray
        Per period, as :func:`dispatch.rolling.deliver_period` reports them.
    """

    served_kw: FloatArray
    pv_kw: FloatArray
    pv_used_kw: FloatArray
    curtailed_kw: FloatArray
    battery_kw: FloatArray
    soc_kwh: FloatArray
    short_kw: FloatArray


def deliver_block(
    relays: BoolArray,
    allotment_kw: FloatArray,
    pv_kw: FloatArray,
    demand_kw: FloatArray,
    battery: BatteryState,
    step_hours: float,
    tiers: UnitTiers,
) -> BlockDelivery:
    """Deliver consecutive periods of a plan on actual PV and demand.

    Parameters
    ----------
    relays : numpy.ndarray of bool
        Planned relay state, periods × units (priority columns are ignored: always on).
    allotment_kw : numpy.ndarray
        Planned power per unit [kW]; caps businesses.
    pv_kw : numpy.ndarray
        Available PV per period [kW].
    demand_kw : numpy.ndarray
        Actual demand, periods × units [kW].
    battery : BatteryState
        Limits and the state of charge at the start.
    step_hours : float
        Period length [h].
    tiers : UnitTiers
        Which columns are which tier.
    """
    rows, _ = demand_kw.shape
    draw = np.maximum(demand_kw, 0.0).copy()
    draw[:, tiers.household] *= relays[:, tiers.household]
    biz = tiers.business
    draw[:, biz] = np.where(relays[:, biz], np.minimum(draw[:, biz], allotment_kw[:, biz]), 0.0)
    load = draw.sum(axis=1)
    flows = np.zeros((6, rows))
    soc = battery.soc_kwh
    ce, de = battery.charge_efficiency, battery.discharge_efficiency
    order = (biz, tiers.household, tiers.priority)
    for t in range(rows):
        pv = max(float(pv_kw[t]), 0.0)
        need = float(load[t])
        charge = discharge = curtailed = short = 0.0
        if pv >= need:
            room = max(battery.soc_kwh_max - soc, 0.0) / (ce * step_hours)
            charge = min(pv - need, battery.power_kw_max, room)
            curtailed = pv - need - charge
        else:
            stored = max(soc - battery.soc_kwh_min, 0.0) * de / step_hours
            discharge = min(need - pv, battery.power_kw_max, stored)
            short = need - pv - discharge
        remaining = short
        if remaining > _EPS:
            row = draw[t]
            for units in order:
                total = float(row[units].sum())
                if remaining <= _EPS or total <= 0.0:
                    continue
                cut = min(remaining, total)
                row[units] *= 1.0 - cut / total
                remaining -= cut
        soc += step_hours * (ce * charge - discharge / de)
        flows[:, t] = (pv, pv - curtailed, curtailed, discharge - charge, soc, short)
    return BlockDelivery(draw, *flows)
