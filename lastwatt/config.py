"""The service's configuration: one TOML file plus ``LASTWATT_*`` environment variables.

Precedence, highest first:

1. command-line flags of ``lastwatt serve`` (only those given);
2. environment variables ``LASTWATT_<FIELD>``; nested fields with a double underscore,
   e.g. ``LASTWATT_WEATHER__FEED_URL``, ``LASTWATT_LOGGING__JSON=true``;
3. the config file: ``--config FILE``, else ``$LASTWATT_CONFIG``, else none; its tables
   are the nested sections (``[weather]``, ``[logging]``, ``[retention]``);
4. the defaults below.

Secrets never live in the config file: the payment processor's HMAC secret comes from
``LASTWATT_WEBHOOK_SECRET`` (hex) or the credentials file (mode 0600) of the data
directory, and it is never printed (:class:`pydantic.SecretStr`). An unknown key, in the
file or the environment's nested sections, is an error naming the key, so a typo is not
silently ignored.

Examples
--------
>>> settings = load_settings(None, {"port": 8080, "cycle_s": None})
>>> settings.port, settings.cycle_s
(8080, 5.0)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "CONFIG_ENV",
    "ConfigError",
    "LoggingSettings",
    "RetentionSettings",
    "Settings",
    "WeatherSettings",
    "load_settings",
]

CONFIG_ENV = "LASTWATT_CONFIG"
"""Environment variable naming the config file when ``--config`` is not given."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeatherSettings(_Section):
    """Where the live service's weather forecast comes from.

    Attributes
    ----------
    feed_url : str or None
        Open-Meteo style hourly forecast URL (JSON); None: no feed (climatology only,
        flagged as a fallback).
    drop_file : Path or None
        A local file (Open-Meteo JSON or weather CSV) a station or a person drops in;
        used when newer than the last good feed.
    fetch_minutes : float
        How often the feed is fetched [min].
    timeout_s : float
        HTTP timeout of one fetch [s].
    max_age_hours : float
        A forecast older than this is stale: the service falls back to climatology [h].
    """

    feed_url: str | None = None
    drop_file: Path | None = None
    fetch_minutes: float = Field(60.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    max_age_hours: float = Field(12.0, gt=0)


class LoggingSettings(_Section):
    """Logs (:mod:`lastwatt.logs`).

    Attributes
    ----------
    level : str
        Root level (DEBUG, INFO, WARNING, ERROR).
    areas : dict of str to str
        Per-logger levels, e.g. ``{"controllers" = "WARNING", "lastwatt.jobs" = "INFO"}``.
    json : bool
        One JSON object a line (for a log collector) instead of text.
    file : Path or None
        Also write to this file, rotated by size.
    max_bytes, backups : int
        Rotation: size of one file [bytes] and how many old files to keep.
    repeat_window_s : float
        The same warning (logger and message template) is logged once per window; the
        next one says how many were suppressed [s].
    """

    level: str = "INFO"
    areas: dict[str, str] = Field(default_factory=dict)
    json_lines: bool = Field(False, alias="json")
    file: Path | None = None
    max_bytes: int = Field(10_000_000, gt=0)
    backups: int = Field(5, ge=0)
    repeat_window_s: float = Field(60.0, ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetentionSettings(_Section):
    """How long raw data is kept (:meth:`lastwatt.state.ServiceState.apply_retention`).

    Attributes
    ----------
    telemetry_raw_days : float
        Raw telemetry snapshots older than this are downsampled to hourly means [days].
    telemetry_hourly_days : float
        Hourly telemetry older than this is deleted [days].
    readings_raw_days : float
        Meter readings of settled hours older than this keep only the first and last of
        each hour per meter, all that settling the hour again needs [days]. Hours not
        (completely) settled keep every reading, as long as the ledger needs them.
    """

    telemetry_raw_days: float = Field(7.0, gt=0)
    telemetry_hourly_days: float = Field(400.0, gt=0)
    readings_raw_days: float = Field(35.0, ge=1)


class Settings(BaseSettings):
    """Every setting of ``lastwatt serve`` (module docstring for the sources).

    Attributes
    ----------
    site : Path or None
        Site TOML file (None: the bundled site).
    data_dir : Path
        State folder (ledger, service state, credentials, caches).
    host, port : str, int
        Where the API listens (port 0: any free port).
    cycle_s : float
        Control cycle [s of service time].
    replan_minutes : int
        Dispatch period [min].
    seed : int
        Seed of the synthetic weather (simulator; the climatology fallback).
    webhook_secret : SecretStr or None
        The payment processor's HMAC secret (hex); None: the credentials file's.
    weather, logging, retention
        Sections (see their classes).
    """

    model_config = SettingsConfigDict(
        env_prefix="LASTWATT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    site: Path | None = None
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, lt=65536)
    cycle_s: float = Field(5.0, gt=0)
    replan_minutes: int = Field(15, ge=1)
    seed: int = 0
    webhook_secret: SecretStr | None = None
    weather: WeatherSettings = Field(default_factory=WeatherSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init values), then the environment, then the config file (module docstring)."""
        path = _CONFIG_FILE.get()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources


# The file of the settings being loaded: pydantic-settings builds its sources in a class
# method, so the path of this one load reaches it through a context variable.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("lastwatt_config_file", default=None)


def load_settings(config_file: Path | None, flags: Mapping[str, Any] | None = None) -> Settings:
    """The settings from flags, environment, config file and defaults, in that order.

    Parameters
    ----------
    config_file : Path or None
        ``--config``; None: ``$LASTWATT_CONFIG`` if set, else no file.
    flags : mapping, optional
        Command-line values (None values, i.e. flags not given, are left out).

    Raises
    ------
    ConfigError
        Naming the file or variable, the key and what is wrong.
    """
    env_path = os.environ.get(CONFIG_ENV)
    path = config_file or (Path(env_path) if env_path else None)
    if path is not None:
        try:
            with path.open("rb") as handle:
                tomllib.load(handle)
        except OSError as exc:
            msg = f"config file {path}: cannot read it ({exc.strerror})"
            raise ConfigError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"config file {path}: not valid TOML ({exc})"
            raise ConfigError(msg) from None
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**given)
    except ValidationError as exc:
        where = f"config file {path}, " if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        msg = f"invalid settings ({where}LASTWATT_* environment or flags): {problems}"
        raise ConfigError(msg) from None
    finally:
        _CONFIG_FILE.reset(token)
