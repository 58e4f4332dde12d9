"""A fleet: N sites, each with its own equipment, weather and community, in one planner run.

:func:`fleet_scenarios` derives N site scenarios from one: each site draws its own PV
array and battery (around the base container's), its own forecast quality and demand
noise, its own community (business value distribution, staker mix, daily top-ups,
household growth), and its own seed range, so its weather, demand and businesses are
its own. :func:`run_fleet` runs every site × Monte Carlo run on the process pool or
Dask (:func:`scenarios.montecarlo.map_runs`), keeping only each run's KPIs, and
:func:`fleet_kpis` adds them up per run for the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scenarios.config import Scenario, Seeds
from scenarios.engine import RunResult
from scenarios.kpis import run_kpis
from scenarios.montecarlo import Backend, map_runs

__all__ = ["SITE_SEED_STRIDE", "FleetResult", "fleet_kpis", "fleet_scenarios", "run_fleet"]

SITE_SEED_STRIDE = 10_000
"""Site ``i`` draws seeds from ``base + i × stride``; a scenario has at most 10 000 runs,
so no two sites ever share a seed."""

# Quantities of a run that add up over sites [kWh, value units, tokens, days].
_ADDITIVE = (
    "pv_available_kwh",
    "priority_kwh",
    "household_kwh",
    "business_kwh",
    "household_demand_kwh",
    "unserved_priority_kwh",
    "unserved_kwh",
    "curtailed_kwh",
    "battery_throughput_kwh",
    "value",
    "value_on_oracle_days",
    "oracle_value",
    "tokens_slashed",
)


def fleet_scenarios(
    base: Scenario, sites: int, seed: int = 0, equipment_spread: float = 0.3
) -> list[Scenario]:
    """``sites`` scenarios derived from ``base``, each a site with its own draws.

    Parameters
    ----------
    base : Scenario
        Horizon, policy, site file and runs every site shares.
    sites : int
        How many sites (≥ 1).
    seed : int
        Seed of the draws that make the sites differ.
    equipment_spread : float
        PV [kWp] and battery [kWh] are the base container's × U(1 − s, 1 + s) [-].

    Raises
    ------
    ValueError
        If ``sites`` < 1 or the spread is outside [0, 0.9].
    """
    if sites < 1:
        msg = f"a fleet needs at least one site, got {sites}"
        raise ValueError(msg)
    if not 0 <= equipment_spread <= 0.9:
        msg = f"equipment_spread must be within [0, 0.9], got {equipment_spread}"
        raise ValueError(msg)
    site = base.load_site()
    pv0 = base.equipment.pv_kwp or site.pv.dc_capacity_kwp
    battery0 = base.equipment.battery_kwh or site.battery.energy_capacity_kwh
    out = []
    for i in range(sites):
        rng = np.random.default_rng([seed, i])
        low, high = 1 - equipment_spread, 1 + equipment_spread
        learner = float(rng.uniform(0.3, 0.8))
        loyal = float(rng.uniform(0, 1 - learner))
        update = {
            "name": f"{base.name}-site{i:03d}",
            "seeds": Seeds(
                base=base.seeds.base + i * SITE_SEED_STRIDE, runs=base.seeds.runs
            ).model_dump(),
            "equipment": {
                "pv_kwp": round(pv0 * float(rng.uniform(low, high)), 2),
                "battery_kwh": round(battery0 * float(rng.uniform(low, high)), 2),
            },
            "weather": base.weather.model_dump()
            | {
                "forecast_cloud_error": round(float(rng.uniform(0.05, 0.3)), 3),
                "demand_noise": round(float(rng.uniform(0.05, 0.3)), 3),
            },
            "businesses": base.businesses.model_dump()
            | {"value_mean": round(float(rng.normal(base.businesses.value_mean, 1.0)), 3)},
            "stakers": base.stakers.model_dump()
            | {
                "learner": learner,
                "loyal": loyal,
                "random": 1 - learner - loyal,
                "informed": 0.0,
            },
            "economy": base.economy.model_dump()
            | {
                "household_topup_per_day_minor": int(
                    base.economy.household_topup_per_day_minor * float(rng.uniform(0.6, 1.4))
                )
            },
            "growth": base.growth.model_dump()
            | {"households_per_year": float(rng.poisson(base.growth.households_per_year + 5))},
        }
        out.append(Scenario.model_validate(base.model_dump() | update))
    return out


def site_kpis(result: RunResult) -> dict[str, float]:
    """A run's KPIs plus the sums a fleet needs to weigh its sites (run on the worker)."""
    d = result.daily
    sampled = d["oracle_value"].notna()
    return run_kpis(result) | {
        "household_demand_kwh": float(d["household_demand_kwh"].sum()),
        "value_on_oracle_days": float(d.loc[sampled, "community_value"].sum()),
        "oracle_value": float(d.loc[sampled, "oracle_value"].sum()),
    }


