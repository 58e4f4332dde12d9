"""Small sites cut from the default community, for tests that must solve fast."""

from __future__ import annotations

from collections.abc import Callable

from microgrid import Connection, Site, load_site


def village(
    groups: tuple[str, ...],
    businesses: Callable[[tuple[Connection, ...]], tuple[Connection, ...]],
    priority: int,
    pv_kwp: float,
    inverter_kw: float,
    battery_kwh: float,
    battery_kw: float,
) -> Site:
    """The default site's first ``priority`` priority users, the households of ``groups``
    and the businesses ``businesses`` picks, on a container of the given size."""
    site = load_site()
    small = site.model_copy(
        update={
            "pv": site.pv.model_copy(
                update={"dc_capacity_kwp": pv_kwp, "inverter_ac_capacity_kw": inverter_kw}
            ),
            "battery": site.battery.model_copy(
                update={"energy_capacity_kwh": battery_kwh, "power_kw_max": battery_kw}
            ),
            "relay_groups": tuple(g for g in site.relay_groups if g.id in groups),
            "connections": site.priority_users[:priority]
            + tuple(c for c in site.households if c.relay_group in groups)
            + businesses(site.businesses),
        }
    )
    # model_copy skips validation; the round trip through a dict runs it.
    return Site.model_validate(small.model_dump())
