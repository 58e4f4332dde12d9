"""The household vote: the community sets the split among options the operator offers.

Seed 000: "the community has the knowledge to decide".

Rules
-----
- Per round the operator offers **options**: each a name, a label and a named set of
  policy values (:data:`VOTE_POLICY`: the households' lifeline, ``lifeline_w`` and
  ``lifeline_wh_per_day``; what the lifeline leaves goes to the businesses); options may
  be replaced only while nobody has voted in that round.
- A household casts **one vote per round**; casting again changes it (the last counts).
- The **result** of a round: votes per option, turnout (voters ÷ households) and the
  winner — the most votes; a tie goes to the option offered first (the operator lists the
  status quo first). A round without votes has no winner.
- The winner of round ``r`` **applies from round r + 1** and stands until a later round
  has a winner (:func:`applied_option`), as a stake placed in round ``r`` counts from
  ``r + 1``: dispatch plans on :func:`site_under_vote`, the site with the households'
  default service plan set by the option in force (a household the operator put on a
  plan of its own keeps it).

Ballots are kept next to the ledger, in its own SQLite file (like the band contracts'
registry), so a backup of the ledger carries them too; a PostgreSQL ledger keeps them in
a file beside the service's data.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from microgrid.site import ConnectionKind, ServicePlan, Site

__all__ = [
    "VOTE_POLICY",
    "VoteBook",
    "VoteError",
    "VoteOption",
    "VoteResult",
    "applied_option",
    "site_under_vote",
    "tally",
]

VOTE_POLICY = {"lifeline_w": "power_limit_w", "lifeline_wh_per_day": "daily_energy_wh"}
"""What an option may set, by name → the field of the households' default
:class:`~microgrid.site.ServicePlan` it sets ([W] and [Wh per local day])."""

VOTE_PLAN = "community_vote"
"""The plan class :func:`site_under_vote` adds for the option in force."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_OPTIONS = 10
"""Most options one round may offer (a ballot a household can read)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vote_options (
    site TEXT NOT NULL,
    round INTEGER NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (site, round, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS votes (
    site TEXT NOT NULL,
    round INTEGER NOT NULL,
    household TEXT NOT NULL,
    option TEXT NOT NULL,
    cast_at TEXT NOT NULL,
    PRIMARY KEY (site, round, household)
) WITHOUT ROWID;
"""


class VoteError(ValueError):
    """A vote or an option set that breaks the rules; the message says what to change."""


@dataclass(frozen=True, slots=True)
class VoteOption:
    """One option of a round's vote.

    Attributes
    ----------
    name : str
        Its id (letters, digits, ``_.-``).
    label : str
        What households read.
    policy : mapping of str to float
        The policy values it sets, by name (units in the names, e.g. ``lifeline_wh_per_day``).
    """

    name: str
    label: str
    policy: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            msg = f"option name {self.name!r}: use 1-64 letters, digits, '_', '.', '-'"
            raise VoteError(msg)
        if not 1 <= len(self.label) <= 200:
            msg = f"option {self.name!r}: label must be 1-200 characters"
            raise VoteError(msg)
        for key, value in self.policy.items():
            if not _NAME.match(key):
                msg = f"option {self.name!r}: policy name {key!r} is not a plain identifier"
                raise VoteError(msg)
            if isinstance(value, bool) or not isinstance(value, int | float):
                msg = f"option {self.name!r}: {key} must be a number, got {value!r}"
                raise VoteError(msg)
            if not math.isfinite(value):
                msg = f"option {self.name!r}: {key} must be a finite number, got {value!r}"
                raise VoteError(msg)
            if key not in VOTE_POLICY:
                known = ", ".join(sorted(VOTE_POLICY))
                msg = f"option {self.name!r}: unknown policy name {key!r}; known: {known}"
                raise VoteError(msg)
            if value != int(value) or value < 1:
                msg = f"option {self.name!r}: {key} must be a whole number ≥ 1, got {value!r}"
                raise VoteError(msg)


