"""Bigger communities from a site: ``copies`` containers' worth of the same community.

Used by the scale benchmarks (10× the community) and by planners who ask how a larger
village would fare. Each copy's connections, relay groups and buses get a suffix; the
container's PV, inverter and battery grow with the number of copies, so supply per
connection stays the same.
"""

from __future__ import annotations

from microgrid.site import Connection, Gateway, RelayGroup, Site

__all__ = ["replicate_site", "resize_container"]


def replicate_site(site: Site, copies: int) -> Site:
    """A site with ``copies`` times the connections and the container's capacity.

    Parameters
    ----------
    site : Site
        The community to replicate.
    copies : int
        How many copies (≥ 1); copy 1 keeps the original ids.

    Returns
    -------
    Site
        Connections ``H001``, ``H001-2``, …; every bus of a copy is a new gateway
        ``<name>-<copy>`` on the next free ports, so Modbus addresses stay unique.

    Examples
    --------
    >>> from microgrid import load_site
    >>> big = replicate_site(load_site(), 10)
    >>> len(big.connections), len(big.businesses), big.pv.dc_capacity_kwp
    (4000, 700, 220.0)
    """
    if copies < 1:
        msg = f"copies must be at least 1, got {copies}"
        raise ValueError(msg)
    top_port = max(g.port for g in site.gateways.values())
    gateways: dict[str, Gateway] = dict(site.gateways)
    connections: list[Connection] = list(site.connections)
    groups: list[RelayGroup] = list(site.relay_groups)
    for copy in range(2, copies + 1):
        suffix = f"-{copy}"
        bus = {name: name + suffix for name in site.gateways}
        for offset, (name, gateway) in enumerate(site.gateways.items(), start=1):
            port = top_port + (copy - 2) * len(site.gateways) + offset
            gateways[bus[name]] = gateway.model_copy(update={"port": port})
        groups += [
            g.model_copy(
                update={
                    "id": g.id + suffix,
                    "relay": g.relay.model_copy(update={"gateway": bus[g.relay.gateway]}),
                }
            )
            for g in site.relay_groups
        ]
        connections += [
            c.model_copy(
                update={
                    "id": c.id + suffix,
                    "meter": c.meter.model_copy(update={"gateway": bus[c.meter.gateway]}),
                    "relay_group": None if c.relay_group is None else c.relay_group + suffix,
                }
            )
            for c in site.connections
        ]
    container = resize_container(
        site, site.pv.dc_capacity_kwp * copies, site.battery.energy_capacity_kwh * copies
    )
    # Validate the whole: model_copy skips validation, the constructor does not.
    fields = container.model_dump(exclude={"gateways", "connections", "relay_groups"})
    return Site(
        **fields, gateways=gateways, relay_groups=tuple(groups), connections=tuple(connections)
    )


def resize_container(site: Site, pv_kwp: float, battery_kwh: float) -> Site:
    """The site with another PV array and battery size, validated.

    The inverter's AC rating scales with the array and the battery's power with its
    energy, so the container keeps its proportions.

    Examples
    --------
    >>> from microgrid import load_site
    >>> big = resize_container(load_site(), 33.0, 90.0)
    >>> big.pv.inverter_ac_capacity_kw, big.battery.power_kw_max
    (30.0, 30.0)
    """
    pv_ratio = pv_kwp / site.pv.dc_capacity_kwp
    battery_ratio = battery_kwh / site.battery.energy_capacity_kwh
    pv = site.pv.model_copy(
        update={
            "dc_capacity_kwp": pv_kwp,
            "inverter_ac_capacity_kw": site.pv.inverter_ac_capacity_kw * pv_ratio,
        }
    )
    battery = site.battery.model_copy(
        update={
            "energy_capacity_kwh": battery_kwh,
            "power_kw_max": site.battery.power_kw_max * battery_ratio,
        }
    )
    return Site.model_validate(site.model_copy(update={"pv": pv, "battery": battery}).model_dump())
