"""Backtests: the churn model replayed over history against the classic baselines.

For each of K cutoffs ``D - h, D - h - step, ...`` (h = ``horizon_days``, step =
``model.snapshot_step_days``) the models are trained only on data before the cutoff (their own
training snapshots end at ``cutoff - h``, so every training label is known at the cutoff),
score the customers at the cutoff, and are compared with what happened by ``cutoff + h``:

* ``xgboost``: the product's model (``model.fit``, the configured algorithm and features);
* ``logistic_rfm``: what an analyst writes in a notebook, a logistic regression on
  ``recency_days``, ``frequency`` and ``monetary_total``, calibrated like the product model;
* ``bgnbd``: BG/NBD P(no order in the horizon) (:mod:`churnctl.btyd`, fitted at the cutoff);
  ranking by P(no order) rather than ``1 - p_alive``, which is 1 for every one-time buyer;
* ``recency``: days since the last order, mapped to a probability by isotonic regression on
  the latest training snapshot.

Metrics (:func:`metrics`): ROC-AUC, PR-AUC, Brier, log-loss, expected calibration error over
10 equal-width probability bins, and the capture rate (share of all churners) and lift in the
top 10% and 20% of the ranking; per cutoff and pooled over all cutoffs ("all"), overall and
per country, channel and RFM segment.  :func:`reliability` gives observed churn against
predicted probability per decile of the prediction, for plotting; :func:`curves` the ROC,
precision-recall, capture and lift curves (at most :data:`CURVE_POINTS` points each).  No I/O
here: ``api`` writes the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss, precision_recall_curve,
                             roc_auc_score, roc_curve)

from . import model as _model
from .config import Config
from .errors import ConfigError, TrainingError
from .schema import as_of_timestamp, day_end

#: Models compared, product model first.
MODELS = ("xgboost", "logistic_rfm", "bgnbd", "recency")
#: The notebook baseline's inputs.
RFM_FEATURES = ("recency_days", "frequency", "monetary_total")
#: Columns the results may be split by.
SEGMENT_COLUMNS = ("country", "channel", "rfm_segment")
METRIC_COLUMNS = ("n", "positives", "churn_rate", "roc_auc", "pr_auc", "brier", "log_loss", "ece",
                  "capture_10", "lift_10", "capture_20", "lift_20")
#: evaluation.csv columns.
TABLE_COLUMNS = ("cutoff", "group_by", "group", "model", *METRIC_COLUMNS)
#: reliability.csv columns.
RELIABILITY_COLUMNS = ("cutoff", "model", "decile", "p_min", "p_max", "mean_predicted", "observed_rate", "n")
ECE_BINS = 10
#: curves.csv columns: ``curve`` is roc (x fpr, y tpr), pr (x recall, y precision), capture
#: (x share contacted riskiest first, y share of churners caught) or lift (x as capture, y capture / x).
CURVE_COLUMNS = ("cutoff", "model", "curve", "x", "y")
CURVES = ("roc", "pr", "capture", "lift")
#: Most points kept per ROC / precision-recall curve; capture and lift are given per percentile.
CURVE_POINTS = 200


# --- metrics ------------------------------------------------------------------------------
def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Return sum over equal-width probability bins of (bin share) x |churn rate - mean p|."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return math.nan
    b = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    # n_b/N x |sum_b y / n_b - sum_b p / n_b| = |sum_b y - sum_b p| / N
    gap = np.abs(np.bincount(b, weights=y, minlength=bins) - np.bincount(b, weights=p, minlength=bins))
    return float(gap.sum() / len(y))


def capture(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """Return the share of all churners among the top ``share`` of ``score``; ties share the cut."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    total = y.sum()
    if len(y) == 0 or total == 0:
        return math.nan
    k = max(1, math.ceil(share * len(y)))
    threshold = np.sort(score)[::-1][k - 1]
    above = score > threshold
    tied = score == threshold
    caught = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float(caught / total)


