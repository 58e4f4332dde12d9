"""The ``lastwatt contracts`` subcommands: Electro's band contracts (seed 004).

``create`` records a contract's terms and escrows its bonus, ``revise`` changes bands
before their gate closes, ``deposit`` moves the consumer's coins into the contract's
deposit, ``settle`` charges every interval that is due, ``statement`` prints the standing
and ``close`` converts what is left of the bonus into a discount. The rules are in
:mod:`settlement.contracts`; this module only parses, calls and prints.
"""

from __future__ import annotations

import argparse
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastwatt.commands import Subcommands, UsageError, add_site_option, command

# `lastwatt --help` imports this module: microgrid and settlement (pandas) are imported
# by each handler when it runs, and here only for annotations.
if TYPE_CHECKING:
    from settlement import SqliteLedgerStore
    from settlement.contracts import BandContract

__all__ = ["add_commands", "read_terms"]

_DEFAULT_DB = Path("data/ledger.sqlite")
_EXAMPLE_TERMS = """\
# mill.toml — one day of hourly bands for the mill on connection B001
contract_id = "mill-2026-03-02"
meter_id = "B001"
start = 2026-03-02T06:00:00Z
interval_s = 3600                 # 900 (15 min) or 3600 (1 h)
bands_wh = [[10000, 14000], [10000, 14000], [8000, 12000]]
tolerance_wh = 500
bonus = 2000000                   # micro-coins escrowed at the start (2 coins)
over_rate = 400000                # micro-coins per kWh above the band
under_rate = 200000               # micro-coins per kWh below the band
disconnect_penalty = 1000000      # micro-coins per emergency disconnect it causes
discount_ppm = 800000             # share of the remaining bonus that becomes a discount
gate_closure_s = 3600             # bands may be revised up to 1 h before they apply
missing_data = "last_value"       # or "waive"
"""


def add_commands(commands: Subcommands) -> None:
    """Register ``lastwatt contracts …`` on the ``lastwatt`` parser."""
    group = command(
        commands,
        "contracts",
        "Band contracts for large consumers: create, revise, settle, statement, close.",
        "lastwatt contracts create mill.toml\nlastwatt contracts statement mill-2026-03-02",
        _no_subcommand,
    )
    sub = group.add_subparsers(dest="contracts_command", required=True, metavar="SUBCOMMAND")
    create = command(
        sub,
        "create",
        "Record a contract from a TOML terms file and escrow its bonus from the budget.",
        "lastwatt contracts create mill.toml\n\n" + _EXAMPLE_TERMS,
        _run_create,
    )
    create.add_argument("terms", type=Path, help="TOML file of the contract's terms")
    revise = command(
        sub,
        "revise",
        "Replace bands from one interval on (only before its gate closes).",
        "lastwatt contracts revise mill-2026-03-02 --from 2026-03-02T08:00Z "
        "--bands 9000:13000,9000:13000",
        _run_revise,
    )
    revise.add_argument("contract_id")
    revise.add_argument("--from", dest="first", required=True, metavar="DATETIME")
    revise.add_argument(
        "--bands", required=True, help="LOWER:UPPER Wh per interval, comma-separated"
    )
    budget = command(
        sub,
        "budget",
        "Move the utility's fee income into the contract budget that bonuses come from.",
        "lastwatt contracts budget --amount-minor 10000000 --key 2026-03",
        _run_budget,
    )
    budget.add_argument("--amount-minor", type=int, required=True, help="micro-coins, > 0")
    budget.add_argument("--key", required=True, help="idempotency key of this transfer")
    deposit = command(
        sub,
        "deposit",
        "Move coins from the consumer's meter account into the contract's deposit.",
        "lastwatt contracts deposit mill-2026-03-02 --amount-minor 500000 --key d1",
        _run_deposit,
    )
    deposit.add_argument("contract_id")
    deposit.add_argument("--amount-minor", type=int, required=True, help="micro-coins, > 0")
    deposit.add_argument("--key", required=True, help="idempotency key of this deposit")
    settle = command(
        sub,
        "settle",
        "Charge every interval that ended at least the grace ago (each interval once).",
        "lastwatt contracts settle mill-2026-03-02 --grace-min 60",
        _run_settle,
    )
    settle.add_argument("contract_id")
    settle.add_argument("--grace-min", type=int, default=60, help="wait for late readings")
    report = command(
        sub,
        "statement",
        "Print every charged interval: energy, band, deviation, penalty and who paid it.",
        "lastwatt contracts statement mill-2026-03-02",
        _run_statement,
    )
    report.add_argument("contract_id")
    close = command(
        sub,
        "close",
        "Close the period: remaining bonus → discount and budget; deposit → consumer.",
        "lastwatt contracts close mill-2026-03-02",
        _run_close,
    )
    close.add_argument("contract_id")
    listing = command(
        sub, "list", "List contracts with their standing.", "lastwatt contracts list", _run_list
    )
    compare = command(
        sub,
        "compare",
        "Planners: the site's large consumers with and without band contracts (forecast "
        "error, reserve needed, community value, penalties and discounts).",
        "lastwatt contracts compare --weeks 4 --runs 20 --seed 0",
        _run_compare,
    )
    add_site_option(compare)
    compare.add_argument("--weeks", type=int, default=4, help="weeks per run (default 4)")
    compare.add_argument("--runs", type=int, default=20, help="Monte Carlo runs (default 20)")
    compare.add_argument("--seed", type=int, default=0, help="first run's seed (default 0)")
    compare.add_argument(
        "--slip", type=float, default=0.1, help="chance a day starts an hour off plan (0.1)"
    )
    compare.add_argument(
        "--supply-ratio", type=float, default=1.1, help="supply ÷ expected demand (1.1)"
    )
    for parser in (create, revise, budget, deposit, settle, report, close, listing):
        parser.add_argument(
            "--db", type=Path, default=_DEFAULT_DB, help=f"ledger database (default {_DEFAULT_DB})"
        )
        parser.add_argument(
            "--now", default=None, metavar="DATETIME", help="the time to act at (default: now)"
        )


