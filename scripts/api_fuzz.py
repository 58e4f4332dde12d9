"""Fuzz the running service's API from its own OpenAPI with schemathesis: no 5xx allowed.

Starts the service with a simulated container (the bundled default site, its gateways
on free loopback ports, accelerated time) and the HTTP API on a free 127.0.0.1 port,
then runs ``schemathesis run <url>/openapi.json --checks not_a_server_error`` twice:
anonymously and as the operator (HTTP Basic), so both the refusals and the handlers
behind them see generated input. Exit status: schemathesis's (0: no server error found).

Run ``python scripts/api_fuzz.py [--max-examples N] [-- SCHEMATHESIS OPTIONS]`` (``.ci/run``
does).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from lastwatt.api import ApiSettings
from lastwatt.auth import init_credentials, load_credentials
from lastwatt.guard import ApiLimits
from lastwatt.runtime import RunOptions, Runtime
from lastwatt.service import ServiceConfig
from microgrid import load_site
from microgrid.site import ConnectionKind

# Generous budgets: the run is about malformed input, not about being throttled (the
# limits themselves are tested in tests/service/test_api_security.py).
FUZZ_LIMITS = ApiLimits(
    per_client="100000/minute", per_user="100000/minute", failed_logins="100000/minute"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    """The service in a background thread with its own event loop."""

    def __init__(self, data_dir: Path) -> None:
        self.passwords = init_credentials(data_dir, {"amina": "H001"})
        site = load_site()
        gateways = {
            k: g.model_copy(update={"port": _free_port()}) for k, g in site.gateways.items()
        }
        site = site.model_copy(update={"gateways": gateways})
        options = RunOptions(
            port=_free_port(),
            simulate=True,
            speed=60.0,
            opening_credit_minor=dict.fromkeys(ConnectionKind, 2_000_000),
            api=ApiSettings(limits=FUZZ_LIMITS),
        )
        self.runtime = Runtime(
            site, ServiceConfig(data_dir=data_dir), load_credentials(data_dir), options
        )
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            await self.runtime.start()
            self.stop = asyncio.Event()
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            await self.runtime.run(None, self.stop)
            await self.runtime.stop()

        asyncio.run(main())

    def __enter__(self) -> _Service:
        self.thread.start()
        if not self.ready.wait(180):
            msg = "the service did not start within 180 s"
            raise RuntimeError(msg)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def main() -> int:
    """Start the service, fuzz it anonymously and as the operator; schemathesis's status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="per operation")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "extra", nargs="*", help="more schemathesis options, after --, e.g. --include-path-regex"
    )
    args = parser.parse_args()
    # The simulated container's Modbus chatter and skipped-job notices are not the point.
    logging.basicConfig(level=logging.ERROR)
    for name in ("pymodbus", "lastwatt", "controllers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with tempfile.TemporaryDirectory() as tmp, _Service(Path(tmp)) as service:
        url = f"{service.runtime.url.rstrip('/')}/openapi.json"
        status = 0
        for auth in ([], ["--auth", f"operator:{service.passwords['operator']}"]):
            command = [
                str(schemathesis),
                "run",
                url,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--workers",
                "1",
                "--request-timeout",
                "60",
                *auth,
                *args.extra,
            ]
            print("$", " ".join(c if "operator:" not in c else "operator:***" for c in command))
            # Run in the temporary folder: schemathesis leaves its cache there, not here.
            answer = subprocess.run(command, check=False, cwd=tmp)
            status = max(status, answer.returncode)
        return status


if __name__ == "__main__":
    sys.exit(main())
