"""Storage accounting: the battery as a producer, WATT, commission, Bmax, prosumers."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid import Site, load_site
from microgrid.readings import MeterReading
from microgrid.site import RooftopPv
from settlement import EnergyStatus, MeterEnergy, SqliteLedgerStore, plan_hour
from settlement.hourly import StorageInput
from settlement.ledger import HELD, WATT_ISSUER, Asset
from settlement.settle import (
    BATTERY_METER,
    SettlementConfig,
    record_readings,
    settle_hour,
    storage_policy_for,
)
from settlement.storage import (
    EDUCATION_FUND,
    NETWORK_FUND,
    STORAGE_PRODUCER,
    QuarterFlows,
    StoragePolicy,
    plan_storage,
    split_commission,
    split_hour,
)
from tests.settlement.conftest import HOUR

H = timedelta(hours=1)
TOLERANCE_WH = 1.0
"""Integer rounding per settled hour: the burn is rounded up (≤ 1 WATT per hour)."""
NO_FEE = StoragePolicy(commission_ppm=0)


def seed_002_site() -> Site:
    """Carlos and Danny (consumers), Angel and Bennie (households with panels), and the
    container, cut from the default site; every tariff 1 coin/kWh."""
    site = load_site()
    names = ("carlos", "danny", "angel", "bennie")
    roof = {
        "angel": RooftopPv(dc_capacity_kwp=4.0, surface_tilt_deg=15, surface_azimuth_deg=180),
        "bennie": RooftopPv(dc_capacity_kwp=3.5, surface_tilt_deg=20, surface_azimuth_deg=170),
    }
    first = site.households[0]
    connections = tuple(
        c.model_copy(update={"id": name, "pv": roof.get(name), "relay_group": first.relay_group})
        for name, c in zip(names, site.households[:4], strict=True)
    )
    tariffs = {name: site.tariffs[name].model_copy() for name in {c.tariff for c in connections}}
    tariffs = {
        n: t.model_copy(update={"kind": "flat", "price_per_kwh_minor": 1_000_000, "bands": ()})
        for n, t in tariffs.items()
    }
    small = site.model_copy(
        update={
            "relay_groups": tuple(g for g in site.relay_groups if g.id == first.relay_group),
            "connections": connections,
            "tariffs": tariffs,
            "chargers": (),
            "electric_vehicles": (),
        }
    )
    return Site.model_validate(small.model_dump())


def _energies(rows: list[tuple[str, int, int]]) -> dict[str, MeterEnergy]:
    return {m: MeterEnergy(m, i, x, EnergyStatus.MEASURED) for m, i, x in rows}


SEED_002 = [("carlos", 3000, 0), ("danny", 2000, 0), ("angel", 0, 3000), ("bennie", 0, 2500)]
PRICES = {"carlos": 1_000_000, "danny": 1_000_000}


def test_seed_002_pays_exactly_with_storage_accounting_on():
    energies = _energies([*SEED_002, (BATTERY_METER, 0, 0)])
    storage = StorageInput(BATTERY_METER, {}, NO_FEE)
    plan = plan_hour(HOUR, energies, PRICES, ["angel", "bennie"], 10_000, storage)
    assert plan.payouts == {"angel": 2_721_818, "bennie": 2_268_182}
    assert plan.watt_net() == {}


def test_charge_is_credited_as_watt_and_only_delivered_energy_is_paid_in_coins():
    # 1.1 kWh of the 5.5 kWh exported went into the battery: 0.6 from Angel, 0.5 Bennie.
    energies = _energies([*SEED_002, (BATTERY_METER, 1100, 0)])
    plan = plan_hour(
        HOUR, energies, PRICES, ["angel", "bennie"], 10_000, StorageInput(BATTERY_METER, {}, NO_FEE)
    )
    assert plan.storage is not None
    assert plan.storage.minted == {"meter:angel": 600, "meter:bennie": 500}
    assert plan.watt_net() == {"meter:angel": 600, "meter:bennie": 500, WATT_ISSUER: -1100}
    # Coins pro rata to 2400 and 2000 Wh delivered directly.
    assert plan.payouts == {"angel": 2_721_818, "bennie": 2_268_182}


def test_night_discharge_pays_holders_pro_rata_with_the_round_trip_haircut():
    energies = _energies(
        [
            ("carlos", 900, 0),
            ("danny", 0, 0),
            ("angel", 0, 0),
            ("bennie", 0, 0),
            (BATTERY_METER, 0, 900),
        ]
    )
    policy = StoragePolicy(commission_ppm=0, round_trip_ppm=900_000)
    balances = {"meter:angel": 600, "meter:bennie": 500}
    plan = plan_hour(
        HOUR, energies, PRICES, ["angel"], 10_000, StorageInput(BATTERY_METER, balances, policy)
    )
    assert plan.held == 0
    assert plan.storage is not None
    # 900 Wh delivered costs holders 1000 WATT: 545 + 455 pro rata to 600 : 500.
    assert plan.storage.burned == {"meter:angel": 545, "meter:bennie": 455}
    assert sum(plan.payouts.values()) == 890_000
    assert plan.payouts["angel"] > plan.payouts["bennie"]


def test_discharge_beyond_outstanding_watt_pays_the_storage_owner():
    hour = plan_storage({}, 0, 1000, {"meter:angel": 100}, NO_FEE)
    assert hour.burned == {"meter:angel": 100}
    assert hour.sold_wh == {"meter:angel": 90, STORAGE_PRODUCER: 910}


def test_bmax_overflow_is_sold_to_the_pool_and_its_watt_go_to_the_storage_owner():
    policy = StoragePolicy(commission_ppm=0, bmax_wh=1000)
    hour = plan_storage(
        {"meter:angel": 3000}, 2000, 0, {"meter:angel": 700}, policy, frozenset({"meter:angel"})
    )
    assert hour.minted == {"meter:angel": 300, STORAGE_PRODUCER: 1700}
    assert hour.over_cap_wh == {"meter:angel": 1700}
    assert hour.sold_wh == {"meter:angel": 2700}  # 1000 direct + 1700 over the cap


def test_commission_is_charged_every_quarter_and_split_80_10_10():
    policy = StoragePolicy(commission_ppm=10_000)  # 1 % per quarter
    hour = plan_storage({}, 0, 0, {"meter:angel": 100_000}, policy)
    # 1000, 990, 980, 970 (compounding): 3940 WATT.
    assert hour.commission["meter:angel"] == 3940
    # Quarter 1: only Angel holds WATT; 80/10/10.
    assert hour.commission_moves[0] == {
        "meter:angel": -1000,
        STORAGE_PRODUCER: 800,
        EDUCATION_FUND: 100,
        NETWORK_FUND: 100,
    }
    # Quarter 2: every holder pays on its balance then, the recipients on what they got.
    assert hour.commission_moves[1] == {
        "meter:angel": -990,
        STORAGE_PRODUCER: 800 - 8,
        EDUCATION_FUND: 100 - 1,
        NETWORK_FUND: 100 - 1,
    }
    assert len(hour.commission_moves) == 4
    assert all(sum(m.values()) == 0 for m in hour.commission_moves)
    assert hour.flow_net() == {}


def test_commission_is_charged_on_the_balance_at_each_quarter():
    """A discharge early in the hour lowers the next quarters' commission; late, it does not."""
    policy = StoragePolicy(commission_ppm=10_000, round_trip_ppm=1_000_000)
    early = [QuarterFlows({}, 0, 50_000)] + [QuarterFlows({}, 0, 0)] * 3
    late = [QuarterFlows({}, 0, 0)] * 3 + [QuarterFlows({}, 0, 50_000)]
    balances = {"meter:angel": 100_000}
    first = plan_storage({}, 0, 50_000, balances, policy, quarters=early)
    last = plan_storage({}, 0, 50_000, balances, policy, quarters=late)
    # Early: 1000 on 100 000, then 1 % of ~49 500 three times; late: 1 % of ~100 000 four times.
    assert first.commission["meter:angel"] == 1000 + 495 + 490 + 485
    assert last.commission["meter:angel"] == 3940
    assert sum(first.burned.values()) == sum(last.burned.values()) == 50_000


