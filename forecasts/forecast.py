"""The site forecast: PV quantiles and demand per connection on one time grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from forecasts.demand import aggregate_demand, demand_kw
from forecasts.pv import clear_sky, prosumer_pv_ac_power_kw, pv_ac_power_kw, solar_position
from forecasts.uncertainty import PvErrorModel, pv_quantiles
from forecasts.weather import weather_on_grid
from microgrid.physics import meter_flows_kw
from microgrid.site import Site
from microgrid.timegrid import TimeGrid

__all__ = ["Forecast", "forecast_site"]


@dataclass(frozen=True)
class Forecast:
    """PV and demand for a site over a time grid; every frame is indexed by period start.

    Attributes
    ----------
    site : Site
        The site forecast for.
    grid : TimeGrid
        The periods.
    weather : pandas.DataFrame
        Period-mean weather on the grid.
    pv_kw : pandas.DataFrame
        Mean AC power per period [kW]: ``p10``, ``p50``, ``p90`` and ``clear_sky``.
    demand_kw : pandas.DataFrame
        Mean power per period of every connection [kW], columns by connection id: its
        own load, before any of its own PV.
    prosumer_pv_kw : pandas.DataFrame
        Median AC power of each prosumer's own panels [kW], columns by connection id
        (none if the site has no prosumers); the same pvlib chain as the container's.
    """

    site: Site
    grid: TimeGrid
    weather: pd.DataFrame
    pv_kw: pd.DataFrame
    demand_kw: pd.DataFrame
    prosumer_pv_kw: pd.DataFrame = field(default_factory=pd.DataFrame)

    def prosumer_export_kw(self) -> pd.DataFrame:
        """What each prosumer's meter exports [kW]: its PV beyond its own load, ≥ 0."""
        own = self.demand_kw.reindex(columns=self.prosumer_pv_kw.columns, fill_value=0.0)
        exported: pd.DataFrame = meter_flows_kw(own, self.prosumer_pv_kw)[1]
        return exported

    def grid_demand_kw(self) -> pd.DataFrame:
        """What each connection's meter imports [kW]: its load less its own PV, ≥ 0.

        Dispatch takes this as demand and :meth:`prosumer_export_kw` as supply, so a
        prosumer is never negative demand.
        """
        pv = self.prosumer_pv_kw.reindex(columns=self.demand_kw.columns, fill_value=0.0)
        imported: pd.DataFrame = meter_flows_kw(self.demand_kw, pv)[0]
        return imported

    def demand_by_tier_kw(self) -> pd.DataFrame:
        """Mean power per period of each tier [kW]."""
        return aggregate_demand(self.demand_kw, self.site, by="kind")

    def table(self) -> pd.DataFrame:
        """One row per period: PV quantiles and demand per tier [kW]."""
        pv = self.pv_kw.add_prefix("pv_").add_suffix("_kw")
        demand = self.demand_by_tier_kw().add_prefix("demand_").add_suffix("_kw")
        return pd.concat([pv, demand], axis=1)

    def daily_energy_kwh(self) -> pd.DataFrame:
        """Energy per local calendar day [kWh]: PV quantiles and demand per tier."""
        energy = self.table() * self.grid.step_hours
        energy.columns = [c.removesuffix("_kw") + "_kwh" for c in energy.columns]
        local_day = pd.DatetimeIndex(energy.index).tz_convert(self.site.location.timezone).date
        daily = energy.groupby(local_day).sum()
        daily.index.name = "date"
        return daily


def forecast_site(
    site: Site,
    grid: TimeGrid,
    weather: pd.DataFrame,
    issued: pd.Timestamp | None = None,
    error_model: PvErrorModel | None = None,
) -> Forecast:
    """Forecast PV (P10/P50/P90) and demand of every connection.

    Parameters
    ----------
    site : Site
        The site.
    grid : TimeGrid
        Periods to forecast.
    weather : pandas.DataFrame
        Weather covering the grid, at any regular step, in our variable names (see
        :mod:`forecasts.weather`): irradiance or cloud cover, plus temperature and wind.
    issued : pandas.Timestamp, optional
        When the forecast is made; the PV spread grows with lead time from it.
    error_model : PvErrorModel, optional
        PV error coefficients.

    Returns
    -------
    Forecast
    """
    on_grid = weather_on_grid(weather, grid.index)
    # Weather is a period mean; sun geometry is taken at the midpoint of each period.
    at_midpoints = on_grid.set_axis(grid.midpoints)
    solpos = solar_position(site.location, grid.midpoints)
    p50 = pv_ac_power_kw(site.pv, site.location, at_midpoints, solpos)
    clear_weather = clear_sky(site.location, grid.midpoints, solpos).join(
        at_midpoints.drop(columns=["ghi", "dni", "dhi", "cloud_cover"], errors="ignore")
    )
    clear = pv_ac_power_kw(site.pv, site.location, clear_weather, solpos)
    cloud_cover = (
        at_midpoints["cloud_cover"]
        if "cloud_cover" in at_midpoints
        else pd.Series(0.0, index=grid.midpoints)
    )
    quantiles = pv_quantiles(p50, clear, cloud_cover, issued=issued, model=error_model)
    pv = quantiles.assign(clear_sky=clear.to_numpy()).set_axis(grid.index)
    roofs = prosumer_pv_ac_power_kw(site, at_midpoints, solpos).set_axis(grid.index)
    return Forecast(
        site=site,
        grid=grid,
        weather=on_grid,
        pv_kw=pv,
        demand_kw=demand_kw(site, grid),
        prosumer_pv_kw=roofs,
    )
