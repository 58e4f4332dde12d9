"""Units and scales shared across packages.

Money and tokens are integers in minor units with an explicit scale; never floats.
"""

from __future__ import annotations

__all__ = ["COIN_SCALE", "STAKE_TOKEN_SCALE", "WATT_SCALE"]

COIN_SCALE = 1_000_000
"""Minor units per coin: 1 coin = 1 000 000 micro-coins."""

STAKE_TOKEN_SCALE = 1_000_000
"""Minor units per stake token (slashing takes fractions of a token)."""

WATT_SCALE = 1_000
"""Minor units per WATT storage token: 1 WATT = 1 kWh stored (seed 003), counted in Wh."""
