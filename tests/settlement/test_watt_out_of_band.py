"""WATT moved outside settlement (market trades, EV discharge) and the re-settled hours.

The bug: :func:`~settlement.settle.watt_balances_before` took the store's *current* WATT
balances minus what settlement moved in the hour and later, so WATT a holder sold on the
market after the hour was settled counted as missing before it. Re-settling an
incomplete hour (the settle job's retry) then planned it from negative balances and
failed every retry with ``storage energies and balances must be ≥ 0``.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid import Site
from settlement import SqliteLedgerStore
from settlement.alarms import AlarmKind
from settlement.ledger import Asset, Batch, Transfer
from settlement.settle import (
    BATTERY_METER,
    SettlementConfig,
    WattBalanceError,
    record_readings,
    settle_hour,
    settlement_key,
    storage_policy_for,
    watt_balances_before,
)
from settlement.storage import EDUCATION_FUND, STORAGE_PRODUCER
from tests.settlement.conftest import HOUR
from tests.settlement.test_storage import _day_readings, seed_002_site

H = timedelta(hours=1)
BUYER = "user:buyer"


def _sell(store: SqliteLedgerStore, seller: str, wh: int, n: int) -> None:
    """A market trade's WATT leg: ``wh`` WATT from ``seller`` to a resident."""
    if wh:
        store.post(Batch(f"market:t{n}:{seller}", (Transfer(seller, BUYER, Asset.WATT, wh,
                                                            "market.watt"),)))  # fmt: skip


def _config(site: Site) -> SettlementConfig:
    return SettlementConfig(storage=storage_policy_for(site, commission_ppm=400))


def test_resettling_after_holders_sold_their_watt_starts_from_the_hours_balances(tmp_path):
    """The concrete reproducer: settle 12 hours, the storage owner and the education fund
    sell every WATT they hold, then the first hour is settled again (a retry)."""
    site = seed_002_site()
    config = _config(site)
    readings, _ = _day_readings(site)
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=HOUR + 25 * H, config=config)
        for h in range(12):
            settle_hour(store, site, HOUR + h * H, config)
        before = {h: watt_balances_before(store, site, HOUR + h * H, config) for h in range(12)}
        for n, holder in enumerate((STORAGE_PRODUCER, EDUCATION_FUND)):
            _sell(store, holder, store.balance(holder, Asset.WATT), n)
        assert store.balance(STORAGE_PRODUCER, Asset.WATT) == 0
        for h in range(12):
            assert watt_balances_before(store, site, HOUR + h * H, config) == before[h], h
        again = settle_hour(store, site, HOUR, config)  # raised ValueError before the fix
        assert again.transfers == ()
        assert store.verify().ok


@settings(max_examples=20, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["settle", "sell", "resettle"]),
            st.integers(0, 23),
            st.sampled_from([STORAGE_PRODUCER, EDUCATION_FUND, "fund:network", "meter:angel"]),
            st.integers(0, 100),
        ),
        max_size=30,
    )
)
def test_any_sequence_of_settles_trades_and_retries_never_plans_a_negative_balance(
    tmp_path_factory, steps
):
    """Random interleavings of first settles (in order), WATT sales of any share of a
    holder's balance, and re-settles of any settled hour: every settle succeeds, no
    balance an hour is planned from is negative, and the ledger verifies."""
    site = seed_002_site()
    config = _config(site)
    readings, _ = _day_readings(site)
    with SqliteLedgerStore(tmp_path_factory.mktemp("seq") / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=HOUR + 25 * H, config=config)
        settled = 0
        for n, (action, hour, holder, percent) in enumerate(steps):
            if action == "settle" and settled < 24:
                settle_hour(store, site, HOUR + settled * H, config)
                settled += 1
            elif action == "sell":
                _sell(store, holder, store.balance(holder, Asset.WATT) * percent // 100, n)
            elif action == "resettle" and settled:
                h = HOUR + (hour % settled) * H
                assert min(watt_balances_before(store, site, h, config).values(), default=0) >= 0
                assert settle_hour(store, site, h, config).transfers == ()
        assert store.verify().ok


def test_a_negative_watt_balance_is_refused_with_an_alarm_and_backoff(tmp_path):
    """Defensive: an hour planned from a negative WATT balance posts nothing, raises a
    standing alarm naming the accounts, and is retried with backoff, not every hour;
    settle_pending skips it; a later good settle clears the alarm."""
    site = seed_002_site()
    config = _config(site)
    readings, _ = _day_readings(site)
    now = HOUR + 25 * H
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=now, config=config)
        with pytest.raises(WattBalanceError, match=r"fund:education=-1.*meter:battery"):
            settle_hour(store, site, HOUR, config, now, False,
                        {"fund:education": -1, STORAGE_PRODUCER: -2})  # fmt: skip
        assert store.keys_with_prefix(settlement_key(config.site_key(site), HOUR)) == []
        standing = [a for a in store.alarm_records(standing_only=True)
                    if a.kind is AlarmKind.WATT_MISMATCH]  # fmt: skip
        assert len(standing) == 1
        assert "negative WATT balances" in standing[0].message
        site_id = config.site_key(site)
        assert store.incomplete_hours(site_id) == [HOUR]
        assert store.incomplete_hours(site_id, due_at=now + 30 * timedelta(minutes=1)) == []
        assert store.incomplete_hours(site_id, due_at=now + H) == [HOUR]
        settle_hour(store, site, HOUR, config, now + H)  # its true balances: settles
        assert store.incomplete_hours(site_id) == []
        assert not [a for a in store.alarm_records(standing_only=True)
                    if a.kind is AlarmKind.WATT_MISMATCH]  # fmt: skip


