"""The customer registry: who is behind each connection, editable by the operator.

The site file knows connections (meters, relays, loads); the operator knows people: a name,
a phone number, which connections a customer holds, which wallet pays for them, which
service plan they are on and the language they read. This registry keeps that in the
service's own SQLite file (its own table), so the console can list, search and sort
customers and open a page per connection.

The first start seeds one customer per connection (named after it, no phone); the operator
fills in the rest. Every change is validated by :class:`CustomerIn` and stamped with who
made it and when.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from lastwatt.auth import Role, User

__all__ = [
    "CUSTOMER_ID",
    "Customer",
    "CustomerIn",
    "CustomerPage",
    "CustomerRegistry",
    "SortKey",
]

CUSTOMER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Customer and connection ids: ASCII letters, digits, ``_ . -``; at most 64 characters."""

_PHONE = re.compile(r"^\+?[0-9][0-9 ]{4,18}[0-9]$")

SortKey = Literal["id", "name", "phone", "plan", "connections"]

_Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)]
_Id = Annotated[str, StringConstraints(pattern=CUSTOMER_ID)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at TEXT NOT NULL
) WITHOUT ROWID;
"""


class CustomerIn(BaseModel):
    """What the operator may set on a customer (strict: no coercion of types)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: _Text = Field(min_length=1, description="Full name as the customer gives it")
    phone: str | None = Field(
        default=None, description="International format, e.g. +227 90 12 34 56"
    )
    connections: list[_Id] = Field(default_factory=list, max_length=32)
    wallet: _Id | None = Field(default=None, description="The user whose wallet pays (user:<id>)")
    plan: _Text | None = Field(default=None, description="Service plan name")
    language: Literal["en", "fr"] = "fr"
    notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip()
        if not value.isascii() or not _PHONE.match(value):
            msg = "phone: digits and spaces, optionally starting with +, 6 to 20 characters"
            raise ValueError(msg)
        return value

    @field_validator("connections")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            msg = "connections: each connection once"
            raise ValueError(msg)
        return value


class Customer(CustomerIn):
    """A customer as stored, with its id and the last change."""

    id: _Id
    changed_by: str
    changed_at: datetime


class CustomerPage(BaseModel):
    """One page of a customer listing."""

    total: int = Field(description="Customers matching the search")
    customers: list[Customer]


class CustomerRegistry:
    """Customers in a SQLite file (normally the service's state file).

    Parameters
    ----------
    path : str or Path
        The SQLite file (``":memory:"`` for tests).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        """The SQLite file (the console keeps its refund notes there too)."""
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def seed(self, connection_ids: Iterable[str], now: datetime) -> int:
        """Create one customer per connection that no customer holds yet; returns how many."""
        held = {c for customer in self.all() for c in customer.connections}
        added = 0
        for connection_id in connection_ids:
            if connection_id in held or self.get(connection_id) is not None:
                continue
            body = CustomerIn(name=connection_id, connections=[connection_id])
            self._write(connection_id, body, "seed", now)
            added += 1
        return added

    def _write(self, customer_id: str, body: CustomerIn, who: str, now: datetime) -> Customer:
        self._db.execute(
            "INSERT INTO customers (id, body, changed_by, changed_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET body = excluded.body, "
            "changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            (customer_id, body.model_dump_json(), who, now.isoformat()),
        )
        return Customer(id=customer_id, changed_by=who, changed_at=now, **body.model_dump())

    def put(self, customer_id: str, body: CustomerIn, who: str, now: datetime) -> Customer:
        """Create or replace a customer.

        Raises
        ------
        ValueError
            The id is malformed, or a connection is already held by another customer.
        """
        if not re.match(CUSTOMER_ID, customer_id):
            msg = f"customer id {customer_id!r}: use ASCII letters, digits, '_', '.', '-'"
            raise ValueError(msg)
        for other in self.all():
            taken = set(other.connections) & set(body.connections)
            if other.id != customer_id and taken:
                msg = (
                    f"connection {sorted(taken)[0]!r} belongs to customer {other.id!r}; "
                    "remove it there first"
                )
                raise ValueError(msg)
        return self._write(customer_id, body, who, now)

    def get(self, customer_id: str) -> Customer | None:
        """One customer, or None."""
        row = self._db.execute(
            "SELECT id, body, changed_by, changed_at FROM customers WHERE id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else _customer(row)

    def holder_of(self, connection_id: str) -> Customer | None:
        """The customer holding a connection, or None."""
        return next((c for c in self.all() if connection_id in c.connections), None)

    def may_see(self, who: User, connection_id: str) -> bool:
        """Whether ``who`` may read a connection's personal data.

        The operator may; a resident may for their own household and for connections whose
        customer is paid for by their wallet.
        """
        if who.role is Role.OPERATOR or who.household == connection_id:
            return True
        holder = self.holder_of(connection_id)
        return holder is not None and holder.wallet == who.name

    def all(self) -> list[Customer]:
        """Every customer, by id."""
        rows = self._db.execute(
            "SELECT id, body, changed_by, changed_at FROM customers ORDER BY id"
        )
        return [_customer(row) for row in rows]

    def search(
        self,
        query: str = "",
        sort: SortKey = "id",
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> CustomerPage:
        """Customers whose id, name, phone, plan or connections contain ``query`` (any case)."""
        needle = query.strip().casefold()
        found = [
            c
            for c in self.all()
            if not needle
            or any(
                needle in (field or "").casefold()
                for field in (c.id, c.name, c.phone, c.plan, " ".join(c.connections))
            )
        ]

        def key(c: Customer) -> tuple[str, str]:
            value = {
                "id": c.id,
                "name": c.name,
                "phone": c.phone or "",
                "plan": c.plan or "",
                "connections": ",".join(c.connections),
            }[sort]
            return value.casefold(), c.id

        found.sort(key=key, reverse=descending)
        return CustomerPage(total=len(found), customers=found[offset : offset + limit])


def _customer(row: tuple[str, str, str, str]) -> Customer:
    customer_id, body, changed_by, changed_at = row
    return Customer(
        id=customer_id,
        changed_by=changed_by,
        changed_at=datetime.fromisoformat(changed_at),
        **json.loads(body),
    )
