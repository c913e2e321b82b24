"""The Dask engine: same features and scores as the pandas engine, on a 2-worker LocalCluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import api, distributed, features, model, scoring
from churnctl.cli import app
from churnctl.config import Config

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

AS_OF = "2026-06-30"
TS = pd.Timestamp(AS_OF)


@pytest.fixture
def local_client():
    """The engine's cached client on a 2-worker, 1-thread LocalCluster (in-process workers:
    the same pickling of partitions and model, without starting processes)."""
    return distributed.client(None, n_workers=2, processes=False)


@pytest.fixture(scope="module")
def inputs(small_sample):
    return api.load_inputs([small_sample / "orders.csv"], events=small_sample / "events.csv", config=Config())


def _pandas_features(inputs, cfg):
    """The pandas engine's scoring features (features.build plus BG/NBD when model adds them)."""
    if hasattr(model, "scoring_features"):
        return model.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    return features.build(inputs.orders, TS, events=inputs.events, config=cfg.features)


@pytest.fixture(scope="module", autouse=True)
def _close_cluster():
    yield
    distributed.shutdown()


# --- partitioning -----------------------------------------------------------------------------
def test_split_by_customer_keeps_whole_customers_and_row_order():
    frame = pd.DataFrame({
        "customer_id": ["a", "b", "a", "c", "b", "007", "7", "a"],
        "row": np.arange(8),
    })
    parts = distributed.split_by_customer(frame, 3)
    assert len(parts) == 3
    seen = [set(p["customer_id"]) for p in parts]
    for i in range(3):  # every customer lives in exactly one partition
        for j in range(i + 1, 3):
            assert not seen[i] & seen[j]
    for p in parts:  # rows keep their relative order inside a partition
        assert list(p["row"]) == sorted(p["row"])
    assert sorted(pd.concat(parts)["row"]) == list(range(8))


def test_partition_of_an_id_is_the_same_in_every_frame():
    orders = pd.Series(["C1", "C2", "C3", "C2", "amz-Ab12"])
    events = pd.Series(["amz-Ab12", "C3", "C9", "C1"])
    po = dict(zip(orders, distributed.partition_codes(orders, 4)))
    pe = dict(zip(events, distributed.partition_codes(events, 4)))
    for cid in set(po) & set(pe):
        assert po[cid] == pe[cid]
    assert all(0 <= v < 4 for v in [*po.values(), *pe.values()])


def test_m_scores_known_answer():
    monetary = pd.Series([10.0, 20.0, 20.0, 30.0, 40.0])
    # customers strictly lower: 0, 1, 1, 3, 4 of 5 -> 1 + floor(5 * lower / 5)
    assert list(distributed.m_scores(monetary)) == [1, 2, 2, 4, 5]


def test_n_partitions():
    assert distributed.n_partitions(10, 2) == 2
    assert distributed.n_partitions(1_000_000, 2) == 4


def test_unknown_engine_and_scheduler_without_dask_are_config_errors():
    from churnctl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        distributed.check_engine("spark")
    with pytest.raises(ConfigError, match="--scheduler needs --engine dask"):
        distributed.engine("pandas", "tcp://127.0.0.1:8786")


# --- same results as the pandas engine ----------------------------------------------------------
def test_features_equal_pandas_engine(local_client, inputs):
    cfg = Config()
    eng = distributed.DaskEngine()
    got = eng.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    want = _pandas_features(inputs, cfg)
    pd.testing.assert_frame_equal(got, want)
    # The population-level column really is redone globally: one partition alone differs.
    part = distributed.split_by_customer(inputs.orders, 2)[0]
    alone = features.build(part, TS, config=cfg.features)
    assert not alone["m_score"].equals(want["m_score"].reindex(alone.index))


