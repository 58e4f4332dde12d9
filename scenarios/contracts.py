"""A planner scenario: large consumers with and without Electro's band contracts (seed 004).

The question a planner asks: what does a band contract buy the grid? A contract reveals
the consumer's own plan a day ahead (its band); without one the operator forecasts the
consumer from its demand profile (:func:`forecasts.demand.demand_kw`). The scenario runs
the same consumers on the same random days both ways and compares forecast error, the
reserve the operator must hold for it, the community value served, and the penalties and
discounts the contracts pay (:mod:`settlement.contracts`, the live rules).

Model (hourly, local time; assumptions stated, not measured):

1. **Consumers**: the site's large businesses (``power_kw_max`` ≥ ``min_power_kw``). Each
   day each plans its run: a nominal power drawn in ``[power_kw_min, power_kw_max]``, as
   many whole hours as its daily energy needs at that power (× a lognormal day factor,
   σ ``day_sigma``), starting anywhere its opening hours allow.
2. **Slips**: with probability ``slip_probability`` a consumer's day starts an hour earlier
   or later than planned; power varies by ± ``power_noise``. Both modes slip alike: the
   contract changes what the operator knows, not (here) how the consumer behaves.
3. **Forecast**: uncontracted, the demand profile (the same for every day); contracted,
   the planned energy (the band's centre).
4. **Reserve**: the operator holds back, every hour, the 95th percentile of the hourly
   aggregate under-forecast (actual − forecast, > 0) seen in the run: "reserve needed".
5. **Supply**: the energy the grid offers the large consumers each hour is
   ``supply_ratio`` × their expected (profile) demand in open hours, 0 outside. It is
   shared in dispatch's tier order (:data:`dispatch.problem.TIER_ORDER`): contracted,
   the bands' lower edges first (the ``contract`` tier: firm demand, scaled down only if
   the supply cannot cover them — the grid's shortfall), then the reserve is held back,
   then each consumer's forecast above its firm part is scaled into what is left. The
   reserve serves whoever draws above its allotment, up to the reserve; a contracted
   consumer's meter stops it at its band's upper edge plus tolerance (the plan's limit).
   Served energy = metered energy.
6. **Community value**: Σ value score × served kWh (the business tier's objective).
7. **Contracts**: weekly periods; band ``[lower, upper]`` = planned energy ×
   (``band_low``, ``band_high``), tolerance ``tolerance_fraction`` × nominal hourly energy;
   penalties by :func:`settlement.contracts.assess_interval` on the served energy, with
   the allotment passed so that the grid's shortfall is waived; the bonus pays penalties
   first; ``discount_ppm`` of what is left becomes the discount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from forecasts.demand import demand_kw
from microgrid import Site, TimeGrid
from settlement.contracts import BandContract, IntervalUsage, assess_interval

__all__ = ["ContractScenario", "compare_contracts", "large_consumers"]

_WH = 1000
_COIN = 1_000_000


@dataclass(frozen=True, slots=True)
class ContractScenario:
    """What the comparison varies (module docstring).

    Attributes
    ----------
    weeks : int
        Simulated weeks per run (one contract period each).
    runs : int
        Monte Carlo runs (seeds ``seed`` … ``seed + runs − 1``).
    seed : int
    min_power_kw : float
        A business is a large consumer from this ``power_kw_max`` on [kW].
    day_sigma : float
        σ of the lognormal factor on a day's energy [-].
    slip_probability : float
        Chance that a day starts an hour off plan [-].
    power_noise : float
        Relative spread of the power actually drawn [-].
    supply_ratio : float
        Supply offered to large consumers ÷ their expected demand, per open hour [-].
    band_low, band_high : float
        Band edges as multiples of the planned hourly energy [-].
    tolerance_fraction : float
        Tolerance as a fraction of the nominal hourly energy [-].
    bonus_per_week : int
        B0 per consumer and week [µcoin].
    over_rate, under_rate : int
        Penalty rates [µcoin/kWh].
    discount_ppm : int
        Share of the bonus left that becomes a discount [ppm].
    """

    weeks: int = 4
    runs: int = 20
    seed: int = 0
    min_power_kw: float = 2.0
    day_sigma: float = 0.25
    slip_probability: float = 0.1
    power_noise: float = 0.05
    supply_ratio: float = 1.1
    band_low: float = 0.85
    band_high: float = 1.1
    tolerance_fraction: float = 0.05
    bonus_per_week: int = 2 * _COIN
    over_rate: int = 400_000
    under_rate: int = 200_000
    discount_ppm: int = 800_000


@dataclass(frozen=True, slots=True)
class _Consumer:
    id: str
    value_score: float
    power_kw_min: float
    power_kw_max: float
    daily_energy_kwh: float
    opening_hour: int
    closing_hour: int


def large_consumers(site: Site, min_power_kw: float) -> list[_Consumer]:
    """The site's businesses whose maximum power is at least ``min_power_kw``."""
    out = []
    for c in site.businesses:
        b = c.business
        if b is not None and b.power_kw_max >= min_power_kw and b.daily_energy_kwh > 0:
            out.append(
                _Consumer(
                    c.id,
                    b.value_score,
                    b.power_kw_min,
                    b.power_kw_max,
                    b.daily_energy_kwh,
                    b.opening_hour,
                    b.closing_hour,
                )
            )
    return out


