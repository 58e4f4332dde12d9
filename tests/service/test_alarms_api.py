"""Alarms an operator sees: the API (operator only), acknowledgement, the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx

from lastwatt.api import create_app
from lastwatt.cli import main
from microgrid.site import ConnectionKind
from tests.service.conftest import Rig


def _scenario(tmp_path):
    async def scenario():
        # Businesses funded, households not: every household is cut for credit.
        opening = {ConnectionKind.BUSINESS: 5_000_000}
        async with Rig(tmp_path, opening=opening) as rig:
            await rig.run_for(0.5)  # 30 control cycles
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            pw = rig.passwords
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                out = {
                    "anonymous": await client.get("/api/alarms"),
                    "resident": await client.get("/api/alarms", auth=("amina", pw["amina"])),
                    "operator": await client.get("/api/alarms", auth=("operator", pw["operator"])),
                }
                first = out["operator"].json()["alarms"][0]["id"]
                out["ack anonymous"] = await client.post(f"/api/alarms/{first}/ack")
                out["ack"] = await client.post(
                    f"/api/alarms/{first}/ack", auth=("operator", pw["operator"])
                )
                out["ack unknown"] = await client.post(
                    "/api/alarms/999999/ack", auth=("operator", pw["operator"])
                )
            return rig, out

    return asyncio.run(scenario())


def test_alarms_are_for_operators_one_per_condition_and_acknowledged(tmp_path):
    rig, out = _scenario(tmp_path)
    assert out["anonymous"].status_code == 401
    assert out["resident"].status_code == 403
    assert out["operator"].status_code == 200
    alarms = out["operator"].json()["alarms"]
    cut = [a for a in alarms if a["kind"] == "credit_disconnect"]
    households = {h.id for h in rig.site.households}
    assert {a["subject"] for a in cut} == households
    # 30 cycles with the households cut: still one alarm each, seen once (not per cycle).
    assert all(a["count"] == 1 for a in cut)
    assert out["ack anonymous"].status_code == 401
    assert out["ack"].status_code == 200
    assert out["ack"].json()["acked_by"] == "operator"
    assert out["ack unknown"].status_code == 404


def test_cli_lists_and_acknowledges(tmp_path, capsys):
    _scenario(tmp_path)
    db = str(tmp_path / "ledger.sqlite")
    assert main(["alarms", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "credit_disconnect" in listing
    assert "acked by operator" in listing
    assert main(["alarms", "--db", db, "--ack", "999999", "--by", "ops"]) == 2
    assert "no alarm with id 999999" in capsys.readouterr().err
    assert main(["alarms", "--db", str(tmp_path / "nothing.sqlite")]) == 2


def test_a_plan_that_fell_back_or_violates_is_alarmed_until_a_good_one(tmp_path):
    from types import SimpleNamespace

    from controllers.simulator import ManualClock
    from dispatch import DispatchStatus
    from lastwatt.service import Service
    from settlement import AlarmKind
    from tests.service.conftest import MORNING, config, service_site

    service = Service(service_site(), config(tmp_path), ManualClock(MORNING))
    bad = SimpleNamespace(status=DispatchStatus.FALLBACK, violations_kwh={"priority": 1.5})
    good = SimpleNamespace(status=DispatchStatus.OPTIMAL, violations_kwh={})
    service._plan_alarms(bad, MORNING)
    service._plan_alarms(bad, MORNING + dt.timedelta(minutes=15))
    standing = service.store.alarm_records(standing_only=True)
    assert sorted((r.kind, r.count) for r in standing) == [
        (AlarmKind.PLAN_FALLBACK, 2),
        (AlarmKind.PLAN_VIOLATIONS, 2),
    ]
    assert "priority by 1.50 kWh" in next(
        r.message for r in standing if r.kind is AlarmKind.PLAN_VIOLATIONS
    )
    service._plan_alarms(good, MORNING + dt.timedelta(minutes=30))
    assert service.store.alarm_records(standing_only=True) == []
    service.store.close()
    service.state.close()
