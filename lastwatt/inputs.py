"""Reading operator inputs: stakes files."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

from microgrid.site import Site

__all__ = ["read_stakes"]


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
    businesses = {c.id for c in site.businesses}
    stakes: dict[str, int] = {}
    for business_id, raw, where in entries:
        if business_id not in businesses:
            msg = f"{path} {where}: {business_id!r} is not a business of site {site.name!r}"
            raise ValueError(msg)
        text = str(raw).strip()
        if isinstance(raw, bool) or not (isinstance(raw, int) or text.isdigit()) or int(text) < 0:
            msg = f"{path} {where}: stake must be a whole number of tokens ≥ 0, got {raw!r}"
            raise ValueError(msg)
        tokens = int(text)
        if business_id in stakes:
            msg = f"{path} {where}: {business_id!r} is listed twice"
            raise ValueError(msg)
        stakes[business_id] = tokens
    total, households = sum(stakes.values()), len(site.households)
    if total > households:
        msg = f"{path}: {total} tokens staked, but the site's {households} households hold one each"
        raise ValueError(msg)
    return stakes
