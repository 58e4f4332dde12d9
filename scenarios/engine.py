"""The simulation loop: forecast → staking round → dispatch → delivery → settlement → stakers.

One run of a scenario, day by day (one staking round per day):

1. **forecast**: PV P50/P10 from a forecast of the weather that knows each day's
   cloudiness only roughly (smoothed, plus a per-day cloud-cover error), demand from the
   profiles; the realised weather and demand (log-normal noise per connection and
   period) are what delivery meets;
2. **staking**: the stake tokens in force this round, per business, from the ledger's
   stake balances and the households' choices;
3. **dispatch**: the policy under test plans from the measured state of charge, relay
   states and shed hours (:func:`dispatch.problem.problem_from_site`);
4. **delivery** on the realised PV and demand (:func:`dispatch.rolling.deliver_block`);
5. **settlement** through the real ledger (:mod:`scenarios.ledger`): top-ups, energy
   charges and producer payouts;
6. **round end**: rewards and slashing by :func:`settlement.staking.plan_round`, posted
   as the round's batch; the stakers learn and choose for the next round.

On every ``oracle_every_days``-th day the oracle — the MILP told the actual PV and
demand, with stakes in proportion to the true positive values — plans and delivers the
same day from the same state; η is the policy's community value over the oracle's on
those days.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dispatch import (
    DispatchPolicy,
    DispatchProblem,
    RelayState,
    Schedule,
    SolverSettings,
    problem_from_site,
    proportional_rule,
    solve_dispatch,
)
from dispatch.problem import BatteryState, largest_remainder
from dispatch.rolling import (
    BlockDelivery,
    TierValues,
    UnitTiers,
    deliver_block,
    held_limits_kw,
    lifeline_wanted_kw,
    plan_prosumers,
    shed_hours,
    track_relays,
)
from forecasts.forecast import forecast_site
from forecasts.samples import smoothed_forecast
from forecasts.weather import read_weather_csv, synthetic_weather
from microgrid import ConnectionKind, Site, TimeGrid
from microgrid.physics import ContainerState
from scenarios.config import Scenario
from scenarios.household_access import DayAccess
from scenarios.ledger import SimLedger
from scenarios.population import Community, build_community, equipped_site
from scenarios.stakers import choose, initial_state, learn, payoff_per_token

__all__ = ["RunResult", "run_scenario"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RunResult:
    """One run of a scenario.

    Attributes
    ----------
    scenario : str
        Its name.
    run, seed : int
        Run number and its seed.
    daily : pandas.DataFrame
        One row per simulated day (index ``day``), one column per metric
        (:data:`scenarios.kpis.DAILY_METRICS`).
    shed_hours : pandas.Series
        Hours each household group was shed while it had demand, over the run [h].
    ledger : dict of str to float
        Ledger totals at the end (:meth:`scenarios.ledger.SimLedger.totals`).
    true_value : dict of str to float
        Each business's true value.
    seconds : float
        Wall time of the run [s].
    timings : dict of str to float
        Seconds spent per step.
    """

    scenario: str
    run: int
    seed: int
    daily: pd.DataFrame
    shed_hours: pd.Series
    ledger: dict[str, float]
    true_value: dict[str, float]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


Planner = Callable[[DispatchProblem, Schedule | None], Schedule]


def _planner(kind: str, settings: SolverSettings) -> Planner:
    if kind == "proportional":
        # The simulation never reads a plan's reasons: explaining them is skipped.
        return lambda problem, previous: proportional_rule(problem, reasons=False)

    def milp(problem: DispatchProblem, previous: Schedule | None) -> Schedule:
        return solve_dispatch(problem, settings, warm_start=previous)

    return milp


@dataclass
class _Inputs:
    grid: TimeGrid
    pv_actual: np.ndarray
    pv_p50: np.ndarray
    pv_p10: np.ndarray
    demand: pd.DataFrame
    own_pv: np.ndarray  # prosumers' own PV, periods × demand columns [kW] (0: no panels)
    own_pv_fc: np.ndarray  # the same panels as forecast (what plans see), same shape [kW]


def _inputs(scenario: Scenario, site: Site, seeds: list[np.random.SeedSequence]) -> _Inputs:
    horizon = scenario.horizon
    extra_days = -(-horizon.plan_horizon_hours // 24)
    grid = TimeGrid.from_days(
        horizon.start,
        days=horizon.days + extra_days,
        timezone=site.location.timezone,
        step=pd.Timedelta(minutes=horizon.step_minutes),
    )
    weather_seed = int(seeds[0].generate_state(1)[0] % (2**31))
    if scenario.weather.source == "file" and scenario.weather.file is not None:
        actual_weather = read_weather_csv(scenario.resolve(scenario.weather.file))
    else:
        actual_weather = synthetic_weather(grid.index, site.location, seed=weather_seed)
    forecast_weather = smoothed_forecast(actual_weather, scenario.weather.forecast_smoothing)
    if "cloud_cover" in forecast_weather and scenario.weather.forecast_cloud_error > 0:
        rng = np.random.default_rng(seeds[1])
        local_day = pd.DatetimeIndex(forecast_weather.index).tz_convert(site.location.timezone)
        codes, days = pd.factorize(local_day.date)
        error = rng.normal(0.0, scenario.weather.forecast_cloud_error, len(days))[codes]
        forecast_weather = forecast_weather.assign(
            cloud_cover=np.clip(forecast_weather["cloud_cover"].to_numpy() + error, 0.0, 1.0)
        )
    actual = forecast_site(site, grid, actual_weather)
    forecast = forecast_site(site, grid, forecast_weather)
    return _Inputs(
        grid=grid,
        pv_actual=actual.pv_kw["p50"].to_numpy(),
        pv_p50=forecast.pv_kw["p50"].to_numpy(),
        pv_p10=forecast.pv_kw["p10"].to_numpy(),
        demand=actual.demand_kw,
        own_pv=actual.prosumer_pv_kw.reindex(
            columns=actual.demand_kw.columns, fill_value=0.0
        ).to_numpy(dtype=float),
        own_pv_fc=forecast.prosumer_pv_kw.reindex(
            columns=actual.demand_kw.columns, fill_value=0.0
        ).to_numpy(dtype=float),
    )


def _own_pv_by_prosumer(
    site: Site, own_pv_kw: np.ndarray, columns: pd.Index
) -> dict[str, np.ndarray]:
    """The prosumers' columns of ``own_pv_kw`` (periods × ``columns``), by connection [kW]."""
    return {c.id: own_pv_kw[:, columns.get_loc(c.id)] for c in site.prosumers}


