"""The main job: a simulated day of the whole product on the bundled default site.

The simulated container (real Modbus TCP servers on free loopback ports) and the service
(jobs, ledger, API, dashboard) run in this process on one manual clock that the jobs
step: every control cycle reads 400 meters over Modbus and applies the plan, every
re-plan solves the tiered MILP from the measured state, every hour is settled, and the
day ends with a per-tier summary, a report and the dashboard's URL. Nothing to configure:
the data folder, credentials and opening credit are made fresh under the output folder.

Fast-forward settings: control every 5 simulated minutes, re-plan every 30 (the live
service: seconds and 15 min) — a day then takes about a minute on two cores; pass
``--replan-minutes 15`` for the live cadence (about twice the wall time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from forecasts.demand import demand_kw
from lastwatt.auth import init_credentials, load_credentials
from lastwatt.runtime import RunOptions, Runtime
from lastwatt.service import Service
from lastwatt.service_commands import opening_credit, service_config
from microgrid import Site, TimeGrid, load_site
from microgrid.units import COIN_SCALE
from settlement import Asset, CreditState

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger(__name__)

TIERS = ("priority", "household", "business")


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo produced."""

    summary: pd.DataFrame
    report: Path
    url: str
    wall_s: float
    ledger_ok: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _on_free_ports(site: Site) -> Site:
    gateways = {
        name: g.model_copy(update={"host": "127.0.0.1", "port": _free_port()})
        for name, g in site.gateways.items()
    }
    return site.model_copy(update={"gateways": gateways})


