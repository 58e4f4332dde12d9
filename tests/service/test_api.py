"""The HTTP API: the operator's reads, roles on every write (401/403), OpenAPI."""

from __future__ import annotations

import json
import stat

import pytest

from dispatch.schedule import Reason
from lastwatt.auth import hash_password, load_credentials, verify_password
from lastwatt.cli import main
from tests.service.conftest import run_api


def test_reads_schedule_status_connections_stakes(tmp_path):
    async def calls(rig, client):
        operator = ("operator", rig.passwords["operator"])
        return {
            path: await client.get(path, auth=operator)
            for path in (
                "/api/health",
                "/api/status",
                "/api/schedule?periods=4",
                "/api/plan",
                "/api/forecast",
                "/api/connections",
                "/api/balances?prefix=meter:",
                f"/api/accounts/meter:{rig.site.households[0].id}/history",
                f"/api/meters/{rig.site.households[0].id}/readings",
                "/api/readings/latest",
                "/api/stakes",
                "/api/jobs",
                "/api/ledger/verify",
                "/openapi.json",
                "/",
            )
        }

    rig, answers = run_api(tmp_path, calls)
    for path, answer in answers.items():
        assert answer.status_code == 200, (path, answer.text)
    schedule = answers["/api/schedule?periods=4"].json()
    assert len(schedule["periods"]) == 4
    assert schedule["status"] in ("optimal", "time_limit", "fallback")
    assert {r["reason"] for r in schedule["reasons"]} <= {code.value for code in Reason}
    status = answers["/api/status"].json()
    assert status["soc_kwh"] > 0
    assert set(status["load_kw"]) == {"priority", "household", "business"}
    assert len(answers["/api/connections"].json()["connections"]) == len(rig.site.connections)
    assert answers["/api/ledger/verify"].json()["ok"]
    assert "/api/webhooks/fiat" in answers["/openapi.json"].json()["paths"]
    assert "LastWatt" in answers["/"].text


def test_every_write_needs_the_right_role(tmp_path):
    async def calls(rig, client):
        pw = rig.passwords
        operator = ("operator", pw["operator"])
        amina = ("amina", pw["amina"])
        own = rig.site.households[0].id
        other = rig.site.households[1].id
        business = rig.site.businesses[0].id
        out = {}
        out["relay anonymous"] = await client.post(
            f"/api/operator/relays/{own}", json={"closed": False, "reason": "maintenance"}
        )
        out["relay wrong password"] = await client.post(
            f"/api/operator/relays/{own}",
            json={"closed": False, "reason": "maintenance"},
            auth=("operator", "guess"),
        )
        out["relay unknown user"] = await client.post(
            f"/api/operator/relays/{own}",
            json={"closed": False, "reason": "x"},
            auth=("admin", "admin"),
        )
        out["relay resident"] = await client.post(
            f"/api/operator/relays/{own}", json={"closed": False, "reason": "x"}, auth=amina
        )
        out["relay operator"] = await client.post(
            f"/api/operator/relays/{own}", json={"closed": False, "reason": "x"}, auth=operator
        )
        out["release operator"] = await client.delete(f"/api/operator/relays/{own}", auth=operator)
        out["hold resident"] = await client.post(
            f"/api/operator/businesses/{business}/hold", json={"reason": "x"}, auth=amina
        )
        out["hold operator"] = await client.post(
            f"/api/operator/businesses/{business}/hold", json={"reason": "noise"}, auth=operator
        )
        out["reserve resident"] = await client.put(
            "/api/operator/reserve", json={"enabled": False}, auth=amina
        )
        out["reserve operator"] = await client.put(
            "/api/operator/reserve", json={"enabled": False}, auth=operator
        )
        out["replan operator"] = await client.post("/api/operator/dispatch", auth=operator)
        out["stake other household"] = await client.put(
            f"/api/stakes/{other}", json={"business_id": business}, auth=amina
        )
        out["stake anonymous"] = await client.put(
            f"/api/stakes/{own}", json={"business_id": business}
        )
        out["stake own household"] = await client.put(
            f"/api/stakes/{own}", json={"business_id": business}, auth=amina
        )
        out["fund anonymous"] = await client.post(
            f"/api/meters/{other}/fund", json={"amount_minor": 10, "key": "k1"}
        )
        out["fund empty wallet"] = await client.post(
            f"/api/meters/{other}/fund", json={"amount_minor": 10, "key": "k1"}, auth=amina
        )
        out["webhook unsigned"] = await client.post(
            "/api/webhooks/fiat", content=json.dumps({"type": "payment"}).encode()
        )
        out["holds"] = rig.service.state.holds()
        out["reserve"] = rig.service.reserve_enabled
        out["stakes"] = (await client.get("/api/stakes")).json()
        return out

    rig, out = run_api(tmp_path, calls)
    for name in ("relay anonymous", "relay wrong password", "relay unknown user"):
        assert out[name].status_code == 401, name
        assert out[name].headers["www-authenticate"] == "Basic"
    for name in ("relay resident", "hold resident", "reserve resident", "stake other household"):
        assert out[name].status_code == 403, name
        assert out[name].json()["detail"]
    assert out["stake anonymous"].status_code == 401
    assert out["fund anonymous"].status_code == 401
    assert out["webhook unsigned"].status_code == 401
    for name in ("relay operator", "release operator", "hold operator", "reserve operator"):
        assert out[name].status_code == 200, (name, out[name].text)
    assert out["replan operator"].status_code == 200
    assert out["stake own household"].json()["effective_round"] == 2
    assert out["fund empty wallet"].status_code == 409
    business = rig.site.businesses[0].id
    assert out["holds"] == {
        business: {
            "closed": False,
            "reason": "operator: noise",
            "since": out["holds"][business]["since"],
        }
    }
    assert out["reserve"] is False
    assert out["stakes"]["next"][business] == 1