@dataclass
class _Units:
    """The dispatch units of one site and how connections map onto them."""

    site: Site
    ids: list[str]
    tiers: UnitTiers
    connection_columns: np.ndarray  # columns of the demand frame, in site order
    membership: np.ndarray  # connections × units, 1 where a connection feeds a unit
    business_ids: list[str]

    def demand_kw(self, connection_demand_kw: np.ndarray) -> np.ndarray:
        """Each unit's demand, its connections' summed in site order [kW] (periods × units).

        Not ``demand @ membership``: BLAS splits that sum by thread count and CPU, so the
        same seed gave other last bits, and other KPIs, on the process pool than on
        Dask's single-threaded workers (and would on another machine).
        """
        by_connection = connection_demand_kw[:, self.connection_columns]
        out = np.zeros((self.membership.shape[1], by_connection.shape[0]))
        np.add.at(out, self.membership.argmax(axis=1), by_connection.T)
        return out.T

    @classmethod
    def of(cls, site: Site, demand_columns: pd.Index) -> _Units:
        priority = [c.id for c in site.priority_users]
        groups = [g.id for g in site.relay_groups]
        businesses = [c.id for c in site.businesses]
        ids = priority + groups + businesses
        position = {u: k for k, u in enumerate(ids)}
        connections = list(site.connections)
        membership = np.zeros((len(connections), len(ids)))
        for i, c in enumerate(connections):
            unit = c.relay_group if c.kind is ConnectionKind.HOUSEHOLD else c.id
            membership[i, position[str(unit)]] = 1.0
        return cls(
            site=site,
            ids=ids,
            tiers=UnitTiers.of(len(priority), len(groups), len(businesses)),
            connection_columns=demand_columns.get_indexer(pd.Index([c.id for c in connections])),
            membership=membership,
            business_ids=businesses,
        )


