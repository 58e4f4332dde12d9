"""Stakes files and the strict parsing of numbers and times in files."""

from __future__ import annotations

import pytest

from lastwatt.inputs import parse_file_time, read_stakes
from microgrid import load_site


@pytest.mark.parametrize("stake", ["1_000", "\u0661", "\u00b2", " 1", "-1", "1.0"])
def test_csv_stakes_are_ascii_whole_numbers(tmp_path, stake):
    site = load_site()
    path = tmp_path / "stakes.csv"
    path.write_text(f"business_id,stake\n{site.businesses[0].id},{stake}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: stake must be a whole number"):
        read_stakes(path, site)


def test_good_stakes_are_read(tmp_path):
    site = load_site()
    path = tmp_path / "stakes.csv"
    path.write_text(f"business_id,stake\n{site.businesses[0].id},3\n", encoding="utf-8")
    assert read_stakes(path, site) == {site.businesses[0].id: 3}


def test_deeply_nested_stakes_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "stakes.toml"
    path.write_text("stakes = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"nested too deeply|expected a"):
        read_stakes(path, load_site())


@pytest.mark.parametrize("text", ["0001-01-01T00:00Z", "1969-12-31T23:00Z", "2101-01-01T00:00Z"])
def test_file_times_outside_the_years_are_refused(text):
    with pytest.raises(ValueError, match="expected 2000–2100"):
        parse_file_time(text, "read_at")
