"""Credentials of the service: users with roles, hashed passwords, the webhook secret.

No password ships. ``lastwatt serve --init`` (or the first start) writes
``<data-dir>/credentials.json`` (mode 0600) with a random password for the operator, one
per listed resident and a random HMAC secret for the payment processor; only scrypt
hashes of the passwords are kept there. The new passwords and the secret are never
printed (a service manager would keep them in its journal): each goes to its own file
``<data-dir>/secrets/<name>`` (mode 0600, folder 0700) for the operator to read and hand
over, then delete. Users are added and removed one at a time (:func:`add_user`,
:func:`remove_user`, ``lastwatt users``) without touching anyone else's password or the
processor's secret; the secret rotates only when asked (:func:`rotate_webhook_secret`).
The processor never uses a password: its webhook is authenticated by
:mod:`settlement.fiat`'s HMAC; ``LASTWATT_WEBHOOK_SECRET`` in the environment (hex)
overrides the stored one (see :mod:`lastwatt.config`).

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
from typing import Any

__all__ = [
    "CREDENTIALS_FILE",
    "SECRETS_DIR",
    "USER_NAME_PATTERN",
    "Credentials",
    "CredentialsError",
    "Role",
    "User",
    "add_user",
    "check_user_name",
    "hand_over_secrets",
    "hash_password",
    "init_credentials",
    "load_credentials",
    "remove_user",
    "rotate_webhook_secret",
    "verify_password",
    "write_secret_file",
]

CREDENTIALS_FILE = "credentials.json"
SECRETS_DIR = "secrets"
"""Folder of the data directory where new passwords and secrets are handed over."""

_WEBHOOK = "webhook_secret"


class CredentialsError(ValueError):
    """A credential change that cannot be made (unknown user, last operator, ...)."""


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


def write_secret_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the owner only (file 0600, folder 0700).

    The file is created with its final mode (never briefly world-readable) and replaced
    atomically, so a reader sees the old secret or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_document(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / CREDENTIALS_FILE
    if not path.exists():
        msg = f"no credentials at {path}; run 'lastwatt serve --init --data-dir {data_dir}'"
        raise FileNotFoundError(msg)
    problem = "missing 'users' or 'webhook_secret'"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        problem = str(exc)
        document = None
    valid = isinstance(document, dict) and isinstance(document.get("users"), dict)
    if not valid or _WEBHOOK not in document:
        msg = f"{path} is not a credentials file ({problem}); restore it from a backup"
        raise CredentialsError(msg)
    return dict(document)


def _write_document(data_dir: Path, document: dict[str, Any]) -> None:
    write_secret_file(Path(data_dir) / CREDENTIALS_FILE, json.dumps(document, indent=2))


def _user_entry(role: Role, household: str | None, password: str) -> dict[str, str | None]:
    return {"role": role.value, "household": household, "hash": hash_password(password)}


def _hand_over(data_dir: Path, name: str, secret: str) -> Path:
    return write_secret_file(Path(data_dir) / SECRETS_DIR / name, secret + "\n")


def init_credentials(
    data_dir: Path, residents: dict[str, str] | None = None, overwrite: bool = False
) -> dict[str, str]:
    """Create the credentials file; returns the plain passwords and secret to hand over.

    The caller decides where they go (``lastwatt serve --init`` writes each to
    ``<data-dir>/secrets/<name>``, mode 0600; they are never printed).

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
        msg = (
            f"{path} exists; add users with 'lastwatt users add', or pass --force "
            "(lastwatt serve --init --force) to rotate every credential"
        )
        raise FileExistsError(msg)
    plain: dict[str, str] = {}
    users: dict[str, dict[str, str | None]] = {}
    plain["operator"] = secrets.token_urlsafe(18)
    users["operator"] = _user_entry(Role.OPERATOR, None, plain["operator"])
    for name, household in (residents or {}).items():
        plain[name] = secrets.token_urlsafe(12)
        users[name] = _user_entry(Role.RESIDENT, household, plain[name])
    plain[_WEBHOOK] = secrets.token_hex(32)
    _write_document(Path(data_dir), {"users": users, _WEBHOOK: plain[_WEBHOOK]})
    return plain


def hand_over_secrets(data_dir: Path, plain: dict[str, str]) -> dict[str, Path]:
    """Write each new password or secret to ``<data-dir>/secrets/<name>`` (mode 0600)."""
    return {name: _hand_over(data_dir, name, secret) for name, secret in plain.items()}


def add_user(
    data_dir: Path, name: str, role: Role, household: str | None = None, replace: bool = False
) -> str:
    """Add one user (or give an existing one a new password); returns the new password.

    Every other user's password and the webhook secret stay as they are.

    Raises
    ------
    CredentialsError
        If the name is taken (and ``replace`` is False), malformed, or a resident has no
        household.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum() or len(name) > 64:
        msg = f"user name {name!r}: use 1–64 letters, digits, '-' or '_'"
        raise CredentialsError(msg)
    if name == _WEBHOOK:
        msg = f"user name {name!r} is reserved"
        raise CredentialsError(msg)
    if role is Role.RESIDENT and not household:
        msg = f"resident {name!r} needs a household id (--household)"
        raise CredentialsError(msg)
    document = _read_document(data_dir)
    if name in document["users"] and not replace:
        msg = f"user {name!r} exists; remove it first or pass --replace for a new password"
        raise CredentialsError(msg)
    password = secrets.token_urlsafe(18 if role is Role.OPERATOR else 12)
    document["users"][name] = _user_entry(role, household, password)
    _write_document(data_dir, document)
    return password


def remove_user(data_dir: Path, name: str) -> None:
    """Remove one user; the others and the webhook secret stay as they are.

    Raises
    ------
    CredentialsError
        If there is no such user, or it is the last operator (nobody could then act).
    """
    document = _read_document(data_dir)
    users: dict[str, dict[str, Any]] = document["users"]
    if name not in users:
        msg = f"no user {name!r}; users: {', '.join(sorted(users))}"
        raise CredentialsError(msg)
    operators = [n for n, u in users.items() if u["role"] == Role.OPERATOR.value]
    if operators == [name]:
        msg = f"{name!r} is the last operator; add another operator before removing it"
        raise CredentialsError(msg)
    del users[name]
    _write_document(data_dir, document)
    (Path(data_dir) / SECRETS_DIR / name).unlink(missing_ok=True)


def rotate_webhook_secret(data_dir: Path) -> str:
    """A new HMAC secret for the payment processor (users untouched); returns it."""
    document = _read_document(data_dir)
    document[_WEBHOOK] = secrets.token_hex(32)
    _write_document(data_dir, document)
    return str(document[_WEBHOOK])


def load_credentials(data_dir: Path, webhook_secret_hex: str | None = None) -> Credentials:
    """Read ``<data-dir>/credentials.json``.

    Parameters
    ----------
    data_dir : Path
        The service's data directory.
    webhook_secret_hex : str, optional
        The processor's secret from the environment (hex); overrides the stored one.

    Raises
    ------
    FileNotFoundError
        If there is none (run ``lastwatt serve --init``).
    CredentialsError
        If the file or the secret is malformed.
    """
    document = _read_document(data_dir)
    users = {
        name: (
            User(name, Role(entry["role"]), entry.get("household")),
            str(entry["hash"]),
        )
        for name, entry in document["users"].items()
    }
    secret_hex = webhook_secret_hex or str(document[_WEBHOOK])
    try:
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        msg = "the webhook secret is not hex (LASTWATT_WEBHOOK_SECRET or credentials.json)"
        raise CredentialsError(msg) from None
    return Credentials(users, secret)
