"""The site and community model: a frozen, validated description of one container mini-grid.

A site is read once, at the edge, from a TOML file (see :mod:`microgrid.io`) and is
immutable afterwards; every other package takes it (or parts of it) as an explicit
argument. Field names carry their units (``dc_capacity_kwp``, ``power_kw_max``).

The model has three parts:

- the **container**: location, PV array and inverter, battery, and the Modbus devices
  that control them;
- the **network**: Modbus gateways (one bus each) and household relay groups;
- the **community**: every connection with its kind, meter, relay, tariff and, for
  businesses and priority users, what their load looks like.
"""

from __future__ import annotations

import enum
import zoneinfo
from collections import Counter
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CONTAINER_DEVICES",
    "TIER_NAMES",
    "Battery",
    "Business",
    "Charger",
    "Connection",
    "ConnectionKind",
    "ContainerDevice",
    "ElectricVehicle",
    "Gateway",
    "Location",
    "Meter",
    "Position",
    "PriorityProfile",
    "PriorityUser",
    "PvArray",
    "RelayAddress",
    "RelayGroup",
    "RooftopPv",
    "ServicePlan",
    "Site",
    "SitePolicy",
    "Tariff",
    "TariffBand",
    "complete_tier_order",
]

UnitId = Annotated[int, Field(ge=1, le=247, description="Modbus unit (device) id on its bus")]


class _Frozen(BaseModel):
    """Base of every site model: immutable, strict about unknown keys."""

    # No inf or nan in any number: dc_capacity_kwp = inf gives NaN PV, not an error.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)


class Location(_Frozen):
    """Where the container stands.

    Attributes
    ----------
    latitude, longitude : float
        WGS84 [degrees], north and east positive.
    altitude_m : float
        Height above sea level [m]; used by the clear-sky model.
    timezone : str
        IANA name, e.g. ``Africa/Niamey``; used for display and load profiles only.
    """

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude_m: float = Field(ge=-500, le=9000)
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = f"unknown timezone {value!r}; use an IANA name such as 'Africa/Niamey'"
            raise ValueError(msg) from None
        return value


class PvArray(_Frozen):
    """The PV array and its inverter, in PVWatts terms.

    Attributes
    ----------
    dc_capacity_kwp : float
        Nameplate DC power at STC [kWp].
    surface_tilt_deg, surface_azimuth_deg : float
        Panel tilt from horizontal and azimuth clockwise from north [degrees].
    gamma_pdc_per_k : float
        Temperature coefficient of DC power [1/K], typically −0.003 to −0.005.
    temperature_model : str
        Key of pvlib's SAPM cell temperature parameters, e.g. ``open_rack_glass_polymer``.
    inverter_ac_capacity_kw : float
        Maximum AC output of the PV inverter(s) [kW].
    inverter_nominal_efficiency : float
        PVWatts nominal inverter efficiency [-].
    system_losses_percent : float
        DC losses (soiling, wiring, mismatch, availability) as one number [%].
    """

    dc_capacity_kwp: float = Field(gt=0)
    surface_tilt_deg: float = Field(ge=0, le=90)
    surface_azimuth_deg: float = Field(ge=0, lt=360)
    gamma_pdc_per_k: float = Field(ge=-0.02, le=0)
    temperature_model: Literal[
        "open_rack_glass_glass",
        "close_mount_glass_glass",
        "open_rack_glass_polymer",
        "insulated_back_glass_polymer",
    ] = "open_rack_glass_polymer"
    inverter_ac_capacity_kw: float = Field(gt=0)
    inverter_nominal_efficiency: float = Field(gt=0.5, le=1)
    system_losses_percent: float = Field(ge=0, lt=100)


