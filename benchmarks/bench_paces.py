"""Two paces at field timing: the default site's 400 meters on two simulated 9 600-baud
RS-485 buses, the inverters and relay board on the container's gateway, the simulated
container in its own process.

Prints, with the machine:

- the median meter sweep (both buses in parallel, every meter read once) against the
  wire-time floor of the busier bus (requests × RTU transaction time, controllers.rtu),
  and their ratio (target ≤ 1.2);
- the median and p99 fast-path time (inverters, battery, relay board: read, decide,
  write) while the sweeps run on in the background (target median ≤ 100 ms).

Run: python benchmarks/bench_paces.py [--repeats N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from controllers.control import Controller, ControllerSettings
from controllers.devices import meter_profile
from controllers.modbus import ModbusSettings
from controllers.registers import load_register_map
from controllers.rtu import RtuBus
from microgrid import Site, load_site

BAUD = 9_600
METER_BUSES = ("meters-a", "meters-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wire_floor_s(site: Site, bus: RtuBus) -> dict[str, float]:
    """Per meter bus: the wire time of reading every meter once [s]."""
    floor: dict[str, float] = {}
    for c in site.connections:
        profile = meter_profile(load_register_map(c.meter.register_map))
        for block in profile.blocks:
            code = 3 if block.table == "holding" else 1
            floor[c.meter.gateway] = floor.get(c.meter.gateway, 0.0) + bus.transaction_s(
                code, block.count
            )
    return floor


async def bench(site: Site, repeats: int, seconds: float) -> tuple[list[float], list[float]]:
    settings = ControllerSettings(
        modbus=ModbusSettings(timeout_s=1.0, retries=0), sweep_deadline_s=30.0
    )
    controller = Controller(site, settings)
    await controller.cycle()  # warm-up: connections, first writes, relays applied
    sweeps = []
    for _ in range(repeats):
        result = await controller.cycle()
        assert not result.faults, result.faults[:3]
        assert not result.bus_faults, result.bus_faults
        assert result.measured.meters_read == len(site.connections)
        sweeps.append(max(result.sweeps_s[b] for b in METER_BUSES))
    fast = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:  # the live loop: 1-s cycles, sweeps go on at their pace
        started = loop.time()
        result = await controller.cycle(wait_for_sweeps=False)
        assert not result.faults, result.faults[:3]
        fast.append(result.fast_path_s)
        await asyncio.sleep(max(1.0 - (loop.time() - started), 0.0))
    await controller.close()
    return sweeps, fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="full sweeps to time")
    parser.add_argument("--seconds", type=float, default=30.0, help="live-loop time [s]")
    args = parser.parse_args()
    site = load_site()
    ports = {name: free_port() for name in site.gateways}
    gateways = {n: g.model_copy(update={"port": ports[n]}) for n, g in site.gateways.items()}
    site = site.model_copy(update={"gateways": gateways})
    command = [
        sys.executable,
        "-c",
        "import sys; from lastwatt.cli import main; sys.exit(main())",
        "simulate-devices",
        "--start",
        "2026-03-20T12:00",
        *(arg for n, p in ports.items() for arg in ("--port", f"{n}={p}")),
        *(arg for b in METER_BUSES for arg in ("--rtu", f"{b}={BAUD}")),
    ]
    simulator = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert simulator.stdout is not None
        print(simulator.stdout.readline().strip())
        t0 = time.perf_counter()
        sweeps, fast = asyncio.run(bench(site, args.repeats, args.seconds))
        took = time.perf_counter() - t0
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    floor = max(wire_floor_s(site, RtuBus(BAUD)).values())
    sweep = statistics.median(sweeps)
    fast_sorted = sorted(fast)
    p99 = fast_sorted[min(len(fast_sorted) - 1, int(0.99 * len(fast_sorted)))]
    per_bus = {b: sum(c.meter.gateway == b for c in site.connections) for b in METER_BUSES}
    print(f"machine: {machine()} (shared: timings are noisy)")
    print(
        f"default site: {len(site.connections)} meters on {per_bus} at {BAUD} baud, "
        f"{args.repeats} sweeps, {len(fast)} live cycles, {took:.0f} s in all"
    )
    print(f"  wire-time floor (busier bus)  {floor:7.2f} s")
    print(f"  meter sweep, both buses       median {sweep:7.2f} s")
    print(f"  ratio sweep / floor           {sweep / floor:.3f}  (target ≤ 1.2)")
    print(
        f"  fast path                     median {statistics.median(fast) * 1000:6.1f} ms, "
        f"p99 {p99 * 1000:6.1f} ms  (target median ≤ 100 ms)"
    )


if __name__ == "__main__":
    main()
