"""The simulated community: true business values, seasons, and growth over time.

Everything random here is drawn from one seeded :class:`numpy.random.Generator`, so a
seed fixes the population. The result is a *final* site holding every connection that
ever joins, plus the day each one joins; :meth:`Community.site_on` builds the validated
site of any day (the connections joined by then), so dispatch never sees a connection
before it exists, and demand is computed once for the final site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from microgrid.scaling import resize_container
from microgrid.site import Business, Connection, ConnectionKind, Gateway, Meter, Site, Tariff
from scenarios.config import Scenario, ScenarioFileError

__all__ = ["Community", "build_community", "equipped_site"]

_UNITS_PER_BUS = 247
"""Modbus unit ids per bus: new connections fill growth buses of this many meters."""


@dataclass(frozen=True)
class Community:
    """The population of a run.

    Attributes
    ----------
    final_site : Site
        Every connection that ever joins; businesses carry the public value score.
    join_day : dict of str to int
        Day index (0 = first simulated day) each connection joins.
    true_value : dict of str to float
        Each business's true value in [−10, 10]; stakers do not see it.
    """

    final_site: Site
    join_day: dict[str, int]
    true_value: dict[str, float]

    def members_on(self, day: int) -> tuple[str, ...]:
        """Ids of the connections joined by ``day``."""
        return tuple(c.id for c in self.final_site.connections if self.join_day[c.id] <= day)

    def site_on(self, day: int) -> Site:
        """The validated site of ``day``: the connections joined by then."""
        joined = [c for c in self.final_site.connections if self.join_day[c.id] <= day]
        used = {c.meter.gateway for c in joined} | {
            d.gateway
            for d in (
                self.final_site.pv_inverter,
                self.final_site.battery_inverter,
                self.final_site.bulk_meter,
            )
            if d is not None
        }
        used |= {g.relay.gateway for g in self.final_site.relay_groups}
        fields = self.final_site.model_dump(exclude={"connections", "gateways"})
        gateways = {k: v for k, v in self.final_site.gateways.items() if k in used}
        return Site(**fields, gateways=gateways, connections=tuple(joined))


def equipped_site(site: Site, scenario: Scenario) -> Site:
    """The site with the scenario's equipment and tariff overrides.

    PV inverter capacity scales with the array; battery power with its energy.
    """
    pv_kwp, battery_kwh = scenario.equipment.pv_kwp, scenario.equipment.battery_kwh
    site = resize_container(
        site,
        site.pv.dc_capacity_kwp if pv_kwp is None else pv_kwp,
        site.battery.energy_capacity_kwh if battery_kwh is None else battery_kwh,
    )
    update: dict[str, object] = {}
    if scenario.economy.tariffs:
        tariffs = dict(site.tariffs)
        unknown = sorted(set(scenario.economy.tariffs) - set(tariffs))
        if unknown:
            problems = [
                f"economy.tariffs.{name}: the site has no tariff {name!r} "
                f"(its tariffs: {', '.join(sorted(tariffs))})"
                for name in unknown
            ]
            source = "the scenario's [economy] table"
            raise ScenarioFileError(source, problems)
        for name, price in scenario.economy.tariffs.items():
            tariffs[name] = Tariff(kind="flat", price_per_kwh_minor=price)
        update["tariffs"] = tariffs
    return Site.model_validate(site.model_copy(update=update).model_dump())


def _season(rng: np.random.Generator) -> tuple[int, ...]:
    length = int(rng.integers(3, 9))
    first = int(rng.integers(1, 13))
    return tuple(sorted((first - 1 + k) % 12 + 1 for k in range(length)))


def build_community(site: Site, scenario: Scenario, rng: np.random.Generator) -> Community:
    """Draw the run's community from the (equipped) site and the scenario.

    Parameters
    ----------
    site : Site
        The site at the start, e.g. from :func:`equipped_site`.
    scenario : Scenario
        Population and growth parameters.
    rng : numpy.random.Generator
        The run's generator.
    """
    population = scenario.businesses
    public = population.public_value_score
    true_value: dict[str, float] = {}
    connections: list[Connection] = []
    for c in site.connections:
        if c.kind is ConnectionKind.BUSINESS and c.business is not None:
            if population.true_values == "site":
                value = c.business.value_score
            else:
                value = float(
                    np.clip(rng.normal(population.value_mean, population.value_sd), -10, 10)
                )
            true_value[c.id] = value
            update: dict[str, object] = {"value_score": public}
            if rng.random() < population.seasonal_fraction:
                update["operating_months"] = _season(rng)
            c = c.model_copy(update={"business": c.business.model_copy(update=update)})
        connections.append(c)
    join_day = dict.fromkeys((c.id for c in connections), 0)
    gateways = dict(site.gateways)
    new = _arrivals(site, scenario, rng)
    if new:
        templates_b = [c for c in site.businesses if c.business is not None]
        templates_h = list(site.households)
        top_port = max(g.port for g in gateways.values())
        host = next(iter(gateways.values())).host
        for k, (day, kind) in enumerate(new):
            bus = f"growth-{k // _UNITS_PER_BUS + 1}"
            if bus not in gateways:
                top_port += 1
                gateways[bus] = Gateway(host=host, port=top_port)
            meter = Meter(gateway=bus, unit_id=k % _UNITS_PER_BUS + 1)
            if kind == "business":
                template = templates_b[int(rng.integers(len(templates_b)))]
                assert template.business is not None
                cid = f"BN{k + 1:04d}"
                value = float(
                    np.clip(rng.normal(population.value_mean, population.value_sd), -10, 10)
                )
                true_value[cid] = value
                months = (
                    _season(rng)
                    if rng.random() < population.seasonal_fraction
                    else tuple(range(1, 13))
                )
                business = Business(
                    **template.business.model_dump(exclude={"value_score", "operating_months"}),
                    value_score=public,
                    operating_months=months,
                )
                connections.append(
                    Connection(
                        id=cid,
                        kind=ConnectionKind.BUSINESS,
                        meter=meter,
                        tariff=template.tariff,
                        business=business,
                    )
                )
            else:
                template = templates_h[int(rng.integers(len(templates_h)))]
                cid = f"HN{k + 1:04d}"
                connections.append(template.model_copy(update={"id": cid, "meter": meter}))
            join_day[cid] = day
    fields = site.model_dump(exclude={"connections", "gateways"})
    final = Site(**fields, gateways=gateways, connections=tuple(connections))
    return Community(final_site=final, join_day=join_day, true_value=true_value)


def _arrivals(site: Site, scenario: Scenario, rng: np.random.Generator) -> list[tuple[int, str]]:
    """(join day, kind) of every new connection: Poisson per month, joining on the 1st."""
    growth = scenario.growth
    if growth.businesses_per_year <= 0 and growth.households_per_year <= 0:
        return []
    start = pd.Timestamp(scenario.horizon.start)
    days = scenario.horizon.days
    month_starts = pd.date_range(
        start + pd.offsets.MonthBegin(1), periods=days // 28 + 1, freq="MS"
    )
    arrivals: list[tuple[int, str]] = []
    for first in month_starts:
        day = int((first - start).days)
        if day >= days:
            break
        for kind, rate in (
            ("business", growth.businesses_per_year),
            ("household", growth.households_per_year),
        ):
            arrivals += [(day, kind)] * int(rng.poisson(rate / 12.0))
    return arrivals
