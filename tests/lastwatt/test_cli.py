"""The command line as a user runs it: outputs written, bad input named, exit codes."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from lastwatt.cli import main


def test_forecast_writes_table_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "f.parquet", tmp_path / "f.png"
    code = main(
        ["forecast", "--start", "2026-08-01", "--days", "2", "--out", str(out), "--plot", str(plot)]
    )
    assert code == 0
    table = pd.read_parquet(out)
    assert len(table) == 2 * 96
    assert str(table.index.tz) == "UTC"
    assert plot.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "PV P10" in printed
    assert "2026-08-02" in printed


def test_dispatch_with_a_stakes_file(tmp_path, capsys):
    stakes = tmp_path / "stakes.csv"
    stakes.write_text("business_id,stake\nB01_grain_mill,200\nB02_grain_mill,100\n")
    out = tmp_path / "s.csv"
    code = main(
        [
            "dispatch",
            "--start",
            "2026-02-10T00:00",
            "--stakes",
            str(stakes),
            "--soc-kwh",
            "55",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "s.png"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    # A MILP plan: proven, or the best found when the 10 s budget ran out on a busy
    # machine (the tiers are solved in turn); never the rule's fallback.
    assert re.search(r"status (optimal|time_limit)\n", printed)
    plan = pd.read_csv(out, index_col=0)
    assert len(plan) == 96
    assert {"served_priority_kw", "B01_grain_mill_kw", "HG01_kw"} <= set(plan.columns)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("business_id,stake\nB99_nowhere,3\n", "'B99_nowhere' is not a business"),
        ("business_id,stake\nB01_grain_mill,-3\n", "line 2: stake must be a whole number"),
        ("business_id,stake\nB01_grain_mill,400\n", "400 tokens staked, but the site's 320"),
        ("who,what\n", "expected CSV columns business_id,stake"),
    ],
)
def test_bad_stakes_file_is_named(tmp_path, capsys, content, message):
    stakes = tmp_path / "stakes.csv"
    stakes.write_text(content)
    assert main(["dispatch", "--stakes", str(stakes), "--out", str(tmp_path / "x.csv")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--soc-kwh", "500"], "--soc-kwh 500 is outside the battery's 0–60 kWh"),
        (["--soc-kwh", "-3"], "--soc-kwh -3 is outside the battery's 0–60 kWh"),
        (["--soc-kwh", "nan"], "--soc-kwh nan is outside"),
        (["--time-limit", "0"], "--time-limit must be at least 2 seconds"),
        (["--time-limit", "1"], "--time-limit must be at least 2 seconds"),
        (["--hours", "0"], "--hours must be from 1 to 168 (a week), got 0"),
        (["--hours", "169"], "--hours must be from 1 to 168 (a week), got 169"),
    ],
)
def test_dispatch_options_are_checked_against_the_site(tmp_path, capsys, option, message):
    # Checked before any forecast or solve: no "optimal" plan with 24 313 kWh of violation.
    assert main(["dispatch", *option, "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_bad_site_file_exits_2_with_the_problem(tmp_path, capsys):
    site = tmp_path / "site.toml"
    site.write_text('name = "x"\n')
    assert main(["forecast", "--site", str(site), "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "site.toml" in err
    assert "location: required field is missing" in err


def test_every_command_has_help_with_an_example(capsys):
    for command in ("forecast", "dispatch", "demo"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "example:\n  lastwatt " + command in capsys.readouterr().out
