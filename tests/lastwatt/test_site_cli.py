"""``lastwatt site`` and the command line's own plumbing: --version, -m, fast --help."""

from __future__ import annotations

import subprocess
import sys

from lastwatt.cli import main
from microgrid import load_site


def test_site_init_check_show_businesses(tmp_path, capsys):
    path = tmp_path / "my_site.toml"
    assert main(["site", "init", str(path)]) == 0
    assert load_site(path).name == load_site(None).name
    assert main(["site", "init", str(path)]) == 2  # no silent overwrite
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["site", "check", str(path)]) == 0
    assert "400 in all" in capsys.readouterr().out
    assert main(["site", "show", "--site", str(path)]) == 0
    assert "60 kWh" in capsys.readouterr().out
    assert main(["site", "businesses", "--site", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in listed] == [b.id for b in load_site(path).businesses]


def test_site_check_names_the_problem(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[location]\n")
    assert main(["site", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err
    assert "location" in err
    assert "Traceback" not in err


def _run(*args):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version_and_python_dash_m():
    out = _run("-m", "lastwatt", "--version")
    assert out.returncode == 0
    assert out.stdout.startswith("lastwatt 0.")


def test_help_imports_nothing_heavy():
    # The MILP stack, pandas and matplotlib cost seconds; --help must not load them.
    code = (
        "import sys\nfrom lastwatt.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'numpy', 'scipy', 'pyomo', 'matplotlib', 'pymodbus')"
        " if m in sys.modules]\nprint('HEAVY', heavy)\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