class RooftopPv(_Frozen):
    """A prosumer's own panels behind its connection's meter [002: Angel's and Bennie's].

    Everything not given here (temperature coefficient, losses, inverter efficiency) is
    taken from the container's array by :meth:`as_array`, so one pvlib chain models both.

    Attributes
    ----------
    dc_capacity_kwp : float
        Nameplate DC power at STC [kWp].
    surface_tilt_deg, surface_azimuth_deg : float
        Panel tilt from horizontal and azimuth clockwise from north [degrees].
    inverter_ac_capacity_kw : float or None
        Maximum AC output [kW]; the DC nameplate if None.
    """

    dc_capacity_kwp: float = Field(gt=0, le=1000)
    surface_tilt_deg: float = Field(ge=0, le=90)
    surface_azimuth_deg: float = Field(ge=0, lt=360)
    inverter_ac_capacity_kw: float | None = Field(default=None, gt=0)

    def as_array(self, container: PvArray) -> PvArray:
        """The roof as a :class:`PvArray`, the container's array giving the rest."""
        return container.model_copy(
            update={
                "dc_capacity_kwp": self.dc_capacity_kwp,
                "surface_tilt_deg": self.surface_tilt_deg,
                "surface_azimuth_deg": self.surface_azimuth_deg,
                "inverter_ac_capacity_kw": self.inverter_ac_capacity_kw or self.dc_capacity_kwp,
            }
        )


class Battery(_Frozen):
    """The container's battery.

    Attributes
    ----------
    energy_capacity_kwh : float
        Usable nameplate energy [kWh].
    power_kw_max : float
        Maximum charge and discharge power at the AC side [kW].
    charge_efficiency, discharge_efficiency : float
        One-way efficiencies [-]; their product is the round-trip efficiency.
    soc_min_fraction, soc_max_fraction : float
        Allowed state-of-charge window as fractions of capacity [-].
    """

    energy_capacity_kwh: float = Field(gt=0)
    power_kw_max: float = Field(gt=0)
    charge_efficiency: float = Field(gt=0, le=1)
    discharge_efficiency: float = Field(gt=0, le=1)
    soc_min_fraction: float = Field(ge=0, lt=1)
    soc_max_fraction: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _soc_window(self) -> Self:
        if self.soc_min_fraction >= self.soc_max_fraction:
            msg = (
                f"soc_min_fraction ({self.soc_min_fraction}) must be below "
                f"soc_max_fraction ({self.soc_max_fraction})"
            )
            raise ValueError(msg)
        return self

    @property
    def soc_kwh_min(self) -> float:
        """Lowest allowed state of charge [kWh]."""
        return self.soc_min_fraction * self.energy_capacity_kwh

    @property
    def soc_kwh_max(self) -> float:
        """Highest allowed state of charge [kWh]."""
        return self.soc_max_fraction * self.energy_capacity_kwh


