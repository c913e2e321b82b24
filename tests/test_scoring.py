"""Scores frame: risk and value tiers, cause families, top cause, columns and privacy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from churnctl import features, model, scoring
from churnctl.config import Config, ScoringConfig
from churnctl.errors import ModelError
from churnctl.schema import ACTIONABLE_FAMILIES, CAUSE_COLUMNS, FAMILIES, SCORE_COLUMNS, cause_column

AS_OF = pd.Timestamp("2024-12-31")
AS_OF_SAMPLE = pd.Timestamp("2026-06-30")  # the conftest sample's as-of date
#: Registered feature names, so the real cause-family registry is exercised.
COLUMNS = ["recency_days", "frequency", "monetary_total", "late_share", "discount_share", "complaints_90d"]


def feature_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    freq = rng.integers(1, 9, n)
    frame = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 400, n),
            "frequency": freq,
            "monetary_total": np.round(freq * rng.uniform(20, 200, n), 2),
            "late_share": rng.random(n),
            "discount_share": rng.random(n),
            "complaints_90d": rng.poisson(0.5, n),
            "rfm_segment": "Loyal",
            "lifecycle_stage": np.where(freq == 1, "new", "repeat"),
            "country": "DE",
            "channel": "web",
        },
        index=pd.Index([f"{i:03d}" for i in range(n)], name="customer_id"),
    )
    frame["aov"] = frame["monetary_total"] / frame["frequency"]
    return frame


@pytest.fixture(scope="module")
def fitted() -> model.ChurnModel:
    parts = []
    for i, snap in enumerate(pd.to_datetime(["2024-08-03", "2024-09-02", "2024-10-02"])):
        f = feature_frame(300, seed=i)
        p = expit(-2 + 3 * f["late_share"] + 0.004 * f["recency_days"] + 0.8 * f["complaints_90d"])
        parts.append(f.assign(snapshot=snap, churned=np.random.default_rng(10 + i).random(300) < p))
    return model.fit(pd.concat(parts), AS_OF, Config(), algo="xgboost", feature_columns=COLUMNS)


def test_risk_tiers_at_exact_thresholds():
    p = np.array([0.6, 0.599999, 0.3, 0.299999, 1.0, 0.0])
    got = scoring.risk_tiers(p, high=0.6, medium=0.3)
    assert got.tolist() == ["high", "medium", "medium", "low", "high", "low"]


def test_value_tiers_on_hand_made_revenue():
    # Total 100.  c2 brings the running total to exactly 80% and is still A; c3 starts at 80%
    # and is B; c4 ends exactly at 95% (B); c5 starts at 95% and is C.
    revenue = pd.Series({"c3": 10.0, "c5": 5.0, "c1": 50.0, "c4": 5.0, "c2": 30.0})
    got = scoring.value_tiers(revenue, 0.80, 0.95)
    assert got.to_dict() == {"c3": "B", "c5": "C", "c1": "A", "c4": "B", "c2": "A"}
    assert list(got.index) == list(revenue.index)
    # The customer crossing a boundary belongs to the higher tier (lower letter).
    crossing = scoring.value_tiers(pd.Series({"x": 70.0, "y": 20.0, "z": 10.0}), 0.80, 0.95)
    assert crossing.to_dict() == {"x": "A", "y": "A", "z": "B"}
    # Equal revenue: the customer_id decides the order.
    assert scoring.value_tiers(pd.Series({"b": 50.0, "a": 50.0}), 0.5, 0.9).to_dict() == {"b": "B", "a": "A"}
    assert scoring.value_tiers(pd.Series({"a": 0.0, "b": -3.0}), 0.8, 0.95).tolist() == ["C", "C"]


def causes(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{cause_column(f): r.get(f, 0.0) for f in FAMILIES} for r in rows])


def test_top_cause_selection_and_fallback_to_activity():
    frame = causes([
        {"price": 0.2, "logistics": 0.1},
        {"price": 0.05, "service": 0.01, "activity": 2.0},  # nothing actionable above 0.05
        {"logistics": 0.05},  # equal to the threshold: not above it
        {"logistics": 0.0500001},
        {"price": -0.4, "logistics": -0.1, "service": -0.2, "product": -0.3, "engagement": -0.5},
        {"service": 0.3, "product": 0.3},  # tie: the family listed first
        {"engagement": 0.4, "activity": 5.0},  # activity never competes
    ])
    got = scoring.top_causes(frame, 0.05)
    assert got.tolist() == ["price", "activity", "activity", "logistics", "activity", "service", "engagement"]
    # A negative threshold still needs a positive contribution.
    assert scoring.top_causes(frame.iloc[[4]], -1.0).tolist() == ["activity"]
    assert ACTIONABLE_FAMILIES.index("service") < ACTIONABLE_FAMILIES.index("product")


def test_family_contributions_sum_features_and_ignore_bias():
    contrib = pd.DataFrame({"late_share": [0.5, -0.1], "last_order_late": [0.25, 0.0],
                            "discount_share": [0.1, 0.2], "recency_days": [1.0, 2.0], "bias": [9.0, 9.0]},
                           index=["a", "b"])
    got = scoring.family_contributions(contrib)
    assert list(got.columns) == list(CAUSE_COLUMNS)
    assert got.loc["a", "cause_logistics"] == 0.75 and got.loc["b", "cause_logistics"] == -0.1
    assert got.loc["a", "cause_price"] == 0.1 and got.loc["b", "cause_activity"] == 2.0
    assert got.loc["a"].sum() == pytest.approx(1.85)  # bias goes nowhere
    with pytest.raises(ModelError, match="'late_share' has unknown cause family 'weather'"):
        scoring.family_contributions(contrib, family_of=lambda name: "weather")


def test_score_frame(fitted):
    frame = feature_frame(60, seed=7).assign(email="x@example.com", first_name="Ann")
    cfg = Config()
    got = scoring.score(frame, fitted, cfg)
    assert list(got.columns) == list(SCORE_COLUMNS[1:])
    assert got.index.name == "customer_id" and list(got.index) == list(frame.index)  # "000" kept
    assert not {"email", "first_name"} & set(got.columns)
    assert not got.astype(str).apply(lambda c: c.str.contains("example.com|Ann")).any().any()

    p = got["churn_probability"].to_numpy()
    assert (p == np.round(fitted.predict_proba(frame), 6)).all()
    assert (got["risk_tier"].to_numpy() == scoring.risk_tiers(p, 0.6, 0.3)).all()
    assert set(got["risk_tier"]) <= {"high", "medium", "low"}
    # Families + bias give back the margin (cause columns are rounded to 6 decimals).
    margin = got[list(CAUSE_COLUMNS)].sum(axis=1) + fitted.contributions(frame)["bias"]
    np.testing.assert_allclose(margin.to_numpy(), fitted.raw_margin(frame), atol=1e-4)
    assert (got["cause_engagement"] == 0).all() and (got["cause_product"] == 0).all()
    assert (got["top_cause"].to_numpy() == scoring.top_causes(got, Config().scoring.min_cause_contribution)).all()
    assert (got["days_since_last_order"] == frame["recency_days"]).all()
    assert (got["lifecycle_stage"] == frame["lifecycle_stage"]).all()
    assert got.loc["000", "country"] == "DE" and got.loc["000", "rfm_segment"] == "Loyal"
    assert got["value_tier"].isin(["A", "B", "C"]).all()
    # A customer whose risk comes from late deliveries is explained by logistics.
    late = got["cause_logistics"] > 0.3
    assert late.any() and (got.loc[late, "top_cause"] != "activity").all()


def test_score_rejects_a_frame_without_a_model_feature(fitted):
    with pytest.raises(ModelError, match="'late_share' missing"):
        scoring.score(feature_frame(5, seed=1).drop(columns="late_share"), fitted, Config())


def test_score_from_real_features_end_to_end(fitted):
    rng = np.random.default_rng(4)
    n = 400
    ids = rng.integers(0, 80, n)
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)],
        "customer_id": pd.array([f"c{i:02d}" for i in ids], dtype="str"),
        "order_date": AS_OF - pd.to_timedelta(rng.integers(0, 500, n), unit="D"),
        "amount": rng.uniform(10, 100, n).round(2),
        "status": pd.array(np.where(rng.random(n) < 0.1, "cancelled", "completed"), dtype="str"),
        "delivery_days": rng.integers(3, 12, n).astype(float),
        "promised_days": 7.0,
        "discount_amount": np.where(rng.random(n) < 0.3, 5.0, 0.0),
    })
    frame = features.build(orders, AS_OF)
    cfg = Config().replace(scoring=dataclasses.replace(ScoringConfig(), contributions="approx"))
    # The fixture model needs complaints_90d (an events feature): give it, as a no-events value.
    got = scoring.score(frame.assign(complaints_90d=0), fitted, cfg)
    assert len(got) == len(frame) and got["reasons"].map(type).eq(str).all()
    assert got["reasons"].str.len().gt(0).any()
    assert (got["frequency"] == frame["frequency"]).all()


def test_chunked_scoring_equals_one_pass_on_the_sample(small_sample, trained_model, monkeypatch):
    from churnctl import ingest

    cfg = Config()
    orders = ingest.load_orders([small_sample / "orders.csv"], cfg.ingest).frame
    events = ingest.load_events([small_sample / "events.csv"], cfg.ingest).frame
    fitted = model.load(trained_model)
    frame = model.scoring_features(orders, AS_OF_SAMPLE, cfg, events=events)
    assert len(frame) > 250
    monkeypatch.setattr(scoring, "CHUNK_ROWS", len(frame) + 1)
    whole = scoring.score(frame, fitted, cfg)
    calls = []
    real = model.ChurnModel.contribution_values
    monkeypatch.setattr(model.ChurnModel, "contribution_values", lambda self, x, **kw: calls.append(len(x)) or real(self, x, **kw))
    monkeypatch.setattr(scoring, "CHUNK_ROWS", 97)
    chunked = scoring.score(frame, fitted, cfg)
    assert max(calls) == 97 and sum(calls) == len(frame)  # never all customers at once
    pd.testing.assert_frame_equal(chunked, whole)
    assert whole["reasons"].str.len().gt(0).mean() > 0.5 and whole["top_cause"].nunique() > 2
    # An empty frame still gives the columns (the Dask engine builds its meta this way).
    assert list(scoring.score(frame.iloc[:0], fitted, cfg).columns) == list(SCORE_COLUMNS[1:])


def test_scoring_probabilities_equal_predict_proba_bit_for_bit(small_sample, trained_model):
    from churnctl import ingest

    cfg = Config()
    orders = ingest.load_orders([small_sample / "orders.csv"], cfg.ingest).frame
    events = ingest.load_events([small_sample / "events.csv"], cfg.ingest).frame
    fitted = model.load(trained_model)
    frame = model.scoring_features(orders, AS_OF_SAMPLE, cfg, events=events)
    x = fitted._x(frame)
    # inplace_predict (scoring, per chunk) and a DMatrix over all rows give the same bits
    assert fitted.proba_of(x[:37]).tobytes() + fitted.proba_of(x[37:]).tobytes() == fitted.predict_proba(frame).tobytes()
