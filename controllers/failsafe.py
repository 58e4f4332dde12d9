"""Fail-safe decisions, pure: schedule → SoC-threshold rules → safe state (DESIGN.md §6).

:func:`decide_mode` picks the operating mode from what is known now:

- ``SCHEDULE``: a schedule period covers now and the state of charge is fresh;
- ``SOC_RULES``: the dispatcher is lost (no local schedule period covers now) but the
  battery is readable: households on above a SoC threshold (with hysteresis),
  businesses on above a higher one, each business meter limited to its share of
  ``FailsafeSettings.rules_business_pct`` (:func:`dispatch.setpoints.safe_setpoints`);
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
from dataclasses import dataclass, field

from dispatch.setpoints import PeriodSetpoints

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
    rules_business_pct : float
        SoC-rules and safe modes: the businesses' combined meter power limit [% of the
        battery inverter's rating], shared in proportion to their rated power. Without a
        plan nothing says what the sun and the battery can spare, and the default site's
        priority users and households alone peak at 22.2 kW (its demand profiles on
        2026-03-20) on a 20 kW battery inverter: 10 % (2 kW) keeps lights and phones on,
        not a mill at full power.
    discharge_headroom_pct : float
        Schedule mode: discharge limit = planned discharge + this share of the rating
        [%]. 100 % (the rating) by default: a battery inverter capped below what the
        closed relays and meter limits let the load draw trips on overload when PV
        dips (measured at 25 %: 2 min dark a day at σ 5 % PV noise, everyone dark).
        The plan's relays and limits, refreshed every 15 min, protect the reserve.
    """

    device_timeout_s: float = 120.0
    households_soc_min: float = 0.3
    businesses_soc_min: float = 0.7
    hysteresis: float = 0.05
    pv_safe_limit_pct: float = 60.0
    rules_business_pct: float = 10.0
    discharge_headroom_pct: float = 100.0

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
        for name in ("pv_safe_limit_pct", "rules_business_pct"):
            if not 0 <= getattr(self, name) <= 100:
                msg = f"{name} must be in [0, 100] %, got {getattr(self, name)}"
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
    power_limit_kw : dict of str to float
        Limited unit (business, or household held to its service plan) → its meter's
        power limit [kW]: the plan's in schedule mode, the fallback share otherwise (a
        relay the rules close must never let a business draw its full demand).
    energy_budget_wh : dict of str to int
        Schedule mode: connection → its meter's daily budget [Wh].
    """

    mode: Mode
    pv_limit_pct: float
    charge_limit_pct: float
    discharge_limit_pct: float
    units_on: dict[str, bool]
    power_limit_kw: dict[str, float] = field(default_factory=dict)
    energy_budget_wh: dict[str, int] = field(default_factory=dict)


def _pct(limit_kw: float, rating_kw: float) -> float:
    """A limit as % of a rating, capped at 100 (``inf`` = no limit = 100 %)."""
    return 100.0 if math.isinf(limit_kw) else min(100.0, 100.0 * limit_kw / rating_kw)


def targets(
    mode: Mode,
    *,
    household_groups: tuple[str, ...],
    businesses: tuple[str, ...],
    settings: FailsafeSettings,
    period: PeriodSetpoints | None = None,
    pv_rating_kw: float = 1.0,
    battery_rating_kw: float = 1.0,
    soc_fraction: float | None = None,
    previously_on: Mapping[str, bool] | None = None,
    fallback_power_limit_kw: Mapping[str, float] | None = None,
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
    period : PeriodSetpoints, optional
        Schedule mode: the period's setpoints; switchable units missing from its relays
        are off.
    pv_rating_kw, battery_rating_kw : float
        Ratings the limits are relative to [kW].
    soc_fraction : float, optional
        SoC-rules mode: the measured state of charge [-].
    previously_on : mapping, optional
        SoC-rules mode: which units are on now (for hysteresis).
    fallback_power_limit_kw : mapping, optional
        SoC-rules and safe modes: each business meter's power limit [kW] (the safe
        setpoints' share, :func:`dispatch.setpoints.safe_setpoints`).
    """
    units = household_groups + businesses
    if mode is Mode.SCHEDULE:
        if period is None:
            msg = "schedule mode needs the period's setpoints"
            raise ValueError(msg)
        # The planned discharge plus headroom for load and PV forecast error.
        discharge = min(
            100.0,
            _pct(period.discharge_limit_kw, battery_rating_kw) + settings.discharge_headroom_pct,
        )
        on = {u: period.relays.get(u, False) for u in units}
        # Businesses' allotments and households' service-plan limits (their own meters).
        limits = {u: v for u, v in period.power_limit_kw.items() if u not in household_groups}
        return Targets(
            mode,
            _pct(period.pv_limit_kw, pv_rating_kw),
            _pct(period.charge_limit_kw, battery_rating_kw),
            discharge,
            on,
            limits,
            dict(period.energy_budget_wh),
        )
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
        return Targets(mode, 100.0, 100.0, 100.0, on, dict(fallback_power_limit_kw or {}))
    return Targets(
        mode,
        settings.pv_safe_limit_pct,
        100.0,
        100.0,
        dict.fromkeys(units, False),
        dict(fallback_power_limit_kw or {}),
    )
