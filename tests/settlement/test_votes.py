"""The household vote: one per household per round, the winner applies from the next round."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import SqliteLedgerStore
from settlement.votes import (
    VoteBook,
    VoteError,
    VoteOption,
    applied_option,
    site_under_vote,
    tally,
)

LIFELINE = VoteOption("lifeline", "200 Wh lifeline", {"lifeline_wh_per_day": 200})
BUSINESS = VoteOption("business", "more for businesses", {"lifeline_wh_per_day": 80})


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


def test_an_option_may_set_only_the_households_lifeline():
    with pytest.raises(VoteError, match="unknown policy name 'business_share'; known: lifeline_w"):
        VoteOption("b", "b", {"business_share": 0.4})
    with pytest.raises(VoteError, match="whole number"):
        VoteOption("b", "b", {"lifeline_w": 20.5})


def test_dispatch_plans_on_the_households_plan_the_vote_set(site):
    # The default site's households are on 'basic' (30 W / 120 Wh); the winning option
    # gives them 20 W and 80 Wh a day, what they leave goes to the businesses.
    option = VoteOption("small", "smaller lifeline", {"lifeline_w": 20, "lifeline_wh_per_day": 80})
    voted = site_under_vote(site, option)
    household = site.households[0].id
    assert site.service_plan_of(household).daily_energy_wh == 120
    plan = voted.service_plan_of(household)
    assert (plan.power_limit_w, plan.daily_energy_wh) == (20, 80)
    assert plan.evening_start_hour == site.service_plan_of(household).evening_start_hour
    assert site_under_vote(site, None) is site
    with pytest.raises(VoteError, match="power_limit_w: Input should be less than"):
        site_under_vote(site, VoteOption("big", "x", {"lifeline_w": 10**6}))
