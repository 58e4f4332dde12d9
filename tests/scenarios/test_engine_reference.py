"""A proportional run of ``seeds_year`` gives, bit for bit, the figures stored before the
engine was made faster (``tests/data/seeds_year_proportional_3days.json``).

Speed work on the engine, the ledger or the proportional rule must not change a result:
every daily metric, every group's shed hours and every ledger total of two seeds are
compared exactly (floats round-trip through JSON). The oracle is off: its MILP is not
what this guards, and with the scenario's 1 s limit it depends on the machine's load.

A change that is *meant* to alter results regenerates the file with
``python -m tests.scenarios.test_engine_reference`` and says why in its commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import Scenario, bundled_scenario, with_parameter
from scenarios.engine import RunResult, _Units, run_scenario

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "seeds_year_proportional_3days.json"
RUNS = (0, 1)


def reference_scenario() -> Scenario:
    scenario = with_parameter(bundled_scenario("seeds_year"), "horizon.days", 3)
    scenario = with_parameter(scenario, "policy.dispatch", "proportional")
    return with_parameter(scenario, "policy.oracle_every_days", 0)


def figures(result: RunResult) -> dict[str, dict[str, object]]:
    """Everything a run reports, as JSON-able floats."""
    return {
        "daily": {
            c: [float(v) for v in result.daily[c]] for c in result.daily.columns if c != "date"
        },
        "shed_hours": {k: float(v) for k, v in result.shed_hours.items()},
        "ledger": {k: float(v) for k, v in result.ledger.items()},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("run", RUNS)
def test_a_proportional_run_matches_the_stored_figures_bit_for_bit(run):
    stored = json.loads(REFERENCE.read_text())[str(run)]
    got = figures(run_scenario(reference_scenario(), run))
    for part, table in stored.items():
        # Only what was stored is compared: a metric added later has no reference yet.
        differing = [name for name, value in table.items() if not _same(got[part][name], value)]
        assert not differing, f"{part} differs from the stored reference: {differing}"


@settings(max_examples=30, deadline=None)
@given(
    connections=st.integers(1, 500),
    units=st.integers(1, 120),
    periods=st.integers(1, 96),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_units_demand_is_its_connections_summed_in_site_order(connections, units, periods, seed):
    # The order fixes every last bit: the same seed gives the same run on any machine,
    # BLAS library or number of threads (a matrix product gave the pool and Dask
    # different KPIs).
    rng = np.random.default_rng(seed)
    demand = rng.lognormal(size=(periods, connections + 3))
    columns = rng.permutation(connections + 3)[:connections]
    unit_of = rng.integers(0, units, connections)
    membership = np.zeros((connections, units))
    membership[np.arange(connections), unit_of] = 1.0
    holder = _Units(None, [], None, columns, membership, [])  # type: ignore[arg-type]
    expected = np.zeros((periods, units))
    for i, u in enumerate(unit_of):
        expected[:, u] += demand[:, columns[i]]
    np.testing.assert_array_equal(holder.demand_kw(demand), expected)


if __name__ == "__main__":
    REFERENCE.write_text(
        json.dumps(
            {str(r): figures(run_scenario(reference_scenario(), r)) for r in RUNS},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
