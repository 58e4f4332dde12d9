"""``lastwatt contracts`` end to end: a mill's day on a band contract, and bad input."""

from __future__ import annotations

import pytest

from lastwatt.cli import main
from settlement import SqliteLedgerStore
from settlement.ledger import FIAT_BRIDGE, UTILITY, Asset, Batch, Transfer

TERMS = """
contract_id = "mill-1"
meter_id = "B01_grain_mill"
start = 2026-03-02T06:00:00Z
interval_s = 3600
bands_wh = [[10000, 14000], [10000, 14000], [10000, 14000]]
tolerance_wh = 500
bonus = 2000000
over_rate = 400000
under_rate = 200000
disconnect_penalty = 1000000
discount_ppm = 800000
"""

CSV = """meter_id,read_at,import_wh
B01_grain_mill,2026-03-02T06:00Z,0
B01_grain_mill,2026-03-02T07:00Z,12000
B01_grain_mill,2026-03-02T08:00Z,28500
B01_grain_mill,2026-03-02T09:00Z,40500
"""


@pytest.fixture
def ledger(tmp_path):
    db = tmp_path / "ledger.sqlite"
    with SqliteLedgerStore(db) as store:  # the utility's fee income, as settlement leaves it
        store.post(
            Batch("fees", (Transfer(FIAT_BRIDGE, UTILITY, Asset.COIN, 9_000_000, "fiat.topup"),))
        )
    (tmp_path / "mill.toml").write_text(TERMS)
    (tmp_path / "r.csv").write_text(CSV)
    return tmp_path


def run(*args: str, db) -> int:
    return main([*args, "--db", str(db / "ledger.sqlite")])


def test_a_mills_day_on_contract(ledger, capsys):
    terms = str(ledger / "mill.toml")
    assert run("contracts", "create", terms, "--now", "2026-03-02T05:00Z", db=ledger) == 2
    assert "contract_budget holds 0" in capsys.readouterr().err
    assert run("contracts", "budget", "--amount-minor", "5000000", "--key", "k", db=ledger) == 0
    assert run("contracts", "create", terms, "--now", "2026-03-02T05:00Z", db=ledger) == 0
    assert "bonus 2.000000 coin escrowed" in capsys.readouterr().out
    assert run("contracts", "create", terms, db=ledger) == 2
    assert "exists" in capsys.readouterr().err
    args = ("--from", "2026-03-02T08:00Z", "--bands", "0:1000")
    assert run("contracts", "revise", "mill-1", *args, "--now", "2026-03-02T07:30Z", db=ledger) == 2
    assert "gate" in capsys.readouterr().err
    assert run("contracts", "revise", "mill-1", *args, "--now", "2026-03-02T06:30Z", db=ledger) == 0
    assert (
        main(
            [
                "ledger",
                "import-readings",
                str(ledger / "r.csv"),
                "--db",
                str(ledger / "ledger.sqlite"),
            ]
        )
        == 0
    )
    assert run("contracts", "settle", "mill-1", "--now", "2026-03-02T10:00Z", db=ledger) == 0
    # 12 kWh in band; 16.5 kWh is 2 kWh over → 0.8; 12 kWh against the revised 0–1 kWh band
    # is 10.5 kWh over → 4.2, of which 1.2 from the bonus and 3.0 owed.
    assert "3 intervals charged, 5.000000 coin" in capsys.readouterr().out
    assert run("contracts", "statement", "mill-1", db=ledger) == 0
    out = capsys.readouterr().out
    assert "penalties 5.000000, owed 3.000000, bonus left 0.000000" in out
    assert run("contracts", "close", "mill-1", "--now", "2026-03-02T08:00Z", db=ledger) == 2
    assert "runs until" in capsys.readouterr().err
    assert run("contracts", "close", "mill-1", "--now", "2026-03-02T10:00Z", db=ledger) == 0
    assert "discount 0.000000" in capsys.readouterr().out
    assert run("contracts", "list", db=ledger) == 0
    assert "closed" in capsys.readouterr().out
    assert main(["ledger", "verify", "--db", str(ledger / "ledger.sqlite")]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("contracts", "create", "missing.toml"), "does not exist"),
        (("contracts", "statement", "nope"), "no contract 'nope'"),
        (
            ("contracts", "revise", "nope", "--from", "2026-03-02T08:00Z", "--bands", "1-2"),
            "LOWER:UPPER",
        ),
        (
            ("contracts", "revise", "nope", "--from", "2026-03-02T08:00Z", "--bands", "١:٢"),
            "LOWER:UPPER",
        ),
        (("contracts", "revise", "nope", "--from", "yesterday", "--bands", "1:2"), "--from"),
        (("contracts", "budget", "--amount-minor", "-5", "--key", "k"), "budget amount"),
        (("contracts", "settle", "nope", "--grace-min", "-1"), "--grace-min"),
    ],
)
def test_bad_input_is_a_clear_error(ledger, capsys, args, message):
    assert run(*args, db=ledger) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("contract_id = 'x'", "missing field"),
        (TERMS.replace("interval_s = 3600", "interval_s = '1h'"), "interval_s must be an integer"),
        (TERMS.replace("bonus = 2000000", "bonus = 2e6"), "bonus must be an integer"),
        (TERMS.replace("[[10000, 14000],", "[[14000, 10000],"), "bands_wh[0]"),
        ("a = " + "[" * 100_000, "not a valid TOML"),
    ],
)
def test_bad_terms_files_are_named(ledger, capsys, text, message):
    (ledger / "bad.toml").write_text(text)
    assert run("contracts", "create", str(ledger / "bad.toml"), db=ledger) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err
    assert message in err
