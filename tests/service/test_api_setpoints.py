"""The setpoints in force over HTTP: the one typed structure the controller applies."""

from __future__ import annotations

import asyncio

import httpx

from lastwatt.api import create_app
from tests.service.conftest import Rig


def test_setpoints_endpoint_shows_what_the_controller_applies(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                op = ("operator", rig.passwords["operator"])
                anonymous = await client.get("/api/setpoints", params={"periods": 4})
                ok = await client.get("/api/setpoints", params={"periods": 4}, auth=op)
                bad = await client.get("/api/setpoints", params={"periods": 0}, auth=op)
            assert anonymous.status_code == 401  # every connection's relay and limit
            return rig.site, ok, bad

    site, ok, bad = asyncio.run(scenario())
    assert ok.status_code == 200
    body = ok.json()
    groups = [g.id for g in site.relay_groups]
    assert body["switch_only"] == groups
    assert body["limited"] == [b.id for b in site.businesses]
    assert len(body["periods"]) == 4
    first = body["periods"][0]
    assert set(first["relays"]) == {*groups, *body["limited"]}
    assert set(first["power_limit_kw"]) == set(body["limited"])  # never a group
    assert bad.status_code == 422
    assert "periods must be between" in bad.json()["detail"]
