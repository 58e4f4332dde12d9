"""The ``lastwatt`` ledger subcommands (registered by :mod:`lastwatt.cli`).

``lastwatt ledger balances|history|verify|checkpoint|import-readings`` and ``lastwatt
settle``; the work is in :mod:`settlement`, this module only parses, calls and prints.

Commands that post (``settle``, ``import-readings``) and ``verify`` take
``--checkpoints DIR --anchor-key FILE``: posts are then checkpointed
(:mod:`settlement.anchor`) and ``verify`` checks the journal against the checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lastwatt.commands import Subcommands, UsageError, add_site_option, command
from lastwatt.inputs import parse_count, parse_file_time
from lastwatt.storage_options import add_storage_options, storage_policy_from_args

# `lastwatt --help` imports this module to build the parser: settlement and microgrid
# (pandas) are imported by each handler when it runs, and here only for annotations.
if TYPE_CHECKING:
    from microgrid.readings import MeterReading
    from settlement import Asset, SqliteLedgerStore
    from settlement.anchor import Anchor

__all__ = ["DEFAULT_DB", "add_commands", "read_readings_csv"]

DEFAULT_DB = Path("data/ledger.sqlite")
"""Where the ledger lives unless ``--db`` says otherwise."""


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    ledger = command(
        commands,
        "ledger",
        "Inspect and verify the settlement ledger; import meter readings.",
        "lastwatt ledger balances --prefix meter:\nlastwatt ledger verify",
        _no_subcommand,
    )
    sub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="SUBCOMMAND")
    balances = command(
        sub,
        "balances",
        "Print non-zero balances (and, for meters, the prepaid relay decision).",
        "lastwatt ledger balances --prefix meter:H0 --db data/ledger.sqlite",
        _run_balances,
    )
    _add_db_option(balances)
    add_site_option(balances)
    balances.add_argument(
        "--asset", default=None, help="only this asset: coin, stake, fiat or watt (default: all)"
    )
    balances.add_argument("--prefix", default="", help="only accounts starting with this")
    history = command(
        sub,
        "history",
        "Print the latest journal rows of one account, newest first.",
        "lastwatt ledger history meter:H001 --limit 20",
        _run_history,
    )
    _add_db_option(history)
    history.add_argument("account", help="account id, e.g. meter:H001 or user:amina")
    history.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    verify = command(
        sub,
        "verify",
        "Recompute the hash chain and every invariant; name the first bad row (exit 1).",
        "lastwatt ledger verify --db data/ledger.sqlite",
        _run_verify,
    )
    _add_db_option(verify)
    _add_anchor_options(verify)
    add_site_option(verify)
    verify.add_argument(
        "--soc-kwh",
        type=float,
        default=None,
        help="the battery's stored energy measured now [kWh]: the WATT outstanding must not "
        "own more (default: checked against the battery's capacity only)",
    )
    verify.add_argument(
        "--bmax-kwh",
        type=float,
        default=None,
        help="cap on each connection's WATT balance [kWh]: no meter may hold more",
    )
    checkpoint = command(
        sub,
        "checkpoint",
        "Verify the ledger, then sign its chain head into the checkpoint directory "
        "(creates the anchor key on first use).",
        "lastwatt ledger checkpoint --checkpoints /media/backup/lastwatt "
        "--anchor-key ~/.lastwatt/anchor.key",
        _run_checkpoint,
    )
    _add_db_option(checkpoint)
    _add_anchor_options(checkpoint, required=True)
    imports = command(
        sub,
        "import-readings",
        "Record meter readings from a CSV (meter_id,read_at,import_wh[,export_wh]); "
        "re-settle hours they change.",
        "lastwatt ledger import-readings readings.csv",
        _run_import,
    )
    _add_db_option(imports)
    _add_anchor_options(imports)
    add_site_option(imports)
    imports.add_argument("file", type=Path, help="CSV file; read_at in ISO 8601 (UTC if no offset)")
    settle = command(
        commands,
        "settle",
        "Settle one hour from the recorded readings (idempotent; late readings → correction).",
        "lastwatt settle --hour 2026-08-01T10:00Z",
        _run_settle,
    )
    _add_db_option(settle)
    _add_anchor_options(settle)
    add_site_option(settle)
    settle.add_argument(
        "--hour",
        required=True,
        metavar="DATETIME",
        help="start of the hour, ISO 8601; local site time if no offset",
    )
    settle.add_argument(
        "--fee-minor",
        type=int,
        default=None,
        help="utility fee per hour [coin minor units] (default: SettlementConfig's, "
        "10000 = 0.01 coin)",
    )
    add_storage_options(settle)


def _add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", type=Path, default=DEFAULT_DB, help=f"ledger database (default {DEFAULT_DB})"
    )


def _no_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires one
    msg = "name a ledger subcommand: balances, history, verify or import-readings"
    raise UsageError(msg)


def _add_anchor_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        required=required,
        help="checkpoint directory, away from the database (e.g. the operator's backup)",
    )
    parser.add_argument(
        "--anchor-key",
        type=Path,
        metavar="FILE",
        required=required,
        help="the key checkpoints are signed with (not stored with the database)",
    )


def _anchor(args: argparse.Namespace, create_key: bool = False) -> Anchor | None:
    """The anchor the options name, or None without them."""
    from settlement.anchor import Anchor, AnchorError, create_anchor_key, load_anchor_key

    if args.checkpoints is None and args.anchor_key is None:
        return None
    if args.checkpoints is None or args.anchor_key is None:
        msg = "--checkpoints and --anchor-key go together; pass both or neither"
        raise UsageError(msg)
    if args.checkpoints.resolve() == args.db.resolve().parent:
        msg = f"--checkpoints {args.checkpoints} is the database's folder; keep them apart"
        raise UsageError(msg)
    try:
        if create_key and not args.anchor_key.exists():
            key = create_anchor_key(args.anchor_key)
            print(f"created anchor key {args.anchor_key} (mode 0600); back it up apart")
        else:
            key = load_anchor_key(args.anchor_key)
    except (AnchorError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return Anchor(args.checkpoints, key)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_ledger(path: Path) -> bool:
    """Whether a SQLite file has the ledger's journal.

    Opened read-only, so a foreign database is left exactly as it was.
    """
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'"
            ).fetchone()
    except sqlite3.DatabaseError:
        return False
    return found is not None


@contextlib.contextmanager
def _open(
    path: Path, must_exist: bool = True, anchor: Anchor | None = None
) -> Iterator[SqliteLedgerStore]:
    """The ledger at ``path``, removed again if this call created it and the command fails.

    So a refused command leaves no empty ledger file behind.

    Raises
    ------
    UsageError
        Missing (when it must exist), a folder, or not a SQLite database.
    """
    from settlement import SqliteLedgerStore

    if must_exist and not path.exists():
        msg = f"no ledger at {path}; pass --db, or import readings first to create one"
        raise UsageError(msg)
    created = not path.exists()
    if not created:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            msg = f"--db {path}: cannot read it ({exc.strerror})"
            raise UsageError(msg) from None
        if head and head != _SQLITE_MAGIC:
            msg = f"--db {path} is not a SQLite database; point --db at the ledger file"
            raise UsageError(msg)
        if head and not _is_ledger(path):
            msg = (
                f"--db {path} is a SQLite database but not a LastWatt ledger (no journal "
                "table); point --db at the ledger file"
            )
            raise UsageError(msg)
    try:
        store = SqliteLedgerStore(path, anchor=anchor)
    except sqlite3.DatabaseError as exc:
        msg = f"--db {path}: cannot open it as a ledger ({exc})"
        raise UsageError(msg) from None
    try:
        with store:
            yield store
    except BaseException:
        if created:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise


def _coins(minor: int, asset: Asset) -> str:
    from settlement.ledger import ASSET_SCALE

    scale = ASSET_SCALE[asset]
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), scale)
    return f"{sign}{whole}.{frac:06d}"


def _run_balances(args: argparse.Namespace) -> int:
    from microgrid import load_site
    from settlement import Asset, read_credit

    try:
        asset = None if args.asset is None else Asset(args.asset)
    except ValueError:
        msg = f"--asset {args.asset!r}: expected one of {', '.join(a.value for a in Asset)}"
        raise UsageError(msg) from None
    with _open(args.db) as store:
        balances = store.balances(asset, args.prefix)
        site = load_site(args.site)
        credit = read_credit(store, site, datetime.now(UTC))
    if not balances:
        print("no non-zero balances" + (f" under {args.prefix!r}" if args.prefix else ""))
        return 0
    width = max(len(a) for a, _ in balances)
    for (account, a), value in balances.items():
        line = f"{account:<{width}}  {a.value:<5}  {_coins(value, a):>18}"
        status = credit.get(account.removeprefix("meter:")) if a is Asset.COIN else None
        if status is not None and account.startswith("meter:"):
            line += f"  {'on ' if status.connected else 'OFF'} {status.state.value}"
        print(line)
    return 0


def _run_history(args: argparse.Namespace) -> int:
    from settlement import Asset

    if args.limit < 1:
        msg = f"--limit must be at least 1, got {args.limit}"
        raise UsageError(msg)
    with _open(args.db) as store:
        rows = store.history(args.account, args.limit)
    if not rows:
        print(f"no journal rows touch {args.account}")
        return 0
    for r in rows:
        sign = "-" if r.debit == args.account else "+"
        other = r.credit if sign == "-" else r.debit
        when = datetime.fromtimestamp(r.posted_at_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")
        amount = _coins(r.amount, Asset(r.asset))
        print(
            f"{r.seq:>8}  {when}  {sign}{amount:>16} {r.asset:<5} {r.code:<18} {other}"
            f"  [{r.batch_key}]"
        )
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from microgrid import load_site
    from microgrid.units import WATT_SCALE
    from settlement import Asset
    from settlement.anchor import report_verification, verify_anchored
    from settlement.ledger import WATT_ISSUER, meter_account
    from settlement.settle import reconciliation_tolerance_wh, storage_policy_for
    from settlement.storage import watt_invariant_problems

    for name in ("soc_kwh", "bmax_kwh"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            msg = f"--{name.replace('_', '-')} must be a number ≥ 0 kWh, got {value}"
            raise UsageError(msg)
    site = load_site(args.site)
    bmax = None if args.bmax_kwh is None else round(args.bmax_kwh * WATT_SCALE)
    policy = storage_policy_for(site, bmax_wh=bmax)
    anchor = _anchor(args)
    with _open(args.db) as store:
        if anchor is None:
            report = store.verify()
        else:
            report = verify_anchored(store, anchor.directory, anchor.key)
        # A failure is a critical alarm the service's operator sees, not only this output.
        report_verification(store, report, datetime.now(UTC))
        watt = {a: v for (a, _), v in store.balances(Asset.WATT).items()}
        watt_outstanding = -store.balance(WATT_ISSUER, Asset.WATT)
    watt_problems = watt_invariant_problems(
        watt,
        policy,
        site.battery.soc_kwh_max * 1000,
        {meter_account(c.id) for c in site.connections},
        None if args.soc_kwh is None else args.soc_kwh * 1000,
        reconciliation_tolerance_wh(site),
    )
    if watt_problems:
        print("ledger FAILED the WATT invariant:")
        for problem in watt_problems:
            print(f"  {problem}")
        if report.ok:
            return 1
    if report.ok:
        anchored = (
            "matches its last checkpoint"
            if anchor
            else "no anchor given: the chain is only self-consistent"
        )
        print(
            f"ledger OK: {report.rows} journal rows in {report.batches} batches, "
            f"chain head {report.head_hash.hex()[:16]}… ({anchored}); WATT outstanding "
            f"{watt_outstanding / WATT_SCALE:.3f} kWh, all minted for stored energy"
        )
        return 0
    first = report.first_bad_seq
    print(f"ledger FAILED verification: first bad row {first}" if first else "ledger FAILED")
    for p in report.problems[:20]:
        print(f"  {p.message}")
    if len(report.problems) > 20:
        print(f"  … and {len(report.problems) - 20} more")
    return 1


def _run_checkpoint(args: argparse.Namespace) -> int:
    from settlement.anchor import verify_anchored

    anchor = _anchor(args, create_key=True)
    assert anchor is not None  # both options are required
    with _open(args.db) as store:
        report = verify_anchored(store, anchor.directory, anchor.key)
        # Rows after the last checkpoint are what this command anchors, once checked;
        # anything else wrong (a broken chain, a rewrite, a truncation) is refused.
        blocking = [
            p
            for p in report.problems
            if "no checkpoint covers them" not in p.message
            and "no checkpoint to verify against" not in p.message
        ]
        if blocking:
            print("ledger FAILED verification; no checkpoint written:")
            for p in blocking[:20]:
                print(f"  {p.message}")
            return 1
        ordinal = len(store.keys_with_prefix(""))
        written = anchor.checkpoint(report.rows, ordinal, report.head_hash)
    print(
        f"checkpoint written to {written}: {report.rows} rows, "
        f"chain head {report.head_hash.hex()[:16]}…"
    )
    return 0


def read_readings_csv(path: Path) -> list[MeterReading]:
    """Read ``meter_id,read_at,import_wh[,export_wh]`` rows; naive times are UTC.

    Raises
    ------
    UsageError
        Naming the file, the line and what is wrong.
    """
    from microgrid.readings import MeterReading

    if not path.exists():
        msg = f"readings file {path} does not exist"
        raise UsageError(msg)
    readings: list[MeterReading] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"meter_id", "read_at", "import_wh"}
        missing = needed - set(reader.fieldnames or ())
        if missing:
            msg = (
                f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                "need meter_id,read_at,import_wh[,export_wh]"
            )
            raise UsageError(msg)
        for line, row in enumerate(reader, start=2):
            try:
                readings.append(
                    MeterReading(
                        row["meter_id"],
                        parse_file_time(row["read_at"] or "", "read_at"),
                        parse_count(row["import_wh"] or "", "import_wh"),
                        parse_count(row.get("export_wh") or "0", "export_wh"),
                    )
                )
            except (TypeError, ValueError) as exc:
                msg = f"{path}, line {line}: {exc}"
                raise UsageError(msg) from None
    return readings


def _run_import(args: argparse.Namespace) -> int:
    from microgrid import load_site
    from settlement import record_readings, settle_hours

    site = load_site(args.site)
    readings = read_readings_csv(args.file)
    with _open(args.db, must_exist=False, anchor=_anchor(args)) as store:
        outcome = record_readings(store, site, readings)
        print(
            f"{len(outcome.accepted)} readings recorded, {len(outcome.duplicates)} duplicates "
            f"ignored, {len(outcome.conflicts)} conflicting and {len(outcome.unknown)} of "
            "unknown meters rejected"
        )
        for alarm in outcome.alarms[:10]:
            print(f"  alarm {alarm.kind.value}: {alarm.message}")
        if outcome.late_hours:
            results = settle_hours(store, site, outcome.late_hours)
            changed = [r for r in results if r.transfers]
            print(
                f"late readings: re-settled {len(results)} hour(s), {len(changed)} correcting "
                "batch(es)"
            )
    return 0


def _run_settle(args: argparse.Namespace) -> int:
    from microgrid import load_site, parse_datetime
    from settlement import Asset, LedgerError, SettlementConfig, settle_hour

    site = load_site(args.site)
    try:
        hour = parse_datetime(args.hour, site.location.timezone).to_pydatetime()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fee = SettlementConfig().utility_fee_minor if args.fee_minor is None else args.fee_minor
    config = SettlementConfig(utility_fee_minor=fee, storage=storage_policy_from_args(args, site))
    with _open(args.db, must_exist=False, anchor=_anchor(args)) as store:
        try:
            result = settle_hour(store, site, hour, config)
        except LedgerError as exc:
            raise UsageError(str(exc)) from None
    plan = result.plan
    print(
        f"hour {plan.hour.isoformat()}: pool {_coins(plan.pool_minor, Asset.COIN)} coin from "
        f"{len(plan.charges)} consumers, fee {_coins(plan.fee, Asset.COIN)}, paid out "
        f"{_coins(sum(plan.payouts.values()) + sum(plan.account_payouts.values()), Asset.COIN)}"
        f" to {len(plan.payouts) + len(plan.account_payouts)} producers"
        + (f", held {_coins(plan.held, Asset.COIN)}" if plan.held else "")
    )
    if plan.storage is not None:
        s = plan.storage
        print(
            f"storage: minted {sum(s.minted.values())} WATT Wh, burned {sum(s.burned.values())},"
            f" commission {sum(s.commission.values())}, over Bmax {sum(s.over_cap_wh.values())} Wh"
        )
    if result.posted is None:
        print("already settled: nothing changed")
    elif result.posted.replayed:
        print(f"batch {result.posted.key} was already posted (replayed)")
    else:
        kind = "correcting batch" if result.correction else "batch"
        print(f"posted {kind} {result.posted.key} with {len(result.transfers)} transfers")
    if plan.missing:
        shown = ", ".join(plan.missing[:8]) + (" …" if len(plan.missing) > 8 else "")
        print(f"{len(plan.missing)} meter(s) missing a closing reading: {shown}")
    other = [a for a in plan.alarms if a.kind.value != "reading_missing"]
    for alarm in other[:10]:
        print(f"  alarm {alarm.kind.value}: {alarm.message}")
    return 0
