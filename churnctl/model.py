"""Churn labels, training snapshots, the fitted model, its calibration and its artifact.

A customer *churned* at date D when they placed no completed order in the ``horizon_days``
after D (``day_end(D) <= order_date < day_end(D) + horizon_days``).  Training rows come from
past snapshots ``D - h, D - h - step, ...`` whose label windows end on or before the as-of
date, so every label is fully observed.  The latest snapshot is held out (a split by time,
never at random): it measures the model against a recency-only baseline and fits the
probability calibrator.  The model itself is fitted on the older snapshots.

Class imbalance is not re-weighted: weights would distort the raw probabilities, and the
probabilities are what the risk tiers use.  Ranking quality does not need re-weighting and
the calibrator maps the margin to honest probabilities.

The artifact is a ``joblib`` file plus a ``<file>.json`` sidecar holding the metadata and the
file's sha256; :func:`load` verifies the checksum *before* unpickling, because unpickling
runs code.  The checksum guards against corruption and accidental edits, not against an
attacker who can rewrite both files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import platform
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from . import __version__
from . import btyd as _btyd
from . import features as _features
from .config import Config
from .errors import ConfigError, InputError, ModelError, TrainingError
from .schema import COMPLETED, as_of_timestamp, day_end

ALGOS = ("xgboost", "logistic")
CALIBRATIONS = ("isotonic", "sigmoid", "none")
#: Calibrated probabilities are kept inside [PROB_FLOOR, 1 - PROB_FLOOR]: a held-out
#: snapshot of a few thousand customers cannot support certainty.
PROB_FLOOR = 1e-4
#: Column of the recency-only baseline (equal to scores.csv ``days_since_last_order``).
RECENCY = "recency_days"
FORMAT = "churnctl-model-1"
#: BG/NBD outputs used as model features (registered in features.py with input "btyd").
BTYD_FEATURES = ("p_alive", "expected_orders_horizon", "p_no_order_horizon")
#: BG/NBD + Gamma-Gamma outputs carried to the scores (not model inputs).
BTYD_OUTPUTS = ("expected_days_to_next_order", "predicted_value_12m")

log = logging.getLogger("churnctl")
#: Boosters whose prediction thread count is set (see ``ChurnModel._booster``).
_THREADED: "weakref.WeakSet[Any]" = weakref.WeakSet()

# XGBoost's OpenMP threads sleep while they wait for each other instead of spinning: spinning
# threads on a 2-core machine shared with other work made a 2-thread fit 4x slower than one
# thread (measured at load average 8: 56 s against 13 s; sleeping: 10-13 s).  Set before
# XGBoost (loaded on first use in the fits below) starts its thread pool; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")



# --- labels and snapshots -----------------------------------------------------------------
def labels(orders: pd.DataFrame, customers: pd.Index, as_of: pd.Timestamp, horizon_days: int) -> pd.Series:
    """Return one bool per customer in ``customers``: True when the customer churned.

    Churned means no completed order with
    ``day_end(as_of) <= order_date < day_end(as_of) + horizon_days``: an order on day D itself
    is not in the window, an order on day ``D + horizon_days`` is.

    Parameters
    ----------
    orders : pd.DataFrame
        Orders frame (``customer_id``, ``order_date``, optional ``status``).
    customers : pd.Index
        Customers to label; the result is indexed by them, in the same order.
    as_of : pd.Timestamp
        The snapshot date D.
    horizon_days : int
        Length of the label window in days.

    Returns
    -------
    pd.Series
        Bool, index ``customer_id`` (= ``customers``), name ``churned``.
    """
    start = day_end(as_of)
    end = start + pd.Timedelta(days=int(horizon_days))
    when = orders["order_date"]
    bought = (when >= start) & (when < end)
    if "status" in orders.columns:
        bought &= orders["status"] == COMPLETED
    bought = bought.to_numpy(dtype=bool, na_value=False)
    buyers = pd.Index(pd.unique(orders["customer_id"][bought]))
    customers = pd.Index(customers, name="customer_id")
    churned = buyers.get_indexer_for(customers) < 0 if len(buyers) else np.ones(len(customers), dtype=bool)
    return pd.Series(churned, index=customers, name="churned")


def _snapshot_labels(history: _features.History, groups: _features.Groups, horizon_days: int) -> np.ndarray:
    """Return :func:`labels` of the customers of ``groups`` from the history, vectorised.

    The history's completed orders are sorted by (customer, day), so one ``searchsorted`` per
    customer finds the first purchase on or after the day after as_of.
    """
    done = history.done
    cust, day = history.cust[done], history.day[done]
    if cust.size == 0:
        return np.ones(groups.n, dtype=bool)
    lo_day = int(day.min())
    span = int(day.max()) - lo_day + 1
    key = cust * span + (day - lo_day)
    first = groups.as_of_day + 1  # day_end(as_of) is the start of the next day
    lo = np.clip(first - lo_day, 0, span)
    hi = np.clip(first + int(horizon_days) - lo_day, 0, span)
    base = groups.base_code * span
    at = np.searchsorted(key, base + lo, side="left")
    found = np.minimum(at, key.size - 1)
    return ~((at < key.size) & (key[found] < base + hi))


def add_btyd(
    frame: pd.DataFrame, orders: pd.DataFrame | None, as_of: pd.Timestamp, horizon_days: int,
    *, summary: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """Return ``frame`` with the BG/NBD columns added, and None; or ``frame`` unchanged and why not.

    BG/NBD and Gamma-Gamma (:mod:`churnctl.btyd`) are fitted on the completed orders on or
    before ``as_of`` of the whole customer base, then :data:`BTYD_FEATURES` and
    :data:`BTYD_OUTPUTS` are added for the customers of ``frame``.  A base too small or too
    irregular for the fit (``btyd`` raises TrainingError, e.g. below ~300 customers) is not
    an error: the frame comes back without the columns together with the reason, and the
    caller logs it (the model then trains without these features, and scoring falls back to
    the documented predicted value).  ``summary``: ``btyd.summary(orders, as_of)`` when the
    caller already has it (``orders`` is then not read).
    """
    pred, why = _btyd_predictions(orders, as_of, horizon_days, summary=summary)
    if pred is None:
        return frame, why
    return _with_btyd(frame, pred), None


def _btyd_predictions(orders: pd.DataFrame | None, as_of: pd.Timestamp, horizon_days: int, *,
                      summary: pd.DataFrame | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """Return (the BG/NBD predictions per customer, None), or (None, why the fit is impossible)."""
    as_of = as_of_timestamp(as_of)
    try:
        if summary is None:
            summary = _btyd.summary(orders, as_of)  # once for the fit and the predictions
        fitted = _btyd.fit(orders, as_of, precomputed=summary)
        return _btyd.predict(fitted, orders, as_of, horizon_days, precomputed=summary), None
    except (TrainingError, InputError) as exc:
        return None, str(exc)


def _with_btyd(frame: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    if not pred.index.equals(frame.index):
        pred = pred.reindex(frame.index)
    return frame.assign(**{c: pred[c].to_numpy(dtype=np.float64) for c in (*BTYD_FEATURES, *BTYD_OUTPUTS)})


def _purchase_summary(groups: _features.Groups) -> pd.DataFrame:
    """Return ``btyd.summary`` at the groups' as-of date from their completed orders."""
    return _btyd.purchase_summary(groups.ids, groups.c_code, groups.c_day, groups.c_amount, groups.as_of_day)


