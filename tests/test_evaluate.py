"""Backtest metrics on hand-made numbers, and `churnctl evaluate` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from churnctl import evaluate
from churnctl.cli import app

from conftest import SAMPLE_AS_OF


def test_expected_calibration_error_known_answer():
    # bin [0.1, 0.2): p 0.1, 0.1 vs 1 churner of 2 -> |1 - 0.2| = 0.8; bin [0.9, 1]: p 0.9, 1.0 vs 2 -> 0.1
    y = np.array([1, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 1.0])
    assert evaluate.expected_calibration_error(y, p) == pytest.approx((0.8 + 0.1) / 4)
    assert evaluate.expected_calibration_error(np.array([1, 0]), np.array([0.5, 0.5])) == 0.0


def test_capture_and_lift_share_ties():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    score = np.arange(10, 0, -1, dtype=float)  # first customers ranked highest
    assert evaluate.capture(y, score, 0.2) == pytest.approx(2 / 3)
    assert evaluate.capture(y, score, 0.1) == pytest.approx(1 / 3)
    tied = np.ones(10)
    assert evaluate.capture(y, tied, 0.2) == pytest.approx(0.2)  # ties: the cut takes the average
    m = evaluate.metrics(y, np.full(10, 0.3), score)
    assert m["lift_20"] == pytest.approx((2 / 3) / 0.2) and m["positives"] == 3 and m["n"] == 10
    assert math.isnan(evaluate.metrics(np.zeros(4), np.full(4, 0.2))["roc_auc"])


def test_reliability_deciles():
    p = np.linspace(0.0, 0.99, 100)
    y = (np.arange(100) % 2).astype(float)
    r = evaluate.reliability(y, p)
    assert list(r["decile"]) == list(range(1, 11)) and (r["n"] == 10).all()
    assert r["mean_predicted"].is_monotonic_increasing
    assert r["observed_rate"].tolist() == [0.5] * 10


def test_curves_of_a_perfect_ranker():
    # 3 churners all ranked above 7 stayers: tpr reaches 1 at fpr 0, precision is 1 up to recall 1
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    score = np.arange(10, 0, -1, dtype=float)
    c = evaluate.curves(y, score)
    roc = c[c["curve"] == "roc"]
    assert roc[["x", "y"]].iloc[0].tolist() == [0, 0] and roc[["x", "y"]].iloc[-1].tolist() == [1, 1]
    assert ((roc["x"] == 0) & (roc["y"] == 1)).any()
    pr = c[c["curve"] == "pr"]
    assert pr["x"].is_monotonic_increasing and (pr.loc[pr["x"] < 1, "y"] == 1).all()
    assert ((pr["x"] == 1) & (pr["y"] == 1)).any() and pr["y"].iloc[-1] == pytest.approx(0.3)  # then everybody
    cap = c[c["curve"] == "capture"].set_index("x")["y"]
    assert len(cap) == 101 and cap.index[0] == 0 and cap.index[-1] == 1
    # top 10% = 1 of 3 churners, top 30% = all of them, later flat
    assert cap.loc[0.1] == pytest.approx(1 / 3) and cap.loc[0.3] == pytest.approx(1) and cap.loc[0.5] == 1
    lift = c[c["curve"] == "lift"].set_index("x")["y"]
    assert lift.loc[0.1] == pytest.approx(10 / 3) and lift.loc[1.0] == pytest.approx(1)


def test_curves_share_ties_and_are_thinned_monotone():
    # all scores tied: capture is the diagonal (the cut takes the average), ROC the diagonal
    c = evaluate.curves(np.array([1, 0, 1, 0]), np.ones(4))
    cap = c[c["curve"] == "capture"]
    assert np.allclose(cap["y"], cap["x"])
    assert c.loc[c["curve"] == "roc", ["x", "y"]].to_numpy().tolist() == [[0, 0], [1, 1]]
    # 20,000 noisy customers: at most 200 points per curve, fpr and tpr never decrease, AUC kept
    rng = np.random.default_rng(3)
    y = rng.random(20_000) < 0.3
    s = y + rng.normal(size=20_000)
    c = evaluate.curves(y, s)
    sizes = c.groupby("curve").size()
    assert sizes["roc"] <= 200 and sizes["pr"] <= 200 and sizes["capture"] == 101 and sizes["lift"] == 100
    roc = c[c["curve"] == "roc"]
    assert roc["x"].is_monotonic_increasing and roc["y"].is_monotonic_increasing
    assert np.trapezoid(roc["y"], roc["x"]) == pytest.approx(roc_auc_score(y, s), abs=2e-3)
    assert evaluate.curves(np.zeros(5), np.arange(5.0)).empty  # one class: no curve


def test_thin_keeps_the_ends_and_at_most_n_points():
    x = np.linspace(0, 1, 1000)
    tx, ty = evaluate.thin(x, x ** 2, 50)
    assert len(tx) <= 50 and tx[0] == 0 and tx[-1] == 1 and np.all(np.diff(tx) > 0)
    short = evaluate.thin(x[:10], x[:10], 50)
    assert len(short[0]) == 10


def test_cause_recovery_counts_high_risk_churners_only():
    scores = pd.DataFrame({"risk_tier": ["high", "high", "high", "low"],
                           "top_cause": ["price", "activity", "logistics", "price"]},
                          index=pd.Index(["a", "b", "c", "d"], name="customer_id"))
    truth = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "churned": ["true", "true", "false", "true"],
                          "churn_cause": ["price", "service", "", "price"]})
    r = evaluate.cause_recovery(scores, truth)
    assert (r["n"], r["recovered"], r["rate"]) == (2, 1, 0.5)
    assert r["by_cause"] == {"price": {"n": 1, "recovered": 1.0}, "service": {"n": 1, "recovered": 0.0}}


def test_evaluate_command_writes_tables(small_sample, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "--orders", str(small_sample / "orders.csv"), "--events", str(small_sample / "events.csv"),
        "--as-of", SAMPLE_AS_OF, "--backtests", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "xgboost" in result.stdout and "bgnbd" in result.stdout and "logistic_rfm" in result.stdout
    table = pd.read_csv(out / "evaluation.csv", keep_default_na=False)
    assert list(table.columns) == list(evaluate.TABLE_COLUMNS)
    assert set(table["cutoff"]) == {"all", "2026-03-02", "2026-04-01"}
    assert set(table["group_by"]) == {"all", "country", "channel", "rfm_segment"}
    assert set(table["model"]) == set(evaluate.MODELS)
    rel = pd.read_csv(out / "reliability.csv")
    assert list(rel.columns) == list(evaluate.RELIABILITY_COLUMNS)
    assert set(rel["decile"]) == set(range(1, 11))
    curves = pd.read_csv(out / "curves.csv", dtype={"cutoff": str})
    assert list(curves.columns) == list(evaluate.CURVE_COLUMNS)
    assert set(curves["cutoff"]) == {"all", "2026-03-02", "2026-04-01"} and set(curves["model"]) == set(evaluate.MODELS)
    assert set(curves["curve"]) == set(evaluate.CURVES)
    assert curves.groupby(["cutoff", "model", "curve"]).size().max() <= evaluate.CURVE_POINTS
    data = json.loads((out / "evaluation.json").read_text())
    assert "curves.csv" in data["files"]
    assert data["cutoffs"] == ["2026-03-02", "2026-04-01"] and set(data["overall"]) == set(evaluate.MODELS)
    overall = data["overall"]["xgboost"]
    assert 0.5 < overall["roc_auc"] <= 1 and 0 <= overall["ece"] < 0.2


def test_evaluate_with_too_little_history_is_one_line(small_sample, tmp_path):
    result = CliRunner().invoke(app, [
        "evaluate", "--orders", str(small_sample / "orders.csv"), "--as-of", "2023-09-01",
        "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "backtest cutoff" in result.output and "Traceback" not in result.output
