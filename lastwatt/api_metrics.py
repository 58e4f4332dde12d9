"""``GET /metrics``: the service's state in the Prometheus text format (prometheus-client).

Everything is read from the running service when Prometheus scrapes, by a collector on
a registry of this app's own (so two services in one process never share series):

=========================================  =====================================================
series                                      meaning
=========================================  =====================================================
``lastwatt_job_runs_total{job}``            runs recorded (the last 5 000 per service state)
``lastwatt_job_failures_total{job}``        of which failed
``lastwatt_job_duration_seconds{job,stat}`` ``last``, ``median`` and ``max`` run time [s];
                                            ``control`` is the control cycle (one sweep of
                                            every device), ``dispatch`` the re-plan
``lastwatt_control_faults``                 device faults in the last control cycle
``lastwatt_control_mode{mode}``             1 for the controller's mode
``lastwatt_meters_missing``                 meters not read in the last cycle
``lastwatt_battery_soc_kwh``                measured state of charge [kWh] (and
``lastwatt_battery_soc_ratio``              as a fraction)
``lastwatt_pv_kw``, ``lastwatt_battery_kw`` measured power [kW]
``lastwatt_load_kw{tier}``                  measured load per tier [kW]
``lastwatt_plan_energy_kwh{tier,quantity}`` demand, served, unserved energy per tier over the
                                            plan in force [kWh]
``lastwatt_plan_status{status}``            1 for the status of the plan in force
``lastwatt_plan_solve_seconds``             its solve time [s]
``lastwatt_plan_age_seconds``               service time since it was issued [s]
``lastwatt_weather_fallback``               1 if the forecast fell back (last good, climatology)
``lastwatt_weather_age_hours``              age of the weather forecast in use [h]
``lastwatt_alarms{kind}``                   alarms recorded over the last 24 h of service time
``lastwatt_demand_error_kwh{model,stat}``   demand forecast error per connection-hour over the
                                            last week of learned hours: ``mae`` and ``bias``
                                            of the ``learned`` model and the static ``profile``
=========================================  =====================================================

Read-only and anonymous like the other reads; scrape it from the container's network.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lastwatt.service import Service

__all__ = ["ServiceCollector", "router"]


class ServiceCollector(Collector):
    """Reads the metrics of one service at scrape time (module docstring)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        """Every series, from the service's current state."""
        yield from self._jobs()
        yield from self._control()
        yield from self._plan()
        yield from self._weather()
        yield from self._alarms()
        yield from self._demand()

    def _demand(self) -> Iterator[Metric]:
        error = self.service.demand.error()
        if error.hours == 0:
            return
        family = GaugeMetricFamily(
            "lastwatt_demand_error_kwh",
            "Demand forecast error per connection-hour [kWh]",
            labels=["model", "stat"],
        )
        family.add_metric(["learned", "mae"], error.mae_kwh)
        family.add_metric(["learned", "bias"], error.bias_kwh)
        family.add_metric(["profile", "mae"], error.profile_mae_kwh)
        family.add_metric(["profile", "bias"], error.profile_bias_kwh)
        yield family

    def _jobs(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("lastwatt_job_runs", "Job runs recorded", labels=["job"])
        failures = CounterMetricFamily(
            "lastwatt_job_failures", "Job runs that failed", labels=["job"]
        )
        duration = GaugeMetricFamily(
            "lastwatt_job_duration_seconds", "Job run time [s]", labels=["job", "stat"]
        )
        for job, stats in self.service.state.job_stats().items():
            runs.add_metric([job], stats["runs"])
            failures.add_metric([job], stats["failures"])
            for stat in ("last", "median", "max"):
                value = stats.get(f"{stat}_s")
                if value is not None:
                    duration.add_metric([job, stat], float(value))
        yield from (runs, failures, duration)

    def _control(self) -> Iterator[Metric]:
        cycle = self.service.last_cycle
        if cycle is None:
            return
        m = cycle.measured
        yield _gauge(
            "lastwatt_control_faults", "Device faults in the last cycle", len(cycle.faults)
        )
        mode = GaugeMetricFamily("lastwatt_control_mode", "Controller mode", labels=["mode"])
        mode.add_metric([cycle.mode.value], 1)
        yield mode
        yield _gauge("lastwatt_meters_missing", "Meters not read last cycle", m.meters_missing)
        for name, value, doc in (
            ("lastwatt_battery_soc_kwh", m.soc_kwh, "Battery state of charge [kWh]"),
            ("lastwatt_battery_soc_ratio", m.soc_fraction, "Battery state of charge [-]"),
            ("lastwatt_pv_kw", m.pv_kw, "PV power [kW]"),
            ("lastwatt_battery_kw", m.battery_kw, "Battery power, + discharge [kW]"),
        ):
            if value is not None:
                yield _gauge(name, doc, value)
        load = GaugeMetricFamily("lastwatt_load_kw", "Measured load per tier [kW]", labels=["tier"])
        for tier, kw in m.load_kw.items():
            load.add_metric([tier], kw)
        yield load

    def _plan(self) -> Iterator[Metric]:
        stored = self.service.stored_schedule
        if stored is None:
            return
        summary: dict[str, Any] = stored.summary
        energy = GaugeMetricFamily(
            "lastwatt_plan_energy_kwh",
            "Energy per tier over the plan in force [kWh]",
            labels=["tier", "quantity"],
        )
        for tier, row in summary.get("tiers_kwh", {}).items():
            for quantity, kwh in row.items():
                energy.add_metric([tier, quantity], float(kwh))
        yield energy
        status = GaugeMetricFamily("lastwatt_plan_status", "Plan status", labels=["status"])
        status.add_metric([stored.status], 1)
        yield status
        yield _gauge("lastwatt_plan_solve_seconds", "Solve time [s]", summary.get("solver_s", 0))
        age = (self.service.clock.now() - stored.issued_at).total_seconds()
        yield _gauge("lastwatt_plan_age_seconds", "Service time since the plan was issued", age)

    def _weather(self) -> Iterator[Metric]:
        choice = self.service.weather_choice
        if choice is None:
            return
        yield _gauge("lastwatt_weather_fallback", "Forecast fell back", int(choice.fallback))
        if choice.age_hours is not None:
            yield _gauge("lastwatt_weather_age_hours", "Age of the forecast [h]", choice.age_hours)

    def _alarms(self) -> Iterator[Metric]:
        since = self.service.clock.now() - dt.timedelta(days=1)
        counts = Counter(a.kind.value for a in self.service.store.alarms(since))
        alarms = GaugeMetricFamily("lastwatt_alarms", "Alarms over the last 24 h", labels=["kind"])
        for kind, n in sorted(counts.items()):
            alarms.add_metric([kind], n)
        yield alarms


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def router(service: Service) -> APIRouter:
    """The ``/metrics`` route over ``service`` (open, like the noticeboard: no personal data)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    api = APIRouter()

    @api.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        """The service's metrics in the Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api
