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
