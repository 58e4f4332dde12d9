"""The customer registry: seeded from the site, edited strictly, searched and sorted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lastwatt.customers import CustomerIn, CustomerRegistry

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def registry(tmp_path):
    r = CustomerRegistry(tmp_path / "state.sqlite")
    yield r
    r.close()


def test_seed_once_per_connection(registry):
    assert registry.seed(["H001", "H002", "B01"], NOW) == 3
    assert registry.seed(["H001", "H002", "B01", "P01"], NOW) == 1
    assert registry.holder_of("H002").id == "H002"


def test_edit_search_and_sort(registry):
    registry.seed(["H001", "H002", "H003"], NOW)
    registry.put(
        "amina",
        CustomerIn(
            name="Amina Issoufou", phone="+227 90 12 34 56", connections=["H009"], plan="lifeline"
        ),
        "operator",
        NOW,
    )
    registry.put(
        "H002", CustomerIn(name="Bachir Moussa", connections=["H002"], language="en"), "op", NOW
    )
    page = registry.search("amina")
    assert [c.id for c in page.customers] == ["amina"]
    assert page.customers[0].changed_by == "operator"
    assert registry.search("+227 90").total == 1
    assert registry.search("h00").total == 4  # ids and connections, any case
    names = [c.name for c in registry.search(sort="name").customers]
    assert names == sorted(names, key=str.casefold)
    assert [c.id for c in registry.search(sort="name", descending=True, limit=2).customers] == [
        "H003",
        "H001",
    ]
    assert registry.search(limit=2, offset=2).total == 4


def test_a_connection_has_one_holder(registry):
    registry.seed(["H001"], NOW)
    with pytest.raises(ValueError, match="belongs to customer 'H001'"):
        registry.put("other", CustomerIn(name="X", connections=["H001"]), "op", NOW)


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "A", "phone": "call me"},
        {"name": "A", "phone": "+٢٢٧ ٩٠ ١٢ ٣٤"},
        {"name": "A", "connections": ["H001", "H001"]},
        {"name": "A", "connections": ["../etc"]},
        {"name": "A", "language": "de"},
        {"name": "A", "surprise": 1},
        {"name": 5},
        {"name": "A", "connections": "H001"},
    ],
)
def test_bad_customers_are_refused(body):
    with pytest.raises(ValidationError):
        CustomerIn(**body)


def test_bad_ids_are_refused(registry):
    with pytest.raises(ValueError, match="customer id"):
        registry.put("a b", CustomerIn(name="A"), "op", NOW)
