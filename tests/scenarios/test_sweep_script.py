"""The service-plan sweep refuses bad output paths before its first simulated day."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sweep_service_plans.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("sweep_service_plans", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--report", "missing/sweep.html"], "folder missing does not exist"),
        (["--report", "{tmp}/sweep.png"], "must end in .html"),
        (["--out", "missing/sweep.csv"], "folder missing does not exist"),
    ],
)
def test_bad_output_paths_exit_2_before_any_run(
    sweep, tmp_path, capsys, monkeypatch, argv, message
):
    def no_run(*args, **kwargs):
        raise AssertionError("the sweep ran before checking its outputs")

    monkeypatch.setattr(sweep, "run_point", no_run)
    monkeypatch.chdir(tmp_path)
    assert sweep.main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message in capsys.readouterr().err
