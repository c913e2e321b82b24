"""The analyst's report: aggregates with known answers, the page's sections and numbers, the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import export
from churnctl.cli import app
from churnctl.config import Config
from churnctl.report import aggregates, load_run, render
from churnctl.report.data import previous_run
from churnctl.report.page import decile_curves, eval_curves, top_groups

SAMPLE_AS_OF = "2026-06-30"  # as in conftest.py

AS_OF = pd.Timestamp("2026-04-30")
runner = CliRunner()


# --- aggregates: known answers on hand-made orders ----------------------------------------
def _orders() -> pd.DataFrame:
    rows = [  # customer, date, status, amount, category
        ("c1", "2026-01-05", "completed", 10.0, "toys"),
        ("c1", "2026-02-10", "completed", 20.0, "toys"),
        ("c1", "2026-02-20", "completed", 30.0, "books"),
        ("c1", "2026-04-01", "completed", 40.0, "books"),
        ("c2", "2026-01-15", "completed", 50.0, "pet"),
        ("c2", "2026-03-15", "cancelled", 60.0, "pet"),  # not a purchase
        ("c3", "2026-02-01", "completed", 70.0, "pet"),
        ("c3", "2026-03-01", "completed", 80.0, "toys"),
        ("c3", "2026-05-02", "completed", 90.0, "toys"),  # after as_of: left out
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "status", "amount", "category"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


def test_cohorts_count_customers_active_n_months_after_their_first_order():
    got = aggregates.cohorts(_orders(), AS_OF)
    cells = {(r.cohort_month, r.months_since): r.customers for r in got.itertuples()}
    # Jan cohort: c1, c2; c1 buys again 1 and 3 months later.  Feb cohort: c3, again in March.
    assert cells == {("2026-01", 0): 2, ("2026-01", 1): 1, ("2026-01", 3): 1, ("2026-02", 0): 1, ("2026-02", 1): 1}


def test_monthly_buyers_new_and_repeat():
    got = aggregates.monthly(_orders(), AS_OF).set_index("month")
    assert list(got.index) == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert got["buyers"].tolist() == [2, 2, 1, 1]
    assert got["new_buyers"].tolist() == [2, 1, 0, 0]
    assert got["repeat_buyers"].tolist() == [0, 1, 1, 1]
    assert got["orders"].tolist() == [2, 3, 1, 1]
    assert got.loc["2026-02", "revenue"] == 120.0


def test_category_is_the_most_frequent_with_ties_alphabetical():
    got = aggregates.customer_category(_orders(), AS_OF)
    assert got.to_dict() == {"c1": "books", "c2": "pet", "c3": "pet"}  # c1 2-2 tie, c3 1-1 tie (May left out)


def test_delivery_bands():
    got = aggregates.delivery_band(pd.Series([1.0, 5.0, 5.5, 20.0, 25.0, np.nan]))
    assert got.tolist()[:5] == ["delivery <=5 days", "delivery <=5 days", "delivery 5-10 days",
                                "delivery 10-20 days", "delivery >20 days"]
    assert got.isna().tolist() == [False] * 5 + [True]


def _scores(n_extra: int = 0) -> pd.DataFrame:
    rows = [  # id, p, tier, stage, country, channel, cause, days, freq, aov
        ("c1", 0.9, "high", "loyal", "DE", "amazon", "logistics", 200, 6, 40.0),
        ("c2", 0.7, "high", "new", "DE", "amazon", "logistics", 100, 1, 50.0),
        ("c3", 0.65, "high", "repeat", "DE", "web", "price", 130, 2, 60.0),
        ("c4", 0.4, "medium", "repeat", "FR", "web", "service", 40, 3, 70.0),
        ("c5", 0.1, "low", "new", "FR", "web", "activity", 10, 1, 80.0),
        ("c6", 0.2, "low", "loyal", "CH", "web", "activity", 5, 9, 90.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "churn_probability", "risk_tier", "lifecycle_stage",
                                        "country", "channel", "top_cause", "days_since_last_order", "frequency",
                                        "aov"])
    frame["rfm_segment"] = ["Lost", "Lost", "<i>Lost</i>", "Lost", "Lost", "Lost"]
    frame["value_at_risk"] = frame["churn_probability"] * 100
    for fam in ("price", "logistics", "service", "product", "engagement", "activity"):
        frame[f"cause_{fam}"] = 0.1
    return frame


def test_segments_count_tiers_and_high_risk_causes():
    got = aggregates.segments(_scores())
    de = got[got["country"] == "DE"]
    assert de["customers"].sum() == 3 and de["high"].sum() == 3
    assert de["high_logistics"].sum() == 2 and de["high_price"].sum() == 1
    assert (got["category"] == "unknown").all()
    assert got["customers"].sum() == 6
    assert got["value_at_risk"].sum() == pytest.approx(295.0)


def test_top_groups_rank_by_high_risk_share_and_name_the_dominant_cause():
    seg = aggregates.segments(pd.concat([_scores()] * 10, ignore_index=True).assign(
        customer_id=lambda f: [f"x{i}" for i in range(len(f))]))
    got = top_groups(seg)
    first = got.iloc[0]
    assert first["group"] == "DE" and first["share"] == 1.0 and first["cause"] == "logistics"
    assert first["customers"] == 30 and first["cause_share"] == pytest.approx(2 / 3)
    # "DE, amazon" is no riskier than "DE" (both 100%), so it is not listed again.
    assert "DE, amazon" not in set(got["group"])
    assert (got["customers"] >= 20).all()


def test_decile_curves_walk_the_deciles_from_the_riskiest():
    rel = pd.DataFrame({"cutoff": "all", "model": "xgboost", "decile": [1, 2],
                        "mean_predicted": [0.2, 0.8], "observed_rate": [0.25, 0.75], "n": [100, 100]})
    curves = decile_curves(rel)
    fpr, tpr = curves["roc"]["model (xgboost)"]
    assert tpr.tolist() == [0, 0.75, 1.0] and fpr.tolist() == [0, 0.25, 1.0]
    recall, precision = curves["pr"]["model (xgboost)"]
    assert precision.tolist() == [0.75, 0.5]
    share, capture = curves["lift"]["model (xgboost)"]
    assert share.tolist() == [0, 0.5, 1.0] and capture.tolist() == [0, 0.75, 1.0]


def test_eval_curves_read_the_pooled_rows_and_put_the_auc_in_the_legend():
    cur = pd.DataFrame({"cutoff": ["all"] * 3 + ["2026-01-30"] * 3, "model": "xgboost", "curve": "roc",
                        "x": [0, 0, 1] * 2, "y": [0, 1, 1, 0, 0.5, 1]})
    got = eval_curves(cur, {"xgboost": {"roc_auc": 0.9}})
    (label, (x, y)), = got["roc"].items()
    assert label == "model (xgboost), AUC 0.900" and y.tolist() == [0, 1, 1]
    # no metrics: the area under the drawn curve, marked as approximate
    assert list(eval_curves(cur)["roc"]) == ["model (xgboost), AUC ≈1.000"]


# --- a hand-made run folder ---------------------------------------------------------------
def _manifest(as_of: str, scored: int, high: int, version: str = "abc123def456") -> dict:
    return {
        "as_of": as_of, "command": "run", "horizon_days": 90,
        "inputs": [{"kind": "orders", "file": "/data/orders.csv", "read": 120, "accepted": 110, "rejected": 7,
                    "collapsed": 3, "rejected_by_reason": {"unparsable date": 4, "missing value": 3}}],
        "counts": {"customers_scored": scored, "risk_tiers": {"high": high, "medium": 1, "low": 2},
                   "rows_rejected": 7, "rows_collapsed": 3, "orders_after_as_of": 0,
                   "actions": {"logistics_express": 2, "no_action": 4}, "recipients": {"logistics_express": 1},
                   "excluded_by_campaign": {"logistics_express": {"no_consent": 1}}},
        "model": {"version": version, "algo": "xgboost", "trained_as_of": as_of,
                  "metrics": {"roc_auc": 0.85, "pr_auc": 0.8, "brier": 0.15, "top_decile_lift": 2.0}},
        "outputs": [{"path": "campaigns/logistics_express.csv"}],
    }


def _write_run(folder: Path, as_of: str, scored: int = 6, high: int = 3) -> Path:
    folder.mkdir(parents=True)
    scores = _scores()
    export.write_csv(scores, folder / "scores.csv")
    export.write_json(_manifest(as_of, scored, high), folder / "run.json")
    (folder / "rejects.csv").write_text("file,line,column,reason\norders.csv,3,order_date,unparsable date\n")
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "logistics_express.csv").write_text(
        "email,first_name,customer_id,campaign,offer_type,offer_value,offer_min_spend\n"
        "secret.person@example.com,Ottilie,c1,logistics_express,percent_off,10,\n")
    for name, frame in aggregates.build(_orders(), scores.set_index("customer_id"), AS_OF).items():
        export.write_csv(frame, folder / "aggregates" / name)
    return folder


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_nights")
    first = _write_run(tmp / "out" / "2026-04-29", "2026-04-29", scored=5, high=2)
    second = _write_run(tmp / "out" / "2026-04-30", "2026-04-30")
    (tmp / "out" / "2026-05-01").mkdir()  # later, and no run.json: neither counts
    (tmp / "out" / "notes").mkdir()
    return first, second


@pytest.fixture(scope="module")
def page(two_nights):
    """The hand-made second night's page, rendered once for the tests that read it."""
    return render(load_run(two_nights[1]), Config())


