"""The site and community model: frozen typed configuration, units and the time grid."""

from microgrid.io import SiteFileError, default_site_path, load_site, parse_site
from microgrid.site import (
    Battery,
    Business,
    Connection,
    ConnectionKind,
    ContainerDevice,
    Gateway,
    Location,
    Meter,
    PriorityProfile,
    PriorityUser,
    PvArray,
    RelayAddress,
    RelayGroup,
    Site,
    Tariff,
    TariffBand,
)
from microgrid.timegrid import TimeGrid, parse_datetime
from microgrid.units import COIN_SCALE, STAKE_TOKEN_SCALE

__all__ = [
    "COIN_SCALE",
    "STAKE_TOKEN_SCALE",
    "Battery",
    "Business",
    "Connection",
    "ConnectionKind",
    "ContainerDevice",
    "Gateway",
    "Location",
    "Meter",
    "PriorityProfile",
    "PriorityUser",
    "PvArray",
    "RelayAddress",
    "RelayGroup",
    "Site",
    "SiteFileError",
    "Tariff",
    "TariffBand",
    "TimeGrid",
    "default_site_path",
    "load_site",
    "parse_datetime",
    "parse_site",
]
