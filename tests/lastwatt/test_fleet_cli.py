from __future__ import annotations

import pandas as pd
import pytest

from lastwatt.cli import main


def test_fleet_with_no_sites_is_a_usage_error(tmp_path, capsys):
    assert main(["fleet", "rainy_season", "--sites", "0", "--out", str(tmp_path / "f.csv")]) == 2
    assert "--sites must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.slow  # two default-size sites simulated for a day
def test_fleet_writes_per_site_and_fleet_kpis(tmp_path, capsys):
    out = tmp_path / "f.csv"
    args = ["fleet", "rainy_season", "--sites", "2", "--days", "1", "--runs", "1"]
    assert main([*args, "--workers", "1", "--out", str(out)]) == 0
    per_site = pd.read_csv(out)
    fleet = pd.read_csv(tmp_path / "f_fleet.csv")
    assert sorted(per_site["site"]) == ["rainy_season-site000", "rainy_season-site001"]
    assert fleet["household_kwh"].iloc[0] == pytest.approx(per_site["household_kwh"].sum())
    assert "household_served_fraction:" in capsys.readouterr().out