@dataclass(frozen=True, slots=True)
class VoteResult:
    """A round's result.

    Attributes
    ----------
    round : int
    options : tuple of VoteOption
        As offered, in order.
    counts : dict of str to int
        Votes per option name (every option, zeros included).
    voters : int
        Households that voted.
    electorate : int
        Households that may vote.
    winner : VoteOption or None
        The most votes (ties: offered first); None without votes.
    """

    round: int
    options: tuple[VoteOption, ...]
    counts: dict[str, int]
    voters: int
    electorate: int
    winner: VoteOption | None

    @property
    def turnout(self) -> float:
        """Voters ÷ electorate [–] (0 with no electorate)."""
        return self.voters / self.electorate if self.electorate else 0.0


def tally(
    round_number: int,
    options: Sequence[VoteOption],
    ballots: Mapping[str, str],
    electorate: int,
) -> VoteResult:
    """Count a round's ballots (module docstring); pure.

    Ballots for an option not offered are not counted (they cannot be cast through
    :meth:`VoteBook.cast`).

    Examples
    --------
    >>> a, b = VoteOption("lifeline", "bigger lifeline"), VoteOption("business", "more business")
    >>> r = tally(3, [a, b], {"H1": "business", "H2": "lifeline"}, 4)
    >>> r.counts, r.turnout, r.winner.name  # a tie goes to the option offered first
    ({'lifeline': 1, 'business': 1}, 0.5, 'lifeline')
    """
    counts = {o.name: 0 for o in options}
    for choice in ballots.values():
        if choice in counts:
            counts[choice] += 1
    voters = sum(counts.values())
    winner = None
    if voters:
        best = max(counts.values())
        winner = next(o for o in options if counts[o.name] == best)
    return VoteResult(round_number, tuple(options), counts, voters, electorate, winner)


