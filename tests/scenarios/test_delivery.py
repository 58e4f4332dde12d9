from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.problem import BatteryState
from dispatch.rolling import deliver_period
from scenarios.delivery import UnitTiers, deliver_block

IDS = ["P1", "G1", "G2", "B1", "B2"]
TIERS = {"priority": ("P1",), "household": ("G1", "G2"), "business": ("B1", "B2")}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), soc=st.floats(1.0, 9.0))
def test_same_physics_as_dispatch_deliver_period(seed, soc):
    rng = np.random.default_rng(seed)
    rows = 8
    relays = rng.random((rows, len(IDS))) < 0.7
    allotment = rng.uniform(0, 2, (rows, len(IDS)))
    pv = rng.uniform(0, 4, rows)
    demand = rng.uniform(0, 2, (rows, len(IDS)))
    battery = BatteryState(soc, 1.0, 10.0, 2.0, 0.95, 0.95)
    block = deliver_block(relays, allotment, pv, demand, battery, 0.25, UnitTiers.of(1, 2, 2))
    plan = SimpleNamespace(
        relays=pd.DataFrame(relays, columns=IDS), allotment_kw=pd.DataFrame(allotment, columns=IDS)
    )
    state = battery
    for t in range(rows):
        served, flows = deliver_period(
            plan, t, float(pv[t]), dict(zip(IDS, demand[t], strict=True)), state, 0.25, TIERS
        )
        np.testing.assert_allclose([served[u] for u in IDS], block.served_kw[t], atol=1e-9)
        np.testing.assert_allclose(flows["soc_kwh"], block.soc_kwh[t], atol=1e-9)
        np.testing.assert_allclose(flows["curtailed_kw"], block.curtailed_kw[t], atol=1e-9)
        state = BatteryState(flows["soc_kwh"], 1.0, 10.0, 2.0, 0.95, 0.95)