def metrics(y_true, p, rank_score=None) -> dict[str, float | int]:
    """Return :data:`METRIC_COLUMNS` for probabilities ``p`` (ranking by ``rank_score``, default p).

    Ranking metrics are NaN when only one class is present.
    """
    y = np.asarray(y_true, dtype=bool).astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    s = p if rank_score is None else np.asarray(rank_score, dtype=np.float64)
    both = 0 < y.sum() < len(y)
    nan = math.nan
    c10, c20 = capture(y, s, 0.1), capture(y, s, 0.2)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "churn_rate": float(y.mean()) if len(y) else nan,
        "roc_auc": float(roc_auc_score(y, s)) if both else nan,
        "pr_auc": float(average_precision_score(y, s)) if both else nan,
        "brier": float(brier_score_loss(y, p)) if len(y) else nan,
        "log_loss": float(log_loss(y, np.clip(p, _model.PROB_FLOOR, 1 - _model.PROB_FLOOR), labels=[0, 1])) if len(y) else nan,
        "ece": expected_calibration_error(y, p),
        "capture_10": c10,
        "lift_10": c10 / 0.1 if not math.isnan(c10) else nan,
        "capture_20": c20,
        "lift_20": c20 / 0.2 if not math.isnan(c20) else nan,
    }


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Return observed churn vs predicted probability per decile of ``p`` (rank-based, ties by order)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    if n == 0:
        return pd.DataFrame(columns=["decile", "p_min", "p_max", "mean_predicted", "observed_rate", "n"])
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(p, kind="stable")] = np.arange(n)
    d = rank * bins // n
    frame = pd.DataFrame({"decile": d + 1, "p": p, "y": y})
    out = frame.groupby("decile").agg(p_min=("p", "min"), p_max=("p", "max"), mean_predicted=("p", "mean"),
                                      observed_rate=("y", "mean"), n=("y", "size")).reset_index()
    return out


def thin(x: np.ndarray, y: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Return at most ``max_points`` points of the polyline ``(x, y)``, evenly spread along its length.

    The first and last points are kept and the order is unchanged, so a monotone curve stays
    monotone; points are picked where the cumulative |dx| + |dy| crosses even steps.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    if n <= max_points:
        return x, y
    length = np.r_[0.0, np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))]
    idx = np.searchsorted(length, np.linspace(0.0, length[-1], max_points - 1), side="left")
    idx = np.unique(np.r_[np.minimum(idx, n - 1), n - 1])
    return x[idx], y[idx]


def curves(y_true, score, max_points: int = CURVE_POINTS) -> pd.DataFrame:
    """Return the ROC, precision-recall, capture and lift curves of ranking by ``score``.

    ROC (fpr, tpr) from (0, 0) to (1, 1) and precision-recall (recall ascending) come from
    :func:`sklearn.metrics.roc_curve` / :func:`~sklearn.metrics.precision_recall_curve`, thinned
    to ``max_points``.  Capture: share of churners among the top x of the ranking for x = 0, 1%,
    ..., 100% (ties share the cut, i.e. linear within a tied block); lift = capture / x (x > 0).
    Empty when only one class is present.
    """
    y = np.asarray(y_true, dtype=bool).astype(np.int64)
    s = np.asarray(score, dtype=np.float64)
    n, pos = len(y), int(y.sum())
    if not 0 < pos < n:
        return pd.DataFrame({"curve": pd.Series(dtype=object), "x": pd.Series(dtype=np.float64),
                             "y": pd.Series(dtype=np.float64)})
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    contacted = (tpr * pos + fpr * (n - pos)) / n
    grid = np.linspace(0.0, 1.0, 101)
    caught = np.interp(grid, contacted, tpr)
    rx, ry = thin(*roc_curve(y, s)[:2], max_points)
    precision, recall, _ = precision_recall_curve(y, s)
    px, py = thin(recall[::-1], precision[::-1], max_points)
    parts = [("roc", rx, ry), ("pr", px, py), ("capture", grid, caught), ("lift", grid[1:], caught[1:] / grid[1:])]
    return pd.DataFrame({
        "curve": np.concatenate([np.full(len(a), name, dtype=object) for name, a, _ in parts]),
        "x": np.concatenate([a for _, a, _ in parts]),
        "y": np.concatenate([b for _, _, b in parts]),
    })


