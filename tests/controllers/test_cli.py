"""``lastwatt simulate-devices`` as a user runs it."""

from __future__ import annotations

from lastwatt.cli import main
from tests.controllers.conftest import free_port


def test_simulate_devices_serves_and_stops(capsys):
    ports = [f"{name}={free_port()}" for name in ("container", "meters-a", "meters-b")]
    args = [
        "simulate-devices",
        "--speed",
        "100",
        "--start",
        "2026-03-20T06:00",
        "--duration",
        "0.5",
    ]
    for port in ports:
        args += ["--port", port]
    assert main(args) == 0
    assert "404 devices" in capsys.readouterr().out


def test_simulate_devices_names_a_bad_port(capsys):
    assert main(["simulate-devices", "--port", "nowhere=5"]) == 2
    assert "GATEWAY=PORT" in capsys.readouterr().err
