"""The dispatch service: forecast, dispatch, control, settlement and staking jobs over one site.

Wiring only (DESIGN.md §9): every job reads its inputs, calls the pure core in the
packages and writes the result —

- ``control`` (every few seconds): :meth:`controllers.control.Controller.cycle`; meter
  readings go to the ledger at most once per reading slot (5 min by default); the
  prepaid credit of every connection is re-decided from the balances. Live, it runs in
  a process of its own (:class:`lastwatt.control_loop.ControlProcess`,
  :meth:`Service.use_control_process`, :meth:`Service.run_control_here`);
- ``weather`` (hourly by default): fetch the forecast feed over HTTP into its cache
  (:mod:`forecasts.feed`), in a thread;
- ``forecast`` (hourly): PV quantiles and demand for the next horizon from the best
  weather at hand — the feed, a dropped file, the last good feed, the climatology — in
  a worker thread; a fallback is flagged on the plan and raised as an alarm;
- ``dispatch`` (every 15 min): the tiered MILP from the measured state of charge, credit,
  relay states, stakes and the reserve setting, solved in a worker thread so that the
  control cycle keeps running the last schedule meanwhile;
- ``settle`` (hourly): every hour closed by readings, then hours still missing some; then
  the demand model learns each closed hour from the meters (:mod:`forecasts.learned`),
  leaving out connections that were switched off or limited during it;
- ``staking`` (daily, local midnight): settles each ended round once;
- ``retention`` (daily): old telemetry to hourly means, readings of old settled hours to
  the first and last of each hour per meter (:class:`lastwatt.config.RetentionSettings`);
- ``verify`` (every 6 h): the ledger's whole hash chain and checkpoints, in a thread; a
  failure is the critical ``verify_failed`` alarm (:func:`settlement.anchor.verify_store`).

State lives under a data directory: the ledger (``ledger.sqlite``: journal, balances,
readings, stake choices) and the service's own state (``service.sqlite``: progress,
last schedule, holds, telemetry, job runs). Every effect is idempotent (readings per
meter and instant, settlement per hour, rounds per number, payments per payment id), so
a service killed at any point and restarted neither loses nor doubles anything.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from websockets.asyncio.server import Server as WebSocketServer

from controllers.control import Clock, Controller, ControllerSettings, CycleResult
from controllers.failsafe import FailsafeSettings
from controllers.ocpp_central import CentralSystem
from controllers.simulator import ManualClock
from dispatch import (
    DispatchPolicy,
    DispatchStatus,
    RelayState,
    Schedule,
    SolverSettings,
    problem_from_site,
    solve_dispatch,
)
from dispatch.setpoints import Setpoints, safe_setpoints
from forecasts.demand import demand_kw
from forecasts.feed import (
    FeedCache,
    FeedError,
    WeatherCandidate,
    WeatherChoice,
    WeatherSource,
    choose_weather,
    fetch_feed,
    read_drop_file,
)
from forecasts.forecast import Forecast, forecast_site
from forecasts.learned import DemandLearner
from forecasts.samples import smoothed_forecast
from forecasts.weather import synthetic_weather
from lastwatt.config import RetentionSettings, WeatherSettings
from lastwatt.contract_job import CONTRACT_JOB_ID, ContractJob
from lastwatt.control_loop import ControlProcess, ControlSnapshot
from lastwatt.jobs import Job, market_job
from lastwatt.market_live import LiveMarket, start_central_system
from lastwatt.relay_history import RelayHistory
from lastwatt.state import ServiceState, StoredSchedule
from microgrid import Site, TimeGrid
from microgrid.site import ConnectionKind
from microgrid.units import COIN_SCALE
from settlement import (
    Alarm,
    AlarmKind,
    BusinessOutcome,
    CreditPolicy,
    CreditStatus,
    EnergyStatus,
    FiatConfig,
    LedgerStore,
    SettlementConfig,
    SqliteLedgerStore,
    StakingPolicy,
    StoragePolicy,
    WattBalanceError,
    credit_alarms,
    credit_for_dispatch,
    hourly_energy,
    issue_tokens,
    read_credit,
    record_readings,
    settle_hour,
    settle_pending,
    settle_round,
    stake_totals,
    storage_policy_for,
)
from settlement.anchor import Anchor, create_anchor_key, load_anchor_key, verify_store
from settlement.fiat import topup_batch
from settlement.hourly import price_at
from settlement.settle import reconcile_hour
from settlement.sqlite_store import beside_ledger
from settlement.votes import VoteBook, VoteError, applied_option, site_under_vote

__all__ = ["Service", "ServiceConfig", "open_ledger"]

log = logging.getLogger(__name__)

_QUARTER = dt.timedelta(minutes=15)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
# The ledger's periodic check reads the whole chain (≈ 3.4 s per million rows, in a
# thread; the control loop has its own process): an incremental check would skip an edit
# of an old row that left its stored hash alone. A tampered ledger is an alarm within
# hours, not when someone happens to run verify.
_VERIFY_PERIOD = dt.timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Settings of the service.

    Attributes
    ----------
    data_dir : Path
        Where the ledger and the service state live.
    cycle_s : float
        Control cycle period [s of service time].
    reading_interval_s : float
        Readings go to the ledger at most once per slot of this length [s]; 5 min keeps
        the ledger at ≈ 115 k rows a day for the default site while every hour boundary
        still has a reading within the slot.
    dispatch_period : datetime.timedelta
        Re-plan period (15 min; a fast-forward may replan less often).
    forecast_period : datetime.timedelta
        Forecast refresh period.
    horizon_hours : int
        Dispatch horizon [h].
    solver_time_limit_s : float
        HiGHS time limit [s].
    weather_seed : int
        Seed of the synthetic weather of the climatology fallback (no feed configured,
        or none fresh); the forecast is its 6-h smoothing, so it knows the day type but
        not when the clouds pass.
    weather : WeatherSettings
        The forecast feed, drop file and staleness limit (:mod:`forecasts.feed`).
    retention : RetentionSettings
        How long raw telemetry and readings are kept before downsampling.
    coin_price_fiat_minor : int
        Fiat price of a coin for the payment processor's top-ups.
    credit_policy : CreditPolicy
        Prepaid thresholds and friendly hours.
    staking_policy : StakingPolicy
        Rewards and slashing.
    controller : ControllerSettings
        Modbus and fail-safe settings.
    storage_commission_ppm : int or None
        Settle the battery as a producer (WATT tokens, :mod:`settlement.storage`) with
        this commission per 15 min [ppm]; None settles without storage. Needs the
        site's bulk meter (the controller derives the battery's charge from it).
    storage_bmax_wh : int or None
        Cap on each connection's WATT balance [Wh]; None for no cap.
    checkpoint_dir : Path, optional
        Where the ledger's signed checkpoints go after every post
        (:mod:`settlement.anchor`); default ``<data_dir>/checkpoints``. Point it at the
        operator's backup medium to keep it away from the database.
    anchor_key : Path, optional
        The checkpoints' signing key, created on first start; default
        ``<data_dir>/anchor.key``.
    ledger_url : str or None
        A PostgreSQL conninfo: the ledger lives there, in ``ledger_site``'s schema, shared
        with the other sites of a fleet (:mod:`settlement.postgres_store`). None keeps it
        in ``ledger.sqlite`` under ``data_dir``.
    ledger_site : str
        The site's id in a PostgreSQL ledger.
    market_tick_s : float or None
        Interval of the ``market`` job (expiry, ZI agents, matching, settlement) [s of
        service time]; None: the book moves only on API calls.
    ocpp_host, ocpp_port : str, int
        Where the chargers' OCPP 1.6-J central system listens when the site declares
        chargers (port 0: any free port; ``lastwatt serve`` defaults to 9000).
    """

    data_dir: Path
    cycle_s: float = 5.0
    reading_interval_s: float = 300.0
    dispatch_period: dt.timedelta = _QUARTER
    forecast_period: dt.timedelta = _HOUR
    horizon_hours: int = 24
    solver_time_limit_s: float = 10.0
    weather_seed: int = 0
    weather: WeatherSettings = field(default_factory=WeatherSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    coin_price_fiat_minor: int = 650
    credit_policy: CreditPolicy = field(default_factory=CreditPolicy)
    staking_policy: StakingPolicy = field(default_factory=StakingPolicy)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    storage_commission_ppm: int | None = StoragePolicy().commission_ppm
    storage_bmax_wh: int | None = None
    checkpoint_dir: Path | None = None
    anchor_key: Path | None = None
    ledger_url: str | None = None
    ledger_site: str = "default"
    market_tick_s: float | None = 60.0
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = 0


def _anchor(config: ServiceConfig) -> Anchor:
    """The ledger's anchor: the configured checkpoint folder and key (created if missing)."""
    data = Path(config.data_dir)
    key_path = config.anchor_key or data / "anchor.key"
    key = load_anchor_key(key_path) if key_path.exists() else create_anchor_key(key_path)
    return Anchor(config.checkpoint_dir or data / "checkpoints", key)


def open_ledger(config: ServiceConfig) -> LedgerStore:
    """The service's ledger: SQLite under the data directory, or a fleet's PostgreSQL."""
    if config.ledger_url is None:
        return SqliteLedgerStore(Path(config.data_dir) / "ledger.sqlite", anchor=_anchor(config))
    from settlement.postgres_store import PostgresLedgerStore

    return PostgresLedgerStore(config.ledger_url, config.ledger_site, anchor=_anchor(config))


def _floor(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return epoch + ((moment - epoch) // step) * step


class Service:
    """The jobs of one site and their shared state (module docstring).

    Parameters
    ----------
    site : Site
        The site (its gateways are where the controller connects).
    config : ServiceConfig
        Settings.
    clock : Clock
        Service time (the system clock live; a simulated clock in a fast-forward).
    webhook_secret : bytes, optional
        The payment processor's HMAC secret; webhooks are refused without one.
    """

    def __init__(
        self,
        site: Site,
        config: ServiceConfig,
        clock: Clock,
        webhook_secret: bytes | None = None,
    ) -> None:
        self.site = site
        self.config = config
        self.clock = clock
        data = Path(config.data_dir)
        self.store = open_ledger(config)
        self.state = ServiceState(data / "service.sqlite")
        self.controller = Controller(site, config.controller, clock)
        storage = None
        if config.storage_commission_ppm is not None and site.bulk_meter is not None:
            storage = storage_policy_for(
                site, commission_ppm=config.storage_commission_ppm, bmax_wh=config.storage_bmax_wh
            )
        self.settlement = SettlementConfig(storage=storage)
        self.fiat = (
            None
            if webhook_secret is None
            else FiatConfig(webhook_secret, coin_price_fiat_minor=config.coin_price_fiat_minor)
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lastwatt-compute")
        self._dispatch_lock = asyncio.Lock()
        self._forecast_lock = asyncio.Lock()
        self.tz = zoneinfo.ZoneInfo(site.location.timezone)
        self.forecast: Forecast | None = None
        self.weather_cache = FeedCache(data / "weather")
        self.weather_choice: WeatherChoice | None = None
        self.weather_fetch_error: str | None = None
        self.weather_fetched_at: dt.datetime | None = None
        ids = [c.id for c in site.connections]
        stored_demand = self.state.get("demand_model")
        self.demand = (
            DemandLearner(ids)
            if stored_demand is None
            else DemandLearner.from_json(stored_demand, ids)
        )
        # Per hour (UTC start): connections seen off or limited by a control cycle in it.
        self._censored: dict[dt.datetime, set[str]] = {}
        self._unit_of = {
            c.id: c.relay_group if c.kind is ConnectionKind.HOUSEHOLD else c.id
            for c in site.connections
            if c.kind is not ConnectionKind.PRIORITY
        }
        self.schedule: Schedule | None = None
        self.stored_schedule: StoredSchedule | None = None
        self.last_cycle: CycleResult | None = None
        self.credit: dict[str, CreditStatus] = {}
        self._connected: dict[str, bool] = {}
        self._last_slot: dt.datetime | None = None
        self._soc_kwh: float | None = None
        self._relays = RelayHistory()
        self._owner = threading.get_ident()
        # In the control process, the control job's SQLite work (readings, alarms, credit,
        # job log; each commit an fsync) runs on this one worker, owning its connections,
        # so a slow disk never holds up a cycle.
        self._control_io: ThreadPoolExecutor | None = None
        self._io_connections: tuple[LedgerStore, ServiceState] | None = None
        # With a control process: the service's link to it, or (in the child) where each
        # cycle's snapshot goes.
        self._process: ControlProcess | None = None
        self._report: Callable[[ControlSnapshot], None] | None = None
        self.started = False
        self.dispatch_relays_at_start: dict[str, RelayState] = {}
        self.setpoints: Setpoints | None = None  # in force: the plan's, or the safe ones
        self.alarms: collections.deque[Alarm] = collections.deque(maxlen=1000)  # the latest
        self._household_groups = tuple(g.id for g in site.relay_groups)
        self._switchable = (*self._household_groups, *(b.id for b in site.businesses))
        # The one order book (API, market job, chargers); Bmax from the storage cap.
        self.market = LiveMarket(self.store, clock.now, data, config.storage_bmax_wh)
        self.ocpp: CentralSystem | None = None
        self._ocpp_server: WebSocketServer | None = None
        self.contracts = ContractJob(
            self.store, self.state, data, clock.now, lambda: self.stored_schedule
        )

    # --- where the control loop runs -------------------------------------------------------
    def use_control_process(self, process: ControlProcess) -> None:
        """Let ``process`` run the control job (:class:`lastwatt.control_loop.ControlProcess`).

        Call before :meth:`start`, and start ``process`` before :meth:`start` so that the
        first plan starts from a measured state. Setpoints, holds and releases are then
        sent to it; what it measures and decides arrives as snapshots
        (:meth:`take_snapshot`); :meth:`shutdown` stops it (devices left safe).
        """
        if self.started:
            msg = "choose the control process before the service starts"
            raise RuntimeError(msg)
        self._process = process

    def take_snapshot(self, snapshot: ControlSnapshot) -> None:
        """Take a control cycle's outcome from the control process (replaced whole)."""
        self.last_cycle = snapshot.cycle
        self.credit = snapshot.credit
        if snapshot.soc_kwh is not None:
            self._soc_kwh = snapshot.soc_kwh
        self._relays = snapshot.relays
        self._censored = {hour: set(ids) for hour, ids in snapshot.censored.items()}
        self.alarms.extend(snapshot.cycle.alarms)

    def control_process_died(self, exit_code: int | None) -> None:
        """Raise the critical alarm of a control process that died (it is restarted)."""
        how = "was killed" if exit_code is not None and exit_code < 0 else "exited"
        message = (
            f"the control process {how} (exit code {exit_code}); the service restarts it "
            "and re-sends the plan — meanwhile the devices' own timers revert them to their "
            "safe values. Check the service log for the cause"
        )
        self.store.add_alarms(
            [Alarm(AlarmKind.CONTROL_RESTARTED, "control", self.clock.now(), message)]
        )

    def control_process_started(self) -> None:
        """Hand a (re)started control process the plan in force."""
        if self._process is not None and self.setpoints is not None:
            self._process.send(("setpoints", self.setpoints))

    def run_control_here(self, report: Callable[[ControlSnapshot], None]) -> None:
        """Make this the control process's service: it runs only the control job.

        Restores what the control job needs (holds, relay history, the last stored plan);
        its SQLite work goes to a worker thread of its own (as on a control thread), and
        after each cycle's record ``report`` gets a :class:`ControlSnapshot`.
        """
        self._control_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lastwatt-ctl-io")
        self._report = report
        self._restore_control()

    async def leave_control(self) -> None:
        """End the control process's service: devices to their safe state, stores closed."""
        await self._leave_safe()
        self._executor.shutdown(wait=True)
        self.store.close()
        self.state.close()

    def _report_cycle(self, result: CycleResult, relays: RelayHistory) -> None:
        """Hand the service the cycle just recorded (on the control job's worker)."""
        if self._report is None:
            return
        try:
            censored = {hour: frozenset(ids) for hour, ids in self._censored.items()}
            self._report(ControlSnapshot(result, self.credit, self._soc_kwh, relays, censored))
        except Exception:
            log.exception("could not report the control cycle of %s", result.time.isoformat())

    def _io(self) -> tuple[LedgerStore, ServiceState]:
        """The calling thread's connections: the control job's worker has its own."""
        if self._control_io is None or threading.get_ident() == self._owner:
            return self.store, self.state
        if self._io_connections is None:  # only ever the one worker thread gets here
            data = Path(self.config.data_dir)
            self._io_connections = (open_ledger(self.config), ServiceState(data / "service.sqlite"))
        return self._io_connections

    def _close_io_connections(self) -> None:
        if self._io_connections is not None:
            for connection in self._io_connections:
                connection.close()
            self._io_connections = None

    def log_job(
        self,
        job_id: str,
        due: dt.datetime,
        started: dt.datetime,
        duration_s: float,
        error: str | None,
    ) -> None:
        """Record a job's run (the :class:`~lastwatt.jobs.JobLog` of the control thread)."""
        if self._control_io is None:
            self.state.log_job(job_id, due, started, duration_s, error)
        else:
            self._control_io.submit(
                lambda: self._io()[1].log_job(job_id, due, started, duration_s, error)
            )

    # --- life cycle ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """The service's jobs, control first (ties in simulated time run in this order)."""
        c = self.config
        local_midnight = (-self._utc_offset()) % _DAY
        cycle = dt.timedelta(seconds=c.cycle_s)
        return [
            Job("control", cycle, dt.timedelta(0), self.control_job, grace=max(cycle, _QUARTER)),
            Job("weather", self._fetch_period(), dt.timedelta(0), self.weather_job),
            Job("forecast", c.forecast_period, dt.timedelta(0), self.forecast_job),
            Job("dispatch", c.dispatch_period, dt.timedelta(0), self.dispatch_job),
            Job("settle", _HOUR, dt.timedelta(minutes=2), self.settle_job, grace=_HOUR),
            Job("staking", _DAY, local_midnight, self.staking_job, grace=_DAY),
            Job("retention", _DAY, dt.timedelta(hours=1, minutes=30), self.retention_job, _DAY),
            Job("verify", _VERIFY_PERIOD, dt.timedelta(minutes=40), self.verify_job, _DAY),
            # After the hour's readings and settlement: band contracts, hour by hour.
            Job(CONTRACT_JOB_ID, _HOUR, dt.timedelta(minutes=7), self.contracts.run, grace=_HOUR),
            *(
                []
                if c.market_tick_s is None
                else [market_job(self.market.tick_job, dt.timedelta(seconds=c.market_tick_s))]
            ),
        ]

    def _utc_offset(self) -> dt.timedelta:
        return self.clock.now().astimezone(self.tz).utcoffset() or dt.timedelta(0)

    async def start(self) -> None:
        """Restore where the service stopped, then make sure a plan is in force."""
        now = self.clock.now()
        issue_tokens(self.store, self.site, now)
        if self.state.get("staking_epoch") is None:
            self.state.set("staking_epoch", now.astimezone(self.tz).date().isoformat())
        self._restore_control()
        self.started = True
        if self.site.chargers:
            c = self.config
            on_air = await start_central_system(
                self.site, self.store, self.clock.now, self.market, c.ocpp_host, c.ocpp_port
            )
            self.ocpp, self._ocpp_server = on_air or (None, None)
        if self._process is None:  # a control process has measured already
            await self.control_job(now)
        await self.weather_job(now)
        await self.forecast_job(now)
        await self.dispatch_job(now)

    def _restore_control(self) -> None:
        """Holds, relay history and the last stored plan, as the service stopped."""
        for cid, hold in self.state.holds().items():
            self.controller.operator_switch(cid, hold["closed"], reason=hold["reason"])
        # Time in state and shed hours continue from the persisted history; relay states
        # come from the first read-back (relay_history.py).
        self._relays = RelayHistory.from_json(self.state.get("relay_history"))
        stored = self.state.last_schedule()
        if stored is not None:
            self.stored_schedule = stored
            # The setpoints as they were applied (budgets included); a schedule stored
            # before setpoints were is shown but not applied: the rules hold until the
            # first dispatch, a few seconds from now.
            if stored.setpoints is not None:
                self.apply(stored.setpoints)
                log.info("restored the schedule issued %s", stored.issued_at.isoformat())

    async def shutdown(self) -> None:
        """Leave the devices in their safe state, then close everything."""
        if self._ocpp_server is not None:
            self._ocpp_server.close()
            await self._ocpp_server.wait_closed()
            self._ocpp_server = None
        if self._process is not None:
            await self._process.stop()  # the control process leaves them safe
        else:
            await self._leave_safe()
        self._executor.shutdown(wait=True)
        self.store.close()
        self.state.close()

    async def _leave_safe(self) -> None:
        try:
            fs: FailsafeSettings = self.config.controller.failsafe
            start = pd.Timestamp(_floor(self.clock.now(), _QUARTER))
            pv_kw = self.site.pv.inverter_ac_capacity_kw * fs.pv_safe_limit_pct / 100
            self.apply(safe_setpoints(self.site, start, pv_kw))
            await self.controller.cycle()
            log.info("devices left in their safe state")
        except Exception:
            log.exception("could not apply the safe state; the devices' own timers will")
        await self.controller.close()
        if self._control_io is not None:
            self._control_io.submit(self._close_io_connections)
            self._control_io.shutdown(wait=True)  # what was queued is written first

    def apply(self, setpoints: Setpoints) -> None:
        """Hand setpoints to the controller on the loop that drives it; they are in force."""
        self.setpoints = setpoints
        if self._process is not None:
            self._process.send(("setpoints", setpoints))
            return
        self.controller.set_schedule(setpoints)

    # --- inputs shared by jobs and the API ---------------------------------------------
    def vote_book_path(self) -> Path:
        """Where the household vote's ballots are (:func:`beside_ledger`)."""
        return beside_ledger(self.store, self.config.data_dir, "votes.sqlite")

    def site_for_dispatch(self, now: dt.datetime) -> Site:
        """The site as the community's vote in force has set it (:func:`site_under_vote`)."""
        with VoteBook(self.vote_book_path()) as book:
            option = applied_option(book, self.site, self.current_round(now))
        try:
            return site_under_vote(self.site, option)
        except VoteError as error:  # checked when offered; a changed site may still refuse
            log.warning("dispatch: the vote in force does not apply (%s); site plans kept", error)
            return self.site

    def current_round(self, now: dt.datetime | None = None) -> int:
        """The staking round in force: local days since the service first started, from 1."""
        epoch = dt.date.fromisoformat(self.state.get("staking_epoch"))
        local = (now or self.clock.now()).astimezone(self.tz).date()
        return (local - epoch).days + 1

    @property
    def reserve_enabled(self) -> bool:
        """Whether dispatch keeps the battery reserve (an operator setting)."""
        return bool(self.state.get("reserve_enabled", True))

    def set_reserve(self, enabled: bool) -> None:
        """Change the reserve setting; the next dispatch uses it."""
        self.state.set("reserve_enabled", enabled)

    def hold(self, connection_id: str, closed: bool, reason: str) -> None:
        """Operator: hold a relay open or closed (persisted; survives restarts)."""
        self.controller.operator_switch(connection_id, closed, reason=reason)
        self.state.set_hold(connection_id, closed, reason, self.clock.now())
        if self._process is not None:
            self._process.send(("hold", connection_id, closed, reason))

    def release(self, connection_id: str) -> bool:
        """Operator: end a hold; whether there was one."""
        self.controller.operator_release(connection_id)
        if self._process is not None:
            self._process.send(("release", connection_id))
        return self.state.release_hold(connection_id)

    def open_credit(self, amounts_minor: Mapping[ConnectionKind, int]) -> int:
        """Opening credit per connection kind, through the fiat bridge (idempotent per meter).

        Returns the number of meters credited for the first time.
        """
        if self.fiat is None:
            msg = "opening credit goes through the fiat bridge; configure its secret"
            raise ValueError(msg)
        price = self.fiat.coin_price_fiat_minor
        batches = []
        for c in self.site.connections:
            coins = amounts_minor.get(c.kind, 0)
            if coins > 0:
                fiat_minor = -(-coins * price // COIN_SCALE)
                batch, _, _ = topup_batch(f"opening-{c.id}", f"meter:{c.id}", fiat_minor, self.fiat)
                batches.append(batch)
        posted = self.store.post_many(batches, self.clock.now())
        return sum(not p.replayed for p in posted)

    # --- control -----------------------------------------------------------------------------
    async def control_job(self, due: dt.datetime) -> None:
        """One control cycle; readings to the ledger once per slot; credit re-decided.

        Runs in the control process when there is one (:meth:`run_control_here`); its
        SQLite work then goes to the control job's own worker thread, in order, and the
        credit it decides reaches the controller for the next cycle.
        """
        # A stepped clock waits for the meter sweeps (deterministic); a running clock lets
        # them go on at their buses' pace, harvested by later cycles.
        result = await self.controller.cycle(wait_for_sweeps=isinstance(self.clock, ManualClock))
        self.last_cycle = result
        m = result.measured
        if m.soc_kwh is not None:
            self._soc_kwh = m.soc_kwh
        self._relays.observe(m.relays_closed, result.time, self._household_groups)
        self.alarms.extend(result.alarms)
        if self._control_io is None:
            self._record_cycle(result)
        else:
            self._control_io.submit(self._record_cycle_logged, result)
            if self._report is not None:  # after the record: with the credit it decided
                self._control_io.submit(self._report_cycle, result, copy.deepcopy(self._relays))

    def _record_cycle_logged(self, result: CycleResult) -> None:
        try:
            self._record_cycle(result)
        except Exception:  # the next cycle's record tries again; never stop the worker
            log.exception("could not record the control cycle of %s", result.time.isoformat())

    def _record_cycle(self, result: CycleResult) -> None:
        """A cycle's alarms, readings (once per slot), telemetry and credit decisions."""
        store, state = self._io()
        now = result.time
        store.add_alarms(result.alarms)
        for kind, subject in result.cleared:
            store.clear_alarm(kind, subject, now)
        slot = _floor(now, dt.timedelta(seconds=self.config.reading_interval_s))
        if slot != self._last_slot and result.readings:
            outcome = record_readings(store, self.site, result.readings, recorded_at=now)
            if outcome.late_hours:
                for hour in outcome.late_hours:
                    settle_hour(store, self.site, hour, self.settlement, now)
            state.add_telemetry(now, self._telemetry(result))
            state.set("relay_history", self._relays.to_json())
            state.set("last_reading_at", now.isoformat())
            if state.get("first_reading_at") is None:
                state.set("first_reading_at", now.isoformat())
            self._last_slot = slot
        self._note_censored(now, result.measured.relays_closed)
        credit = read_credit(store, self.site, now, self._connected, self.config.credit_policy)
        raised, cleared = credit_alarms(self.credit, credit, now)
        store.add_alarms(raised)
        for kind, subject in cleared:
            store.clear_alarm(kind, subject, now)
        self.credit = credit
        self._connected = {cid: s.connected for cid, s in credit.items()}
        self.controller.set_credit(credit_for_dispatch(credit))

    def _note_censored(self, now: dt.datetime, relays_closed: Mapping[str, bool]) -> None:
        """Remember who was off or limited in this hour (their demand is not learned)."""
        hour = _floor(now, _HOUR)
        off = self._censored.setdefault(hour, set())
        for cid, unit in self._unit_of.items():
            if unit is not None and relays_closed.get(unit) is False:
                off.add(cid)
        off.update(cid for cid, status in self.credit.items() if not status.connected)
        for old in [h for h in self._censored if h < hour - _DAY]:
            del self._censored[old]  # bounded: a day of hours at most

    def _telemetry(self, result: CycleResult) -> dict[str, Any]:
        m = result.measured
        return {
            "mode": result.mode.value,
            "pv_kw": m.pv_kw,
            "battery_kw": m.battery_kw,
            "soc_kwh": m.soc_kwh,
            "soc_fraction": m.soc_fraction,
            "load_kw": m.load_kw,
            "meters_missing": m.meters_missing,
            "faults": len(result.faults),
            # Device events since the start, by alarm kind (trips, budgets, inverter).
            "events": dict(self.controller.events.counts),
        }

    # --- weather and forecast ---------------------------------------------------------------
    def _fetch_period(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.config.weather.fetch_minutes)

    async def weather_job(self, due: dt.datetime) -> None:
        """Fetch the forecast feed into its cache (a thread: the loop keeps running)."""
        settings = self.config.weather
        if settings.feed_url is None:
            return
        try:
            payload, _ = await asyncio.to_thread(fetch_feed, settings.feed_url, settings.timeout_s)
        except FeedError as exc:
            self.weather_fetch_error = str(exc)
            log.warning("weather feed: %s", exc)
            return
        now = self.clock.now()
        self.weather_cache.save(payload, now)
        self.weather_fetch_error = None
        self.weather_fetched_at = now

    def _weather_candidates(self) -> list[WeatherCandidate]:
        candidates = []
        cached = self.weather_cache.load()
        if cached is not None:
            candidates.append(cached)
        drop = self.config.weather.drop_file
        if drop is not None:
            try:
                dropped = read_drop_file(drop)
            except FeedError as exc:
                log.warning("weather: %s", exc)
                dropped = None
            if dropped is not None:
                candidates.append(WeatherCandidate(dropped[0], dropped[1], WeatherSource.DROP_FILE))
        return candidates

    def _climatology(self, times: pd.DatetimeIndex) -> pd.DataFrame:
        return _climatology(self.site, self.config.weather_seed, times)

    async def forecast_job(self, due: dt.datetime) -> None:
        """Forecast PV and demand from the current hour over the horizon plus a margin."""
        async with self._forecast_lock:
            now = self.clock.now()
            start = _floor(now, _HOUR)
            periods = (self.config.horizon_hours + 2) * 4
            grid = TimeGrid(start=pd.Timestamp(start), periods=periods)
            choice = choose_weather(
                grid.index,
                now,
                self._weather_candidates(),
                dt.timedelta(hours=self.config.weather.max_age_hours),
                self.weather_fetch_error,
                self.config.weather.feed_url is not None,
                self._climatology,
            )
            self._note_weather(choice, now)
            loop = asyncio.get_running_loop()
            forecast = await loop.run_in_executor(
                self._executor, _forecast, self.site, grid, choice.weather, now
            )
            learned = self.demand.apply(forecast.demand_kw, self.site.location.timezone)
            self.forecast = dataclasses.replace(forecast, demand_kw=learned)

    def _note_weather(self, choice: WeatherChoice, now: dt.datetime) -> None:
        """Keep the choice for the plan; alarm when a fallback starts or changes kind."""
        previous = self.weather_choice
        self.weather_choice = choice
        if previous is not None and previous.source is choice.source:
            return  # a standing fallback is one alarm, not one per forecast
        at = now.astimezone(dt.UTC)
        if previous is not None and previous.fallback:
            # Each kind of fallback is its own condition: it ends when the source changes.
            self.store.clear_alarm(AlarmKind.WEATHER_FALLBACK, f"weather:{previous.source}", at)
        if not choice.fallback:
            if previous is not None and previous.fallback:
                log.info("weather: back on %s", choice.source.value)
            return
        message = f"weather forecast fell back to {choice.source.value}: {choice.reason}"
        # A real template: the log's repeat filter keys on it, and each kind is its own line.
        log.warning("weather forecast fell back to %s: %s", choice.source.value, choice.reason)
        subject = f"weather:{choice.source}"
        self.store.add_alarms([Alarm(AlarmKind.WEATHER_FALLBACK, subject, at, message)])

    # --- dispatch ----------------------------------------------------------------------------
    def stakes(self, now: dt.datetime | None = None) -> dict[str, int] | None:
        """Stake tokens per business in force now; None (value-score default) if nobody staked."""
        totals = stake_totals(self.store, self.site, self.current_round(now))
        return totals if sum(totals.values()) > 0 else None

    async def dispatch_job(self, due: dt.datetime) -> None:
        """Re-plan from the measured state (a worker thread solves; control goes on)."""
        async with self._dispatch_lock:
            now = self.clock.now()
            start = _floor(now, _QUARTER)
            grid = TimeGrid(start=pd.Timestamp(start), periods=self.config.horizon_hours * 4)
            if self.forecast is None or self.forecast.pv_kw.index[-1] < grid.index[-1]:
                await self.forecast_job(due)
            assert self.forecast is not None
            forecast = self.forecast
            pv = forecast.pv_kw.reindex(grid.index).ffill().fillna(0.0)
            # Prosumers: what their meters import is demand, what they export is supply.
            demand_frame = forecast.grid_demand_kw().reindex(grid.index).ffill().fillna(0.0)
            demand = {c: demand_frame[c].to_numpy() for c in demand_frame.columns}
            export_frame = forecast.prosumer_export_kw().reindex(grid.index).ffill().fillna(0.0)
            export = {c: export_frame[c].to_numpy() for c in export_frame.columns}
            soc = self._soc_kwh
            if soc is None:
                soc = self.site.battery.energy_capacity_kwh * 0.5
                log.warning("dispatch: no measured state of charge yet; assuming half full")
            credit = credit_for_dispatch(self.credit) if self.credit else {}
            for cid, hold in self.state.holds().items():
                credit[cid] = bool(hold["closed"])
            relays = self._relays.relay_states(now, self._switchable)
            if self.schedule is None:
                self.dispatch_relays_at_start = relays  # for the operator and the tests
            site = self.site_for_dispatch(now)
            problem = problem_from_site(
                site,
                grid,
                pv["p50"].to_numpy(),
                pv["p10"].to_numpy(),
                demand,
                soc_kwh=soc,
                stakes=self.stakes(now),
                credit=credit,
                relays=relays,
                shed_hours=self._relays.shed_hours,
                policy=DispatchPolicy.from_site(site, reserve=self.reserve_enabled),
                export_kw=export,
                contracts=self.contracts.bands(grid.index),  # the contract tier's bands
            )
            settings = SolverSettings(time_limit_s=self.config.solver_time_limit_s)
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.time_limit_s)
            loop = asyncio.get_running_loop()
            schedule: Schedule = await loop.run_in_executor(
                self._executor, solve_dispatch, problem, settings, self.schedule, deadline
            )
            self.schedule = schedule
            setpoints = Setpoints.from_schedule(schedule)
            self.apply(setpoints)
            self._plan_alarms(schedule, now)
            summary = _summary(schedule, now, soc)
            if self.weather_choice is not None:
                summary["weather"] = self.weather_choice.flag()
            summary["demand_error"] = dataclasses.asdict(self.demand.error())
            self.state.save_schedule(
                now,
                schedule.status.value,
                setpoints,
                schedule.plan,
                schedule.allotment_kw,
                schedule.reasons,
                summary,
            )
            self.stored_schedule = self.state.last_schedule()
            log.info(
                "dispatch %s: %s, solver %.2f s",
                start.isoformat(),
                schedule.status.value,
                schedule.solver.total_s if schedule.solver else float("nan"),
            )

    def _plan_alarms(self, schedule: Schedule, now: dt.datetime) -> None:
        """Raise (or clear) the plan's fallback and violations as standing conditions."""
        fell_back = schedule.status is DispatchStatus.FALLBACK
        violations = {k: v for k, v in schedule.violations_kwh.items() if v > 1e-3}
        conditions = {
            AlarmKind.PLAN_FALLBACK: (
                "dispatch fell back to the rule-based plan (the solver failed); the "
                "controller applies it — check the service log for the solver's error"
                if fell_back
                else None
            ),
            AlarmKind.PLAN_VIOLATIONS: (
                "the plan in force violates "
                + ", ".join(f"{k} by {v:.2f} kWh" for k, v in sorted(violations.items()))
                + " — not enough energy to meet every constraint"
                if violations
                else None
            ),
        }
        for kind, message in conditions.items():
            if message is None:
                self.store.clear_alarm(kind, "dispatch", now)
            else:
                self.store.add_alarms([Alarm(kind, "dispatch", now, message)])

    # --- settlement -------------------------------------------------------------------------
    async def settle_job(self, due: dt.datetime) -> None:
        """Settle every hour closed by recorded readings, then retry incomplete ones."""
        last = self.state.get("last_reading_at")
        if last is None:
            return
        closed_until = _floor(dt.datetime.fromisoformat(last), _HOUR)
        nxt = self.state.get("settle_next_hour") or self.state.get("first_reading_at")
        hour = _floor(dt.datetime.fromisoformat(nxt), _HOUR)
        now = self.clock.now()
        while hour + _HOUR <= closed_until:
            try:
                settle_hour(self.store, self.site, hour, self.settlement, now)
                self._reconcile_watt(hour)
            except WattBalanceError:
                pass  # alarmed and marked for retry (settle_pending); go on with the next
            hour += _HOUR
            self.state.set("settle_next_hour", hour.isoformat())
        settle_pending(self.store, self.site, self.settlement, now)
        self._learn_demand(closed_until)

    def _reconcile_watt(self, hour: dt.datetime) -> None:
        """Σ WATT against the state of charge measured at the hour's end (an alarm if not)."""
        if self.settlement.storage is None:
            return
        end = hour + _HOUR
        slot = dt.timedelta(seconds=self.config.reading_interval_s)
        samples = [
            (dt.datetime.fromisoformat(t["time"]), t["soc_kwh"])
            for t in self.state.telemetry(since=end - slot, limit=50)
            if t.get("soc_kwh") is not None
        ]
        before = [(t, v) for t, v in samples if t <= end]
        after = [(t, v) for t, v in samples if t >= end]
        if not before or not after:
            return  # no measurement around the hour's end: nothing to reconcile against
        (t0, v0), (t1, v1) = before[-1], after[0]
        share = 0.0 if t1 == t0 else (end - t0) / (t1 - t0)
        stored_wh = (v0 + (v1 - v0) * share) * 1000.0
        unheld = self.state.get("watt_unheld_wh")
        result = reconcile_hour(self.store, self.site, hour, self.settlement, stored_wh, unheld)
        if result is not None:  # a mismatch is alarmed once; the next period starts afresh
            self.state.set("watt_unheld_wh", result.unheld_wh)

    def _learn_demand(self, closed_until: dt.datetime) -> None:
        """Learn every hour closed by readings that a control cycle watched (censoring)."""
        done = self.state.get("demand_learned_through")
        if done is None:  # learn from the hours watched from now on
            self.state.set("demand_learned_through", closed_until.isoformat())
            return
        hour = max(
            dt.datetime.fromisoformat(done), closed_until - _DAY
        )  # after a long stop: the last day only
        while hour + _HOUR <= closed_until:
            censored = self._censored.get(hour)
            if censored is not None:  # unwatched hours (service down) are not learned
                self._learn_hour(hour, censored)
            hour += _HOUR
            self.state.set("demand_learned_through", hour.isoformat())
        self.state.set("demand_model", self.demand.to_json())

    def _learn_hour(self, h0: dt.datetime, censored: set[str]) -> None:
        slot = dt.timedelta(seconds=self.config.reading_interval_s)
        by_meter: dict[str, list[Any]] = {}
        for r in self.store.readings(h0 - slot, h0 + _HOUR + slot):
            by_meter.setdefault(r.meter_id, []).append(r)
        metered = {}
        for cid, readings in by_meter.items():
            energy = hourly_energy(cid, readings, h0)
            if energy.status is EnergyStatus.MEASURED:
                metered[cid] = energy.import_wh / 1000
        profile = demand_kw(self.site, TimeGrid(start=pd.Timestamp(h0), periods=4)).sum() * 0.25
        local_hour = h0.astimezone(self.tz).hour
        prior = {str(cid): float(kwh) for cid, kwh in profile.items()}
        self.demand.observe(local_hour, metered, prior, censored)

    # --- retention ---------------------------------------------------------------------------
    async def retention_job(self, due: dt.datetime) -> None:
        """Downsample telemetry and the readings of settled hours past their raw period."""
        r = self.config.retention
        now = self.clock.now()
        folded, dropped = self.state.downsample_telemetry(
            now - dt.timedelta(days=r.telemetry_raw_days),
            now - dt.timedelta(days=r.telemetry_hourly_days),
        )
        first = self.state.get("readings_thinned_until") or self.state.get("first_reading_at")
        if first is None:
            return
        site_key = SettlementConfig().site_key(self.site)
        start = _floor(dt.datetime.fromisoformat(first), _HOUR)
        end = _floor(now - dt.timedelta(days=r.readings_raw_days), _HOUR)
        thinned = 0
        while start < end:  # a day per transaction: the control job keeps its pace
            stop = min(start + _DAY, end)
            thinned += self.store.thin_readings(site_key, start, stop)
            self.state.set("readings_thinned_until", stop.isoformat())
            start = stop
            await asyncio.sleep(0)
        log.info(
            "retention: %d telemetry snapshots to hourly means, %d hourly rows and %d readings "
            "deleted",
            folded,
            dropped,
            thinned,
        )

    # --- tamper evidence --------------------------------------------------------------------
    async def verify_job(self, due: dt.datetime) -> None:
        """Verify the ledger in a thread; a failure is the critical ``verify_failed`` alarm."""
        report = await asyncio.to_thread(verify_store, self.store, None, self.clock.now())
        if report.ok:
            log.info("ledger verified: %d journal rows", report.rows)
        else:
            log.error(
                "the ledger failed verification (first bad row %s): %s",
                report.first_bad_seq,
                report.problems[0].message,
            )

    # --- staking ----------------------------------------------------------------------------
    def round_outcomes(self, round_number: int) -> dict[str, BusinessOutcome]:
        """Per business: served (metered energy > 0), value score, revenue over the round.

        Revenue is not metered; the business's electricity bill at its tariff's midday
        price stands in for it (it grows with the energy the business turned into goods).
        """
        epoch = dt.date.fromisoformat(self.state.get("staking_epoch"))
        day = epoch + dt.timedelta(days=round_number - 1)
        start = dt.datetime.combine(day, dt.time(0), self.tz).astimezone(dt.UTC)
        end = start + _DAY
        ids = [b.id for b in self.site.businesses]
        readings = self.store.readings(start, end, ids)
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for r in readings:
            first.setdefault(r.meter_id, r.import_wh)
            last[r.meter_id] = r.import_wh
        outcomes = {}
        for b in self.site.businesses:
            wh = (last.get(b.id, 0) - first.get(b.id, 0)) % 2**32
            price = price_at(self.site.tariffs[b.tariff], 12)
            value = b.business.value_score if b.business is not None else 0.0
            outcomes[b.id] = BusinessOutcome(wh > 0, float(value), wh * price // 1000)
        return outcomes

    async def staking_job(self, due: dt.datetime) -> None:
        """Settle every ended round that is not settled yet (each once, ever)."""
        current = self.current_round()
        done = int(self.state.get("staking_settled_through", 0))
        now = self.clock.now()
        for r in range(done + 1, current):
            plan, posted = settle_round(
                self.store,
                self.site,
                r,
                self.round_outcomes(r),
                self.config.staking_policy,
                now,
            )
            log.info(
                "staking round %d: %d rewarded, %d slashed%s",
                r,
                len(plan.rewards),
                len(plan.slashed),
                " (replayed)" if posted.replayed else "",
            )
            self.state.set("staking_settled_through", r)


def _climatology(site: Site, seed: int, times: pd.DatetimeIndex) -> pd.DataFrame:
    """The site's climatology as a day-ahead forecast of ``times`` (the last fallback)."""
    day0 = times[0].floor("D") - pd.Timedelta(days=1)
    span = pd.date_range(day0, times[-1] + pd.Timedelta(days=1), freq="15min")
    weather = smoothed_forecast(synthetic_weather(span, site.location, seed=seed))
    return weather.loc[times[0] : times[-1]]


def _forecast(site: Site, grid: TimeGrid, weather: pd.DataFrame, now: dt.datetime) -> Forecast:
    return forecast_site(site, grid, weather, issued=pd.Timestamp(now))


def _summary(schedule: Schedule, issued: dt.datetime, soc_kwh: float) -> dict[str, Any]:
    tiers = schedule.tier_energy_kwh()
    return {
        "issued_at": issued.isoformat(),
        "status": schedule.status.value,
        "soc_kwh": round(float(soc_kwh), 3),
        "tiers_kwh": {
            tier: {k: round(float(v), 3) for k, v in row.items()} for tier, row in tiers.iterrows()
        },
        "curtailed_kwh": round(schedule.curtailed_kwh, 3),
        "violations_kwh": {k: round(float(v), 3) for k, v in schedule.violations_kwh.items()},
        "solver_s": float(np.nan_to_num(schedule.solver.total_s if schedule.solver else 0.0)),
    }
