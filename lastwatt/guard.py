"""Limits before work: request size and request rates, checked before a body is read.

Two parts, both configured by :class:`ApiLimits`:

- :class:`RequestGuard`, an ASGI middleware in front of the whole app. It answers
  ``413`` when ``Content-Length`` exceeds the limit (or when a body sent without one
  grows past it, without ever holding more than the limit in memory) and ``429`` with
  ``Retry-After`` when one client sends too many requests. Nothing behind it — routing,
  authentication, JSON parsing — runs for such a request.
- :class:`RateLimits`, the per-user and failed-login budgets the API's authentication
  consults: a user name or a client with too many wrong passwords is refused *before*
  the password is hashed, for longer after each window fills (the limits are
  escalating windows: a few a minute, more an hour), so guessing is slow and cheap to
  refuse.

The windows are the ``limits`` library's moving windows, kept in memory: one service
process answers the API.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException

__all__ = ["ApiLimits", "RateLimits", "RequestGuard", "TooManyRequestsError"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """How much the API accepts (limits in the ``limits`` library's notation).

    Attributes
    ----------
    max_body_bytes : int
        Largest request body [bytes]; the webhook's own bound is the same size.
    per_client : str
        Requests per client address, e.g. ``"600/minute"``.
    per_user : str
        Authenticated requests per user name.
    failed_logins : str
        Wrong passwords per client address and per user name before refusing; several
        windows (``"5/minute;20/hour"``) make the wait grow as failures continue.
    """

    max_body_bytes: int = 16_384
    per_client: str = "600/minute"
    per_user: str = "300/minute"
    failed_logins: str = "5/minute;20/hour;50/day"

    def __post_init__(self) -> None:
        if type(self.max_body_bytes) is not int or self.max_body_bytes <= 0:
            msg = f"max_body_bytes must be a positive int, got {self.max_body_bytes!r}"
            raise ValueError(msg)
        for name in ("per_client", "per_user", "failed_logins"):
            text = getattr(self, name)
            try:
                parse_many(text)
            except ValueError:
                msg = (
                    f"{name} {text!r} is not a rate limit; write e.g. '600/minute' or "
                    "'5/minute;20/hour'"
                )
                raise ValueError(msg) from None


class TooManyRequestsError(Exception):
    """A budget is spent; ``retry_after_s`` says when the next request may come [s]."""

    def __init__(self, what: str, retry_after_s: int) -> None:
        self.what = what
        self.retry_after_s = retry_after_s
        super().__init__(f"too many {what}; retry after {retry_after_s} s")


class _Budget:
    """Several moving windows over one key space (all must have room)."""

    def __init__(self, limits: str, limiter: MovingWindowRateLimiter, name: str) -> None:
        self._items: list[RateLimitItem] = parse_many(limits)
        self._limiter = limiter
        self._name = name

    def retry_after(self, key: str) -> int:
        """0 if there is room for one more under ``key``, else the seconds to wait."""
        waits = [
            self._limiter.get_window_stats(item, self._name, key).reset_time - time.time()
            for item in self._items
            if not self._limiter.test(item, self._name, key)
        ]
        return max(1, math.ceil(max(waits))) if waits else 0

    def hit(self, key: str) -> None:
        for item in self._items:
            self._limiter.hit(item, self._name, key)


class RateLimits:
    """The per-client, per-user and failed-login budgets of one API.

    Examples
    --------
    >>> rates = RateLimits(ApiLimits(failed_logins="2/minute"))
    >>> rates.login_failed("10.0.0.1", "amina"); rates.login_failed("10.0.0.1", "amina")
    >>> rates.check_login("10.0.0.9", "amina") > 0  # the user name is locked, any client
    True
    """

    def __init__(self, limits: ApiLimits) -> None:
        limiter = MovingWindowRateLimiter(MemoryStorage())
        self._client = _Budget(limits.per_client, limiter, "client")
        self._user = _Budget(limits.per_user, limiter, "user")
        self._failed_client = _Budget(limits.failed_logins, limiter, "failed-client")
        self._failed_user = _Budget(limits.failed_logins, limiter, "failed-user")

    def take_client(self, client: str) -> None:
        """Count a request from ``client``.

        Raises
        ------
        TooManyRequestsError
            If the client's budget is spent (the request is not counted).
        """
        wait = self._client.retry_after(client)
        if wait:
            what = f"requests from {client}"
            raise TooManyRequestsError(what, wait)
        self._client.hit(client)

    def take_user(self, name: str) -> None:
        """Count an authenticated request of user ``name`` (raises like take_client)."""
        wait = self._user.retry_after(name)
        if wait:
            what = f"requests by {name!r}"
            raise TooManyRequestsError(what, wait)
        self._user.hit(name)

    def check_login(self, client: str, name: str) -> int:
        """Seconds to wait before another password may be tried (0: go ahead)."""
        return max(self._failed_client.retry_after(client), self._failed_user.retry_after(name))

    def login_failed(self, client: str, name: str) -> None:
        """Count a wrong password against the client and the user name."""
        self._failed_client.hit(client)
        self._failed_user.hit(name)


class _BodyTooLargeError(HTTPException):
    """Raised from ``receive`` mid-body.

    An HTTPException, so that FastAPI's body parsing passes it on unchanged and the app
    answers 413 itself.
    """


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: 413 for oversized bodies and 429 for busy clients, before any work.

    Parameters
    ----------
    app : ASGI app
        What it guards.
    limits : ApiLimits
        The body limit.
    rates : RateLimits
        Whose per-client budget it spends.
    """

    def __init__(self, app: ASGIApp, limits: ApiLimits, rates: RateLimits) -> None:
        self.app = app
        self.max_body = limits.max_body_bytes
        self.rates = rates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 429/413 or pass the request on with a byte-counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            self.rates.take_client(client[0] if client else "unknown")
        except TooManyRequestsError as exc:
            await _answer(send, 429, str(exc), {"retry-after": str(exc.retry_after_s)})
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            text = declared.decode("latin-1")
            if not text.isdigit() or len(text) > 15:
                await _answer(send, 400, "Content-Length must be a number of bytes", {})
                return
            if int(text) > self.max_body:
                await _answer(send, 413, self._too_large(int(text)), {})
                return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLargeError(413, self._too_large(received))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _answer(send, 413, self._too_large(received), {"connection": "close"})

    def _too_large(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_body} bytes; send less"
