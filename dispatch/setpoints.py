"""Setpoints: the one typed structure that crosses from dispatch to the devices.

A plan (:class:`~dispatch.schedule.Schedule`) explains itself to the operator; what the
container carries out is its :class:`Setpoints`, period by period: the PV inverter's
limit, the battery inverter's charge and discharge limits, the relay state of every
switchable unit, the power limit of every *limited* unit (a business meter enforces
its allotment itself) and the energy budget per connection. A unit is either
**switch-only** (a household feeder group on the relay board: on or off, never a
fraction) or **limited** (a business: its meter takes a power limit); priority users
are neither (always on, never limited).

The controller, the service's stored schedule, the API and the safe state all use this
type; the safe state is :func:`safe_setpoints`, a function of the site.

Examples
--------
>>> import pandas as pd
>>> index = pd.date_range("2026-03-20", periods=2, freq="15min", tz="UTC")
>>> plan = pd.DataFrame(
...     {"pv_used_kw": [4.0, 5.0], "curtailed_kw": [1.0, 0.0], "battery_power_kw": [0.0, 2.0]},
...     index=index)
>>> relays = pd.DataFrame({"G1": [True, False], "B1": [True, True]}, index=index)
>>> allotment = pd.DataFrame({"B1": [1.5, 0.5], "G1": [2.0, 0.0]}, index=index)
>>> sp = Setpoints.from_plan(plan, relays, allotment, household_groups=("G1",))
>>> now = sp.at(index[1])
>>> now.pv_limit_kw, now.discharge_limit_kw, now.relays, now.power_limit_kw
(inf, 2.0, {'G1': False, 'B1': True}, {'B1': 0.5})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from microgrid.site import Site

if TYPE_CHECKING:
    from dispatch.schedule import Schedule

__all__ = ["PeriodSetpoints", "Setpoints", "safe_setpoints"]

# PV counts as curtailed when the plan leaves more than this unused [kW]: below it the
# inverter runs free (a limit at the noise level would only chatter).
_CURTAILED_KW = 1e-3
_BATTERY_COLUMNS = ("pv_limit_kw", "charge_limit_kw", "discharge_limit_kw")


@dataclass(frozen=True, slots=True)
class PeriodSetpoints:
    """The setpoints of one period.

    Attributes
    ----------
    start : pandas.Timestamp
        Period start (UTC).
    pv_limit_kw : float
        PV inverter active power limit [kW]; ``inf`` = run free.
    charge_limit_kw, discharge_limit_kw : float
        Battery inverter limits [kW]; ``inf`` = its rating. The discharge limit is the
        planned discharge: the controller adds its headroom for forecast error.
    relays : dict of str to bool
        Switchable unit → closed.
    power_limit_kw : dict of str to float
        Limited unit → its meter's power limit [kW].
    energy_budget_wh : dict of str to int
        Connection → its meter's budget for the local day [Wh]; absent = no budget.
    """

    start: pd.Timestamp
    pv_limit_kw: float
    charge_limit_kw: float
    discharge_limit_kw: float
    relays: dict[str, bool]
    power_limit_kw: dict[str, float]
    energy_budget_wh: dict[str, int]


@dataclass(frozen=True)
class Setpoints:
    """Per-period setpoints from dispatch to the devices (see the module notes).

    Attributes
    ----------
    inverters : pandas.DataFrame
        One row per period (timezone-aware UTC start): ``pv_limit_kw``,
        ``charge_limit_kw``, ``discharge_limit_kw`` [kW]; ``inf`` = no limit.
    relays : pandas.DataFrame
        Relay state per period and switchable unit (household groups, businesses).
    power_limit_kw : pandas.DataFrame
        Meter power limit per period and limited unit [kW].
    switch_only : tuple of str
        Units that can only be switched (household groups).
    energy_budget_wh : dict of str to int
        Daily energy budget per connection [Wh]; empty = no budgets.

    Raises
    ------
    ValueError
        If the frames are not indexed by the same timezone-aware period starts, a unit
        is both switch-only and limited, or a limit is negative or not a number.
    """

    inverters: pd.DataFrame
    relays: pd.DataFrame
    power_limit_kw: pd.DataFrame
    switch_only: tuple[str, ...] = ()
    energy_budget_wh: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index = self.inverters.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            msg = "setpoints must be indexed by timezone-aware period starts (UTC)"
            raise ValueError(msg)
        for name in ("relays", "power_limit_kw"):
            if not getattr(self, name).index.equals(index):
                msg = f"setpoints.{name} must have the same periods as setpoints.inverters"
                raise ValueError(msg)
        missing = [c for c in _BATTERY_COLUMNS if c not in self.inverters.columns]
        if missing:
            msg = f"setpoints.inverters lacks the column(s) {', '.join(missing)}"
            raise ValueError(msg)
        both = sorted(set(self.switch_only) & set(self.power_limit_kw.columns))
        if both:
            msg = f"unit(s) {', '.join(both)} cannot be both switch-only and limited"
            raise ValueError(msg)
        values = np.concatenate(
            [self.inverters[list(_BATTERY_COLUMNS)].to_numpy(float).ravel(),
             self.power_limit_kw.to_numpy(float).ravel()]
        )  # fmt: skip
        if np.isnan(values).any() or (values < 0).any():
            msg = "setpoint limits must be numbers ≥ 0 kW (inf for none)"
            raise ValueError(msg)
        bad = {c: b for c, b in self.energy_budget_wh.items() if not 0 < int(b) < 2**32}
        if bad:
            msg = f"energy budgets must be 1 … 2**32 − 1 Wh, got {bad}"
            raise ValueError(msg)

    # --- building -------------------------------------------------------------------
    @classmethod
    def from_plan(
        cls,
        plan: pd.DataFrame,
        relays: pd.DataFrame,
        allotment_kw: pd.DataFrame,
        household_groups: tuple[str, ...],
        energy_budget_wh: Mapping[str, int] | None = None,
        meter_limit_kw: pd.DataFrame | None = None,
    ) -> Setpoints:
        """The setpoints that carry out a plan (the frames of a :class:`Schedule`).

        PV is limited to what the plan uses where it curtails; the discharge limit is
        the planned discharge; switch-only units follow their relays; every other
        switchable unit is limited at its meter to its allotment; households behind a
        switch-only group relay are limited at their own meters by ``meter_limit_kw``
        (their service plans' power, ``inf`` while free), with ``energy_budget_wh``.

        Raises
        ------
        ValueError
            If the plan lacks ``pv_used_kw``, ``curtailed_kw`` or ``battery_power_kw``.
        """
        missing = [
            c for c in ("pv_used_kw", "curtailed_kw", "battery_power_kw") if c not in plan.columns
        ]
        if missing:
            msg = f"the plan lacks the column(s) {', '.join(missing)}; it is not a dispatch plan"
            raise ValueError(msg)
        curtailing = plan["curtailed_kw"].to_numpy(float) > _CURTAILED_KW
        inverters = pd.DataFrame(
            {
                "pv_limit_kw": np.where(curtailing, plan["pv_used_kw"].to_numpy(float), np.inf),
                "charge_limit_kw": np.inf,
                "discharge_limit_kw": plan["battery_power_kw"].clip(lower=0.0).to_numpy(float),
            },
            index=plan.index,
        )
        limited = [u for u in relays.columns if u not in household_groups]
        limits = allotment_kw.reindex(index=plan.index, columns=limited, fill_value=0.0)
        if meter_limit_kw is not None and not meter_limit_kw.empty:
            households = meter_limit_kw.reindex(index=plan.index).ffill().astype(float)
            limits = pd.concat([limits, households], axis=1)
        return cls(
            inverters=inverters,
            relays=relays.reindex(index=plan.index, fill_value=False).astype(bool),
            power_limit_kw=limits.astype(float),
            switch_only=tuple(household_groups),
            energy_budget_wh=dict(energy_budget_wh or {}),
        )

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> Setpoints:
        """The setpoints of a dispatch :class:`~dispatch.schedule.Schedule`."""
        return cls.from_plan(
            schedule.plan,
            schedule.relays,
            schedule.allotment_kw,
            schedule.household_groups,
            energy_budget_wh=schedule.energy_budget_wh,
            meter_limit_kw=schedule.meter_limit_kw,
        )

    # --- reading --------------------------------------------------------------------
    @property
    def index(self) -> pd.DatetimeIndex:
        """Period starts (UTC)."""
        return pd.DatetimeIndex(self.inverters.index)

    @property
    def step(self) -> pd.Timedelta | None:
        """Period length; None for a single period."""
        return self.index[1] - self.index[0] if len(self.index) > 1 else None

    def window(self, keep: np.ndarray) -> Setpoints:
        """The periods where ``keep`` (boolean per period) is true."""
        return Setpoints(
            self.inverters.loc[keep],
            self.relays.loc[keep],
            self.power_limit_kw.loc[keep],
            self.switch_only,
            self.energy_budget_wh,
        )

    def at(self, when: pd.Timestamp, step: pd.Timedelta | None = None) -> PeriodSetpoints | None:
        """The setpoints of the period containing ``when``; None outside the periods."""
        step = step or self.step
        if step is None or self.inverters.empty:
            return None
        position = int(self.index.searchsorted(when, side="right")) - 1
        if position < 0 or when >= self.index[position] + step:
            return None
        row = self.inverters.iloc[position]
        return PeriodSetpoints(
            start=self.index[position],
            pv_limit_kw=float(row["pv_limit_kw"]),
            charge_limit_kw=float(row["charge_limit_kw"]),
            discharge_limit_kw=float(row["discharge_limit_kw"]),
            relays={str(u): bool(v) for u, v in self.relays.iloc[position].items()},
            power_limit_kw={
                str(u): float(v) for u, v in self.power_limit_kw.iloc[position].items()
            },
            energy_budget_wh={c: int(b) for c, b in self.energy_budget_wh.items()},
        )


def safe_setpoints(
    site: Site,
    start: pd.Timestamp,
    pv_limit_kw: float,
    periods: int = 96,
    business_kw: float = 0.0,
) -> Setpoints:
    """The fail-safe state as setpoints: every switchable unit off, PV limited.

    Priority users stay on (they are never switched); the battery runs free. Each
    business meter holds a share of ``business_kw``, in proportion to the business's
    rated power: the limit a relay closed without a plan (the controller's SoC rules)
    is held to, so that no business draws its full demand on a guess.

    Parameters
    ----------
    site : Site
        The site.
    start : pandas.Timestamp
        First period start (timezone-aware).
    pv_limit_kw : float
        The PV inverter's safe limit [kW].
    periods : int
        How many 15-minute periods (96 = a day).
    business_kw : float
        The businesses' combined meter power limit [kW]; each gets at most its own
        ``power_kw_max``. 0: every business meter at 0 kW.
    """
    if start.tzinfo is None or not math.isfinite(pv_limit_kw) or pv_limit_kw < 0:
        msg = "safe_setpoints needs a timezone-aware start and a finite PV limit ≥ 0 kW"
        raise ValueError(msg)
    if not (math.isfinite(business_kw) and business_kw >= 0):
        msg = f"safe_setpoints needs a finite business_kw ≥ 0 kW, got {business_kw}"
        raise ValueError(msg)
    index = pd.date_range(start, periods=periods, freq="15min")
    groups = tuple(g.id for g in site.relay_groups)
    businesses = [b.id for b in site.businesses]
    rated = np.array([b.business.power_kw_max if b.business else 0.0 for b in site.businesses])
    share = business_kw * rated / rated.sum() if rated.sum() > 0 else np.zeros(len(rated))
    return Setpoints(
        inverters=pd.DataFrame(
            {"pv_limit_kw": pv_limit_kw, "charge_limit_kw": np.inf, "discharge_limit_kw": np.inf},
            index=index,
        ),
        relays=pd.DataFrame(False, index=index, columns=[*groups, *businesses]),
        power_limit_kw=pd.DataFrame(
            np.tile(np.minimum(share, rated), (periods, 1)), index=index, columns=businesses
        ),
        switch_only=groups,
    )
