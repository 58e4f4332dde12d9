"""The service's one order book: its market, ZI agents, tick and the chargers' central system.

Wiring only. :class:`LiveMarket` holds what the API, the ``market`` job and the OCPP central
system share — the :class:`~settlement.market.Market` on the service's ledger (Bmax of every
user's wallet from the storage cap) and the users' ZI agents — so that there is one book and
one trade numbering. :meth:`LiveMarket.tick` is the job: expire orders, retry crossed orders
whose owners hold more now, let the agents post, and settle what matches.

:func:`start_central_system` puts the site's chargers on the air (OCPP 1.6-J) with the same
book, so a ``purchase = "market"`` charger buys from the residents' offers.

Open orders and the latest trades survive a restart in ``<data-dir>/market.json``, the agents'
settings in ``<data-dir>/market_agents.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

from websockets.asyncio.server import Server

from controllers.ocpp_central import CentralSystem
from microgrid import Site
from settlement.agents import ZiSettings, zi_orders
from settlement.alarms import Alarm, AlarmKind
from settlement.market import Market
from settlement.orderbook import Action, ActionOutcome, Tick, Trade
from settlement.store import LedgerStore

__all__ = ["LiveMarket", "start_central_system"]

log = logging.getLogger(__name__)


class LiveMarket:
    """The service's order book and ZI agents (module docstring).

    Parameters
    ----------
    store : LedgerStore
        The ledger trades settle on.
    clock : callable
        Service time now (aware).
    data_dir : Path
        Where the book's snapshot and the agents' settings live.
    bmax_wh : int or None
        Cap on every user's WATT wallet [Wh] (the service's storage Bmax); a buyer's
        fillable quantity is limited by its headroom under it. None: uncapped.
    """

    def __init__(
        self,
        store: LedgerStore,
        clock: Callable[[], dt.datetime],
        data_dir: Path,
        bmax_wh: int | None = None,
    ) -> None:
        self.clock = clock
        self.market = Market(store, snapshot_path=data_dir / "market.json", bmax_wh=bmax_wh)
        self.agents_path = data_dir / "market_agents.json"
        self.agents: dict[str, ZiSettings] = _read_agents(self.agents_path)

    def now_us(self) -> int:
        """Service time in µs, never before the book's latest action."""
        return self.market.now_us(self.clock())

    def submit(self, action: Action) -> ActionOutcome:
        """Apply one action to the book (its trades settle on the ledger)."""
        return self.market.submit(action)

    def set_agent(self, settings: ZiSettings) -> None:
        """Set (or replace) a user's ZI agent; persisted at once."""
        self.agents[settings.owner] = settings
        _write_agents(self.agents_path, self.agents)

    def run_agents(self) -> list[Trade]:
        """Let every agent post what its thresholds ask for now; the trades made."""
        trades: list[Trade] = []
        for settings in list(self.agents.values()):
            balance = self.market.holdings.watt_wh(settings.owner)
            now = self.now_us()
            open_orders = self.market.book.orders(settings.owner, now)
            for action in zi_orders(settings, balance, open_orders, now):
                trades.extend(self.submit(action).trades)
        return trades

    def tick(self) -> list[Trade]:
        """Expire orders, retry crossed ones, let agents act; the trades made."""
        if not self.agents and not self.market.book.orders():
            return []  # an idle book: no action, no snapshot rewritten (an fsync a tick)
        outcome = self.submit(Tick(self.now_us()))
        return [*outcome.trades, *self.run_agents()]

    async def tick_job(self, due: dt.datetime) -> None:
        """The ``market`` job (:func:`lastwatt.jobs.market_job`)."""
        trades = self.tick()
        if trades:
            log.info("market tick due %s: %d trades", due.isoformat(), len(trades))


def _read_agents(path: Path) -> dict[str, ZiSettings]:
    if not path.exists():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8"))
    return {row["owner"]: ZiSettings(**row) for row in rows}


def _write_agents(path: Path, agents: Mapping[str, ZiSettings]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump([asdict(s) for s in agents.values()], handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)  # atomic: a crash leaves the old settings or the new ones


async def start_central_system(
    site: Site,
    store: LedgerStore,
    clock: Callable[[], dt.datetime],
    market: LiveMarket | None,
    host: str,
    port: int,
) -> tuple[CentralSystem, Server] | None:
    """Start the OCPP 1.6-J central system of the site's chargers on ``host:port``.

    Returns
    -------
    (CentralSystem, websockets Server) or None
        Close the server (``close()``, ``await wait_closed()``) to stop it. None if it
        cannot listen: that is logged and raised as a ``device_fault`` alarm on ``ocpp``,
        and the service runs on without its chargers — a taken port must not keep the
        grid's control down.
    """
    central = CentralSystem(site, store, clock, None if market is None else market.market)
    try:
        server = await central.serve(host, port)
    except OSError as exc:
        message = (
            f"the chargers' OCPP central system cannot listen on {host}:{port} ({exc}); "
            "is another service running? set another port (lastwatt serve --ocpp-port)"
        )
        log.error("%s", message)
        store.add_alarms([Alarm(AlarmKind.DEVICE_FAULT, "ocpp", clock(), message)])
        return None
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    ids = ", ".join(c.id for c in site.chargers)
    log.info("OCPP 1.6-J central system on ws://%s:%d/ocpp/<id> (%s)", host, bound, ids)
    return central, server