def test_credentials_are_generated_hashed_and_never_default(tmp_path, capsys):
    assert main(["serve", "--init", "--data-dir", str(tmp_path), "--resident", "amina=H001"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    # Handed over in owner-only files, never printed (a service manager's journal keeps stdout).
    handed = tmp_path / "secrets" / "operator"
    assert stat.S_IMODE(handed.stat().st_mode) == 0o600
    assert stat.S_IMODE(handed.parent.stat().st_mode) == 0o700
    password = handed.read_text().strip()
    assert password not in printed
    assert document["webhook_secret"] not in printed
    assert str(handed) in printed
    assert password not in path.read_text()
    assert verify_password(password, document["users"]["operator"]["hash"])
    assert load_credentials(tmp_path).check("operator", password).role.value == "operator"
    assert load_credentials(tmp_path).check("operator", "operator") is None
    # A second init does not silently rotate.
    assert main(["serve", "--init", "--data-dir", str(tmp_path)]) == 2
    other = tmp_path / "other"
    main(["serve", "--init", "--data-dir", str(other)])
    assert (
        json.loads((other / "credentials.json").read_text())["users"]["operator"]["hash"]
        != (document["users"]["operator"]["hash"])
    )


def test_password_hash_rejects_tampering():
    stored = hash_password("s3cret")
    assert verify_password("s3cret", stored)
    # Change the last two hex digits whatever they are ("00" was a no-op 1 time in 256).
    tampered = stored[:-2] + ("ff" if stored.endswith("00") else "00")
    assert not verify_password("s3cret", tampered)
    assert not verify_password("s3cret", "plain$text")


@pytest.mark.parametrize("bad", ["H999", "nobody"])
def test_init_rejects_unknown_households(tmp_path, bad):
    assert main(["serve", "--init", "--data-dir", str(tmp_path), "--resident", f"x={bad}"]) == 2


@pytest.mark.parametrize("name", ["operator", "a:b", "Amina", "a b", "webhook_secret"])
def test_init_rejects_resident_names_that_cannot_log_in(tmp_path, capsys, name):
    # "operator" would replace the operator's account; "a:b" cannot log in (HTTP Basic
    # splits on ":"); nothing is written when one name is bad.
    argv = ["serve", "--init", "--data-dir", str(tmp_path), "--resident", f"{name}=H001"]
    assert main(argv) == 2
    assert "user name" in capsys.readouterr().err
    assert not (tmp_path / "credentials.json").exists()