def _text(page: str) -> str:
    """Return the page's visible text (tags dropped, SVG included), whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_previous_run_is_the_latest_earlier_dated_sibling(two_nights):
    first, second = two_nights
    assert previous_run(second, "2026-04-30") == first.resolve()
    assert previous_run(first, "2026-04-29") is None


def test_page_has_every_section_with_its_numbers(page):
    text = _text(page)
    for sid in ("headline", "customers", "causes", "model", "campaigns", "data-quality"):
        assert f'<section id="{sid}">' in page
    # headline: scored 6 (+1 since the 5 of the night before), 3 high (+1), value at risk 295
    assert "6 customers scored" in text and "+1 (+20.0%) since previous run" in text
    assert "3 high risk" in text and "+1 (+50.0%) since previous run" in text
    assert "295 USD expected value at risk" in text
    assert "7 rows rejected" in text and "1 contacts in campaigns" in text
    assert "Contacts by campaign: logistics_express 1." in text
    assert "abc123def456" in text and "(same as previous run)" in text and "2026-04-29" in text
    assert "0.850" in text  # ROC-AUC from run.json
    # customer base: the RFM map, the risk histogram, the cohort and repeat-rate figures
    for fig in ("rfm", "risk", "cohorts", "repeat", "causes", "by-country", "by-channel", "by-lifecycle_stage",
                "validation", "campaigns", "rejects"):
        assert f'data-figure="{fig}"' in page, fig
    assert "Repeat purchase rate by month = buyers of the month who had already bought" in text
    # causes: DE is 3 of 3 high risk, logistics for 2 of them; too few to show apart from the rest
    # (fewer than 5 high-risk customers: pooled as "other") and too small a group to rank (< 20)
    assert "other (n=3)" in text and "DE (n=3)" not in text
    assert "no group is large enough to rank" in text
    # model quality: validation only; the evaluation is missing and the page says what to run
    assert "no evaluation in this run: run churnctl evaluate" in text
    # campaigns: 2 matched, 1 recipient, 1 excluded, a 10% offer on an AOV of 40 -> at most 4 USD
    assert re.search(r"logistics_express 2 1 — 1 percent_off 10 ≤ 4 USD", text), text[text.find("matched"):][:400]
    assert "no measured uplift: run churnctl measure" in text
    # data quality: per file and per reason, date ranges of the inputs
    assert re.search(r"orders orders\.csv 120 110 7 3", text)
    assert re.search(r"orders\.csv unparsable date 4", text)
    assert re.search(r"orders 2026-01-05 2026-05-02 9", text)  # every accepted order, any status or date


def test_page_is_self_contained_escaped_and_holds_no_personal_data(page):
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#|data:)""", page), "a link or source outside the page"
    assert "<script" not in page and "@import" not in page and not re.search(r"url\((?!#)", page)
    assert "&lt;i&gt;Lost&lt;/i&gt;" in page and "<i>" not in page  # a value named like markup stays text
    assert "secret.person@example.com" not in page and "Ottilie" not in page
    text = _text(page)
    for cid in ("c1", "c2", "c3", "c4", "c5", "c6"):
        assert not re.search(rf"\b{cid}\b", text), cid