def test_quarters_must_add_up_to_the_hour():
    with pytest.raises(ValueError, match="quarters' flows must add up"):
        plan_storage({}, 10, 0, {}, NO_FEE, quarters=[QuarterFlows({}, 1, 0)] * 4)


def test_commission_recipients_may_not_be_capped():
    with pytest.raises(ValueError, match="capped by Bmax"):
        plan_storage({}, 0, 0, {}, StoragePolicy(bmax_wh=1), frozenset({STORAGE_PRODUCER}))


def test_bad_policy_names_the_field():
    with pytest.raises(ValueError, match="round_trip_ppm"):
        StoragePolicy(round_trip_ppm=0)


# --- Hypothesis: conservation, exact split, Bmax ---------------------------------------
accounts = st.sampled_from(["meter:a", "meter:b", "meter:c", "meter:d"])


@given(
    production=st.dictionaries(accounts, st.integers(0, 50_000), max_size=4),
    balances=st.dictionaries(accounts, st.integers(0, 50_000), max_size=4),
    charge=st.integers(0, 60_000),
    discharge=st.integers(0, 60_000),
    commission=st.integers(0, 50_000),
    bmax=st.none() | st.integers(0, 60_000),
    round_trip=st.integers(500_000, 1_000_000),
)
def test_watt_is_conserved_and_bmax_never_exceeded(
    production, balances, charge, discharge, commission, bmax, round_trip
):
    policy = StoragePolicy(commission_ppm=commission, bmax_wh=bmax, round_trip_ppm=round_trip)
    capped = frozenset({"meter:a", "meter:b"})
    if bmax is not None:  # balances start within the cap
        balances = {a: min(v, bmax) if a in capped else v for a, v in balances.items()}
    hour = plan_storage(production, charge, discharge, balances, policy, capped)
    after = {
        a: balances.get(a, 0) + hour.watt_net.get(a, 0) for a in set(balances) | set(hour.watt_net)
    }
    assert min(after.values(), default=0) >= 0
    # WATT: what holders gain is minted minus burned; the commission only moves WATT.
    assert sum(hour.watt_net.values()) == sum(hour.minted.values()) - sum(hour.burned.values())
    assert sum(hour.minted.values()) == charge
    # The commission, each quarter: what holders pay is exactly what the recipients get
    # (split_commission's own property checks the 80/10/10 split).
    assert len(hour.commission_moves) == 4
    assert all(sum(moves.values()) == 0 for moves in hour.commission_moves)
    assert not commission or sum(hour.commission.values()) >= sum(
        -v for moves in hour.commission_moves for a, v in moves.items() if v < 0
    )
    if bmax is not None:
        assert all(after.get(a, 0) <= bmax for a in capped)
    # Energy: everything produced or discharged is either stored as WATT or sold.
    assert (
        sum(hour.sold_wh.values())
        == sum(production.values())
        - (sum(hour.minted.values()) - hour.minted.get(STORAGE_PRODUCER, 0))
        + discharge
    )
    # The haircut, quarter by quarter: holders burn what each quarter's delivery needs
    # (⌈D_q / η⌉), or, when they run out, everything they held at the start.
    outstanding = sum(balances.values())
    burned = sum(hour.burned.values())
    needed = sum(-(-q.discharge_wh * 1_000_000 // round_trip) for q in split_hour({}, 0, discharge))
    assert burned <= outstanding + charge
    assert burned == needed or (burned < needed and burned >= outstanding)


@given(
    total=st.integers(0, 10**12),
    owners=st.dictionaries(
        st.sampled_from(["storage:x", "storage:y", "storage:z"]), st.integers(1, 10**6), min_size=1
    ),
)
def test_commission_split_is_exact_and_80_10_10(total, owners):
    split = split_commission(total, StoragePolicy(storage_owners=owners))
    assert sum(split.values()) == total
    owners_part = sum(v for a, v in split.items() if a in owners)
    assert abs(owners_part - total * 0.8) <= 1
    assert abs(split.get(EDUCATION_FUND, 0) - total * 0.1) <= 1
    assert abs(split.get(NETWORK_FUND, 0) - total * 0.1) <= 1


# --- a simulated day through the store -------------------------------------------------
INITIAL_STORED_WH = 0.0
"""The day starts at 10:00 UTC, in sunshine, with an empty battery."""


def _day_readings(site: Site, days: int = 1) -> tuple[list[MeterReading], list[float]]:
    """Cumulative readings for a day: sunny hours charge, the night discharges.

    Returns the readings and the battery's stored energy after each hour [Wh DC], from
    the site's efficiencies (what a state-of-charge measurement would read).
    """
    battery = site.battery
    cum = {m: [0, 0] for m in ("carlos", "danny", "angel", "bennie", "pv_inverter", BATTERY_METER)}
    readings = [MeterReading(m, HOUR, 0, 0) for m in cum]
    stored = INITIAL_STORED_WH  # charge nobody holds WATT for
    trace = []
    for h in range(24 * days):
        local = (HOUR.hour + h) % 24
        sun = max(0.0, math.sin(math.pi * (local - 6) / 12))
        carlos, danny = 400 + 300 * (h % 3), 250
        angel, bennie, pv = round(2500 * sun), round(2000 * sun), round(8000 * sun)
        supply = angel + bennie + pv
        demand = carlos + danny
        charge = max(0, round((supply - demand) * 0.8))
        discharge = min(max(0, demand - supply), int(stored * battery.discharge_efficiency))
        stored += charge * battery.charge_efficiency - discharge / battery.discharge_efficiency
        trace.append(stored)
        for m, imp, exp in [
            ("carlos", carlos, 0),
            ("danny", danny, 0),
            ("angel", 0, angel),
            ("bennie", 0, bennie),
            ("pv_inverter", 0, pv),
            (BATTERY_METER, charge, discharge),
        ]:
            cum[m][0] += imp
            cum[m][1] += exp
            readings.append(MeterReading(m, HOUR + (h + 1) * H, *cum[m]))
    return readings, trace


def test_a_day_with_night_consumption_settles_every_hour_and_watt_reconciles(tmp_path):
    site = seed_002_site()
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=0))
    readings, stored = _day_readings(site)
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=HOUR + 25 * H, config=config)
        results = []
        for h in range(24):
            results.append(settle_hour(store, site, HOUR + h * H, config))
            outstanding = -store.balance(WATT_ISSUER, Asset.WATT)
            # The loss policy: WATT × charge efficiency is the stored energy, every period.
            assert abs(stored[h] - outstanding * site.battery.charge_efficiency) <= (
                TOLERANCE_WH * (h + 1)
            ), h
        assert sum(r.plan.complete for r in results) == 24
        assert store.balance(HELD) == 0
        assert store.verify().ok
        assert sum(1 for r in results if r.plan.storage and r.plan.storage.burned) >= 8
        assert sum(1 for r in results if r.plan.storage and r.plan.storage.minted) >= 6


