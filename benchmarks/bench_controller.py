"""Control-cycle timing: the default site (400 meters on two gateways, inverter, battery,
relay board) against the simulated container running in its own process, on loopback.

Prints the median of a full control cycle (read everything, decide, write what differs)
and the median of plain pymodbus reading the same register blocks in the same run, and
their ratio.

Run: python benchmarks/bench_controller.py [--repeats N] [--connections K]
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
from pymodbus.client import AsyncModbusTcpClient

from controllers.control import Controller, ControllerSettings
from controllers.modbus import ModbusSettings
from microgrid import load_site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def plain_read(site, connections: int) -> float:
    """Plain pymodbus: the same blocks, the same number of connections per gateway."""
    by_gateway: dict[str, list[tuple[int, int, int, str]]] = {}
    dev = [(site.pv_inverter, 40016, 40), (site.battery_inverter, 40016, 40)]
    for device, address, count in dev:
        by_gateway.setdefault(device.gateway, []).append((device.unit_id, address, count, "h"))
    for c in site.connections:
        by_gateway.setdefault(c.meter.gateway, []).append((c.meter.unit_id, 0, 6, "h"))
    clients = {}
    for name in by_gateway:
        g = site.gateways[name]
        clients[name] = [AsyncModbusTcpClient(g.host, port=g.port) for _ in range(connections)]
        for client in clients[name]:
            await client.connect()

    async def worker(client, items):
        for unit, address, count, _ in items:
            await client.read_holding_registers(address, count=count, device_id=unit)

    start = time.perf_counter()
    await asyncio.gather(
        *(
            worker(client, items[k::connections])
            for name, items in by_gateway.items()
            for k, client in enumerate(clients[name])
        )
    )
    elapsed = time.perf_counter() - start
    for pool in clients.values():
        for client in pool:
            client.close()
    return elapsed


async def bench(site, repeats: int, connections: int) -> tuple[list[float], list[float]]:
    settings = ControllerSettings(modbus=ModbusSettings(connections_per_gateway=connections))
    controller = Controller(site, settings)
    await controller.cycle()  # warm-up: connections, first writes
    cycles, plain = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = await controller.cycle()
        cycles.append(time.perf_counter() - start)
        assert not result.faults, result.faults[:3]
        assert result.measured.meters_read == 400
        plain.append(await plain_read(site, connections))
    await controller.close()
    return cycles, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--connections", type=int, default=1, help="connections per gateway")
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
        "--speed",
        "1",
        "--start",
        "2026-03-20T12:00",
        *(arg for n, p in ports.items() for arg in ("--port", f"{n}={p}")),
    ]
    simulator = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert simulator.stdout is not None
        print(simulator.stdout.readline().strip())
        cycles, plain = asyncio.run(bench(site, args.repeats, args.connections))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    cycle, reads = statistics.median(cycles), statistics.median(plain)
    print(f"machine: {machine()}")
    print(
        f"default site: 400 meters on 2 gateways + inverter, battery, relay board; "
        f"{args.connections} connection(s) per gateway, {args.repeats} runs"
    )
    print(f"  full control cycle          median {cycle * 1000:7.1f} ms  (target ≤ 250 ms)")
    print(f"  plain pymodbus, same blocks median {reads * 1000:7.1f} ms")
    print(f"  ratio cycle / plain         {cycle / reads:.2f}  (target ≤ 3)")


if __name__ == "__main__":
    main()
