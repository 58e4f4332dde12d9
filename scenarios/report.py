"""A single-file HTML report: KPI tables and matplotlib plots embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["write_report"]


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return '<img src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'


def _figures(daily: pd.DataFrame, kpis: pd.DataFrame, params: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    wide = daily.pivot_table(index="day", columns="metric", values="value", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for tier in ("priority_kwh", "household_kwh", "business_kwh", "curtailed_kwh"):
        if tier in wide:
            ax.plot(
                wide.index,
                wide[tier].rolling(7, min_periods=1).mean(),
                label=tier.removesuffix("_kwh"),
            )
    ax.set(xlabel="day", ylabel="kWh/day (7-day mean, mean over runs)", title="Energy per tier")
    ax.legend()
    out.append(("Energy per tier over time", _png(fig)))
    if "stake_share_valuable" in wide:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(wide.index, wide["stake_share_valuable"], label="share on truly valuable")
        ax.plot(wide.index, wide["stake_hhi"], label="Herfindahl index")
        ax.set(
            xlabel="round (day)", ylabel="[-]", title="Stake concentration over rounds", ylim=(0, 1)
        )
        ax.legend()
        out.append(("Stake concentration over rounds", _png(fig)))
    eta = kpis[kpis["metric"] == "eta"]
    if len(eta):
        group = "policy.dispatch" if "policy.dispatch" in eta else (params[0] if params else None)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if group is not None:
            labels, data = zip(
                *[(str(k), g["value"].dropna().to_numpy()) for k, g in eta.groupby(group)],
                strict=True,
            )
            ax.boxplot(data, tick_labels=labels)
            ax.set_xlabel(group)
        else:
            ax.boxplot([eta["value"].dropna().to_numpy()], tick_labels=["runs"])
        ax.set(ylabel="η = value ÷ oracle's", title="Allocative efficiency across runs")
        out.append(("η across runs", _png(fig)))
    sizing = {"equipment.pv_kwp", "equipment.battery_kwh"} & set(kpis.columns)
    if sizing:
        unserved = kpis[kpis["metric"] == "unserved_kwh"]
        x = "equipment.pv_kwp" if "equipment.pv_kwp" in sizing else "equipment.battery_kwh"
        other = ({"equipment.pv_kwp", "equipment.battery_kwh"} - {x}) & sizing
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if other:
            (o,) = other
            for value, g in unserved.groupby(o):
                m = g.groupby(x)["value"].mean()
                ax.plot(m.index, m.to_numpy(), marker="o", label=f"{o.split('.')[-1]} = {value}")
            ax.legend()
        else:
            m = unserved.groupby(x)["value"].mean()
            ax.plot(m.index, m.to_numpy(), marker="o")
        ax.set(xlabel=x, ylabel="unserved priority + household kWh", title="Sizing curve")
        out.append(("Sizing: unserved energy", _png(fig)))
    return out


def write_report(
    path: str | Path, title: str, daily: pd.DataFrame, kpis: pd.DataFrame, notes: str = ""
) -> Path:
    """Write the report; ``daily`` and ``kpis`` are :func:`scenarios.kpis.tidy` frames."""
    params = [c for c in kpis.columns if c not in {"run", "seed", "metric", "value"}]
    summary = kpis.pivot_table(
        index="metric", columns=params or None, values="value", aggfunc="median"
    )
    if isinstance(summary, pd.Series):
        summary = summary.to_frame("median")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>",
        f"<p>{kpis['run'].nunique()} run(s). Medians over runs:</p>",
        summary.to_html(float_format=lambda v: f"{v:.4g}"),
    ]
    for heading, image in _figures(daily, kpis, params):
        parts += [f"<h2>{html.escape(heading)}</h2>", image]
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
