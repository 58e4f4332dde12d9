"""What the issue-16 hardening costs and saves: login timing, oversized bodies, verification.

1. Login cost for an unknown user vs a known user with a wrong password
   (:meth:`lastwatt.auth.Credentials.check`): medians and their ratio — ≈ 1 means the
   timing does not tell whether a user exists.
2. A 200 MB POST to the running service (``lastwatt serve`` with the simulated container,
   separate processes on loopback), with and without ``Content-Length``: time to the
   answer and the service's resident memory before and after.
3. Ledger verification of a journal of ``--rows`` rows: full, and incremental after one
   more batch (:class:`settlement.ledger.VerifiedPoint`).

Run: python benchmarks/bench_api_security.py [--rows 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, median_seconds
from bench_api import start

from lastwatt.auth import Credentials, Role, User, hash_password
from microgrid import load_site
from settlement import SqliteLedgerStore
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def login_timing(repeats: int) -> None:
    credentials = Credentials({"amina": (User("amina", Role.RESIDENT), hash_password("r"))}, b"")
    unknown = median_seconds(lambda: credentials.check("nobody", "guess"), repeats * 3)
    known = median_seconds(lambda: credentials.check("amina", "guess"), repeats * 3)
    print(
        f"login, unknown user       median {1000 * unknown:6.1f} ms\n"
        f"login, known, wrong pass  median {1000 * known:6.1f} ms   "
        f"ratio unknown/known {unknown / known:.2f}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def big_posts(size_mb: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_sec_"))
    # The default site with its gateways on free ports (other simulators may be running).
    site = load_site()
    gateways = {k: g.model_copy(update={"port": _free_port()}) for k, g in site.gateways.items()}
    site_file = work / "site.toml"
    document = site.model_copy(update={"gateways": gateways}).model_dump(
        mode="json", exclude_none=True
    )
    site_file.write_text(tomli_w.dumps(document))
    sim, _ = start(["simulate-devices", "--site", str(site_file)], work / "sim.log", "simulating")
    service = None
    try:
        service, match = start(
            [
                "serve",
                "--site",
                str(site_file),
                "--data-dir",
                str(work / "data"),
                "--port",
                "0",
                "--log-level",
                "WARNING",
            ],
            work / "service.log",
            r"dashboard (http://\S+/)",
        )
        url = match.group(1)
        time.sleep(5)
        chunk = b"x" * (1 << 20)

        def body():
            for _ in range(size_mb):
                yield chunk

        for label, headers in (
            ("with Content-Length", {"content-length": str(size_mb << 20)}),
            ("chunked", {}),
        ):
            before = rss_mib(service.pid)
            t0 = time.perf_counter()
            try:
                answer = httpx.post(
                    f"{url}api/webhooks/fiat", content=body(), headers=headers, timeout=120
                )
                status = str(answer.status_code)
            except httpx.HTTPError as exc:  # the server may close before the upload ends
                status = f"closed ({type(exc).__name__})"
            elapsed = time.perf_counter() - t0
            time.sleep(1)
            print(
                f"{size_mb} MB POST {label:<20} answer {status:<10} in {elapsed:6.2f} s, "
                f"service RSS {before:6.0f} → {rss_mib(service.pid):6.0f} MiB"
            )
    finally:
        for proc in (service, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def verification(rows: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteLedgerStore(Path(tmp) / "l.sqlite", synchronous="NORMAL")
        per_batch = 1000
        for b in range(rows // per_batch):
            transfers = tuple(
                Transfer(FIAT_BRIDGE, f"user:u{k % 400}", Asset.COIN, 1 + k, "fiat.topup")
                for k in range(per_batch)
            )
            store.post(Batch(f"b{b}", transfers))
        point = store.verify().point
        assert point is not None
        store.post(Batch("last", (Transfer(FIAT_BRIDGE, "user:u0", Asset.COIN, 5, "fiat.topup"),)))
        full = [median_seconds(store.verify, 1, 0) for _ in range(repeats)]
        incremental = [median_seconds(lambda: store.verify(point), 1, 0) for _ in range(repeats)]
        store.close()
    f, i = statistics.median(full), statistics.median(incremental)
    print(
        f"verify {rows} rows: full median {f:6.2f} s, incremental (1 new batch) "
        f"{1000 * i:6.1f} ms, {f / i:5.0f}× faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--post-mb", type=int, default=200)
    args = parser.parse_args()
    print(machine())
    login_timing(args.repeats)
    verification(args.rows, args.repeats)
    big_posts(args.post_mb)


if __name__ == "__main__":
    main()