def tier_summary(service: Service, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Demand, metered delivery, unserved energy [kWh] and coins spent per tier."""
    site = service.site
    periods = int((end - start) / dt.timedelta(minutes=15))
    grid = TimeGrid(start=pd.Timestamp(start), periods=periods)
    demand = demand_kw(site, grid).sum() * grid.step_hours
    readings = service.store.readings(start, end)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for r in readings:
        first.setdefault(r.meter_id, r.import_wh)
        last[r.meter_id] = r.import_wh
    opening = service.store.balances(Asset.COIN, prefix="meter:")
    rows = {}
    for tier in TIERS:
        ids = [c.id for c in site.connections if c.kind.value == tier]
        delivered = sum((last.get(i, 0) - first.get(i, 0)) for i in ids) / 1000
        wanted = float(demand[ids].sum())
        off = sum(
            1
            for i in ids
            if (s := service.credit.get(i)) is not None and s.state is CreditState.DISCONNECTED
        )
        rows[tier] = {
            "connections": len(ids),
            "demand_kwh": wanted,
            "delivered_kwh": delivered,
            "served_pct": 100 * delivered / wanted if wanted else 100.0,
            "balance_coin": sum(opening.get((f"meter:{i}", Asset.COIN), 0) for i in ids)
            / COIN_SCALE,
            "without_credit": off,
        }
    return pd.DataFrame(rows).T


def _plot(samples: list[dict[str, Any]], path: Path, tz: str) -> None:
    frame = pd.DataFrame(samples)
    if frame.empty:
        return
    times = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(tz)
    loads = pd.DataFrame(list(frame["load_kw"]))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.stackplot(times, *(loads[t] for t in TIERS), labels=[f"load {t}" for t in TIERS], alpha=0.8)
    top.plot(times, frame["pv_kw"], color="green", label="PV")
    top.set_ylabel("kW")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(times, 100 * frame["soc_fraction"], color="black")
    bottom.set_ylabel("battery SoC [%]")
    bottom.set_xlabel(f"local time ({tz})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _report(
    service: Service,
    summary: pd.DataFrame,
    start: dt.datetime,
    end: dt.datetime,
    wall_s: float,
    out_dir: Path,
    url: str,
) -> Path:
    site = service.site
    tz = site.location.timezone
    samples = service.state.telemetry(start)
    pd.DataFrame(samples).to_csv(out_dir / "telemetry.csv", index=False)
    _plot(samples, out_dir / "day.png", tz)
    verify = service.store.verify()
    stats = service.state.job_stats()
    settled = service.state.get("settle_next_hour")
    lines = [
        f"# LastWatt demo — {site.name}, one simulated day",
        "",
        f"- simulated {pd.Timestamp(start).tz_convert(tz)} → {pd.Timestamp(end).tz_convert(tz)}"
        f" in {wall_s:.0f} s of wall time",
        f"- {len(site.connections)} connections over Modbus TCP, {site.pv.dc_capacity_kwp:g} kWp,"
        f" {site.battery.energy_capacity_kwh:g} kWh battery",
        f"- {service.state.schedule_count()} schedules applied; hours settled up to {settled}",
        f"- ledger: {'verifies' if verify.ok else 'FAILS verification'} ({verify.rows} journal "
        f"rows, {verify.batches} batches)",
        f"- dashboard (while serving): {url}",
        "",
        "## Energy per tier",
        "",
        "```\n" + summary.astype(float).round(2).to_string() + "\n```",
        "",
        "![the day](day.png)",
        "",
        "## Jobs",
        "",
        "| job | runs | failures | median [s] | max [s] |",
        "|---|---:|---:|---:|---:|",
    ]
    for job, s in stats.items():
        lines.append(
            f"| {job} | {s['runs']} | {s['failures']} | {s['median_s']:.3f} | {s['max_s']:.3f} |"
        )
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _demo(
    out_dir: Path,
    start_day: str,
    hours: float,
    seed: int,
    replan_minutes: int,
    keep_serving: bool,
    port: int,
) -> DemoResult:
    site = _on_free_ports(load_site(None))
    data_dir = out_dir / "demo-data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    households = [c.id for c in site.households]
    plain = init_credentials(data_dir, {"amina": households[0]})
    credentials = load_credentials(data_dir)
    start = (
        pd.Timestamp(start_day)
        .tz_localize(site.location.timezone)
        .tz_convert("UTC")
        .to_pydatetime()
    )
    config = service_config(data_dir, 300.0, replan_minutes, seed, device_timeout_s=900.0)
    options = RunOptions(
        port=port,
        simulate=True,
        sim_seed=seed,
        speed=0.0,
        start=start,
        opening_credit_minor=opening_credit(2.0),
    )
    runtime = Runtime(site, config, credentials, options)
    t0 = time.perf_counter()
    await runtime.start()
    print(
        f"simulated container: {site.name!r}, {len(site.connections)} meters on "
        + ", ".join(f"{n} {g.host}:{g.port}" for n, g in site.gateways.items())
    )
    print(f"service and dashboard: {runtime.url} (operator password {plain['operator']})")
    end = start + dt.timedelta(hours=hours)
    last_print = [time.perf_counter()]

    async def progress(when: dt.datetime) -> None:
        if time.perf_counter() - last_print[0] > 10:
            last_print[0] = time.perf_counter()
            local = pd.Timestamp(when).tz_convert(site.location.timezone)
            print(f"  … {local:%H:%M} local, {time.perf_counter() - t0:.0f} s", flush=True)

    assert runtime.runner is not None
    assert runtime.service is not None
    await runtime.runner.run_until(end, on_step=progress)
    wall = time.perf_counter() - t0
    service = runtime.service
    await service.settle_job(end)
    summary = tier_summary(service, start, end)
    report = _report(service, summary, start, end, wall, out_dir, runtime.url)
    ok = service.store.verify().ok
    try:
        if keep_serving:
            print(f"dashboard: {runtime.url} — serving the end of the day until Ctrl-C")
            await asyncio.Event().wait()
    finally:
        await runtime.stop()
    return DemoResult(summary, report, runtime.url, wall, ok)


def run_demo(
    out_dir: Path,
    start_day: str = "2026-08-01",
    hours: float = 24.0,
    seed: int = 0,
    replan_minutes: int = 30,
    keep_serving: bool = False,
    port: int = 0,
) -> DemoResult:
    """Run the main job (module docstring); print the summary; return what it made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(_demo(out_dir, start_day, hours, seed, replan_minutes, keep_serving, port))
    shown = result.summary[["demand_kwh", "delivered_kwh", "served_pct", "balance_coin"]]
    print(f"\nper tier over {hours:g} h (metered over Modbus, settled hourly):")
    print(shown.astype(float).round(1).to_string())
    print(f"ledger {'verifies' if result.ledger_ok else 'FAILS'}; wall time {result.wall_s:.0f} s")
    print(f"report: {result.report}")
    print(f"dashboard: {result.url} (pass --keep-serving to keep it up)")
    return result
