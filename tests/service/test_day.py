"""End to end over Modbus TCP: schedules applied, meters read, hours settled, prepaid cut-off
and reconnection through the signed webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import httpx

from controllers.failsafe import Mode
from lastwatt.api import create_app
from microgrid.site import ConnectionKind
from settlement import CreditState, sign_webhook
from tests.service.conftest import Rig

COIN = 1_000_000


def _signed(secret: bytes, payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    return body, {"X-Signature": sign_webhook(secret, stamp, body), "X-Timestamp": str(stamp)}


def test_simulated_day_prepaid_runs_out_tops_up_and_comes_back(tmp_path):
    async def scenario():
        opening = {
            ConnectionKind.HOUSEHOLD: 5 * COIN,
            ConnectionKind.BUSINESS: 20 * COIN,
            ConnectionKind.PRIORITY: 10 * COIN,
        }
        # The operator drops the reserve: households get the morning sun at once.
        async with Rig(tmp_path, opening=opening, reserve=False) as rig:
            service = rig.service
            # Households that are served this morning: one of them gets almost no credit.
            served: list[str] = []
            for _ in range(12):  # until the sun is up and households are on
                await rig.run_for(0.5)
                closed = service.last_cycle.measured.relays_closed
                served = [c.id for c in rig.site.households if closed.get(c.relay_group)]
                if served:
                    break
            assert served, "the test site should serve some households in the day"
            victim = served[0]
            # Drain its account to 0.001 coin (a fund to a neighbour's meter, as its owner).
            service.store.set_owner(f"meter:{victim}", "amina")
            from settlement import withdraw

            balance = service.store.balance(f"meter:{victim}")
            withdraw(
                service.store, "amina", f"meter:{victim}", "user:amina", balance - 1000, "drain"
            )
            modes = set()
            cut_at = None
            for _ in range(24 * 6):  # up to 24 h in 10-min steps
                await rig.run_for(1 / 6)
                modes.add(service.last_cycle.mode)
                status = service.credit[victim]
                if status.state is CreditState.DISCONNECTED and (
                    service.last_cycle.measured.relays_closed.get(victim) is False
                ):
                    cut_at = rig.clock.now()
                    break
            assert cut_at is not None, "the drained household was never switched off"
            assert not rig.sim.supply_closed(victim)
            debt = -service.store.balance(f"meter:{victim}")
            assert debt >= 0

            # Top-up through the payment processor's signed webhook, replayed once.
            app = create_app(service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                payload = {
                    "type": "payment",
                    "payment_id": "pi_e2e_1",
                    "account": f"meter:{victim}",
                    "amount_fiat_minor": 1950,  # 3 coins at 650 each
                }
                body, headers = _signed(rig.credentials.webhook_secret, payload)
                first = await client.post("/api/webhooks/fiat", content=body, headers=headers)
                again = await client.post("/api/webhooks/fiat", content=body, headers=headers)
                forged = await client.post(
                    "/api/webhooks/fiat",
                    content=body.replace(b"1950", b"9950"),
                    headers=headers,
                )
            assert first.status_code == 200, first.text
            assert first.json()["coins_minor"] == 3 * COIN
            assert again.json()["replayed"] is True
            assert forged.status_code == 401
            assert service.store.balance(f"meter:{victim}") == 3 * COIN - debt

            await rig.run_for(0.25)
            assert service.credit[victim].connected
            assert service.last_cycle.measured.relays_closed[victim] is True

            await rig.run_for(2.0)
            settled_through = dt.datetime.fromisoformat(service.state.get("settle_next_hour"))
            report = service.store.verify()
            keys = service.store.keys_with_prefix(f"settle:{rig.site.name}:")
            stats = service.state.job_stats()
            return modes, settled_through, report, keys, stats, rig.clock.now()

    modes, settled_through, report, keys, stats, end = asyncio.run(scenario())
    assert Mode.SCHEDULE in modes
    assert report.ok, report.problems[:3]
    base = [k for k in keys if "#" not in k]
    assert len(base) == len(set(base)) >= 3
    assert settled_through >= end.replace(minute=0, second=0) - dt.timedelta(hours=1)
    for job in ("control", "dispatch", "forecast", "settle"):
        assert stats[job]["failures"] == 0, stats[job]
