"""Refunds and band-contract standing on the console's API, with bad input thrown at both."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from lastwatt.api import create_app
from lastwatt.api_console import next_revisable
from microgrid.readings import MeterReading
from settlement.contract_registry import ContractRegistry, settle_due
from settlement.contracts import BandContract, ContractError, revise_band
from settlement.ledger import FIAT_BRIDGE, UTILITY, Asset, Batch, Transfer
from tests.service.conftest import Rig, run_api


def test_refunds_round_trip_history_and_refusals(tmp_path):
    async def calls(rig, client):
        op = ("operator", rig.passwords["operator"])
        amina = ("amina", rig.passwords["amina"])
        home = rig.site.households[0].id
        other = rig.site.households[1].id
        store = rig.service.store
        topup = {
            "account": f"meter:{home}",
            "kind": "topup",
            "amount_minor": 500_000,
            "payment_id": f"opening-{home}",
            "reason": "customer moved away",
            "key": "refund-1",
        }
        over = {
            "account": f"meter:{other}",
            "kind": "overcharge",
            "amount_minor": 300_000,
            "reason": "meter read twice on 1 August",
            "key": "refund-2",
        }
        out = {"home": home, "other": other, "before": store.balance(f"meter:{home}")}
        out["anon"] = await client.post("/api/refunds", json=topup)
        out["resident"] = await client.post("/api/refunds", json=topup, auth=amina)
        out["topup"] = await client.post("/api/refunds", json=topup, auth=op)
        out["replay"] = await client.post("/api/refunds", json=topup, auth=op)
        out["twice"] = await client.post(
            "/api/refunds", json={**topup, "key": "refund-3", "amount_minor": 1}, auth=op
        )
        out["key_reused"] = await client.post(
            "/api/refunds", json={**topup, "reason": "another story"}, auth=op
        )
        out["no_fees"] = await client.post("/api/refunds", json=over, auth=op)
        # Fee income for the operator to pay over-charges back from.
        store.post(
            Batch("fees", (Transfer(FIAT_BRIDGE, UTILITY, Asset.COIN, 1_000_000, "fiat.topup"),))
        )
        out["over"] = await client.post("/api/refunds", json=over, auth=op)
        bad = {
            "amount_string": {**over, "key": "b1", "amount_minor": "300000"},
            "amount_float": {**over, "key": "b2", "amount_minor": 1.5},
            "amount_zero": {**over, "key": "b3", "amount_minor": 0},
            "amount_huge": {**over, "key": "b4", "amount_minor": 2**63},
            "amount_bool": {**over, "key": "b5", "amount_minor": True},
            "no_reason": {k: v for k, v in over.items() if k != "reason"},
            "blank_reason": {**over, "key": "b6", "reason": "   "},
            "long_reason": {**over, "key": "b7", "reason": "x" * 201},
            "extra_field": {**over, "key": "b8", "debit": "utility:fees"},
            "bad_kind": {**over, "key": "b9", "kind": "gift"},
            "bad_key": {**over, "key": "a:b"},
            "no_key": {k: v for k, v in over.items() if k != "key"},
            "pool_account": {**over, "key": "b10", "account": "pool:settlement"},
            "topup_no_payment": {**topup, "key": "b11", "payment_id": None},
            "over_with_payment": {**over, "key": "b12", "payment_id": "pi_1"},
            "bad_payment": {**topup, "key": "b13", "payment_id": "../x"},
        }
        for name, body in bad.items():
            out["bad_" + name] = await client.post("/api/refunds", json=body, auth=op)
        out["not_json"] = await client.post(
            "/api/refunds", content=b"{", headers={"content-type": "application/json"}, auth=op
        )
        out["ghost"] = await client.post(
            "/api/refunds", json={**over, "key": "g", "account": "meter:GHOST"}, auth=op
        )
        out["ghost_wallet"] = await client.post(
            "/api/refunds", json={**over, "key": "g2", "account": "user:nobody"}, auth=op
        )
        out["not_that_meter"] = await client.post(
            "/api/refunds", json={**topup, "key": "n", "account": f"meter:{other}"}, auth=op
        )
        out["unknown_topup"] = await client.post(
            "/api/refunds", json={**topup, "key": "u", "payment_id": "pi_nope"}, auth=op
        )
        out["too_much"] = await client.post(
            "/api/refunds",
            json={
                **topup,
                "key": "t",
                "payment_id": f"opening-{other}",
                "account": f"meter:{other}",
                "amount_minor": 10**12,
            },
            auth=op,
        )
        out["page"] = await client.get(f"/api/connections/{home}/page", auth=op)
        out["page_own"] = await client.get(f"/api/connections/{home}/page", auth=amina)
        out["list"] = await client.get("/api/refunds", auth=op)
        out["list_home"] = await client.get(
            "/api/refunds", params={"account": f"meter:{home}"}, auth=op
        )
        out["list_resident"] = await client.get("/api/refunds", auth=amina)
        out["list_bad"] = await client.get("/api/refunds", params={"account": "x"}, auth=op)
        out["after"] = store.balance(f"meter:{home}")
        out["verify"] = store.verify().ok
        return out

    _, r = run_api(tmp_path, calls)
    assert r["anon"].status_code == 401
    assert r["resident"].status_code == 403
    assert r["topup"].status_code == 200, r["topup"].text
    done = r["topup"].json()
    assert done["balance_minor"] == r["before"] - 500_000 == r["after"]
    assert done["refunded_by"] == "operator"
    assert not done["replayed"]
    assert done["fiat_minor"] > 0
    assert r["replay"].status_code == 200
    assert r["replay"].json()["replayed"]
    assert r["twice"].status_code == 409
    assert "refunded before" in r["twice"].json()["detail"]
    assert r["key_reused"].status_code == 409
    assert r["no_fees"].status_code == 409
    assert "fee income" in r["no_fees"].json()["detail"]
    assert r["over"].status_code == 200, r["over"].text
    assert r["over"].json()["fiat_minor"] == 0
    for name in [k for k in r if k.startswith("bad_")]:
        assert r[name].status_code == 422, (name, r[name].text)
        assert len(r[name].text) < 2000, name  # the error names the field, not an echo
    assert r["not_json"].status_code == 422
    assert r["ghost"].status_code == 404
    assert r["ghost_wallet"].status_code == 404
    assert r["not_that_meter"].status_code == 422
    assert "credited" in r["not_that_meter"].json()["detail"]
    assert r["unknown_topup"].status_code == 422
    assert r["too_much"].status_code == 422
    # The customer's history shows the refund and why.
    rows = [t for t in r["page"].json()["transactions"] if t["code"] == "fiat.refund"]
    assert [(t["amount_minor"], t["note"]) for t in rows] == [(-500_000, "customer moved away")]
    own = [t for t in r["page_own"].json()["transactions"] if t["code"] == "fiat.refund"]
    assert own
    assert own[0]["note"] == "customer moved away"
    assert {x["batch"] for x in r["list"].json()["refunds"]} == {
        "refund:refund-1",
        "refund:refund-2",
    }
    assert [x["batch"] for x in r["list_home"].json()["refunds"]] == ["refund:refund-1"]
    assert r["list_resident"].status_code == 403
    assert r["list_bad"].status_code == 422
    assert r["verify"]


def test_contract_standing_on_the_console(tmp_path):
    async def scenario():
        async with Rig(tmp_path) as rig:
            store = rig.service.store
            store.post(
                Batch(
                    "fees", (Transfer(FIAT_BRIDGE, UTILITY, Asset.COIN, 9_000_000, "fiat.topup"),)
                )
            )
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
            app = create_app(rig.service, rig.credentials)
            op = ("operator", rig.passwords["operator"])
            amina = ("amina", rig.passwords["amina"])
            mill = rig.site.businesses[0].id
            start = rig.clock.now().replace(minute=0, second=0, microsecond=0)
            terms = {
                "contract_id": "mill-1",
                "meter_id": mill,
                "start": start.isoformat(),
                "interval_s": 900,
                "bands_wh": [[1000, 2000]] * 8,
                "tolerance_wh": 100,
                "bonus": 1_000_000,
                "over_rate": 500_000,
                "under_rate": 250_000,
                "disconnect_penalty": 300_000,
                "gate_closure_s": 3600,
            }
            out = {"mill": mill, "start": start}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                out["create"] = await c.post("/api/contracts", json=terms, auth=op)
                base = store.reading_before(mill, start + dt.timedelta(microseconds=1))
                zero = 0 if base is None else base.import_wh
                readings = [
                    MeterReading(mill, start + dt.timedelta(minutes=15), zero + 3000),
                    MeterReading(mill, start + dt.timedelta(minutes=20), zero + 3500),
                ]
                if base is None:
                    readings.append(MeterReading(mill, start, 0))
                store.add_readings(readings, rig.clock.now())
                rig.clock.advance(20 * 60)  # 06:20: the first interval is over
                with ContractRegistry(store.path) as registry:
                    settle_due(store, registry, "mill-1", rig.clock.now(), grace=dt.timedelta(0))
                out["standing"] = await c.get("/api/console/contracts", auth=op)
                out["resident"] = await c.get("/api/console/contracts", auth=amina)
                out["anon"] = await c.get("/api/console/contracts")
                out["page"] = await c.get(f"/api/connections/{mill}/page", auth=op)
                out["home_page"] = await c.get(
                    f"/api/connections/{rig.site.households[0].id}/page", auth=amina
                )
                rig.clock.advance(3 * 3600)  # past the period
                out["after"] = await c.get("/api/console/contracts", auth=op)
            return out

    r = asyncio.run(scenario())
    assert r["create"].status_code == 201, r["create"].text
    assert r["anon"].status_code == 401
    assert r["resident"].json()["contracts"] == []  # not her meter
    (s,) = r["standing"].json()["contracts"]
    start = r["start"]
    assert s["current_start"] == (start + dt.timedelta(minutes=15)).isoformat()
    assert s["band_wh"] == [1000, 2000]
    assert s["metered_wh"] == 500
    assert s["position"] == "below"
    assert s["metered_since"] == s["current_start"]  # the reading at the interval start
    # Interval one: 3000 Wh against 2000 + 100 → 900 Wh over at 0.5 coin/kWh.
    assert s["intervals_charged"] == 1
    assert s["penalties"] == 450_000
    assert s["bonus_left"] == 1_000_000 - 450_000
    # At 06:20 with a 1 h gate, the next revisable interval starts 07:30; its gate closes 06:30.
    assert s["next_gate_interval"] == (start + dt.timedelta(minutes=90)).isoformat()
    assert s["next_gate_closure"] == (start + dt.timedelta(minutes=30)).isoformat()
    page = r["page"].json()
    assert [c["contract_id"] for c in page["contracts"]] == ["mill-1"]
    assert page["contracts"][0]["penalties"] == 450_000
    assert r["home_page"].json()["contracts"] == []
    (late,) = r["after"].json()["contracts"]
    assert late["current_start"] is None
    assert late["next_gate_closure"] is None


@settings(max_examples=200, deadline=None)
@given(
    interval_s=st.sampled_from([900, 3600]),
    intervals=st.integers(1, 12),
    gate_s=st.integers(0, 6 * 3600),
    offset_s=st.integers(-6 * 3600, 18 * 3600),
)
def test_next_gate_is_the_first_interval_revise_band_accepts(
    interval_s, intervals, gate_s, offset_s
):
    start = dt.datetime(2026, 8, 1, 6, tzinfo=dt.UTC)
    contract = BandContract(
        "c",
        "B01",
        start,
        dt.timedelta(seconds=interval_s),
        ((0, 10),) * intervals,
        0,
        0,
        0,
        0,
        0,
        gate_closure=dt.timedelta(seconds=gate_s),
    )
    now = start + dt.timedelta(seconds=offset_s)

    def accepted(first: dt.datetime) -> bool:
        try:
            revise_band(contract, first, [(0, 10)], now)
        except ContractError:
            return False
        return True

    found = next_revisable(contract, now)
    expected = next((s for s in contract.interval_starts() if accepted(s)), None)
    assert found == expected
