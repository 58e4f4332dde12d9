"""Objective weights that make one weighted MILP respect the strict tier order.

The tiers are lexicographic: priority ≻ households ≻ reserve ≻ businesses. One solve
with weighted terms is exact for that order when every tier's weight per kWh exceeds
the most that all lower tiers together could gain from that kWh. The chain below is
derived, not tuned; each ratio states the inequality it guarantees.

Business utility is normalised so that its steepest slope is 1 per kWh (see
:mod:`dispatch.fair_share`), so all weights are in "units of the most valuable business
kWh".
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.problem import DispatchProblem

__all__ = ["TierWeights", "tier_weights"]

BUSINESS_SLOPE_MAX = 1.0
"""Steepest business utility slope [value/kWh]; the unit of all weights."""

SAFETY = 2.0
"""Factor by which each tier out-values everything below it (2 = a 100 % margin, which
also covers the 5 % time preference on household shedding)."""


@dataclass(frozen=True)
class TierWeights:
    """Objective weights [value per kWh, or per kWh and period for the reserve].

    Attributes
    ----------
    soc_window : float
        Per kWh outside the battery's SoC window.
    priority : float
        Per kWh of unserved priority demand.
    household : float
        Per kWh of shed household demand, before the rotation factor.
    household_rotation : float
        Rotation factor spread: a group's weight is ``household × (1 ± this)``.
    reserve : float
        Per kWh below the reserve requirement, per period.
    end_soc : float
        Per kWh short of the wished end-of-horizon state of charge.
    """

    soc_window: float
    priority: float
    household: float
    household_rotation: float
    reserve: float
    end_soc: float


def tier_weights(problem: DispatchProblem) -> TierWeights:
    r"""Weights for one problem; they grow with the horizon because the reserve does.

    Notes
    -----
    With :math:`\eta_d` the discharge efficiency, :math:`n` periods and
    :math:`\rho` the rotation strength:

    - reserve ≻ business: a kWh a business takes from the reserve leaves it short by
      at least :math:`1/\eta_d` in at least one period, so
      :math:`w_r \ge S\,\sigma_{max}\,\eta_d`;
    - household ≻ reserve: a kWh served to households can leave the reserve short by
      :math:`1/\eta_d` in all :math:`n` periods, so
      :math:`(1-\rho)\,w_h \ge S\,n\,w_r/\eta_d`;
    - priority ≻ household: :math:`w_p \ge S\,(1+\rho)\,w_h/\eta_d^2`, a kWh of
      priority demand frees at most :math:`1/\eta_d^2` for households via the battery;
    - the SoC window above all: :math:`w_{soc} \ge S\,w_p`.
    """
    eta = problem.battery.discharge_efficiency * problem.battery.charge_efficiency
    eta_d = problem.battery.discharge_efficiency
    rho = problem.policy.rotation_strength
    if not 0.0 <= rho <= 0.5:
        msg = f"rotation_strength must lie in [0, 0.5], got {rho}"
        raise ValueError(msg)
    reserve = SAFETY * BUSINESS_SLOPE_MAX / eta_d
    household = SAFETY * problem.periods * reserve / eta_d / (1.0 - rho)
    priority = SAFETY * (1.0 + rho) * household / eta
    return TierWeights(
        soc_window=SAFETY * priority,
        priority=priority,
        household=household,
        household_rotation=rho,
        reserve=reserve,
        end_soc=reserve,
    )