def run_scenario(scenario: Scenario, run: int = 0, progress: Progress | None = None) -> RunResult:
    """Simulate one run of a scenario (module docstring).

    Parameters
    ----------
    scenario : Scenario
        What to simulate.
    run : int
        Run number; the seed is ``scenario.seeds.base + run``.
    progress : callable, optional
        Called with the number of days just simulated (1), e.g. a progress bar's update.

    Returns
    -------
    RunResult
    """
    began = time.perf_counter()
    timings: dict[str, float] = {}

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - since
        return now

    seed = scenario.seeds.base + run
    streams = np.random.SeedSequence(seed).spawn(6)
    rng_population, rng_demand, rng_value, rng_stakers = (
        np.random.default_rng(s) for s in streams[2:]
    )
    site0 = equipped_site(scenario.load_site(), scenario)
    community = build_community(site0, scenario, rng_population)
    inputs = _inputs(scenario, community.final_site, streams[:2])
    t0 = tick("inputs", began)

    horizon = scenario.horizon
    grid = inputs.grid
    step = grid.step_hours
    per_day = round(24 / step)
    plan_periods = round(horizon.plan_horizon_hours / step)
    replan = round(horizon.replan_every_hours / step)
    policy = scenario.policy
    settings = SolverSettings(
        time_limit_s=policy.time_limit_s, mip_rel_gap=policy.mip_rel_gap, threads=1
    )
    # The site's stated policy (tier order, business objective), at the planners' tolerance.
    dispatch_policy = DispatchPolicy.from_site(
        site0, fair_share_tolerance=policy.fair_share_tolerance
    )
    planner = _planner(policy.dispatch, settings)
    oracle_planner = _planner("milp", settings)
    values = TierValues()

    final = community.final_site
    all_business = [c.id for c in final.businesses]
    all_households = [c.id for c in final.households]
    business_col = {b: k for k, b in enumerate(all_business)}
    true_value = np.array([community.true_value[b] for b in all_business])
    valuable = true_value > 0
    demand_all = inputs.demand.to_numpy()
    demand_columns = inputs.demand.columns

    ledger = SimLedger(scenario, final)
    stakers = initial_state(len(all_households), len(all_business), scenario.stakers, rng_stakers)

    site: Site | None = None
    units: _Units | None = None
    members: tuple[str, ...] = ()
    soc = 0.5 * site0.battery.energy_capacity_kwh
    relays: dict[str, RelayState] = {}
    shed: dict[str, float] = {g.id: 0.0 for g in final.relay_groups}
    previous: Schedule | None = None
    physics: ContainerState | None = None  # the one physics' state, carried block to block
    rows: list[dict[str, float]] = []
    access = DayAccess(all_households, final.location.timezone)
    sigma = scenario.weather.demand_noise
    for day in range(horizon.days):
        t = day * per_day
        now_members = community.members_on(day)
        if now_members != members:
            members = now_members
            site = community.site_on(day)
            units = _Units.of(site, demand_columns)
            ledger.join(site, day)
            previous = None
            physics = None  # new units: the meters' timers start afresh
        assert site is not None
        assert units is not None
        available = np.array([community.join_day[b] <= day for b in all_business])
        if day == 0:
            first = choose(stakers, available, true_value, scenario.stakers, rng_stakers)
            ledger.set_choices(_names(first, all_households, all_business), 0)
        # --- realised demand of today and the expected demand beyond ---------------
        span = slice(t, t + per_day)
        expected_today = demand_all[span]
        noise = rng_demand.lognormal(-0.5 * sigma**2, sigma, expected_today.shape) if sigma else 1.0
        actual_today = expected_today * noise
        cols = units.connection_columns
        unit_demand = units.demand_kw(actual_today)
        # The prosumers' panels, from the same weather and pvlib chain as the container's
        # array: the one physics serves their own load first and takes the rest as supply.
        unit_own_pv = units.demand_kw(inputs.own_pv[span])
        realised_value = np.clip(
            true_value
            + scenario.businesses.performance_noise * rng_value.standard_normal(true_value.size),
            -10.0,
            10.0,
        )
        # --- staking: the tokens in force this round ---------------------------------
        stakes = ledger.stake_totals(units.business_ids, day)
        t0 = tick("staking", t0)
        # --- dispatch and delivery, block by block ---------------------------------------
        soc_day_start, relays_day_start, shed_day_start = soc, dict(relays), dict(shed)
        served_day = np.zeros((per_day, len(units.ids)))
        flows_day = np.zeros((6, per_day))
        for offset in range(0, per_day, replan):
            window = slice(t + offset, t + offset + plan_periods)
            demand_fc = {c: demand_all[window, demand_columns.get_loc(c)] for c in members}
            pv_p50, pv_p10 = inputs.pv_p50[window], inputs.pv_p10[window]
            if policy.dispatch == "oracle":
                pv_p50 = pv_p10 = inputs.pv_actual[window]
                known = min(plan_periods, per_day - offset)
                for k, c in enumerate(site.connections):
                    demand_fc[c.id] = demand_fc[c.id].copy()
                    demand_fc[c.id][:known] = actual_today[offset : offset + known, cols[k]]
            own_pv = inputs.own_pv if policy.dispatch == "oracle" else inputs.own_pv_fc
            export_fc = plan_prosumers(
                demand_fc, _own_pv_by_prosumer(site, own_pv[window], demand_columns)
            )
            problem = problem_from_site(
                site,
                TimeGrid(start=grid.index[t + offset], periods=plan_periods, step=grid.step),
                pv_p50,
                pv_p10,
                demand_fc,
                soc,
                stakes,
                relays=relays,
                shed_hours=shed,
                policy=dispatch_policy,
                export_kw=export_fc,
            )
            plan = planner(problem, previous)
            previous = plan
            t0 = tick("dispatch", t0)
            block = slice(offset, offset + replan)
            delivered = _deliver(
                plan,
                units,
                inputs.pv_actual[t + offset : t + offset + replan],
                unit_demand[block],
                problem.battery,
                step,
                physics,
                unit_own_pv[block],
            )
            physics = delivered.state
            served_day[block] = delivered.served_kw
            flows_day[:, block] = np.vstack(
                [
                    delivered.pv_kw,
                    delivered.pv_used_kw,
                    delivered.curtailed_kw,
                    delivered.battery_kw,
                    delivered.soc_kwh,
                    delivered.short_kw,
                ]
            )
            soc = float(delivered.soc_kwh[-1])
            access.add_block(
                plan,
                problem,
                units.ids,
                delivered.served_kw,
                delivered.short_kw,
                actual_today[block][:, cols],
                [c.id for c in site.connections],
            )
            grid_demand = np.maximum(unit_demand[block] - unit_own_pv[block], 0.0)
            wanted = lifeline_wanted_kw(problem, grid_demand, units.tiers)
            _track(plan, units, delivered.served_kw, wanted, step, relays, shed)
            t0 = tick("delivery", t0)
        value = _community_value(served_day, units, realised_value, business_col, step, values)
        oracle_value = np.nan
        if policy.oracle_every_days and day % policy.oracle_every_days == 0:
            oracle_value = _oracle_day(
                site,
                units,
                community,
                grid,
                t,
                per_day,
                plan_periods,
                inputs,
                demand_all,
                demand_columns,
                actual_today,
                unit_demand,
                soc_day_start,
                relays_day_start,
                shed_day_start,
                oracle_planner,
                realised_value,
                business_col,
                step,
                values,
                dispatch_policy,
                unit_own_pv,
            )
            t0 = tick("oracle", t0)
        # --- settlement and the round's end ------------------------------------------
        business_kwh = served_day[:, units.tiers.business].sum(axis=0) * step
        ledger.settle_day(
            site,
            units.ids,
            units.tiers,
            served_day,
            unit_demand,
            actual_today[:, cols],
            flows_day[1],
            day,
            grid.index[t],
            step,
        )
        revenue = {
            b: round(
                e
                * scenario.economy.business_revenue_per_kwh_minor
                * max(realised_value[business_col[b]], 0.0)
                / 10.0
            )
            for b, e in zip(units.business_ids, business_kwh, strict=True)
        }
        ledger.top_up(site, revenue, day, grid.index[t])
        t0 = tick("settlement", t0)
        served_businesses = {
            b for b, e in zip(units.business_ids, business_kwh, strict=True) if e > 1e-6
        }
        round_result = ledger.end_round(
            day,
            served_businesses,
            {b: float(realised_value[business_col[b]]) for b in units.business_ids},
            revenue,
            grid.index[t],
        )
        staked = stakers.choice.copy()
        payoff = payoff_per_token(
            all_households,
            round_result.rewards,
            round_result.slashed,
            round_result.recycled,
            round_result.tokens,
        )
        learn(stakers, staked, payoff, scenario.stakers)
        joined_households = np.array([community.join_day[h] <= day for h in all_households])
        nxt = choose(stakers, available, true_value, scenario.stakers, rng_stakers)
        nxt[~joined_households] = -1
        stakers.choice = nxt
        ledger.set_choices(_names(nxt, all_households, all_business), day + 1)
        t0 = tick("staking", t0)
        staked_tokens = np.array([stakes.get(b, 0) for b in all_business], dtype=float)
        total_staked = staked_tokens.sum()
        tiers = units.tiers
        energy = served_day.sum(axis=0) * step
        demand_energy = unit_demand.sum(axis=0) * step
        rows.append(
            {
                "pv_available_kwh": float(flows_day[0].sum() * step),
                "pv_used_kwh": float(flows_day[1].sum() * step),
                "curtailed_kwh": float(flows_day[2].sum() * step),
                "battery_throughput_kwh": float(np.abs(flows_day[3]).sum() * step),
                "battery_net_kwh": float(flows_day[3].sum() * step),
                "soc_min_kwh": float(flows_day[4].min()),
                "soc_max_kwh": float(flows_day[4].max()),
                "soc_end_kwh": soc,
                "priority_kwh": float(energy[tiers.priority].sum()),
                "household_kwh": float(energy[tiers.household].sum()),
                "business_kwh": float(energy[tiers.business].sum()),
                "priority_demand_kwh": float(demand_energy[tiers.priority].sum()),
                "household_demand_kwh": float(demand_energy[tiers.household].sum()),
                "business_demand_kwh": float(demand_energy[tiers.business].sum()),
                "unserved_priority_kwh": float(
                    max(demand_energy[tiers.priority].sum() - energy[tiers.priority].sum(), 0.0)
                ),
                "community_value": value,
                "oracle_value": oracle_value,
                "stake_share_valuable": float(staked_tokens[valuable].sum() / total_staked)
                if total_staked
                else np.nan,
                "stake_weighted_true_value": float(staked_tokens @ true_value / total_staked)
                if total_staked
                else np.nan,
                "stake_hhi": float(((staked_tokens / total_staked) ** 2).sum())
                if total_staked
                else np.nan,
                "staked_tokens": float(total_staked),
                "rewards_coin": round_result.rewarded_minor / 1e6,
                "slashed_tokens": round_result.slashed_minor / 1e6,
                "businesses": float(len(units.business_ids)),
                "businesses_served": float(len(served_businesses)),
                "households": float(len(site.households)),
            }
            | access.end_day(
                flows_day[0],
                flows_day[4],
                soc_day_start,
                unit_demand[:, tiers.priority].sum(axis=1),
                problem.battery,
                step,
            )
        )
        if progress is not None:
            progress(1)
    daily = pd.DataFrame(rows)
    daily.index.name = "day"
    daily.insert(
        0,
        "date",
        [
            grid.index[d * per_day].tz_convert(final.location.timezone).date()
            for d in range(horizon.days)
        ],
    )
    totals = ledger.totals()
    ledger.close()
    return RunResult(
        scenario=scenario.name,
        run=run,
        seed=seed,
        daily=daily,
        shed_hours=pd.Series(shed, name="shed_hours"),
        ledger=totals,
        true_value=dict(community.true_value),
        seconds=time.perf_counter() - began,
        timings=timings,
    )


