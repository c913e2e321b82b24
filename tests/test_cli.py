"""Every command through Typer's CliRunner, with good and bad input: message and exit code."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl.cli import app

SAMPLE_AS_OF = "2026-06-30"

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert text in result.output, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("churnctl:")]
    assert len(lines) == 1, result.output


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("sample", "features", "train", "score", "run"):
        assert cmd in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("churnctl ")


def test_features_list_shows_family_for_every_feature():
    from churnctl import features

    result = invoke("features", "--list")
    assert result.exit_code == 0, result.output
    for name, feat in features.FEATURES.items():
        line = next(ln for ln in result.output.splitlines() if ln.split()[0] == name)
        assert line.split()[1] == feat.family


def test_features_needs_orders_or_list():
    assert_clean_error(invoke("features"), 2, "features needs --list")


def test_features_to_csv(small_sample, tmp_path):
    out = tmp_path / "f.csv"
    result = invoke("features", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF, "--out", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert frame["customer_id"].is_unique and len(frame) > 100
    assert {"recency_days", "frequency", "monetary_total", "rfm_segment"} <= set(frame.columns)
    assert "email" not in frame.columns and "first_name" not in frame.columns


def test_sample_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        result = invoke("sample", "--out", d, "--customers", 50, "--seed", 3, "--end-date", "2025-12-31")
        assert result.exit_code == 0, result.output
    for name in ("orders.csv", "events.csv", "customers.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_score_writes_scores_rejects_campaigns_and_manifest(small_sample, trained_model, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "score", "--orders", small_sample / "orders.csv", "--events", small_sample / "events.csv",
        "--customers", small_sample / "customers.csv", "--as-of", SAMPLE_AS_OF, "--model", trained_model,
        "--out", out,
    )
    assert result.exit_code == 0, result.output
    assert "scored" in result.output
    scores = pd.read_csv(out / "scores.csv", dtype={"customer_id": str})
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_tier"]) <= {"high", "medium", "low"}
    assert "email" not in scores.columns and "first_name" not in scores.columns
    rejects = pd.read_csv(out / "rejects.csv")
    assert len(rejects) > 0 and {"file", "line", "reason"} <= set(rejects.columns)
    campaigns = list((out / "campaigns").glob("*.csv"))
    assert campaigns and any(len(pd.read_csv(p)) > 0 for p in campaigns)
    manifest = json.loads((out / "run.json").read_text())
    for f in manifest["inputs"]:
        assert f["read"] == f["accepted"] + f["rejected"] + f["collapsed"]
        assert f["sha256"] == hashlib.sha256(Path(f["file"]).read_bytes()).hexdigest()
    listed = {o["path"] for o in manifest["outputs"]}
    assert "scores.csv" in listed and all((out / p).exists() for p in listed)
    # Ids keep their exact spelling from input to output.
    orders = pd.read_csv(small_sample / "orders.csv", dtype=str, keep_default_na=False)
    assert set(scores["customer_id"]) <= set(orders["customer_id"])


def test_score_missing_column(tmp_path, trained_model):
    bad = tmp_path / "orders.csv"
    bad.write_text("order_id,customer_id,amount\n1,c1,10\n")
    result = invoke("score", "--orders", bad, "--as-of", SAMPLE_AS_OF, "--model", trained_model,
                    "--out", tmp_path / "o")
    assert_clean_error(result, 2, f"{bad}: header matches no preset (pass --source); closest: "
                                  "canonical (missing 'order_date')")


def test_score_missing_model(small_sample, tmp_path):
    result = invoke("score", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", tmp_path / "nope.joblib", "--out", tmp_path / "o")
    assert_clean_error(result, 2, "churnctl train")
    assert not (tmp_path / "o").exists()


def test_score_tampered_model(small_sample, trained_model, tmp_path):
    copy = tmp_path / "m.joblib"
    shutil.copy(trained_model, copy)
    shutil.copy(str(trained_model) + ".json", str(copy) + ".json")
    with open(copy, "ab") as fh:
        fh.write(b"tampered")
    result = invoke("score", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", copy, "--out", tmp_path / "o")
    assert_clean_error(result, 2, "checksum")


def test_bad_dates_over_threshold_stop_with_code_2(tmp_path, trained_model):
    bad = tmp_path / "orders.csv"
    rows = ["order_id,customer_id,order_date,amount"] + [f"{i},c{i},not-a-date,10" for i in range(5)]
    rows += [f"{i + 5},c{i},2026-01-0{i + 1},10" for i in range(5)]
    bad.write_text("\n".join(rows) + "\n")
    out = tmp_path / "o"
    result = invoke("score", "--orders", bad, "--as-of", SAMPLE_AS_OF, "--model", trained_model, "--out", out)
    assert_clean_error(result, 2, str(bad))
    rejects = pd.read_csv(out / "rejects.csv")
    assert len(rejects) == 5 and set(rejects["reason"]) == {"unparsable date"}
    assert rejects["line"].tolist() == [2, 3, 4, 5, 6]


def test_unknown_currency_is_rejected_with_reason(small_sample, trained_model, tmp_path):
    orders = pd.read_csv(small_sample / "orders.csv", dtype=str, keep_default_na=False)
    orders.loc[orders.index[10], "currency"] = "ZZZ"
    path = tmp_path / "orders.csv"
    orders.to_csv(path, index=False)
    out = tmp_path / "o"
    result = invoke("score", "--orders", path, "--events", small_sample / "events.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", trained_model, "--out", out)
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    hit = rejects[rejects["line"] == "12"]
    assert hit["reason"].tolist() == ["unknown currency"]


def test_invalid_rules_fail_before_any_output(small_sample, trained_model, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: bad\n    when: {risk_teir: {in: [high]}}\n"
        "    action: {campaign: x, channel: email, offer: {type: none}, template: t}\n"
    )
    out = tmp_path / "o"
    result = invoke("score", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", trained_model, "--rules", rules, "--out", out)
    assert_clean_error(result, 2, "risk_teir")
    assert not out.exists()


def test_model_trained_with_events_refuses_data_without_them(small_sample, trained_model, tmp_path):
    result = invoke("score", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", trained_model, "--out", tmp_path / "o")
    assert_clean_error(result, 2, "retrain with `churnctl train`")


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("horizon_day: 90\n")
    assert_clean_error(invoke("run", "--config", cfg), 2, "did you mean 'horizon_days'")


def test_debug_shows_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("horizon_day: 90\n")
    result = runner.invoke(app, ["--debug", "run", "--config", str(cfg)])
    assert result.exit_code != 0
    assert result.exception is not None


def test_train_with_logistic(small_sample, tmp_path):
    path = tmp_path / "logit.joblib"
    result = invoke("train", "--orders", small_sample / "orders.csv", "--as-of", SAMPLE_AS_OF,
                    "--model", path, "--algo", "logistic")
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output
    meta = json.loads(Path(str(path) + ".json").read_text())
    assert meta["algo"] == "logistic"
    assert (tmp_path / "metrics.json").exists()


def test_run_trains_when_missing_then_reuses(small_sample, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"output_dir: out\ninputs:\n  orders: [{small_sample / 'orders.csv'}]\n"
        f"  events: {small_sample / 'events.csv'}\n  customers: {small_sample / 'customers.csv'}\n"
        "model: {path: models/m.joblib, max_age_days: 7}\n"
    )
    first = invoke("run", "--config", cfg, "--as-of", SAMPLE_AS_OF)
    assert first.exit_code == 0, first.output
    assert "training a new model" in first.output
    manifest = json.loads((tmp_path / "out" / SAMPLE_AS_OF / "run.json").read_text())
    assert manifest["model"]["trained_this_run"] is True
    second = invoke("run", "--config", cfg, "--as-of", "2026-07-03")
    assert second.exit_code == 0, second.output
    assert "training a new model" not in second.output
    manifest = json.loads((tmp_path / "out" / "2026-07-03" / "run.json").read_text())
    assert manifest["model"]["trained_this_run"] is False
    assert manifest["counts"]["orders_after_as_of"] == 0
