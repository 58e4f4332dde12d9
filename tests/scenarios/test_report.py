"""The planner report: metrics named with units, per sweep point, with their spread."""

from __future__ import annotations

import pandas as pd

from scenarios.report import point_labels, summary_table, tradeoff_figure, write_report


def kpis_frame(points: dict[int, float], runs: int = 5) -> pd.DataFrame:
    rows = []
    for pv, base in points.items():
        for run in range(runs):
            rows += [
                {
                    "run": run,
                    "seed": run,
                    "equipment.pv_kwp": pv,
                    "metric": "business_kwh",
                    "value": base + run,
                },
                {
                    "run": run,
                    "seed": run,
                    "equipment.pv_kwp": pv,
                    "metric": "household_kwh",
                    "value": 10.0 * pv,
                },
                {
                    "run": run,
                    "seed": run,
                    "equipment.pv_kwp": pv,
                    "metric": "eta",
                    "value": float("nan"),
                },
                {
                    "run": run,
                    "seed": run,
                    "equipment.pv_kwp": pv,
                    "metric": "mystery",
                    "value": 1.0,
                },
            ]
    return pd.DataFrame(rows)


def test_summary_is_per_point_with_spread_units_and_meaning():
    table = summary_table(kpis_frame({22: 100.0, 44: 300.0})).set_index("metric")
    business = table.loc["business energy"]
    assert business["unit"] == "kWh"
    assert business["pv_kwp=22"] == "102 [100.4–103.6]"
    assert business["pv_kwp=44"] == "302 [300.4–303.6]"
    assert "delivered to businesses" in business["meaning"]
    assert table.loc["mystery", "unit"] == ""  # unknown metrics are shown, not dropped


def test_points_without_parameters_are_all_runs():
    frame = pd.DataFrame({"run": [0], "seed": [0], "metric": ["eta"], "value": [1.0]})
    assert point_labels(frame).tolist() == ["all runs"]


def test_report_explains_a_missing_eta_and_draws_the_tradeoff(tmp_path):
    kpis = kpis_frame({22: 100.0, 33: 200.0, 44: 300.0})
    daily = pd.DataFrame(
        [
            {
                "run": r,
                "seed": r,
                "day": d,
                "date": "2026-01-01",
                "equipment.pv_kwp": pv,
                "metric": m,
                "value": 1.0,
            }
            for r in range(2)
            for d in range(3)
            for pv in (22, 33, 44)
            for m in ("household_kwh", "business_kwh", "stake_share_valuable")
        ]
    )
    text = write_report(tmp_path / "r.html", "t", daily, kpis).read_text()
    assert "η was not measured" in text
    assert "Trade-off" in text or "over the sweep" in text
    assert text.count("data:image/png;base64") >= 3


def lifeline_sweep() -> tuple[pd.DataFrame, list[str]]:
    """Three lifeline sizes: the bigger the lifeline, the smaller the business share."""
    rows = []
    for run, (wh, share, household) in enumerate(
        ((120, 0.2, 30.0), (200, 0.1, 36.0), (0, 0.0, 46.0))
    ):
        for metric, value in (
            ("business_share", share),
            ("household_kwh", household),
            ("business_kwh", 100 * share),
        ):
            rows.append(
                {
                    "run": run,
                    "seed": run,
                    "lifeline_wh_per_day": wh,
                    "metric": metric,
                    "value": value,
                }
            )
    kpis = pd.DataFrame(rows)
    kpis = kpis.assign(point=point_labels(kpis))
    return kpis, list(dict.fromkeys(kpis["point"]))


def test_tradeoff_has_a_business_share_axis_against_the_lifeline_swept():
    kpis, points = lifeline_sweep()
    fig = tradeoff_figure(kpis, points)
    assert fig is not None
    assert len(fig.axes) == 2
    share = fig.axes[1]
    assert share.get_xlabel() == "lifeline wh per day"
    assert share.get_ylabel().startswith("business share")
    x, y = share.lines[0].get_data()
    assert list(x) == [0, 120, 200]  # drawn in lifeline order, not sweep order
    assert list(y) == [0.0, 0.2, 0.1]


def test_tradeoff_without_a_lifeline_swept_uses_household_energy():
    kpis, _ = lifeline_sweep()
    kpis = kpis.drop(columns="lifeline_wh_per_day")
    kpis["point"] = kpis["run"].map({0: "a", 1: "b", 2: "c"})
    fig = tradeoff_figure(kpis, ["a", "b", "c"])
    assert fig is not None
    assert fig.axes[1].get_xlabel() == "household energy [kWh]"
