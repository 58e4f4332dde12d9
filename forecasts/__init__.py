"""forecasts package."""
