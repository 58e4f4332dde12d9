"""PV output of the container with pvlib, fully offline.

The chain, in pvlib nomenclature:

1. solar position (NREL SPA, numpy) at each period's midpoint;
2. clear-sky irradiance, Ineichen–Perez with pvlib's bundled Linke turbidity table;
3. if the weather gives cloud cover rather than irradiance: GHI from cloud cover by the
   linear relation of Larson et al. [1]_, split into DNI and DHI with DISC [2]_;
4. transposition to the array plane (Hay–Davies) and the incidence-angle loss of the
   beam (physical IAM);
5. cell temperature (SAPM), DC power (PVWatts), DC losses, AC power (PVWatts inverter,
   clipped at the inverter's AC capacity).

Powers are the mean over each period, sampled at the period midpoint, and labelled by
the period start (DESIGN.md §4).

References
----------
.. [1] D. P. Larson, L. Nonnenmacher, C. F. M. Coimbra, "Day-ahead forecasting of solar
   power output from photovoltaic plants in the American Southwest", Renewable Energy
   91, 11–20 (2016). :doi:`10.1016/j.renene.2016.01.039`
.. [2] E. L. Maxwell, "A quasi-physical model for converting hourly global horizontal to
   direct normal insolation", SERI/TR-215-3087 (1987).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib

from microgrid.site import Location, PvArray, Site

__all__ = [
    "CLOUD_COVER_OFFSET",
    "clear_sky",
    "cloud_cover_to_irradiance",
    "prosumer_pv_ac_power_kw",
    "pv_ac_power_kw",
    "pvlib_location",
    "solar_position",
]

CLOUD_COVER_OFFSET = 0.35
"""Fraction of clear-sky GHI left under full cloud cover (Larson et al. 2016, fitted in
the American Southwest; the value the retired ``pvlib.forecast`` module used)."""


def pvlib_location(location: Location) -> pvlib.location.Location:
    """The site's location as a :class:`pvlib.location.Location`."""
    return pvlib.location.Location(
        latitude=location.latitude,
        longitude=location.longitude,
        tz=location.timezone,
        altitude=location.altitude_m,
    )


