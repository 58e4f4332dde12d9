"""Community routes: the household vote, split stakes and energy access (MTF).

==========================================  ======================  ============
route                                       who                     else
==========================================  ======================  ============
``GET /api/community/vote[?round=r]``       anyone on a public       401
                                            noticeboard; signed in
``PUT /api/community/vote/options``         operator                401 / 403
``PUT /api/community/vote/{household}``     that household's        401 / 403
                                            resident
``PUT /api/community/stakes/{household}``   that household, the     401 / 403
                                            operator
``GET /api/community/mtf[?day=YYYY-MM-DD]`` resident (own),         401
                                            operator (all)
==========================================  ======================  ============

The vote follows the staking rounds (:meth:`lastwatt.service.Service.current_round`):
households vote during round ``r`` on the options the operator offered for ``r``; the
winner applies from ``r + 1`` (:func:`settlement.votes.applied_option`). A vote is the
household's own: the operator offers options but casts no ballot.

Energy access is the World Bank Multi-Tier Framework of :mod:`microgrid.access`, computed
from the meters' recorded readings of one local day: each 15-min period's energy is the
difference of the import register at its edges, and its mean power stands for what the
household could draw (a lower bound: a supplied household drawing under 3 W counts as
dark). Only households are rated.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations.
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lastwatt.auth import Role, User
from lastwatt.customers import CustomerRegistry
from microgrid.access import mtf_daily, mtf_tier_counts
from microgrid.readings import MeterReading
from settlement import LedgerError
from settlement.staking import place_stake
from settlement.votes import (
    VoteBook,
    VoteError,
    VoteOption,
    VoteResult,
    applied_option,
    site_under_vote,
)

if TYPE_CHECKING:
    from lastwatt.service import Service

__all__ = ["energy_per_period", "router"]

_STRICT = ConfigDict(strict=True, extra="forbid")
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Label = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
_PERIOD = pd.Timedelta(minutes=15)
_HISTORY = dt.timedelta(days=3660)
"""How far back the MTF may be asked for: ten years, far beyond the readings kept."""


# --- bodies and answers ------------------------------------------------------------------
class OptionIn(BaseModel):
    """An option the operator offers: a name, what households read, its policy values."""

    model_config = _STRICT
    name: Name
    label: Label
    policy: dict[Name, float] = Field(
        default_factory=dict,
        max_length=20,
        description="policy values by name, units in the name (e.g. lifeline_wh_per_day)",
    )


class OptionsRequest(BaseModel):
    """The options of the current round's vote (2 to 10; fixed once a household voted)."""

    model_config = _STRICT
    options: list[OptionIn] = Field(min_length=2, max_length=10)


class BallotRequest(BaseModel):
    """A household's vote in the current round (casting again changes it)."""

    model_config = _STRICT
    option: Name


class SplitRequest(BaseModel):
    """Stake split over businesses: weights in parts per million adding up to 10⁶."""

    model_config = _STRICT
    weights: dict[Name, Annotated[int, Field(gt=0, le=1_000_000)]] = Field(
        min_length=1, max_length=16
    )


class OptionOut(BaseModel):
    """An option and its votes."""

    name: str
    label: str
    policy: dict[str, float]
    votes: int


class VoteView(BaseModel):
    """A round's vote: options with votes, turnout, the leader, and what applies now."""

    round: int
    current_round: int
    options: list[OptionOut]
    voters: int
    households: int
    turnout: float = Field(description="voters ÷ households [–]")
    leading: str | None = Field(description="the winner so far (ties: offered first)")
    applied: OptionOut | None = Field(description="the option in force in the current round")
    own_vote: str | None = Field(description="the caller's household's vote, if any")


class BallotAnswer(BaseModel):
    """The recorded vote."""

    household: str
    round: int
    option: str
    applies_from_round: int


class SplitAnswer(BaseModel):
    """The recorded split."""

    household: str
    weights: dict[str, int]
    effective_round: int


class MtfHousehold(BaseModel):
    """One household's MTF attributes and tiers for the day."""

    household: str
    capacity_w: float
    daily_energy_wh: float
    hours_per_day: float
    evening_hours: float
    tier: int


