"""HTTP: the setpoints in force, as the controller applies them (one typed structure).

``GET /api/setpoints?periods=8`` returns, per period from now, the PV limit, the battery
limits, each switchable unit's relay, each limited unit's meter power limit [kW; null =
no limit] and the energy budgets. Operator only: it names every connection's relay and
limit.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations,
# which name this module's closures.
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException

from lastwatt.api_views import SetpointPeriod, SetpointsView
from lastwatt.auth import User
from lastwatt.service import Service

__all__ = ["router"]

_MAX_PERIODS = 96 * 2  # two days of 15-min periods: more is not kept


def _kw(value: float) -> float | None:
    """A limit for JSON: inf (no limit) is null."""
    return None if math.isinf(value) else round(value, 4)


def router(service: Service, operator: Callable[..., Awaitable[User]]) -> APIRouter:
    """The setpoints endpoint of a started service (the operator's)."""
    api = APIRouter(tags=["dispatch"])

    @api.get("/api/setpoints")
    async def setpoints(_: Annotated[User, Depends(operator)], periods: int = 8) -> SetpointsView:
        """The setpoints in force from the current period on (``periods`` ≤ 192)."""
        if not 1 <= periods <= _MAX_PERIODS:
            raise HTTPException(422, f"periods must be between 1 and {_MAX_PERIODS}, got {periods}")
        current = service.setpoints
        if current is None:
            raise HTTPException(404, "no setpoints yet; the first dispatch is running")
        now = pd.Timestamp(service.clock.now())
        step = current.step or pd.Timedelta(minutes=15)
        index = current.index
        ahead = index[index + step > now][:periods]
        rows = []
        for start in ahead:
            period = current.at(start, step)
            if period is None:
                continue
            rows.append(
                SetpointPeriod(
                    start=period.start.isoformat(),
                    pv_limit_kw=_kw(period.pv_limit_kw),
                    charge_limit_kw=_kw(period.charge_limit_kw),
                    discharge_limit_kw=_kw(period.discharge_limit_kw),
                    relays=period.relays,
                    power_limit_kw={u: _kw(v) for u, v in period.power_limit_kw.items()},
                    energy_budget_wh=period.energy_budget_wh,
                )
            )
        return SetpointsView(
            switch_only=list(current.switch_only),
            limited=list(current.power_limit_kw.columns),
            periods=rows,
        )

    return api
