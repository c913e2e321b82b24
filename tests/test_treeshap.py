"""The compiled exact TreeSHAP kernel: known answers, equality with xgboost, the fallback.

Tolerance: xgboost computes each tree's SHAP values in float32 and adds them up over the trees
in float32 (about 6e-8 relative error per operation, growing with the number of trees); the
kernel works in float64 from the same float32 thresholds, covers and leaf values.  On these
models the two agree to about 1e-6; ``ATOL``/``RTOL`` of 1e-5 leave room for float32 rounding
and still catch any real error (a wrong cover ratio or a wrong branch moves values by 1e-2 or
more).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churnctl import ingest, model, treeshap
from churnctl.config import Config

ATOL = 1e-5
RTOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def tree(left, right, feature, threshold, default_left, cover, leaf_value=None):
    """One tree in xgboost's JSON layout; leaves carry their value in ``split_conditions``."""
    n = len(left)
    cond = [leaf_value[i] if left[i] < 0 else threshold[i] for i in range(n)] if leaf_value else threshold
    return {
        "left_children": left, "right_children": right, "split_indices": feature,
        "split_conditions": cond, "default_left": default_left, "sum_hessian": cover,
        "split_type": [0] * n, "tree_param": {"num_nodes": str(n), "size_leaf_vector": "1"},
    }


def booster_json(trees, base_score=0.5, n_features=2, objective="binary:logistic", num_class=0):
    return {"learner": {
        "learner_model_param": {"base_score": f"[{base_score}]", "num_class": str(num_class),
                                "num_feature": str(n_features), "num_target": "1"},
        "objective": {"name": objective},
        "gradient_booster": {"name": "gbtree", "model": {"trees": trees}},
    }}


#: Root: x0 < 0.5 (cover 10) -> leaf 1.0 (cover 4) | x1 < 2 (cover 6, missing goes right)
#: -> leaf 2.0 (cover 3) | leaf -1.0 (cover 3).
HAND_TREE = tree(
    left=[1, -1, 3, -1, -1], right=[2, -1, 4, -1, -1], feature=[0, 0, 1, 0, 0],
    threshold=[0.5, 0, 2.0, 0, 0], default_left=[1, 0, 0, 0, 0], cover=[10, 4, 6, 3, 3],
    leaf_value=[0, 1.0, 0, 2.0, -1.0],
)


def test_known_answer_on_a_hand_computed_tree():
    # E[f] = 0.4 * 1 + 0.6 * (0.5 * 2 - 0.5 * 1) = 0.7.  For x = (1, 5) (right, right: -1):
    # v({0}) = 0.5, v({1}) = 0.4 - 0.6 = -0.2, v({0, 1}) = -1, so
    # phi0 = (0.5 - 0.7) / 2 + (-1 + 0.2) / 2 = -0.5 and phi1 = (-0.2 - 0.7) / 2 + (-1 - 0.5) / 2 = -1.2.
    # For x = (0, NaN) (left leaf, 1.0; NaN follows the default branch, right):
    # v({0}) = 1, v({1}) = -0.2, v({0, 1}) = 1: phi0 = 0.15 + 0.6 = 0.75, phi1 = -0.45 + 0 = -0.45.
    # base_score 0.2 under binary:logistic adds logit(0.2) to the bias.
    forest = treeshap.forest_from_json(booster_json([HAND_TREE], base_score=0.2))
    got = treeshap.contributions(forest, np.array([[1.0, 5.0], [0.0, np.nan]]))
    base = np.log(0.2 / 0.8)
    expected = np.array([[-0.5, -1.2, 0.7 + base], [0.75, -0.45, 0.7 + base]])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_split_comparison_is_float32_strict_less_than():
    forest = treeshap.forest_from_json(booster_json([HAND_TREE]))
    # Exactly at the threshold goes right; a float64 just below 0.5 that rounds to 0.5 in
    # float32 goes right too, as in xgboost.
    at = treeshap.contributions(forest, np.array([[0.5, 5.0], [0.5 - 1e-12, 5.0]]))
    np.testing.assert_allclose(at[0], at[1])
    np.testing.assert_allclose(at[0], [-0.5, -1.2, 0.7], atol=1e-6)


