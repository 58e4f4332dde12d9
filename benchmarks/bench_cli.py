"""Wall time of ``lastwatt --help`` and ``lastwatt --version`` as a user's shell runs them.

Each run is a fresh process (the installed ``lastwatt`` script next to this Python, else
``python -m lastwatt``), so import time is included; the goal is ≤ 0.5 s for --help.
For comparison, the time of importing the MILP stack the commands defer (``dispatch``).

Run: python benchmarks/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, median_seconds


def _command() -> list[str]:
    script = Path(sys.executable).with_name("lastwatt")
    if script.exists():
        return [str(script)]
    found = shutil.which("lastwatt")
    return [found] if found else [sys.executable, "-m", "lastwatt"]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    lastwatt = _command()
    cases = {
        "lastwatt --help": [*lastwatt, "--help"],
        "lastwatt --version": [*lastwatt, "--version"],
        "lastwatt serve --help": [*lastwatt, "serve", "--help"],
        "python -c 'import dispatch' (deferred stack)": [sys.executable, "-c", "import dispatch"],
    }
    print(f"machine: {machine()}")
    print(f"median wall time of {args.repeats} runs (fresh process each):")
    results = {}
    for name, argv in cases.items():
        results[name] = median_seconds(lambda argv=argv: _run(argv), repeats=args.repeats)
        print(f"  {name:<46} {results[name]:6.3f} s")
    help_s = results["lastwatt --help"]
    print(f"goal --help ≤ 0.5 s: {'met' if help_s <= 0.5 else 'NOT met'} ({help_s:.3f} s)")


if __name__ == "__main__":
    main()