@dataclass(frozen=True)
class FleetResult:
    """KPIs of a fleet run.

    Attributes
    ----------
    per_site : pandas.DataFrame
        One row per site and run (columns ``site``, ``run``, ``seed``, ``pv_kwp``,
        ``battery_kwh`` then every KPI of :func:`site_kpis`).
    fleet : pandas.DataFrame
        One row per run: :func:`fleet_kpis`.
    """

    per_site: pd.DataFrame
    fleet: pd.DataFrame


def fleet_kpis(per_site: pd.DataFrame) -> pd.DataFrame:
    """Fleet KPIs per Monte Carlo run, from the sites' KPIs.

    Additive quantities are summed over sites; ``household_served_fraction`` and ``eta``
    are the fleet's ratios of sums (a large site weighs more); the worst site's served
    fraction and the number of sites that left priority demand unserved show the spread.

    Examples
    --------
    >>> rows = pd.DataFrame({"site": ["a", "b"], "run": [0, 0],
    ...     "household_kwh": [8.0, 1.0], "household_demand_kwh": [10.0, 5.0],
    ...     "value_on_oracle_days": [9.0, 1.0], "oracle_value": [10.0, 2.0],
    ...     "unserved_priority_kwh": [0.0, 0.5]})
    >>> k = fleet_kpis(rows).iloc[0]
    >>> float(k["household_served_fraction"]), round(float(k["eta"]), 3)
    (0.6, 0.833)
    >>> float(k["sites_unserved_priority"])
    1.0
    """
    groups = per_site.groupby("run", sort=True)
    additive = [c for c in _ADDITIVE if c in per_site.columns]
    fleet = groups[additive].sum()
    fleet.insert(0, "sites", groups["site"].nunique().astype(float))
    fleet["household_served_fraction"] = fleet["household_kwh"] / fleet[
        "household_demand_kwh"
    ].where(fleet["household_demand_kwh"] > 0)
    fleet["eta"] = fleet["value_on_oracle_days"] / fleet["oracle_value"].where(
        fleet["oracle_value"] > 0
    )
    per_site_served = per_site["household_kwh"] / per_site["household_demand_kwh"].where(
        per_site["household_demand_kwh"] > 0
    )
    fleet["worst_site_household_served_fraction"] = per_site_served.groupby(per_site["run"]).min()
    fleet["sites_unserved_priority"] = (
        (per_site["unserved_priority_kwh"] > 1e-9).groupby(per_site["run"]).sum().astype(float)
    )
    return fleet.reset_index()


def run_fleet(
    sites: Sequence[Scenario],
    workers: int | None = None,
    backend: Backend = "processes",
    scheduler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> FleetResult:
    """Run every site's Monte Carlo runs in one planner run; per-site and fleet KPIs.

    Only each run's KPIs come back from the workers, so a 100-site fleet holds 100 × runs
    rows, not 100 × runs simulations.
    """
    jobs = [(s, r) for s in sites for r in range(s.seeds.runs)]
    rows: dict[int, dict[str, object]] = {}
    for k, kpis in map_runs(jobs, site_kpis, workers, backend, scheduler, progress):
        scenario, run = jobs[k]
        rows[k] = {
            "site": scenario.name,
            "run": run,
            "seed": scenario.seeds.base + run,
            "pv_kwp": scenario.equipment.pv_kwp,
            "battery_kwh": scenario.equipment.battery_kwh,
            **kpis,
        }
    per_site = pd.DataFrame([rows[k] for k in sorted(rows)])
    return FleetResult(per_site, fleet_kpis(per_site))
