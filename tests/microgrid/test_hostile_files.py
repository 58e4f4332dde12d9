"""Bad site, scenario and feed files: a clear error naming the file and field, exit 2."""

from __future__ import annotations

import pytest

from forecasts.weather import WeatherDataError, parse_forecast_feed
from lastwatt.cli import main
from microgrid import SiteFileError, default_site_path, load_site, parse_site
from scenarios import ScenarioFileError, parse_scenario
from scenarios.population import equipped_site

DEEP = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"


def test_deeply_nested_site_toml_is_a_site_error_and_exit_2(tmp_path, capsys):
    with pytest.raises(SiteFileError, match="nested too deeply"):
        parse_site(DEEP)
    path = tmp_path / "deep.toml"
    path.write_text(DEEP)
    assert main(["ledger", "import-readings", "r.csv", "--site", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert "nested too deeply" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinite_capacity_is_refused_with_its_field(value):
    text = (
        default_site_path()
        .read_text()
        .replace("dc_capacity_kwp = 22.0", f"dc_capacity_kwp = {value}")
    )
    with pytest.raises(SiteFileError, match=r"pv\.dc_capacity_kwp"):
        parse_site(text)


def test_deeply_nested_scenario_and_inf_are_scenario_errors():
    with pytest.raises(ScenarioFileError, match="nested too deeply"):
        parse_scenario('name = "x"\n' + DEEP)
    with pytest.raises(ScenarioFileError, match=r"equipment\.pv_kwp"):
        parse_scenario('name = "x"\n[equipment]\npv_kwp = inf\n')


def test_a_scenario_tariff_typo_is_an_error_naming_the_tariff():
    site = load_site()
    real = sorted(site.tariffs)[0]
    scenario = parse_scenario(f'name = "x"\n[economy.tariffs]\n{real}x = 300\n')
    with pytest.raises(ScenarioFileError, match=rf"economy\.tariffs\.{real}x"):
        equipped_site(site, scenario)
    ok = parse_scenario(f'name = "x"\n[economy.tariffs]\n{real} = 300\n')
    assert equipped_site(site, ok).tariffs[real].price_per_kwh_minor == 300


@pytest.mark.parametrize(
    "payload",
    ['{"hourly": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"x": ' + "9" * 5000 + "}"],
    ids=["100k deep", "5000-digit number"],
)
def test_hostile_feed_json_is_a_weather_error(payload):
    with pytest.raises(WeatherDataError):
        parse_forecast_feed(payload)
