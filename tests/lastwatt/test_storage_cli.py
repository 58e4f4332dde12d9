"""Seed 002 through the command line: a site with prosumers, settle, owners, verify."""

from __future__ import annotations

import tomli_w

from lastwatt.cli import main
from tests.settlement.test_storage import seed_002_site

CSV = """meter_id,read_at,import_wh,export_wh
carlos,2026-08-01T10:00Z,0,0
carlos,2026-08-01T11:00Z,3000,0
danny,2026-08-01T10:00Z,0,0
danny,2026-08-01T11:00Z,2000,0
angel,2026-08-01T10:00Z,0,0
angel,2026-08-01T11:00Z,0,3000
bennie,2026-08-01T10:00Z,0,0
bennie,2026-08-01T11:00Z,0,2500
battery_inverter,2026-08-01T10:00Z,0,0
battery_inverter,2026-08-01T11:00Z,0,0
"""


def _site_file(tmp_path, **update):
    site = seed_002_site().model_copy(update=update)
    path = tmp_path / "seed002.toml"
    path.write_text(tomli_w.dumps(site.model_dump(mode="json", exclude_none=True)))
    return path


def test_seed_002_settles_from_the_site_alone_with_storage(tmp_path, capsys):
    site = _site_file(tmp_path, producer_meters=("angel", "bennie"))
    db, readings = tmp_path / "l.sqlite", tmp_path / "r.csv"
    readings.write_text(CSV)
    common = ["--db", str(db), "--site", str(site)]
    assert main(["ledger", "import-readings", str(readings), *common]) == 0
    assert "10 readings recorded" in capsys.readouterr().out
    assert main(["settle", "--hour", "2026-08-01T10:00Z", "--storage", *common]) == 0
    out = capsys.readouterr().out
    assert "paid out 4.990000 to 2 producers" in out
    assert "held" not in out
    assert main(["ledger", "balances", "--prefix", "meter:", *common]) == 0
    out = capsys.readouterr().out
    assert "2.721818" in out
    assert "2.268182" in out
    assert main(["owners", "set", "meter:angel", "angel", *common]) == 0
    assert main(["owners", "show", "meter:angel", *common]) == 0
    assert "meter:angel  angel" in capsys.readouterr().out
    assert main(["ledger", "verify", "--db", str(db)]) == 0
    assert "WATT outstanding 0.000 kWh" in capsys.readouterr().out


def test_without_declared_producers_the_container_pv_is_still_required(tmp_path, capsys):
    site = _site_file(tmp_path)
    db, readings = tmp_path / "l.sqlite", tmp_path / "r.csv"
    readings.write_text(CSV)
    common = ["--db", str(db), "--site", str(site)]
    assert main(["ledger", "import-readings", str(readings), *common]) == 0
    assert main(["settle", "--hour", "2026-08-01T10:00Z", *common]) == 0
    assert "held 4.990000" in capsys.readouterr().out


def test_owner_and_storage_errors_are_usage_errors(tmp_path, capsys):
    site = _site_file(tmp_path)
    db = tmp_path / "l.sqlite"
    assert main(["owners", "set", "meter:GHOST", "x", "--db", str(db), "--site", str(site)]) == 2
    assert "not a meter account" in capsys.readouterr().err
    args = ["settle", "--hour", "2026-08-01T10:00Z", "--db", str(db), "--site", str(site)]
    assert main([*args, "--storage", "--commission-ppm", "-5"]) == 2
    assert "commission_ppm" in capsys.readouterr().err