class MtfView(BaseModel):
    """MTF attributes per household the caller may see, and households per tier."""

    day: dt.date
    households: list[MtfHousehold]
    tier_counts: dict[str, int] = Field(description="households per overall tier 0–5")


# --- energy from readings ------------------------------------------------------------------
def energy_per_period(
    readings: list[MeterReading], meters: list[str], start: pd.Timestamp, periods: int
) -> pd.DataFrame:
    """Imported energy per meter and 15-min period from cumulative registers [Wh].

    A period's energy is the register at its end minus the register at its start, each the
    last reading at or before that edge (periods without a reading at both edges are 0).

    Examples
    --------
    >>> t0 = pd.Timestamp("2026-08-01", tz="UTC")
    >>> rs = [MeterReading("H1", (t0 + pd.Timedelta(minutes=m)).to_pydatetime(), wh)
    ...       for m, wh in [(0, 100), (10, 104), (15, 110), (30, 130)]]
    >>> energy_per_period(rs, ["H1"], t0, 2)["H1"].tolist()
    [10.0, 20.0]
    """
    edges = pd.date_range(start, periods=periods + 1, freq=_PERIOD)
    frame = pd.DataFrame(0.0, index=edges[:-1], columns=meters)
    by_meter: dict[str, list[MeterReading]] = {}
    for r in readings:
        by_meter.setdefault(r.meter_id, []).append(r)
    for meter, rows in by_meter.items():
        if meter not in frame.columns:
            continue
        times = pd.DatetimeIndex([r.read_at for r in rows]).tz_convert("UTC")
        registers = pd.Series([float(r.import_wh) for r in rows], index=times).sort_index()
        at_edges = registers.reindex(registers.index.union(edges)).ffill().loc[edges]
        diff = np.diff(at_edges.to_numpy())
        # A register that went down (replaced meter) counts no energy, never negative.
        frame[meter] = np.where(np.isfinite(diff) & (diff > 0), diff, 0.0)
    return frame


def place_stake_as(
    service: "Service", who: User, household_id: str, choice: str | Mapping[str, int] | None
) -> int:
    """Place a household's stake for the next round as ``who``; the round it counts from.

    Its resident or the operator only (403); a stake the ledger refuses is a 400.
    """
    if who.role is not Role.OPERATOR and who.household != household_id:
        raise HTTPException(
            403, f"{who.name!r} may stake only for their own household ({who.household})"
        )
    try:
        return place_stake(
            service.store, service.site, household_id, choice, service.current_round()
        )
    except LedgerError as exc:
        raise HTTPException(400, str(exc)) from None


