"""Store-level properties of settling with storage: readings arrive in any order and
lots, late readings post corrections; coins and WATT are conserved, Bmax holds on every
credit path, and the result equals settling everything at once."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore, record_readings, settle_hour
from settlement.ledger import FIAT_BRIDGE, HELD, POOL, WATT_ISSUER, Asset
from settlement.settle import SettlementConfig, storage_policy_for
from tests.settlement.conftest import HOUR
from tests.settlement.test_storage import _day_readings, seed_002_site

H = timedelta(hours=1)
HOURS = 8
BMAX_WH = 2500


def _check(store, site) -> dict:
    report = store.verify()
    assert report.ok, report.problems
    coins = store.balances(Asset.COIN)
    watt = store.balances(Asset.WATT)
    # Coins: conserved (nothing created outside the fiat bridge), the pool empty.
    assert sum(coins.values()) == 0
    assert store.balance(POOL) == 0
    assert store.balance(FIAT_BRIDGE) == 0
    assert store.balance(HELD) == 0
    # WATT: conserved through the issuer, nobody negative but the issuer, Bmax on every
    # capped holder whatever order the hours were settled and corrected in.
    assert sum(watt.values()) == 0
    assert all(v >= 0 for (a, _), v in watt.items() if a != WATT_ISSUER)
    capped = {f"meter:{c.id}" for c in site.connections}
    assert all(v <= BMAX_WH for (a, _), v in watt.items() if a in capped)
    return {**coins, **watt}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.randoms(use_true_random=False),
    lots=st.integers(1, 4),
    commission=st.sampled_from([0, 25, 4000]),
)
def test_late_and_shuffled_readings_settle_like_all_at_once(
    tmp_path_factory, order, lots, commission
):
    site = seed_002_site()
    config = SettlementConfig(
        storage=storage_policy_for(site, commission_ppm=commission, bmax_wh=BMAX_WH)
    )
    readings, _ = _day_readings(site)
    readings = [r for r in readings if r.read_at <= HOUR + HOURS * H]
    shuffled = list(readings)
    order.shuffle(shuffled)
    folder = tmp_path_factory.mktemp("lots")
    with (
        SqliteLedgerStore(folder / "late.sqlite") as late,
        SqliteLedgerStore(folder / "once.sqlite") as once,
    ):
        size = -(-len(shuffled) // lots)
        for k in range(lots):
            outcome = record_readings(
                late, site, shuffled[k * size : (k + 1) * size], config=config
            )
            for hour in outcome.late_hours:
                settle_hour(late, site, hour, config)
            for h in range(HOURS):
                settle_hour(late, site, HOUR + h * H, config)
        record_readings(once, site, readings, config=config)
        for h in range(HOURS):
            settle_hour(once, site, HOUR + h * H, config)
        assert _check(late, site) == _check(once, site)
