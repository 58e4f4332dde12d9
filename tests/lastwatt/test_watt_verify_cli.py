"""lastwatt ledger verify checks the WATT invariant: minted only for energy stored."""

from __future__ import annotations

from lastwatt.cli import main
from settlement import SqliteLedgerStore
from settlement.ledger import WATT_ISSUER, Asset, Batch, Transfer
from tests.lastwatt.test_storage_cli import CSV, _site_file

# 1.1 kWh of the 5.5 kWh exported charged the battery: Angel 600 WATT, Bennie 500.
CHARGED = CSV.replace(
    "battery_inverter,2026-08-01T11:00Z,0,0", "battery_inverter,2026-08-01T11:00Z,1100,0"
)


def _settled(tmp_path):
    site = _site_file(tmp_path, producer_meters=("angel", "bennie"))
    db, readings = tmp_path / "l.sqlite", tmp_path / "r.csv"
    readings.write_text(CHARGED)
    common = ["--db", str(db), "--site", str(site)]
    assert main(["ledger", "import-readings", str(readings), *common]) == 0
    assert main(["settle", "--hour", "2026-08-01T10:00Z", "--storage", *common]) == 0
    return db, common


def test_verify_passes_when_watt_are_what_was_stored(tmp_path, capsys):
    _, common = _settled(tmp_path)
    capsys.readouterr()
    assert main(["ledger", "verify", *common]) == 0
    assert "WATT outstanding 1.100 kWh" in capsys.readouterr().out
    # The battery measured at 1.2 kWh holds the 1.045 kWh the WATT own.
    assert main(["ledger", "verify", *common, "--soc-kwh", "1.2"]) == 0


def test_verify_fails_on_watt_above_the_measured_energy_or_bmax(tmp_path, capsys):
    _, common = _settled(tmp_path)
    capsys.readouterr()
    assert main(["ledger", "verify", *common, "--soc-kwh", "0.5"]) == 1
    assert "the battery stores 500 Wh" in capsys.readouterr().out
    assert main(["ledger", "verify", *common, "--bmax-kwh", "0.55"]) == 1
    assert "meter:angel holds 600 WATT, above Bmax 550" in capsys.readouterr().out


def test_verify_fails_on_watt_minted_for_energy_never_stored(tmp_path, capsys):
    db, common = _settled(tmp_path)
    with SqliteLedgerStore(db) as store:
        # 100 MWh: a watt.* code, so the journal's own rules let it through.
        store.post(
            Batch("rogue", (Transfer(WATT_ISSUER, "meter:danny", Asset.WATT, 10**8, "watt.mint"),))
        )
    capsys.readouterr()
    assert main(["ledger", "verify", *common]) == 1
    assert "more than the battery can store" in capsys.readouterr().out


def test_bad_measurement_is_a_usage_error(tmp_path, capsys):
    _, common = _settled(tmp_path)
    assert main(["ledger", "verify", *common, "--soc-kwh", "-1"]) == 2
    assert "--soc-kwh must be a number ≥ 0 kWh" in capsys.readouterr().err