def _no_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires one
    msg = (
        "name a subcommand: create, revise, budget, deposit, settle, statement, close, list "
        "or compare"
    )
    raise UsageError(msg)


def read_terms(path: Path) -> BandContract:
    """A contract from a TOML terms file; every problem names the file and the field."""
    from settlement import LedgerError
    from settlement.contract_registry import contract_from_json

    try:
        terms: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"terms file {path} does not exist"
        raise UsageError(msg) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        msg = f"{path}: not a valid TOML terms file ({exc})"
        raise UsageError(msg) from None
    if isinstance(terms.get("start"), datetime):
        terms["start"] = terms["start"].isoformat()
    try:
        return contract_from_json(terms)
    except LedgerError as exc:
        msg = f"{path}: {exc}"
        raise UsageError(msg) from None


def _now(args: argparse.Namespace) -> datetime:
    return datetime.now(UTC) if args.now is None else _moment(args.now, "--now")


def _moment(text: str, option: str) -> datetime:
    from microgrid import parse_datetime

    try:
        moment = parse_datetime(text, "UTC")
    except ValueError as exc:
        msg = f"{option}: {exc}"
        raise UsageError(msg) from None
    return moment.to_pydatetime().astimezone(UTC)


def _bands(text: str) -> list[tuple[int, int]]:
    bands = []
    for k, part in enumerate(text.split(",")):
        lower, sep, upper = part.strip().partition(":")
        if not sep or not lower.isascii() or not upper.isascii():
            msg = f"--bands item {k + 1} {part!r}: write LOWER:UPPER in Wh, e.g. 9000:13000"
            raise UsageError(msg)
        try:
            bands.append((int(lower, 10), int(upper, 10)))
        except ValueError:
            msg = f"--bands item {k + 1} {part!r}: LOWER and UPPER must be whole Wh"
            raise UsageError(msg) from None
    return bands


def _open(args: argparse.Namespace, must_exist: bool = True) -> SqliteLedgerStore:
    from settlement import SqliteLedgerStore

    if must_exist and not args.db.exists():
        msg = f"no ledger at {args.db}; pass --db"
        raise UsageError(msg)
    return SqliteLedgerStore(args.db)