class VoteBook:
    """Options and ballots in a SQLite file (normally the ledger's).

    Parameters
    ----------
    path : str or Path
        The SQLite file (created if missing).
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            str(path), isolation_level=None, timeout=10, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> VoteBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_options(self, site_id: str, round_number: int, options: Sequence[VoteOption]) -> None:
        """Offer ``options`` in a round (replacing the offer while nobody has voted).

        Raises
        ------
        VoteError
            Fewer than 2 or more than :data:`MAX_OPTIONS` options, a repeated name, a
            round before 1, or a round where households have voted already.
        """
        if round_number < 1:
            msg = f"rounds count from 1, got {round_number}"
            raise VoteError(msg)
        if not 2 <= len(options) <= MAX_OPTIONS:
            msg = f"offer 2 to {MAX_OPTIONS} options, got {len(options)}"
            raise VoteError(msg)
        names = [o.name for o in options]
        if len(set(names)) != len(names):
            msg = f"option names must differ, got {names}"
            raise VoteError(msg)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute(
                "SELECT 1 FROM votes WHERE site = ? AND round = ? LIMIT 1", (site_id, round_number)
            ).fetchone():
                msg = (
                    f"households have voted in round {round_number}; its options are fixed, "
                    f"offer new ones for round {round_number + 1}"
                )
                raise VoteError(msg)
            self._db.execute(
                "DELETE FROM vote_options WHERE site = ? AND round = ?", (site_id, round_number)
            )
            self._db.executemany(
                "INSERT INTO vote_options VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (site_id, round_number, k, o.name, o.label, json.dumps(dict(o.policy)))
                    for k, o in enumerate(options)
                ],
            )

    def options(self, site_id: str, round_number: int) -> tuple[VoteOption, ...]:
        """The options offered in a round, in order (empty if none)."""
        rows = self._db.execute(
            "SELECT name, label, policy FROM vote_options WHERE site = ? AND round = ? "
            "ORDER BY position",
            (site_id, round_number),
        ).fetchall()
        return tuple(VoteOption(n, lbl, json.loads(p)) for n, lbl, p in rows)

    def cast(
        self,
        site: Site,
        round_number: int,
        household_id: str,
        option: str,
        now: datetime | None = None,
    ) -> None:
        """Cast or change a household's vote in a round.

        Raises
        ------
        VoteError
            Not a household of the site, or not an option offered in that round.
        """
        if household_id not in {c.id for c in site.households}:
            msg = f"{household_id!r} is not a household of {site.name!r}; only households vote"
            raise VoteError(msg)
        offered = [o.name for o in self.options(site.name, round_number)]
        if not offered:
            msg = f"no vote is open in round {round_number}; the operator offers options first"
            raise VoteError(msg)
        if option not in offered:
            msg = f"{option!r} is not an option of round {round_number}; choose one of {offered}"
            raise VoteError(msg)
        at = (now or datetime.now(UTC)).isoformat()
        self._db.execute(
            "INSERT INTO votes VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, round, household) "
            "DO UPDATE SET option = excluded.option, cast_at = excluded.cast_at",
            (site.name, round_number, household_id, option, at),
        )

    def ballots(self, site_id: str, round_number: int) -> dict[str, str]:
        """Each voting household's option in a round."""
        rows = self._db.execute(
            "SELECT household, option FROM votes WHERE site = ? AND round = ? ORDER BY household",
            (site_id, round_number),
        ).fetchall()
        return dict(rows)

    def result(self, site: Site, round_number: int) -> VoteResult:
        """The round's result (:func:`tally`) with the site's households as electorate."""
        return tally(
            round_number,
            self.options(site.name, round_number),
            self.ballots(site.name, round_number),
            len(site.households),
        )

    def last_decided_round(self, site_id: str, before: int) -> int | None:
        """The latest round before ``before`` with at least one vote (None if none)."""
        row = self._db.execute(
            "SELECT MAX(round) FROM votes WHERE site = ? AND round < ?", (site_id, before)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


class _HasPath(Protocol):
    path: str | Path


def applied_option(store: VoteBook | _HasPath, site: Site, round_number: int) -> VoteOption | None:
    """The option in force in ``round_number``: the winner of the latest earlier round.

    Parameters
    ----------
    store : VoteBook or a SQLite ledger store
        Where the ballots are; a ledger store's own file is opened as a :class:`VoteBook`.

    Raises
    ------
    TypeError
        A store without a SQLite file (PostgreSQL): pass its :class:`VoteBook`.
    site : Site
    round_number : int

    Returns
    -------
    VoteOption or None
        None until a round before ``round_number`` has had a vote.
    """
    if isinstance(store, VoteBook):
        return _applied(store, site, round_number)
    path = getattr(store, "path", None)
    if path is None:
        msg = (
            f"{type(store).__name__} has no SQLite file for ballots; pass the VoteBook "
            "(a PostgreSQL ledger's ballots are in the service's data_dir/votes.sqlite)"
        )
        raise TypeError(msg)
    with VoteBook(path) as book:
        return _applied(book, site, round_number)


def _applied(book: VoteBook, site: Site, round_number: int) -> VoteOption | None:
    decided = book.last_decided_round(site.name, round_number)
    if decided is None:
        return None
    return book.result(site, decided).winner


def site_under_vote(site: Site, option: VoteOption | None) -> Site:
    """The site as dispatch plans it while ``option`` is in force.

    The households' default service plan takes the option's values (:data:`VOTE_POLICY`)
    as a plan class of its own (:data:`VOTE_PLAN`); households the operator put on a
    plan by name keep theirs.

    Raises
    ------
    VoteError
        If the site has no default household plan to change, or the values make no
        valid plan (e.g. a power limit above 100 kW).
    """
    if option is None or not option.policy:
        return site
    base_name = site.service_plan_defaults.get(ConnectionKind.HOUSEHOLD)
    if base_name is None:
        msg = "the site has no default household service plan for a vote to change"
        raise VoteError(msg)
    values = {VOTE_POLICY[key]: int(value) for key, value in option.policy.items()}
    try:
        plan = ServicePlan.model_validate(site.service_plans[base_name].model_dump() | values)
    except ValidationError as error:
        problem = error.errors()[0]
        msg = f"option {option.name!r}: {problem['loc'][0]}: {problem['msg']}"
        raise VoteError(msg) from None
    defaults = dict(site.service_plan_defaults) | {ConnectionKind.HOUSEHOLD: VOTE_PLAN}
    return site.model_copy(
        update={
            "service_plans": dict(site.service_plans) | {VOTE_PLAN: plan},
            "service_plan_defaults": defaults,
        }
    )
