"""A simulated OCPP 1.6-J charge point: a real WebSocket client speaking to the central system.

It keeps an energy register per connector and plays a charging session the way a charger
does: ``BootNotification``, ``Authorize``, ``StartTransaction``, ``MeterValues`` while the
energy flows, ``StopTransaction``. Used by tests and demos in place of a physical charger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import websockets
from ocpp.v16 import ChargePoint, call
from ocpp.v16.datatypes import MeterValue, SampledValue
from ocpp.v16.enums import Measurand, UnitOfMeasure

from controllers.ocpp_central import OCPP_SUBPROTOCOL

__all__ = ["SessionReport", "SimulatedChargePoint", "connect_charge_point"]


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What the charge point saw of one session."""

    authorisation: str
    transaction_id: int | None
    energy_wh: int


class SimulatedChargePoint(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """A charge point with one energy register per connector [Wh]."""

    def __init__(self, charger_id: str, connection: Any, connectors: int = 1) -> None:
        super().__init__(charger_id, connection)
        self.register_wh = dict.fromkeys(range(1, connectors + 1), 0)

    async def boot(self) -> str:
        """Send BootNotification; the central system's registration status."""
        response = await self.call(
            call.BootNotification(charge_point_model="LW-SIM", charge_point_vendor="LastWatt")
        )
        return str(response.status)

    async def authorize(self, id_tag: str) -> str:
        """Send Authorize; the tag's status."""
        response = await self.call(call.Authorize(id_tag=id_tag))
        return str(response.id_tag_info["status"])

    async def charge(
        self,
        id_tag: str,
        energy_wh: int,
        start: datetime,
        power_kw: float = 7.0,
        samples: int = 4,
        connector_id: int = 1,
    ) -> SessionReport:
        """Play one session: authorise, start, deliver ``energy_wh`` in ``samples`` steps, stop.

        Timestamps run from ``start`` at ``power_kw``, so a test controls the tariff hour.
        """
        status = await self.authorize(id_tag)
        if status != "Accepted":
            return SessionReport(status, None, 0)
        at = start
        started = await self.call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=self.register_wh[connector_id],
                timestamp=at.isoformat(),
            )
        )
        transaction_id = int(started.transaction_id)
        if started.id_tag_info["status"] != "Accepted":
            return SessionReport(str(started.id_tag_info["status"]), transaction_id, 0)
        step_wh, rest = divmod(energy_wh, samples)
        for k in range(samples):
            delivered = step_wh + (rest if k == samples - 1 else 0)
            self.register_wh[connector_id] += delivered
            at += timedelta(hours=delivered / 1000 / power_kw)
            await self.call(
                call.MeterValues(
                    connector_id=connector_id,
                    transaction_id=transaction_id,
                    meter_value=[
                        MeterValue(
                            timestamp=at.isoformat(),
                            sampled_value=[
                                SampledValue(
                                    value=f"{self.register_wh[connector_id] / 1000:.3f}",
                                    measurand=Measurand.energy_active_import_register,
                                    unit=UnitOfMeasure.kwh,
                                )
                            ],
                        )
                    ],
                )
            )
        await self.stop(transaction_id, connector_id, at)
        return SessionReport("Accepted", transaction_id, energy_wh)

    async def stop(self, transaction_id: int, connector_id: int, at: datetime) -> None:
        """Send StopTransaction with the connector's register."""
        await self.call(
            call.StopTransaction(
                meter_stop=self.register_wh[connector_id],
                timestamp=at.isoformat(),
                transaction_id=transaction_id,
            )
        )


@asynccontextmanager
async def connect_charge_point(
    url: str, charger_id: str, connectors: int = 1
) -> AsyncIterator[SimulatedChargePoint]:
    """Connect a simulated charge point to ``<url>/<charger_id>`` and run its message loop."""
    async with websockets.connect(
        f"{url.rstrip('/')}/{charger_id}",
        subprotocols=[websockets.Subprotocol(OCPP_SUBPROTOCOL)],
    ) as connection:
        charge_point = SimulatedChargePoint(charger_id, connection, connectors)
        loop = asyncio.create_task(charge_point.start())
        try:
            yield charge_point
        finally:
            loop.cancel()
            with suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await loop
