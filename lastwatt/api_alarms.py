"""Alarm endpoints: the operator's list and acknowledgement (included by :mod:`lastwatt.api`).

``GET /api/alarms`` (operator) lists alarm conditions, standing ones by default;
``POST /api/alarms/{id}/ack`` (operator) records who has seen one. The auth dependency
is the one :func:`lastwatt.api.create_app` uses, passed in, so hardening it there
hardens it here.

No ``from __future__ import annotations`` here: FastAPI resolves the ``Depends`` in
the annotations, and the operator dependency is a local of :func:`router`.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from lastwatt.api_views import Alarms, AlarmView
from lastwatt.auth import User
from lastwatt.service import Service
from settlement import AlarmRecord

__all__ = ["alarm_json", "alarm_view", "router"]


def alarm_view(record: AlarmRecord) -> AlarmView:
    """An alarm condition as the API and the dashboard show it."""
    return AlarmView(
        id=record.id,
        kind=record.kind.value,
        severity=record.severity.value,
        subject=record.subject,
        first_seen=record.first_seen.isoformat(),
        last_seen=record.last_seen.isoformat(),
        count=record.count,
        message=record.message,
        standing=record.standing,
        cleared_at=None if record.cleared_at is None else record.cleared_at.isoformat(),
        acked_by=record.acked_by,
        acked_at=None if record.acked_at is None else record.acked_at.isoformat(),
    )


def alarm_json(record: AlarmRecord) -> dict[str, Any]:
    """:func:`alarm_view` as plain JSON values."""
    return alarm_view(record).model_dump(mode="json")


def router(service: Service, operator: Callable[..., Awaitable[User]]) -> APIRouter:
    """The alarm routes over a started service.

    Parameters
    ----------
    service : Service
        Whose ledger store holds the alarms.
    operator : callable
        The FastAPI dependency that admits operators only (401 / 403 otherwise).
    """
    routes = APIRouter(tags=["alarms"])

    @routes.get("/api/alarms")
    async def alarms(
        who: Annotated[User, Depends(operator)],
        standing: Annotated[bool, Query(description="only standing alarms")] = True,
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 200,
    ) -> Alarms:
        """Alarm conditions, most recently seen first, with counts per severity."""
        records = service.store.alarm_records(standing_only=standing, limit=limit)
        counts: dict[str, int] = {}
        for r in records:
            if r.standing and r.acked_by is None:
                counts[r.severity.value] = counts.get(r.severity.value, 0) + 1
        return Alarms(alarms=[alarm_view(r) for r in records], unacknowledged=counts)

    @routes.post("/api/alarms/{alarm_id}/ack")
    async def ack(alarm_id: int, who: Annotated[User, Depends(operator)]) -> AlarmView:
        """Acknowledge an alarm (the first acknowledgement is kept)."""
        record = service.store.ack_alarm(alarm_id, who.name, service.clock.now())
        if record is None:
            raise HTTPException(
                404, f"no alarm {alarm_id}; GET /api/alarms?standing=false lists them"
            )
        return alarm_view(record)

    return routes
