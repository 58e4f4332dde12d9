"""The site file: the default site's numbers, and one clear error per kind of bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from microgrid import (
    ConnectionKind,
    SiteFileError,
    default_site_path,
    load_site,
    parse_site,
)

DEFAULT_TEXT = default_site_path().read_text(encoding="utf-8")
REPO = Path(__file__).resolve().parents[2]


def edited(old: str, new: str, count: int = 1) -> str:
    """The default site file with one textual edit; fails loudly if the edit misses."""
    assert old in DEFAULT_TEXT, f"test fixture out of date: {old!r} not in the default site"
    return DEFAULT_TEXT.replace(old, new, count)


def edited_re(pattern: str, replacement: str) -> str:
    """The default site file with the first match of ``pattern`` replaced."""
    text, n = re.subn(pattern, replacement, DEFAULT_TEXT, count=1)
    assert n == 1, f"test fixture out of date: {pattern!r} not in the default site"
    return text


def problems_of(text: str) -> list[str]:
    with pytest.raises(SiteFileError) as info:
        parse_site(text, source="site.toml")
    assert str(info.value).startswith("site.toml: "), "the error must name the file"
    return info.value.problems


def test_default_site_is_the_seeds_community():
    site = load_site()
    assert site.pv.dc_capacity_kwp == 22.0
    assert len(site.connections) == 400
    assert len(site.households) == 320
    assert len(site.businesses) == 70
    assert len(site.priority_users) == 10
    mean_household = sum(c.annual_energy_kwh or 0 for c in site.households) / 320
    assert mean_household == pytest.approx(200.0, abs=1e-6)
    assert site.battery.energy_capacity_kwh == 60.0
    assert site.location.timezone == "Africa/Niamey"
    assert all(-10 <= c.business.value_score <= 10 for c in site.businesses if c.business)


def test_default_site_file_is_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_default_site.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_site_is_frozen():
    site = load_site()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        site.pv.dc_capacity_kwp = 44.0  # type: ignore[misc]


def test_every_household_is_in_a_relay_group_of_ten():
    site = load_site()
    groups = {g.id for g in site.relay_groups}
    assert len(groups) == 32
    assert {c.relay_group for c in site.households} == groups


def test_connection_lookup_names_the_missing_id():
    site = load_site()
    assert site.connection("H001").kind is ConnectionKind.HOUSEHOLD
    with pytest.raises(KeyError, match="X999"):
        site.connection("X999")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "dc_capacity_kwp = 22.0\n",
            "",
            r"^pv\.dc_capacity_kwp: required field is missing$",
            id="missing-field",
        ),
        pytest.param(
            "dc_capacity_kwp = 22.0",
            'dc_capacity_kwp = "lots"',
            r"^pv\.dc_capacity_kwp: .*number.*'lots'",
            id="wrong-type",
        ),
        pytest.param(
            "energy_capacity_kwh = 60.0",
            "energy_capacity_kwh = -60.0",
            r"^battery\.energy_capacity_kwh: .*greater than 0",
            id="negative-capacity",
        ),
        pytest.param(
            'timezone = "Africa/Niamey"',
            'timezone = "Africa/Atlantis"',
            r"^location\.timezone: unknown timezone 'Africa/Atlantis'; use an IANA name",
            id="unknown-timezone",
        ),
        pytest.param(
            "soc_min_fraction = 0.1",
            "soc_min_fraction = 1.0",
            r"^battery\.soc_min_fraction: .*less than 1",
            id="soc-window",
        ),
    ],
)
def test_bad_container_field_is_named(old, new, expected):
    problems = problems_of(edited(old, new))
    assert len(problems) == 1, problems
    assert re.search(expected, problems[0]), problems[0]


def test_unknown_field_is_named_with_its_path():
    problems = problems_of(edited("surface_tilt_deg = 15.0", "surface_tilt_degrees = 15.0"))
    assert any(p.startswith("pv.surface_tilt_degrees: unknown field") for p in problems)
    assert any(p.startswith("pv.surface_tilt_deg: required field is missing") for p in problems)


def test_score_out_of_range_names_the_connection_id():
    problems = problems_of(edited_re(r"value_score = [-0-9.]+", "value_score = 12.0"))
    assert len(problems) == 1, problems
    assert re.match(
        r"^connections\[\d+\] \(id 'B01_grain_mill'\)\.business\.value_score: "
        r".*less than or equal to 10",
        problems[0],
    ), problems[0]


def test_duplicate_connection_id():
    problems = problems_of(edited('id = "H002"', 'id = "H001"'))
    assert problems == ["connections: id 'H001' appears 2 times; ids must be unique"]


def test_two_devices_on_one_modbus_address():
    # Move H002's meter onto H001's unit id on the same bus.
    text = edited_re(
        r'(id = "H002"[^\[]*?meter = \{ gateway = "meters-a", unit_id = )\d+', r"\g<1>11"
    )
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith("connections[11] (id 'H002').meter: ")
    assert (
        "gateway 'meters-a' unit 11 is already used by connections[10] (id 'H001')" in (problems[0])
    )


def test_relay_group_without_connections():
    extra = (
        '[[relay_groups]]\nid = "HG99"\n'
        'relay = { gateway = "container", unit_id = 10, coil = 99 }\n'
    )
    text = DEFAULT_TEXT.replace("[[relay_groups]]", extra + "\n[[relay_groups]]", 1)
    problems = problems_of(text)
    assert problems == [
        "relay_groups[0] (id 'HG99'): no connection is in this group; "
        "remove it or assign connections to it"
    ]


def test_unknown_gateway_and_tariff_are_both_reported():
    text = edited('tariff = "household"', 'tariff = "housold"')
    text = text.replace('gateway = "meters-b"', 'gateway = "meters-c"', 1)
    problems = problems_of(text)
    assert len(problems) == 2, problems
    assert any("tariff: unknown tariff 'housold'" in p for p in problems)
    assert any("gateway: unknown gateway 'meters-c'" in p for p in problems)


def test_household_without_relay_group():
    problems = problems_of(edited('relay_group = "HG01"\n', ""))
    assert len(problems) == 1, problems
    assert "a household connection needs relay_group" in problems[0]


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(SiteFileError, match="not valid TOML"):
        parse_site("name = ", source="x.toml")
    missing = tmp_path / "nope.toml"
    with pytest.raises(SiteFileError, match=r"(?s)nope\.toml: 1 problem.*cannot read the file"):
        load_site(missing)


def test_business_energy_above_what_its_power_allows():
    text = edited_re(r"(B01_grain_mill[^\[]*?daily_energy_kwh = )[0-9.]+", r"\g<1>999.0")
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert "(id 'B01_grain_mill').business: daily_energy_kwh (999.0) exceeds" in problems[0]


def test_chargers_and_vehicles_are_checked():
    site = load_site()
    assert site.charger("CP01").tariff == "business"
    assert site.vehicle_with_tag("EV01TAG").id == "EV01_moto_taxi"
    problems = problems_of(
        edited('tariff = "business"\nservice_fee', 'tariff = "fuel"\nservice_fee').replace(
            'id_tag = "EV02TAG"', 'id_tag = "EV01TAG"'
        )
    )
    text = "\n".join(problems)
    assert "chargers[0] (id 'CP01').tariff: unknown tariff 'fuel'" in text
    assert "id_tag 'EV01TAG' appears 2 times" in text