def test_without_storage_the_night_is_held_the_measured_bug(tmp_path):
    site = seed_002_site()
    readings, _ = _day_readings(site)
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=HOUR + 25 * H)
        for h in range(24):
            settle_hour(store, site, HOUR + h * H, SettlementConfig())
        assert store.balance(HELD) > 0


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 23), max_size=4, unique=True))
def test_settling_in_lots_equals_settling_at_once(tmp_path_factory, cuts):
    site = seed_002_site()
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=400, bmax_wh=3000))
    readings, _ = _day_readings(site)
    ends = sorted({0, *cuts, 24})

    def run(lots: list[int]) -> dict:
        path = tmp_path_factory.mktemp("lots") / "l.sqlite"
        with SqliteLedgerStore(path) as store:
            for start, end in itertools.pairwise(lots):
                chunk = [
                    r
                    for r in readings
                    if HOUR + start * H < r.read_at <= HOUR + end * H
                    or (start == 0 and r.read_at == HOUR)
                ]
                record_readings(store, site, chunk, recorded_at=HOUR + 25 * H, config=config)
                for h in range(start, end):
                    settle_hour(store, site, HOUR + h * H, config)
            assert store.verify().ok
            return store.balances()

    assert run(ends) == run([0, 24])


def test_verify_flags_watt_created_outside_storage_accounting(store):
    from settlement.ledger import Batch, Transfer

    store.post(Batch("ok", (Transfer(WATT_ISSUER, "meter:a", Asset.WATT, 5, "watt.mint"),)))
    assert store.verify().ok
    # settle.* codes may overdraw, so this posts, but it creates WATT from a meter.
    store.post(Batch("bad", (Transfer("meter:b", "meter:c", Asset.WATT, 7, "settle.payout"),)))
    report = store.verify()
    assert not report.ok
    assert any("only watt.* transfers" in p.message for p in report.problems)