class Gateway(_Frozen):
    """A Modbus TCP endpoint: one bus, polled by one client."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class ContainerDevice(_Frozen):
    """A device of the container (PV inverter, battery inverter, bulk meter).

    Attributes
    ----------
    gateway : str
        Name of the gateway (bus) it sits on.
    unit_id : int
        Modbus unit id on that bus.
    register_map : str
        Name of the register map the device speaks.
    """

    gateway: str
    unit_id: UnitId
    register_map: str


class RelayAddress(_Frozen):
    """A relay: a coil of a device on a bus."""

    gateway: str
    unit_id: UnitId
    coil: int = Field(ge=0, le=65535)


class RelayGroup(_Frozen):
    """A feeder relay that switches a group of households together (for load shedding)."""

    id: str = Field(min_length=1)
    relay: RelayAddress


class Meter(_Frozen):
    """A connection's energy meter, optionally with a built-in relay (prepaid disconnect).

    Attributes
    ----------
    gateway : str
        Name of the gateway (bus) the meter sits on.
    unit_id : int
        Modbus unit id on that bus.
    relay_coil : int or None
        Coil of the meter's own relay, if it has one.
    register_map : str
        Name of the register map the meter speaks.
    """

    gateway: str
    unit_id: UnitId
    relay_coil: int | None = Field(default=None, ge=0, le=65535)
    register_map: str = "lastwatt_meter"


class TariffBand(_Frozen):
    """One time-of-use band: from ``start_hour`` (local time) until the next band starts."""

    start_hour: int = Field(ge=0, le=23)
    price_per_kwh_minor: int = Field(ge=0)


class Tariff(_Frozen):
    """A consumption tariff in coin minor units per kWh.

    ``flat`` uses ``price_per_kwh_minor``; ``time_of_use`` uses ``bands``.
    """

    kind: Literal["flat", "time_of_use"]
    price_per_kwh_minor: int | None = Field(default=None, ge=0)
    bands: tuple[TariffBand, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "flat" and self.price_per_kwh_minor is None:
            msg = "a flat tariff needs price_per_kwh_minor"
            raise ValueError(msg)
        if self.kind == "time_of_use":
            starts = [band.start_hour for band in self.bands]
            if not starts or starts[0] != 0 or starts != sorted(set(starts)):
                msg = "time_of_use bands need strictly increasing start_hour values beginning at 0"
                raise ValueError(msg)
        return self


class ConnectionKind(enum.StrEnum):
    """The dispatch tier a connection belongs to."""

    PRIORITY = "priority"
    HOUSEHOLD = "household"
    BUSINESS = "business"


class Business(_Frozen):
    """What a business's load looks like and what the community thinks it is worth.

    Attributes
    ----------
    value_score : float
        Community judgement of the business in [−10, +10] (−10 useless, +10 vital).
    power_kw_min : float
        Lowest useful power while switched on [kW] (a mill cannot run on 50 W).
    power_kw_max : float
        Highest power it can draw [kW].
    daily_energy_kwh : float
        Energy it wants on an open day [kWh].
    opening_hour, closing_hour : int
        Local opening hours, ``closing_hour`` exclusive; may wrap past midnight;
        equal values mean open around the clock.
    operating_months : tuple of int
        Calendar months (1–12) in which it operates; closed otherwise.
    """

    value_score: float = Field(ge=-10, le=10)
    power_kw_min: float = Field(ge=0)
    power_kw_max: float = Field(gt=0)
    daily_energy_kwh: float = Field(ge=0)
    opening_hour: int = Field(ge=0, le=23)
    closing_hour: int = Field(ge=0, le=24)
    operating_months: tuple[int, ...] = tuple(range(1, 13))

    @field_validator("operating_months")
    @classmethod
    def _months(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = sorted({m for m in value if not 1 <= m <= 12})
        if bad:
            msg = f"months must be 1–12, got {bad}"
            raise ValueError(msg)
        if len(set(value)) != len(value):
            msg = "operating_months lists a month twice"
            raise ValueError(msg)
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _feasible_load(self) -> Self:
        if self.power_kw_min > self.power_kw_max:
            msg = f"power_kw_min ({self.power_kw_min}) exceeds power_kw_max ({self.power_kw_max})"
            raise ValueError(msg)
        most = self.power_kw_max * self.open_hours
        if self.daily_energy_kwh > most + 1e-9:
            msg = (
                f"daily_energy_kwh ({self.daily_energy_kwh}) exceeds power_kw_max × open hours "
                f"({most:g} kWh)"
            )
            raise ValueError(msg)
        return self

    @property
    def open_hours(self) -> int:
        """Hours open per day [h]; equal opening and closing hours mean around the clock."""
        return (self.closing_hour - self.opening_hour - 1) % 24 + 1


class PriorityProfile(enum.StrEnum):
    """Load shapes of priority users."""

    CLINIC = "clinic"  # around the clock, busier by day
    WATER_PUMP = "water_pump"  # sun hours only
    SCHOOL = "school"  # weekday school hours
    STREET_LIGHT = "street_light"  # dusk to dawn
    TELECOM = "telecom"  # flat, around the clock


class PriorityUser(_Frozen):
    """A priority user's load.

    Attributes
    ----------
    profile : PriorityProfile
        Shape of its daily load.
    daily_energy_kwh : float
        Mean energy per day [kWh].
    """

    profile: PriorityProfile
    daily_energy_kwh: float = Field(ge=0)


class Position(_Frozen):
    """Where a connection stands on the village plan, relative to the container.

    A plan in metres is all the operator's map needs (no tiles, no internet); it is not a
    geodetic survey.

    Attributes
    ----------
    east_m, north_m : float
        Offset from the container, east and north positive [m].
    """

    east_m: float = Field(ge=-20_000, le=20_000, allow_inf_nan=False)
    north_m: float = Field(ge=-20_000, le=20_000, allow_inf_nan=False)


class ServicePlan(_Frozen):
    """What a connection is entitled to, enforced by its meter (issue 11's limit and budget).

    Plans are *classes* named in the site's ``[service_plans.<name>]`` tables and assigned
    per connection (``service_plan = "<name>"``) or per kind
    (``[service_plan_defaults] household = "<name>"``), so 320 households do not repeat
    them.

    Attributes
    ----------
    power_limit_w : int
        The meter's power limit while the connection is held to its plan [W].
    daily_energy_wh : int
        The meter's energy budget per local day [Wh].
    evening_start_hour, evening_end_hour : int or None
        Households: the guaranteed evening window, local hours ``[start, end)``; shedding
        in it costs :data:`dispatch.model.EVENING_WEIGHT` times a daytime shed. None: no
        window.
    """

    power_limit_w: int = Field(ge=1, le=100_000)
    daily_energy_wh: int = Field(ge=1, le=1_000_000)
    evening_start_hour: int | None = Field(default=None, ge=0, le=23)
    evening_end_hour: int | None = Field(default=None, ge=1, le=24)

    @model_validator(mode="after")
    def _window(self) -> Self:
        if (self.evening_start_hour is None) != (self.evening_end_hour is None):
            msg = "give both evening_start_hour and evening_end_hour, or neither"
            raise ValueError(msg)
        if (
            self.evening_start_hour is not None
            and self.evening_end_hour is not None
            and self.evening_end_hour <= self.evening_start_hour
        ):
            msg = (
                f"evening_end_hour ({self.evening_end_hour}) must be after "
                f"evening_start_hour ({self.evening_start_hour}), e.g. 18 and 22"
            )
            raise ValueError(msg)
        return self

    @property
    def power_limit_kw(self) -> float:
        """The power limit [kW]."""
        return self.power_limit_w / 1000.0

    def evening_mask(self, local_hours: np.ndarray) -> np.ndarray:
        """Which of the given local hours (integers 0–23) lie in the evening window."""
        hours = np.asarray(local_hours)
        if self.evening_start_hour is None or self.evening_end_hour is None:
            return np.zeros(hours.shape, dtype=bool)
        return (hours >= self.evening_start_hour) & (hours < self.evening_end_hour)


TIER_NAMES = (
    "soc_window", "priority", "household", "contract", "reserve", "business", "beyond_plan"
)  # fmt: skip
"""Every dispatch tier: the battery's SoC window, priority users, the household lifeline
(demand within the service plan), contracted consumers' band lower edges, the priority
reserve, businesses, household use beyond the plan."""


def complete_tier_order(order: tuple[str, ...]) -> tuple[str, ...]:
    """A tier order with ``contract`` in its default place if it does not name it.

    Orders written before band contracts had a tier name the other six; the contract
    tier then goes right after ``household`` (the default, see the README's contracts
    section). An order that names it is returned as it is.

    Examples
    --------
    >>> complete_tier_order(("priority", "household", "reserve"))
    ('priority', 'household', 'contract', 'reserve')
    """
    order = tuple(order)
    if "contract" in order or "household" not in order:
        return order
    at = order.index("household") + 1
    return (*order[:at], "contract", *order[at:])


class SitePolicy(_Frozen):
    """The community's allocation policy, stated in the site file (``[policy]``).

    Attributes
    ----------
    tier_order : tuple of str
        The tiers, highest first (each name of :data:`TIER_NAMES` once).
    business_objective : {"community_value", "stake_fairness"}
        ``community_value``: maximise Σ R_i(E_i), R_i linear in energy with a weight from
        the business's value score and the community's stakes (seed 001);
        ``stake_fairness``: stake-weighted proportional fairness (Σ s_i log E_i).
    stake_weight : float
        Share of a business's weight from its stake share, the rest from its value score,
        in [0, 1] (``community_value`` only).
    """

    tier_order: tuple[str, ...] = TIER_NAMES
    business_objective: Literal["community_value", "stake_fairness"] = "community_value"
    stake_weight: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("tier_order")
    @classmethod
    def _each_tier_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        value = complete_tier_order(value)
        if sorted(value) != sorted(TIER_NAMES):
            msg = f"tier_order {list(value)} must name each of {list(TIER_NAMES)} exactly once"
            raise ValueError(msg)
        return value


class Connection(_Frozen):
    """One metered connection of the community.

    Attributes
    ----------
    id : str
        Unique id, e.g. ``H001``.
    kind : ConnectionKind
        Its dispatch tier.
    meter : Meter
        Its energy meter (and prepaid relay, if the meter has one).
    tariff : str
        Name of its tariff in the site's ``tariffs`` table.
    relay_group : str or None
        Feeder relay group; required for households, which are shed by group.
    annual_energy_kwh : float or None
        Households only: mean yearly consumption [kWh].
    business : Business or None
        Businesses only.
    priority : PriorityUser or None
        Priority users only.
    position : Position or None
        Where it stands on the village plan (the operator's map).
    pv : RooftopPv or None
        The connection's own panels, if it is a prosumer: its meter's export register
        counts what it feeds into the grid, settled as production [002].
    service_plan : str or None
        Name of its plan class in the site's ``service_plans``; None takes its kind's
        default (``service_plan_defaults``), if any.
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: ConnectionKind
    meter: Meter
    tariff: str
    relay_group: str | None = None
    annual_energy_kwh: float | None = Field(default=None, ge=0)
    business: Business | None = None
    priority: PriorityUser | None = None
    position: Position | None = None
    pv: RooftopPv | None = None
    service_plan: str | None = None

    @property
    def is_prosumer(self) -> bool:
        """Whether the connection has its own PV."""
        return self.pv is not None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        needs = {
            ConnectionKind.HOUSEHOLD: ("annual_energy_kwh", "relay_group"),
            ConnectionKind.BUSINESS: ("business",),
            ConnectionKind.PRIORITY: ("priority",),
        }[self.kind]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            msg = f"a {self.kind.value} connection needs {' and '.join(missing)}"
            raise ValueError(msg)
        foreign = {"annual_energy_kwh", "business", "priority"} - set(needs)
        present = sorted(name for name in foreign if getattr(self, name) is not None)
        if present:
            msg = f"a {self.kind.value} connection must not have {', '.join(present)}"
            raise ValueError(msg)
        return self


class Charger(_Frozen):
    """An EV charging station at the site, speaking OCPP 1.6-J to the central system.

    Attributes
    ----------
    id : str
        Its charge point identity: the last part of the WebSocket path it connects to.
    connectors : int
        Number of connectors (OCPP ``connectorId`` 1…connectors).
    power_kw_max : float
        Largest charging power [kW].
    tariff : str
        Name of the tariff in the site's ``tariffs`` table that prices its energy.
    service_fee_per_kwh_minor : int
        The station's service fee on top of the energy [coin minor units per kWh]; seed 003:
        "the only difference is the service fee charged by different charging stations".
    purchase : {"tariff", "market"}
        How a session's energy is bought: all at the tariff, or first from the order book's
        sellers at no more than the tariff, the rest at the tariff.
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    connectors: int = Field(default=1, ge=1, le=8)
    power_kw_max: float = Field(gt=0)
    tariff: str
    service_fee_per_kwh_minor: int = Field(default=0, ge=0)
    purchase: Literal["tariff", "market"] = "tariff"


class ElectricVehicle(_Frozen):
    """An electric vehicle with its own identity and wallet (seed 003).

    Attributes
    ----------
    id : str
        Its id; its wallet is the ledger account ``ev:<id>``.
    id_tag : str
        The identifier it presents to chargers (OCPP ``idTag``, at most 20 characters).
    battery_kwh : float
        Usable battery capacity [kWh].
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    id_tag: str = Field(min_length=1, max_length=20)
    battery_kwh: float = Field(gt=0)


CONTAINER_DEVICES = ("pv_inverter", "battery_inverter", "bulk_meter")
"""The container's own devices; their names are also their meter ids in readings."""


class Site(_Frozen):
    """A whole site: container, network and community.

    Build it with :func:`microgrid.load_site`, which reports every problem of a file
    at once; constructing it directly runs the same validation.
    """

    name: str
    location: Location
    pv: PvArray
    battery: Battery
    gateways: dict[str, Gateway]
    pv_inverter: ContainerDevice
    battery_inverter: ContainerDevice
    bulk_meter: ContainerDevice | None = None
    relay_groups: tuple[RelayGroup, ...] = ()
    tariffs: dict[str, Tariff]
    connections: tuple[Connection, ...] = Field(min_length=1)
    chargers: tuple[Charger, ...] = ()
    electric_vehicles: tuple[ElectricVehicle, ...] = ()
    service_plans: dict[str, ServicePlan] = Field(default_factory=dict)
    """Service plan classes by name."""
    service_plan_defaults: dict[ConnectionKind, str] = Field(default_factory=dict)
    """The plan class of each kind's connections that name none."""
    policy: SitePolicy = Field(default_factory=SitePolicy)
    """The community's allocation policy (tier order, business objective)."""
    producer_meters: tuple[str, ...] | None = None
    """Meters whose readings settlement must have before it pays producers: container
    devices (``pv_inverter``, ``battery_inverter``) and connection ids; None leaves it to
    settlement (the container's PV inverter and every prosumer)."""

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        problems: list[str] = []
        problems += _duplicates("connections", [c.id for c in self.connections], "id")
        problems += _duplicates("relay_groups", [g.id for g in self.relay_groups], "id")
        group_ids = {g.id for g in self.relay_groups}
        for i, c in enumerate(self.connections):
            where = f"connections[{i}] (id {c.id!r})"
            if c.tariff not in self.tariffs:
                problems.append(
                    f"{where}.tariff: unknown tariff {c.tariff!r}; "
                    f"defined: {', '.join(sorted(self.tariffs)) or 'none'}"
                )
            if c.relay_group is not None and c.relay_group not in group_ids:
                problems.append(
                    f"{where}.relay_group: unknown relay group {c.relay_group!r}; "
                    "declare it under [[relay_groups]]"
                )
        used = Counter(c.relay_group for c in self.connections if c.relay_group is not None)
        for i, g in enumerate(self.relay_groups):
            if used[g.id] == 0:
                problems.append(
                    f"relay_groups[{i}] (id {g.id!r}): no connection is in this group; "
                    "remove it or assign connections to it"
                )
        problems += self._check_charging()
        problems += self._check_service_plans()
        if self.producer_meters is not None:
            known = {c.id for c in self.connections} | set(CONTAINER_DEVICES)
            for name in self.producer_meters:
                if name not in known:
                    problems.append(
                        f"producer_meters: unknown meter {name!r}; name a connection id or "
                        f"one of {', '.join(CONTAINER_DEVICES)}"
                    )
        problems += self._check_devices()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_charging(self) -> list[str]:
        """Chargers name known tariffs; charger, EV and idTag identities are unique."""
        problems = _duplicates("chargers", [c.id for c in self.chargers], "id")
        problems += _duplicates("electric_vehicles", [v.id for v in self.electric_vehicles], "id")
        problems += _duplicates(
            "electric_vehicles", [v.id_tag for v in self.electric_vehicles], "id_tag"
        )
        for i, charger in enumerate(self.chargers):
            if charger.tariff not in self.tariffs:
                problems.append(
                    f"chargers[{i}] (id {charger.id!r}).tariff: unknown tariff "
                    f"{charger.tariff!r}; defined: {', '.join(sorted(self.tariffs)) or 'none'}"
                )
        return problems

    def _check_service_plans(self) -> list[str]:
        """Every plan named exists; no priority user is held to a plan (never limited)."""
        problems: list[str] = []
        defined = ", ".join(sorted(self.service_plans)) or "none"
        for kind, name in self.service_plan_defaults.items():
            if name not in self.service_plans:
                problems.append(
                    f"service_plan_defaults.{kind.value}: unknown service plan {name!r}; "
                    f"defined: {defined}"
                )
        if ConnectionKind.PRIORITY in self.service_plan_defaults:
            problems.append(
                "service_plan_defaults.priority: priority users are never limited; remove it"
            )
        for i, c in enumerate(self.connections):
            if c.service_plan is None:
                continue
            where = f"connections[{i}] (id {c.id!r}).service_plan"
            if c.service_plan not in self.service_plans:
                problems.append(
                    f"{where}: unknown service plan {c.service_plan!r}; defined: {defined}"
                )
            if c.kind is ConnectionKind.PRIORITY:
                problems.append(f"{where}: priority users are never limited; remove it")
        return problems

    def service_plan_of(self, connection_id: str) -> ServicePlan | None:
        """The service plan a connection is held to: its own, its kind's default, or None."""
        return self.service_plan_for(self.connection(connection_id))

    def service_plan_for(self, connection: Connection) -> ServicePlan | None:
        """:meth:`service_plan_of` for a connection already at hand (no lookup by id)."""
        name = connection.service_plan or self.service_plan_defaults.get(connection.kind)
        return None if name is None else self.service_plans.get(name)

    def with_service_plan(self, connection_id: str, plan: str | None) -> Site:
        """The site with one connection held to another plan class (None: its default).

        Raises
        ------
        KeyError
            If the site has no such connection.
        ValueError
            If the plan class is unknown, or the connection is a priority user.
        """
        target = self.connection(connection_id)
        if plan is not None and plan not in self.service_plans:
            defined = ", ".join(sorted(self.service_plans)) or "none"
            msg = f"unknown service plan {plan!r}; defined: {defined}"
            raise ValueError(msg)
        if plan is not None and target.kind is ConnectionKind.PRIORITY:
            msg = f"{connection_id} is a priority user: never limited, it takes no plan"
            raise ValueError(msg)
        changed = target.model_copy(update={"service_plan": plan})
        connections = tuple(changed if c.id == connection_id else c for c in self.connections)
        return self.model_copy(update={"connections": connections})

    def charger(self, charger_id: str) -> Charger | None:
        """The charger with that id, or None."""
        return next((c for c in self.chargers if c.id == charger_id), None)

    def vehicle_with_tag(self, id_tag: str) -> ElectricVehicle | None:
        """The EV that presents ``id_tag``, or None."""
        return next((v for v in self.electric_vehicles if v.id_tag == id_tag), None)

    def _check_devices(self) -> list[str]:
        """Every device sits on a known gateway; no two devices share a Modbus address."""
        problems: list[str] = []
        owner: dict[tuple[str, int], str] = {}
        coils: dict[tuple[str, int, int], str] = {}

        def claim(where: str, gateway: str, unit_id: int) -> bool:
            if gateway not in self.gateways:
                problems.append(
                    f"{where}.gateway: unknown gateway {gateway!r}; "
                    f"defined: {', '.join(sorted(self.gateways)) or 'none'}"
                )
                return False
            key = (gateway, unit_id)
            if key in owner:
                problems.append(
                    f"{where}: gateway {gateway!r} unit {unit_id} is already used by "
                    f"{owner[key]}; give each device its own unit id"
                )
                return False
            owner[key] = where
            return True

        def claim_coil(where: str, gateway: str, unit_id: int, coil: int) -> None:
            key = (gateway, unit_id, coil)
            if key in coils:
                problems.append(
                    f"{where}: coil {coil} of gateway {gateway!r} unit {unit_id} already "
                    f"switches {coils[key]}"
                )
            else:
                coils[key] = where

        for role in CONTAINER_DEVICES:
            device = getattr(self, role)
            if device is not None:
                claim(role, device.gateway, device.unit_id)
        for i, c in enumerate(self.connections):
            where = f"connections[{i}] (id {c.id!r}).meter"
            if claim(where, c.meter.gateway, c.meter.unit_id) and c.meter.relay_coil is not None:
                claim_coil(where, c.meter.gateway, c.meter.unit_id, c.meter.relay_coil)
        # Relay boards switch many groups from one unit id, so a board is claimed once.
        boards: dict[tuple[str, int], str] = {}
        for i, g in enumerate(self.relay_groups):
            where = f"relay_groups[{i}] (id {g.id!r}).relay"
            key = (g.relay.gateway, g.relay.unit_id)
            if key not in boards:
                boards[key] = where
                claim(where, *key)
            claim_coil(where, g.relay.gateway, g.relay.unit_id, g.relay.coil)
        return problems

    # --- views used across packages -------------------------------------------------
    def connections_of(self, kind: ConnectionKind) -> tuple[Connection, ...]:
        """The connections of one tier, in file order."""
        return tuple(c for c in self.connections if c.kind is kind)

    @property
    def households(self) -> tuple[Connection, ...]:
        """Household connections."""
        return self.connections_of(ConnectionKind.HOUSEHOLD)

    @property
    def businesses(self) -> tuple[Connection, ...]:
        """Business connections."""
        return self.connections_of(ConnectionKind.BUSINESS)

    @property
    def priority_users(self) -> tuple[Connection, ...]:
        """Priority connections."""
        return self.connections_of(ConnectionKind.PRIORITY)

    @property
    def prosumers(self) -> tuple[Connection, ...]:
        """Connections with their own PV (any tier), in file order."""
        return tuple(c for c in self.connections if c.pv is not None)

    def connection(self, connection_id: str) -> Connection:
        """Look a connection up by id.

        Raises
        ------
        KeyError
            If the site has no connection with that id.
        """
        for c in self.connections:
            if c.id == connection_id:
                return c
        msg = f"site {self.name!r} has no connection {connection_id!r}"
        raise KeyError(msg)


def _duplicates(section: str, ids: list[str], field: str) -> list[str]:
    counts = Counter(ids)
    return [
        f"{section}: {field} {value!r} appears {n} times; ids must be unique"
        for value, n in counts.items()
        if n > 1
    ]
