"""Integer rounding that keeps totals exact: the largest-remainder method."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["largest_remainder", "round_half_up_div"]


def largest_remainder(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` whole minor units in proportion to integer ``weights``, exactly.

    Each key first gets ``floor(total × weight / Σ weights)``; the units left over go one
    each to the keys with the largest remainders. Ties go to the key that comes first in
    ``weights``, so the result is deterministic. Integers only, so no float ever decides
    who gets a micro-coin.

    Parameters
    ----------
    weights : mapping of str to int
        Non-negative integer weights (e.g. Wh produced).
    total : int
        Non-negative amount to split [minor units].

    Returns
    -------
    dict of str to int
        Shares that add up to ``total`` (all zero if every weight is zero).

    Raises
    ------
    ValueError
        If a weight or the total is negative.

    Examples
    --------
    >>> largest_remainder({"angel": 3000, "bennie": 2500}, 4_990_000)
    {'angel': 2721818, 'bennie': 2268182}
    """
    if total < 0:
        msg = f"cannot split a negative total ({total}); pass an amount ≥ 0"
        raise ValueError(msg)
    negative = sorted(k for k, w in weights.items() if w < 0)
    if negative:
        msg = f"weights must be ≥ 0; negative for {', '.join(negative)}"
        raise ValueError(msg)
    weight_sum = sum(weights.values())
    if weight_sum == 0:
        return dict.fromkeys(weights, 0)
    shares: dict[str, int] = {}
    remainders: list[tuple[int, int, str]] = []
    for position, (key, weight) in enumerate(weights.items()):
        share, remainder = divmod(total * weight, weight_sum)
        shares[key] = share
        remainders.append((-remainder, position, key))
    left = total - sum(shares.values())
    for _, _, key in sorted(remainders)[:left]:
        shares[key] += 1
    return shares


def round_half_up_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, for non-negative integers.

    Examples
    --------
    >>> round_half_up_div(5, 2), round_half_up_div(7, 3)
    (3, 2)
    """
    if numerator < 0 or denominator <= 0:
        msg = f"need numerator ≥ 0 and denominator > 0, got {numerator}/{denominator}"
        raise ValueError(msg)
    return (2 * numerator + denominator) // (2 * denominator)
