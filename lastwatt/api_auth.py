"""The API's authentication dependencies: HTTP Basic, rate-limited, hashed off the loop.

One set per app (:func:`auth_dependencies`), reused by every router of it
(``app.state.auth``), so that each route sees the same rules:

- ``caller``: the user, or None for an anonymous call; wrong credentials are 401;
- ``user``: a signed-in user (401 otherwise);
- ``operator``: the operator (403 for a resident).

Before a password is checked, a client address or user name with too many recent wrong
passwords gets 429 with ``Retry-After`` (:class:`lastwatt.guard.RateLimits`); the check
costs one scrypt run whether the user exists or not and runs in a worker thread
(:meth:`lastwatt.auth.Credentials.check_async`); a signed-in user's requests count
against their own budget.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations
# at runtime, and they name closures (``Depends(caller)``) a string could not resolve.
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from lastwatt.auth import Credentials, Role, User
from lastwatt.guard import RateLimits, TooManyRequestsError

__all__ = ["AuthDependencies", "auth_dependencies"]

_basic = HTTPBasic(auto_error=False, realm="lastwatt")
_MAX_NAME = 64  # longer names are cut for the failure budget (and cannot exist)


@dataclass(frozen=True, slots=True)
class AuthDependencies:
    """FastAPI dependencies of one app (module docstring)."""

    caller: Callable[..., Awaitable[User | None]]
    user: Callable[..., Awaitable[User]]
    operator: Callable[..., Awaitable[User]]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def auth_dependencies(credentials: Credentials, rates: RateLimits) -> AuthDependencies:
    """The dependencies checking ``credentials`` under the budgets of ``rates``."""

    async def authenticate(request: Request, given: HTTPBasicCredentials) -> User:
        name = given.username[:_MAX_NAME]
        client = _client(request)
        wait = rates.check_login(client, name)
        if wait:
            raise HTTPException(
                429,
                f"too many wrong passwords from {client} or for {name!r}; retry after {wait} s",
                {"Retry-After": str(wait)},
            )
        found = await credentials.check_async(given.username, given.password)
        if found is None:
            rates.login_failed(client, name)
            raise HTTPException(401, "wrong user name or password", {"WWW-Authenticate": "Basic"})
        try:
            rates.take_user(found.name)
        except TooManyRequestsError as exc:
            raise HTTPException(429, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None
        return found

    async def caller(
        request: Request, given: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
    ) -> User | None:
        """The authenticated user, or None for an anonymous call (wrong credentials: 401)."""
        return None if given is None else await authenticate(request, given)

    async def user(who: Annotated[User | None, Depends(caller)]) -> User:
        """A signed-in user (401 otherwise)."""
        if who is None:
            raise HTTPException(
                401, "credentials required (HTTP Basic)", {"WWW-Authenticate": "Basic"}
            )
        return who

    async def operator(who: Annotated[User, Depends(user)]) -> User:
        """The operator (403 for anyone else)."""
        if who.role is not Role.OPERATOR:
            raise HTTPException(403, f"{who.name!r} is a {who.role.value}; operators only")
        return who

    return AuthDependencies(caller, user, operator)