def _coins(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def _guarded(action: Any) -> Any:
    from settlement import LedgerError

    try:
        return action()
    except LedgerError as exc:
        raise UsageError(str(exc)) from None


def _run_create(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import open_contract

    contract = read_terms(args.terms)
    now = _now(args)
    with _open(args, must_exist=False) as store, ContractRegistry(store.path) as registry:
        if registry.get(contract.contract_id) is not None:
            msg = f"contract {contract.contract_id!r} exists; revise it or choose another id"
            raise UsageError(msg)
        _guarded(lambda: open_contract(store, contract, now))
        registry.create(contract, now)
    print(
        f"contract {contract.contract_id}: {len(contract.bands_wh)} intervals from "
        f"{contract.start.isoformat()}, bonus {_coins(contract.bonus)} coin escrowed"
    )
    return 0


def _run_revise(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import revise_band

    first, bands, now = _moment(args.first, "--from"), _bands(args.bands), _now(args)
    with _open(args) as store, ContractRegistry(store.path) as registry:
        record = _guarded(lambda: registry.require(args.contract_id))
        revised = _guarded(lambda: revise_band(record.contract, first, bands, now))
        saved = _guarded(lambda: registry.revise(revised, now))
    print(f"contract {args.contract_id}: revision {saved.revision}, {len(bands)} bands revised")
    return 0


def _run_budget(args: argparse.Namespace) -> int:
    from settlement.contracts import CONTRACT_BUDGET, fund_budget

    now = _now(args)
    with _open(args) as store:
        _guarded(lambda: fund_budget(store, args.amount_minor, args.key, now))
        left = store.balance(CONTRACT_BUDGET)
    print(f"contract budget: {_coins(left)} coin")
    return 0


def _run_deposit(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import fund_deposit

    now = _now(args)
    with _open(args) as store, ContractRegistry(store.path) as registry:
        contract = _guarded(lambda: registry.require(args.contract_id)).contract
        _guarded(lambda: fund_deposit(store, contract, args.amount_minor, args.key, now))
    print(f"contract {args.contract_id}: deposit {_coins(args.amount_minor)} coin")
    return 0


def _run_settle(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry, settle_due

    if args.grace_min < 0:
        msg = f"--grace-min must be ≥ 0, got {args.grace_min}"
        raise UsageError(msg)
    now = _now(args)
    with _open(args) as store, ContractRegistry(store.path) as registry:
        charged = _guarded(
            lambda: settle_due(
                store, registry, args.contract_id, now, timedelta(minutes=args.grace_min)
            )
        )
    total = sum(o.penalty for o in charged)
    print(f"contract {args.contract_id}: {len(charged)} intervals charged, {_coins(total)} coin")
    return 0


def _run_statement(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import statement

    with _open(args) as store, ContractRegistry(store.path) as registry:
        record = _guarded(lambda: registry.require(args.contract_id))
        contract = record.contract
        report = statement(store, contract, registry.outcomes(args.contract_id))
    print(
        f"contract {contract.contract_id} (meter {contract.meter_id}, revision "
        f"{record.revision}{', closed' if record.closed else ''})"
    )
    print(
        f"{'interval':<25} {'kWh':>8} {'band kWh':>13} {'over':>6} {'under':>6} "
        f"{'penalty':>10} {'bonus':>10} {'deposit':>10} {'owed':>10} {'bonus left':>11}"
    )
    for row in report.rows:
        o = row.outcome
        lower, upper = contract.bands_wh[contract.index_of(o.start)]
        flags = ("*" if o.estimated else "") + ("g" if o.under_waived else "")
        print(
            f"{o.start.isoformat():<25} {o.energy_wh / 1000:>7.2f}{flags:<1} "
            f"{lower / 1000:>6.1f}–{upper / 1000:<6.1f} {o.over_wh / 1000:>6.2f} "
            f"{o.under_wh / 1000:>6.2f} {_coins(o.penalty):>10} {_coins(row.from_bonus):>10} "
            f"{_coins(row.from_deposit):>10} {_coins(row.receivable):>10} "
            f"{_coins(row.bonus_left):>11}"
        )
    print(
        f"penalties {_coins(report.penalties)}, owed {_coins(report.receivable)}, bonus left "
        f"{_coins(report.bonus_left)}"
        + ("" if report.discount is None else f", discount {_coins(report.discount)}")
        + "  (* estimated reading, g the grid's shortfall waived)"
    )
    return 0


def _run_close(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import close_contract, statement

    now = _now(args)
    with _open(args) as store, ContractRegistry(store.path) as registry:
        contract = _guarded(lambda: registry.require(args.contract_id)).contract
        if now < contract.end:
            msg = f"contract {args.contract_id} runs until {contract.end.isoformat()}; close after"
            raise UsageError(msg)
        _guarded(lambda: close_contract(store, contract, now))
        registry.mark_closed(args.contract_id, now)
        report = statement(store, contract, registry.outcomes(args.contract_id))
    print(f"contract {args.contract_id} closed: discount {_coins(report.discount or 0)} coin")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from settlement.contract_registry import ContractRegistry
    from settlement.contracts import statement

    with _open(args) as store, ContractRegistry(store.path) as registry:
        records = registry.all()
        for record in records:
            c = record.contract
            report = statement(store, c, registry.outcomes(c.contract_id))
            print(
                f"{c.contract_id:<24} {c.meter_id:<6} {c.start.isoformat()} – "
                f"{c.end.isoformat()}  {'closed' if record.closed else 'open':<6} "
                f"intervals {len(report.rows)}/{len(c.bands_wh)}  penalties "
                f"{_coins(report.penalties)}  bonus left {_coins(report.bonus_left)}"
            )
    if not records:
        print("no contracts")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from microgrid import load_site
    from scenarios.contracts import ContractScenario, compare_contracts

    if args.weeks < 1 or args.runs < 1:
        msg = f"--weeks and --runs must be at least 1, got {args.weeks} and {args.runs}"
        raise UsageError(msg)
    if not 0 <= args.slip <= 1 or args.supply_ratio <= 0:
        msg = "--slip must be in [0, 1] and --supply-ratio > 0"
        raise UsageError(msg)
    scenario = ContractScenario(
        weeks=args.weeks,
        runs=args.runs,
        seed=args.seed,
        slip_probability=args.slip,
        supply_ratio=args.supply_ratio,
    )
    try:
        frame = compare_contracts(load_site(args.site), scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = frame.drop(columns="run").groupby("mode").mean().T
    print(table[["uncontracted", "contracted"]].round(3).to_string())
    return 0
