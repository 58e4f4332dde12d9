"""Reading operator inputs: stakes files, and the strict number and time parsing of files."""

from __future__ import annotations

import csv
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

# Imported by lastwatt.ledger_commands when `lastwatt --help` builds the parser: the site
# model (and with it pandas) is needed for annotations only.
if TYPE_CHECKING:
    from microgrid.site import Site

__all__ = ["FIRST_YEAR", "LAST_YEAR", "parse_count", "parse_file_time", "read_stakes"]

FIRST_YEAR = 2000
"""Earliest year a reading or file time may have (a meter clock reset shows 0001 or 1970)."""
LAST_YEAR = 2100
"""Latest year a reading or file time may have."""
_MAX_DIGITS = 18  # stays inside int64


def parse_count(text: str, what: str) -> int:
    """A whole number ≥ 0 written with ASCII digits only.

    Python's ``int`` also takes ``1_000``, ``" 7 "`` and digits of other scripts
    (``"١٢"``); in a meter register or a token count those are typos or corruption.

    Examples
    --------
    >>> parse_count("1200", "import_wh")
    1200
    >>> parse_count("1_000", "import_wh")
    Traceback (most recent call last):
    ...
    ValueError: import_wh must be a whole number of ASCII digits 0-9, got '1_000'
    """
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        msg = f"{what} must be a whole number of ASCII digits 0-9, got {text[:30]!r}"
        raise ValueError(msg)
    return int(text)


def parse_file_time(text: str, what: str) -> datetime:
    """An ISO 8601 time from a file (UTC if it has no offset), in years 2000–2100.

    Raises
    ------
    ValueError
        Not ISO 8601, or outside the years (naming ``what``).
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"{what} {text[:40]!r} is not an ISO 8601 time (e.g. 2026-08-01T10:05:00Z)"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        msg = (
            f"{what} {text[:40]!r} is in year {moment.year}; expected {FIRST_YEAR}–{LAST_YEAR} "
            "(a reset meter clock?)"
        )
        raise ValueError(msg)
    return moment


def read_stakes(path: str | Path, site: Site) -> dict[str, int]:
    """Read stake tokens per business from TOML or CSV.

    TOML: a ``[stakes]`` table of ``business_id = tokens``. CSV: columns
    ``business_id,stake``. Tokens are whole, non-negative, and at most one per household
    in total.

    Raises
    ------
    ValueError
        Naming the file, the line or key, and what is wrong.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("stakes")
            if not isinstance(table, dict):
                msg = f"{path}: expected a [stakes] table of business_id = tokens"
                raise ValueError(msg)
            entries = [(str(k), v, f"key {k!r}") for k, v in table.items()]
        else:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or {"business_id", "stake"} - set(reader.fieldnames):
                    msg = f"{path}: expected CSV columns business_id,stake"
                    raise ValueError(msg)
                entries = [
                    (row["business_id"], row["stake"], f"line {i + 2}")
                    for i, row in enumerate(reader)
                ]
    except OSError as exc:
        msg = f"{path}: cannot read the stakes file: {exc.strerror}"
        raise ValueError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ValueError(msg) from exc
    except RecursionError:
        msg = f"{path}: nested too deeply to be a stakes file"
        raise ValueError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise ValueError(msg) from None
    businesses = {c.id for c in site.businesses}
    stakes: dict[str, int] = {}
    for business_id, raw, where in entries:
        if business_id not in businesses:
            msg = f"{path} {where}: {business_id!r} is not a business of site {site.name!r}"
            raise ValueError(msg)
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            msg = f"{path} {where}: stake must be a whole number of tokens ≥ 0, got {raw!r}"
            raise ValueError(msg)
        try:
            tokens = raw if isinstance(raw, int) else parse_count(raw, "stake")
        except ValueError as exc:
            msg = f"{path} {where}: {exc}"
            raise ValueError(msg) from None
        if tokens < 0:
            msg = f"{path} {where}: stake must be a whole number of tokens ≥ 0, got {raw!r}"
            raise ValueError(msg)
        if business_id in stakes:
            msg = f"{path} {where}: {business_id!r} is listed twice"
            raise ValueError(msg)
        stakes[business_id] = tokens
    total, households = sum(stakes.values()), len(site.households)
    if total > households:
        msg = f"{path}: {total} tokens staked, but the site's {households} households hold one each"
        raise ValueError(msg)
    return stakes