def test_scores_equal_pandas_engine_within_1e6(local_client, inputs, trained_model):
    cfg = Config()
    fitted = model.load(trained_model)
    eng = distributed.DaskEngine()
    feats = eng.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    got = eng.score(feats, fitted, cfg)
    want = scoring.score(_pandas_features(inputs, cfg), fitted, cfg)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6, rtol=0)
    # value_tier is population-level: scoring one partition alone gives other tiers.
    half = feats.iloc[: len(feats) // 2]
    assert not scoring.score(half, fitted, cfg)["value_tier"].equals(want["value_tier"].iloc[: len(half)])
    # Scoring a frame the engine did not build (scattered afresh) gives the same too.
    again = distributed.score(feats, fitted, cfg)
    pd.testing.assert_frame_equal(again, want, check_exact=False, atol=1e-6, rtol=0)


def test_train_on_dask_gives_a_usable_calibrated_model(local_client, inputs, tmp_path):
    cfg = Config()
    fitted = distributed.train(inputs.orders, TS, cfg, events=inputs.events)
    ref = model.build_training_set(inputs.orders, TS, cfg, events=inputs.events)
    m = fitted.meta["metrics"]
    valid = ref["snapshot"] == ref["snapshot"].max()
    assert m["train_rows"] == int((~valid).sum()) and m["valid_rows"] == int(valid.sum())
    assert fitted.features == features.model_columns(ref)
    assert fitted.meta["engine"]["name"] == "dask" and fitted.meta["engine"]["workers"] == 2
    assert m["model"]["roc_auc"] > m["recency_baseline"]["roc_auc"] - 0.05
    assert m["model"]["roc_auc"] > 0.75
    # The artifact round-trips and the pandas engine scores it like the Dask engine does.
    model.save(fitted, tmp_path / "m.joblib")
    loaded = model.load(tmp_path / "m.joblib")
    feats = _pandas_features(inputs, cfg)
    want = scoring.score(feats, loaded, cfg)
    got = distributed.DaskEngine().score(feats, loaded, cfg)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6, rtol=0)


# --- CLI ------------------------------------------------------------------------------------------
def _score(sample, model_path, out, *extra):
    return CliRunner().invoke(app, [
        "score", "--orders", str(sample / "orders.csv"), "--events", str(sample / "events.csv"),
        "--customers", str(sample / "customers.csv"), "--as-of", AS_OF, "--model", str(model_path),
        "--out", str(out), *extra,
    ])


def test_cli_score_engine_dask_writes_the_same_scores(local_client, small_sample, trained_model, tmp_path):
    pandas_run = _score(small_sample, trained_model, tmp_path / "p")
    dask_run = _score(small_sample, trained_model, tmp_path / "d", "--engine", "dask", "--format", "parquet")
    assert pandas_run.exit_code == 0, pandas_run.output
    assert dask_run.exit_code == 0, dask_run.output
    want = pd.read_csv(tmp_path / "p" / "scores.csv", dtype={"customer_id": str})
    got = pd.read_parquet(tmp_path / "d" / "scores.parquet")
    assert not (tmp_path / "d" / "scores.csv").exists()
    assert list(got.columns) == list(want.columns)
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    assert np.abs(got["churn_probability"].to_numpy() - want["churn_probability"].to_numpy()).max() <= 1e-6
    for col in ("risk_tier", "value_tier", "top_cause", "rfm_segment"):
        assert got[col].tolist() == want[col].tolist(), col
    # Campaign files are identical: the rules saw the same scores.
    for f in sorted((tmp_path / "p" / "campaigns").glob("*.csv")):
        assert f.read_bytes() == (tmp_path / "d" / "campaigns" / f.name).read_bytes(), f.name
    import json

    manifest = json.loads((tmp_path / "d" / "run.json").read_text())
    assert manifest["outputs"][0]["path"] == "scores.parquet"


def test_cli_features_and_train_accept_an_existing_scheduler(small_sample, tmp_path):
    from distributed import LocalCluster

    distributed.shutdown()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        feats = CliRunner().invoke(app, [
            "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
            "--out", str(tmp_path / "f.parquet"), "--engine", "dask", "--scheduler", address,
        ])
        assert feats.exit_code == 0, feats.output
        got = pd.read_parquet(tmp_path / "f.parquet").set_index("customer_id")
        orders = api.load_inputs([small_sample / "orders.csv"], config=Config()).orders
        want = features.build(orders, TS)
        pd.testing.assert_frame_equal(got, want, check_index_type=False, check_column_type=False,
                                      check_dtype=False)
        distributed.shutdown()


def test_cli_unreachable_scheduler_is_one_line_exit_2(small_sample, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", "1s")
    result = CliRunner().invoke(app, [
        "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
        "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
    ])
    assert result.exit_code == 2, result.output
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_cli_scheduler_needs_engine_dask(small_sample):
    result = CliRunner().invoke(app, [
        "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
        "--scheduler", "tcp://127.0.0.1:9",
    ])
    assert result.exit_code == 2
    assert "--scheduler needs --engine dask" in result.output
