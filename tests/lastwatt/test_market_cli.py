"""``lastwatt market-day``: a day of the market on the bundled site; clear usage errors."""

from __future__ import annotations

import pytest

from lastwatt.cli import main


def test_usage_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["market-day", "--date", "yesterday"]) == 2
    assert main(["market-day", "--prosumers", "1.5"]) == 2
    existing = tmp_path / "ledger.sqlite"
    existing.write_text("")
    assert main(["market-day", "--ledger", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "YYYY-MM-DD" in err
    assert "prosumer_share" in err
    assert "needs an empty ledger" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_market_day_on_the_bundled_site(tmp_path, capsys):
    assert main(["market-day", "--seed", "1", "--ledger", str(tmp_path / "day.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "ledger verifies      yes" in out
    assert (tmp_path / "day.sqlite").exists()


@pytest.mark.slow  # starts a lastwatt process: ~10 s of imports on a shared machine
def test_ocpp_central_and_a_simulated_session_from_the_command_line(tmp_path, capsys):
    import re
    import subprocess
    import sys
    from pathlib import Path

    from settlement import SqliteLedgerStore
    from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer

    db = tmp_path / "ledger.sqlite"
    with SqliteLedgerStore(db) as store:
        wallet = "ev:EV01_moto_taxi"
        store.post(
            Batch("topup", (Transfer(FIAT_BRIDGE, wallet, Asset.COIN, 9_000_000, "fiat.topup"),))
        )
    lastwatt = Path(sys.executable).parent / "lastwatt"
    with subprocess.Popen(
        [str(lastwatt), "ocpp-central", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as central:
        try:
            banner = central.stdout.readline()
            port = re.search(r":(\d+)/ocpp", banner).group(1)
            assert central.stdout.readline().strip() == "ready"
            url = f"ws://127.0.0.1:{port}/ocpp"
            assert main(["ev-session", "--url", url, "--tag", "EV01TAG", "--wh", "1500"]) == 0
            assert "Accepted, 1500 Wh delivered" in capsys.readouterr().out
            assert main(["ev-session", "--url", url, "--tag", "STRANGER", "--wh", "1500"]) == 0
            assert "Invalid" in capsys.readouterr().out
        finally:
            central.terminate()
            central.wait(timeout=10)
    with SqliteLedgerStore(db) as store:
        paid = 9_000_000 - store.balance("ev:EV01_moto_taxi")
        assert paid > 0
        assert store.balance("charger:CP01") == paid
        assert store.verify().ok
    assert main(["ev-session", "--url", url, "--tag", "EV01TAG", "--wh", "10"]) == 2
    assert "cannot reach the central system" in capsys.readouterr().err
