from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from scenarios import Scenario, parse_scenario
from tests.sites import village as village_site

GROUPS = ("HG01", "HG02", "HG03", "HG04")


@pytest.fixture(scope="session")
def village_path(tmp_path_factory) -> Path:
    """2 priority users, 4 household groups (40 homes), 6 businesses; 3 kWp, 8 kWh."""
    village = village_site(
        GROUPS,
        lambda all_: all_[:6],
        priority=2,
        pv_kwp=3.0,
        inverter_kw=2.7,
        battery_kwh=8.0,
        battery_kw=3.0,
    )
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
