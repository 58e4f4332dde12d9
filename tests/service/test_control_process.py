"""The control loop in its own process: restarted with an alarm when it dies, and the
devices left safe when the service stops.

The service runs here (accelerated clock, simulated container on its own thread); its
control loop is a spawned child process that talks Modbus to the simulated gateways.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from lastwatt.auth import init_credentials, load_credentials
from lastwatt.runtime import RunOptions, Runtime
from microgrid.site import ConnectionKind
from settlement import AlarmKind, Severity
from tests.service.conftest import MORNING, config, service_site

SPEED = 60.0  # a 10-s control cycle every 1/6 s of real time


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_a_killed_control_process_is_restarted_with_an_alarm(tmp_path):
    site = service_site()
    init_credentials(tmp_path)
    options = RunOptions(
        port=0,
        simulate=True,
        speed=SPEED,
        start=MORNING.replace(hour=9),
        opening_credit_minor=dict.fromkeys(ConnectionKind, 2_000_000),
    )
    runtime = Runtime(site, config(tmp_path, cycle_s=10.0), load_credentials(tmp_path), options)

    async def scenario() -> dict:
        await runtime.start()
        try:
            control = runtime.control_process
            service = runtime.service
            assert control is not None
            assert service is not None
            first = control.pid
            assert first is not None
            assert first != os.getpid()
            seen = control.snapshots
            await _until(lambda: control.snapshots >= seen + 3, 60, "control cycles")
            os.kill(first, signal.SIGKILL)
            await _until(lambda: control.restarts == 1, 60, "a restart")
            assert control.pid != first
            seen = control.snapshots
            await _until(lambda: control.snapshots >= seen + 3, 60, "cycles after the restart")
            # The operator's simulated-clock step reaches the control process too.
            before = service.last_cycle.time
            runtime.clock.advance(3600.0)
            await _until(
                lambda: service.last_cycle.time >= before + dt.timedelta(hours=1),
                30,
                "a cycle an hour later",
            )
            return {
                "alarms": service.store.alarm_records(standing_only=True),
                "mode": service.last_cycle.mode.value if service.last_cycle else None,
                "child": control.process,
                "pv_limit_pct": runtime.sim.pv_limit_pct() if runtime.sim else None,
            }
        finally:
            await runtime.stop()

    out = asyncio.run(scenario())
    restarted = [a for a in out["alarms"] if a.kind is AlarmKind.CONTROL_RESTARTED]
    assert len(restarted) == 1, out["alarms"]
    assert restarted[0].severity is Severity.CRITICAL
    assert "was killed" in restarted[0].message
    assert out["mode"] != "safe"  # the restarted child follows the plan again
    # Stopped cleanly: the child is gone and left the devices safe (businesses off,
    # priority users on).
    assert not out["child"].is_alive()
    assert out["child"].exitcode == 0
    sim = runtime.sim
    assert sim is not None
    safe_pct = config(tmp_path).controller.failsafe.pv_safe_limit_pct
    assert out["pv_limit_pct"] != pytest.approx(safe_pct)  # the plan's limit while it ran
    assert sim.pv_limit_pct() == pytest.approx(safe_pct)
    assert not any(sim.supply_closed(b.id) for b in site.businesses)
    assert all(sim.supply_closed(p.id) for p in site.priority_users)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.slow
def test_the_control_process_ends_when_the_service_is_killed(tmp_path):
    """SIGKILL of ``lastwatt serve``: its control process must not drive on alone (a
    restarted service would start a second controller beside it)."""
    site = service_site()
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(site.model_dump(mode="json", exclude_none=True)))
    log = tmp_path / "serve.log"
    command = [
        sys.executable,
        *("-m", "lastwatt.cli", "serve", "--simulate", "--speed", "60", "--port", "0"),
        *("--site", str(site_file), "--data-dir", str(tmp_path / "data"), "--cycle-s", "10"),
    ]
    with log.open("w") as out:
        service = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        child = None
        while child is None or "dashboard http" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            assert service.poll() is None, log.read_text()
            match = re.search(r"control process (\d+) started", log.read_text())
            child = int(match.group(1)) if match else None
            time.sleep(0.1)
        assert not _gone(child)
        service.kill()
        service.wait(10)
        deadline = time.monotonic() + 30
        while not _gone(child):
            assert time.monotonic() < deadline, "the control process outlived its service"
            time.sleep(0.1)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