def solar_position(location: Location, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Solar position at ``times`` (NREL SPA); pvlib's ``get_solarposition`` columns."""
    _require_aware(times)
    position: pd.DataFrame = pvlib_location(location).get_solarposition(times)
    return position


def clear_sky(
    location: Location,
    times: pd.DatetimeIndex,
    solpos: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Clear-sky ``ghi``, ``dni``, ``dhi`` [W/m²] (Ineichen, bundled Linke turbidity).

    Parameters
    ----------
    location : Location
        The site's location.
    times : pandas.DatetimeIndex
        Timezone-aware instants.
    solpos : pandas.DataFrame, optional
        Precomputed :func:`solar_position` at ``times``.

    Examples
    --------
    >>> from microgrid import load_site
    >>> t = pd.DatetimeIndex(["2026-03-20 11:52"], tz="UTC")
    >>> cs = clear_sky(load_site().location, t)
    >>> bool(850 < cs["ghi"].iloc[0] < 1050)
    True
    """
    site = pvlib_location(location)
    irradiance: pd.DataFrame = site.get_clearsky(
        _require_aware(times), model="ineichen", solar_position=solpos
    )
    return irradiance


def cloud_cover_to_irradiance(
    cloud_cover: pd.Series,
    clearsky_ghi: pd.Series,
    solar_zenith: pd.Series,
    offset: float = CLOUD_COVER_OFFSET,
) -> pd.DataFrame:
    r"""Irradiance under a given cloud cover.

    Parameters
    ----------
    cloud_cover : pandas.Series
        Total cloud cover [fraction 0–1].
    clearsky_ghi : pandas.Series
        Clear-sky GHI at the same instants [W/m²].
    solar_zenith : pandas.Series
        Apparent solar zenith [degrees].
    offset : float
        GHI fraction left under full cover [-].

    Returns
    -------
    pandas.DataFrame
        ``ghi``, ``dni``, ``dhi`` [W/m²].

    Notes
    -----
    .. math:: GHI = GHI_{clear} \cdot (\text{offset} + (1 - \text{offset})(1 - c))

    DNI follows from DISC and DHI closes the balance
    :math:`DHI = GHI - DNI \cos\theta_z`, floored at zero.
    """
    cover = cloud_cover.clip(0.0, 1.0)
    ghi = clearsky_ghi * (offset + (1.0 - offset) * (1.0 - cover))
    dni = pvlib.irradiance.disc(ghi, solar_zenith, ghi.index)["dni"].fillna(0.0)
    cos_zenith = np.cos(np.radians(solar_zenith))
    dhi = (ghi - dni * cos_zenith).clip(lower=0.0)
    return pd.DataFrame({"ghi": ghi, "dni": dni, "dhi": dhi})


def pv_ac_power_kw(
    pv: PvArray,
    location: Location,
    weather: pd.DataFrame,
    solpos: pd.DataFrame | None = None,
) -> pd.Series:
    """AC power of the array [kW] at the instants of ``weather``.

    Parameters
    ----------
    pv : PvArray
        The array and inverter.
    location : Location
        The site's location.
    weather : pandas.DataFrame
        Indexed by timezone-aware instants. Irradiance ``ghi``, ``dni``, ``dhi``
        [W/m²], or ``cloud_cover`` [fraction] from which they are modelled;
        ``temp_air`` [°C] and ``wind_speed`` [m/s] (defaults 25 °C and 1 m/s).
    solpos : pandas.DataFrame, optional
        Precomputed :func:`solar_position` at the same instants.

    Returns
    -------
    pandas.Series
        AC power [kW], ≥ 0, at most ``pv.inverter_ac_capacity_kw``.

    Raises
    ------
    ValueError
        If the weather has neither irradiance nor cloud cover, or NaN.
    """
    times = _require_aware(weather.index)
    if solpos is None:
        solpos = solar_position(location, times)
    irradiance = _irradiance(location, weather, solpos)
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=pv.surface_tilt_deg,
        surface_azimuth=pv.surface_azimuth_deg,
        solar_zenith=solpos["apparent_zenith"],
        solar_azimuth=solpos["azimuth"],
        dni=irradiance["dni"],
        ghi=irradiance["ghi"],
        dhi=irradiance["dhi"],
        dni_extra=pvlib.irradiance.get_extra_radiation(times),
        model="haydavies",
    )
    aoi = pvlib.irradiance.aoi(
        pv.surface_tilt_deg, pv.surface_azimuth_deg, solpos["apparent_zenith"], solpos["azimuth"]
    )
    effective = poa["poa_direct"].fillna(0.0) * pvlib.iam.physical(aoi) + poa["poa_diffuse"].fillna(
        0.0
    )
    temp_air = _column(weather, "temp_air", 25.0)
    wind_speed = _column(weather, "wind_speed", 1.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][pv.temperature_model]
    temp_cell = pvlib.temperature.sapm_cell(
        poa["poa_global"].fillna(0.0), temp_air, wind_speed, **params
    )
    pdc0_w = pv.dc_capacity_kwp * 1000.0
    dc_w = pvlib.pvsystem.pvwatts_dc(effective, temp_cell, pdc0_w, pv.gamma_pdc_per_k)
    dc_w = dc_w * (1.0 - pv.system_losses_percent / 100.0)
    # PVWatts' inverter clips at eta_nom × pdc0; choose pdc0 so that the clip is the AC rating.
    inverter_pdc0_w = pv.inverter_ac_capacity_kw * 1000.0 / pv.inverter_nominal_efficiency
    ac_w = pvlib.inverter.pvwatts(dc_w, inverter_pdc0_w, pv.inverter_nominal_efficiency)
    return pd.Series(np.clip(ac_w, 0.0, None) / 1000.0, index=times, name="pv_ac_kw")


def _irradiance(location: Location, weather: pd.DataFrame, solpos: pd.DataFrame) -> pd.DataFrame:
    if {"ghi", "dni", "dhi"} <= set(weather.columns):
        irradiance = weather[["ghi", "dni", "dhi"]]
    elif "cloud_cover" in weather.columns:
        clear = clear_sky(location, _require_aware(weather.index), solpos)
        irradiance = cloud_cover_to_irradiance(
            weather["cloud_cover"], clear["ghi"], solpos["apparent_zenith"]
        )
    else:
        msg = (
            f"weather has columns {sorted(weather.columns)}; the PV model needs ghi, dni "
            "and dhi [W/m²], or cloud_cover [fraction 0–1]"
        )
        raise ValueError(msg)
    if irradiance.isna().any().any():
        first = irradiance.index[irradiance.isna().any(axis=1)][0]
        msg = f"weather irradiance has NaN from {first}; fill or drop it before modelling PV"
        raise ValueError(msg)
    return irradiance


def _column(weather: pd.DataFrame, name: str, default: float) -> pd.Series:
    if name in weather.columns:
        return weather[name]
    return pd.Series(default, index=weather.index, name=name)


def _require_aware(times: pd.Index) -> pd.DatetimeIndex:
    if not isinstance(times, pd.DatetimeIndex) or times.tz is None:
        msg = "times must be a timezone-aware pandas.DatetimeIndex (UTC inside LastWatt)"
        raise ValueError(msg)
    return times


def prosumer_pv_ac_power_kw(
    site: Site, weather: pd.DataFrame, solpos: pd.DataFrame | None = None
) -> pd.DataFrame:
    """AC power of every prosumer's own panels [kW], columns by connection id.

    The one function that models prosumers' roofs: forecasts and the simulated container
    both call it, so what dispatch expects from a roof is what the simulated roof
    produces. Each roof runs the container's chain (:func:`pv_ac_power_kw`) with its own
    size and orientation (:meth:`microgrid.site.RooftopPv.as_array`).

    Parameters
    ----------
    site : Site
        The site; its prosumers' ``pv``.
    weather : pandas.DataFrame
        As for :func:`pv_ac_power_kw`.
    solpos : pandas.DataFrame, optional
        Precomputed :func:`solar_position` at the same instants.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``weather``; no columns if the site has no prosumers.
    """
    if solpos is None and site.prosumers:
        solpos = solar_position(site.location, _require_aware(weather.index))
    roofs = {
        c.id: pv_ac_power_kw(c.pv.as_array(site.pv), site.location, weather, solpos).rename(c.id)
        for c in site.prosumers
        if c.pv is not None
    }
    return pd.DataFrame(roofs, index=weather.index)
