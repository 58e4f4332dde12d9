"""A single-file HTML report planners can read: every metric named, per sweep point, with spread.

Runs are grouped by their sweep point (the values of the swept parameters; one point when
nothing was swept). Per point the table gives each metric's median over runs and, with
more than one run, its 10th–90th percentile range; the metric's label, unit and meaning
come from :mod:`scenarios.metrics`. Charts are drawn per point, never averaged across
points: energy per tier over time, stake concentration, η across runs, the trade-off
between household and business energy over the sweep with the business share of the
delivered energy against the lifeline size swept (or the household energy), and a sizing
curve when PV or battery size is swept.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scenarios.metrics import METRICS, describe

__all__ = ["MAX_PANELS", "point_labels", "summary_table", "tradeoff_figure", "write_report"]

MAX_PANELS = 6
"""Sweep points drawn as small multiples; more are listed in the table only."""

_TIERS = ("priority_kwh", "household_kwh", "business_kwh", "curtailed_kwh")


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return '<img src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'


def _params(frame: pd.DataFrame) -> list[str]:
    fixed = {"run", "seed", "metric", "value", "day", "date"}
    return [c for c in frame.columns if c not in fixed]


def point_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's sweep point as ``name=value, …`` (``all runs`` when nothing was swept)."""
    params = _params(frame)
    if not params:
        return pd.Series("all runs", index=frame.index)
    return (
        frame[params]
        .astype(str)
        .apply(lambda row: ", ".join(f"{p.split('.')[-1]}={v}" for p, v in row.items()), axis=1)
    )


def summary_table(kpis: pd.DataFrame) -> pd.DataFrame:
    """Metric × sweep point: ``median`` or ``median [p10–p90]`` over runs, with unit and meaning."""
    frame = kpis.assign(point=point_labels(kpis))
    points = list(dict.fromkeys(frame["point"]))
    known = [m for m in METRICS if m in set(frame["metric"])]
    metrics = known + sorted(set(frame["metric"]) - set(known))
    rows = []
    for metric in metrics:
        entry = describe(metric)
        row = {"metric": entry.label, "unit": entry.unit}
        for point in points:
            values = frame.loc[(frame["metric"] == metric) & (frame["point"] == point), "value"]
            values = values.astype(float).dropna()
            row[point] = _spread(values.to_numpy())
        row["meaning"] = entry.meaning
        rows.append(row)
    return pd.DataFrame(rows)


def _spread(values: np.ndarray) -> str:
    if values.size == 0:
        return "–"
    median = float(np.median(values))
    if values.size == 1:
        return f"{median:.4g}"
    low, high = np.percentile(values, [10, 90])
    return f"{median:.4g} [{low:.4g}–{high:.4g}]"


def _energy_panels(daily: pd.DataFrame, points: list[str]) -> str:
    shown = points[:MAX_PANELS]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(9, 2.6 * len(shown)), sharex=True, squeeze=False
    )
    for ax, point in zip(axes[:, 0], shown, strict=True):
        at = daily[daily["point"] == point]
        wide = at.pivot_table(index="day", columns="metric", values="value", aggfunc="mean")
        for tier in _TIERS:
            if tier in wide:
                ax.plot(
                    wide.index,
                    wide[tier].rolling(7, min_periods=1).mean(),
                    label=describe(tier).label,
                )
        ax.set(ylabel="kWh/day", title=point)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("day (7-day mean; mean over the point's runs)")
    return _png(fig)


def _stake_chart(daily: pd.DataFrame, points: list[str]) -> str | None:
    share = daily[daily["metric"] == "stake_share_valuable"]
    if share.empty:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for point in points[:MAX_PANELS]:
        at = share[share["point"] == point].groupby("day")["value"].mean()
        ax.plot(at.index, at.to_numpy(), label=point)
    ax.set(
        xlabel="round (day)",
        ylabel="share of stake [–]",
        title="Stake on truly valuable businesses",
        ylim=(0, 1),
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _eta_chart(kpis: pd.DataFrame, points: list[str]) -> str:
    eta = kpis[(kpis["metric"] == "eta")]
    data = [eta.loc[eta["point"] == p, "value"].astype(float).dropna().to_numpy() for p in points]
    if not any(d.size for d in data):
        return (
            "<p>η was not measured: no run had a day with the oracle "
            "(set <code>policy.oracle_every_days</code> to a number of days the horizon "
            "covers).</p>"
        )
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(points)), 3.5))
    kept = [(p, d) for p, d in zip(points, data, strict=True) if d.size]
    ax.boxplot([d for _, d in kept], tick_labels=[p for p, _ in kept])
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.set(ylabel="η = value ÷ oracle's [–]", title="Allocative efficiency across runs")
    return _png(fig)


