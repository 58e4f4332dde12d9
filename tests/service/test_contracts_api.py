"""Band contracts over HTTP: the operator creates and closes, the consumer reads their own."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx

from lastwatt.api import create_app
from microgrid.readings import MeterReading
from settlement.contract_registry import ContractRegistry, settle_due
from settlement.ledger import FIAT_BRIDGE, UTILITY, Asset, Batch, Transfer
from tests.service.conftest import Rig


def test_contract_lifecycle_and_roles(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            store = rig.service.store
            store.post(
                Batch(
                    "fees", (Transfer(FIAT_BRIDGE, UTILITY, Asset.COIN, 9_000_000, "fiat.topup"),)
                )
            )
            app = create_app(rig.service, rig.credentials)
            op = ("operator", rig.passwords["operator"])
            amina = ("amina", rig.passwords["amina"])
            mill = rig.site.businesses[0].id
            start = rig.clock.now().replace(minute=0, second=0, microsecond=0) + dt.timedelta(
                hours=1
            )
            terms = {
                "contract_id": "mill-1",
                "meter_id": mill,
                "start": start.isoformat(),
                "interval_s": 3600,
                "bands_wh": [[1000, 2000], [1000, 2000]],
                "tolerance_wh": 100,
                "bonus": 1_000_000,
                "over_rate": 500_000,
                "under_rate": 250_000,
                "disconnect_penalty": 300_000,
                "gate_closure_s": 7200,
            }
            out = {}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                out["no_budget"] = await c.post("/api/contracts", json=terms, auth=op)
                store.post(
                    Batch(
                        "budget",
                        (
                            Transfer(
                                UTILITY,
                                "utility:contract_budget",
                                Asset.COIN,
                                5_000_000,
                                "contract.budget",
                            ),
                        ),
                    )
                )
                out["resident_create"] = await c.post("/api/contracts", json=terms, auth=amina)
                out["bad"] = await c.post(
                    "/api/contracts", json={**terms, "bonus": "1000000"}, auth=op
                )
                out["naive"] = await c.post(
                    "/api/contracts", json={**terms, "start": "2026-08-01T07:00"}, auth=op
                )
                out["ghost"] = await c.post(
                    "/api/contracts", json={**terms, "meter_id": "GHOST"}, auth=op
                )
                out["create"] = await c.post("/api/contracts", json=terms, auth=op)
                out["again"] = await c.post("/api/contracts", json=terms, auth=op)
                late = {"first": start.isoformat(), "bands_wh": [[0, 10]]}
                out["late_revision"] = await c.put(
                    "/api/contracts/mill-1/bands", json=late, auth=op
                )
                readings = [
                    MeterReading(mill, start + dt.timedelta(hours=k), wh)
                    for k, wh in enumerate([0, 2600, 2600])
                ]
                store.add_readings(readings, start)
                assert out["create"].status_code == 201, out["create"].text
                with ContractRegistry(store.path) as registry:
                    settle_due(store, registry, "mill-1", start + dt.timedelta(hours=4))
                out["statement"] = await c.get("/api/contracts/mill-1/statement", auth=op)
                out["resident_statement"] = await c.get(
                    "/api/contracts/mill-1/statement", auth=amina
                )
                out["resident_list"] = await c.get("/api/contracts", auth=amina)
                out["early_close"] = await c.post("/api/contracts/mill-1/close", auth=op)
                rig.clock.advance(5 * 3600)
                out["close"] = await c.post("/api/contracts/mill-1/close", auth=op)
            out["verify"] = store.verify().ok
            return out

    r = asyncio.run(scenario())
    assert r["no_budget"].status_code == 409
    assert r["resident_create"].status_code == 403
    assert r["bad"].status_code == 422
    assert r["naive"].status_code == 422
    assert r["ghost"].status_code == 404
    assert r["create"].status_code == 201, r["create"].text
    assert r["again"].status_code == 409
    assert r["late_revision"].status_code == 409
    statement = r["statement"].json()
    # 2.6 kWh against 1–2 kWh ± 0.1: 0.5 kWh over at 0.5 coin/kWh; then 0 kWh, 0.9 kWh under.
    assert [i["penalty"] for i in statement["intervals"]] == [250_000, 225_000]
    assert statement["bonus_left"] == 525_000
    assert r["resident_statement"].status_code == 404  # not amina's meter: not even its existence
    assert r["resident_list"].json() == {"contracts": []}
    assert r["early_close"].status_code == 409
    assert r["close"].json()["discount"] == 525_000
    assert r["verify"]