# --- backtest -----------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Backtest results: predictions per cutoff, model and customer, and the tables."""

    as_of: pd.Timestamp
    horizon_days: int
    cutoffs: list[pd.Timestamp]
    predictions: pd.DataFrame
    table: pd.DataFrame
    reliability: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CURVE_COLUMNS)))

    def overall(self) -> dict[str, dict[str, float | int]]:
        """Return model -> pooled metrics over every cutoff (the headline figures)."""
        t = self.table
        rows = t[(t["cutoff"] == "all") & (t["group_by"] == "all")]
        return {r["model"]: {c: r[c] for c in METRIC_COLUMNS} for r in rows.to_dict("records")}


def backtest_cutoffs(as_of: pd.Timestamp, horizon_days: int, k: int, step_days: int) -> list[pd.Timestamp]:
    """Return ``k`` cutoffs, oldest first, the latest at ``as_of - horizon_days``."""
    return sorted(_model.snapshot_cutoffs(as_of, horizon_days, k, step_days))


def _predict_cutoff(orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp,
                    config: Config, notes: list[str]) -> pd.DataFrame:
    """Train on data before ``cutoff``, score at it; return one row per (model, customer)."""
    h = config.horizon_days
    before = orders[(orders["order_date"] < day_end(cutoff)).to_numpy(dtype=bool)]
    ev = None if events is None else events[(events["event_time"] < day_end(cutoff)).to_numpy(dtype=bool)]
    training = _model.build_training_set(before, cutoff, config, events=ev)
    product = _model.fit(training, cutoff, config)
    rfm = [c for c in RFM_FEATURES if c in training.columns]
    notebook = _model.fit(training, cutoff, config, algo="logistic", feature_columns=rfm)

    feats = _model.scoring_features(before, cutoff, config, events=ev)
    y = _model.labels(orders, feats.index, cutoff, h).to_numpy(dtype=bool)
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    preds["xgboost"] = (product.predict_proba(feats), product.raw_margin(feats))
    preds["logistic_rfm"] = (notebook.predict_proba(feats), notebook.raw_margin(feats))
    if "p_no_order_horizon" in feats.columns and feats["p_no_order_horizon"].notna().all():
        p = feats["p_no_order_horizon"].to_numpy(dtype=np.float64)
        preds["bgnbd"] = (np.clip(p, _model.PROB_FLOOR, 1 - _model.PROB_FLOOR), p)
    else:
        notes.append(f"{cutoff.date()}: BG/NBD could not be fitted; bgnbd left out for this cutoff")
    latest = training["snapshot"] == training["snapshot"].max()
    rec_train = training.loc[latest, "recency_days"].to_numpy(dtype=np.float64)
    calib = _model.Calibrator("isotonic").fit(rec_train, training.loc[latest, "churned"].to_numpy(dtype=bool))
    rec = feats["recency_days"].to_numpy(dtype=np.float64)
    preds["recency"] = (calib.predict(rec), rec)

    frames = []
    for name in MODELS:
        if name not in preds:
            continue
        p, s = preds[name]
        frames.append(pd.DataFrame({
            "cutoff": str(cutoff.date()),
            "model": name,
            "customer_id": feats.index.to_numpy(dtype=object),
            "churned": y,
            "p": np.asarray(p, dtype=np.float64),
            "score": np.asarray(s, dtype=np.float64),
            **{c: (feats[c].astype(object).to_numpy() if c in feats.columns else None) for c in SEGMENT_COLUMNS},
        }))
    return pd.concat(frames, ignore_index=True)