def scoring_features(
    orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *, events: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return the features at ``as_of`` for scoring: ``features.build`` plus the BG/NBD columns.

    When the BG/NBD fit is impossible (:func:`add_btyd`) one log line says why and the BG/NBD
    model features are NaN (the trees' learned default branch), so a model trained with them
    still scores; ``predicted_value_12m`` then falls back (``scoring.predicted_value``).
    """
    return history_features(_features.History(orders, events=events, config=config.features), as_of, config)


def history_features(history: _features.History, as_of: pd.Timestamp, config: Config) -> pd.DataFrame:
    """Return :func:`scoring_features` from a ``features.History`` of the orders (and events).

    With a detached history (``History.detach``) the caller may release the orders frame
    before this call: the features and the BG/NBD fit read only the history.
    """
    as_of = as_of_timestamp(as_of)
    groups = history.at(as_of)
    if groups.n == 0 or not config.model.btyd_features:
        return _features.frame(groups)
    # The BG/NBD fit (scipy over numpy arrays, mostly out of the GIL) runs on a second thread
    # while the features are computed; it reads only the groups' completed orders.
    with ThreadPoolExecutor(1) as pool:
        btyd = pool.submit(lambda: _btyd_predictions(None, as_of, config.horizon_days,
                                                     summary=_purchase_summary(groups)))
        frame = _features.frame(groups)
        pred, why = btyd.result()
    if why:
        log.info("features BG/NBD not available, its features are left empty (%s)", why)
        return frame.assign(**{c: np.nan for c in BTYD_FEATURES})
    return _with_btyd(frame, pred)


def snapshot_cutoffs(as_of: pd.Timestamp, horizon_days: int, n: int, step_days: int) -> list[pd.Timestamp]:
    """Return ``n`` snapshot dates, latest first: ``D - h, D - h - step, ...``.

    The label window of each ends on or before ``day_end(D)``, so labels are fully observed
    at the as-of date D.
    """
    latest = as_of_timestamp(as_of) - pd.Timedelta(days=int(horizon_days))
    return [latest - pd.Timedelta(days=int(step_days) * i) for i in range(int(n))]


def build_training_set(
    orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *, events: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return the training rows: one per customer and non-empty snapshot, oldest snapshot first.

    For each cutoff of :func:`snapshot_cutoffs` the features are built from the orders (and
    events) on or before the cutoff; the population is the customers with at least one
    completed order on or before it.  Snapshots with no such customer are dropped.

    Returns
    -------
    pd.DataFrame
        Index ``customer_id`` (repeated across snapshots); the features columns plus
        ``snapshot`` (Timestamp) and ``churned`` (bool).

    Raises
    ------
    TrainingError
        Fewer than two snapshots have customers.
    """
    as_of = as_of_timestamp(as_of)
    if config.model.snapshots < 2:
        raise ConfigError(
            f"model.snapshots is {config.model.snapshots}: need at least 2 (older ones to train, the latest to validate)"
        )
    if config.model.snapshot_step_days < 1:
        raise ConfigError(f"model.snapshot_step_days is {config.model.snapshot_step_days}: must be at least 1")
    cutoffs = snapshot_cutoffs(as_of, config.horizon_days, config.model.snapshots, config.model.snapshot_step_days)
    # Nothing after day D may leak in, whatever the caller passed: the history ends at D.  It
    # sorts the orders by customer and time once; each snapshot is a cut of it.
    history = _features.History(orders, events=events, config=config.features, until=as_of)
    frames = []
    btyd_failed: str | None = None
    for cutoff in reversed(cutoffs):
        groups = history.at(cutoff)  # orders and events before day_end(cutoff) only
        if groups.n == 0:
            continue
        feats = _features.frame(groups)
        if config.model.btyd_features:
            feats, why = add_btyd(feats, None, cutoff, config.horizon_days, summary=_purchase_summary(groups))
            if why:
                btyd_failed = btyd_failed or f"{cutoff.date()}: {why}"
        feats = feats.assign(snapshot=cutoff, churned=_snapshot_labels(history, groups, config.horizon_days))
        frames.append(feats)
    if len(frames) < 2:
        done = history.time[history.done]
        first = pd.Timestamp(done.min()) if done.size else None
        since = "no completed orders" if first is None else f"completed orders start on {first.date()}"
        raise TrainingError(
            f"only {len(frames)} of {len(cutoffs)} snapshots (every {config.model.snapshot_step_days} days back from "
            f"{cutoffs[0].date()} = as-of minus horizon_days {config.horizon_days}) have customers, and {since}; "
            "need at least 2: use more order history, a smaller horizon_days or a smaller model.snapshot_step_days"
        )
    if btyd_failed:
        # One feature set for every snapshot: without BG/NBD everywhere if it failed anywhere.
        log.info("train    BG/NBD features left out (%s)", btyd_failed)
        frames = [f.drop(columns=[c for c in (*BTYD_FEATURES, *BTYD_OUTPUTS) if c in f.columns]) for f in frames]
    out = pd.concat(frames)
    out.index.name = "customer_id"
    return out


# --- metrics ------------------------------------------------------------------------------
def _top_decile_lift(y: np.ndarray, score: np.ndarray) -> float:
    """Churn rate among the 10% highest scores over the overall rate; ties share the cut."""
    n = len(y)
    base = y.mean() if n else 0.0
    if n == 0 or base == 0:
        return float("nan")
    k = max(1, math.ceil(0.1 * n))
    threshold = np.sort(score)[::-1][k - 1]
    above = score > threshold
    tied = score == threshold
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float(positives / k / base)


def metrics(y_true: Any, p: Any, *, rank_score: Any | None = None) -> dict[str, float | int]:
    """Return the evaluation metrics of probabilities ``p`` against labels ``y_true``.

    Parameters
    ----------
    y_true : array-like of bool
        True = churned.
    p : array-like of float
        Predicted P(churn) in [0, 1]; used for ``brier`` and ``log_loss``.
    rank_score : array-like of float, optional
        Score used for the ranking metrics (``roc_auc``, ``pr_auc``, ``top_decile_lift``);
        defaults to ``p``.  Any monotone score works (a margin, recency in days).

    Returns
    -------
    dict
        ``roc_auc, pr_auc, brier, log_loss, top_decile_lift`` (float; NaN when undefined,
        e.g. a single class) and ``positives, n`` (int).
    """
    y = np.asarray(y_true, dtype=bool).astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    s = p if rank_score is None else np.asarray(rank_score, dtype=np.float64)
    both = 0 < y.sum() < len(y)
    nan = float("nan")
    return {
        "roc_auc": float(roc_auc_score(y, s)) if both else nan,
        "pr_auc": float(average_precision_score(y, s)) if both else nan,
        "brier": float(brier_score_loss(y, p)) if len(y) else nan,
        "log_loss": float(log_loss(y, np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR), labels=[0, 1])) if len(y) else nan,
        "top_decile_lift": _top_decile_lift(y, s),
        "positives": int(y.sum()),
        "n": int(len(y)),
    }


# --- calibration --------------------------------------------------------------------------
class Calibrator:
    """Map a raw margin (log-odds) to P(churn): isotonic, sigmoid (Platt) or none."""

    def __init__(self, method: str = "isotonic") -> None:
        self.method = method

    def fit(self, margin: np.ndarray, y: np.ndarray) -> "Calibrator":
        margin = np.asarray(margin, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
            self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif self.method == "sigmoid":
            if 0 < y.sum() < len(y):
                lr = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y.astype(int))
                self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
            else:  # one class only: a constant
                self.a_, self.b_ = 0.0, float(logit(np.clip(y.mean() if len(y) else 0.5, PROB_FLOOR, 1 - PROB_FLOOR)))
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(margin, self.x_, self.y_)
        elif self.method == "sigmoid":
            p = expit(self.a_ * margin + self.b_)
        else:
            p = expit(margin)
        return np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR)


