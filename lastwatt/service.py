"""The dispatch service: forecast, dispatch, control, settlement and staking jobs over one site.

Wiring only (DESIGN.md §9): every job reads its inputs, calls the pure core in the
packages and writes the result —

- ``control`` (every few seconds): :meth:`controllers.control.Controller.cycle`; meter
  readings go to the ledger at most once per reading slot (5 min by default); the
  prepaid credit of every connection is re-decided from the balances;
- ``forecast`` (hourly): PV quantiles and demand for the next horizon, in a worker thread;
- ``dispatch`` (every 15 min): the tiered MILP from the measured state of charge, credit,
  relay states, stakes and the reserve setting, solved in a worker thread so that the
  control cycle keeps running the last schedule meanwhile;
- ``settle`` (hourly): every hour closed by readings, then hours still missing some;
- ``staking`` (daily, local midnight): settles each ended round once.

State lives under a data directory: the ledger (``ledger.sqlite``: journal, balances,
readings, stake choices) and the service's own state (``service.sqlite``: progress,
last schedule, holds, telemetry, job runs). Every effect is idempotent (readings per
meter and instant, settlement per hour, rounds per number, payments per payment id), so
a service killed at any point and restarted neither loses nor doubles anything.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import zoneinfo
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controllers.control import Clock, Controller, ControllerSettings, CycleResult
from controllers.failsafe import FailsafeSettings
from dispatch import (
    DispatchPolicy,
    RelayState,
    Schedule,
    SolverSettings,
    problem_from_site,
    solve_dispatch,
)
from dispatch.setpoints import Setpoints, safe_setpoints
from forecasts.forecast import Forecast, forecast_site
from forecasts.samples import smoothed_forecast
from forecasts.weather import synthetic_weather
from lastwatt.jobs import Job
from lastwatt.relay_history import RelayHistory
from lastwatt.state import ServiceState, StoredSchedule
from microgrid import Site, TimeGrid
from microgrid.site import ConnectionKind
from microgrid.units import COIN_SCALE
from settlement import (
    BusinessOutcome,
    CreditPolicy,
    CreditStatus,
    FiatConfig,
    SqliteLedgerStore,
    StakingPolicy,
    credit_for_dispatch,
    issue_tokens,
    read_credit,
    record_readings,
    settle_hour,
    settle_pending,
    settle_round,
    stake_totals,
)
from settlement.alarms import Alarm
from settlement.fiat import topup_batch
from settlement.hourly import price_at

__all__ = ["Service", "ServiceConfig"]

log = logging.getLogger(__name__)

_QUARTER = dt.timedelta(minutes=15)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)


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
        Seed of the synthetic weather the forecast is made from (no weather feed
        configured); the forecast is its 6-h smoothing, so it knows the day type but
        not when the clouds pass.
    coin_price_fiat_minor : int
        Fiat price of a coin for the payment processor's top-ups.
    credit_policy : CreditPolicy
        Prepaid thresholds and friendly hours.
    staking_policy : StakingPolicy
        Rewards and slashing.
    controller : ControllerSettings
        Modbus and fail-safe settings.
    """

    data_dir: Path
    cycle_s: float = 5.0
    reading_interval_s: float = 300.0
    dispatch_period: dt.timedelta = _QUARTER
    forecast_period: dt.timedelta = _HOUR
    horizon_hours: int = 24
    solver_time_limit_s: float = 10.0
    weather_seed: int = 0
    coin_price_fiat_minor: int = 650
    credit_policy: CreditPolicy = field(default_factory=CreditPolicy)
    staking_policy: StakingPolicy = field(default_factory=StakingPolicy)
    controller: ControllerSettings = field(default_factory=ControllerSettings)


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
        self.store = SqliteLedgerStore(data / "ledger.sqlite")
        self.state = ServiceState(data / "service.sqlite")
        self.controller = Controller(site, config.controller, clock)
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
        self.schedule: Schedule | None = None
        self.stored_schedule: StoredSchedule | None = None
        self.last_cycle: CycleResult | None = None
        self.credit: dict[str, CreditStatus] = {}
        self._connected: dict[str, bool] = {}
        self._last_slot: dt.datetime | None = None
        self._soc_kwh: float | None = None
        self._relays = RelayHistory()
        self.started = False
        self.dispatch_relays_at_start: dict[str, RelayState] = {}
        self.setpoints: Setpoints | None = None  # in force: the plan's, or the safe ones
        self.alarms: collections.deque[Alarm] = collections.deque(maxlen=1000)  # the latest
        self._household_groups = tuple(g.id for g in site.relay_groups)
        self._switchable = (*self._household_groups, *(b.id for b in site.businesses))

    # --- life cycle ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """The service's jobs, control first (ties in simulated time run in this order)."""
        c = self.config
        local_midnight = (-self._utc_offset()) % _DAY
        cycle = dt.timedelta(seconds=c.cycle_s)
        return [
            Job("control", cycle, dt.timedelta(0), self.control_job, grace=max(cycle, _QUARTER)),
            Job("forecast", c.forecast_period, dt.timedelta(0), self.forecast_job),
            Job("dispatch", c.dispatch_period, dt.timedelta(0), self.dispatch_job),
            Job("settle", _HOUR, dt.timedelta(minutes=2), self.settle_job, grace=_HOUR),
            Job("staking", _DAY, local_midnight, self.staking_job, grace=_DAY),
        ]

    def _utc_offset(self) -> dt.timedelta:
        return self.clock.now().astimezone(self.tz).utcoffset() or dt.timedelta(0)

    async def start(self) -> None:
        """Restore where the service stopped, then make sure a plan is in force."""
        now = self.clock.now()
        issue_tokens(self.store, self.site, now)
        if self.state.get("staking_epoch") is None:
            self.state.set("staking_epoch", now.astimezone(self.tz).date().isoformat())
        for cid, hold in self.state.holds().items():
            self.controller.operator_switch(cid, hold["closed"], reason=hold["reason"])
        # Time in state and shed hours continue from the persisted history; relay states
        # come from the first read-back (relay_history.py).
        self._relays = RelayHistory.from_json(self.state.get("relay_history"))
        stored = self.state.last_schedule()
        if stored is not None:
            self.stored_schedule = stored
            self.apply(
                Setpoints.from_plan(
                    stored.plan,
                    stored.relays,
                    stored.allotment_kw,
                    tuple(g.id for g in self.site.relay_groups),
                )
            )
            log.info("restored the schedule issued %s", stored.issued_at.isoformat())
        self.started = True
        await self.control_job(now)
        await self.forecast_job(now)
        await self.dispatch_job(now)

    async def shutdown(self) -> None:
        """Leave the devices in their safe state, then close everything."""
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
        self._executor.shutdown(wait=True)
        self.store.close()
        self.state.close()

    def apply(self, setpoints: Setpoints) -> None:
        """Hand setpoints to the controller; they are the ones in force (the API shows them)."""
        self.controller.set_schedule(setpoints)
        self.setpoints = setpoints

    # --- inputs shared by jobs and the API ---------------------------------------------
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

    def release(self, connection_id: str) -> bool:
        """Operator: end a hold; whether there was one."""
        self.controller.operator_release(connection_id)
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
        """One control cycle; readings to the ledger once per slot; credit re-decided."""
        result = await self.controller.cycle()
        self.last_cycle = result
        now = result.time
        m = result.measured
        if m.soc_kwh is not None:
            self._soc_kwh = m.soc_kwh
        self._relays.observe(m.relays_closed, now, self._household_groups)
        self.alarms.extend(result.alarms)
        slot = _floor(now, dt.timedelta(seconds=self.config.reading_interval_s))
        if slot != self._last_slot and result.readings:
            outcome = record_readings(self.store, self.site, result.readings, recorded_at=now)
            if outcome.late_hours:
                for hour in outcome.late_hours:
                    settle_hour(self.store, self.site, hour, now=now)
            self.state.add_telemetry(now, self._telemetry(result))
            self.state.set("relay_history", self._relays.to_json())
            self.state.set("last_reading_at", now.isoformat())
            if self.state.get("first_reading_at") is None:
                self.state.set("first_reading_at", now.isoformat())
            self._last_slot = slot
        self.credit = read_credit(
            self.store, self.site, now, self._connected, self.config.credit_policy
        )
        self._connected = {cid: s.connected for cid, s in self.credit.items()}
        self.controller.set_credit(credit_for_dispatch(self.credit))

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

    # --- forecast ----------------------------------------------------------------------------
    async def forecast_job(self, due: dt.datetime) -> None:
        """Forecast PV and demand from the current hour over the horizon plus a margin."""
        async with self._forecast_lock:
            now = self.clock.now()
            start = _floor(now, _HOUR)
            periods = (self.config.horizon_hours + 2) * 4
            grid = TimeGrid(start=pd.Timestamp(start), periods=periods)
            loop = asyncio.get_running_loop()
            self.forecast = await loop.run_in_executor(
                self._executor, _forecast, self.site, grid, self.config.weather_seed, now
            )

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
            demand_frame = forecast.demand_kw.reindex(grid.index).ffill().fillna(0.0)
            demand = {c: demand_frame[c].to_numpy() for c in demand_frame.columns}
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
            problem = problem_from_site(
                self.site,
                grid,
                pv["p50"].to_numpy(),
                pv["p10"].to_numpy(),
                demand,
                soc_kwh=soc,
                stakes=self.stakes(now),
                credit=credit,
                relays=relays,
                shed_hours=self._relays.shed_hours,
                policy=DispatchPolicy(reserve=self.reserve_enabled),
            )
            settings = SolverSettings(time_limit_s=self.config.solver_time_limit_s)
            loop = asyncio.get_running_loop()
            schedule: Schedule = await loop.run_in_executor(
                self._executor, solve_dispatch, problem, settings, self.schedule
            )
            self.schedule = schedule
            self.apply(Setpoints.from_schedule(schedule))
            summary = _summary(schedule, now, soc)
            self.state.save_schedule(
                now,
                schedule.status.value,
                schedule.plan,
                schedule.relays,
                schedule.allotment_kw,
                schedule.reasons,
                summary,
            )
            self.stored_schedule = self.state.last_schedule()
            log.info(
                "dispatch %s: %s, solver %.2f s",
                start.isoformat(),
                schedule.status.value,
                float(schedule.solver.get("total_s", float("nan"))),
            )

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
            settle_hour(self.store, self.site, hour, now=now)
            hour += _HOUR
            self.state.set("settle_next_hour", hour.isoformat())
        settle_pending(self.store, self.site, now=now)

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


def _forecast(site: Site, grid: TimeGrid, seed: int, now: dt.datetime) -> Forecast:
    day0 = grid.start.floor("D") - pd.Timedelta(days=1)
    times = pd.date_range(day0, grid.index[-1] + pd.Timedelta(days=1), freq="15min")
    weather = smoothed_forecast(synthetic_weather(times, site.location, seed=seed))
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
        "solver_s": float(np.nan_to_num(float(schedule.solver.get("total_s", 0.0)))),
    }
