"""The planner report: metrics named with units, per sweep point, with their spread."""

from __future__ import annotations

import pandas as pd

from scenarios.report import point_labels, summary_table, write_report


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
