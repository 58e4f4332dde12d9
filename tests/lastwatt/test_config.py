"""Service configuration: flags over environment over file over defaults; bad keys named."""

from __future__ import annotations

import pytest

from lastwatt.cli import main
from lastwatt.config import ConfigError, load_settings


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "lastwatt.toml"
    path.write_text(
        'port = 7000\ncycle_s = 2.0\nseed = 4\n[weather]\nfeed_url = "http://127.0.0.1:1/f"\n'
        'max_age_hours = 6\n[logging]\njson = true\nareas = {controllers = "WARNING"}\n'
    )
    return path


def test_precedence_flags_then_environment_then_file_then_defaults(config_file, monkeypatch):
    monkeypatch.setenv("LASTWATT_CYCLE_S", "3")
    monkeypatch.setenv("LASTWATT_PORT", "7100")
    monkeypatch.setenv("LASTWATT_WEATHER__MAX_AGE_HOURS", "8")
    settings = load_settings(config_file, {"port": 7200, "seed": None})
    assert settings.port == 7200  # flag
    assert settings.cycle_s == 3.0  # environment over file
    assert settings.seed == 4  # file (the flag was not given)
    assert settings.replan_minutes == 15  # default
    assert settings.weather.max_age_hours == 8.0  # nested environment over the file's table
    assert settings.weather.feed_url == "http://127.0.0.1:1/f"  # the rest of the table kept
    assert settings.logging.json_lines is True
    assert settings.logging.areas == {"controllers": "WARNING"}


def test_config_file_from_the_environment(config_file, monkeypatch):
    monkeypatch.setenv("LASTWATT_CONFIG", str(config_file))
    assert load_settings(None).port == 7000


def test_webhook_secret_is_never_shown(monkeypatch):
    monkeypatch.setenv("LASTWATT_WEBHOOK_SECRET", "ab" * 32)
    settings = load_settings(None)
    assert settings.webhook_secret.get_secret_value() == "ab" * 32
    assert "abab" not in repr(settings)
    assert "abab" not in str(settings)


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        ("prot = 1\n", {}, "prot: Extra inputs are not permitted"),
        ("port = 'eighty'\n", {}, "port: Input should be a valid integer"),
        ("port = [\n", {}, "not valid TOML"),
        ("", {"LASTWATT_WEATHER__FEED_ULR": "x"}, "weather.feed_ulr"),
        ("", {"LASTWATT_CYCLE_S": "-1"}, "cycle_s: Input should be greater than 0"),
    ],
)
def test_bad_settings_are_named(tmp_path, monkeypatch, content, env, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_serve_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("prot = 1\n")
    assert main(["serve", "--config", str(path), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "prot" in err
    assert "Traceback" not in err


def test_serve_reports_a_missing_config_file(tmp_path, capsys):
    assert main(["serve", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_the_shipped_example_config_loads():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "lastwatt.toml"
    settings = load_settings(example)
    assert settings.weather.feed_url.startswith("https://api.open-meteo.com/")
    assert settings.data_dir == Path("/var/lib/lastwatt")


def test_serve_simulate_names_a_taken_port_and_the_flag(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--simulate", "--data-dir", str(tmp_path), "--sim-port", f"*={port}"]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--sim-port" in err
    assert "Traceback" not in err


def test_a_taken_api_port_is_named_before_anything_starts(tmp_path, capsys):
    """The API's port is bound first: taken, nothing else (simulator, control process, first
    plan, ledger) has started, so nothing is left running behind the usage error."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--simulate", "--sim-port", "*=0", "--speed", "60"]
        argv += ["--data-dir", str(tmp_path), "--port", str(port)]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err
    assert "try --port" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ledger.sqlite").exists()
    assert not (tmp_path / "service.sqlite").exists()


def test_sim_port_needs_simulate_and_a_known_gateway(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path), "--sim-port", "*=0"]) == 2
    assert "needs --simulate" in capsys.readouterr().err
    argv = ["serve", "--simulate", "--data-dir", str(tmp_path), "--sim-port", "nowhere=1"]
    assert main(argv) == 2
    assert "GATEWAY one of container" in capsys.readouterr().err
