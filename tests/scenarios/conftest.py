from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from microgrid import Site, load_site
from scenarios import Scenario, parse_scenario

GROUPS = ("HG01", "HG02", "HG03", "HG04")


@pytest.fixture(scope="session")
def village_path(tmp_path_factory) -> Path:
    """2 priority users, 4 household groups (40 homes), 6 businesses; 3 kWp, 8 kWh."""
    site = load_site()
    connections = (
        site.priority_users[:2]
        + tuple(c for c in site.households if c.relay_group in GROUPS)
        + site.businesses[:6]
    )
    small = site.model_copy(
        update={
            "pv": site.pv.model_copy(
                update={"dc_capacity_kwp": 3.0, "inverter_ac_capacity_kw": 2.7}
            ),
            "battery": site.battery.model_copy(
                update={"energy_capacity_kwh": 8.0, "power_kw_max": 3.0}
            ),
            "relay_groups": tuple(g for g in site.relay_groups if g.id in GROUPS),
            "connections": connections,
        }
    )
    village = Site.model_validate(small.model_dump())
    path = tmp_path_factory.mktemp("village") / "village.toml"
    path.write_text(tomli_w.dumps(village.model_dump(mode="json", exclude_none=True)))
    return path


@pytest.fixture(scope="session")
def make_scenario(village_path):
    def make(extra: str = "", days: int = 4, dispatch: str = "proportional") -> Scenario:
        text = (
            f'name = "village"\nsite = "{village_path.name}"\n'
            f'[horizon]\nstart = "2026-08-01"\ndays = {days}\n'
            f'[policy]\ndispatch = "{dispatch}"\noracle_every_days = 2\n' + extra
        )
        return parse_scenario(text, base_dir=village_path.parent)

    return make
