"""Crash tests: SIGKILL the settlement process at random points, rerun, check the ledger."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from settlement import SqliteLedgerStore
from tests.settlement import crash_worker

ROOT = Path(__file__).resolve().parents[2]


def _spawn(db: Path, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.settlement.crash_worker", str(db)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _crash_and_recover(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "crashed.sqlite"
    killed = 0
    for _ in range(kills):
        with _spawn(db) as proc:
            time.sleep(rng.uniform(0.3, 1.3))
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no cleanup, no atexit, no rollback by Python
                killed += 1
    with _spawn(db, stderr=subprocess.PIPE) as proc:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    crash_worker.run(str(tmp_path / "reference.sqlite"))  # the same work, never interrupted

    with SqliteLedgerStore(db) as crashed, SqliteLedgerStore(tmp_path / "reference.sqlite") as ref:
        report = crashed.verify()
        assert report.ok, report.problems[:3]
        # No double charge, no lost transfer: the same balances as an uninterrupted run...
        assert crashed.balances() == ref.balances()
        # ...and one batch per hour and per payment, never a correction.
        keys = crashed.keys_with_prefix("settle:")
        assert len(keys) == crash_worker.HOURS
        assert not any("#" in k for k in keys)
        assert len(crashed.keys_with_prefix("fiat:payment:")) == crash_worker.HOURS
        assert report.rows == ref.verify().rows
    assert killed >= 1 or kills == 0


def test_sigkill_during_settlement_loses_and_doubles_nothing(tmp_path):
    _crash_and_recover(tmp_path, kills=4, seed=2)


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    _crash_and_recover(tmp_path, kills=25, seed=7)
