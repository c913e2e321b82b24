"""`churnctl explain`: faithful attribution (base + families = raw score) and the printed story."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from churnctl import explain, ingest, model, rules, scoring
from churnctl.cli import app
from churnctl.config import Config
from churnctl.schema import FAMILIES

from conftest import SAMPLE_AS_OF


def _frames(small_sample, trained_model):
    cfg = Config()
    orders = ingest.load_orders([small_sample / "orders.csv"], cfg.ingest).frame
    events = ingest.load_events([small_sample / "events.csv"], cfg.ingest).frame
    fitted = model.load(trained_model)
    feats = model.scoring_features(orders, pd.Timestamp(SAMPLE_AS_OF), cfg, events=events)
    return cfg, fitted, feats


def test_families_plus_base_reproduce_the_raw_score_for_every_customer(small_sample, trained_model):
    cfg, fitted, feats = _frames(small_sample, trained_model)
    totals = explain.family_totals(fitted.contributions(feats))
    assert list(totals.columns) == ["base", *FAMILIES]
    np.testing.assert_allclose(totals.sum(axis=1).to_numpy(), fitted.raw_margin(feats), atol=1e-4)
    # the scores' cause columns are the same family sums (rounded to 6 decimals)
    scores = scoring.score(feats, fitted, cfg)
    for family in FAMILIES:
        np.testing.assert_allclose(scores[f"cause_{family}"], totals[family], atol=1e-6)
    # and the calibrated probability is a monotone map of that raw score
    order = np.argsort(fitted.raw_margin(feats), kind="stable")
    assert (np.diff(scores["churn_probability"].to_numpy()[order]) >= 0).all()


def test_explanation_of_one_customer(small_sample, trained_model):
    cfg, fitted, feats = _frames(small_sample, trained_model)
    scores = scoring.score(feats, fitted, cfg)
    actions = rules.apply(scores, rules.load(None, columns=list(scores.columns)))
    cid = scores["churn_probability"].idxmax()
    e = explain.explain(cid, feats, scores, actions, fitted, SAMPLE_AS_OF)
    assert e.base_value + sum(e.families.values()) == np.float64(e.raw_score) or \
        abs(e.base_value + sum(e.families.values()) - e.raw_score) < 1e-4
    assert e.risk_tier == scores.loc[cid, "risk_tier"] and e.top_cause == scores.loc[cid, "top_cause"]
    assert e.action["rule"] == actions.loc[cid, "rule"]
    assert len(e.key_features) == explain.KEY_FEATURES
    contribs = [abs(k["contribution"]) for k in e.key_features]
    assert contribs == sorted(contribs, reverse=True)


def test_explain_command(small_sample, trained_model):
    runner = CliRunner()
    args = ["--orders", str(small_sample / "orders.csv"), "--events", str(small_sample / "events.csv"),
            "--as-of", SAMPLE_AS_OF, "--model", str(trained_model)]
    ids = pd.read_csv(small_sample / "orders.csv", dtype=str)["customer_id"].dropna()
    cid = sorted(ids.unique())[5]
    result = runner.invoke(app, ["explain", cid, *args])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"customer {cid} as of {SAMPLE_AS_OF}")
    for word in ("churn probability", "raw score (log-odds)", "top cause:", "reasons:", "rule:", "key features"):
        assert word in out
    missing = runner.invoke(app, ["explain", "no-such-customer", *args])
    assert missing.exit_code == 2
    assert "customer 'no-such-customer' has no completed order" in missing.output
