"""Wire time of Modbus RTU on an RS-485 bus behind a gateway (for the simulated container).

A Modbus TCP gateway forwards each request onto a serial bus and waits for the reply;
the bus carries one transaction at a time. One transaction costs

    t3.5 + request frame + max(turnaround, t3.5) + reply frame

where a frame of ``n`` bytes takes ``n × bits_per_char / baud`` seconds, ``t3.5`` is
the silent interval of 3.5 characters that delimits RTU frames (fixed at 1.75 ms above
19 200 baud, Modbus over serial line v1.02 §2.5.1.1) and ``turnaround`` is the device's
time to answer. Frame sizes count the address byte and the CRC (Modbus application
protocol v1.1b3 §6).

At 9 600 baud, 11 bits per character, a meter read of 6 registers is an 8-byte request
and a 17-byte reply: about 37 ms with a 5 ms turnaround, so a 200-meter bus cannot be
swept in under ≈ 7.4 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RtuBus", "reply_bytes", "request_bytes"]

_FIXED_GAP_BAUD = 19_200
_FIXED_T35_S = 0.00175


def request_bytes(function_code: int, count: int) -> int:
    """Bytes of an RTU request frame (address, function, data, CRC).

    Parameters
    ----------
    function_code : int
        1 read coils, 3 read holding registers, 5 write coil, 6 write register,
        15 write coils, 16 write registers.
    count : int
        Coils or registers read or written.

    Examples
    --------
    >>> request_bytes(3, 6), request_bytes(16, 4), request_bytes(15, 10)
    (8, 17, 11)
    """
    if function_code in (1, 2, 3, 4, 5, 6):
        return 8
    if function_code == 15:
        return 9 + math.ceil(count / 8)
    if function_code == 16:
        return 9 + 2 * count
    msg = f"no RTU frame size for function code {function_code}"
    raise ValueError(msg)


def reply_bytes(function_code: int, count: int, exception: bool = False) -> int:
    """Bytes of the RTU reply frame to a request (an exception reply is 5 bytes).

    Examples
    --------
    >>> reply_bytes(3, 6), reply_bytes(1, 10), reply_bytes(16, 4), reply_bytes(3, 6, True)
    (17, 7, 8, 5)
    """
    if exception:
        return 5
    if function_code in (1, 2):
        return 5 + math.ceil(count / 8)
    if function_code in (3, 4):
        return 5 + 2 * count
    if function_code in (5, 6, 15, 16):
        return 8
    msg = f"no RTU frame size for function code {function_code}"
    raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class RtuBus:
    """One RS-485 bus behind a gateway.

    Attributes
    ----------
    baud : int
        Line speed [bit/s].
    bits_per_char : int
        Bits per character on the wire: start, 8 data, parity (or a second stop), stop.
        Modbus RTU specifies 11.
    turnaround_s : float
        The device's time from the end of a request to the start of its reply [s].
    """

    baud: int = 9_600
    bits_per_char: int = 11
    turnaround_s: float = 0.005

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_char <= 0 or self.turnaround_s < 0:
            msg = (
                f"an RTU bus needs baud > 0, bits_per_char > 0 and turnaround_s ≥ 0, got "
                f"{self.baud}, {self.bits_per_char}, {self.turnaround_s}"
            )
            raise ValueError(msg)

    @property
    def char_s(self) -> float:
        """Time of one character on the wire [s]."""
        return self.bits_per_char / self.baud

    @property
    def t35_s(self) -> float:
        """The silent interval that delimits frames [s]."""
        return _FIXED_T35_S if self.baud > _FIXED_GAP_BAUD else 3.5 * self.char_s

    def transaction_s(self, function_code: int, count: int, exception: bool = False) -> float:
        """Wire time of one request and its reply, gaps and turnaround included [s].

        Examples
        --------
        >>> round(RtuBus(9600).transaction_s(3, 6) * 1000, 1)  # a meter read [ms]
        37.7
        """
        request = request_bytes(function_code, count) * self.char_s
        reply = reply_bytes(function_code, count, exception) * self.char_s
        return self.t35_s + request + max(self.turnaround_s, self.t35_s) + reply