def test_missing_aggregates_and_values_are_said_plainly(tmp_path):
    folder = _write_run(tmp_path / "run", "2026-04-30")
    shutil.rmtree(folder / "aggregates")
    scores = pd.read_csv(folder / "scores.csv", dtype={"customer_id": str}).drop(columns=["value_at_risk"])
    (folder / "scores.csv").unlink()
    scores.to_parquet(folder / "scores.parquet", index=False)  # `--format parquet` runs are read too
    run = load_run(folder)
    assert run.scores["customer_id"].tolist() == ["c1", "c2", "c3", "c4", "c5", "c6"]
    text = _text(render(run, Config()))
    assert "6 customers scored" in text
    assert "no cohort aggregates in this run" in text
    assert "no monthly aggregates in this run" in text
    assert "expected value at risk is not shown" in text
    assert "No previous run found" in text
    assert "no input date ranges in this run" in text


# --- CLI ------------------------------------------------------------------------------------
def test_cli_report_with_an_evaluation_adds_curves_and_baselines(tmp_path):
    folder = _write_run(tmp_path / "run", "2026-04-30")
    ev = tmp_path / "backtest"
    ev.mkdir()
    export.write_json({"as_of": "2026-04-30", "cutoffs": ["2026-01-30"], "overall": {
        "xgboost": {"roc_auc": 0.86, "pr_auc": 0.8, "brier": 0.14, "lift_10": 2.1, "ece": 0.02},
        "bgnbd": {"roc_auc": 0.79, "pr_auc": 0.7, "brier": 0.19, "lift_10": 1.8, "ece": 0.05},
        "recency": {"roc_auc": 0.8, "pr_auc": 0.72, "brier": 0.18, "lift_10": 1.9, "ece": 0.03}}},
        ev / "evaluation.json")
    deciles = np.arange(1, 11)
    rel = pd.concat([pd.DataFrame({"cutoff": "all", "model": m, "decile": deciles, "p_min": 0, "p_max": 1,
                                   "mean_predicted": deciles / 11, "observed_rate": deciles / 11 * k, "n": 50})
                     for m, k in (("xgboost", 1.0), ("bgnbd", 0.9))])
    export.write_csv(rel, ev / "reliability.csv")
    # `churnctl measure` writes <output_dir>/measure.csv: per campaign and run, pooled as run_id "all"
    pd.DataFrame({"campaign": ["logistics_express", "logistics_express"], "run_id": ["2026-04-01", "all"],
                  "treated": [90, 180], "holdout": [10, 20], "uplift_repeat_rate": [0.9, 0.05],
                  "uplift_ci_low": [0.1, -0.02], "uplift_ci_high": [1.0, 0.12], "complete": [True, True]}
                 ).to_csv(tmp_path / "measure.csv", index=False)
    result = runner.invoke(app, ["report", "--run", str(folder), "--evaluation", str(ev)])
    assert result.exit_code == 0, result.output
    assert f"-> {folder / 'report.html'}" in result.output
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    text = _text(page)
    for fig in ("backtest", "roc", "pr", "reliability", "lift"):
        assert f'data-figure="{fig}"' in page, fig
    assert "BG/NBD" in text and "0.790" in text and "model (xgboost)" in text
    assert "no evaluation in this run" not in text
    assert 'data-figure="uplift"' in page and "no measured uplift" not in text
    assert re.search(r"logistics_express 180 20 0\.050 -0\.020 0\.120", text)  # the pooled row only
    assert "0.900" not in text
    # no curves.csv: the curves are rebuilt from the deciles, and the page says so
    assert "rebuilt from the 10 deciles of reliability.csv" in text and "ROC curve at decile resolution" in text
    assert "model (xgboost), AUC 0.860" in text  # the AUC of the backtest in the legend


