"""Demand learned from the meters, with the static profiles as the prior.

The static profiles (:func:`forecasts.demand.demand_kw`) say what each connection is
expected to draw. The meters say what it drew. :class:`DemandLearner` keeps, per
connection and local hour of the day, the metered energy and the profile's energy over
the hours it has seen, and scales the profile by the shrunk ratio

    factor = (W + Σ metered) / (W + Σ profile)

where the pseudo-count ``W`` is ``prior_days`` days of the profile's own energy in that
hour: with no data the factor is 1 (the profile), after a few weeks it is the metered
ratio. The ratio is a posterior mean of a gamma-Poisson style update, so a noisy hour
moves it little and a persistent change moves it all the way.

**Censoring**: an hour in which a connection was switched off (its relay open, its credit
exhausted) or limited, or its meter was not read, says nothing about what it wanted; it
is left out, so prepaid disconnects and load shedding do not teach the forecast that
people need less.

The forecast error is reported for each learned hour, against what the model forecast
before seeing it and against the static profile, as the mean absolute error and bias
over the last ``error_window`` hours [kWh per connection-hour].

Pure: state in, state out (:meth:`DemandLearner.to_json` / :meth:`from_json`); the
service stores it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DemandLearner", "ForecastError"]

_HOURS = 24


@dataclass(frozen=True, slots=True)
class ForecastError:
    """Demand forecast error over the recent learned hours [kWh per connection-hour].

    Attributes
    ----------
    hours : int
        Learned hours in the window.
    mae_kwh, bias_kwh : float
        Mean absolute error and mean error (forecast − metered) of the learned model.
    profile_mae_kwh, profile_bias_kwh : float
        The same for the static profile alone.
    """

    hours: int
    mae_kwh: float
    bias_kwh: float
    profile_mae_kwh: float
    profile_bias_kwh: float


@dataclass
class DemandLearner:
    """Per connection and local hour: metered and profile energy seen (module docstring).

    Parameters
    ----------
    connections : iterable of str
        Connection ids.
    prior_days : float
        Weight of the static profile, in days of observations.
    error_window : int
        Learned hours over which the error is reported.

    Examples
    --------
    >>> learner = DemandLearner(["H001"], prior_days=7)
    >>> for day in range(21):  # three weeks of drawing twice the profile at 19:00
    ...     _ = learner.observe(19, {"H001": 0.4}, {"H001": 0.2}, censored=set())
    >>> round(learner.factor("H001", 19), 2), learner.factor("H001", 3)
    (1.75, 1.0)
    """

    connections: Iterable[str]
    prior_days: float = 7.0
    error_window: int = 24 * 7
    _index: dict[str, int] = field(init=False)
    metered: np.ndarray = field(init=False)
    profile: np.ndarray = field(init=False)
    seen: np.ndarray = field(init=False)
    _errors: deque[tuple[float, float, float, float, int]] = field(init=False)

    def __post_init__(self) -> None:
        ids = list(self.connections)
        self.connections = ids
        self._index = {c: k for k, c in enumerate(ids)}
        shape = (len(ids), _HOURS)
        self.metered = np.zeros(shape)
        self.profile = np.zeros(shape)
        self.seen = np.zeros(shape)
        self._errors = deque(maxlen=self.error_window)

    def _pseudo(self, row: int, hour: int) -> float:
        """``W``: prior_days days of the profile's mean energy in this hour [kWh]."""
        n = self.seen[row, hour]
        mean_profile = self.profile[row, hour] / n if n else 0.0
        return self.prior_days * mean_profile

    def factor(self, connection: str, hour: int) -> float:
        """The learned scale of the profile for ``connection`` at local ``hour``."""
        row = self._index[connection]
        w = self._pseudo(row, hour)
        denominator = w + self.profile[row, hour]
        if denominator <= 0:
            return 1.0
        return float((w + self.metered[row, hour]) / denominator)

    def factors(self) -> np.ndarray:
        """Every factor, connections × 24 local hours."""
        n = np.where(self.seen > 0, self.seen, 1.0)
        w = self.prior_days * self.profile / n
        denominator = w + self.profile
        ratio = np.divide(
            w + self.metered, denominator, out=np.ones_like(denominator), where=denominator > 0
        )
        return np.asarray(ratio)

    def observe(
        self,
        local_hour: int,
        metered_kwh: Mapping[str, float],
        profile_kwh: Mapping[str, float],
        censored: set[str],
    ) -> int:
        """Learn one hour; returns how many connections were learned from.

        Parameters
        ----------
        local_hour : int
            Local hour of the day (0–23) the energies are for.
        metered_kwh : mapping
            Metered energy per connection [kWh] (missing: not read, not learned).
        profile_kwh : mapping
            The static profile's energy per connection for the same hour [kWh].
        censored : set of str
            Connections off or limited during the hour (not learned).
        """
        forecast_err = profile_err = forecast_abs = profile_abs = 0.0
        learned = 0
        for connection, metered in metered_kwh.items():
            row = self._index.get(connection)
            prior = profile_kwh.get(connection)
            if row is None or prior is None or connection in censored or metered < 0:
                continue
            forecast = prior * self.factor(connection, local_hour)
            forecast_err += forecast - metered
            forecast_abs += abs(forecast - metered)
            profile_err += prior - metered
            profile_abs += abs(prior - metered)
            self.metered[row, local_hour] += metered
            self.profile[row, local_hour] += prior
            self.seen[row, local_hour] += 1
            learned += 1
        if learned:
            self._errors.append((forecast_abs, forecast_err, profile_abs, profile_err, learned))
        return learned

    def apply(self, demand_kw: pd.DataFrame, timezone: str) -> pd.DataFrame:
        """The static demand scaled by the learned factors of each period's local hour."""
        hours = pd.DatetimeIndex(demand_kw.index).tz_convert(timezone).hour.to_numpy()
        out = demand_kw.copy()
        table = self.factors()
        for column in demand_kw.columns:
            row = self._index.get(str(column))
            if row is not None:
                out[column] = demand_kw[column].to_numpy() * table[row, hours]
        return out

    def error(self) -> ForecastError:
        """The error over the last ``error_window`` learned hours."""
        totals = np.array([e[:4] for e in self._errors]).sum(axis=0) if self._errors else None
        n = sum(e[4] for e in self._errors)
        if totals is None or n == 0:
            return ForecastError(0, 0.0, 0.0, 0.0, 0.0)
        fa, fe, pa, pe = (float(v) / n for v in totals)
        return ForecastError(len(self._errors), fa, fe, pa, pe)

    # --- state ------------------------------------------------------------------------
    def to_json(self) -> str:
        """The learned state (for the service's store)."""
        state: dict[str, Any] = {
            "connections": list(self.connections),
            "prior_days": self.prior_days,
            "metered": self.metered.round(6).tolist(),
            "profile": self.profile.round(6).tolist(),
            "seen": self.seen.tolist(),
            "errors": list(self._errors),
        }
        return json.dumps(state)

    @classmethod
    def from_json(cls, text: str, connections: Iterable[str]) -> DemandLearner:
        """Restore a learner; connections added or removed since are started from the prior."""
        state = json.loads(text)
        learner = cls(connections, prior_days=float(state["prior_days"]))
        old = {c: k for k, c in enumerate(state["connections"])}
        for connection, row in learner._index.items():
            k = old.get(connection)
            if k is not None:
                learner.metered[row] = state["metered"][k]
                learner.profile[row] = state["profile"][k]
                learner.seen[row] = state["seen"][k]
        learner._errors.extend(tuple(e) for e in state["errors"])
        return learner
