"""The simulation's ledger: the real settlement code on an in-memory SQLite store.

- **Top-ups**: each day every household tops up its meter account with a fixed amount
  and every business with its revenue, as fiat top-ups (``fiat:bridge`` → meter), the
  only way coins enter the ledger.
- **Energy**: ``hourly`` settlement writes every meter's cumulative registers (integer
  Wh, as a meter would) at each hour boundary with :func:`settlement.record_readings`
  and settles each hour with :func:`settlement.settle_hour` — the service's path.
  ``daily`` settlement applies the same pure rules (:func:`settlement.hourly.plan_hour`)
  to the day's register differences, with the hourly fee × 24 and the energy-weighted
  hourly price, and posts one batch per day (one instead of 24 hash-chained batches of
  ~400 rows each, which a simulated year could not afford).
- **Staking**: tokens are issued once per household (:func:`settlement.issue_tokens`);
  a round's rewards and slashes are :func:`settlement.staking.plan_round` posted under
  the same key as :func:`settlement.settle_round`. Choices are kept in memory *and*
  recorded in the store, but not read back from it: the store's choice lookup scans its
  whole table, which grows every round.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from dispatch.rolling import UnitTiers
from microgrid.readings import MeterReading
from microgrid.site import Site
from microgrid.units import COIN_SCALE, STAKE_TOKEN_SCALE
from scenarios.config import Scenario
from settlement import (
    SettlementConfig,
    SqliteLedgerStore,
    StakingPolicy,
    issue_tokens,
    record_readings,
    settle_hour,
)
from settlement.hourly import EnergyStatus, MeterEnergy, plan_hour, price_at, transfers_through_pool
from settlement.ledger import (
    FIAT_BRIDGE,
    POOL,
    STAKE_SLASHED,
    STAKING_POOL,
    UTILITY,
    Asset,
    Batch,
    Transfer,
    meter_account,
    stake_account,
)
from settlement.rounding import largest_remainder
from settlement.staking import BusinessOutcome, plan_round, pool_state

__all__ = ["RoundResult", "SimLedger"]

PV_METER = "pv_inverter"


@dataclass(frozen=True)
class RoundResult:
    """A round's outcome for the stakers."""

    rewards: dict[str, int]
    slashed: dict[str, int]
    recycled: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    """Tokens each household held at the round's start [micro-tokens]."""

    @property
    def rewarded_minor(self) -> int:
        """Coins paid to stakers [coin minor units]."""
        return sum(self.rewards.values())

    @property
    def slashed_minor(self) -> int:
        """Tokens slashed [micro-tokens]."""
        return sum(self.slashed.values())