def _profile_kwh(site: Site, ids: list[str]) -> np.ndarray:
    """Expected energy per local hour of day from the demand profile [kWh], (consumer, 24)."""
    tz = site.location.timezone
    start = pd.Timestamp("2026-03-03", tz=tz).tz_convert("UTC")  # a weekday, any month
    grid = TimeGrid(start=start, periods=96)
    frame = demand_kw(site, grid)[ids]
    hourly = frame.groupby(np.arange(96) // 4).sum() * 0.25
    return hourly.to_numpy().T


def _plan_day(c: _Consumer, rng: np.random.Generator, s: ContractScenario) -> np.ndarray:
    """A consumer's planned energy per local hour for one day [kWh] (24)."""
    power = rng.uniform(c.power_kw_min, c.power_kw_max)
    factor = math.exp(rng.normal(0.0, s.day_sigma) - s.day_sigma**2 / 2)
    open_hours = c.closing_hour - c.opening_hour
    hours = int(np.clip(round(c.daily_energy_kwh * factor / power), 1, open_hours))
    start = int(rng.integers(c.opening_hour, c.closing_hour - hours + 1))
    plan = np.zeros(24)
    plan[start : start + hours] = power
    return plan


def _actual_day(plan: np.ndarray, rng: np.random.Generator, s: ContractScenario) -> np.ndarray:
    """What the consumer draws: the plan, maybe an hour off, with power noise [kWh]."""
    actual = plan.copy()
    if rng.random() < s.slip_probability:
        actual = np.roll(actual, int(rng.choice([-1, 1])))
    return actual * (1 + rng.uniform(-s.power_noise, s.power_noise, size=24))


def _fit(wanted: np.ndarray, room: np.ndarray) -> np.ndarray:
    """``wanted`` (consumer, hour) scaled down, per hour, to fit ``room`` (hour) [kWh]."""
    total = wanted.sum(axis=0)
    scale = np.where(
        total > room, np.divide(room, total, where=total > 0, out=np.zeros_like(total)), 1.0
    )
    fitted: np.ndarray = wanted * scale
    return fitted


def _serve(
    forecast: np.ndarray,
    actual: np.ndarray,
    supply: np.ndarray,
    reserve: float,
    band: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Allotments and served energy per consumer and hour [kWh] (module docstring, 5).

    ``band``: contracted, each consumer's lower edge and upper edge plus tolerance [kWh]
    per hour; the lower edges are served before the reserve, the upper one caps the draw.
    """
    firm = np.zeros_like(forecast) if band is None else _fit(band[0], supply)
    left = supply - firm.sum(axis=0)
    reserve_held = np.minimum(reserve, left)
    allot = firm + _fit(np.maximum(forecast - firm, 0.0), np.maximum(left - reserve_held, 0.0))
    base = np.minimum(actual, allot)
    excess = np.maximum(actual - allot, 0.0)
    if band is not None:
        excess = np.minimum(excess, np.maximum(band[1] - allot, 0.0))
    extra_total = excess.sum(axis=0)
    reserve_used = np.minimum(extra_total, reserve_held)
    share = np.divide(
        reserve_used, extra_total, where=extra_total > 0, out=np.zeros_like(extra_total)
    )
    extra = excess * share
    return allot + extra, base + extra


def _band_kwh(
    c: _Consumer, plan: np.ndarray, s: ContractScenario
) -> tuple[np.ndarray, np.ndarray, float]:
    """A consumer's band per hour of its plan: lower and upper edges, tolerance [kWh]."""
    nominal = c.daily_energy_kwh / max(c.closing_hour - c.opening_hour, 1)
    return plan * s.band_low, plan * s.band_high, nominal * s.tolerance_fraction


def _contract(c: _Consumer, plan: np.ndarray, start: datetime, s: ContractScenario) -> BandContract:
    lower, upper, tolerance = _band_kwh(c, plan, s)
    bands = tuple((round(lo * _WH), round(up * _WH)) for lo, up in zip(lower, upper, strict=True))
    return BandContract(
        contract_id=f"scenario-{c.id}",
        meter_id=c.id,
        start=start,
        interval=timedelta(hours=1),
        bands_wh=bands,
        tolerance_wh=round(tolerance * _WH),
        bonus=s.bonus_per_week,
        over_rate=s.over_rate,
        under_rate=s.under_rate,
        disconnect_penalty=0,
        discount_ppm=s.discount_ppm,
    )


def _run(site: Site, s: ContractScenario, seed: int) -> list[dict[str, float | int | str]]:
    consumers = large_consumers(site, s.min_power_kw)
    ids = [c.id for c in consumers]
    profile = _profile_kwh(site, ids)
    scores = np.array([c.value_score for c in consumers])
    rng = np.random.default_rng(seed)
    days = 7 * s.weeks
    plans = np.stack([np.stack([_plan_day(c, rng, s) for c in consumers]) for _ in range(days)])
    actual = np.stack([np.stack([_actual_day(p, rng, s) for p in day]) for day in plans])
    supply = s.supply_ratio * profile.sum(axis=0)
    rows = []
    for mode in ("uncontracted", "contracted"):
        forecast = plans if mode == "contracted" else np.broadcast_to(profile, plans.shape)
        error = actual - forecast
        under = np.maximum(error.sum(axis=1), 0.0)  # (day, hour)
        reserve = float(np.quantile(under, 0.95))
        served = np.zeros_like(actual)
        allotted = np.zeros_like(actual)
        for d in range(days):
            band = None
            if mode == "contracted":  # the contract tier: lower edges first, upper capped
                edges = [_band_kwh(c, plans[d, i], s) for i, c in enumerate(consumers)]
                lower = np.stack([lo for lo, _, _ in edges])
                band = (lower, np.stack([up + tol for _, up, tol in edges]))
            allotted[d], served[d] = _serve(forecast[d], actual[d], supply, reserve, band)
        penalties = discounts = 0
        if mode == "contracted":
            penalties, discounts = _contract_money(consumers, plans, served, allotted, s)
        rows.append(
            {
                "run": seed,
                "mode": mode,
                "forecast_mae_kwh_per_h": float(np.abs(error).mean()),
                "aggregate_mae_kwh_per_h": float(np.abs(error.sum(axis=1)).mean()),
                "reserve_kw": reserve,
                "served_kwh_per_day": float(served.sum() / days),
                "unserved_kwh_per_day": float((actual - served).sum() / days),
                "community_value_per_day": float((scores[None, :, None] * served).sum() / days),
                "penalties_coin_per_week": penalties / _COIN / s.weeks,
                "discounts_coin_per_week": discounts / _COIN / s.weeks,
            }
        )
    return rows


def _contract_money(
    consumers: list[_Consumer],
    plans: np.ndarray,
    served: np.ndarray,
    allotted: np.ndarray,
    s: ContractScenario,
) -> tuple[int, int]:
    """Σ penalties and Σ discounts of weekly contracts [µcoin]."""
    start0 = datetime(2026, 3, 2, tzinfo=UTC)
    penalties = discounts = 0
    for w in range(s.weeks):
        days = slice(7 * w, 7 * w + 7)
        start = start0 + timedelta(weeks=w)
        for i, c in enumerate(consumers):
            plan = plans[days, i].reshape(-1)
            contract = _contract(c, plan, start, s)
            energy = served[days, i].reshape(-1)
            allot = allotted[days, i].reshape(-1)
            total = 0
            for k, when in enumerate(contract.interval_starts()):
                usage = IntervalUsage(round(energy[k] * _WH), allotted_wh=round(allot[k] * _WH))
                total += assess_interval(contract, when, usage).penalty
            left = max(contract.bonus - total, 0)  # the bonus pays first, never below zero
            penalties += total
            discounts += left * contract.discount_ppm // 1_000_000
    return penalties, discounts


def compare_contracts(site: Site, scenario: ContractScenario | None = None) -> pd.DataFrame:
    """One row per run and mode (module docstring); ``.groupby("mode").mean()`` to compare.

    Raises
    ------
    ValueError
        If the site has no large consumer at ``min_power_kw``.
    """
    s = scenario or ContractScenario()
    if not large_consumers(site, s.min_power_kw):
        msg = (
            f"no business of the site draws {s.min_power_kw} kW or more; lower min_power_kw "
            "or add large consumers to the site"
        )
        raise ValueError(msg)
    rows = [row for k in range(s.runs) for row in _run(site, s, s.seed + k)]
    return pd.DataFrame(rows)
