"""``lastwatt site`` and the command line's own plumbing: --version, -m, fast --help."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

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


# What `lastwatt --help` must not load: the MILP stack, pandas and matplotlib cost seconds,
# and the project's own model and settlement packages import pandas. Handlers import them.
_HEAVY = (
    "asyncio",  # with subprocess and concurrent.futures: 30 ms of a 165 ms import
    "pandas",
    "numpy",
    "scipy",
    "pyomo",
    "matplotlib",
    "pymodbus",
    "pyarrow",
    "pydantic",
    "tqdm",
    "websockets",
    "dask",
    "psycopg",
    "microgrid",
    "settlement",
    "forecasts",
    "dispatch",
    "controllers",
    "scenarios",
)

# Every command `lastwatt` registers, subcommands after their group.
_COMMANDS = (
    "forecast",
    "dispatch",
    "demo",
    "ledger balances",
    "ledger history",
    "ledger verify",
    "ledger checkpoint",
    "ledger import-readings",
    "settle",
    "simulate-devices",
    "simulate",
    "sweep",
    "fleet",
    "serve",
    "users list",
    "users add",
    "users remove",
    "users rotate-webhook-secret",
    "site init",
    "site check",
    "site show",
    "site businesses",
    "backup",
    "restore",
    "backup-check",
    "contracts create",
    "contracts revise",
    "contracts budget",
    "contracts deposit",
    "contracts settle",
    "contracts statement",
    "contracts close",
    "contracts list",
    "market-day",
    "ocpp-central",
    "ev-session",
    "owners set",
    "owners show",
    "meters credential",
    "alarms",
)


def _heavy_after_help(*argvs: list[str]) -> str:
    """The heavy packages loaded after ``main(argv)`` for each argv, in one fresh process."""
    code = (
        "import contextlib, io, sys\nfrom lastwatt.cli import main\n"
        f"for argv in {list(argvs)!r}:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        f"print('HEAVY', sorted(m for m in {_HEAVY!r} if m in sys.modules))\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1].removeprefix("HEAVY ")


def test_help_imports_nothing_heavy():
    assert _heavy_after_help(["--help"]) == "[]"


def test_every_command_help_imports_nothing_heavy():
    # A command's own --help builds the same parser: no option default or type may import.
    assert _heavy_after_help(*([*c.split(), "--help"] for c in _COMMANDS)) == "[]"


def test_every_command_is_registered(capsys):
    # Lazy imports must not cost a command: each one's --help answers, with its example.
    for name in _COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([*name.split(), "--help"])
        assert info.value.code == 0, name
        assert "example:\n  lastwatt " + name.split()[0] in capsys.readouterr().out, name
    groups = {name.split()[0] for name in _COMMANDS}
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for group in groups:
        assert re.search(rf"^    {re.escape(group)}(\s|$)", listed, re.MULTILINE), group


def test_commission_default_matches_the_storage_policy():
    # --help shows the default without importing settlement; it must stay StoragePolicy's.
    from lastwatt.storage_options import DEFAULT_COMMISSION_PPM
    from settlement import StoragePolicy

    assert StoragePolicy().commission_ppm == DEFAULT_COMMISSION_PPM