def test_feature_repeated_on_a_path_merges_like_treeshap():
    # x0 < 0.5 then x0 < 0.2 on the left: one unique feature whose zero fraction is the
    # product 0.4 * 0.5.  With one feature, phi0 = f(x) - E[f].
    t = tree(left=[1, 3, -1, -1, -1], right=[2, 4, -1, -1, -1], feature=[0, 0, 0, 0, 0],
             threshold=[0.5, 0.2, 0, 0, 0], default_left=[0] * 5, cover=[10, 4, 6, 2, 2],
             leaf_value=[0, 0, 3.0, 1.0, -1.0])
    forest = treeshap.forest_from_json(booster_json([t], n_features=1))
    mean = 0.6 * 3.0 + 0.2 * 1.0 + 0.2 * -1.0
    got = treeshap.contributions(forest, np.array([[0.1], [0.3], [0.9]]))
    np.testing.assert_allclose(got[:, 0], np.array([1.0, -1.0, 3.0]) - mean, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], mean, atol=1e-9)


def random_data(n, n_features, seed, nan_share=0.1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 2)  # ties at thresholds
    y = (x[:, 0] + x[:, 1] * x[:, 2 % n_features] + rng.normal(size=n) > 0).astype(int)
    x[rng.random(x.shape) < nan_share] = np.nan
    return x, y


def assert_like_xgboost(booster, x):
    dm = xgb.DMatrix(x, missing=np.nan)
    got = treeshap.contributions(treeshap.forest(booster), x)
    ref = booster.predict(dm, pred_contribs=True).astype(np.float64)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    margin = booster.predict(dm, output_margin=True).astype(np.float64)
    np.testing.assert_allclose(got.sum(axis=1), margin, rtol=RTOL, atol=ATOL)
    return got


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6, 7, 8])
def test_equal_to_xgboost_pred_contribs_at_each_depth(depth):
    x, y = random_data(400, 5, seed=depth)
    booster = xgb.train({"max_depth": depth, "objective": "binary:logistic", "base_score": 0.3,
                         "eta": 0.3, "nthread": 1, "seed": 0}, xgb.DMatrix(x, y, missing=np.nan), 15)
    got = assert_like_xgboost(booster, x)
    assert np.abs(got[:, :-1]).max() > 0.1  # a real model, not all-zero contributions


def test_repeated_features_and_missing_values_both_ways():
    # Two features and depth 6: every path splits on a feature several times.  Missing values
    # in training make xgboost learn default directions both ways.
    x, y = random_data(600, 2, seed=3, nan_share=0.25)
    booster = xgb.train({"max_depth": 6, "objective": "binary:logistic", "eta": 0.5, "nthread": 1},
                        xgb.DMatrix(x, y, missing=np.nan), 10)
    dump = booster.trees_to_dataframe()
    internal = dump[dump["Feature"] != "Leaf"]
    assert (internal["Missing"] == internal["Yes"]).any() and (internal["Missing"] == internal["No"]).any()
    assert internal.groupby("Tree")["Feature"].size().max() > 2  # more splits than features
    probe = np.array([[np.nan, np.nan], [np.nan, 1.0], [0.0, np.nan], [5.0, -5.0]], dtype=np.float32)
    assert_like_xgboost(booster, np.vstack([x, probe]))


def test_single_leaf_trees_and_other_objective():
    x, y = random_data(300, 4, seed=5)
    dtrain = xgb.DMatrix(x, y.astype(float), missing=np.nan)
    params = {"max_depth": 3, "objective": "reg:squarederror", "base_score": 0.25, "nthread": 1}
    booster = xgb.train(params, dtrain, 5)
    booster = xgb.train({**params, "gamma": 1e9}, dtrain, 3, xgb_model=booster)  # no split pays: one leaf
    dump = booster.trees_to_dataframe()
    assert (dump.groupby("Tree").size() == 1).sum() == 3
    assert_like_xgboost(booster, x)


