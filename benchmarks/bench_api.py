"""API latency under 50 concurrent clients, and the service's CPU share while idle.

The simulated container (``lastwatt simulate-devices``) and the service (``lastwatt
serve``, live: APScheduler, a control cycle every 5 s over 400 meters) run as separate
processes on the bundled default site. Then:

- 50 concurrent clients (httpx) fetch ``/api/schedule`` and ``/api/connections`` (the
  public noticeboard: balances need credentials since issue 16) in turn; median and p99
  latency per endpoint. The per-client rate limit is raised for the run (all clients
  share one address here);
- with no client, the service's CPU time over a window (from /proc), as a share of one core.

Run: python benchmarks/bench_api.py [--clients 50] [--requests 20] [--idle-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

LASTWATT = [sys.executable, "-m", "lastwatt.cli"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(args: list[str], log: Path, pattern: str) -> tuple[subprocess.Popen, re.Match]:
    with log.open("w") as out:
        proc = subprocess.Popen([*LASTWATT, *args], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        match = re.search(pattern, log.read_text())
        if match:
            return proc, match
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{args[0]} did not start:\n{log.read_text()}")


async def load(url: str, path: str, clients: int, requests: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            for _ in range(requests):
                t0 = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client and endpoint")
    parser.add_argument("--idle-s", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_api_"))
    sim, _ = start(["simulate-devices"], work / "sim.log", r"simulating")
    service = None
    try:
        service, match = start(
            [
                "serve",
                "--data-dir",
                str(work / "data"),
                "--port",
                "0",
                "--opening-credit",
                "2",
                "--log-level",
                "WARNING",
                "--rate-limit",
                "1000000/minute",
            ],
            work / "service.log",
            r"dashboard (http://\S+/)",
        )
        url = match.group(1)
        time.sleep(5)  # first plan in force, a cycle or two done
        print(machine())
        print(
            f"service pid {service.pid}, {args.clients} concurrent clients, "
            f"{args.requests} requests each per endpoint"
        )
        for path in ("/api/schedule", "/api/connections"):
            asyncio.run(load(url, path, 5, 2))  # warm-up
            t0 = time.perf_counter()
            lat = asyncio.run(load(url, path, args.clients, args.requests))
            wall = time.perf_counter() - t0
            print(
                f"{path:<32} median {1000 * statistics.median(lat):7.1f} ms  "
                f"p99 {1000 * quantile(lat, 0.99):7.1f} ms  {len(lat) / wall:6.0f} req/s"
            )
        c0, t0 = cpu_seconds(service.pid), time.monotonic()
        time.sleep(args.idle_s)
        share = (cpu_seconds(service.pid) - c0) / (time.monotonic() - t0)
        print(
            f"idle service CPU: {100 * share:.1f} % of one core over {args.idle_s:g} s "
            "(control cycle every 5 s over 400 meters, jobs on schedule)"
        )
    finally:
        for proc in (service, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
