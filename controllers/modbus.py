"""The pymodbus adapter: one client (or a small pool) per gateway, errors translated here.

Error tree (DESIGN.md §6):

- :class:`TransportError` (raised, retryable): no TCP connection, connection refused or
  dropped, no answer within the timeout after the retries. The request may or may not
  have reached the device.
- :class:`ExceptionResponse` (returned as a value): the device answered with a Modbus
  exception code (illegal address, illegal value, device failure, gateway path …).
  ``retryable`` says whether asking again may help (busy, gateway no response).

Requests through one connection are strictly sequential, separated by at least the
inter-frame delay (an RS-485 bus behind a gateway needs it). A gateway whose devices
are plain Modbus TCP can be given several connections (``connections_per_gateway``):
pymodbus serialises requests per client, so a pool of N clients keeps N requests in
flight (DESIGN.md §10: ≈ 12 k reads/s with 4 on loopback). The default is 1, which is
always correct for a serial bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

__all__ = [
    "ExceptionResponse",
    "GatewayClient",
    "ModbusSettings",
    "TransportError",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_RETRYABLE_CODES = frozenset({5, 6, 10, 11})


class TransportError(Exception):
    """The request did not get an answer: connection refused, dropped, or timed out.

    Always retryable: the link, not the request, is the problem.
    """

    retryable = True


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """A device's Modbus exception response: an answer, not a transport failure.

    Attributes
    ----------
    function_code : int
        Function code of the request.
    exception_code : int
        Modbus exception code (2 illegal address, 3 illegal value, 4 device failure …).
    """

    function_code: int
    exception_code: int

    @property
    def name(self) -> str:
        """Human name of the exception code."""
        return _EXCEPTION_NAMES.get(self.exception_code, f"code {self.exception_code}")

    @property
    def retryable(self) -> bool:
        """Whether asking again may succeed (busy or gateway trouble), not a bad request."""
        return self.exception_code in _RETRYABLE_CODES

    def __str__(self) -> str:
        return (
            f"Modbus exception {self.exception_code} ({self.name}) to function {self.function_code}"
        )


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    """Transport settings of every gateway.

    Attributes
    ----------
    timeout_s : float
        Wait for an answer [s] before a retry.
    retries : int
        Retries after a timeout before :class:`TransportError`.
    inter_frame_delay_s : float
        Minimum gap between the end of an answer and the next request on a connection
        [s]; serial buses behind gateways need a few ms.
    connect_timeout_s : float
        Wait for a TCP connection [s].
    connections_per_gateway : int
        Connections opened to each gateway; 1 keeps every request on a bus sequential.
    reconnect_backoff_s : float
        After a failed connection attempt, fail fast for this long before trying again [s].
    """

    timeout_s: float = 1.0
    retries: int = 1
    inter_frame_delay_s: float = 0.0
    connect_timeout_s: float = 1.0
    connections_per_gateway: int = 1
    reconnect_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            msg = "timeout_s and connect_timeout_s must be positive seconds"
            raise ValueError(msg)
        if self.retries < 0 or self.inter_frame_delay_s < 0 or self.reconnect_backoff_s < 0:
            msg = "retries, inter_frame_delay_s and reconnect_backoff_s must be ≥ 0"
            raise ValueError(msg)
        if not 1 <= self.connections_per_gateway <= 16:
            msg = (
                f"connections_per_gateway must be 1–16, got {self.connections_per_gateway}; "
                "use 1 for a serial bus"
            )
            raise ValueError(msg)


class _Connection:
    """One pymodbus client with its own sequencing and inter-frame gap."""

    def __init__(self, host: str, port: int, settings: ModbusSettings, name: str) -> None:
        self.settings = settings
        self.client = AsyncModbusTcpClient(
            host,
            port=port,
            name=name,
            timeout=settings.timeout_s,
            retries=settings.retries,
            reconnect_delay=0.0,  # we reconnect ourselves, with our own back-off
        )
        self.last_frame = 0.0


class GatewayClient:
    """Requests to the devices behind one Modbus TCP gateway.

    Parameters
    ----------
    name : str
        Gateway name (for logs and errors).
    host, port : str, int
        Where it listens.
    settings : ModbusSettings
        Timeouts, retries, delays, pool size.

    Attributes
    ----------
    epoch : int
        Number of successful (re)connections so far; a change tells the controller to
        read back and re-apply setpoints.
    """

    def __init__(self, name: str, host: str, port: int, settings: ModbusSettings) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.settings = settings
        self.epoch = 0
        self._pool: asyncio.Queue[_Connection] | None = None
        self._connections: list[_Connection] = []
        self._down_until = 0.0

    def _queue(self) -> asyncio.Queue[_Connection]:
        # pymodbus clients need a running loop: open the pool on first use.
        if self._pool is None:
            self._pool = asyncio.Queue()
            self._connections = [
                _Connection(self.host, self.port, self.settings, f"{self.name}-{i}")
                for i in range(self.settings.connections_per_gateway)
            ]
            for connection in self._connections:
                self._pool.put_nowait(connection)
        return self._pool

    async def _ensure_connected(self, connection: _Connection) -> None:
        if connection.client.connected:
            return
        now = time.monotonic()
        if now < self._down_until:
            msg = f"gateway {self.name!r} ({self.host}:{self.port}) is down; backing off"
            raise TransportError(msg)
        try:
            ok = await asyncio.wait_for(
                connection.client.connect(), timeout=self.settings.connect_timeout_s
            )
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            log.debug("connect to %s failed: %s", self.name, exc)
        if not ok:
            connection.client.close()
            self._down_until = time.monotonic() + self.settings.reconnect_backoff_s
            msg = f"cannot connect to gateway {self.name!r} at {self.host}:{self.port}"
            raise TransportError(msg)
        self.epoch += 1
        log.info("gateway %s connected (epoch %d)", self.name, self.epoch)

    async def _request(
        self, what: str, call: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
    ) -> Any:
        pool = self._queue()
        connection = await pool.get()
        try:
            await self._ensure_connected(connection)
            gap = connection.last_frame + self.settings.inter_frame_delay_s - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            try:
                response = await call(connection.client)
            except asyncio.CancelledError:
                # Abandoned by a deadline: its answer may still come; never match it to
                # the next request.
                connection.client.close()
                raise
            except (ModbusException, OSError, TimeoutError) as exc:
                # A late answer must not be taken for the next request's: start afresh.
                connection.client.close()
                msg = f"gateway {self.name!r}: {what}: {exc}"
                raise TransportError(msg) from exc
            finally:
                connection.last_frame = time.monotonic()
            if response is None:
                connection.client.close()
                msg = f"gateway {self.name!r}: {what}: no response"
                raise TransportError(msg)
            return response
        finally:
            pool.put_nowait(connection)

    @staticmethod
    def _exception(response: Any) -> ExceptionResponse | None:
        if response.isError():
            return ExceptionResponse(
                function_code=int(response.function_code) & 0x7F,
                exception_code=int(getattr(response, "exception_code", 0)),
            )
        return None

    async def read_holding(
        self, unit: int, address: int, count: int
    ) -> list[int] | ExceptionResponse:
        """Read ``count`` holding registers of ``unit`` from ``address`` (function 3).

        Raises
        ------
        TransportError
            If the gateway or device did not answer.
        """
        response = await self._request(
            f"unit {unit} read {count} registers at {address}",
            lambda c: c.read_holding_registers(address, count=count, device_id=unit),
        )
        error = self._exception(response)
        if error is not None:
            return error
        registers: list[int] = list(response.registers)
        if len(registers) != count:
            msg = (
                f"gateway {self.name!r}: unit {unit} returned {len(registers)} of {count} registers"
            )
            raise TransportError(msg)
        return registers

    async def read_coils(
        self, unit: int, address: int, count: int
    ) -> list[bool] | ExceptionResponse:
        """Read ``count`` coils of ``unit`` from ``address`` (function 1).

        Raises
        ------
        TransportError
            If the gateway or device did not answer.
        """
        response = await self._request(
            f"unit {unit} read {count} coils at {address}",
            lambda c: c.read_coils(address, count=count, device_id=unit),
        )
        error = self._exception(response)
        if error is not None:
            return error
        return [bool(b) for b in response.bits[:count]]

    async def write_registers(
        self, unit: int, address: int, values: list[int]
    ) -> ExceptionResponse | None:
        """Write holding registers (function 16); ``None`` on success.

        Raises
        ------
        TransportError
            If the gateway or device did not answer.
        """
        response = await self._request(
            f"unit {unit} write {len(values)} registers at {address}",
            lambda c: c.write_registers(address, values, device_id=unit),
        )
        return self._exception(response)

    async def write_coils(
        self, unit: int, address: int, values: list[bool]
    ) -> ExceptionResponse | None:
        """Write coils (function 5 for one, 15 for several); ``None`` on success.

        Raises
        ------
        TransportError
            If the gateway or device did not answer.
        """
        if len(values) == 1:
            response = await self._request(
                f"unit {unit} write coil {address}",
                lambda c: c.write_coil(address, values[0], device_id=unit),
            )
        else:
            response = await self._request(
                f"unit {unit} write {len(values)} coils at {address}",
                lambda c: c.write_coils(address, values, device_id=unit),
            )
        return self._exception(response)

    async def close(self) -> None:
        """Close every connection."""
        for connection in self._connections:
            connection.client.close()
