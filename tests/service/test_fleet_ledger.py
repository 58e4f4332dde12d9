"""Two sites' services on one PostgreSQL ledger, interleaved in one event loop and as two
`lastwatt serve` processes: each settles its own hours, over Modbus."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
import tomli_w

from lastwatt.cli import main
from microgrid.site import ConnectionKind
from settlement.postgres_store import PostgresLedgerStore
from tests.postgres import new_site_id, postgres_database
from tests.service.conftest import Rig, service_site

COIN = 1_000_000
OPENING = {
    ConnectionKind.HOUSEHOLD: 5 * COIN,
    ConnectionKind.BUSINESS: 20 * COIN,
    ConnectionKind.PRIORITY: 10 * COIN,
}


@pytest.fixture(scope="module")
def pg_conninfo():
    yield from postgres_database()


@pytest.mark.slow  # two services with their simulated containers, three hours each
def test_two_services_share_one_postgres_ledger_site_by_site(tmp_path, pg_conninfo):
    sites = {new_site_id("north"): tmp_path / "north", new_site_id("south"): tmp_path / "south"}

    async def run_both() -> None:
        rigs = [
            Rig(data, service_site(), opening=OPENING, ledger_url=pg_conninfo, ledger_site=site)
            for site, data in sites.items()
        ]
        async with rigs[0], rigs[1]:
            assert all(isinstance(r.service.store, PostgresLedgerStore) for r in rigs)
            await asyncio.gather(*(r.run_for(3) for r in rigs))

    asyncio.run(run_both())
    for site in sites:
        with PostgresLedgerStore(pg_conninfo, site) as ledger:
            report = ledger.verify()
            assert report.ok, report.problems[:3]
            settled = ledger.keys_with_prefix("settle:")
            assert len(settled) >= 2, settled  # hours settled by this site's own service
            assert len(set(settled)) == len(settled)
            assert ledger.balances(prefix="meter:")  # its opening credit and charges
    assert not (tmp_path / "north" / "ledger.sqlite").exists()  # nothing fell back to SQLite


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_with_an_unreachable_or_bad_ledger_is_a_usage_error(tmp_path, capsys):
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(service_site().model_dump(mode="json", exclude_none=True)))
    base = ["serve", "--site", str(site_file), "--data-dir", str(tmp_path / "data")]
    base += ["--simulate", "--speed", "0", "--hours", "0.1", "--port", "0"]
    nowhere = f"host=127.0.0.1 port={_free_port()} dbname=x user=x connect_timeout=2"
    assert main([*base, "--ledger-url", nowhere, "--ledger-site", "north"]) == 2
    assert "cannot open the PostgreSQL ledger" in capsys.readouterr().err
    assert main([*base, "--ledger-url", nowhere, "--ledger-site", "North Site"]) == 2
    assert "--ledger-site: site id 'North Site'" in capsys.readouterr().err


@pytest.mark.slow  # two `lastwatt serve` processes with their simulated containers, 3 h each
def test_two_serve_processes_write_one_postgres_database_concurrently(tmp_path, pg_conninfo):
    """Two real services (separate OS processes, as a fleet runs them) write to one
    PostgreSQL database at once: each site's ledger verifies, every settled hour is
    there once, and neither service fell back to SQLite."""
    site_file = tmp_path / "site.toml"
    site_file.write_text(tomli_w.dumps(service_site().model_dump(mode="json", exclude_none=True)))
    sites = {new_site_id("east"): tmp_path / "east", new_site_id("west"): tmp_path / "west"}
    serve = [sys.executable, "-m", "lastwatt", "serve", "--site", str(site_file)]
    serve += ["--simulate", "--sim-port", "*=0", "--speed", "0", "--port", "0"]
    serve += ["--start", "2026-08-01T09:00", "--hours", "3", "--opening-credit", "5"]
    services = []
    try:
        for site, data in sites.items():
            with (tmp_path / f"{site}.log").open("w") as log:  # the child keeps its own copy
                command = [*serve, "--data-dir", str(data), "--ledger-url", pg_conninfo]
                services.append(
                    subprocess.Popen(
                        [*command, "--ledger-site", site], stdout=subprocess.DEVNULL, stderr=log
                    )
                )
        codes = [service.wait(timeout=900) for service in services]
    finally:
        for service in services:
            service.kill()
            service.wait()
    logs = {site: (tmp_path / f"{site}.log").read_text()[-2000:] for site in sites}
    assert codes == [0, 0], logs
    for site, data in sites.items():
        with PostgresLedgerStore(pg_conninfo, site) as ledger:
            report = ledger.verify()
            assert report.ok, report.problems[:3]
            settled = ledger.keys_with_prefix("settle:")
            assert len(settled) >= 2, (settled, logs[site])
            assert len(set(settled)) == len(settled)
            assert ledger.balances(prefix="meter:")
        assert not (data / "ledger.sqlite").exists()
