"""Scores frame: calibrated churn probability, tiers, cause families and reasons per customer.

Each feature's contribution to the model margin (log-odds) is summed per cause family
(``features.family_of``) into the ``cause_<family>`` columns; the model's ``bias`` belongs to
no family.  ``top_cause`` is the actionable family pushing risk up the most, or ``activity``
when none pushes by more than ``scoring.min_cause_contribution``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from . import features as _features
from . import memory
from . import reasons as _reasons
from .config import Config
from .errors import ConfigError, ModelError
from .model import ChurnModel
from .schema import ACTIONABLE_FAMILIES, ACTIVITY, CAUSE_COLUMNS, FAMILIES, SCORE_COLUMNS, cause_column

#: Probabilities and contributions are rounded so that files are stable across runs.
DECIMALS = 6
#: Customers whose per-feature contributions are computed at once (``score`` goes through the
#: customers in chunks of this many, so the contribution matrix never holds them all).
CHUNK_ROWS = 100_000
#: Shares equal to a boundary up to this tolerance count as reaching it.
_SHARE_TOL = 1e-12


def risk_tiers(p: np.ndarray | pd.Series, high: float, medium: float) -> np.ndarray:
    """Return ``high`` where ``p >= high``, ``medium`` where ``p >= medium``, else ``low``; shape (n,)."""
    return _RISK_NAMES[_risk_codes(p, high, medium)]


_RISK_NAMES = np.array(["high", "medium", "low"], dtype=object)


def _risk_codes(p: np.ndarray | pd.Series, high: float, medium: float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.select([p >= high, p >= medium], [0, 1], default=2)


def value_tiers(monetary: pd.Series, a_share: float, b_share: float) -> pd.Series:
    """Return the value tier (A/B/C) of each customer, indexed like ``monetary``.

    Customers are sorted by revenue, highest first (ties by ``customer_id``).  A customer is
    **A** while the revenue of the customers before it is below ``a_share`` of the total, so
    the customer whose revenue crosses the A boundary is still A; likewise **B** up to
    ``b_share``; the rest are **C**.  Negative or missing revenue counts as 0; when the total
    is 0 every customer is C.
    """
    tiers = np.array(["A", "B", "C"], dtype=object)[_value_tier_codes(monetary, a_share, b_share)]
    return pd.Series(tiers, index=monetary.index, name="value_tier")


def _value_tier_codes(monetary: pd.Series, a_share: float, b_share: float) -> np.ndarray:
    """:func:`value_tiers` as codes: 0 for A, 1 for B, 2 for C."""
    m = np.clip(monetary.to_numpy(dtype=np.float64, na_value=0.0), 0.0, None)
    total = m.sum()
    n = len(m)
    if n == 0 or total <= 0:
        return np.full(n, 2, dtype=np.int64)
    if monetary.index.is_monotonic_increasing and monetary.index.is_unique:
        order = np.argsort(-m, kind="stable")  # sorted unique ids: ties already in id order
    else:
        order = np.lexsort((np.asarray(monetary.index, dtype=object), -m))
    ranked = m[order]
    before = np.concatenate(([0.0], np.cumsum(ranked)[:-1])) / total
    tier_sorted = np.select([before < a_share - _SHARE_TOL, before < b_share - _SHARE_TOL], [0, 1], default=2)
    tiers = np.empty(n, dtype=np.int64)
    tiers[order] = tier_sorted
    return tiers


def family_contributions(
    contributions: pd.DataFrame, family_of: Callable[[str], str] | None = None
) -> pd.DataFrame:
    """Return the summed contribution (log-odds) per cause family: columns ``schema.CAUSE_COLUMNS``.

    ``contributions`` has one column per feature (a ``bias`` column is ignored); each
    feature goes to ``family_of(name)`` (default ``features.family_of``).
    """
    family_of = family_of or _features.family_of
    position = {f: i for i, f in enumerate(FAMILIES)}
    out = np.zeros((len(contributions), len(FAMILIES)), dtype=np.float64)
    for name in contributions.columns:
        if name == "bias":
            continue
        family = family_of(name)
        if family not in position:
            raise ModelError(f"model feature '{name}' has unknown cause family '{family}'; retrain with `churnctl train`")
        out[:, position[family]] += contributions[name].to_numpy(dtype=np.float64)
    return pd.DataFrame(out, index=contributions.index, columns=list(CAUSE_COLUMNS))


def top_causes(causes: pd.DataFrame, min_contribution: float) -> np.ndarray:
    """Return the top cause per row, shape (n,): the actionable family with the largest contribution.

    The family wins only when its contribution is positive and greater than
    ``min_contribution``; otherwise the cause is ``activity``.  Ties go to the family listed
    first in ``schema.ACTIONABLE_FAMILIES``.
    """
    matrix = causes[[cause_column(f) for f in ACTIONABLE_FAMILIES]].to_numpy(dtype=np.float64)
    return _CAUSE_NAMES[_top_cause_codes(matrix, min_contribution)]


#: ``top_cause`` by code: the actionable families, then ``activity``.
_CAUSE_NAMES = np.array([*ACTIONABLE_FAMILIES, ACTIVITY], dtype=object)


def _top_cause_codes(matrix: np.ndarray, min_contribution: float) -> np.ndarray:
    """:func:`top_causes` as positions in :data:`_CAUSE_NAMES`."""
    if len(matrix) == 0:
        return np.empty(0, dtype=np.int64)
    best = np.argmax(matrix, axis=1)
    value = matrix[np.arange(len(matrix)), best]
    return np.where(value > max(min_contribution, 0.0), best, len(ACTIONABLE_FAMILIES))


def _lifecycle(frame: pd.DataFrame, loyal_min_orders: int) -> Any:
    if "lifecycle_stage" in frame.columns:
        return _text(frame, "lifecycle_stage")
    freq = frame["frequency"].to_numpy(dtype=np.float64, na_value=0.0)
    return _features.labels(np.select([freq <= 1, freq >= loyal_min_orders], [0, 1], default=2),
                            ("new", "loyal", "repeat"))


def _text(frame: pd.DataFrame, column: str) -> Any:
    """Return a text column of the features for the scores frame (as text; missing: all None)."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[column]
    if isinstance(values.dtype, pd.StringDtype):
        return values.array  # already text: no conversion there and back
    return values.to_numpy(dtype=object)


