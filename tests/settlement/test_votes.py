"""The household vote: one per household per round, the winner applies from the next round."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore
from settlement.votes import VoteBook, VoteError, VoteOption, applied_option, tally

LIFELINE = VoteOption("lifeline", "200 Wh lifeline", {"lifeline_wh_per_day": 200.0})
BUSINESS = VoteOption("business", "more for businesses", {"business_share": 0.4})


@pytest.fixture
def book(tmp_path):
    with VoteBook(tmp_path / "ledger.sqlite") as b:
        yield b


def test_winner_applies_from_the_next_round(site, book):
    book.set_options(site.name, 3, [LIFELINE, BUSINESS])
    book.cast(site, 3, "H001", "business")
    book.cast(site, 3, "H002", "business")
    book.cast(site, 3, "H003", "lifeline")
    assert applied_option(book, site, 3) is None  # not in the round that votes
    assert applied_option(book, site, 4) == BUSINESS
    assert applied_option(book, site, 9) == BUSINESS  # stands until a later vote
    # H001 and H002 change their minds in round 5: a tie now, the first offered wins.
    book.set_options(site.name, 5, [LIFELINE, BUSINESS])
    book.cast(site, 5, "H001", "business")
    book.cast(site, 5, "H001", "lifeline")  # changing a vote: the last counts
    book.cast(site, 5, "H002", "business")
    result = book.result(site, 5)
    assert result.counts == {"lifeline": 1, "business": 1}
    assert result.voters == 2
    assert result.turnout == pytest.approx(2 / len(site.households))
    assert applied_option(book, site, 5) == BUSINESS
    assert applied_option(book, site, 6) == LIFELINE


def test_applied_option_opens_the_ledger_file(site, tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SqliteLedgerStore(path)
    with VoteBook(path) as book:
        book.set_options(site.name, 1, [LIFELINE, BUSINESS])
        book.cast(site, 1, "H001", "lifeline")
    assert applied_option(store, site, 2) == LIFELINE
    store.close()


def test_rules(site, book):
    with pytest.raises(VoteError, match="no vote is open"):
        book.cast(site, 1, "H001", "lifeline")
    book.set_options(site.name, 1, [LIFELINE, BUSINESS])
    with pytest.raises(VoteError, match="only households vote"):
        book.cast(site, 1, site.businesses[0].id, "lifeline")
    with pytest.raises(VoteError, match="not an option"):
        book.cast(site, 1, "H001", "other")
    book.cast(site, 1, "H001", "lifeline")
    with pytest.raises(VoteError, match="options are fixed"):
        book.set_options(site.name, 1, [BUSINESS, LIFELINE])
    with pytest.raises(VoteError, match="2 to 10"):
        book.set_options(site.name, 2, [LIFELINE])
    with pytest.raises(VoteError, match="must differ"):
        book.set_options(site.name, 2, [LIFELINE, LIFELINE])
    with pytest.raises(VoteError, match="finite"):
        VoteOption("x", "x", {"a": float("nan")})
    assert book.options(site.name, 1) == (LIFELINE, BUSINESS)


def test_tally_without_votes_has_no_winner():
    result = tally(1, [LIFELINE, BUSINESS], {}, 320)
    assert result.winner is None
    assert result.turnout == 0.0


def test_a_store_without_a_file_is_refused_clearly(site):
    class NoFile:
        pass

    with pytest.raises(TypeError, match="pass the VoteBook"):
        applied_option(NoFile(), site, 2)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["lifeline", "business"])), max_size=30)
)
def test_one_vote_per_household_whatever_the_sequence(site, casts):
    with VoteBook(":memory:") as book:
        book.set_options(site.name, 1, [LIFELINE, BUSINESS])
        last: dict[str, str] = {}
        for k, option in casts:
            household = site.households[k].id
            book.cast(site, 1, household, option)
            last[household] = option
        result = book.result(site, 1)
    assert result.voters == len(last)
    assert sum(result.counts.values()) == len(last)
    for option in ("lifeline", "business"):
        assert result.counts[option] == sum(1 for v in last.values() if v == option)
    if last:
        assert result.counts[result.winner.name] == max(result.counts.values())
