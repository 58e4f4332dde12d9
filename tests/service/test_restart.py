"""Kill the service mid-day (SIGKILL) and restart it: nothing lost, nothing doubled.

The simulated container runs in this process on a clock anchored to Unix time; the
service runs as a subprocess with the same anchor (``--speed --start --epoch``), so the
restarted service continues the same simulated day against meters that kept counting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import tomli_w

from controllers.simulator import AcceleratedClock, SimulatedContainer, SimulatorSettings
from settlement import AlarmKind, SqliteLedgerStore, sign_webhook
from tests.service.conftest import MORNING, service_site

SPEED = 600.0  # 10 simulated minutes per second


class SimulatorThread:
    def __init__(self, site, clock):
        self.sim = SimulatedContainer(site, clock, SimulatorSettings(seed=3))
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.sim.start())
        self.started.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _start_service(args: list[str], log: Path) -> tuple[subprocess.Popen, str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lastwatt.cli", "serve", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text()
        match = re.search(r"dashboard (http://\S+/)", text)
        if match:
            return proc, match.group(1), text
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("service did not start:\n" + log.read_text())


@pytest.mark.slow
def test_sigkill_mid_day_and_restart_loses_and_doubles_nothing(tmp_path):
    site = service_site()
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(site.model_dump(mode="json", exclude_none=True)))
    data = tmp_path / "data"
    epoch = time.time()
    clock = AcceleratedClock(MORNING, SPEED, epoch)
    args = [
        "--site",
        str(site_file),
        "--data-dir",
        str(data),
        "--speed",
        str(SPEED),
        "--start",
        MORNING.isoformat(),
        "--epoch",
        repr(epoch),
        "--port",
        "0",
        "--cycle-s",
        "60",
        "--replan-minutes",
        "30",
        "--opening-credit",
        "5",
        "--log-level",
        "WARNING",
    ]
    household = site.households[0].id
    business = site.businesses[0].id
    with SimulatorThread(site, clock) as simulator:
        proc, url, banner = _start_service(args, tmp_path / "first.log")
        try:
            # First start: the new secrets are handed over in owner-only files, never printed.
            operator = (data / "secrets" / "operator").read_text().strip()
            secret = bytes.fromhex((data / "secrets" / "webhook_secret").read_text().strip())
            body = json.dumps(
                {
                    "type": "payment",
                    "payment_id": "pi_restart",
                    "account": f"meter:{household}",
                    "amount_fiat_minor": 6500,
                }
            ).encode()
            stamp = int(time.time())
            headers = {"X-Signature": sign_webhook(secret, stamp, body), "X-Timestamp": str(stamp)}
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.post("/api/webhooks/fiat", content=body, headers=headers).is_success
                staked = client.put(
                    f"/api/stakes/{household}",
                    json={"business_id": business},
                    auth=("operator", operator),
                )
                assert staked.status_code == 200, staked.text
                time.sleep(12)  # two simulated hours
                before = client.get(
                    f"/api/meters/{household}/readings?hours=48", auth=("operator", operator)
                ).json()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        killed_at = clock.now()
        time.sleep(2)  # the service is down for 20 simulated minutes; meters keep counting

        proc, url, banner = _start_service(args, tmp_path / "second.log")
        try:
            assert "generating" not in banner  # credentials kept
            with httpx.Client(base_url=url, timeout=10) as client:
                time.sleep(12)
                replay = client.post("/api/webhooks/fiat", content=body, headers=headers)
                after = client.get(
                    f"/api/meters/{household}/readings?hours=48", auth=("operator", operator)
                ).json()
                status = client.get("/api/status").json()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # A clean shutdown leaves the devices safe: businesses off, priority users on.
        sim = simulator.sim
        assert not any(sim.supply_closed(b.id) for b in site.businesses)
        assert all(sim.supply_closed(p.id) for p in site.priority_users)

    assert replay.json()["replayed"] is True
    assert dt.datetime.fromisoformat(status["time"]) > killed_at
    # No reading lost: every reading served before the kill is still there, unchanged.
    kept = {(r["read_at"], r["import_wh"]) for r in after["readings"]}
    assert {(r["read_at"], r["import_wh"]) for r in before["readings"]} <= kept
    assert len(after["readings"]) > len(before["readings"])
    with SqliteLedgerStore(data / "ledger.sqlite") as store:
        report = store.verify()
        assert report.ok, report.problems[:3]
        assert store.keys_with_prefix("fiat:payment:pi_restart") == ["fiat:payment:pi_restart"]
        assert store.stake_choices(2)[household] == business
        assert not [a for a in store.alarms() if a.kind is AlarmKind.READING_CONFLICT]
        hours = store.settled_hours(site.name, MORNING - dt.timedelta(hours=1), clock.now())
        # Settled hours run without a gap across the outage, each with one base batch.
        assert len(hours) >= 3
        assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(hours))
        base = [k for k in store.keys_with_prefix(f"settle:{site.name}:") if "#" not in k]
        assert len(base) == len(set(base)) == len(hours)
        opening = store.keys_with_prefix("fiat:payment:opening-")
        assert len(opening) == len(site.connections)  # once per meter, not per start


def test_site_file_roundtrip(tmp_path):
    from microgrid import load_site

    site = service_site()
    path = Path(tmp_path) / "site.toml"
    path.write_text(tomli_w.dumps(site.model_dump(mode="json", exclude_none=True)))
    assert load_site(path) == site
