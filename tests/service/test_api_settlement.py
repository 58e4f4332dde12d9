"""Producers cash out, meters report themselves, decisions are served (issue 15's API)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import httpx

from lastwatt.api import create_app
from lastwatt.device_auth import issue_device_token
from settlement import settle_hour, sign_webhook
from settlement.fiat import topup_batch
from tests.service.conftest import MORNING, Rig

COIN = 1_000_000


def _signed(secret: bytes, payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    return body, {"X-Signature": sign_webhook(secret, stamp, body), "X-Timestamp": str(stamp)}


def _run(tmp_path, calls, before=None):
    async def scenario():
        async with Rig(tmp_path) as rig:
            if before:
                before(rig)
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                return rig, await calls(rig, client)

    return asyncio.run(scenario())


def test_a_producer_reserves_a_withdrawal_and_the_processors_negative_payment_confirms_it(
    tmp_path,
):
    async def calls(rig, client):
        producer = rig.site.households[0].id
        account = f"meter:{producer}"
        # Coins a consumer paid for in fiat, earned by the producer (5 coins at 650).
        rig.service.store.post(topup_batch("earned", account, 5 * 650, rig.service.fiat)[0])
        operator = ("operator", rig.passwords["operator"])
        amina = ("amina", rig.passwords["amina"])
        bala = ("bala", rig.passwords["bala"])
        body = {"account": account, "coins_minor": 2 * COIN, "key": "w1"}
        out = {
            "before_owner": await client.post("/api/withdrawals", json=body, auth=amina),
            "resident_sets_owner": await client.put(
                f"/api/operator/owners/{account}", json={"owner": "amina"}, auth=amina
            ),
            "bad_account": await client.put(
                "/api/operator/owners/meter:GHOST", json={"owner": "amina"}, auth=operator
            ),
            "set_owner": await client.put(
                f"/api/operator/owners/{account}", json={"owner": "amina"}, auth=operator
            ),
            "owner_anonymous": await client.get(f"/api/owners/{account}"),
            "owner": await client.get(f"/api/owners/{account}", auth=operator),
            "not_owner": await client.post("/api/withdrawals", json=body, auth=bala),
            "negative": await client.post(
                "/api/withdrawals", json={**body, "coins_minor": -1}, auth=amina
            ),
            "too_much": await client.post(
                "/api/withdrawals", json={**body, "coins_minor": 9 * COIN, "key": "w2"}, auth=amina
            ),
            "reserve": await client.post("/api/withdrawals", json=body, auth=amina),
            "again": await client.post("/api/withdrawals", json=body, auth=amina),
        }
        assert out["reserve"].status_code == 200, out["reserve"].text
        wid = out["reserve"].json()["withdrawal_id"]
        fiat = out["reserve"].json()["fiat_minor"]
        secret = rig.credentials.webhook_secret
        wrong = {"payment_id": "po1", "account": account, "amount_fiat_minor": -fiat - 5}
        out["wrong_amount"] = await client.post(
            "/api/webhooks/fiat",
            content=(s := _signed(secret, {**wrong, "withdrawal_id": wid}))[0],
            headers=s[1],
        )
        paid = {**wrong, "amount_fiat_minor": -fiat, "withdrawal_id": wid}
        body_bytes, headers = _signed(secret, paid)
        out["paid"] = await client.post("/api/webhooks/fiat", content=body_bytes, headers=headers)
        out["balance"] = rig.service.store.balance(account)
        out["verify"] = rig.service.store.verify().ok
        return out

    _, out = _run(tmp_path, calls)
    assert out["before_owner"].status_code == 403
    assert out["resident_sets_owner"].status_code == 403
    assert out["bad_account"].status_code == 400
    assert "not a meter account" in out["bad_account"].json()["detail"]
    assert out["set_owner"].status_code == 200
    assert out["owner_anonymous"].status_code == 401
    assert out["owner"].json()["owner"] == "amina"
    assert out["not_owner"].status_code == 403
    assert out["negative"].status_code == 422
    assert out["too_much"].status_code == 409
    assert out["reserve"].status_code == 200, out["reserve"].text
    assert out["reserve"].json()["status"] == "reserved"
    assert out["reserve"].json()["fiat_minor"] == 2 * 650
    assert out["again"].json()["replayed"]
    assert out["wrong_amount"].status_code == 400
    assert out["paid"].status_code == 200, out["paid"].text
    assert out["balance"] == 3 * COIN
    assert out["verify"]


def test_a_meter_reports_itself_with_its_own_credential(tmp_path):
    tokens: dict[str, str] = {}

    def before(rig):
        for c in rig.site.households[:2]:
            tokens[c.id] = issue_device_token(rig.data_dir, c.id)

    async def calls(rig, client):
        one, two = (c.id for c in rig.site.households[:2])
        hour = MORNING - dt.timedelta(hours=3)
        report = {
            "meter_id": one,
            "readings": [
                {"read_at": (hour + dt.timedelta(hours=k)).isoformat(), "import_wh": 100 * k}
                for k in range(2)
            ],
        }
        bearer = {"Authorization": f"Bearer {tokens[one]}"}
        out = {
            "none": await client.post("/api/readings", json=report),
            "other_meters_token": await client.post(
                "/api/readings", json=report, headers={"Authorization": f"Bearer {tokens[two]}"}
            ),
            "ok": await client.post("/api/readings", json=report, headers=bearer),
            "again": await client.post("/api/readings", json=report, headers=bearer),
        }
        report["readings"][1]["import_wh"] = 999
        out["conflict"] = await client.post("/api/readings", json=report, headers=bearer)
        report["readings"][1]["read_at"] = "2026-08-01T05:00:00"
        out["naive"] = await client.post("/api/readings", json=report, headers=bearer)
        out["stored"] = rig.service.store.readings(hour, hour + dt.timedelta(hours=2))
        settle_hour(rig.service.store, rig.site, hour, now=MORNING)
        op = ("operator", rig.passwords["operator"])
        out["decisions_anonymous"] = await client.get(f"/api/meters/{one}/decisions")
        out["decisions"] = await client.get(f"/api/meters/{one}/decisions", auth=op)
        out["unknown"] = await client.get("/api/meters/GHOST/decisions", auth=op)
        out["watt_anonymous"] = await client.get("/api/watt")
        out["watt"] = await client.get("/api/watt", auth=op)
        return out

    _, out = _run(tmp_path, calls, before)
    assert out["none"].status_code == 401
    assert out["other_meters_token"].status_code == 401
    assert out["ok"].status_code == 200, out["ok"].text
    assert out["ok"].json()["accepted"] == 2
    assert out["again"].json() == {"accepted": 0, "duplicates": 2, "resettled_hours": []}
    assert out["conflict"].status_code == 409
    assert out["naive"].status_code == 400
    assert "timezone" in out["naive"].json()["detail"]
    assert len(out["stored"]) == 2
    assert out["decisions_anonymous"].status_code == 401  # balances are personal
    assert out["watt_anonymous"].status_code == 401
    decisions = out["decisions"].json()["decisions"]
    assert decisions[0]["import_wh"] == 100
    assert decisions[0]["status"] == "measured"
    assert decisions[0]["charge_minor"] > 0
    assert out["unknown"].status_code == 404
    assert out["watt"].json()["outstanding_wh"] == 0
