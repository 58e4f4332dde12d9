"""The service's live market: the ``market`` job on the service's clock, Bmax on buyers, EVs
charging over OCPP against the running service."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import httpx
import pytest

from controllers.ocpp_sim import connect_charge_point
from controllers.simulator import AcceleratedClock
from lastwatt.api import create_app
from lastwatt.auth import init_credentials, load_credentials
from lastwatt.jobs import MARKET_JOB_ID, LiveRunner, SimulatedRunner, market_job
from lastwatt.service import Service
from microgrid import Site, load_site
from settlement.ev_charging import ev_account, session_price_per_kwh
from settlement.ledger import FIAT_BRIDGE, WATT_ISSUER, Asset, Batch, Transfer
from settlement.orderbook import trade_cost
from tests.service.conftest import MORNING, Rig, config, service_site

AMINA_SELLS = {"side": "sell", "price_per_kwh_minor": 300_000, "quantity_wh": 5_000}
BALA_BIDS = {"side": "buy", "price_per_kwh_minor": 400_000, "quantity_wh": 10_000}
TOPUP = "fiat.topup"


def _post(store, key, *transfers):
    store.post(Batch(f"test:{key}", transfers))


def _service(tmp_path, clock, **overrides):
    site = service_site()
    households = [c.id for c in site.households]
    plain = init_credentials(tmp_path, {"amina": households[0], "bala": households[1]})
    service = Service(site, config(tmp_path, **overrides), clock)
    return service, load_credentials(tmp_path), plain


async def _client(service, credentials):
    app = create_app(service, credentials)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")


# --- the market job ---------------------------------------------------------------------------


def _tick_scenario(tmp_path, market_tick_s, fail_first=False):
    """A ZI agent whose user receives WATT between API calls, on an accelerated clock."""
    clock = AcceleratedClock(MORNING, speed=600.0)
    service, credentials, plain = _service(tmp_path, clock, market_tick_s=market_tick_s)
    store = service.store
    _post(store, "coins", Transfer(FIAT_BRIDGE, "user:bala", Asset.COIN, 5_000_000, "fiat.topup"))

    async def scenario():
        async with await _client(service, credentials) as client:
            amina, bala = ("amina", plain["amina"]), ("bala", plain["bala"])
            agent = {
                "buy_price_per_kwh_minor": 100_000,
                "sell_price_per_kwh_minor": 300_000,
                "low_wh": 0,
                "high_wh": 1_000,
            }
            assert (await client.put("/api/market/agents/amina", json=agent, auth=amina)).is_success
            bid = await client.post("/api/market/orders", json=BALA_BIDS, auth=bala)
            assert bid.json()["trades"] == []  # amina holds nothing yet: her agent is quiet
            stale = {"side": "buy", "price_per_kwh_minor": 1, "quantity_wh": 9, "expires_in_s": 60}
            await client.post("/api/market/orders", json=stale, auth=bala)
        # Storage settlement credits amina 3 kWh of WATT: no API call follows.
        _post(store, "watt", Transfer(WATT_ISSUER, "user:amina", Asset.WATT, 3_000, "watt.mint"))
        jobs = [j for j in service.jobs() if j.id == MARKET_JOB_ID]
        if fail_first:
            calls = {"n": 0}
            tick = service.market.tick

            def flaky():
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("ledger busy")
                return tick()

            service.market.tick = flaky
        if jobs:
            runner = SimulatedRunner(jobs, clock, clock.speed, record=service.state)
            await runner.run_until(clock.now() + dt.timedelta(minutes=3))
        else:
            await asyncio.sleep(180 / clock.speed)
        return service

    service = asyncio.run(scenario())
    try:
        return (
            store.balance("user:amina", Asset.WATT),
            [o.owner for o in service.market.market.book.orders()],
            service.state.job_stats().get(MARKET_JOB_ID),
        )
    finally:
        service.store.close()
        service.state.close()


def test_the_market_job_lets_agents_trade_and_expires_orders_on_the_service_clock(tmp_path):
    watt, owners, stats = _tick_scenario(tmp_path, market_tick_s=60.0)
    # The agent offered 3 000 − 500 Wh (down to the middle of its thresholds) at a tick.
    assert watt == 500
    # The stale bid expired at a tick; bala's big bid rests with what is left of it.
    assert owners == ["user:bala"]
    assert stats["runs"] >= 2
    assert stats["failures"] == 0


def test_a_failing_tick_is_logged_and_the_next_one_runs(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="lastwatt.jobs"):
        watt, _owners, stats = _tick_scenario(tmp_path, market_tick_s=60.0, fail_first=True)
    assert stats["failures"] == 1
    assert "ledger busy" in stats["last_error"]
    assert watt == 500  # the next tick did the work
    assert "job market" in caplog.text


def test_without_a_tick_the_book_waits_for_the_next_api_call(tmp_path):
    watt, owners, stats = _tick_scenario(tmp_path, market_tick_s=None)
    assert watt == 3_000
    assert stats is None
    assert len(owners) == 2


def test_the_market_job_is_an_apscheduler_job_that_never_overlaps_itself():
    async def tick(due):
        return None

    job = market_job(tick, dt.timedelta(seconds=30))
    runner = LiveRunner([job], AcceleratedClock(MORNING, 1.0))
    scheduled = runner.scheduler.get_job(MARKET_JOB_ID)
    assert (scheduled.coalesce, scheduled.max_instances) == (True, 1)
    assert scheduled.trigger.interval == dt.timedelta(seconds=30)
    with pytest.raises(ValueError, match="positive"):
        market_job(tick, dt.timedelta(0))


# --- Bmax on the live book ----------------------------------------------------------------------


def _bmax_scenario(tmp_path, bmax_wh):
    clock = AcceleratedClock(MORNING, speed=1.0)
    service, credentials, plain = _service(tmp_path, clock, storage_bmax_wh=bmax_wh)
    store = service.store
    _post(
        store,
        "funds",
        Transfer(WATT_ISSUER, "user:amina", Asset.WATT, 5_000, "watt.mint"),
        Transfer(WATT_ISSUER, "user:bala", Asset.WATT, 1_000, "watt.mint"),
        Transfer(FIAT_BRIDGE, "user:bala", Asset.COIN, 5_000_000, "fiat.topup"),
    )

    async def scenario():
        async with await _client(service, credentials) as client:
            amina, bala = ("amina", plain["amina"]), ("bala", plain["bala"])
            await client.post("/api/market/orders", json=AMINA_SELLS, auth=amina)
            bid = await client.post("/api/market/orders", json=BALA_BIDS, auth=bala)
            book = await client.get("/api/market/book")
            return bid.json(), book.json()

    try:
        bid, book = asyncio.run(scenario())
        return bid, book, store.balance("user:bala", Asset.WATT), store.verify().ok
    finally:
        store.close()
        service.state.close()


def test_a_buyer_fills_no_more_than_its_headroom_under_the_services_bmax(tmp_path):
    bid, book, watt, verified = _bmax_scenario(tmp_path, bmax_wh=3_000)
    assert sum(t["quantity_wh"] for t in bid["trades"]) == 2_000  # 3 000 cap − 1 000 held
    assert watt == 3_000
    assert verified
    # Bala's bid keeps its place for the 8 000 Wh left, none of it executable now.
    bids = [lv for lv in book["levels"] if lv["side"] == "buy"]
    assert (bids[0]["listed_wh"], bids[0]["executable_wh"]) == (8_000, 0)
    assert book["best_executable_bid"] is None


def test_without_bmax_the_buyer_takes_every_offer(tmp_path):
    bid, _book, watt, _ = _bmax_scenario(tmp_path, bmax_wh=None)
    assert sum(t["quantity_wh"] for t in bid["trades"]) == 5_000
    assert watt == 6_000


# --- EV charging against the running service ----------------------------------------------------


def test_serve_starts_the_ocpp_central_system_and_an_ev_pays_from_its_wallet(tmp_path):
    default = load_site(None)
    # The small service site with the default site's charger and vehicles.
    site = Site.model_validate(
        service_site()
        .model_copy(
            update={"chargers": default.chargers, "electric_vehicles": default.electric_vehicles}
        )
        .model_dump()
    )
    noon = dt.datetime(2026, 8, 1, 10, tzinfo=dt.UTC)  # 11:00 in Niamey: the day band

    async def scenario():
        async with Rig(tmp_path, site=site, start=noon, ocpp_port=0) as rig:
            store = rig.service.store
            _post(
                store,
                "ev",
                Transfer(
                    FIAT_BRIDGE, ev_account("EV01_moto_taxi"), Asset.COIN, 5_000_000, "fiat.topup"
                ),
            )
            server = rig.service._ocpp_server
            assert server is not None, "the service did not start the chargers' central system"
            port = server.sockets[0].getsockname()[1]
            async with connect_charge_point(f"ws://127.0.0.1:{port}/ocpp", "CP01") as cp:
                assert await cp.boot() == "Accepted"
                report = await cp.charge("EV01TAG", 2_000, noon, samples=4)
            central = rig.service.ocpp
            paid = central.paid[report.transaction_id]
            samples = [s.register_wh for s in central.samples[report.transaction_id]]
            balances = (store.balance(ev_account("EV01_moto_taxi")), store.balance("charger:CP01"))
            return report, paid, samples, balances, store.verify().ok, server

    report, paid, samples, balances, verified, server = asyncio.run(scenario())
    assert report.authorisation == "Accepted"
    assert paid.session.energy_wh == 2_000
    assert samples == [0, 500, 1_000, 1_500, 2_000]  # metered as it flowed
    cost = trade_cost(session_price_per_kwh(site, site.chargers[0], noon), 2_000)
    assert balances == (5_000_000 - cost, cost)
    assert verified
    assert not server.sockets or all(s.fileno() == -1 for s in server.sockets)  # stopped


def test_serve_refuses_a_bad_ocpp_port_or_tick_before_writing_anything(tmp_path, capsys):
    from lastwatt.cli import main

    assert main(["serve", "--data-dir", str(tmp_path), "--ocpp-port", "70000"]) == 2
    assert "--ocpp-port 70000 is not a TCP port" in capsys.readouterr().err
    assert main(["serve", "--data-dir", str(tmp_path), "--market-tick-s", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--market-tick-s must be ≥ 0" in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())
