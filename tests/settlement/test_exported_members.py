"""The curated public API: everything in ``settlement.__all__`` exists and is documented."""

from __future__ import annotations

import settlement


def test_all_names_exist_and_have_docstrings():
    for name in settlement.__all__:
        member = getattr(settlement, name)
        assert member.__doc__, f"settlement.{name} has no docstring"
    assert sorted(settlement.__all__) == settlement.__all__
