from __future__ import annotations

import pytest

from lastwatt.cli import main


def test_simulate_writes_report_and_data(tmp_path, capsys):
    out, data = tmp_path / "r.html", tmp_path / "r.csv"
    code = main(
        [
            "simulate",
            "rainy_season",
            "--days",
            "1",
            "--runs",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
            "--data",
            str(data),
        ]
    )
    assert code == 0
    assert out.read_text().count("data:image/png;base64") >= 2
    assert data.exists()
    assert (tmp_path / "r_kpis.csv").exists()
    assert "report:" in capsys.readouterr().out


def test_sweep_and_usage_errors(tmp_path, capsys):
    out = tmp_path / "s.html"
    code = main(
        [
            "sweep",
            "sizing_sweep",
            "--param",
            "equipment.pv_kwp=22,33",
            "--days",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = out.read_text()
    assert "Sizing" in report
    # Per sweep point, never a median across PV sizes.
    assert "pv_kwp=22" in report
    assert "pv_kwp=33" in report
    printed = capsys.readouterr().out
    assert "pv_kwp=22" in printed
    assert "pv_kwp=33" in printed
    assert main(["sweep", "sizing_sweep", "--param", "equipment.nope=1", "--out", str(out)]) == 2
    assert "no such scenario parameter" in capsys.readouterr().err


def test_unusable_outputs_fail_before_the_run(tmp_path, capsys, monkeypatch):
    import scenarios.montecarlo

    def must_not_run(*args, **kwargs):
        raise AssertionError("the simulation started before the output paths were checked")

    monkeypatch.setattr(scenarios.montecarlo, "tidy_runs", must_not_run)
    cases = [
        (["--out", str(tmp_path / "missing" / "r.html")], "does not exist"),
        (["--out", str(tmp_path / "r.pdf")], ".html"),
        (["--out", str(tmp_path / "r.html"), "--data", str(tmp_path / "r.xlsx")], ".parquet"),
        (["--out", str(tmp_path)], ".html"),
    ]
    for extra, message in cases:
        assert main(["simulate", "rainy_season", "--days", "1", *extra]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow  # the client waits its 10 s connect timeout
def test_unreachable_dask_scheduler_is_a_usage_error(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a free loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(
        [
            "simulate",
            "rainy_season",
            "--days",
            "1",
            "--runs",
            "1",
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    assert code == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in capsys.readouterr().err
