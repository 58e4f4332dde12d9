r"""Scenario files: TOML in, a frozen, validated :class:`Scenario` out.

A scenario is layered on a site file (the bundled default site unless ``site`` names
one): it says how long to simulate, with which seeds, what weather, which businesses
(true values the stakers do not see, noise, seasonality, growth), how households stake,
what the tariffs are, and which policy is under test. Like the site file, every problem
of a file is reported at once with its field path (:class:`ScenarioFileError`).

Examples
--------
>>> s = parse_scenario(chr(10).join(['name = "demo"', "[horizon]", "days = 3"]))
>>> s.horizon.days, s.policy.dispatch, s.stakers.learner
(3, 'milp', 0.6)
>>> with_parameter(s, "equipment.pv_kwp", 33).equipment.pv_kwp
33.0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dispatch.dispatch import MIN_TIME_LIMIT_S
from microgrid.io import ConfigFileError, parse_toml, validation_problems
from microgrid.site import Site

__all__ = [
    "Economy",
    "Equipment",
    "Growth",
    "Horizon",
    "Policy",
    "Population",
    "Scenario",
    "ScenarioFileError",
    "Seeds",
    "StakerMix",
    "WeatherSource",
    "bundled_scenario",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "with_parameter",
]


class _Frozen(BaseModel):
    # No inf or nan in any number: a capacity of inf gives NaN PV, not an error.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Horizon(_Frozen):
    """Simulated time.

    Attributes
    ----------
    start : datetime.date
        First local day.
    days : int
        Days simulated; one staking round per day.
    step_minutes : int
        Dispatch period [min]; must divide a day.
    plan_horizon_hours, replan_every_hours : int
        Look-ahead of each plan and hours delivered from one plan [h].
    """

    start: dt.date = dt.date(2026, 1, 1)
    days: int = Field(default=365, ge=1, le=3660)
    step_minutes: Literal[5, 10, 15, 20, 30, 60] = 15
    plan_horizon_hours: int = Field(default=24, ge=1, le=72)
    replan_every_hours: int = Field(default=24, ge=1, le=24)

    @model_validator(mode="after")
    def _replan_within_horizon(self) -> Self:
        if self.replan_every_hours > self.plan_horizon_hours:
            msg = (
                f"replan_every_hours ({self.replan_every_hours}) exceeds plan_horizon_hours "
                f"({self.plan_horizon_hours}); a plan cannot be delivered beyond its horizon"
            )
            raise ValueError(msg)
        if 24 % self.replan_every_hours:
            msg = f"replan_every_hours ({self.replan_every_hours}) must divide 24"
            raise ValueError(msg)
        return self


class Seeds(_Frozen):
    """Monte Carlo: run ``k`` uses seed ``base + k`` for everything random in it."""

    base: int = Field(default=1, ge=0)
    runs: int = Field(default=1, ge=1, le=10_000)


class WeatherSource(_Frozen):
    """Realised weather and how wrong the forecast of it is.

    Attributes
    ----------
    source : {"synthetic", "file"}
        The seeded stochastic generator, or a weather CSV covering the horizon.
    file : str or None
        CSV for ``source = "file"``, relative to the scenario file.
    forecast_smoothing : str
        The forecast knows the day type but not the timing: rolling mean over this window.
    forecast_cloud_error : float
        Standard deviation of a per-day error added to the forecast cloud cover [-].
    demand_noise : float
        Log-normal σ of realised demand around the forecast, per connection and period [-].
    """

    source: Literal["synthetic", "file"] = "synthetic"
    file: str | None = None
    forecast_smoothing: str = "6h"
    forecast_cloud_error: float = Field(default=0.15, ge=0, le=1)
    demand_noise: float = Field(default=0.15, ge=0, le=2)

    @model_validator(mode="after")
    def _file_given(self) -> Self:
        if self.source == "file" and not self.file:
            msg = 'source = "file" needs file = "path/to/weather.csv"'
            raise ValueError(msg)
        return self


class Equipment(_Frozen):
    """Overrides of the site's container (None keeps the site's)."""

    pv_kwp: float | None = Field(default=None, gt=0)
    battery_kwh: float | None = Field(default=None, gt=0)


class Population(_Frozen):
    """Businesses: their true value, noise and seasons.

    Attributes
    ----------
    true_values : {"draw", "site"}
        Draw each business's true value from N(``value_mean``, ``value_sd``) clipped to
        [−10, 10], or take the site's ``value_score`` as the truth.
    value_mean, value_sd : float
        Distribution of drawn true values.
    performance_noise : float
        σ of the value a business realises per day around its true value [value/kWh].
    seasonal_fraction : float
        Share of businesses that operate only some months (a random 3–8 month season).
    public_value_score : float
        The value score dispatch sees for every business: the planner does not know
        the truth, only stakes tell it.
    """

    true_values: Literal["draw", "site"] = "draw"
    value_mean: float = Field(default=1.0, ge=-10, le=10)
    value_sd: float = Field(default=5.0, ge=0, le=20)
    performance_noise: float = Field(default=2.0, ge=0, le=20)
    seasonal_fraction: float = Field(default=0.3, ge=0, le=1)
    public_value_score: float = Field(default=0.0, ge=0, le=10)


class Growth(_Frozen):
    """New connections over time; they join on the first day of a month.

    Attributes
    ----------
    businesses_per_year, households_per_year : float
        Mean arrivals per year; each month's count is Poisson.
    """

    businesses_per_year: float = Field(default=0.0, ge=0, le=2000)
    households_per_year: float = Field(default=0.0, ge=0, le=5000)


class StakerMix(_Frozen):
    """How households stake: shares of behaviours (summing to 1) and their parameters.

    Attributes
    ----------
    loyal : float
        Stake on one business chosen at random at the start and never change.
    learner : float
        Follow the reward: estimate each business's reward per token from public round
        results and pick the best (ε-greedy).
    random : float
        A random business every round.
    informed : float
        Know the true values: stake on the truly most valuable businesses.
    skip_probability : float
        Chance a household skips a round (its token is not staked that round).
    learning_rate : float
        Weight of the newest round in a learner's estimate [-].
    exploration : float
        Learners' ε: chance of trying a random business [-].
    """

    loyal: float = Field(default=0.2, ge=0, le=1)
    learner: float = Field(default=0.6, ge=0, le=1)
    random: float = Field(default=0.2, ge=0, le=1)
    informed: float = Field(default=0.0, ge=0, le=1)
    skip_probability: float = Field(default=0.05, ge=0, le=1)
    learning_rate: float = Field(default=0.3, gt=0, le=1)
    exploration: float = Field(default=0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _shares(self) -> Self:
        total = self.loyal + self.learner + self.random + self.informed
        if abs(total - 1.0) > 1e-6:
            msg = f"loyal + learner + random + informed must be 1, got {total:g}"
            raise ValueError(msg)
        return self


class Economy(_Frozen):
    """Money in the simulated community.

    Attributes
    ----------
    tariffs : dict of str to int
        Flat price per tariff name [coin minor units per kWh]; overrides the site's.
    business_revenue_per_kwh_minor : int
        A business's revenue per kWh at true value +10, scaling with its positive value
        [coin minor units per kWh]; it tops its meter up with it.
    household_topup_per_day_minor : int
        What each household tops up daily [coin minor units].
    """

    tariffs: dict[str, int] = Field(default_factory=dict)
    business_revenue_per_kwh_minor: int = Field(default=2_000_000, ge=0)
    household_topup_per_day_minor: int = Field(default=150_000, ge=0)


class Policy(_Frozen):
    """The policy under test.

    Attributes
    ----------
    dispatch : {"milp", "proportional", "oracle"}
        The tiered MILP, the seeds' proportional rule, or the MILP with perfect foresight.
    mip_rel_gap, time_limit_s : float
        Planner settings of the MILP; the time limit is per plan, at least
        :data:`dispatch.dispatch.MIN_TIME_LIMIT_S` (10 s, as the live service).
    fair_share_tolerance : float
        Width of the MILP's fine fair-share layers (see
        :class:`dispatch.problem.DispatchPolicy`); 0.1 plans a year in two thirds of
        the time of the live service's 0.03, with business shares within ±10 %.
    oracle_every_days : int
        η is measured on every n-th day (0: never): the oracle re-plans that day on the
        actual PV and demand with ideal stakes, from the policy's state of charge.
    reward_share_ppm, slash_fraction_ppm : int
        Staking rewards and slashing [parts per million].
    slash_unserved : bool
        Slash stakers of a positive-value business that got no energy.
    settlement : {"daily", "hourly"}
        ``hourly``: meter readings → ``record_readings`` → ``settle_hour`` every hour,
        exactly as the service; ``daily``: the hourly rules priced per hour but posted as
        one batch per day (the year benchmark's choice: 24× fewer journal rows).
    """

    dispatch: Literal["milp", "proportional", "oracle"] = "milp"
    mip_rel_gap: float = Field(default=1e-2, gt=0, lt=1)
    time_limit_s: float = Field(default=10.0, ge=MIN_TIME_LIMIT_S)
    fair_share_tolerance: float = Field(default=0.1, gt=0, lt=0.5)
    oracle_every_days: int = Field(default=7, ge=0)
    reward_share_ppm: int = Field(default=100_000, ge=0, le=1_000_000)
    slash_fraction_ppm: int = Field(default=20_000, ge=0, le=1_000_000)
    slash_unserved: bool = False
    settlement: Literal["daily", "hourly"] = "daily"


class Scenario(_Frozen):
    """A whole scenario (module docstring).

    Attributes
    ----------
    name, description : str
        For reports.
    site : str or None
        Site TOML relative to the scenario file; the bundled default site if None.
    base_dir : str
        Folder relative paths are resolved against (set by the loader).
    """

    name: str = Field(min_length=1)
    description: str = ""
    site: str | None = None
    base_dir: str = "."
    horizon: Horizon = Field(default_factory=Horizon)
    seeds: Seeds = Field(default_factory=Seeds)
    weather: WeatherSource = Field(default_factory=WeatherSource)
    equipment: Equipment = Field(default_factory=Equipment)
    businesses: Population = Field(default_factory=Population)
    growth: Growth = Field(default_factory=Growth)
    stakers: StakerMix = Field(default_factory=StakerMix)
    economy: Economy = Field(default_factory=Economy)
    policy: Policy = Field(default_factory=Policy)

    def resolve(self, relative: str) -> Path:
        """A path of the scenario file, resolved against its folder."""
        path = Path(relative)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def load_site(self) -> Site:
        """The site the scenario is layered on (before equipment overrides)."""
        from microgrid.io import load_site

        return load_site(None if self.site is None else self.resolve(self.site))


class ScenarioFileError(ConfigFileError):
    """A scenario file cannot be used; the message lists every problem with its field path."""

    kind = "scenario"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises
    ------
    ScenarioFileError
        If the file is missing, not TOML, or fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioFileError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise ScenarioFileError(str(path), [problem]) from None
    return parse_scenario(text, source=str(path), base_dir=path.resolve().parent)


def parse_scenario(text: str, source: str = "<string>", base_dir: str | Path = ".") -> Scenario:
    """Validate the text of a scenario file; see :func:`load_scenario`."""
    try:
        document = parse_toml(text)
    except ValueError as exc:
        raise ScenarioFileError(source, [str(exc)]) from None
    return _validate(document | {"base_dir": str(base_dir)}, source)


def _validate(document: Mapping[str, Any], source: str) -> Scenario:
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        raise ScenarioFileError(source, validation_problems(exc, document)) from None


def with_parameter(scenario: Scenario, name: str, value: Any) -> Scenario:
    """The scenario with one dotted parameter set, validated again.

    Raises
    ------
    ScenarioFileError
        If ``name`` is not a parameter or ``value`` does not fit it.
    """
    document = scenario.model_dump()
    node: dict[str, Any] = document
    parts = name.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ScenarioFileError(name, [f"{name}: no such scenario section {part!r}"])
        node = child
    if parts[-1] not in node and not (len(parts) > 1 and parts[-2] == "tariffs"):
        raise ScenarioFileError(name, [f"{name}: no such scenario parameter"])
    node[parts[-1]] = value
    return _validate(document, f"--param {name}")


def bundled_scenarios() -> dict[str, Path]:
    """The example scenarios that ship with LastWatt, by name (file stem)."""
    folder = Path(str(resources.files("scenarios") / "examples"))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def bundled_scenario(name: str) -> Scenario:
    """Load a bundled example scenario by name (see :func:`bundled_scenarios`)."""
    paths = bundled_scenarios()
    if name not in paths:
        msg = f"no bundled scenario {name!r}; bundled: {', '.join(paths)}"
        raise KeyError(msg)
    return load_scenario(paths[name])