def _folds(customer_ids: pd.Index) -> np.ndarray:
    """Return fold 0/1 per row from a stable hash of the customer id (same on every machine)."""
    hashed = pd.util.hash_array(np.asarray(customer_ids, dtype=object))
    return (hashed % np.uint64(2)).astype(np.int64)


def _cross_fit(method: str, margin: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Return out-of-fold calibrated probabilities: each fold calibrated on the other one."""
    out = np.empty(len(y), dtype=np.float64)
    for k in (0, 1):
        test = folds == k
        if not test.any():
            continue
        fit_on = ~test if (~test).any() else test  # a single fold: nothing to cross, fit in-sample
        out[test] = Calibrator(method).fit(margin[fit_on], y[fit_on]).predict(margin[test])
    return out


# --- the model ----------------------------------------------------------------------------
def _matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.loc[:, columns].to_numpy(dtype=np.float64, na_value=np.nan)


class ChurnModel:
    """A fitted churn model: estimator, calibrator, feature list and metadata.

    Attributes
    ----------
    algo : str
        ``xgboost`` or ``logistic``.
    features : list of str
        Model feature columns, in the order the estimator expects.
    meta : dict
        ``config_hash, as_of, horizon_days, snapshots, training_window, metrics, versions,
        created_at, model_version`` (``model_version`` and ``sha256`` are set by
        :func:`save` / :func:`load`).
    """

    def __init__(self, algo: str, estimator: Any, calibrator: Calibrator, features: list[str], meta: dict) -> None:
        self.algo = algo
        self.estimator = estimator
        self.calibrator = calibrator
        self.features = list(features)
        self.meta = meta

    def check_features(self, frame: pd.DataFrame) -> None:
        """Return None when ``frame`` has every model feature; raise ModelError naming the missing ones."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            names = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ModelError(
                f"model feature{'s' if len(missing) > 1 else ''} {names} missing from the features "
                "(the model was trained on other data or another churnctl version); retrain with `churnctl train`"
            )

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_features(frame)
        return _matrix(frame, self.features)

    def _booster(self) -> Any:
        booster = self.estimator.get_booster()
        if booster not in _THREADED:  # set once: a parameter change while another thread predicts is a race
            booster.set_param({"nthread": os.cpu_count() or 1})  # per-row predictions: thread count is harmless
            _THREADED.add(booster)
        return booster

    def _dmatrix(self, x: np.ndarray) -> Any:
        import xgboost

        return xgboost.DMatrix(x, missing=np.nan)

    def raw_margin(self, X: pd.DataFrame) -> np.ndarray:
        """Return the uncalibrated log-odds of churn, shape (n,)."""
        return self.raw_margin_of(self._x(X))

    def raw_margin_of(self, x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """Return :meth:`raw_margin` from the feature matrix ``x`` (columns ``self.features``).

        ``inplace``: xgboost predicts from the array itself (``inplace_predict``, the same
        margins without building a DMatrix first; used when scoring)."""
        if len(x) == 0:
            return np.zeros(0)
        if self.algo == "xgboost":
            booster = self._booster()
            if inplace:
                return booster.inplace_predict(x, predict_type="margin", missing=np.nan).astype(np.float64)
            return booster.predict(self._dmatrix(x), output_margin=True).astype(np.float64)
        return np.asarray(self.estimator.decision_function(x), dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Return the calibrated P(churn), shape (n,), inside [PROB_FLOOR, 1 - PROB_FLOOR]."""
        return self.calibrator.predict(self.raw_margin(X))

    def proba_of(self, x: np.ndarray) -> np.ndarray:
        """Return :meth:`predict_proba` from the feature matrix ``x`` (xgboost: ``inplace_predict``,
        equal margins); each row alone decides its value."""
        return self.calibrator.predict(self.raw_margin_of(x, inplace=True))

    def contributions(self, X: pd.DataFrame, *, approx: bool = False) -> pd.DataFrame:
        """Return each feature's additive share of the raw margin: one column per feature + ``bias``.

        Rows sum to :meth:`raw_margin` (within 1e-4).  xgboost: exact TreeSHAP values, from the
        compiled kernel of :mod:`churnctl.treeshap` (equal to xgboost's ``pred_contribs``, which
        computes them for models the kernel does not handle), or with ``approx=True`` the
        faster path attribution (Saabas), which also sums exactly.  logistic: coefficient x
        standardised value; ``bias`` is the intercept.

        Returns
        -------
        pd.DataFrame
            Index of ``X``; columns ``self.features + ["bias"]``; float64 log-odds.
        """
        values = self.contribution_values(self._x(X), approx=approx)
        return pd.DataFrame(values, index=X.index, columns=[*self.features, "bias"])

    def contribution_values(self, x: np.ndarray, *, approx: bool = False) -> np.ndarray:
        """Return :meth:`contributions` as an array from the feature matrix ``x`` (columns
        ``self.features``): shape (n, features + 1), ``bias`` last, float64."""
        if len(x) == 0:
            return np.zeros((0, len(self.features) + 1))
        if self.algo == "xgboost":
            booster, values = self._booster(), None
            if not approx:
                from .treeshap import booster_contributions  # imports numba: only when scoring

                values = booster_contributions(booster, x)
            if values is None:
                values = booster.predict(self._dmatrix(x), pred_contribs=True, approx_contribs=approx)
            return values.astype(np.float64, copy=False)
        pre = self.estimator[:-1].transform(x)
        lr = self.estimator[-1]
        return np.column_stack([pre * lr.coef_[0], np.full(len(x), lr.intercept_[0])])


def fit_threads(config: Config) -> int:
    """Return the XGBoost fitting threads: ``model.threads``, or every core when it is 0."""
    threads = config.model.threads
    if threads < 0:
        raise ConfigError(f"model.threads is {threads}: use 0 (every core) or a positive number")
    return threads or os.cpu_count() or 1


def _make_estimator(algo: str, config: Config) -> Any:
    if algo == "xgboost":
        from xgboost import XGBClassifier

        p = config.model.xgboost
        return XGBClassifier(
            n_estimators=p.n_estimators,
            max_depth=p.max_depth,
            learning_rate=p.learning_rate,
            subsample=p.subsample,
            colsample_bytree=p.colsample_bytree,
            min_child_weight=p.min_child_weight,
            reg_lambda=p.reg_lambda,
            tree_method="hist",  # NaN-aware: a missing feature follows the learned default branch
            objective="binary:logistic",
            eval_metric="logloss",
            random_state=config.seed,
            # The same data, seed and thread count give the same trees (tested); another
            # thread count may round histogram sums differently and give other trees.
            n_jobs=fit_threads(config),
        )
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("logistic", LogisticRegression(C=1.0, max_iter=2000, random_state=config.seed)),
    ])


def _fit_xgboost(config: Config, x: np.ndarray, y: np.ndarray, *, ref: Any = None) -> tuple[Any, Any]:
    """Return an XGBClassifier fitted on ``x, y`` as ``XGBClassifier.fit`` fits it, and its data.

    The data is XGBoost's binned matrix (``QuantileDMatrix``); with ``ref`` (another fit's
    data) it reuses that one's bin edges instead of sketching ``x`` again.
    """
    import xgboost

    est = _make_estimator("xgboost", config)
    data = xgboost.QuantileDMatrix(x, label=y, missing=np.nan, nthread=est.n_jobs, max_bin=est.max_bin, ref=ref)
    booster = xgboost.train(est.get_xgb_params(), data, num_boost_round=est.get_num_boosting_rounds())
    est.load_model(bytearray(booster.save_raw("ubj")))
    return est, data


def _xgb_margin(estimator: Any, x: np.ndarray) -> np.ndarray:
    """Return the raw margins of a fitted XGBClassifier on a feature matrix."""
    import xgboost

    if len(x) == 0:
        return np.zeros(0)
    booster = estimator.get_booster()
    booster.set_param({"nthread": os.cpu_count() or 1})  # per-row predictions: thread count is harmless
    return booster.predict(xgboost.DMatrix(x, missing=np.nan), output_margin=True).astype(np.float64)


def _customer_cross_margin(config, train_index, x_train, y_train, valid_index, x_valid, margin, ref=None) -> np.ndarray:
    """Return validation margins from models that never saw the customer in training.

    The snapshots hold the same customers 30 days apart with overlapping label windows, so the
    full model has partly memorised the validation customers: its validation margins look more
    reliable than margins on new dates, and a calibrator fitted on them is overconfident.  Two
    models, each fitted on the training rows of one half of the customers (stable hash), score
    the other half; the calibrator and the reported metrics use those margins.  Together they
    cost one more full fit; with ``ref`` (the full model's data) they reuse its bin edges.
    """
    train_fold = _folds(train_index)
    valid_fold = _folds(valid_index)
    out = margin.copy()
    for k in (0, 1):
        own = train_fold == k
        y_k = y_train[own]
        if own.sum() < 2 or y_k.all() or not y_k.any():
            return margin  # a half without both classes: keep the full model's margins
        est, _ = _fit_xgboost(config, x_train[own], y_k.astype(np.int64), ref=ref)
        other = valid_fold != k
        if other.any():
            out[other] = _xgb_margin(est, x_valid[other])
    return out


def _check_classes(y: np.ndarray, where: str, minimum: int) -> None:
    churned = int(y.sum())
    retained = int(len(y) - churned)
    if churned >= minimum and retained >= minimum:
        return
    if churned < minimum:
        what, advice = "churners", "use more order history, a smaller horizon_days or more model.snapshots"
    else:
        what, advice = "retained customers", "use more order history, a larger horizon_days or more model.snapshots"
    raise TrainingError(
        f"too few {what} to train: {churned} churned and {retained} retained customers in {where} "
        f"(model.min_class_count is {minimum}); {advice}"
    )


def _versions() -> dict[str, str]:
    import joblib
    import scipy
    import sklearn

    out = {"churnctl": __version__, "python": platform.python_version(), "pandas": pd.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
           "joblib": joblib.__version__}
    try:
        import xgboost

        out["xgboost"] = xgboost.__version__
    except ImportError:  # pragma: no cover - xgboost is a dependency
        pass
    return out


def _date(ts: Any) -> str:
    return str(pd.Timestamp(ts).date())


def fit(
    training_set: pd.DataFrame,
    as_of: pd.Timestamp,
    config: Config,
    *,
    algo: str | None = None,
    feature_columns: list[str] | None = None,
) -> ChurnModel:
    """Return a ChurnModel fitted on a training set (see :func:`build_training_set`).

    The latest ``snapshot`` is held out for validation and calibration; the model is fitted
    on the others.  ``feature_columns`` defaults to ``features.model_columns(training_set)``.

    Raises
    ------
    TrainingError
        Fewer than 2 snapshots, or fewer than ``model.min_class_count`` churners or retained
        customers in the training or the validation part.
    ConfigError
        Unknown algorithm or calibration method.
    """
    algo = algo or config.model.algo
    if algo not in ALGOS:
        raise ConfigError(f"model.algo: unknown algorithm '{algo}' (choose one of: {', '.join(ALGOS)})")
    method = config.model.calibration
    if method not in CALIBRATIONS:
        raise ConfigError(f"model.calibration: unknown method '{method}' (choose one of: {', '.join(CALIBRATIONS)})")
    columns = list(feature_columns) if feature_columns is not None else _features.model_columns(training_set)
    if not columns:
        raise TrainingError("no model features were built from the orders: nothing to train on")
    snaps = pd.DatetimeIndex(training_set["snapshot"])
    order = sorted(snaps.unique())
    if len(order) < 2:
        raise TrainingError(f"only {len(order)} snapshot(s) with customers: need at least 2 (older to train, latest to validate)")
    valid_at = order[-1]
    is_valid = np.asarray(snaps == valid_at)
    train_part, valid_part = training_set[~is_valid], training_set[is_valid]
    y_train = train_part["churned"].to_numpy(dtype=bool)
    y_valid = valid_part["churned"].to_numpy(dtype=bool)
    minimum = config.model.min_class_count
    _check_classes(y_train, f"the training snapshots {_date(order[0])}..{_date(order[-2])}", minimum)
    _check_classes(y_valid, f"the validation snapshot {_date(valid_at)}", minimum)

    if algo == "xgboost":
        # One float32 matrix (what XGBoost bins anyway), split by rows: no copy of the frame.
        x = training_set.loc[:, columns].to_numpy(dtype=np.float32, na_value=np.nan)
        x_train, x_valid = x[~is_valid], x[is_valid]
        del x
        estimator, data = _fit_xgboost(config, x_train, y_train.astype(np.int64))
        margin = _xgb_margin(estimator, x_valid)
        margin = _customer_cross_margin(config, train_part.index, x_train, y_train, valid_part.index, x_valid,
                                        margin, ref=data)
        del data, x_train, x_valid
    else:
        estimator = _make_estimator(algo, config)
        estimator.fit(_matrix(train_part, columns), y_train.astype(np.int64))
    fitted = ChurnModel(algo, estimator, Calibrator(method), columns, meta={})
    if algo != "xgboost":
        margin = fitted.raw_margin(valid_part)

    # Honest calibrated scores: each half of the held-out snapshot calibrated on the other.
    folds = _folds(valid_part.index)
    p_valid = _cross_fit(method, margin, y_valid, folds)
    report: dict[str, Any] = {
        "model": metrics(y_valid, p_valid, rank_score=margin),
        "recency_baseline": None,
        "train_rows": int(len(train_part)),
        "valid_rows": int(len(valid_part)),
        "churn_rate_train": float(y_train.mean()),
        "churn_rate_valid": float(y_valid.mean()),
        "calibration": method,
        "validation_snapshot": _date(valid_at),
    }
    if RECENCY in valid_part.columns:
        # Baseline: P(churn) = isotonic in recency_days, cross-fitted the same way.
        recency = valid_part[RECENCY].to_numpy(dtype=np.float64, na_value=np.nan)
        recency = np.where(np.isnan(recency), np.nanmax(recency, initial=0.0), recency)
        p_base = _cross_fit("isotonic", recency, y_valid, folds)
        report["recency_baseline"] = metrics(y_valid, p_base, rank_score=recency)
    fitted.calibrator = Calibrator(method).fit(margin, y_valid)

    fitted.meta = {
        "format": FORMAT,
        "algo": algo,
        "features": columns,
        "config_hash": config.hash(),
        "seed": config.seed,
        "as_of": _date(as_of),
        "horizon_days": int(config.horizon_days),
        "snapshots": [_date(s) for s in order],
        "training_window": {
            "train_snapshots": [_date(s) for s in order[:-1]],
            "validation_snapshot": _date(valid_at),
            "labels_observed_until": _date(as_of),
        },
        "calibration": method,
        "class_weighting": "none",
        "metrics": report,
        "versions": _versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_version": None,
    }
    return fitted


def train(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    config: Config,
    *,
    events: pd.DataFrame | None = None,
    algo: str | None = None,
    tune: bool = False,
) -> ChurnModel:
    """Return a ChurnModel trained on snapshots before ``as_of`` (algorithm: ``algo`` or config).

    See :func:`build_training_set` for the rows and :func:`fit` for validation, calibration
    and the errors raised.  ``meta["metrics"]`` holds the held-out metrics of the model and
    of the recency-only baseline.  ``tune=True`` (xgboost only) first picks the XGBoost
    parameters with :func:`tune_xgboost`; ``meta["tuning"]`` records the search.
    """
    as_of = as_of_timestamp(as_of)
    training_set = build_training_set(orders, as_of, config, events=events)
    tuning = None
    if tune and (algo or config.model.algo) == "xgboost":
        tuning = tune_xgboost(training_set, config)
        config = config.replace(model=dataclasses.replace(
            config.model, xgboost=dataclasses.replace(config.model.xgboost, **tuning["best"])))
    fitted = fit(training_set, as_of, config, algo=algo)
    if tuning is not None:
        fitted.meta["tuning"] = tuning
    return fitted


#: The --tune search: a few sensible XGBoost settings around the defaults.
TUNE_GRID = (
    {"max_depth": 3, "min_child_weight": 5.0, "n_estimators": 300},
    {"max_depth": 4, "min_child_weight": 5.0, "n_estimators": 300},
    {"max_depth": 6, "min_child_weight": 10.0, "n_estimators": 200},
    {"max_depth": 4, "min_child_weight": 30.0, "n_estimators": 150},
    {"max_depth": 3, "min_child_weight": 20.0, "n_estimators": 600},
)


def tune_xgboost(training_set: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Return the best of :data:`TUNE_GRID` by time-series cross-validation, and every score.

    The latest snapshot stays untouched (it validates and calibrates the final model).  On the
    older snapshots each fold trains on the snapshots before one snapshot and scores that one
    (expanding window, never the future); the setting with the lowest mean log-loss of the
    sigmoid-calibrated margins (each fold calibrated on its own half-split, as in :func:`fit`)
    wins.  Needs at least 3 snapshots.

    Raises
    ------
    TrainingError
        Fewer than 3 snapshots (no fold left besides the held-out one).
    """
    snaps = pd.DatetimeIndex(training_set["snapshot"])
    order = sorted(snaps.unique())[:-1]
    if len(order) < 2:
        raise TrainingError(
            f"--tune needs at least 3 snapshots with customers (got {len(order) + 1}): raise model.snapshots"
        )
    columns = _features.model_columns(training_set)
    x = _matrix(training_set, columns)
    y = training_set["churned"].to_numpy(dtype=bool)
    folds = _folds(training_set.index)
    scores = []
    for params in TUNE_GRID:
        cfg = config.replace(model=dataclasses.replace(
            config.model, xgboost=dataclasses.replace(config.model.xgboost, **params)))
        losses = []
        for k in range(1, len(order)):
            train_rows = np.asarray(snaps < order[k])
            test_rows = np.asarray(snaps == order[k])
            if y[train_rows].all() or not y[train_rows].any():
                continue
            est = _make_estimator("xgboost", cfg)
            est.fit(x[train_rows], y[train_rows].astype(np.int64))
            margin = ChurnModel("xgboost", est, Calibrator("none"), columns, {}).raw_margin(training_set[test_rows])
            p = _cross_fit("sigmoid", margin, y[test_rows], folds[test_rows])
            losses.append(log_loss(y[test_rows], p, labels=[0, 1]))
        scores.append({**params, "cv_log_loss": float(np.mean(losses)) if losses else math.inf})
    best = min(range(len(scores)), key=lambda i: scores[i]["cv_log_loss"])
    return {"best": dict(TUNE_GRID[best]), "grid": scores, "folds": len(order) - 1}


# --- artifact -----------------------------------------------------------------------------
def _sidecar(path: Path) -> Path:
    return Path(str(path) + ".json")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _write_atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model: ChurnModel, path: Path) -> str:
    """Write the model to ``path`` (joblib) and ``path + ".json"`` (metadata, sha256); return the sha256.

    Both files appear whole (temporary name, then rename).  Sets ``model.meta["sha256"]``
    and ``model.meta["model_version"]`` (first 12 hex digits of the sha256).
    """
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in model.meta.items() if k not in ("sha256", "model_version")}
    stored = ChurnModel(model.algo, model.estimator, model.calibrator, model.features, meta)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        joblib.dump({"format": FORMAT, "model": stored}, tmp)
        sha = _file_sha256(Path(tmp))
        side = {**_json_safe(meta), "file": path.name, "sha256": sha, "model_version": sha[:12]}
        _write_atomic(_sidecar(path), lambda p: p.write_text(json.dumps(side, indent=2, sort_keys=True) + "\n"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    model.meta["sha256"] = sha
    model.meta["model_version"] = sha[:12]
    return sha


def load(path: Path) -> ChurnModel:
    """Return the ChurnModel at ``path`` after checking it against the sha256 in its sidecar.

    Raises
    ------
    ModelError
        No model file, a missing or unreadable sidecar, a checksum mismatch (the file is
        never unpickled then), or a file that is not a churnctl model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model at {path}; run `churnctl train` first")
    side_path = _sidecar(path)
    if not side_path.is_file():
        raise ModelError(f"model file {path} has no checksum file {side_path.name}; retrain with `churnctl train`")
    try:
        side = json.loads(side_path.read_text(encoding="utf-8"))
        expected = side["sha256"]
        if not isinstance(expected, str) or len(expected) != 64:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ModelError(f"{side_path}: not a valid model checksum file; retrain with `churnctl train`") from None
    sha = _file_sha256(path)
    if not hmac.compare_digest(sha, expected.lower()):
        raise ModelError(f"model file {path} does not match its checksum; retrain with `churnctl train`")
    import joblib

    try:
        payload = joblib.load(path)
    except Exception as exc:  # verified bytes that still fail: a library version problem
        raise ModelError(f"model file {path} cannot be read ({type(exc).__name__}); retrain with `churnctl train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("model"), ChurnModel):
        raise ModelError(f"model file {path} is not a churnctl model of this version; retrain with `churnctl train`")
    model = payload["model"]
    model.meta = {**model.meta, "sha256": sha, "model_version": sha[:12]}
    return model
