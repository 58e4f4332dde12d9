"""The ledger commands end to end: import readings, settle, balances, history, verify."""

from __future__ import annotations

import sqlite3

from lastwatt.cli import main

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
    assert "OFF" in out
    assert main(["ledger", "history", "meter:H001", "--db", str(db)]) == 0
    assert "settle.charge" in capsys.readouterr().out

    assert main(["ledger", "verify", "--db", str(db)]) == 0
    assert "ledger OK: 3 journal rows" in capsys.readouterr().out
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE journal SET amount = 1 WHERE seq = 2")
    assert main(["ledger", "verify", "--db", str(db)]) == 1
    assert "first bad row 2" in capsys.readouterr().out


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