def router(
    service: "Service",
    customers: CustomerRegistry,
    caller: Callable[..., Awaitable[User | None]],
    user: Callable[..., Awaitable[User]],
    operator: Callable[..., Awaitable[User]],
    public: bool = True,
) -> APIRouter:
    """The community routes over a started service (module docstring).

    Parameters
    ----------
    public : bool
        Whether the vote's result is on the public noticeboard (anonymous reads).
    """
    api = APIRouter(tags=["community"])
    site = service.site
    households = [c.id for c in site.households]
    household_set = set(households)
    book = VoteBook(service.vote_book_path())

    def option_out(option: VoteOption, result: VoteResult | None) -> OptionOut:
        votes = result.counts.get(option.name, 0) if result is not None else 0
        return OptionOut(
            name=option.name, label=option.label, policy=dict(option.policy), votes=votes
        )

    @api.get("/api/community/vote")
    async def vote(
        who: Annotated[User | None, Depends(caller)],
        round: Annotated[int | None, Query(ge=1, le=10**6)] = None,
    ) -> VoteView:
        """A round's vote (default: the current round) and the option in force now."""
        if who is None and not public:
            raise HTTPException(
                401,
                "the vote is not on the public noticeboard here; credentials required",
                {"WWW-Authenticate": "Basic"},
            )
        current = service.current_round()
        number = current if round is None else round
        result = book.result(site, number)
        applied = applied_option(book, site, current)
        own = None
        if who is not None and who.household in household_set:
            own = book.ballots(site.name, number).get(who.household)
        return VoteView(
            round=number,
            current_round=current,
            options=[option_out(o, result) for o in result.options],
            voters=result.voters,
            households=result.electorate,
            turnout=result.turnout,
            leading=result.winner.name if result.winner else None,
            applied=option_out(applied, None) if applied else None,
            own_vote=own,
        )

    @api.put("/api/community/vote/options")
    async def set_options(
        body: OptionsRequest, who: Annotated[User, Depends(operator)]
    ) -> VoteView:
        """Offer the current round's options (the winner applies from the next round)."""
        try:
            options = [VoteOption(o.name, o.label, o.policy) for o in body.options]
            for option in options:  # each must make a plan the site can hold households to
                site_under_vote(service.site, option)
        except VoteError as exc:
            raise HTTPException(422, str(exc)) from None
        try:
            book.set_options(site.name, service.current_round(), options)
        except VoteError as exc:  # the round's options are fixed once anyone voted
            raise HTTPException(409, str(exc)) from None
        return await vote(who)

    @api.put("/api/community/vote/{household_id}")
    async def cast(
        household_id: Name, body: BallotRequest, who: Annotated[User, Depends(user)]
    ) -> BallotAnswer:
        """Cast or change a household's vote in the current round (its resident only)."""
        if household_id not in household_set:
            raise HTTPException(404, f"no household {household_id!r} at this site")
        if who.household != household_id:
            raise HTTPException(
                403,
                f"{who.name!r} may vote only for their own household"
                + (f" ({who.household})" if who.household else "; operators offer options"),
            )
        number = service.current_round()
        try:
            book.cast(site, number, household_id, body.option, service.clock.now())
        except VoteError as exc:
            raise HTTPException(409, str(exc)) from None
        return BallotAnswer(
            household=household_id, round=number, option=body.option, applies_from_round=number + 1
        )

    @api.put("/api/community/stakes/{household_id}", tags=["staking"])
    async def split(
        household_id: Name, body: SplitRequest, who: Annotated[User, Depends(user)]
    ) -> SplitAnswer:
        """Split a household's stake over businesses from the next round."""
        effective = place_stake_as(service, who, household_id, body.weights)
        return SplitAnswer(household=household_id, weights=body.weights, effective_round=effective)

    @api.get("/api/community/mtf")
    async def mtf(who: Annotated[User, Depends(user)], day: dt.date | None = None) -> MtfView:
        """MTF attributes and tier per household for a local day (default: today so far)."""
        tz = site.location.timezone
        now = pd.Timestamp(service.clock.now()).tz_convert("UTC")
        today = now.tz_convert(tz).date()
        day = day or today
        if day > today:
            raise HTTPException(400, f"day {day} is in the future; ask for {today} or before")
        if day < today - _HISTORY:
            raise HTTPException(
                400, f"day {day} is more than {_HISTORY.days} days ago; ask for a later day"
            )
        start = pd.Timestamp(day, tz=tz).tz_convert("UTC")
        end = min(pd.Timestamp(day + dt.timedelta(days=1), tz=tz).tz_convert("UTC"), now)
        periods = max(2, int((end - start) / _PERIOD))
        visible = [h for h in households if customers.may_see(who, h)]
        if not visible:
            return MtfView(day=day, households=[], tier_counts={str(k): 0 for k in range(6)})
        readings = service.store.readings(
            (start - _PERIOD).to_pydatetime(), (start + periods * _PERIOD).to_pydatetime(), visible
        )
        energy = energy_per_period(readings, visible, start, periods)
        supply_w = energy / (_PERIOD / pd.Timedelta(hours=1))
        daily = mtf_daily(supply_w, energy, tz)
        daily = daily[daily.index.get_level_values("date") == day]
        counts = mtf_tier_counts(daily)
        tier_counts = {str(k): int(counts[k].sum()) if len(counts) else 0 for k in range(6)}
        rows = [
            MtfHousehold(
                household=str(h),
                capacity_w=float(r["capacity_w"]),
                daily_energy_wh=float(r["daily_energy_wh"]),
                hours_per_day=float(r["hours_per_day"]),
                evening_hours=float(r["evening_hours"]),
                tier=int(r["tier"]),
            )
            for h, (_, r) in zip(
                daily.index.get_level_values("household"), daily.iterrows(), strict=True
            )
        ]
        return MtfView(day=day, households=rows, tier_counts=tier_counts)

    return api
