"""The console's endpoints: customers, a connection's page, the map, ``me``, the sim clock."""

from __future__ import annotations

from tests.service.conftest import run_api


def test_customers_pages_map_and_me(tmp_path):
    async def calls(rig, client):
        op = ("operator", rig.passwords["operator"])
        amina = ("amina", rig.passwords["amina"])
        home = rig.site.households[0].id
        other = rig.site.households[1].id
        out = {"home": home, "other": other}
        out["anon"] = await client.get("/api/customers")
        out["resident_list"] = await client.get("/api/customers", auth=amina)
        out["list"] = await client.get("/api/customers", params={"q": home}, auth=op)
        body = {
            "name": "Amina Issoufou",
            "phone": "+227 90 12 34 56",
            "connections": [home],
            "wallet": "amina",
            "language": "fr",
        }
        await client.put(f"/api/customers/{home}", json={"name": "x", "connections": []}, auth=op)
        out["put"] = await client.put("/api/customers/amina", json=body, auth=op)
        out["put_taken"] = await client.put(
            "/api/customers/zed", json={"name": "Z", "connections": [home]}, auth=op
        )
        out["put_bad"] = await client.put(
            "/api/customers/amina", json={**body, "phone": 227}, auth=op
        )
        out["put_ghost"] = await client.put(
            "/api/customers/amina", json={**body, "connections": ["GHOST"]}, auth=op
        )
        out["page_own"] = await client.get(f"/api/connections/{home}/page", auth=amina)
        out["page_other"] = await client.get(f"/api/connections/{other}/page", auth=amina)
        out["page_bad_hours"] = await client.get(
            f"/api/connections/{home}/page", params={"hours": "inf"}, auth=op
        )
        for name, path, params in [
            ("ghost", "/api/connections/GHOST/page", {}),
            ("hours_zero", f"/api/connections/{home}/page", {"hours": 0}),
            ("hours_negative", f"/api/connections/{home}/page", {"hours": -5}),
            ("hours_huge", f"/api/connections/{home}/page", {"hours": 10**9}),
            ("hours_nan", f"/api/connections/{home}/page", {"hours": "nan"}),
            ("hours_text", f"/api/connections/{home}/page", {"hours": "a day"}),
            ("long_id", "/api/connections/" + "x" * 5000 + "/page", {}),
        ]:
            out["page_" + name] = await client.get(path, params=params, auth=op)
        out["map_resident"] = await client.get("/api/map", auth=amina)
        out["map"] = await client.get("/api/map", auth=op)
        out["me"] = await client.get("/api/me", auth=amina)
        before = rig.service.clock.now()
        out["advance"] = await client.post("/api/sim/advance", json={"hours": 1}, auth=op)
        out["moved_s"] = (rig.service.clock.now() - before).total_seconds()
        out["advance_bad"] = await client.post("/api/sim/advance", json={"hours": "1"}, auth=op)
        out["docs"] = await client.get("/docs")
        out["swagger"] = await client.get("/dashboard/vendor/swagger-ui-dist/swagger-ui-bundle.js")
        return out

    _, r = run_api(tmp_path, calls)
    assert r["anon"].status_code == 401
    assert r["resident_list"].status_code == 403
    listed = r["list"].json()
    assert listed["total"] >= 1
    assert r["home"] in listed["customers"][0]["connections"]
    assert r["put"].status_code == 200, r["put"].text
    assert r["put"].json()["changed_by"] == "operator"
    assert r["put_taken"].status_code == 409
    assert r["put_bad"].status_code == 422
    assert r["put_ghost"].status_code == 404
    page = r["page_own"].json()
    assert r["page_own"].status_code == 200
    assert page["customer"]["name"] == "Amina Issoufou"
    assert page["readings"], "the page shows the meter's readings"
    assert page["plan"], "and the plan in force for it"
    assert r["page_other"].status_code == 403
    assert r["page_bad_hours"].status_code == 422
    assert r["page_ghost"].status_code == 404
    for name in ("hours_zero", "hours_negative", "hours_huge", "hours_nan", "hours_text"):
        assert r["page_" + name].status_code == 422, name
    assert r["page_long_id"].status_code in (404, 414, 422)
    assert len(r["page_long_id"].text) < 1000  # the answer does not echo 5 000 characters
    assert r["map_resident"].status_code == 403
    assert len(r["map"].json()["connections"]) >= 2
    me = r["me"].json()
    assert me["name"] == "amina"
    assert [c["id"] for c in me["connections"]] == [r["home"]]
    assert r["advance"].status_code == 200
    assert r["moved_s"] >= 3600
    assert r["advance_bad"].status_code == 422
    assert "swagger-ui-bundle.js" in r["docs"].text
    assert "cdn" not in r["docs"].text.lower()
    assert r["swagger"].status_code == 200