def _lifeline_axis(kpis: pd.DataFrame) -> str | None:
    """The swept parameter that sizes the households' lifeline, if one was swept."""
    for column in _params(kpis):
        if (
            column != "point"
            and "lifeline" in column
            and pd.api.types.is_numeric_dtype(pd.to_numeric(kpis[column], errors="coerce"))
        ):
            return column
    return None


def _tradeoff_chart(kpis: pd.DataFrame, points: list[str]) -> str | None:
    fig = tradeoff_figure(kpis, points)
    return None if fig is None else _png(fig)


def tradeoff_figure(kpis: pd.DataFrame, points: list[str]) -> Figure | None:
    """Household against business energy, and the business share against the lifeline.

    The right panel is the community's choice (seed 000: "the community has the knowledge
    to decide"): how much of the delivered energy businesses get for each lifeline size
    swept, or for each level of household energy when no lifeline was swept.
    """
    if len(points) < 2:
        return None
    medians = kpis.pivot_table(index="point", columns="metric", values="value", aggfunc="median")
    if not {"household_kwh", "business_kwh"} <= set(medians.columns):
        return None
    medians = medians.reindex(points)
    share = "business_share" in medians.columns
    fig, axes = plt.subplots(1, 2 if share else 1, figsize=(11 if share else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(medians["household_kwh"], medians["business_kwh"], marker="o")
    for point, row in medians.iterrows():
        ax.annotate(str(point), (row["household_kwh"], row["business_kwh"]), fontsize=7)
    ax.set(
        xlabel="household energy [kWh] (median over runs)",
        ylabel="business energy [kWh]",
        title="Trade-off over the sweep",
    )
    if share:
        ax = axes[0, 1]
        lifeline = _lifeline_axis(kpis)
        if lifeline is not None:
            x = pd.to_numeric(kpis.groupby("point")[lifeline].first(), errors="coerce")
            x = x.reindex(points)
            label = lifeline.split(".")[-1].replace("_", " ")
        else:
            x = medians["household_kwh"]
            label = "household energy [kWh]"
        order = np.argsort(x.to_numpy(), kind="stable")
        y = medians["business_share"].to_numpy()
        ax.plot(x.to_numpy()[order], y[order], marker="o")
        for point, xv, yv in zip(points, x.to_numpy(), y, strict=True):
            ax.annotate(str(point), (xv, yv), fontsize=7)
        ax.set(
            xlabel=label,
            ylabel="business share of delivered energy [–]",
            title="Lifeline size against business share",
        )
    return fig


def _sizing_chart(kpis: pd.DataFrame) -> str | None:
    sizing = [c for c in ("equipment.pv_kwp", "equipment.battery_kwh") if c in kpis.columns]
    if not sizing:
        return None
    unserved = kpis[kpis["metric"] == "unserved_kwh"]
    x = sizing[0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(sizing) == 2:
        for value, group in unserved.groupby(sizing[1]):
            m = group.groupby(x)["value"].median()
            ax.plot(
                m.index, m.to_numpy(), marker="o", label=f"{sizing[1].split('.')[-1]} = {value}"
            )
        ax.legend()
    else:
        m = unserved.groupby(x)["value"].median()
        ax.plot(m.index, m.to_numpy(), marker="o")
    ax.set(xlabel=x, ylabel="unserved priority + household [kWh]", title="Sizing curve")
    return _png(fig)


def write_report(
    path: str | Path, title: str, daily: pd.DataFrame, kpis: pd.DataFrame, notes: str = ""
) -> Path:
    """Write the report; ``daily`` and ``kpis`` are :func:`scenarios.kpis.tidy` frames."""
    kpis = kpis.assign(point=point_labels(kpis))
    daily = daily.assign(point=point_labels(daily))
    points = list(dict.fromkeys(kpis["point"]))
    runs = kpis.groupby("point")["run"].nunique().reindex(points)
    spread = "median [10th–90th percentile] over runs" if runs.max() > 1 else "one run per point"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px;vertical-align:top}td:last-child{color:#555}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>",
        "<p>"
        + html.escape(
            f"{len(points)} sweep point(s), "
            + ", ".join(f"{p}: {n} run(s)" for p, n in runs.items())
            + f". Each cell: {spread}."
        )
        + "</p>",
        summary_table(kpis).to_html(index=False, escape=True),
    ]
    if len(points) > MAX_PANELS:
        parts.append(f"<p>Charts show the first {MAX_PANELS} of {len(points)} points.</p>")
    sections = [
        ("Energy per tier over time, per sweep point", _energy_panels(daily, points)),
        ("Stake concentration over rounds", _stake_chart(daily, points)),
        ("η across runs, per sweep point", _eta_chart(kpis, points)),
        ("Household against business energy over the sweep", _tradeoff_chart(kpis, points)),
        ("Sizing: unserved energy", _sizing_chart(kpis)),
    ]
    for heading, body in sections:
        if body is not None:
            parts += [f"<h2>{html.escape(heading)}</h2>", body]
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
