"""Electro's band contracts (seed 004): a hand-computed statement, escrow, discount, rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgrid.readings import MeterReading
from settlement import SqliteLedgerStore
from settlement.contract_registry import ContractRegistry, settle_due
from settlement.contracts import (
    CONTRACT_BUDGET,
    CONTRACT_PENALTIES,
    BandContract,
    ContractError,
    DisconnectCause,
    IntervalUsage,
    MissingData,
    assess_interval,
    assess_period,
    close_contract,
    contract_account,
    fund_deposit,
    open_contract,
    revise_band,
    settle_interval,
    statement,
    usage_from_readings,
)
from settlement.ledger import (
    FIAT_BRIDGE,
    Asset,
    Batch,
    InsufficientFundsError,
    Transfer,
    meter_account,
)

START = datetime(2026, 3, 2, 6, tzinfo=UTC)
H = timedelta(hours=1)


def mill_contract(*, bonus: int = 2_000_000, n: int = 6, **overrides) -> BandContract:
    fields = {
        "contract_id": "mill-2026-03",
        "meter_id": "B001",
        "start": START,
        "interval": H,
        "bands_wh": ((10_000, 14_000),) * n,
        "tolerance_wh": 500,
        "bonus": bonus,
        "over_rate": 400_000,  # 0.4 coin per kWh above 14.5 kWh
        "under_rate": 200_000,  # 0.2 coin per kWh below 9.5 kWh
        "disconnect_penalty": 1_000_000,
        "discount_ppm": 800_000,
    }
    fields.update(overrides)
    return BandContract(**fields)


def fund(store, account: str, amount: int, key: str) -> None:
    transfer = Transfer(FIAT_BRIDGE, account, Asset.COIN, amount, "fiat.topup")
    store.post(Batch(key, (transfer,)), START)


# The six intervals of the hand-computed statement.
USAGE = {
    START + 0 * H: IntervalUsage(12_000),  # in band
    START + 1 * H: IntervalUsage(16_500),  # 2.0 kWh over 14.5 → 0.8 coin
    START + 2 * H: IntervalUsage(8_000),  # 1.5 kWh under 9.5 → 0.3 coin
    START + 3 * H: IntervalUsage(  # in band, but the mill tripped the inverter → 1 coin
        11_000, disconnects=(DisconnectCause.CONSUMER_OVERLOAD,)
    ),
    START + 4 * H: IntervalUsage(  # the container's safe state: the grid's fault, free
        3_000, disconnects=(DisconnectCause.SAFE_STATE,), grid_outage=True
    ),
    START + 5 * H: IntervalUsage(None),  # no reading: estimated 3.0 kWh → 6.5 under → 1.3 coin
}


def test_hand_computed_statement(store):
    contract = mill_contract()
    fund(store, CONTRACT_BUDGET, 10_000_000, "budget")
    fund(store, meter_account("B001"), 1_000_000, "mill-credit")
    open_contract(store, contract, START)
    fund_deposit(store, contract, 500_000, "d1", START)
    outcomes = assess_period(contract, USAGE)
    for outcome in outcomes:
        settle_interval(store, contract, outcome, outcome.start + H)

    penalties = [o.penalty for o in outcomes]
    assert penalties == [0, 800_000, 300_000, 1_000_000, 0, 1_300_000]
    assert outcomes[4].under_waived
    assert outcomes[4].under_wh == 0
    assert outcomes[5].estimated
    assert outcomes[5].energy_wh == 3_000

    st_ = statement(store, contract, outcomes)
    split = [(r.from_bonus, r.from_deposit, r.receivable, r.bonus_left) for r in st_.rows]
    assert split == [
        (0, 0, 0, 2_000_000),
        (800_000, 0, 0, 1_200_000),
        (300_000, 0, 0, 900_000),
        (900_000, 100_000, 0, 0),  # the bonus runs out, then the deposit pays
        (0, 0, 0, 0),
        (0, 400_000, 900_000, 0),  # the deposit runs out, the rest is owed
    ]
    assert st_.penalties == 3_400_000
    assert st_.receivable == 900_000

    close_contract(store, contract, START + 6 * H)
    assert statement(store, contract, outcomes).discount == 0
    assert store.balance(contract_account(contract.contract_id, "escrow")) == 0
    assert store.balance(contract_account(contract.contract_id, "deposit")) == 0
    assert store.balance(contract_account(contract.contract_id, "receivable")) == -900_000
    assert store.balance(CONTRACT_PENALTIES) == 3_400_000
    assert store.balance(CONTRACT_BUDGET) == 8_000_000
    assert store.balance(meter_account("B001")) == 500_000
    assert store.verify().ok


def test_remaining_bonus_becomes_a_discount(store):
    contract = mill_contract(n=2)
    fund(store, CONTRACT_BUDGET, 2_000_000, "budget")
    open_contract(store, contract, START)
    outcomes = assess_period(
        contract, {START: IntervalUsage(12_000), START + H: IntervalUsage(15_000)}
    )
    for outcome in outcomes:
        settle_interval(store, contract, outcome, outcome.start + H)
    # 0.5 kWh over → 0.2 coin; 1.8 coin left: 80 % to the mill, 20 % back to the budget.
    close_contract(store, contract, START + 2 * H)
    assert statement(store, contract, outcomes).discount == 1_440_000
    assert store.balance(meter_account("B001")) == 1_440_000
    assert store.balance(CONTRACT_BUDGET) == 360_000
    assert store.verify().ok


def test_bonus_is_escrowed_only_from_a_budget_that_holds_it(store):
    fund(store, CONTRACT_BUDGET, 1_999_999, "budget")
    with pytest.raises(InsufficientFundsError):
        open_contract(store, mill_contract(), START)
    assert store.balance(contract_account("mill-2026-03", "escrow")) == 0


def test_replays_change_nothing(store):
    contract = mill_contract()
    fund(store, CONTRACT_BUDGET, 10_000_000, "budget")
    open_contract(store, contract, START)
    outcomes = assess_period(contract, USAGE)
    for outcome in outcomes:
        settle_interval(store, contract, outcome, START)
    before = store.balances(prefix="contract:")
    for outcome in outcomes:
        assert settle_interval(store, contract, outcome, START).replayed
    assert open_contract(store, contract, START).replayed
    assert store.balances(prefix="contract:") == before


def test_supply_shortfall_is_the_grids_not_the_consumers():
    contract = mill_contract()
    short = IntervalUsage(6_000, allotted_wh=6_000)  # the plan could give only 6 kWh
    assert assess_interval(contract, START, short).penalty == 0
    enough = IntervalUsage(6_000, allotted_wh=12_000)
    assert assess_interval(contract, START, enough).under_penalty == 700_000


def test_grid_caused_disconnects_cost_nothing():
    contract = mill_contract()
    causes = (DisconnectCause.CONTAINER_TRIP, DisconnectCause.SAFE_STATE)
    usage = IntervalUsage(12_000, disconnects=causes)
    assert assess_interval(contract, START, usage).penalty == 0
    usage = IntervalUsage(12_000, disconnects=(DisconnectCause.CONSUMER_LIMIT_TRIP,) * 2)
    assert assess_interval(contract, START, usage).disconnect_penalty == 2_000_000


def test_missing_data_can_be_waived():
    contract = mill_contract(missing_data=MissingData.WAIVE)
    outcome = assess_interval(contract, START, IntervalUsage(None), last_energy_wh=20_000)
    assert outcome.estimated
    assert outcome.penalty == 0


def test_revisions_only_before_the_gate():
    contract = mill_contract()
    revised = revise_band(contract, START + 3 * H, [(5_000, 7_000)], now=START + H)
    assert revised.bands_wh[3] == (5_000, 7_000)
    assert revised.bands_wh[2] == contract.bands_wh[2]
    with pytest.raises(ContractError, match="gate"):
        revise_band(contract, START + 3 * H, [(5_000, 7_000)], now=START + 2.5 * H)
    with pytest.raises(ContractError, match="past the period"):
        revise_band(contract, START + 5 * H, [(1, 2), (1, 2)], now=START)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"interval": timedelta(minutes=30)}, "interval"),
        ({"bands_wh": ((5, 4),)}, "bands_wh"),
        ({"bands_wh": ()}, "bands_wh"),
        ({"bonus": -1}, "bonus"),
        ({"bonus": 10**19}, "bonus"),
        ({"over_rate": 1.5}, "over_rate"),
        ({"start": START + timedelta(minutes=7)}, "interval edge"),
        ({"start": START.replace(tzinfo=None)}, "timezone"),
        ({"contract_id": "a:b"}, "contract id"),
        ({"discount_ppm": 1_000_001}, "discount_ppm"),
    ],
)
def test_bad_contracts_are_refused_by_name(overrides, field):
    with pytest.raises(ContractError, match=field):
        mill_contract(**overrides)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bonus=st.integers(0, 3_000_000),
    deposit=st.integers(0, 2_000_000),
    energies=st.lists(st.one_of(st.none(), st.integers(0, 30_000)), min_size=1, max_size=8),
    tripped=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_bonus_never_negative_and_penalties_conserved(
    tmp_path_factory, bonus, deposit, energies, tripped
):
    path = tmp_path_factory.mktemp("c") / "ledger.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        contract = mill_contract(bonus=bonus, n=len(energies))
        fund(store, CONTRACT_BUDGET, 3_000_000, "budget")
        fund(store, meter_account("B001"), 2_000_000, "credit")
        open_contract(store, contract, START)
        if deposit:
            fund_deposit(store, contract, deposit, "d", START)
        usage = {
            START + k * H: IntervalUsage(
                e, disconnects=(DisconnectCause.CONSUMER_LIMIT_TRIP,) if tripped[k] else ()
            )
            for k, e in enumerate(energies)
        }
        outcomes = assess_period(contract, usage)
        escrow = contract_account(contract.contract_id, "escrow")
        for outcome in outcomes:
            settle_interval(store, contract, outcome, START)
            assert store.balance(escrow) >= 0
        rows = statement(store, contract, outcomes).rows
        for row in rows:
            assert row.from_bonus + row.from_deposit + row.receivable == row.outcome.penalty
        assert store.balance(CONTRACT_PENALTIES) == sum(o.penalty for o in outcomes)
        close_contract(store, contract, START)
        assert store.balance(escrow) == 0
        assert (
            store.balance(CONTRACT_BUDGET)
            + store.balance(meter_account("B001"))
            + store.balance(CONTRACT_PENALTIES)
            + store.balance(contract_account(contract.contract_id, "receivable"))
            == 5_000_000
        )
        assert store.verify().ok


def test_usage_from_readings_matches_settlement_energy():
    contract = mill_contract(n=3, interval=timedelta(minutes=15))
    q = timedelta(minutes=15)
    readings = [
        MeterReading("B001", START - timedelta(minutes=5), 1_000),
        MeterReading("B001", START + timedelta(minutes=10), 4_000),  # 200 Wh/min
        MeterReading("B001", START + timedelta(minutes=40), 7_000),  # 100 Wh/min
        MeterReading("H001", START + timedelta(minutes=10), 99),  # another meter: ignored
    ]
    usage = usage_from_readings(
        contract,
        readings,
        disconnects=[(START + timedelta(minutes=20), DisconnectCause.CONSUMER_LIMIT_TRIP)],
        outages=[(START + 2 * q + timedelta(minutes=1), START + 3 * q)],
        allotted_wh={START: 2_500},
    )
    assert [u.energy_wh for u in usage.values()] == [2_500, 1_500, None]
    assert usage[START + q].disconnects == (DisconnectCause.CONSUMER_LIMIT_TRIP,)
    assert [u.grid_outage for u in usage.values()] == [False, False, True]
    assert usage[START].allotted_wh == 2_500
    assert usage[START + q].allotted_wh is None


def test_registry_keeps_revisions_and_settles_due_intervals_once(store, tmp_path):
    contract = mill_contract(n=4)
    fund(store, CONTRACT_BUDGET, 5_000_000, "budget")
    open_contract(store, contract, START)
    # 12 kWh, 16.5 kWh, then the meter falls silent.
    readings = [MeterReading("B001", START + k * H, wh) for k, wh in enumerate([0, 12_000, 28_500])]
    store.add_readings(readings, START + 2 * H)
    # The registry is a SQLite file: the ledger's own on SQLite, a file beside it on PG.
    registry_path = getattr(store, "path", tmp_path / "contracts.sqlite")
    with ContractRegistry(registry_path) as registry:
        registry.create(contract, START - H)
        with pytest.raises(ContractError, match="exists"):
            registry.create(contract, START - H)
        revised = revise_band(contract, START + 3 * H, [(0, 1_000)], now=START)
        assert registry.revise(revised, START).revision == 2
        # At 03:00 only the first interval is past its grace.
        first = settle_due(store, registry, contract.contract_id, START + 2 * H)
        assert [o.start for o in first] == [START]
        later = settle_due(store, registry, contract.contract_id, START + 5 * H)
        assert [o.penalty for o in later] == [800_000, 800_000, 6_000_000]
        # Intervals 2 and 3 had no reading: estimated from the last (16.5 kWh); interval 3's
        # revised band is (0, 1 000) Wh, so the estimate is over it.
        assert [o.estimated for o in later] == [False, True, True]
        assert settle_due(store, registry, contract.contract_id, START + 9 * H) == []
        # A late reading changes nothing already charged.
        store.add_readings([MeterReading("B001", START + 4 * H, 30_000)], START + 9 * H)
        assert settle_due(store, registry, contract.contract_id, START + 10 * H) == []
        charged = registry.outcomes(contract.contract_id)
        assert [o.energy_wh for o in charged] == [12_000, 16_500, 16_500, 16_500]
        assert registry.require(contract.contract_id).contract.bands_wh[3] == (0, 1_000)
        registry.mark_closed(contract.contract_id, START + 10 * H)
        with pytest.raises(ContractError, match="closed"):
            registry.revise(revised, START + 10 * H)
