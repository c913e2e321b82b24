"""Issue 4 acceptance on the committed sample: the model beats the classic baselines on a
backtest, is calibrated, and its top_cause recovers the planted cause.

The floors here are the agreed ones, a little under the measured figures (README, "Measured so
far"; bench/model_acceptance.py also runs the second, differently shaped dataset).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnctl import evaluate, ingest, model, scoring
from churnctl.config import Config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
AS_OF = pd.Timestamp("2026-06-30")
#: Agreed floors: the issue's targets. Training is deterministic (fixed seed; the same trees
#: with 1 or 2 threads), so the committed sample always measures the same 0.710 recovery.
MAX_ECE = 0.03
MIN_CAUSE_RECOVERY = 0.70


@pytest.fixture(scope="module")
def inputs():
    cfg = Config()
    orders = ingest.load_orders([SAMPLE / "orders.csv"], cfg.ingest).frame
    events = ingest.load_events([SAMPLE / "events.csv"], cfg.ingest).frame
    return cfg, orders, events


@pytest.fixture(scope="module")
def backtest(inputs):
    cfg, orders, events = inputs
    return evaluate.backtest(orders, AS_OF, cfg, events=events, backtests=2)


def test_model_beats_recency_bgnbd_and_the_notebook_baseline(backtest):
    overall = backtest.overall()
    ours = overall["xgboost"]
    for name in ("recency", "bgnbd", "logistic_rfm"):
        assert ours["roc_auc"] > overall[name]["roc_auc"], (name, overall)
        assert ours["pr_auc"] > overall[name]["pr_auc"], (name, overall)
    assert ours["ece"] <= MAX_ECE, ours
    assert ours["brier"] < overall["recency"]["brier"]


def test_top_cause_recovers_the_planted_cause(inputs):
    cfg, orders, events = inputs
    fitted = model.train(orders, AS_OF, cfg, events=events)
    scores = scoring.score(model.scoring_features(orders, AS_OF, cfg, events=events), fitted, cfg)
    truth = pd.read_csv(SAMPLE / "truth.csv", dtype=str, keep_default_na=False)
    got = evaluate.cause_recovery(scores, truth)
    assert got["n"] > 300
    assert got["rate"] >= MIN_CAUSE_RECOVERY, got
    assert scores["value_at_risk"].ge(0).all() and scores["predicted_value_12m"].notna().all()


def test_orders_alone_are_at_least_as_good_as_the_notebook_baseline(inputs):
    cfg, orders, _ = inputs
    bare = orders.drop(columns=["delivery_days", "promised_days", "review_score"])
    overall = evaluate.backtest(bare, AS_OF, cfg, backtests=1).overall()
    assert overall["xgboost"]["roc_auc"] >= overall["logistic_rfm"]["roc_auc"], overall
    assert overall["xgboost"]["pr_auc"] >= overall["logistic_rfm"]["pr_auc"], overall
