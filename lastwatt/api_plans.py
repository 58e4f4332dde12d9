"""HTTP: the households' service plans, as the operator sees and changes them.

=============================================  ==========
endpoint                                       who
=============================================  ==========
``GET /api/service-plans``                     operator
``PUT /api/connections/{id}/service-plan``     operator
=============================================  ==========

A plan class is data in the site file (:class:`microgrid.site.ServicePlan`); the
operator moves a connection to another class (or back to its kind's default with
``"plan": null``). The choice is kept in the service's state store, so a restart keeps it,
and the service's site is replaced at once: the next plan holds the connection to it.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations,
# which name this module's closures.
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from lastwatt.auth import User
from lastwatt.service import Service
from microgrid.site import Site

__all__ = ["STATE_KEY", "PlanAssignment", "ServicePlansView", "apply_saved_plans", "router"]

log = logging.getLogger(__name__)

STATE_KEY = "service_plan_assignments"
"""Key of the operator's plan choices (connection id → plan class) in the state store."""


class PlanAssignment(BaseModel):
    """The body of ``PUT /api/connections/{id}/service-plan``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    plan: str | None = Field(
        description="Name of a plan class of the site; null returns to the kind's default",
        min_length=1,
        max_length=64,
    )


class PlanView(BaseModel):
    """One plan class."""

    power_limit_w: int
    daily_energy_wh: int
    evening_start_hour: int | None
    evening_end_hour: int | None
    connections: int = Field(description="Connections held to it now")


class ServicePlansView(BaseModel):
    """The site's plan classes, the kinds' defaults and the operator's choices."""

    plans: dict[str, PlanView]
    defaults: dict[str, str]
    assignments: dict[str, str | None] = Field(
        description="Connections the operator moved off their file's plan: id → class"
    )


def apply_saved_plans(service: Service) -> None:
    """Apply the operator's stored plan choices to the service's site (after a restart).

    A stored choice the site file no longer allows (a class removed, a connection gone)
    is skipped with a warning, never a failure to start.
    """
    saved = service.state.get(STATE_KEY, {}) or {}
    site: Site = service.site
    for connection_id, plan in sorted(saved.items()):
        try:
            site = site.with_service_plan(connection_id, plan)
        except (KeyError, ValueError) as exc:
            log.warning("service plan of %s not applied: %s", connection_id, exc)
    service.site = site


def _view(site: Site, assignments: dict[str, str | None]) -> ServicePlansView:
    counts = dict.fromkeys(site.service_plans, 0)
    for c in site.connections:
        name = c.service_plan or site.service_plan_defaults.get(c.kind)
        if name in counts:
            counts[name] += 1
    return ServicePlansView(
        plans={
            name: PlanView(**plan.model_dump(), connections=counts[name])
            for name, plan in site.service_plans.items()
        },
        defaults={kind.value: name for kind, name in site.service_plan_defaults.items()},
        assignments=assignments,
    )


def router(service: Service, operator: Callable[..., Awaitable[User]]) -> APIRouter:
    """The service-plan endpoints of a started service (module docstring)."""
    api = APIRouter(tags=["service plans"])
    apply_saved_plans(service)

    @api.get("/api/service-plans")
    async def plans(_: Annotated[User, Depends(operator)]) -> ServicePlansView:
        """Plan classes, defaults per kind, and the operator's per-connection choices."""
        return _view(service.site, dict(service.state.get(STATE_KEY, {}) or {}))

    @api.put("/api/connections/{connection_id}/service-plan")
    async def assign(
        connection_id: str, body: PlanAssignment, who: Annotated[User, Depends(operator)]
    ) -> ServicePlansView:
        """Hold a connection to another plan class from the next plan on."""
        try:
            site = service.site.with_service_plan(connection_id, body.plan)
        except KeyError:
            raise HTTPException(404, f"no connection {connection_id!r}") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        saved = dict(service.state.get(STATE_KEY, {}) or {})
        saved[connection_id] = body.plan
        service.state.set(STATE_KEY, saved)
        service.site = site
        log.info("%s moved %s to service plan %s", who.name, connection_id, body.plan)
        return _view(site, saved)

    return api
