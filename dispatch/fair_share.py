r"""Stake-weighted proportional fairness for the business tier, as a piecewise-linear utility.

The business tier maximises :math:`\sum_b w_b \log E_b` with :math:`w_b` the stake
share and :math:`E_b` the energy over the horizon. Without binding limits its optimum
gives each business energy in proportion to its stake; with demand caps, what a
capped business cannot use flows to the others (water-filling).

The logarithm is linearised on layers of *energy per stake share*,
:math:`u = E_b / w_b`. Because every business's breakpoints are the same points in
:math:`u`, layer :math:`k` has the same slope for every business, and the LP fills the
layers in order for all businesses at once: shares are exactly proportional at each
layer boundary and within one layer's width between them. Layers are fine (3 %) around
the expected level and coarse far from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BUSINESS_SLOPE_MAX", "FairShareLayers", "fair_share_layers"]

BUSINESS_SLOPE_MAX = 1.0
"""Steepest business utility slope [value/kWh]: the business tier's value unit."""

FINE_RATIO = 1.03
"""Width of a fine layer: shares are proportional to within ±3 % in the fine band."""

COARSE_RATIO = 1.6
"""Width of a coarse layer outside the fine band."""

FINE_BAND = (0.35, 4.0)
"""Fine band around the expected level, as factors of it."""

FIRST_BREAK = 1.0 / 30.0
"""First breakpoint as a fraction of the expected level; the log's slope is capped there."""

LAST_BREAK = 16.0
"""Beyond this multiple of the expected level one last segment takes all the rest."""


@dataclass(frozen=True)
class FairShareLayers:
    """Breakpoints in energy per stake share [kWh] and the slope of each layer.

    Attributes
    ----------
    breaks_kwh : numpy.ndarray
        ``K + 1`` increasing breakpoints in :math:`u`, starting at 0.
    slopes : numpy.ndarray
        ``K`` decreasing slopes [value/kWh] of the layers between them.
    """

    breaks_kwh: np.ndarray
    slopes: np.ndarray

    @property
    def widths_kwh(self) -> np.ndarray:
        """Width of each layer in :math:`u` [kWh per share]."""
        return np.diff(self.breaks_kwh)

    @property
    def smallest_slope(self) -> float:
        """Slope of the flattest layer [value/kWh]."""
        return float(self.slopes[-1])


def fair_share_layers(
    expected_level_kwh: float, largest_level_kwh: float, fine_ratio: float = FINE_RATIO
) -> FairShareLayers:
    """Layers for a business tier expected to hand out about ``expected_level_kwh``.

    Parameters
    ----------
    expected_level_kwh : float
        Expected energy per stake share, i.e. the tier's expected total energy [kWh].
    largest_level_kwh : float
        The largest energy per share any business could use [kWh]; the last layer
        reaches it.
    fine_ratio : float
        Ratio of consecutive breakpoints in the fine band (> 1); shares are
        proportional to within ``fine_ratio - 1`` there.

    Returns
    -------
    FairShareLayers
        Slopes normalised so that the first (steepest) is ``BUSINESS_SLOPE_MAX``.

    Examples
    --------
    >>> layers = fair_share_layers(100.0, 1000.0)
    >>> bool(np.all(np.diff(layers.slopes) < 0)), float(layers.slopes[0])
    (True, 1.0)
    """
    if not 1.0 < fine_ratio < COARSE_RATIO:
        msg = f"fine_ratio must lie in (1, {COARSE_RATIO}), got {fine_ratio}"
        raise ValueError(msg)
    level = max(expected_level_kwh, 1e-3)
    fine_low, fine_high = level * FINE_BAND[0], level * FINE_BAND[1]
    points = [level * FIRST_BREAK]
    while points[-1] < fine_low:
        points.append(min(points[-1] * COARSE_RATIO, fine_low))
    while points[-1] < fine_high:
        points.append(points[-1] * fine_ratio)
    while points[-1] < level * LAST_BREAK:
        points.append(points[-1] * COARSE_RATIO)
    top = max(largest_level_kwh, points[-1] * COARSE_RATIO)
    points.append(top)
    breaks = np.array([0.0, *points])
    # Slope of log between consecutive breakpoints; the first layer [0, u1] takes the
    # log's derivative at u1, so the utility is finite and concave.
    logs = np.log(breaks[1:])
    slopes = np.empty(breaks.size - 1)
    slopes[0] = 1.0 / breaks[1]
    slopes[1:] = np.diff(logs) / np.diff(breaks[1:])
    # The last, very wide layer would be nearly flat; keep it strictly below its
    # neighbour but no flatter than needed, so the objective's range stays narrow.
    if slopes.size > 1:
        slopes[-1] = max(slopes[-1], slopes[-2] / COARSE_RATIO)
    slopes = slopes / slopes[0] * BUSINESS_SLOPE_MAX
    return FairShareLayers(breaks_kwh=breaks, slopes=slopes)
