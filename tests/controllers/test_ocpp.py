"""EV charging end to end: a simulated OCPP 1.6-J charge point against the central system,
over a real WebSocket on 127.0.0.1, paying from the vehicle's wallet on a real SQLite ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import websockets
from ocpp.v16 import call

from controllers.ocpp_central import CentralSystem
from controllers.ocpp_sim import connect_charge_point
from microgrid import load_site
from settlement import SqliteLedgerStore
from settlement.ev_charging import ev_account, session_price_per_kwh
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer
from settlement.orderbook import trade_cost

# 10:00 UTC is 11:00 in Niamey: the business tariff's day band (0.2 coin/kWh) + 0.02 fee.
NOON = datetime(2026, 8, 1, 10, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    with SqliteLedgerStore(tmp_path / "ledger.sqlite", synchronous="NORMAL") as s:
        yield s


def top_up(store, ev_id, amount):
    store.post(
        Batch(
            f"topup:{ev_id}",
            (Transfer(FIAT_BRIDGE, ev_account(ev_id), Asset.COIN, amount, "fiat.topup"),),
        )
    )


async def with_central(store, body):
    site = load_site(None)
    central = CentralSystem(site, store, clock=lambda: NOON)
    server = await central.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await body(central, f"ws://127.0.0.1:{port}/ocpp")
    finally:
        server.close()
        await server.wait_closed()


def test_a_session_is_metered_and_paid_from_the_vehicles_wallet(store):
    top_up(store, "EV01_moto_taxi", 5_000_000)

    async def body(central, url):
        async with connect_charge_point(url, "CP01") as cp:
            assert await cp.boot() == "Accepted"
            report = await cp.charge("EV01TAG", 3_250, NOON, samples=5)
            # The charger resends its stop (a lost answer): nothing is paid twice.
            await cp.stop(report.transaction_id, 1, NOON)
        return central, report

    central, report = asyncio.run(with_central(store, body))
    assert report.authorisation == "Accepted"
    site = load_site(None)
    price = session_price_per_kwh(site, site.chargers[0], NOON)
    assert price == 200_000 + 20_000
    cost = trade_cost(price, 3_250)
    assert store.balance("ev:EV01_moto_taxi") == 5_000_000 - cost
    assert store.balance("charger:CP01") == cost
    paid = central.paid[report.transaction_id]
    assert paid.session.energy_wh == 3_250
    assert paid.replayed is False
    # metered as it flowed: the start register and five MeterValues
    assert [s.register_wh for s in central.samples[report.transaction_id]] == [
        0, 650, 1300, 1950, 2600, 3250,
    ]  # fmt: skip
    assert store.verify().ok


def test_unknown_tags_and_empty_wallets_do_not_charge(store):
    top_up(store, "EV02_clinic_van", 1)  # cannot pay for the first kWh

    async def body(central, url):
        async with connect_charge_point(url, "CP01") as cp:
            return (
                await cp.charge("NOBODY", 1000, NOON),
                await cp.charge("EV02TAG", 1000, NOON),
            )

    unknown, broke = asyncio.run(with_central(store, body))
    assert unknown.authorisation == "Invalid"
    assert broke.authorisation == "Blocked"
    assert store.balance("ev:EV02_clinic_van") == 1
    assert store.keys_with_prefix("ev:") == []


def test_an_unknown_charge_point_is_refused_and_the_server_keeps_serving(store):
    top_up(store, "EV01_moto_taxi", 5_000_000)

    async def body(central, url):
        with pytest.raises(websockets.InvalidStatus):
            async with connect_charge_point(url, "ROGUE"):
                pass
        async with connect_charge_point(url, "CP01") as cp:
            return await cp.charge("EV01TAG", 500, NOON)

    report = asyncio.run(with_central(store, body))
    assert report.authorisation == "Accepted"
    assert store.balance("charger:CP01") == trade_cost(220_000, 500)


def test_a_market_charger_buys_from_neighbours_first_then_at_the_tariff(store):
    from microgrid import Site
    from settlement.ledger import WATT_ISSUER
    from settlement.market import Market
    from settlement.orderbook import PlaceOrder, Side

    site = load_site(None)
    charger = site.chargers[0].model_copy(update={"purchase": "market"})
    site = Site.model_validate(site.model_copy(update={"chargers": (charger,)}).model_dump())
    top_up(store, "EV01_moto_taxi", 5_000_000)
    store.post(
        Batch("mint", (Transfer(WATT_ISSUER, "user:amina", Asset.WATT, 5_000, "watt.mint"),))
    )
    market = Market(store)
    # amina offers 2 kWh below the tariff (0.2 coin/kWh at 11:00); bako's ask is above it
    market.submit(PlaceOrder("user:amina", Side.SELL, 150_000, 2_000, 0))
    market.submit(PlaceOrder("user:bako", Side.SELL, 250_000, 9_000, 0))

    async def body():
        central = CentralSystem(site, store, clock=lambda: NOON, market=market)
        server = await central.serve("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with connect_charge_point(f"ws://127.0.0.1:{port}/ocpp", "CP01") as cp:
                report = await cp.charge("EV01TAG", 3_250, NOON)
            return central.paid[report.transaction_id]
        finally:
            server.close()
            await server.wait_closed()

    paid = asyncio.run(body())
    assert paid.bought_wh == 2_000
    to_amina = trade_cost(150_000, 2_000)  # 300 000
    to_charger = trade_cost(200_000, 1_250) + trade_cost(20_000, 3_250)  # tariff rest + fee
    assert paid.cost == to_charger
    assert store.balance("user:amina") == to_amina
    assert store.balance("charger:CP01") == to_charger
    assert store.balance("ev:EV01_moto_taxi") == 5_000_000 - to_amina - to_charger
    assert store.balance("ev:EV01_moto_taxi", Asset.WATT) == 0  # burned: it went into the car
    assert store.balance(WATT_ISSUER, Asset.WATT) == -3_000
    assert [o.owner for o in market.book.orders()] == ["user:bako"]  # the rest was cancelled
    assert store.verify().ok


def test_a_misbehaving_charger_never_stops_the_central_system(store):
    top_up(store, "EV01_moto_taxi", 5_000_000)

    async def body(central, url):
        async with connect_charge_point(url, "CP01") as cp:
            await cp._connection.send("{not ocpp")  # garbage: logged, ignored
            await cp.stop(999, 1, NOON)  # a transaction that never started
            # a register that runs backwards: nothing is charged, the session stays open
            started = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag="EV01TAG", meter_start=5_000, timestamp=NOON.isoformat()
                )
            )
            cp.register_wh[1] = 100
            await cp.stop(started.transaction_id, 1, NOON)
            # and the next session goes through
            good = await cp.charge("EV01TAG", 2_000, NOON)
        return central, started.transaction_id, good

    central, backwards, good = asyncio.run(with_central(store, body))
    assert backwards in central.running  # left for an operator to look at
    assert central.paid[good.transaction_id].session.energy_wh == 2_000
    assert store.balance("charger:CP01") == trade_cost(220_000, 2_000)