def _curves_csv(folder: Path) -> None:
    """A curves.csv as `churnctl evaluate` writes it: four models, ROC / PR / capture per cutoff."""
    rows = []
    for model, bend in (("xgboost", 0.2), ("logistic_rfm", 0.4), ("bgnbd", 0.3), ("recency", 0.5)):
        x = np.linspace(0, 1, 150)
        y = x ** bend
        for cutoff in ("all", "2026-01-30"):
            rows += [pd.DataFrame({"cutoff": cutoff, "model": model, "curve": kind, "x": x, "y": yy})
                     for kind, yy in (("roc", y), ("pr", 1 - 0.5 * x), ("capture", y))]
    export.write_csv(pd.concat(rows, ignore_index=True), folder / "curves.csv")


def test_report_draws_the_backtest_curves_from_curves_csv(tmp_path):
    folder = _write_run(tmp_path / "run", "2026-04-30")
    ev = folder / "evaluation"  # found beside the run without --evaluation
    ev.mkdir()
    export.write_json({"as_of": "2026-04-30", "cutoffs": ["2026-01-30"], "overall": {
        "xgboost": {"roc_auc": 0.861, "pr_auc": 0.812, "lift_10": 2.3},
        "logistic_rfm": {"roc_auc": 0.802, "pr_auc": 0.733},
        "bgnbd": {"roc_auc": 0.791, "pr_auc": 0.744},
        "recency": {"roc_auc": 0.781, "pr_auc": 0.722}}}, ev / "evaluation.json")
    _curves_csv(ev)
    page = render(load_run(folder), Config())
    text = _text(page)
    for fig in ("roc", "pr", "lift"):
        assert f'data-figure="{fig}"' in page, fig
    assert 'data-figure="reliability"' not in page  # no reliability.csv: no calibration plot
    for label in ("model (xgboost), AUC 0.861", "logistic on RFM, AUC 0.802", "BG/NBD, AUC 0.791",
                  "recency, AUC 0.781", "model (xgboost), PR-AUC 0.812", "recency, PR-AUC 0.722",
                  "model (xgboost), lift@10% 2.300"):
        assert label in text, label
    assert "ROC curve from curves.csv" in text and "rebuilt from the 10 deciles" not in text


