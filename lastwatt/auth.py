"""Credentials of the service: users with roles, hashed passwords, the webhook secret.

No password ships. ``lastwatt serve --init`` (or the first start) writes
``<data-dir>/credentials.json`` (mode 0600) with a random password for the operator, one
per listed resident and a random HMAC secret for the payment processor, and prints them
once; only scrypt hashes of the passwords are kept. The processor never uses a
password: its webhook is authenticated by :mod:`settlement.fiat`'s HMAC.

Roles: ``operator`` (every write), ``resident`` (fund meters from their own wallet,
stake for their own household).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CREDENTIALS_FILE",
    "USER_NAME_PATTERN",
    "Credentials",
    "Role",
    "User",
    "check_user_name",
    "hash_password",
    "init_credentials",
    "load_credentials",
    "verify_password",
]

CREDENTIALS_FILE = "credentials.json"

# scrypt cost: n=2**14, r=8 takes ≈ 30 ms and 16 MiB here, the interactive-login
# setting of the scrypt paper; successful checks are cached (see Credentials.check), so
# it is paid once per client and password, not per request.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


USER_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
"""A login name: 1–32 lower-case ASCII letters, digits and ``_ . -``. HTTP Basic splits
on the first ``:``, and the name becomes the wallet ``user:<name>``, so no colons,
spaces, slashes or look-alike letters."""

_RESERVED_NAMES = frozenset({"operator", "webhook_secret"})


def check_user_name(name: str, resident: bool = True) -> str:
    """Return ``name`` if it may be a login; raise ``ValueError`` saying why not.

    ``operator`` (and ``webhook_secret``, a key of the printed credentials) are taken
    by the service itself, so a resident may not use them.

    Examples
    --------
    >>> check_user_name("amina")
    'amina'
    >>> check_user_name("a:b")
    Traceback (most recent call last):
    ...
    ValueError: user name 'a:b' must be 1–32 of a-z 0-9 _ . - (starting with a-z or 0-9)
    """
    if USER_NAME_PATTERN.fullmatch(name) is None:
        msg = f"user name {name[:40]!r} must be 1–32 of a-z 0-9 _ . - (starting with a-z or 0-9)"
        raise ValueError(msg)
    if resident and name in _RESERVED_NAMES:
        msg = f"user name {name!r} is reserved for the service; choose another resident name"
        raise ValueError(msg)
    return name


class Role(enum.StrEnum):
    """Who may do what."""

    OPERATOR = "operator"
    RESIDENT = "resident"


@dataclass(frozen=True, slots=True)
class User:
    """An API user.

    Attributes
    ----------
    name : str
        Login name; a resident's wallet is ``user:<name>``.
    role : Role
        What the user may do.
    household : str or None
        A resident's household connection id (whose stake they place).
    """

    name: str
    role: Role
    household: str | None = None


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A scrypt hash ``scrypt$<salt hex>$<hash hex>``.

    Examples
    --------
    >>> h = hash_password("correct horse", bytes(16))
    >>> verify_password("correct horse", h), verify_password("wrong", h)
    (True, False)
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` hash (constant time)."""
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hash_password(password, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(candidate, digest_hex)


class Credentials:
    """Users and the webhook secret, loaded from the data directory.

    Parameters
    ----------
    users : dict of str to (User, str)
        User and password hash by name.
    webhook_secret : bytes
        The payment processor's HMAC secret.
    """

    def __init__(self, users: dict[str, tuple[User, str]], webhook_secret: bytes) -> None:
        self._users = users
        self.webhook_secret = webhook_secret
        self._cache: dict[bytes, User] = {}
        # An unknown name is checked against this hash of a random password: one scrypt
        # run, like a known name with a wrong password, so timing does not tell them apart.
        self._decoy = hash_password(secrets.token_urlsafe(18))

    @property
    def users(self) -> list[User]:
        """Every user."""
        return [u for u, _ in self._users.values()]

    def _cached(self, name: str, password: str) -> tuple[bytes, User | None]:
        key = hashlib.sha256(f"{name}\0{password}".encode()).digest()
        return key, self._cache.get(key)

    def check(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None.

        Costs one scrypt run whether or not the user exists (no user enumeration by
        timing). A success is remembered (keyed by a SHA-256 of name and password, kept
        only in memory), so repeated requests do not pay scrypt again; failures are
        never cached.
        """
        key, cached = self._cached(name, password)
        if cached is not None:
            return cached
        entry = self._users.get(name)
        stored = self._decoy if entry is None else entry[1]
        matches = verify_password(password, stored)
        if entry is None or not matches:
            return None
        self._cache[key] = entry[0]
        return entry[0]

    async def check_async(self, name: str, password: str) -> User | None:
        """:meth:`check` without blocking the event loop: scrypt runs in a worker thread.

        The control loop shares the event loop with the API, so a burst of logins must
        not stall it for tens of milliseconds each.
        """
        _, cached = self._cached(name, password)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.check, name, password)


def init_credentials(
    data_dir: Path, residents: dict[str, str] | None = None, overwrite: bool = False
) -> dict[str, str]:
    """Create the credentials file; returns the plain passwords and secret to print once.

    Parameters
    ----------
    data_dir : Path
        The service's data directory.
    residents : dict of str to str, optional
        Resident login → household connection id.
    overwrite : bool
        Replace an existing file (rotates every credential).

    Raises
    ------
    FileExistsError
        If the file exists and ``overwrite`` is False.
    """
    path = Path(data_dir) / CREDENTIALS_FILE
    if path.exists() and not overwrite:
        msg = f"{path} exists; pass overwrite=True (lastwatt serve --init --force) to rotate"
        raise FileExistsError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain: dict[str, str] = {}
    users: dict[str, dict[str, str | None]] = {}
    operator_password = secrets.token_urlsafe(18)
    plain["operator"] = operator_password
    users["operator"] = {
        "role": Role.OPERATOR.value,
        "household": None,
        "hash": hash_password(operator_password),
    }
    for name, household in (residents or {}).items():
        password = secrets.token_urlsafe(12)
        plain[name] = password
        users[name] = {
            "role": Role.RESIDENT.value,
            "household": household,
            "hash": hash_password(password),
        }
    secret = secrets.token_hex(32)
    plain["webhook_secret"] = secret
    document = {"users": users, "webhook_secret": secret}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    return plain


def load_credentials(data_dir: Path) -> Credentials:
    """Read ``<data-dir>/credentials.json``.

    Raises
    ------
    FileNotFoundError
        If there is none (run ``lastwatt serve --init``).
    """
    path = Path(data_dir) / CREDENTIALS_FILE
    if not path.exists():
        msg = f"no credentials at {path}; run 'lastwatt serve --init --data-dir {data_dir}'"
        raise FileNotFoundError(msg)
    document = json.loads(path.read_text(encoding="utf-8"))
    users = {
        name: (
            User(name, Role(entry["role"]), entry.get("household")),
            str(entry["hash"]),
        )
        for name, entry in document["users"].items()
    }
    return Credentials(users, bytes.fromhex(document["webhook_secret"]))
