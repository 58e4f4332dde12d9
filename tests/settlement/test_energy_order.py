"""A meter's energies do not depend on the order its readings come in, nor on duplicates.

The stores hand readings over sorted (the one-pass path); callers of
:func:`settlement.hourly.interval_energies` may pass them in any order, repeated.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.readings import MeterReading
from settlement.hourly import interval_energies
from tests.settlement.conftest import HOUR


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 3600), st.integers(0, 2000), st.integers(0, 500)),
        min_size=1,
        max_size=12,
    ),
    start=st.integers(-3600, 3600),
    data=st.data(),
)
def test_energies_are_the_same_in_any_order_and_with_duplicates(steps, start, data):
    readings, at, imp, exp = [], HOUR + timedelta(seconds=start), 0, 0
    for seconds, d_imp, d_exp in steps:
        readings.append(MeterReading("H001", at, imp, exp))
        at, imp, exp = at + timedelta(seconds=seconds), imp + d_imp, exp + d_exp
    readings.append(MeterReading("H001", at, imp, exp))
    shuffled = data.draw(st.permutations(readings))
    repeated = shuffled + data.draw(st.lists(st.sampled_from(readings), max_size=4))
    expected = interval_energies("H001", readings, HOUR, parts=4)
    assert interval_energies("H001", shuffled, HOUR, parts=4) == expected
    assert interval_energies("H001", repeated, HOUR, parts=4) == expected
