"""The control loop under a bounded load: 50 HTTP clients (reads, wrong passwords, ledger
verify) for 20 s while the controller drives the simulated container in its own process.

Shares its harness with ``benchmarks/bench_isolation.py`` (which prints the figures).
"""

from __future__ import annotations

import logging
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_isolation import CYCLE_S, run_load

# The target is a p99 fast path ≤ 250 ms (the benchmark prints it: 63 ms median
# run at load average 10 on the shared 2-core machine). The test bounds what must never
# happen — a skipped run, a fail-safe, a fault, a restart — and keeps the p99 within a
# quarter of the device timeout, far from any tight number.
P99_LIMIT_S = 2.0


@pytest.mark.slow
def test_the_control_loop_keeps_its_pace_under_api_load(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lastwatt.jobs")
    result = run_load(tmp_path, seconds=20.0, clients=50, ledger_rows=50_000)
    assert result.control_pid is not None
    assert result.control_pid != result.service_pid  # the loop ran in its own process
    assert result.restarts == 0
    served = sum(n for k, n in result.responses.items() if k.split()[0] != "watch")
    assert served > 50, result.responses
    assert any(k.startswith("verify 200") for k in result.responses), result.responses
    assert any(k.startswith("password 401") for k in result.responses), result.responses
    due = int(result.window_s / CYCLE_S)
    skipped = [r.getMessage() for r in caplog.records if "job control" in r.getMessage()]
    assert skipped == [], "a control run was skipped"
    assert len(result.control_starts) >= due - 2
    assert result.max_run_gap_s < 3 * CYCLE_S
    assert result.failsafe_fired == []
    assert result.fast_faults == 0
    assert result.safe_cycles == 0
    assert len(result.fast_path_s) >= due - 2  # every cycle's own figures reached the service
    print(
        f"fast path median {statistics.median(result.fast_path_s) * 1000:.1f} ms, "
        f"p99 {result.p99_s * 1000:.1f} ms; {len(result.control_starts)} runs of {due} due"
    )
    assert result.p99_s < P99_LIMIT_S