def _names(
    choice: np.ndarray, households: list[str], businesses: list[str]
) -> dict[str, str | None]:
    return {h: (businesses[c] if c >= 0 else None) for h, c in zip(households, choice, strict=True)}


def _plan_arrays(plan: Schedule, units: _Units, rows: int) -> tuple[np.ndarray, np.ndarray]:
    relays = plan.relays.reindex(columns=units.ids, fill_value=True).to_numpy(dtype=bool)[:rows]
    allotment = plan.allotment_kw.reindex(columns=units.ids, fill_value=0.0).to_numpy(dtype=float)[
        :rows
    ]
    return relays, allotment


def _deliver(
    plan: Schedule,
    units: _Units,
    pv: np.ndarray,
    demand: np.ndarray,
    battery: BatteryState,
    step: float,
    state: ContainerState | None = None,
    own_pv: np.ndarray | None = None,
) -> BlockDelivery:
    relays, allotment = _plan_arrays(plan, units, len(pv))
    groups = [units.ids[k] for k in units.tiers.household]
    held = held_limits_kw(plan, groups, allotment[:, units.tiers.household])
    return deliver_block(
        relays, allotment, pv, demand, battery, step, units.tiers, state, held, own_pv
    )


def _track(
    plan: Schedule,
    units: _Units,
    served: np.ndarray,
    demand: np.ndarray,
    step: float,
    relays: dict[str, RelayState],
    shed: dict[str, float],
) -> None:
    """Relay states and shed hours, measured as :func:`dispatch.rolling.roll` measures them."""
    closed, _ = _plan_arrays(plan, units, len(served))
    first = len(units.tiers.priority)
    track_relays(closed, units.ids[first:], first, step, relays)
    dark_hours = shed_hours(served, demand, units.tiers, step)
    for k, hours in zip(units.tiers.household, dark_hours, strict=True):
        shed[units.ids[k]] = shed.get(units.ids[k], 0.0) + float(hours)