def test_model_trained_on_the_bundled_sample_and_the_fallback(monkeypatch, caplog):
    cfg = Config()
    orders = ingest.load_orders([SAMPLE / "orders.csv"], cfg.ingest).frame
    as_of = pd.Timestamp("2026-06-30")
    fitted = model.train(orders, as_of, cfg)
    frame = model.scoring_features(orders, as_of, cfg)
    x = frame[fitted.features].to_numpy(dtype=np.float64, na_value=np.nan)
    assert np.isnan(x).any()
    booster = fitted.estimator.get_booster()
    ref = booster.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True).astype(np.float64)

    got = fitted.contributions(frame)
    assert list(got.columns) == [*fitted.features, "bias"]
    np.testing.assert_allclose(got.to_numpy(), ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got.sum(axis=1).to_numpy(), fitted.raw_margin(frame), rtol=RTOL, atol=ATOL)

    # A model the kernel refuses (here: tables over the budget) goes to xgboost, said once.
    monkeypatch.setattr(treeshap, "MAX_TABLE_ENTRIES", 0)
    monkeypatch.setattr(treeshap, "_FORESTS", type(treeshap._FORESTS)())
    with caplog.at_level(logging.INFO, logger="churnctl"):
        fallback = fitted.contributions(frame)
    assert "computed by xgboost" in caplog.text and "lookup tables over 0 values" in caplog.text
    np.testing.assert_array_equal(fallback.to_numpy(), ref)


def test_unsupported_models_are_refused_with_the_reason():
    x, y = random_data(300, 3, seed=9)
    three = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
                      xgb.DMatrix(x, np.arange(300) % 3), 2)
    with pytest.raises(treeshap.Unsupported, match="several outputs"):
        treeshap.forest(three)
    assert treeshap.booster_contributions(three, x) is None

    cat = pd.DataFrame({"c": pd.Categorical(np.arange(300) % 4), "v": x[:, 0]})
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(cat, y, enable_categorical=True), 3)
    with pytest.raises(treeshap.Unsupported, match="categorical"):
        treeshap.forest(booster)

    poisson = xgb.train({"objective": "count:poisson", "max_depth": 2, "nthread": 1}, xgb.DMatrix(x, y), 2)
    with pytest.raises(treeshap.Unsupported, match="objective count:poisson"):
        treeshap.forest(poisson)


def test_the_api_does_not_import_numba():
    code = "import sys, churnctl.api, churnctl.cli; assert 'numba' not in sys.modules, 'numba imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("height", [0, 1, 2, 3])
def test_every_frontier_height_gives_the_same_values(height, monkeypatch):
    # Height 0 adds leaf tables one by one; larger heights merge subtrees first.  A tight table
    # budget makes the builder fall back to lower heights the same way.
    x, y = random_data(300, 4, seed=11)
    booster = xgb.train({"max_depth": 5, "objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(x, y, missing=np.nan), 6)
    monkeypatch.setattr(treeshap, "FRONTIER_HEIGHT", height)
    forest = treeshap.forest_from_json(json.loads(bytes(booster.save_raw("json"))))
    assert forest.sub_count.max() <= 2 ** height - 1
    ref = booster.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True)
    np.testing.assert_allclose(treeshap.contributions(forest, x), ref, rtol=RTOL, atol=ATOL)
    if height == 3:
        leaf_only = forest_size(booster, 0)
        monkeypatch.setattr(treeshap, "MAX_TABLE_ENTRIES", leaf_only)
        tight = treeshap.forest_from_json(json.loads(bytes(booster.save_raw("json"))))
        assert tight.fr_table.size <= leaf_only < forest.fr_table.size
        np.testing.assert_allclose(treeshap.contributions(tight, x), ref, rtol=RTOL, atol=ATOL)


def forest_size(booster, height):
    import churnctl.treeshap as ts

    saved = ts.FRONTIER_HEIGHT
    ts.FRONTIER_HEIGHT = height
    try:
        return ts.forest_from_json(json.loads(bytes(booster.save_raw("json")))).fr_table.size
    finally:
        ts.FRONTIER_HEIGHT = saved