def score(features: pd.DataFrame, model: ChurnModel, config: Config) -> pd.DataFrame:
    """Return the scores frame: one row per customer of ``features``.

    Parameters
    ----------
    features : pd.DataFrame
        Output of ``features.build`` (index ``customer_id``).
    model : ChurnModel
        A loaded model; its features must all be present.
    config : Config
        ``config.scoring`` sets the tiers and the cause threshold.

    Returns
    -------
    pd.DataFrame
        Index ``customer_id``; columns ``schema.SCORE_COLUMNS`` without ``customer_id``.

    Raises
    ------
    ModelError
        A model feature is missing from ``features``.
    """
    sc = config.scoring
    if sc.contributions not in ("exact", "approx"):
        raise ConfigError(f"scoring.contributions: unknown value '{sc.contributions}' (choose exact or approx)")
    model.check_features(features)
    frame = features  # the parameter shadows the module name, kept for the public signature
    p, causes, top_cause, reasons = _explain(frame, model, config)

    frequency = frame["frequency"]
    monetary = frame["monetary_total"].astype(np.float64)
    if "aov" in frame.columns:
        aov = frame["aov"].astype(np.float64)
    else:
        aov = monetary / frequency.astype(np.float64).where(frequency > 0)
    out = pd.DataFrame(
        {
            "churn_probability": p,
            "risk_tier": _features.labels(_risk_codes(p, sc.risk_high, sc.risk_medium), _RISK_NAMES),
            "rfm_segment": _text(frame, "rfm_segment"),
            "value_tier": _features.labels(_value_tier_codes(monetary, sc.value_a_share, sc.value_b_share),
                                           ("A", "B", "C")),
            "lifecycle_stage": _lifecycle(frame, config.features.loyal_min_orders),
            "days_since_last_order": frame["recency_days"].to_numpy(),
            "frequency": frequency.to_numpy(),
            "monetary_total": monetary.round(2).to_numpy(),
            "aov": aov.round(2).to_numpy(),
            "country": _text(frame, "country"),
            "channel": _text(frame, "channel"),
            "top_cause": _features.labels(top_cause, _CAUSE_NAMES),
        },
        index=pd.Index(frame.index, name="customer_id"),
    )
    for i, column in enumerate(CAUSE_COLUMNS):
        out[column] = causes[:, i]
    out["reasons"] = reasons
    value = predicted_value(frame)
    out["p_alive"] = _optional(frame, "p_alive").round(DECIMALS)
    out["expected_days_to_next_order"] = _optional(frame, "expected_days_to_next_order").round(1)
    out["predicted_value_12m"] = value.round(2)
    out["value_at_risk"] = (p * value).round(2)
    return out[list(SCORE_COLUMNS[1:])]


