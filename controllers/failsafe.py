"""Fail-safe decisions, pure: schedule → SoC-threshold rules → safe state (DESIGN.md §6).

:func:`decide_mode` picks the operating mode from what is known now:

- ``SCHEDULE``: a schedule period covers now and the state of charge is fresh;
- ``SOC_RULES``: the dispatcher is lost (no local schedule period covers now) but the
  battery is readable: households on above a SoC threshold (with hysteresis),
  businesses on above a higher one;
- ``SAFE``: the state of charge is unknown or stale (battery inverter unreachable for
  longer than the device timeout): priority on, households and businesses off, PV
  inverter at its safe limit.

:func:`targets` turns a mode into what the devices should do. Priority users are never
switched off here; the controller enforces that again at the write path.

Examples
--------
>>> s = FailsafeSettings()
>>> decide_mode(schedule_covers_now=True, soc_fraction=0.5, soc_age_s=10.0, settings=s)
<Mode.SCHEDULE: 'schedule'>
>>> decide_mode(schedule_covers_now=False, soc_fraction=0.5, soc_age_s=10.0, settings=s)
<Mode.SOC_RULES: 'soc_rules'>
>>> decide_mode(schedule_covers_now=True, soc_fraction=None, soc_age_s=None, settings=s)
<Mode.SAFE: 'safe'>
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FailsafeSettings", "Mode", "Targets", "decide_mode", "targets"]


class Mode(enum.StrEnum):
    """Operating mode of the controller, from best to most conservative."""

    SCHEDULE = "schedule"
    SOC_RULES = "soc_rules"
    SAFE = "safe"


@dataclass(frozen=True, slots=True)
class FailsafeSettings:
    """Thresholds of the fail-safe layers.

    Attributes
    ----------
    device_timeout_s : float
        Revert timer programmed into the devices and the age after which a device's
        reading is stale [s]. Setpoints are refreshed at half of it.
    households_soc_min : float
        SoC-rules mode: households on at or above this state of charge [-].
    businesses_soc_min : float
        SoC-rules mode: businesses on at or above this state of charge [-].
    hysteresis : float
        A group that is on stays on until SoC falls this far below its threshold [-];
        5 % of capacity is about an hour of the default site's night load, so relays
        do not chatter on measurement noise.
    pv_safe_limit_pct : float
        PV inverter limit in the safe state [% of rating]. 60 % of 20 kW covers the
        default site's daytime priority and household load while halving the surplus
        a battery of unknown state of charge would have to absorb.
    discharge_headroom_pct : float
        Schedule mode: discharge limit = planned discharge + this share of the rating
        [%], room for load and PV forecast error without letting the battery drain the
        reserve faster than planned.
    """

    device_timeout_s: float = 120.0
    households_soc_min: float = 0.3
    businesses_soc_min: float = 0.7
    hysteresis: float = 0.05
    pv_safe_limit_pct: float = 60.0
    discharge_headroom_pct: float = 25.0

    def __post_init__(self) -> None:
        if self.device_timeout_s < 2:
            msg = (
                "device_timeout_s must be ≥ 2 s (SunSpec timers are whole seconds), "
                f"got {self.device_timeout_s}"
            )
            raise ValueError(msg)
        for name in ("households_soc_min", "businesses_soc_min", "hysteresis"):
            if not 0 <= getattr(self, name) <= 1:
                msg = f"{name} is a fraction of capacity in [0, 1], got {getattr(self, name)}"
                raise ValueError(msg)
        if not 0 <= self.pv_safe_limit_pct <= 100:
            msg = f"pv_safe_limit_pct must be in [0, 100] %, got {self.pv_safe_limit_pct}"
            raise ValueError(msg)


def decide_mode(
    *,
    schedule_covers_now: bool,
    soc_fraction: float | None,
    soc_age_s: float | None,
    settings: FailsafeSettings,
) -> Mode:
    """The operating mode (see the module notes).

    Parameters
    ----------
    schedule_covers_now : bool
        Whether the locally kept schedule has a period containing now.
    soc_fraction : float or None
        Last good state of charge [-]; None if never read.
    soc_age_s : float or None
        Age of that reading [s].
    settings : FailsafeSettings
        Thresholds.
    """
    soc_known = (
        soc_fraction is not None
        and soc_age_s is not None
        and math.isfinite(soc_fraction)
        and soc_age_s <= settings.device_timeout_s
    )
    if not soc_known:
        return Mode.SAFE
    return Mode.SCHEDULE if schedule_covers_now else Mode.SOC_RULES


@dataclass(frozen=True, slots=True)
class Targets:
    """What the devices should do this cycle.

    Attributes
    ----------
    mode : Mode
        Where the targets come from.
    pv_limit_pct : float
        PV inverter active power limit [% of rating].
    charge_limit_pct, discharge_limit_pct : float
        Battery inverter limits [% of its rating].
    units_on : dict of str to bool
        Switchable units (household relay groups and businesses) → closed.
    """

    mode: Mode
    pv_limit_pct: float
    charge_limit_pct: float
    discharge_limit_pct: float
    units_on: dict[str, bool]


def targets(
    mode: Mode,
    *,
    household_groups: tuple[str, ...],
    businesses: tuple[str, ...],
    settings: FailsafeSettings,
    plan_row: Mapping[str, float] | None = None,
    relay_row: Mapping[str, bool] | None = None,
    pv_rating_kw: float = 1.0,
    battery_rating_kw: float = 1.0,
    soc_fraction: float | None = None,
    previously_on: Mapping[str, bool] | None = None,
) -> Targets:
    """Device targets for a mode.

    Parameters
    ----------
    mode : Mode
        From :func:`decide_mode`.
    household_groups, businesses : tuple of str
        Switchable units of the site.
    settings : FailsafeSettings
        Thresholds.
    plan_row : mapping, optional
        Schedule mode: the period's plan (``pv_used_kw``, ``curtailed_kw``,
        ``battery_power_kw``) [kW].
    relay_row : mapping, optional
        Schedule mode: the period's relay states by unit; units missing from it are off.
    pv_rating_kw, battery_rating_kw : float
        Ratings the limits are relative to [kW].
    soc_fraction : float, optional
        SoC-rules mode: the measured state of charge [-].
    previously_on : mapping, optional
        SoC-rules mode: which units are on now (for hysteresis).
    """
    units = household_groups + businesses
    if mode is Mode.SCHEDULE:
        if plan_row is None or relay_row is None:
            msg = "schedule mode needs the period's plan_row and relay_row"
            raise ValueError(msg)
        curtailed = float(plan_row.get("curtailed_kw", 0.0))
        pv_limit = 100.0
        if curtailed > 1e-3:
            pv_limit = min(100.0, 100.0 * float(plan_row["pv_used_kw"]) / pv_rating_kw)
        discharge_kw = max(float(plan_row.get("battery_power_kw", 0.0)), 0.0)
        discharge = min(
            100.0, 100.0 * discharge_kw / battery_rating_kw + settings.discharge_headroom_pct
        )
        on = {u: bool(relay_row.get(u, False)) for u in units}
        return Targets(mode, pv_limit, 100.0, discharge, on)
    if mode is Mode.SOC_RULES:
        if soc_fraction is None:
            msg = "SoC-rules mode needs soc_fraction"
            raise ValueError(msg)
        before = previously_on or {}

        def rule(unit: str, threshold: float) -> bool:
            if before.get(unit, False):
                return soc_fraction >= threshold - settings.hysteresis
            return soc_fraction >= threshold

        on = {g: rule(g, settings.households_soc_min) for g in household_groups}
        on |= {b: rule(b, settings.businesses_soc_min) for b in businesses}
        return Targets(mode, 100.0, 100.0, 100.0, on)
    return Targets(mode, settings.pv_safe_limit_pct, 100.0, 100.0, dict.fromkeys(units, False))
