"""Credentials of meters that report themselves (seeds 002 and 004): one per meter.

A meter authenticates ``POST /api/readings`` with its own bearer token, so a stolen
token can only report for that meter. Tokens are 32 random bytes; only their SHA-256
is stored (``<data-dir>/device_credentials.json``, mode 0600): a hash of a random
256-bit secret needs no slow key derivation, and a check costs microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

__all__ = ["DEVICE_CREDENTIALS_FILE", "DeviceCredentials", "issue_device_token"]

DEVICE_CREDENTIALS_FILE = "device_credentials.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_device_token(data_dir: Path, meter_id: str) -> str:
    """Create (or rotate) ``meter_id``'s token; returns it, to be shown once."""
    path = Path(data_dir) / DEVICE_CREDENTIALS_FILE
    table = DeviceCredentials.load(data_dir).digests
    token = secrets.token_urlsafe(32)
    table[meter_id] = _digest(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    tmp.replace(path)
    return token


class DeviceCredentials:
    """Meter id → SHA-256 of its token.

    Parameters
    ----------
    digests : dict of str to str
        Hex SHA-256 of each meter's token.
    """

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = dict(digests)

    @classmethod
    def load(cls, data_dir: Path) -> DeviceCredentials:
        """The data directory's device credentials (none if the file does not exist)."""
        path = Path(data_dir) / DEVICE_CREDENTIALS_FILE
        if not path.exists():
            return cls({})
        return cls({str(k): str(v) for k, v in json.loads(path.read_text()).items()})

    def check(self, meter_id: str, token: str) -> bool:
        """Whether ``token`` is ``meter_id``'s (constant time)."""
        stored = self.digests.get(meter_id)
        candidate = _digest(token)
        return stored is not None and hmac.compare_digest(stored, candidate)
