"""The nightly job on the committed sample, end to end, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
AS_OF = "2026-06-30"


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """Run `churnctl run` on the committed sample with outputs in a temporary folder."""
    tmp = tmp_path_factory.mktemp("nightly")
    cfg = tmp / "churnctl.yaml"
    cfg.write_text(
        f"output_dir: out\nrules: {ROOT / 'configs' / 'rules.yaml'}\n"
        f"inputs:\n  orders: [{SAMPLE / 'orders.csv'}]\n  events: {SAMPLE / 'events.csv'}\n"
        f"  customers: {SAMPLE / 'customers.csv'}\nmodel: {{path: models/churn_model.joblib}}\n"
    )
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    return tmp, tmp / "out" / AS_OF, result.output


def test_sample_is_committed_and_small():
    sizes = {p.name: p.stat().st_size for p in SAMPLE.glob("*.csv")}
    assert {"orders.csv", "events.csv", "customers.csv"} <= set(sizes)
    assert sum(sizes.values()) < 5 * 1024 * 1024


def test_model_beats_recency_baseline_on_held_out_snapshot(nightly):
    tmp, _, _ = nightly
    metrics = json.loads((tmp / "models" / "metrics.json").read_text())
    model, baseline = metrics["model"], metrics["recency_baseline"]
    assert model["roc_auc"] > baseline["roc_auc"] + 0.02, metrics
    assert model["pr_auc"] > baseline["pr_auc"], metrics
    assert model["brier"] < 0.2


def test_outputs_are_complete_and_accounted_for(nightly):
    _, out, _ = nightly
    manifest = json.loads((out / "run.json").read_text())
    orders_file = next(f for f in manifest["inputs"] if f["kind"] == "orders")
    raw_rows = len(pd.read_csv(SAMPLE / "orders.csv", dtype=str, keep_default_na=False))
    assert orders_file["read"] == raw_rows
    assert orders_file["read"] == orders_file["accepted"] + orders_file["rejected"] + orders_file["collapsed"]
    assert orders_file["rejected"] > 0 and orders_file["collapsed"] > 0
    rejects = pd.read_csv(out / "rejects.csv")
    assert len(rejects) == sum(f["rejected"] for f in manifest["inputs"])

    scores = pd.read_csv(out / "scores.csv", dtype={"customer_id": str})
    assert manifest["counts"]["customers_scored"] == len(scores)
    assert set(scores["risk_tier"]) == {"high", "medium", "low"}
    assert scores["reasons"].fillna("").str.len().gt(0).mean() > 0.5
    # Every campaign file listed exists with the listed row count, and some are non-empty.
    files = [o for o in manifest["outputs"] if o["path"].startswith("campaigns/")]
    assert files
    for o in files:
        assert len(pd.read_csv(out / o["path"])) == o["rows"]
    assert sum(o["rows"] for o in files) > 100


def test_campaign_recipients_respect_consent(nightly):
    _, out, _ = nightly
    customers = pd.read_csv(SAMPLE / "customers.csv", dtype=str, keep_default_na=False)
    consent = customers.set_index("customer_id")["marketing_consent"].str.lower()
    unsub = customers.set_index("customer_id")["unsubscribed"].str.lower()
    manifest = json.loads((out / "run.json").read_text())
    marketing = [o for o in manifest["outputs"]
                 if o["path"].startswith("campaigns/") and o["channel"] != "account_manager"]
    assert {o["channel"] for o in marketing} >= {"email", "ads_audience"}
    checked = 0
    for o in marketing:
        ids = pd.read_csv(out / o["path"], dtype=str, keep_default_na=False)["customer_id"]
        assert (consent.reindex(ids) == "true").all(), o["path"]
        assert (unsub.reindex(ids) != "true").all(), o["path"]
        checked += len(ids)
    assert checked > 100
    excluded = manifest["counts"]["excluded"]
    assert excluded.get("no_consent", 0) > 0


def test_manifest_records_the_budgets_in_force(nightly):
    _, out, _ = nightly
    from churnctl import rules

    budgets = json.loads((out / "run.json").read_text())["counts"]["budgets"]
    settings = rules.load(ROOT / "configs" / "rules.yaml").settings
    assert set(budgets) == set(settings)
    limited = {k: v for k, v in budgets.items() if v}
    assert limited, budgets
    for name, budget in limited.items():
        assert budget.get("max_offer_cost") == settings[name].max_offer_cost
        assert budget.get("max_recipients") == settings[name].max_recipients


def test_no_personal_data_outside_campaign_files(nightly):
    tmp, out, log = nightly
    customers = pd.read_csv(SAMPLE / "customers.csv", dtype=str, keep_default_na=False)
    emails = set(customers["email"].str.lower()) - {""}
    leaks = []
    for path in [out / "scores.csv", out / "rejects.csv", out / "run.json",
                 *(tmp / "models").iterdir()]:
        text = path.read_bytes().decode("utf-8", "replace").lower()
        leaks += [(path.name, e) for e in emails if e in text]
    assert not [e for e in emails if e in log.lower()]
    assert not leaks, leaks[:3]


def test_rerun_same_day_gives_identical_scores(nightly):
    tmp, out, _ = nightly
    before = (out / "scores.csv").read_bytes()
    result = CliRunner().invoke(app, ["run", "--config", str(tmp / "churnctl.yaml"), "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert (out / "scores.csv").read_bytes() == before
    for path in (out / "campaigns").glob("*.csv"):
        assert path.read_bytes()  # still whole files


def test_parquet_scores_and_features_hold_the_same_values_as_csv(nightly, tmp_path):
    """`score --format parquet` and `features --out x.parquet` on the pandas engine: same rows and
    values as the CSV run, ids still text."""
    tmp, out, _ = nightly
    model = tmp / "models" / "churn_model.joblib"
    args = ["score", "--orders", str(SAMPLE / "orders.csv"), "--events", str(SAMPLE / "events.csv"),
            "--customers", str(SAMPLE / "customers.csv"), "--as-of", AS_OF, "--model", str(model),
            "--rules", str(ROOT / "configs" / "rules.yaml"), "--out", str(tmp_path / "pq"), "--format", "parquet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pq" / "run.json").read_text())
    assert manifest["outputs"][0]["path"] == "scores.parquet" and not (tmp_path / "pq" / "scores.csv").exists()
    got = pd.read_parquet(tmp_path / "pq" / "scores.parquet")
    want = pd.read_csv(out / "scores.csv", dtype={"customer_id": str})
    assert manifest["outputs"][0]["rows"] == len(got) == len(want)
    assert list(got.columns) == list(want.columns)
    assert pd.api.types.is_string_dtype(got["customer_id"]) and got["customer_id"].tolist() == want["customer_id"].tolist()
    pd.testing.assert_series_equal(got["churn_probability"], want["churn_probability"], check_exact=False)
    assert got["risk_tier"].tolist() == want["risk_tier"].tolist()

    feats = CliRunner().invoke(app, ["features", "--orders", str(SAMPLE / "orders.csv"), "--events",
                                     str(SAMPLE / "events.csv"), "--as-of", AS_OF, "--out", str(tmp_path / "f.parquet")])
    assert feats.exit_code == 0, feats.output
    frame = pd.read_parquet(tmp_path / "f.parquet")
    assert pd.api.types.is_string_dtype(frame["customer_id"])
    assert set(want["customer_id"]) <= set(frame["customer_id"])