def test_campaign_budgets_come_from_the_rules_file_and_costs_from_the_manifest(tmp_path):
    folder = _write_run(tmp_path / "run", "2026-04-30")
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: late\n    when:\n      top_cause: {equals: logistics}\n"
                     "    action:\n      campaign: logistics_express\n      channel: email\n"
                     "      offer: {type: free_shipping}\n      template: t\n"
                     "      budget: {max_recipients: 300, max_offer_cost: 1250}\n"
                     "  - name: rest\n    when:\n      risk_tier: {in: [high]}\n"
                     "    action:\n      campaign: price_coupon\n      channel: email\n"
                     "      offer: {type: amount_off, value: 5}\n      template: t\n")
    manifest = json.loads((folder / "run.json").read_text())
    manifest["rules"] = {"source": str(rules), "sha256": "0" * 64}
    manifest["counts"]["actions"]["price_coupon"] = 1
    manifest["counts"]["holdout"] = {"logistics_express": 1, "price_coupon": 0}
    manifest["counts"]["offer_cost"] = {"logistics_express": 7.5, "price_coupon": 0.0}
    export.write_json(manifest, folder / "run.json")
    text = _text(render(load_run(folder), Config()))
    assert re.search(r"logistics_express 2 1 1 1 percent_off 10 8 USD ≤ 300 recipients; ≤ 1,250 USD", text), \
        text[text.find("matched"):][:400]
    assert re.search(r"price_coupon 1 0 0 0 — 0 USD no budget", text)
    assert "budgets per run from the rules file rules.yaml (changed since this run" in text
    assert str(tmp_path) not in text  # the file's name only, no machine path
    # the rules file gone: budgets unknown, said so
    rules.unlink()
    text = _text(render(load_run(folder), Config()))
    assert "the rules file rules.yaml could not be read: budgets not shown" in text
    assert re.search(r"logistics_express 2 1 1 1 percent_off 10 8 USD —", text)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "no such run folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "missing or unreadable run manifest"),
    (lambda p: _write_run(p / "r", "2026-04-30").joinpath("scores.csv").unlink() or p / "r",
     "missing or unreadable scores"),
])
def test_cli_report_bad_folder_is_one_line_exit_2(tmp_path, make, message):
    folder = make(tmp_path)
    result = runner.invoke(app, ["report", "--run", str(folder)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- the sample, end to end: score and run write the aggregates, run writes the page -----
@pytest.fixture(scope="module")
def nights(small_sample, trained_model, tmp_path_factory):
    """Two nightly runs on the small sample with the session's model (no retraining)."""
    tmp = tmp_path_factory.mktemp("report_nights")
    model = tmp / "model" / trained_model.name  # a copy: a retrain must not touch the session's model
    shutil.copytree(trained_model.parent, model.parent)
    cfg = tmp / "c.yaml"
    cfg.write_text(f"output_dir: {tmp / 'out'}\nmodel: {{path: {model}}}\n"
                   f"inputs:\n  orders: [{small_sample / 'orders.csv'}]\n  events: {small_sample / 'events.csv'}\n"
                   f"  customers: {small_sample / 'customers.csv'}\n")
    for day in (SAMPLE_AS_OF, "2026-07-01"):
        result = runner.invoke(app, ["run", "--config", str(cfg), "--as-of", day])
        assert result.exit_code == 0, result.output
    return tmp / "out" / SAMPLE_AS_OF, tmp / "out" / "2026-07-01", small_sample


def test_run_writes_aggregates_and_the_report(nights):
    first, second, sample = nights
    manifest = json.loads((second / "run.json").read_text())
    listed = {o["path"] for o in manifest["outputs"]}
    for name in ("cohorts.csv", "monthly.csv", "segments.csv", "features.csv", "inputs.csv"):
        assert (second / "aggregates" / name).is_file() and f"aggregates/{name}" in listed
    page = (second / "report.html").read_text()
    text = _text(page)
    counts = manifest["counts"]
    assert f"{counts['customers_scored']:,} customers scored" in text
    for tier in ("high", "medium", "low"):
        assert f"{counts['risk_tiers'][tier]:,} {tier} risk" in text
    assert f"{counts['rows_rejected']:,} rows rejected" in text
    assert f"{sum(counts['recipients'].values()):,} contacts in campaigns" in text
    assert manifest["model"]["version"] in text and "(same as previous run)" in text
    assert "previous run 2026-06-30" in text
    assert "Groups with the highest churn" in text and "no group is large enough" not in text
    for fig in ("rfm", "risk", "cohorts", "repeat", "causes", "importance", "by-country", "by-channel",
                "by-category", "by-lifecycle_stage", "by-delivery_band", "validation", "campaigns", "rejects"):
        assert f'data-figure="{fig}"' in page, fig
    # The monthly aggregate's buyers equal the customers scored with an order that month.
    monthly = pd.read_csv(second / "aggregates" / "monthly.csv")
    cohorts = pd.read_csv(second / "aggregates" / "cohorts.csv")
    assert cohorts.loc[cohorts["months_since"] == 0, "customers"].sum() == monthly["new_buyers"].sum()
    assert monthly["new_buyers"].sum() == counts["customers_scored"]
    # No email, name or customer id on the page or in the aggregates.
    customers = pd.read_csv(sample / "customers.csv", dtype=str, keep_default_na=False)
    emails = set(customers["email"].str.lower()) - {""}
    ids = set(pd.read_csv(second / "scores.csv", dtype=str)["customer_id"])
    blobs = [page.lower()] + [p.read_text().lower() for p in (second / "aggregates").iterdir()]
    assert not [e for e in emails for b in blobs if e in b]
    tokens = set(re.findall(r"[A-Za-z0-9-]+", _text(page))) | {
        t for p in (second / "aggregates").iterdir() for t in re.findall(r"[A-Za-z0-9-]+", p.read_text())}
    assert not ids & tokens
    assert (first / "report.html").is_file()


def test_score_writes_the_aggregates(nights, trained_model, tmp_path):
    _, _, sample = nights
    out = tmp_path / "scored"
    result = runner.invoke(app, ["score", "--orders", str(sample / "orders.csv"), "--events",
                                 str(sample / "events.csv"), "--as-of", SAMPLE_AS_OF, "--model", str(trained_model),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "report.html").exists()  # score leaves the page to `report`
    manifest = json.loads((out / "run.json").read_text())
    for name in ("cohorts.csv", "monthly.csv", "segments.csv", "features.csv", "inputs.csv"):
        assert (out / "aggregates" / name).is_file()
    segments = pd.read_csv(out / "aggregates" / "segments.csv")
    assert segments["customers"].sum() == manifest["counts"]["customers_scored"]
    assert segments["high"].sum() == manifest["counts"]["risk_tiers"]["high"]
    assert set(segments["lifecycle_stage"]) <= {"new", "repeat", "loyal"}
    assert pd.read_csv(out / "aggregates" / "features.csv")["importance"].sum() == pytest.approx(1, abs=1e-4)


def test_order_tables_from_shared_customer_codes_equal_their_own():
    orders = pd.concat([_orders(), pd.DataFrame({"customer_id": ["c4", None], "order_date": pd.to_datetime(
        ["2026-02-03", "2026-02-04"]), "status": ["cancelled", "completed"], "amount": [5.0, 6.0],
        "category": ["pet", "pet"]})], ignore_index=True)  # c4: no purchase; a row without a customer
    shared = aggregates.from_orders(orders, AS_OF, codes=export.customer_codes(orders))
    own = aggregates.from_orders(orders, AS_OF)
    for name in ("cohorts", "monthly", "inputs"):
        pd.testing.assert_frame_equal(getattr(shared, name), getattr(own, name))
    assert shared.category.to_dict() == own.category.to_dict() == {"c1": "books", "c2": "pet", "c3": "pet"}
