"""The API as an attacker tries it: who reads what, strict input, limits before work."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time

import httpx
import pytest
from pydantic import ValidationError

from lastwatt.api import ApiSettings, Noticeboard, create_app
from lastwatt.api_models import HoldCommand, RelayCommand
from lastwatt.api_refunds import RefundRequest
from lastwatt.auth import Credentials, Role, User, hash_password
from lastwatt.guard import ApiLimits, RateLimits, RequestGuard
from microgrid.site import ConnectionKind
from settlement import sign_webhook
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer, chain_hash
from tests.service.conftest import Rig

OPENING = {ConnectionKind.HOUSEHOLD: 2_000_000, ConnectionKind.BUSINESS: 5_000_000}


def run(tmp_path, calls, settings: ApiSettings | None = None):
    async def scenario():
        async with Rig(tmp_path, opening=OPENING) as rig:
            app = create_app(rig.service, rig.credentials, settings)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                return rig, await calls(rig, client)

    return asyncio.run(scenario())


def unstarted(tmp_path, calls, settings: ApiSettings | None = None):
    """The API over a service that was built but not started: enough for refusals and
    the schema, without seconds of start-up (devices, first dispatch)."""

    async def scenario():
        rig = Rig(tmp_path)
        try:
            app = create_app(rig.service, rig.credentials, settings)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                return await calls(rig, client)
        finally:
            rig.service.store.close()
            rig.service.state.close()

    return asyncio.run(scenario())


def test_reads_need_a_role_and_residents_see_only_their_own(tmp_path):
    async def calls(rig, client):
        own = rig.site.households[0].id  # amina's household
        other = rig.site.households[1].id
        amina = ("amina", rig.passwords["amina"])
        operator = ("operator", rig.passwords["operator"])
        out = {}
        for path in (
            "/api/balances?prefix=user:",
            "/api/balances",
            "/api/accounts/user:amina/history",
            f"/api/meters/{own}/readings",
            "/api/readings/latest",
            "/api/ledger/verify",
            "/api/jobs",
        ):
            out["anonymous " + path] = await client.get(path)
        out["anon connections"] = await client.get("/api/connections")
        out["anon stakes"] = await client.get("/api/stakes")
        out["anon schedule"] = await client.get("/api/schedule?periods=96")
        out["anon status"] = await client.get("/api/status")
        out["amina balances"] = await client.get("/api/balances", auth=amina)
        out["amina other history"] = await client.get(
            f"/api/accounts/meter:{other}/history", auth=amina
        )
        out["amina own history"] = await client.get(
            f"/api/accounts/meter:{own}/history", auth=amina
        )
        out["amina other readings"] = await client.get(f"/api/meters/{other}/readings", auth=amina)
        out["amina own readings"] = await client.get(f"/api/meters/{own}/readings", auth=amina)
        out["amina latest"] = await client.get("/api/readings/latest", auth=amina)
        out["amina verify"] = await client.get("/api/ledger/verify", auth=amina)
        out["amina connections"] = await client.get("/api/connections", auth=amina)
        out["amina schedule"] = await client.get("/api/schedule?periods=96", auth=amina)
        out["operator balances"] = await client.get("/api/balances?prefix=meter:", auth=operator)
        out["operator connections"] = await client.get("/api/connections", auth=operator)
        out["operator schedule"] = await client.get("/api/schedule?periods=96", auth=operator)
        return out

    rig, out = run(tmp_path, calls)
    own = rig.site.households[0].id
    for name, answer in out.items():
        if name.startswith("anonymous "):
            assert answer.status_code == 401, (name, answer.text)
    # The noticeboard is open, personal fields are not.
    rows = out["anon connections"].json()["connections"]
    assert len(rows) == len(rig.site.connections)
    assert all(r["balance_minor"] is None and r["credit"] is None for r in rows)
    assert out["anon stakes"].json()["choices"] == {}
    assert out["anon status"].status_code == 200
    anon_schedule = out["anon schedule"].json()
    assert all(not relays for relays in anon_schedule["relays"].values())
    connection_ids = {c.id for c in rig.site.connections}
    assert not any(r["unit"] in connection_ids for r in anon_schedule["reasons"])
    # A resident: their wallet, meter and stake account only.
    accounts = {b["account"] for b in out["amina balances"].json()["balances"]}
    assert accounts
    assert accounts <= {"user:amina", f"meter:{own}", f"stake:{own}"}
    assert out["amina other history"].status_code == 403
    assert out["amina own history"].status_code == 200
    assert out["amina other readings"].status_code == 403
    assert out["amina own readings"].status_code == 200
    assert {r["meter_id"] for r in out["amina latest"].json()["readings"]} == {own}
    assert out["amina verify"].status_code == 403
    seen = [r for r in out["amina connections"].json()["connections"] if r["balance_minor"]]
    assert [r["id"] for r in seen] == [own]
    amina_units = {u for relays in out["amina schedule"].json()["relays"].values() for u in relays}
    assert amina_units & connection_ids <= {own}
    # The operator sees everything.
    assert len(out["operator balances"].json()["balances"]) > 1
    assert sum(1 for r in out["operator connections"].json()["connections"] if r["credit"]) > 1
    operator_units = {
        u for relays in out["operator schedule"].json()["relays"].values() for u in relays
    }
    assert operator_units > amina_units


def test_noticeboard_can_be_switched_off(tmp_path):
    async def calls(rig, client):
        return {
            p: (await client.get(p)).status_code
            for p in ("/api/status", "/api/plan", "/api/stakes", "/api/connections", "/api/health")
        }

    closed = ApiSettings(noticeboard=Noticeboard(plan=False, tiers=False, stakes=False))
    codes = unstarted(tmp_path, calls, closed)
    assert codes == {
        "/api/status": 401,
        "/api/plan": 401,
        "/api/stakes": 401,
        "/api/connections": 401,
        "/api/health": 200,
    }


BAD_AMOUNTS = ["5", True, 1.0, 2**62, 0, -5, None]
BAD_FLAGS = ["no", 0, 1, "false", None]
BAD_HOURS = ["1e10", "nan", "inf", "-inf", "1e308", "-1e308", "0", "abc"]
# Blank, control characters, too long, and text that shows nothing or reorders what the
# console shows: a zero-width space, a right-to-left override, an isolate, a lone RLM.
INVISIBLE_REASONS = [
    " ",
    "\t\n",
    "a\x00b",
    "a\x85b",
    "x" * 201,
    "\u200b",
    "\u202e",
    "paid\u202edrawkcab",
    "\u2066x\u2069",
    "\u200f",
]


def test_strict_input_and_bounded_queries_are_4xx_never_5xx(tmp_path):
    async def calls(rig, client):
        own = rig.site.households[0].id
        amina = ("amina", rig.passwords["amina"])
        operator = ("operator", rig.passwords["operator"])
        out: dict[str, httpx.Response] = {}
        for amount in BAD_AMOUNTS:
            out[f"fund {amount!r}"] = await client.post(
                f"/api/meters/{own}/fund", json={"amount_minor": amount, "key": "k"}, auth=amina
            )
        out["fund extra field"] = await client.post(
            f"/api/meters/{own}/fund",
            json={"amount_minor": 5, "key": "k", "from": "user:bala"},
            auth=amina,
        )
        for flag in BAD_FLAGS:
            out[f"relay {flag!r}"] = await client.post(
                f"/api/operator/relays/{own}", json={"closed": flag, "reason": "x"}, auth=operator
            )
        for reason in INVISIBLE_REASONS:
            out[f"reason {reason[:5]!r}"] = await client.post(
                f"/api/operator/relays/{own}",
                json={"closed": True, "reason": reason},
                auth=operator,
            )
        for hours in BAD_HOURS:
            out[f"telemetry {hours}"] = await client.get(f"/api/telemetry?hours={hours}")
            out[f"readings {hours}"] = await client.get(
                f"/api/meters/{own}/readings?hours={hours}", auth=operator
            )
        out["periods 10**30"] = await client.get(f"/api/schedule?periods={10**30}")
        out["history limit -1"] = await client.get(
            "/api/accounts/user:amina/history?limit=-1", auth=amina
        )
        out["bad account id"] = await client.get(
            "/api/accounts/user:..%2F..%2Fetc/history", auth=operator
        )
        out["huge meter id"] = await client.get(f"/api/meters/{'H' * 5000}/readings", auth=operator)
        out["not json"] = await client.post(
            f"/api/meters/{own}/fund",
            content=b"{" * 10_000,
            headers={"content-type": "application/json"},
            auth=amina,
        )
        out["holds"] = rig.service.state.holds()
        return out

    out = unstarted(tmp_path, calls)
    holds = out.pop("holds")
    assert holds == {}, "a malformed relay command must not place a hold"
    for name, answer in out.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:300])
        assert answer.json()["detail"], name
        assert len(answer.content) < 10_000, f"{name}: the error echoes the input"


RTL_REASON = "\u0639\u0637\u0644 \u0641\u064a \u0627\u0644\u0639\u062f\u0627\u062f\u200f"


@pytest.mark.parametrize("reason", ["fusible grillé – remplacé", RTL_REASON, "H001 ok"])
def test_reasons_in_any_script_are_accepted(reason):
    """Visible text in any script passes, with the marks right-to-left text needs."""
    assert HoldCommand.model_validate({"reason": reason}).reason == reason
    assert RelayCommand.model_validate({"closed": False, "reason": reason}).reason == reason
    assert _refund(reason).reason == reason


def _refund(reason: str) -> RefundRequest:
    body = {"account": "user:amina", "kind": "overcharge", "amount_minor": 5, "key": "k1"}
    return RefundRequest.model_validate({**body, "reason": reason})


@pytest.mark.parametrize("reason", [*INVISIBLE_REASONS, "\u200b\u200b\u200b", "\u200f\u200f\u200f"])
def test_refund_reasons_are_visible_text(reason):
    with pytest.raises(ValidationError, match="reason"):
        _refund(reason)


def test_limits_before_work(tmp_path):
    limits = ApiLimits(per_client="40/minute", failed_logins="3/minute")

    async def calls(rig, client):
        own = rig.site.households[0].id
        amina = ("amina", rig.passwords["amina"])
        out: dict[str, object] = {}
        big = b"x" * 2_000_000
        out["webhook 2 MB"] = await client.post("/api/webhooks/fiat", content=big)
        out["fund 2 MB anonymous"] = await client.post(f"/api/meters/{own}/fund", content=big)

        async def chunks():
            for _ in range(200):
                yield b"x" * 10_000

        out["webhook chunked"] = await client.post("/api/webhooks/fiat", content=chunks())
        out["wrong passwords"] = [
            await client.get("/api/balances", auth=("amina", f"guess{k}")) for k in range(4)
        ]
        out["right password while locked"] = await client.get("/api/balances", auth=amina)
        out["unknown user locked too"] = [
            await client.get("/api/balances", auth=("nobody", f"guess{k}")) for k in range(4)
        ]
        answers = [await client.get("/api/health") for _ in range(40)]
        out["busy client"] = answers
        return out

    out = unstarted(tmp_path, calls, ApiSettings(limits=limits))
    for name in ("webhook 2 MB", "fund 2 MB anonymous", "webhook chunked"):
        assert out[name].status_code == 413, (name, out[name].text)
        assert "limit" in out[name].json()["detail"]
    wrong = out["wrong passwords"]
    assert [r.status_code for r in wrong] == [401, 401, 401, 429]
    assert int(wrong[-1].headers["retry-after"]) > 0
    assert out["right password while locked"].status_code == 429
    # ... per client as well as per user name: this client spent its budget on amina.
    assert out["unknown user locked too"][0].status_code == 429
    busy = out["busy client"]
    assert busy[0].status_code == 200
    assert busy[-1].status_code == 429
    assert int(busy[-1].headers["retry-after"]) >= 1


def test_each_user_has_a_request_budget_of_their_own(tmp_path):
    limits = ApiLimits(per_client="1000/minute", per_user="3/minute")

    async def calls(rig, client):
        amina = ("amina", rig.passwords["amina"])
        operator = ("operator", rig.passwords["operator"])
        return {
            "amina": [await client.get("/api/balances", auth=amina) for _ in range(4)],
            "operator": await client.get("/api/balances", auth=operator),
            "anonymous": await client.get("/api/health"),
        }

    out = unstarted(tmp_path, calls, ApiSettings(limits=limits))
    assert [r.status_code for r in out["amina"]] == [200, 200, 200, 429]
    assert int(out["amina"][-1].headers["retry-after"]) >= 1
    assert "amina" in out["amina"][-1].json()["detail"]
    # The same client, other users and anonymous reads are not held by amina's budget.
    assert out["operator"].status_code == 200
    assert out["anonymous"].status_code == 200


def _guarded(headers, app=None):
    """One request through RequestGuard alone: what the app saw, how many body chunks were
    read from the client, what was sent back. The client offers 200 chunks of 10 kB."""
    reached, reads, sent = [], [], []

    async def reading_app(scope, receive, send):
        reached.append(scope["path"])
        while (await receive()).get("more_body"):
            pass

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": len(reads) < 200}

    async def send(message):
        sent.append(message)

    limits = ApiLimits()
    guard = RequestGuard(app or reading_app, limits, RateLimits(limits))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/webhooks/fiat",
        "headers": headers,
        "client": ("192.0.2.1", 1234),
    }
    asyncio.run(guard(scope, receive, send))
    return reached, len(reads), sent


def test_an_oversized_content_length_is_refused_before_anything_is_read():
    reached, reads, sent = _guarded([(b"content-length", b"200000000")])
    assert reached == []  # no routing, no authentication, no parsing
    assert reads == 0  # not one byte of the body taken from the client
    assert sent[0]["status"] == 413


def test_a_chunked_body_is_cut_off_at_the_limit():
    reached, reads, sent = _guarded([(b"transfer-encoding", b"chunked")])
    assert reached == ["/api/webhooks/fiat"]
    assert reads == 2  # 16 384 bytes allowed: the second 10 kB chunk crosses the limit
    assert sent[0]["status"] == 413


def test_webhook_hostile_headers_and_unknown_accounts_over_http(tmp_path):
    async def calls(rig, client):
        secret = rig.credentials.webhook_secret
        out = {}
        body = json.dumps(
            {"payment_id": "pi_1", "account": "meter:DOES_NOT_EXIST", "amount_fiat_minor": 650}
        ).encode()
        now = str(int(time.time()))
        good = sign_webhook(secret, int(now), body)
        out["non-ascii signature"] = await client.post(
            "/api/webhooks/fiat",
            content=body,
            headers={"x-signature": "é".encode() * 32, "x-timestamp": now},
        )
        out["401-digit timestamp"] = await client.post(
            "/api/webhooks/fiat",
            content=body,
            headers={"x-signature": good, "x-timestamp": "9" * 401},
        )
        out["unknown account"] = await client.post(
            "/api/webhooks/fiat", content=body, headers={"x-signature": good, "x-timestamp": now}
        )
        deep = b"[" * 5000 + b"]" * 5000
        out["deep json"] = await client.post(
            "/api/webhooks/fiat",
            content=deep,
            headers={"x-signature": sign_webhook(secret, int(now), deep), "x-timestamp": now},
        )
        known = json.dumps(
            {"payment_id": "pi_2", "account": "user:amina", "amount_fiat_minor": 650}
        ).encode()
        out["known account"] = await client.post(
            "/api/webhooks/fiat",
            content=known,
            headers={"x-signature": sign_webhook(secret, int(now), known), "x-timestamp": now},
        )
        return out

    out = unstarted(tmp_path, calls)
    assert out["non-ascii signature"].status_code == 401
    assert out["401-digit timestamp"].status_code == 401
    assert out["unknown account"].status_code == 400
    assert "does not exist" in out["unknown account"].json()["detail"]
    assert out["deep json"].status_code == 400
    assert out["known account"].status_code == 200, out["known account"].text
    assert out["known account"].json()["coins_minor"] == 1_000_000


def test_openapi_has_a_schema_for_every_answer(tmp_path):
    async def calls(rig, client):
        return (await client.get("/openapi.json")).json()

    spec = unstarted(tmp_path, calls)
    json_answers = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            # The success answer, whatever its code (POST /api/contracts answers 201).
            success = [r for code, r in operation["responses"].items() if code.startswith("2")]
            assert len(success) == 1, (method, path, operation["responses"])
            content = success[0].get("content", {})
            if "application/json" not in content:
                # Not JSON (``/metrics`` is Prometheus text): its media type is its type.
                continue
            json_answers += 1
            schema = content["application/json"]["schema"]
            assert "$ref" in schema, (method, path, schema)
    assert json_answers > 40  # the JSON endpoints were all looked at, not skipped


# --- authentication cost -----------------------------------------------------------------------


def _credentials() -> Credentials:
    known = User("amina", Role.RESIDENT, "H001")
    return Credentials({"amina": (known, hash_password("right"))}, b"s" * 32)


def test_unknown_and_known_users_cost_one_scrypt_each(monkeypatch):
    credentials = _credentials()
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert credentials.check("nobody", "guess") is None
    unknown = len(calls)
    calls.clear()
    assert credentials.check("amina", "guess") is None
    assert unknown == len(calls) == 1


def test_password_hashing_runs_off_the_event_loop():
    credentials = _credentials()
    threads = []
    original = credentials.check

    def recording(name, password):
        threads.append(threading.get_ident())
        return original(name, password)

    credentials.check = recording  # type: ignore[method-assign]

    async def login():
        return threading.get_ident(), await credentials.check_async("amina", "right")

    loop_thread, found = asyncio.run(login())
    assert found is not None
    assert found.name == "amina"
    assert threads
    assert threads[0] != loop_thread


@pytest.mark.parametrize("name", ["a:b", "Amina", "operator", "", "x" * 33, "ämina", "a b"])
def test_resident_names_that_cannot_log_in_are_refused(name):
    from lastwatt.auth import check_user_name

    with pytest.raises(ValueError, match="user name"):
        check_user_name(name)


def test_operator_verify_checks_the_ledger_against_its_checkpoints(tmp_path):
    async def calls(rig, client):
        operator = ("operator", rig.passwords["operator"])
        before = (await client.get("/api/ledger/verify", auth=operator)).json()
        again = (await client.get("/api/ledger/verify", auth=operator)).json()
        db = sqlite3.connect(rig.service.store.path, isolation_level=None)
        seq, previous, at = db.execute(
            "SELECT seq, hash, posted_at_us FROM journal ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        forged = Batch(
            "fiat:payment:pi_x",
            (Transfer(FIAT_BRIDGE, "user:m", Asset.COIN, 10**12, "fiat.topup"),),
        )
        row = (seq + 1, forged.key, "fiat.topup", FIAT_BRIDGE, "user:m", "coin", 10**12, at)
        db.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, chain_hash(previous, *row)),
        )
        db.execute(
            "INSERT INTO batches SELECT ?, ?, ?, 1, ?, MAX(ordinal) + 1 FROM batches",
            (forged.key, forged.digest, seq + 1, at),
        )
        db.execute("INSERT INTO balances VALUES ('user:m', 'coin', ?)", (10**12,))
        db.execute(
            "UPDATE balances SET balance = balance - ? WHERE account = ?", (10**12, FIAT_BRIDGE)
        )
        db.close()
        after = (await client.get("/api/ledger/verify", auth=operator)).json()
        return before, again, after

    _, (before, again, after) = run(tmp_path, calls)
    assert before["ok"], before
    assert before["incremental_from"] == 0
    assert again["ok"]
    assert again["incremental_from"] == before["rows"] > 0  # resumed, not re-read
    assert (tmp_path / "checkpoints" / "checkpoints.jsonl").exists()
    assert not after["ok"]
    assert any("forged" in p for p in after["problems"]), after


def test_serve_refuses_a_bad_rate_limit_before_writing_anything(tmp_path, capsys):
    from lastwatt.cli import main

    data = tmp_path / "data"
    assert main(["serve", "--rate-limit", "banana", "--data-dir", str(data)]) == 2
    assert "--rate-limit 'banana'" in capsys.readouterr().err
    assert not data.exists()
