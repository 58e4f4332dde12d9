"""The market API: orders by their owners, trades settled on the service's ledger, agents."""

from __future__ import annotations

import asyncio

import httpx

from lastwatt.api import create_app
from settlement.ledger import FIAT_BRIDGE, WATT_ISSUER, Asset, Batch, Transfer
from tests.service.conftest import Rig


def _fund(store):
    store.post(
        Batch(
            "test:market-funds",
            (
                Transfer(WATT_ISSUER, "user:amina", Asset.WATT, 5_000, "watt.mint"),
                Transfer(FIAT_BRIDGE, "user:bala", Asset.COIN, 3_000_000, "fiat.topup"),
            ),
        )
    )


def _run(tmp_path, calls):
    async def scenario():
        async with Rig(tmp_path) as rig:
            _fund(rig.service.store)
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                return rig, await calls(rig, client)

    return asyncio.run(scenario())


def test_orders_trade_and_settle_and_only_owners_cancel(tmp_path):
    async def calls(rig, client):
        amina = ("amina", rig.passwords["amina"])
        bala = ("bala", rig.passwords["bala"])
        out = {}
        out["anonymous"] = await client.post(
            "/api/market/orders", json={"side": "sell", "price_per_kwh_minor": 1, "quantity_wh": 1}
        )
        out["bad"] = await client.post(
            "/api/market/orders",
            json={"side": "hold", "price_per_kwh_minor": -4, "quantity_wh": 1},
            auth=amina,
        )
        out["ask"] = await client.post(
            "/api/market/orders",
            json={"side": "sell", "price_per_kwh_minor": 400_000, "quantity_wh": 8_000},
            auth=amina,
        )
        out["book"] = await client.get("/api/market/book")
        out["bid"] = await client.post(
            "/api/market/orders",
            json={"side": "buy", "price_per_kwh_minor": 500_000, "quantity_wh": 2_000},
            auth=bala,
        )
        ask_id = out["ask"].json()["order_id"]
        out["cancel other"] = await client.delete(f"/api/market/orders/{ask_id}", auth=bala)
        out["cancel own"] = await client.delete(f"/api/market/orders/{ask_id}", auth=amina)
        out["cancel again"] = await client.delete(f"/api/market/orders/{ask_id}", auth=amina)
        out["trades"] = await client.get("/api/market/trades")
        store = rig.service.store
        out["balances"] = (
            store.balance("user:bala", Asset.WATT),
            store.balance("user:amina", Asset.COIN),
            store.verify().ok,
        )
        out["page"] = await client.get("/dashboard/market.html")
        out["script"] = await client.get("/dashboard/market.js")
        return out

    _rig, out = _run(tmp_path, calls)
    assert out["anonymous"].status_code == 401
    assert out["bad"].status_code == 422
    assert out["ask"].status_code == 200
    book = out["book"].json()
    # 8 kWh listed, 5 kWh executable: amina holds 5 000 Wh of WATT
    assert book["best_ask"] == book["best_executable_ask"] == 400_000
    assert book["levels"][0]["listed_wh"] == 8_000
    assert book["levels"][0]["executable_wh"] == 5_000
    (trade,) = out["bid"].json()["trades"]
    assert (trade["price_per_kwh_minor"], trade["quantity_wh"]) == (400_000, 2_000)
    assert out["balances"] == (2_000, 800_000, True)  # settled on the ledger, which verifies
    assert out["cancel other"].status_code == 403
    assert out["cancel own"].status_code == 200
    assert out["cancel again"].status_code == 404
    assert out["trades"].json()["trades"][0]["id"] == trade["id"]
    assert out["page"].status_code == 200
    assert "market.js" in out["page"].text
    assert out["script"].status_code == 200


def test_a_zi_agent_sells_above_its_threshold(tmp_path):
    async def calls(rig, client):
        amina = ("amina", rig.passwords["amina"])
        bala = ("bala", rig.passwords["bala"])
        out = {}
        settings = {
            "buy_price_per_kwh_minor": 100_000,
            "sell_price_per_kwh_minor": 300_000,
            "low_wh": 1_000,
            "high_wh": 3_000,
        }
        out["other's"] = await client.put("/api/market/agents/amina", json=settings, auth=bala)
        out["set"] = await client.put("/api/market/agents/amina", json=settings, auth=amina)
        out["orders"] = await client.get("/api/market/orders?owner=user:amina")
        out["bid"] = await client.post(
            "/api/market/orders",
            json={"side": "buy", "price_per_kwh_minor": 350_000, "quantity_wh": 10_000},
            auth=bala,
        )
        out["tick anyone"] = await client.post("/api/market/tick", auth=bala)
        out["amina watt"] = rig.service.store.balance("user:amina", Asset.WATT)
        return out

    _rig, out = _run(tmp_path, calls)
    assert out["other's"].status_code == 403
    assert out["set"].status_code == 200
    (ask,) = out["orders"].json()["orders"]
    # balance 5 000 Wh > high 3 000: offer down to the middle of the thresholds (2 000 Wh)
    assert (ask["side"], ask["price_per_kwh_minor"], ask["quantity_wh"]) == ("sell", 300_000, 3_000)
    assert sum(t["quantity_wh"] for t in out["bid"].json()["trades"]) == 3_000
    assert out["amina watt"] == 2_000
    assert out["tick anyone"].status_code == 403


def test_orders_and_agents_survive_a_restart_of_the_api(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            _fund(rig.service.store)
            amina = ("amina", rig.passwords["amina"])
            answers = []
            for _ in range(2):  # the second app starts from what the first one saved
                app = create_app(rig.service, rig.credentials)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                    if not answers:
                        await client.post(
                            "/api/market/orders",
                            json={"side": "sell", "price_per_kwh_minor": 9, "quantity_wh": 7},
                            auth=amina,
                        )
                        await client.put(
                            "/api/market/agents/amina",
                            json={
                                "buy_price_per_kwh_minor": 1,
                                "sell_price_per_kwh_minor": 9,
                                "low_wh": 0,
                                "high_wh": 90_000,
                            },
                            auth=amina,
                        )
                    answers.append(
                        (
                            (await client.get("/api/market/orders")).json(),
                            (await client.get("/api/market/agents")).json(),
                        )
                    )
            return answers

    first, second = asyncio.run(scenario())
    assert first == second
    assert len(second[0]["orders"]) == 1
    assert second[1]["agents"][0]["owner"] == "user:amina"


def test_expired_orders_leave_the_views_without_any_action(tmp_path):
    async def calls(rig, client):
        amina = ("amina", rig.passwords["amina"])
        placed = await client.post(
            "/api/market/orders",
            json={"side": "sell", "price_per_kwh_minor": 9, "quantity_wh": 7, "expires_in_s": 60},
            auth=amina,
        )
        before = (await client.get("/api/market/book")).json()
        rig.clock.advance(61)
        after = (await client.get("/api/market/book")).json()
        listed = (await client.get("/api/market/orders")).json()
        cancel = await client.delete(f"/api/market/orders/{placed.json()['order_id']}", auth=amina)
        return before, after, listed, cancel

    _rig, (before, after, listed, cancel) = _run(tmp_path, calls)
    assert before["best_ask"] == 9
    assert after["best_ask"] is None
    assert after["levels"] == []
    assert listed["orders"] == []
    assert cancel.status_code == 404
