"""The ledger commands end to end: import readings, settle, balances, history, verify."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lastwatt.cli import main
from microgrid import load_site
from settlement import SqliteLedgerStore
from settlement.ledger import chain_hash
from settlement.prepaid import CreditPolicy

CSV = """meter_id,read_at,import_wh,export_wh
H001,2026-08-01T10:00Z,1000,0
H001,2026-08-01T11:00Z,3000,0
pv_inverter,2026-08-01T10:00Z,0,0
pv_inverter,2026-08-01T11:00Z,0,5000
GHOST,2026-08-01T11:00Z,1,0
"""


def test_import_settle_inspect_verify(tmp_path, capsys):
    db, readings = tmp_path / "ledger.sqlite", tmp_path / "r.csv"
    readings.write_text(CSV)
    assert main(["ledger", "import-readings", str(readings), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "4 readings recorded" in out
    assert "unknown meter 'GHOST'" in out

    assert main(["settle", "--hour", "2026-08-01T10:00Z", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "pool 0.500000 coin" in out
    assert "posted batch" in out
    assert main(["settle", "--hour", "2026-08-01T10:00Z", "--db", str(db)]) == 0
    assert "nothing changed" in capsys.readouterr().out

    assert main(["ledger", "balances", "--db", str(db), "--prefix", "meter:"]) == 0
    out = capsys.readouterr().out
    assert "meter:H001" in out
    assert "-0.500000" in out
    # Its credit now: off when empty, except in friendly hours (the default site's evening
    # and night), when it is kept on — the command reads the wall clock.
    local_hour = datetime.now(ZoneInfo(load_site(None).location.timezone)).hour
    assert ("friendly_hold" if CreditPolicy().is_friendly(local_hour) else "OFF") in out
    assert main(["ledger", "history", "meter:H001", "--db", str(db)]) == 0
    assert "settle.charge" in capsys.readouterr().out

    assert main(["ledger", "verify", "--db", str(db)]) == 0
    assert "ledger OK: 3 journal rows" in capsys.readouterr().out
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE journal SET amount = 1 WHERE seq = 2")
    assert main(["ledger", "verify", "--db", str(db)]) == 1
    assert "first bad row 2" in capsys.readouterr().out
    with SqliteLedgerStore(db) as store:  # the operator sees it as a critical alarm
        standing = store.alarm_records(standing_only=True)
    assert [(a.subject, a.severity.value) for a in standing if a.kind == "verify_failed"] == [
        ("ledger", "critical")
    ]


def test_friendly_errors(tmp_path, capsys):
    db = tmp_path / "none.sqlite"
    assert main(["ledger", "verify", "--db", str(db)]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert main(["settle", "--hour", "2026-08-01T10:30Z", "--db", str(db)]) == 2
    assert "did you mean" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("meter_id,read_at,import_wh\nH001,yesterday,5\n")
    assert main(["ledger", "import-readings", str(bad), "--db", str(db)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_refused_settle_leaves_no_empty_ledger(tmp_path, capsys):
    db = tmp_path / "fresh" / "ledger.sqlite"
    assert main(["settle", "--hour", "2026-08-01T10:30Z", "--db", str(db)]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert not db.exists()
    assert not db.with_name("ledger.sqlite-wal").exists()


def test_db_that_is_not_sqlite_is_a_usage_error(tmp_path, capsys):
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 10)
    for argv in (
        ["ledger", "verify"],
        ["ledger", "balances"],
        ["settle", "--hour", "2026-08-01T10:00Z"],
    ):
        assert main([*argv, "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert "is not a SQLite database" in err
        assert "Traceback" not in err
    assert db.read_text() == "not a database\n" * 10


def test_db_of_another_application_is_refused_and_left_untouched(tmp_path, capsys):
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    before = db.read_bytes()
    assert main(["ledger", "verify", "--db", str(db)]) == 2
    assert "not a LastWatt ledger" in capsys.readouterr().err
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("H001,2026-08-01T10:00Z,1_000,0", "ASCII digits"),
        ("H001,2026-08-01T10:00Z,\u0661\u0662\u0663,0", "ASCII digits"),
        ("H001,2026-08-01T10:00Z, 12,0", "ASCII digits"),
        ("H001,2026-08-01T10:00Z,12,-1", "ASCII digits"),
        ("H001,0001-01-01T00:00Z,12,0", "year 1"),
        ("H001,2026-08-01T10:00Z,99999999999999999999,0", "ASCII digits"),
    ],
)
def test_readings_are_parsed_strictly(tmp_path, capsys, row, expected):
    db, readings = tmp_path / "ledger.sqlite", tmp_path / "r.csv"
    readings.write_text("meter_id,read_at,import_wh,export_wh\n" + row + "\n", encoding="utf-8")
    assert main(["ledger", "import-readings", str(readings), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err
    assert expected in err
    assert not db.exists()


def test_checkpointed_ledger_verifies_and_a_forged_append_fails(tmp_path, capsys):
    db, readings = tmp_path / "data" / "ledger.sqlite", tmp_path / "r.csv"
    readings.write_text(CSV)
    anchor = ["--checkpoints", str(tmp_path / "backup"), "--anchor-key", str(tmp_path / "k")]
    assert main(["ledger", "checkpoint", "--db", str(db), *anchor]) == 2  # no ledger yet
    assert main(["ledger", "import-readings", str(readings), "--db", str(db)]) == 0
    assert main(["ledger", "checkpoint", "--db", str(db), *anchor]) == 0
    assert "created anchor key" in capsys.readouterr().out
    assert main(["settle", "--hour", "2026-08-01T10:00Z", "--db", str(db), *anchor]) == 0
    assert main(["ledger", "verify", "--db", str(db), *anchor]) == 0
    assert "matches its last checkpoint" in capsys.readouterr().out
    with sqlite3.connect(db) as raw:  # a row appended around the service, chained correctly
        seq, previous, at = raw.execute(
            "SELECT seq, hash, posted_at_us FROM journal ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        row = (seq + 1, "forged", "fiat.topup", "fiat:bridge", "user:m", "coin", 10**12, at)
        raw.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, chain_hash(previous, *row)),
        )
    assert main(["ledger", "verify", "--db", str(db), *anchor]) == 1
    assert "no checkpoint covers them" in capsys.readouterr().out
    assert main(["ledger", "verify", "--db", str(db), "--checkpoints", "x"]) == 2
    assert "go together" in capsys.readouterr().err
