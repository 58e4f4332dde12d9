"""A throwaway PostgreSQL role and database for tests and benchmarks, on a real server.

The server is Debian's cluster, started by ``scripts/start_test_postgres.sh`` (which
``.ci/run`` calls); it prints ``LASTWATT_PG_ADMIN``, a URL of a role that may create roles
and databases. Without it the PostgreSQL tests are skipped with the reason, unless
``LASTWATT_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes them fail instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

ADMIN_ENV = "LASTWATT_PG_ADMIN"
REQUIRE_ENV = "LASTWATT_REQUIRE_POSTGRES"

_sites = itertools.count(1)


def new_site_id(prefix: str = "t") -> str:
    """A site id no other test of this session uses (its own schema, chain and keys)."""
    return f"{prefix}{next(_sites)}"


@contextlib.contextmanager
def throwaway_database(admin_url: str, durable: bool) -> Iterator[str]:
    """Create a role and a database, yield a conninfo for them, drop both afterwards.

    Parameters
    ----------
    admin_url : str
        A role that may create roles and databases.
    durable : bool
        False turns ``synchronous_commit`` off in the database (commits are not flushed
        one by one), like the SQLite tests' ``synchronous=NORMAL``; benchmarks of durable
        throughput pass True.

    Raises
    ------
    psycopg.OperationalError
        If the server cannot be reached.
    """
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    name = f"lastwatt_test_{os.getpid()}_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    port = admin.info.port
    role, database = sql.Identifier(name), sql.Identifier(name)
    with admin:
        try:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
            )
            # PostgreSQL 15: a CREATEROLE admin must be a member to hand a database over.
            admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
            if not durable:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(database)
                )
            yield f"host=127.0.0.1 port={port} dbname={name} user={name} password={password}"
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def postgres_database() -> Iterator[str]:
    """The tests' throwaway database (non-durable commits); skips or fails without a server."""
    admin_url = os.environ.get(ADMIN_ENV, "")
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = (
            f"no PostgreSQL server reachable with {ADMIN_ENV}={admin_url!r} ({first_line}); "
            f'start one with: eval "$(scripts/start_test_postgres.sh)"'
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with throwaway_database(admin_url, durable=False) as conninfo:
        yield conninfo