def test_two_settlers_at_once_never_leave_a_negative_watt_history(tmp_path):
    """The service settles from two threads (the control cycle's late hours, the settle
    job), each on its own connection. Hour 11 is posted by one; before it is marked
    settled, the other settles hour 10: it must not plan hour 10 from balances that
    include hour 11's WATT (that left hour 11 and every later hour starting from a
    negative balance, for good). Settles are serialized."""
    site = seed_002_site()
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=50_000))
    readings, _ = _day_readings(site)
    path = tmp_path / "l.sqlite"
    now = HOUR + 25 * H
    with SqliteLedgerStore(path) as store:
        record_readings(store, site, readings, recorded_at=now, config=config)
    posted, go = threading.Event(), threading.Event()

    def settle_late() -> None:  # the control cycle's thread: hour 11 (a late reading)
        with SqliteLedgerStore(path) as store:
            finish = store.finish_hour

            def paused_finish(*args: Any, **kwargs: Any) -> None:
                posted.set()  # hour 11's batch is in the journal, the hour not yet marked
                go.wait(10)
                finish(*args, **kwargs)

            store.finish_hour = paused_finish  # type: ignore[method-assign]
            settle_hour(store, site, HOUR + H, config, now)

    def settle_job() -> None:  # the settle job's thread: hour 10
        with SqliteLedgerStore(path) as store:
            settle_hour(store, site, HOUR, config, now)

    late = threading.Thread(target=settle_late)
    late.start()
    assert posted.wait(10)
    job = threading.Thread(target=settle_job)
    job.start()
    job.join(0.5)  # without serialization it settles hour 10 now, from hour 11's WATT
    go.set()
    late.join(10)
    job.join(10)
    with SqliteLedgerStore(path) as store:
        for h in range(3):
            before = watt_balances_before(store, site, HOUR + h * H, config)
            assert min(before.values(), default=0) >= 0
        settle_hour(store, site, HOUR + 2 * H, config, now)
        assert store.verify().ok
        concurrent = store.balances()
    with SqliteLedgerStore(tmp_path / "ref.sqlite") as store:  # the same, one at a time
        record_readings(store, site, readings, recorded_at=now, config=config)
        for h in (1, 0, 2):
            settle_hour(store, site, HOUR + h * H, config, now)
        assert store.balances() == concurrent


def test_a_late_reading_replays_later_hours_across_market_sales(tmp_path):
    """A late battery reading corrects hour 12 and replays the 11 hours after it; WATT
    sold between those hours are handed on in journal order: the replayed hours start from
    the balances they had (no negative), and settling any hour again posts nothing."""
    site = seed_002_site()
    config = _config(site)
    readings, _ = _day_readings(site)
    now = HOUR + 25 * H
    hole = HOUR + 3 * H
    late = [r for r in readings if r.meter_id == BATTERY_METER and r.read_at == hole]
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, [r for r in readings if r not in late], now, config=config)
        for h in range(14):
            settle_hour(store, site, HOUR + h * H, config, now)
            if h % 3 == 2:
                for n, holder in enumerate((STORAGE_PRODUCER, EDUCATION_FUND, "meter:angel")):
                    _sell(store, holder, store.balance(holder, Asset.WATT) // 2, 100 * h + n)
        outcome = record_readings(store, site, late, recorded_at=now, config=config)
        corrected = settle_hour(store, site, outcome.late_hours[0], config, now)
        assert corrected.correction
        assert len(corrected.replayed) == 11
        for h in range(14):
            before = watt_balances_before(store, site, HOUR + h * H, config)
            assert min(before.values(), default=0) >= 0, h
        assert [
            settle_hour(store, site, HOUR + h * H, config, now).transfers for h in range(14)
        ] == [()] * 14
        assert store.verify().ok