def _community_value(
    served: np.ndarray,
    units: _Units,
    realised_value: np.ndarray,
    business_col: dict[str, int],
    step: float,
    values: TierValues,
) -> float:
    """:func:`dispatch.rolling.community_value` with each business's realised value of the day."""
    energy = served.sum(axis=0) * step
    tiers = units.tiers
    scores = np.array([realised_value[business_col[b]] for b in units.business_ids])
    return float(
        values.priority * energy[tiers.priority].sum()
        + values.household * energy[tiers.household].sum()
        + scores @ energy[tiers.business]
    )


def _oracle_day(
    site: Site,
    units: _Units,
    community: Community,
    grid: TimeGrid,
    t: int,
    per_day: int,
    plan_periods: int,
    inputs: _Inputs,
    demand_all: np.ndarray,
    demand_columns: pd.Index,
    actual_today: np.ndarray,
    unit_demand: np.ndarray,
    soc: float,
    relays: dict[str, RelayState],
    shed: dict[str, float],
    planner: Callable[[DispatchProblem, Schedule | None], Schedule],
    realised_value: np.ndarray,
    business_col: dict[str, int],
    step: float,
    values: TierValues,
    dispatch_policy: DispatchPolicy,
    unit_own_pv: np.ndarray | None = None,
) -> float:
    """The oracle's community value of one day from the policy's state at its start."""
    window = slice(t, t + max(plan_periods, per_day))
    periods = window.stop - window.start
    demand_fc = {}
    for k, c in enumerate(site.connections):
        series = demand_all[window, demand_columns.get_loc(c.id)].copy()
        series[:per_day] = actual_today[:, units.connection_columns[k]]
        demand_fc[c.id] = series
    export = plan_prosumers(
        demand_fc, _own_pv_by_prosumer(site, inputs.own_pv[window], demand_columns)
    )
    weights = {b: max(community.true_value[b], 0.0) for b in units.business_ids}
    stakes = largest_remainder(weights, len(site.households))
    truth = Site.model_validate(
        site.model_copy(
            update={
                "connections": tuple(
                    c.model_copy(
                        update={
                            "business": c.business.model_copy(
                                update={"value_score": community.true_value[c.id]}
                            )
                        }
                    )
                    if c.business is not None
                    else c
                    for c in site.connections
                )
            }
        ).model_dump()
    )
    problem = problem_from_site(
        truth,
        TimeGrid(start=grid.index[t], periods=periods, step=grid.step),
        inputs.pv_actual[window],
        inputs.pv_actual[window],
        demand_fc,
        soc,
        stakes,
        relays=relays,
        shed_hours=shed,
        policy=dispatch_policy,
        export_kw=export,
    )
    plan = planner(problem, None)
    delivered = _deliver(
        plan,
        units,
        inputs.pv_actual[t : t + per_day],
        unit_demand,
        problem.battery,
        step,
        own_pv=unit_own_pv,
    )
    return _community_value(delivered.served_kw, units, realised_value, business_col, step, values)