class SimLedger:
    """Settlement, top-ups and staking of one run (module docstring)."""

    def __init__(self, scenario: Scenario, final_site: Site) -> None:
        self.scenario = scenario
        self.mode = scenario.policy.settlement
        self.store = SqliteLedgerStore(":memory:", synchronous="NORMAL")
        self.config = SettlementConfig(site_id=final_site.name)
        self.staking = StakingPolicy(
            reward_share_ppm=scenario.policy.reward_share_ppm,
            slash_fraction_ppm=scenario.policy.slash_fraction_ppm,
            slash_unserved=scenario.policy.slash_unserved,
        )
        self.timezone = zoneinfo.ZoneInfo(final_site.location.timezone)
        self.site_name = final_site.name
        self.register_kwh: dict[str, float] = {}
        self.choices: dict[str, str | None] = {}
        self.tariff_of: dict[str, str] = {}
        self.households: tuple[str, ...] = ()

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def join(self, site: Site, day: int) -> None:
        """New connections: issue tokens to new households, start their registers at 0."""
        issue_tokens(self.store, site, self._at(day))
        self.households = tuple(c.id for c in site.households)
        for c in site.connections:
            self.tariff_of[c.id] = c.tariff
            self.register_kwh.setdefault(c.id, 0.0)
        self.register_kwh.setdefault(PV_METER, 0.0)

    def _at(self, day: int) -> datetime:
        start = pd.Timestamp(self.scenario.horizon.start, tz=self.timezone).tz_convert("UTC")
        return (start + pd.Timedelta(days=day)).to_pydatetime()

    # --- staking ------------------------------------------------------------------------
    def set_choices(self, choices: Mapping[str, str | None], effective_round: int) -> None:
        """Record the households' choices from ``effective_round`` on (changes only)."""
        for household, business in choices.items():
            if self.choices.get(household, "\0") != business:
                self.store.set_stake_choice(household, effective_round, business)
        self.choices = dict(choices)
        self.effective = effective_round

    def _tokens(self) -> dict[str, int]:
        return {
            account.removeprefix("stake:"): amount
            for (account, _), amount in self.store.balances(Asset.STAKE, prefix="stake:").items()
            if account not in ("stake:issuer", STAKE_SLASHED)
        }

    def stake_totals(self, businesses: list[str], round_number: int) -> dict[str, int]:
        """Whole tokens per business in force this round, as :func:`settlement.stake_totals`."""
        tokens = self._tokens()
        minor = dict.fromkeys(businesses, 0)
        for household, business in self.choices.items():
            if business is not None and business in minor:
                minor[business] += tokens.get(household, 0)
        return largest_remainder(minor, sum(minor.values()) // STAKE_TOKEN_SCALE)

    def end_round(
        self,
        round_number: int,
        served: set[str],
        value: Mapping[str, float],
        revenue: Mapping[str, int],
        at: pd.Timestamp,
    ) -> RoundResult:
        """Post the round's funding, rewards, slashes and token moves (``plan_round``)."""
        staked = {b for b in self.choices.values() if b is not None} | set(revenue)
        outcomes = {
            b: BusinessOutcome(b in served, value.get(b, 0.0), revenue.get(b, 0)) for b in staked
        }
        tokens = dict.fromkeys(self.households, 0) | self._tokens()
        pool = pool_state(self.store, self.staking)
        plan = plan_round(self.choices, tokens, outcomes, pool, self.staking)
        if plan.transfers:
            key = f"stake:round:{self.site_name}:{round_number}"
            self.store.post(Batch(key, plan.transfers), at.to_pydatetime())
        return RoundResult(plan.rewards, plan.slashed, plan.recycled, tokens)

    # --- money in -----------------------------------------------------------------------
    def top_up(self, site: Site, revenue: Mapping[str, int], day: int, at: pd.Timestamp) -> None:
        """Households' daily top-up and businesses' revenue, as fiat top-ups."""
        amount = self.scenario.economy.household_topup_per_day_minor
        transfers = [
            Transfer(FIAT_BRIDGE, meter_account(h), Asset.COIN, amount, "fiat.topup")
            for h in self.households
            if amount
        ]
        transfers += [
            Transfer(FIAT_BRIDGE, meter_account(b), Asset.COIN, r, "fiat.topup")
            for b, r in sorted(revenue.items())
            if r > 0
        ]
        if transfers:
            self.store.post(
                Batch(f"sim:topup:{self.site_name}:{day}", tuple(transfers)), at.to_pydatetime()
            )

    # --- energy -------------------------------------------------------------------------
    def settle_day(
        self,
        site: Site,
        unit_ids: list[str],
        tiers: UnitTiers,
        served_kw: np.ndarray,
        unit_demand_kw: np.ndarray,
        connection_demand_kw: np.ndarray,
        pv_used_kw: np.ndarray,
        day: int,
        start: pd.Timestamp,
        step_hours: float,
    ) -> None:
        """Meter and settle one day's delivery.

        A household group's energy is split among its members in proportion to their
        demand in each period.
        """
        connections = list(site.connections)
        position = {u: k for k, u in enumerate(unit_ids)}
        ratio = np.divide(
            served_kw, unit_demand_kw, out=np.zeros_like(served_kw), where=unit_demand_kw > 1e-12
        )
        meters = [c.id for c in connections]
        unit_of = [
            position[str(c.relay_group if c.relay_group is not None else c.id)] for c in connections
        ]
        household = {int(k) for k in tiers.household}
        per_meter = np.empty_like(connection_demand_kw)
        for i, u in enumerate(unit_of):
            per_meter[:, i] = (
                np.maximum(connection_demand_kw[:, i], 0.0) * ratio[:, u]
                if u in household
                else served_kw[:, u]
            )
        per_hour = round(1 / step_hours)
        energy_kwh = per_meter * step_hours
        pv_kwh = np.asarray(pv_used_kw) * step_hours
        if self.mode == "hourly":
            self._settle_hourly(site, meters, energy_kwh, pv_kwh, start, per_hour)
        else:
            self._settle_daily(site, meters, energy_kwh, pv_kwh, day, start, per_hour)

    def _advance(self, meter: str, kwh: float) -> tuple[int, int]:
        before = self.register_kwh[meter]
        after = before + kwh
        self.register_kwh[meter] = after
        return int(before * 1000), int(after * 1000)

    def _settle_hourly(
        self,
        site: Site,
        meters: list[str],
        energy_kwh: np.ndarray,
        pv_kwh: np.ndarray,
        start: pd.Timestamp,
        per_hour: int,
    ) -> None:
        first = start.to_pydatetime()
        hours = energy_kwh.shape[0] // per_hour
        readings = []
        for meter in [*meters, PV_METER]:
            wh = int(self.register_kwh[meter] * 1000)
            readings.append(_reading(meter, first, wh))
        record_readings(self.store, site, readings, first, self.config)
        for h in range(hours):
            rows = slice(h * per_hour, (h + 1) * per_hour)
            end = first + timedelta(hours=h + 1)
            readings = []
            for i, meter in enumerate(meters):
                _, wh = self._advance(meter, float(energy_kwh[rows, i].sum()))
                readings.append(_reading(meter, end, wh))
            _, wh = self._advance(PV_METER, float(pv_kwh[rows].sum()))
            readings.append(_reading(PV_METER, end, wh))
            record_readings(self.store, site, readings, end, self.config)
            settle_hour(self.store, site, end - timedelta(hours=1), self.config, end)

    def _settle_daily(
        self,
        site: Site,
        meters: list[str],
        energy_kwh: np.ndarray,
        pv_kwh: np.ndarray,
        day: int,
        start: pd.Timestamp,
        per_hour: int,
    ) -> None:
        first = start.to_pydatetime()
        hours = energy_kwh.shape[0] // per_hour
        hourly = energy_kwh[: hours * per_hour].reshape(hours, per_hour, -1).sum(axis=1)
        local_hours = [
            (first + timedelta(hours=h)).astimezone(self.timezone).hour for h in range(hours)
        ]
        energies: dict[str, MeterEnergy] = {}
        prices: dict[str, int] = {}
        for i, meter in enumerate(meters):
            before, after = self._advance(meter, float(energy_kwh[:, i].sum()))
            wh = after - before
            energies[meter] = MeterEnergy(meter, wh, 0, EnergyStatus.MEASURED)
            tariff = site.tariffs[self.tariff_of[meter]]
            if tariff.kind == "flat":
                prices[meter] = int(tariff.price_per_kwh_minor or 0)
            else:
                hour_prices = np.array([price_at(tariff, h) for h in local_hours], dtype=float)
                weights = hourly[:, i]
                prices[meter] = (
                    round(float(hour_prices @ weights / weights.sum()))
                    if weights.sum() > 0
                    else int(hour_prices.mean())
                )
        before, after = self._advance(PV_METER, float(pv_kwh.sum()))
        energies[PV_METER] = MeterEnergy(PV_METER, 0, after - before, EnergyStatus.MEASURED)
        plan = plan_hour(
            first, energies, prices, self.config.producer_ids, self.config.utility_fee_minor * hours
        )
        transfers = transfers_through_pool(plan.net(), {})
        if transfers:
            key = f"sim:settle:{self.site_name}:{day}"
            self.store.post(Batch(key, transfers), first)

    # --- results ------------------------------------------------------------------------
    def totals(self) -> dict[str, float]:
        """Ledger totals at the end [coins, tokens]; ``verified`` is 1 if the chain verifies."""
        coins = self.store.balances(Asset.COIN)
        stake = self.store.balances(Asset.STAKE)

        def total(prefix: str, table: Mapping[tuple[str, Asset], int]) -> int:
            return sum(v for (a, _), v in table.items() if a.startswith(prefix))

        households = sum(coins.get((meter_account(h), Asset.COIN), 0) for h in self.households)
        report = self.store.verify()
        return {
            "coins_issued": -coins.get((FIAT_BRIDGE, Asset.COIN), 0) / COIN_SCALE,
            "coins_sum": sum(coins.values()) / COIN_SCALE,
            "utility_fees_coin": coins.get((UTILITY, Asset.COIN), 0) / COIN_SCALE,
            "pv_payouts_coin": coins.get((meter_account(PV_METER), Asset.COIN), 0) / COIN_SCALE,
            "pool_coin": coins.get((POOL, Asset.COIN), 0) / COIN_SCALE,
            "meters_coin": total("meter:", coins) / COIN_SCALE,
            "households_coin": households / COIN_SCALE,
            "tokens_issued": -stake.get(("stake:issuer", Asset.STAKE), 0) / STAKE_TOKEN_SCALE,
            "tokens_held": sum(
                v
                for (a, _), v in stake.items()
                if a not in ("stake:issuer", STAKE_SLASHED, STAKING_POOL)
            )
            / STAKE_TOKEN_SCALE,
            "tokens_pooled": stake.get((STAKING_POOL, Asset.STAKE), 0) / STAKE_TOKEN_SCALE,
            "staking_pool_coin": coins.get((STAKING_POOL, Asset.COIN), 0) / COIN_SCALE,
            "tokens_slashed": stake.get((STAKE_SLASHED, Asset.STAKE), 0) / STAKE_TOKEN_SCALE,
            "stake_sum": sum(stake.values()) / STAKE_TOKEN_SCALE,
            "verified": float(report.ok),
        }


def _reading(meter: str, at: datetime, wh: int) -> MeterReading:
    if meter == PV_METER:
        return MeterReading(meter, at, 0, wh)
    return MeterReading(meter, at, wh)


_ = stake_account