def _table(pred: pd.DataFrame) -> pd.DataFrame:
    rows = []
    scopes = [("all", pred)] + [(c, pred[pred["cutoff"] == c]) for c in sorted(pred["cutoff"].unique())]
    for cutoff, part in scopes:
        for group_by in ("all", *SEGMENT_COLUMNS):
            if group_by == "all":
                groups = [("all", part)]
            else:
                key = part[group_by].fillna("(none)").astype(str)
                groups = [(str(g), part[key == g]) for g in sorted(key.unique())]
            for group, gpart in groups:
                for name in MODELS:
                    m = gpart[gpart["model"] == name]
                    if m.empty:
                        continue
                    rows.append({"cutoff": cutoff, "group_by": group_by, "group": group, "model": name,
                                 **metrics(m["churned"].to_numpy(), m["p"].to_numpy(), m["score"].to_numpy())})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _per_scope(pred: pd.DataFrame, table, columns) -> pd.DataFrame:
    """Return ``table(churned, p, score)`` for every model, pooled (cutoff ``all``) and per cutoff."""
    frames = []
    scopes = [("all", pred)] + [(c, pred[pred["cutoff"] == c]) for c in sorted(pred["cutoff"].unique())]
    for cutoff, part in scopes:
        for name in MODELS:
            m = part[part["model"] == name]
            if not m.empty:
                got = table(m["churned"].to_numpy(), m["p"].to_numpy(), m["score"].to_numpy())
                frames.append(got.assign(cutoff=cutoff, model=name))
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]


def _reliability(pred: pd.DataFrame) -> pd.DataFrame:
    return _per_scope(pred, lambda y, p, _: reliability(y, p), RELIABILITY_COLUMNS)


def _curves(pred: pd.DataFrame) -> pd.DataFrame:
    def rounded(y, _, score):
        c = curves(y, score)
        return c.assign(x=c["x"].round(6), y=c["y"].round(6))

    return _per_scope(pred, rounded, CURVE_COLUMNS)


def backtest(orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *, events: pd.DataFrame | None = None,
             backtests: int = 3) -> Evaluation:
    """Replay history at ``backtests`` cutoffs ending at ``as_of - horizon_days``; see the module doc.

    Raises
    ------
    ConfigError
        ``backtests`` below 1.
    TrainingError
        A cutoff has too little history before it to train (the message names the cutoff).
    """
    if backtests < 1:
        raise ConfigError(f"--backtests is {backtests}: must be at least 1")
    as_of = as_of_timestamp(as_of)
    cutoffs = backtest_cutoffs(as_of, config.horizon_days, backtests, config.model.snapshot_step_days)
    orders = orders[(orders["order_date"] < day_end(as_of)).to_numpy(dtype=bool)]
    if events is not None:
        events = events[(events["event_time"] < day_end(as_of)).to_numpy(dtype=bool)]
    notes: list[str] = []
    frames = []
    for cutoff in cutoffs:
        try:
            frames.append(_predict_cutoff(orders, events, cutoff, config, notes))
        except TrainingError as exc:
            raise TrainingError(f"backtest cutoff {cutoff.date()}: {exc}") from None
    pred = pd.concat(frames, ignore_index=True)
    return Evaluation(as_of, int(config.horizon_days), cutoffs, pred, _table(pred), _reliability(pred), notes,
                      _curves(pred))


# --- cause recovery -----------------------------------------------------------------------
def cause_recovery(scores: pd.DataFrame, truth: pd.DataFrame, *, tier: str = "high") -> dict[str, float | int]:
    """Return how often ``top_cause`` names the planted cause among ``tier``-risk churners.

    ``scores`` is a scores frame (index ``customer_id``); ``truth`` the sample generator's
    ``truth.csv`` (``customer_id, churned, churn_cause``).  Counted: customers of the tier whose
    truth says they churned; recovered: ``top_cause == churn_cause``.
    """
    t = truth.copy()
    t["customer_id"] = t["customer_id"].astype(str)
    churned = t["churned"].astype(str).str.lower().isin(["true", "1"])
    cause = t.loc[churned.to_numpy(), ["customer_id", "churn_cause"]].set_index("customer_id")["churn_cause"]
    s = scores[scores["risk_tier"] == tier]
    both = s.index.intersection(cause.index)
    hit = (s.loc[both, "top_cause"].astype(str).to_numpy() == cause.loc[both].astype(str).to_numpy())
    by_cause = {}
    for c in sorted(cause.loc[both].unique()):
        sel = cause.loc[both].to_numpy() == c
        by_cause[str(c)] = {"n": int(sel.sum()), "recovered": float(hit[sel].mean())}
    return {"n": int(len(both)), "recovered": int(hit.sum()),
            "rate": float(hit.mean()) if len(both) else math.nan, "by_cause": by_cause}