def _explain(frame: pd.DataFrame, model: ChurnModel, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Return the probabilities (rounded), the cause family sums (n x families, rounded),
    ``top_cause`` (codes of :data:`_CAUSE_NAMES`) and ``reasons``.

    Customers go through in chunks of :data:`CHUNK_ROWS`: the feature matrix and the
    per-feature contributions exist for two chunks at a time, so memory stays bounded whatever
    the number of customers.  The probabilities and contributions of the next chunk (xgboost
    and the compiled TreeSHAP kernel, out of the GIL) are computed on a second thread while the
    reasons of this one are written.  Every output row depends only on its own customer, so
    the result equals a single pass.
    """
    sc = config.scoring
    n = len(frame)
    names = list(model.features)
    families = _family_positions(names)
    causes = np.empty((n, len(CAUSE_COLUMNS)), dtype=np.float64)
    top = np.empty(n, dtype=np.int64)
    p = np.empty(n, dtype=np.float64)
    reasons = []
    starts = list(range(0, max(n, 1), CHUNK_ROWS))

    by_chunk = model.algo == "xgboost"  # a tree ensemble scores each row alone: chunks change nothing
    if not by_chunk:
        p[:] = np.round(model.predict_proba(frame), DECIMALS)
    else:
        model._booster()  # its settings are made here once, before the second thread uses it

    def model_outputs(start: int) -> np.ndarray:
        x = model._x(frame.iloc[start:start + CHUNK_ROWS])
        if by_chunk:
            p[start:start + len(x)] = np.round(model.proba_of(x), DECIMALS)
        return model.contribution_values(x, approx=sc.contributions == "approx")

    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(model_outputs, starts[0])
        for k, start in enumerate(starts):
            values = upcoming.result()
            if k + 1 < len(starts):
                upcoming = pool.submit(model_outputs, starts[k + 1])
            part = frame.iloc[start:start + CHUNK_ROWS]
            _explain_chunk(part, start, values, names, families, config, causes, top, reasons)
            del values
    # One contiguous array; the chunks' buffers (scattered among the freed per-chunk work) are
    # handed back to the system, so that the later stages do not start from a fragmented heap.
    said = pd.array(pa.concat_arrays(reasons), dtype="str")
    del reasons
    memory.release()
    return p, causes, top, said


def _explain_chunk(part: pd.DataFrame, start: int, values: np.ndarray, names: list[str], families: list[int],
                   config: Config, causes: np.ndarray, top: np.ndarray, reasons: list) -> None:
    """Fill the rows of ``part`` (from row ``start``) in ``causes`` and ``top``; append its reasons."""
    sc = config.scoring
    by_feature = values[:, :len(names)]  # the bias (last column) belongs to no family
    family = np.zeros((len(part), len(FAMILIES)), dtype=np.float64)
    for i, position in enumerate(families):  # feature order: the sums equal family_contributions'
        family[:, position] += by_feature[:, i]
    family = np.round(family, DECIMALS)
    rows = slice(start, start + len(part))
    causes[rows] = family
    # FAMILIES lists the actionable families first, in order
    top[rows] = _top_cause_codes(family[:, :len(ACTIONABLE_FAMILIES)], sc.min_cause_contribution)
    reasons.append(_reasons.phrases(part, names, by_feature, top_n=3, recent_days=config.features.recent_days))


def _family_positions(names: list[str]) -> list[int]:
    """Return the position in ``schema.FAMILIES`` of each feature's cause family."""
    position = {f: i for i, f in enumerate(FAMILIES)}
    out = []
    for name in names:
        family = _features.family_of(name)
        if family not in position:
            raise ModelError(f"model feature '{name}' has unknown cause family '{family}'; retrain with `churnctl train`")
        out.append(position[family])
    return out


def _optional(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column in frame.columns:
        return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.full(len(frame), np.nan)


def predicted_value(frame: pd.DataFrame) -> np.ndarray:
    """Return the expected spend over the next 12 months per customer (base currency).

    The BG/NBD + Gamma-Gamma ``predicted_value_12m`` column when the features frame has it
    (``model.add_btyd``); otherwise, and for customers where it is missing, the documented
    fallback: the customer's historic yearly spend rate,
    ``monetary_total x 365 / max(tenure_days, 365)`` (a customer younger than a year is
    counted over a full year, so a first order is not extrapolated).
    """
    monetary = _optional(frame, "monetary_total")
    tenure = _optional(frame, "tenure_days")
    fallback = monetary * 365.0 / np.maximum(np.nan_to_num(tenure, nan=0.0), 365.0)
    model_value = _optional(frame, "predicted_value_12m")
    return np.where(np.isfinite(model_value), model_value, fallback)
