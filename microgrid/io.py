"""Reading site files: TOML in, a validated frozen :class:`~microgrid.site.Site` out."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from microgrid.site import Site

__all__ = [
    "ConfigFileError",
    "SiteFileError",
    "default_site_path",
    "load_site",
    "parse_site",
    "parse_toml",
    "validation_problems",
]


class ConfigFileError(ValueError):
    """A TOML configuration file cannot be used; the message lists every problem.

    Attributes
    ----------
    path : str
        The file (or ``<string>``) that was read.
    problems : list of str
        One line per problem: ``field.path: what is wrong``.
    """

    kind = "configuration"
    """What sort of file, for the message (``site``, ``scenario``)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        plural = "s" if len(problems) != 1 else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{path}: {len(problems)} problem{plural} in the {self.kind} file:\n{lines}"
        )


class SiteFileError(ConfigFileError):
    """A site file cannot be used; the message lists every problem with its field path."""

    kind = "site"


def default_site_path() -> Path:
    """Path of the bundled default site (22 kWp, 400 connections; DESIGN.md §2)."""
    return Path(str(resources.files("microgrid") / "data" / "default_site.toml"))


def load_site(path: str | Path | None = None) -> Site:
    """Read and validate a site file.

    Parameters
    ----------
    path : str or Path, optional
        A TOML site file; the bundled default site if omitted.

    Returns
    -------
    Site
        The frozen site.

    Raises
    ------
    SiteFileError
        If the file is missing, is not TOML, or fails validation; nothing is half-loaded.

    Examples
    --------
    >>> site = load_site()
    >>> site.pv.dc_capacity_kwp, len(site.connections)
    (22.0, 400)
    """
    path = default_site_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteFileError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise SiteFileError(str(path), [problem]) from None
    return parse_site(text, source=str(path))


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text of a configuration file.

    Raises
    ------
    ValueError
        Not TOML, or nested so deeply that the parser would exhaust the stack (no site
        or scenario nests more than a few levels; a file nested thousands deep is
        corrupt or hostile, and must not crash the program with a RecursionError).
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"not valid TOML: {exc}"
        raise ValueError(msg) from None
    except RecursionError:
        msg = "nested too deeply to be a configuration file (arrays or tables in arrays)"
        raise ValueError(msg) from None


def parse_site(text: str, source: str = "<string>") -> Site:
    """Validate the text of a TOML site file; see :func:`load_site`."""
    try:
        document = parse_toml(text)
    except ValueError as exc:
        raise SiteFileError(source, [str(exc)]) from None
    try:
        return Site.model_validate(document)
    except ValidationError as exc:
        raise SiteFileError(source, validation_problems(exc, document)) from None
    except RecursionError:  # a deep value in a free-form field
        msg = "nested too deeply to be a site file"
        raise SiteFileError(source, [msg]) from None


def validation_problems(error: ValidationError, document: Mapping[str, Any]) -> list[str]:
    """Every problem pydantic found in a TOML document, one line each with its field path.

    List items with an ``id`` are named by it (``connections[17] (id 'H008').tariff``).
    """
    problems = [_describe(e, document) for e in error.errors()]
    # Model-level checks report several problems in one error, one per line.
    return [part for problem in problems for part in problem.splitlines() if part]


def _describe(error: Any, document: Mapping[str, Any]) -> str:
    """One line per pydantic error: the field path (with connection ids) and the reason."""
    location = error["loc"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown field; check its spelling against the file's documentation"
    elif "input" in error and error["type"] not in {"value_error", "assertion_error"}:
        message = f"{message} (got {error['input']!r})"
    path = _field_path(location, document)
    return f"{path}: {message}" if path else message


def _field_path(location: tuple[Any, ...], document: Mapping[str, Any]) -> str:
    """Render ``('connections', 3, 'business', 'value_score')`` as a readable path.

    List items that have an ``id`` are named by it as well, because a person looks for
    ``H017`` in the file, not for the eighteenth table.
    """
    parts: list[str] = []
    node: Any = document
    for key in location:
        if isinstance(key, int):
            label = f"[{key}]"
            if isinstance(node, list) and key < len(node):
                node = node[key]
                if isinstance(node, Mapping) and "id" in node:
                    label += f" (id {node['id']!r})"
            parts.append(label)
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node.get(key) if isinstance(node, Mapping) else None
    return "".join(parts)