def test_each_hour_stores_every_meters_two_way_decision(tmp_path):
    """Seed 002: the meter reports usage and gets back whether to stay connected."""
    site = seed_002_site()
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=0))
    readings, _ = _day_readings(site)
    with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        record_readings(store, site, readings, recorded_at=HOUR + 25 * H, config=config)
        for h in range(3):
            settle_hour(store, site, HOUR + h * H, config)
        carlos = store.decisions(site.name, "carlos")
        angel = store.decisions(site.name, "angel", limit=1)[0]
    assert [d.hour for d in carlos] == [HOUR + 2 * H, HOUR + H, HOUR]
    assert carlos[-1].import_wh == 400
    assert carlos[-1].charge_minor == 400_000
    # Carlos has no credit: told to disconnect (11:00–13:00 local is not a friendly hour).
    assert (carlos[-1].connected, carlos[-1].state) == (False, "disconnected")
    assert carlos[0].state == "disconnected"
    assert angel.payout_minor > 0
    assert angel.balance_minor > 0
    assert angel.connected


@given(
    consumers=st.dictionaries(st.sampled_from(["c1", "c2", "c3"]), st.integers(0, 20_000)),
    producers=st.dictionaries(st.sampled_from(["p1", "p2"]), st.integers(0, 20_000)),
    battery=st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)),
    balances=st.dictionaries(
        st.sampled_from(["meter:p1", "meter:p2", "meter:c1"]), st.integers(0, 30_000)
    ),
    price=st.integers(0, 2_000_000),
    fee=st.integers(0, 50_000),
)
def test_coins_are_conserved_with_storage(consumers, producers, battery, balances, price, fee):
    rows = [(m, wh, 0) for m, wh in consumers.items()]
    rows += [(m, 0, wh) for m, wh in producers.items()]
    energies = _energies([*rows, (BATTERY_METER, *battery)])
    storage = StorageInput(BATTERY_METER, balances, StoragePolicy(commission_ppm=100))
    plan = plan_hour(HOUR, energies, dict.fromkeys(consumers, price), list(producers), fee, storage)
    paid = sum(plan.payouts.values()) + sum(plan.account_payouts.values())
    assert plan.fee + paid + plan.held == plan.pool_minor
    assert sum(plan.net().values()) == 0
    assert sum(plan.watt_net().values()) == 0
    # Nothing is held when production or discharge is known and there is money to pay.
    if plan.pool_minor > plan.fee and (sum(producers.values()) or battery[1]):
        assert plan.held == 0
