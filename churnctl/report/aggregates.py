"""Small aggregate tables written beside a run's scores, for the report.

The run folder holds scores (one row per customer, no email) but not the order history.
``score``/``run`` therefore write, at score time, a few monthly and per-group counts into
``<run>/aggregates/``; the report reads those and never sees an order, an email or a name.
Every function here is pure: frames in, frame out, no I/O.

Files (all counts; no per-customer row anywhere):

``cohorts.csv``   cohort_month, months_since, customers
``monthly.csv``   month, buyers, new_buyers, repeat_buyers, orders, revenue
``segments.csv``  country, channel, category, delivery_band, lifecycle_stage, customers,
                  high, medium, low, sum_probability, [value_at_risk,] high_<family>...
``features.csv``  feature, family, importance (share of the model's total gain, or of |coef|)
``inputs.csv``    kind, first, last, rows (date range of each accepted input)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..schema import COMPLETED, FAMILIES, RISK_TIERS, day_end

#: Group dimensions of ``segments.csv``, in order.
DIMENSIONS = ("country", "channel", "category", "delivery_band", "lifecycle_stage")
#: Mean delivery days bands (upper bounds, inclusive) and their labels.
DELIVERY_EDGES = (5.0, 10.0, 20.0)
DELIVERY_BANDS = ("delivery <=5 days", "delivery 5-10 days", "delivery 10-20 days", "delivery >20 days")
UNKNOWN = "unknown"


def _month_number(dates: pd.Series) -> np.ndarray:
    """Return year * 12 + month - 1 per date (an integer month index)."""
    d = pd.DatetimeIndex(dates)
    return (d.year.to_numpy(np.int64) * 12 + d.month.to_numpy(np.int64) - 1)


def _month_label(number: np.ndarray | pd.Series) -> np.ndarray:
    n = np.asarray(number, dtype=np.int64)
    return np.char.add(np.char.add((n // 12).astype(str), "-"), np.char.zfill((n % 12 + 1).astype(str), 2))


def completed_until(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return the completed orders on or before ``as_of`` (all orders when there is no status)."""
    keep = orders["order_date"] < day_end(as_of)
    if "status" in orders.columns:
        keep &= orders["status"] == COMPLETED
    return orders.loc[keep]


def cohorts(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return cohort retention counts: one row per (cohort_month, months_since).

    A customer's cohort is the month of their first completed order; ``customers`` counts the
    cohort's customers with at least one completed order ``months_since`` months later
    (months_since 0 is the cohort size).
    """
    done = completed_until(orders, as_of)
    if done.empty:
        return pd.DataFrame({"cohort_month": pd.Series(dtype=str), "months_since": pd.Series(dtype=np.int64),
                             "customers": pd.Series(dtype=np.int64)})
    month = pd.DataFrame({"customer_id": done["customer_id"].to_numpy(), "m": _month_number(done["order_date"])})
    month = month.drop_duplicates()
    first = month.groupby("customer_id", sort=False)["m"].transform("min")
    since = month["m"] - first
    counts = pd.DataFrame({"c": first.to_numpy(), "s": since.to_numpy()}).value_counts().sort_index()
    return pd.DataFrame({
        "cohort_month": _month_label(counts.index.get_level_values("c")),
        "months_since": counts.index.get_level_values("s").to_numpy(np.int64),
        "customers": counts.to_numpy(np.int64),
    })


def monthly(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return one row per calendar month: buyers, new and repeat buyers, orders, revenue.

    ``buyers`` are customers with a completed order in the month; ``new_buyers`` those whose
    first completed order is in it; ``repeat_buyers = buyers - new_buyers`` (they had bought in
    an earlier month).  The repeat purchase rate of a month is repeat_buyers / buyers.
    """
    done = completed_until(orders, as_of)
    cols = {"month": pd.Series(dtype=str), "buyers": pd.Series(dtype=np.int64),
            "new_buyers": pd.Series(dtype=np.int64), "repeat_buyers": pd.Series(dtype=np.int64),
            "orders": pd.Series(dtype=np.int64), "revenue": pd.Series(dtype=np.float64)}
    if done.empty:
        return pd.DataFrame(cols)
    m = _month_number(done["order_date"])
    frame = pd.DataFrame({"customer_id": done["customer_id"].to_numpy(), "m": m,
                          "amount": done["amount"].to_numpy(np.float64)})
    by_month = frame.groupby("m")
    first = frame.groupby("customer_id", sort=False)["m"].min()
    out = pd.DataFrame({
        "buyers": by_month["customer_id"].nunique(),
        "new_buyers": first.value_counts(),
        "orders": by_month.size(),
        "revenue": by_month["amount"].sum().round(2),
    }).fillna({"new_buyers": 0})
    full = np.arange(out.index.min(), out.index.max() + 1)
    out = out.reindex(full).fillna(0)
    out["repeat_buyers"] = out["buyers"] - out["new_buyers"]
    out.insert(0, "month", _month_label(out.index.to_numpy()))
    ints = ["buyers", "new_buyers", "repeat_buyers", "orders"]
    out[ints] = out[ints].astype(np.int64)
    return out[list(cols)].reset_index(drop=True)


def customer_category(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Return each customer's most frequent category over completed orders (ties: alphabetical)."""
    if "category" not in orders.columns:
        return pd.Series(dtype=str, name="category")
    done = completed_until(orders, as_of)
    pairs = pd.DataFrame({"customer_id": done["customer_id"].to_numpy(),
                          "category": done["category"].to_numpy()}).dropna()
    if pairs.empty:
        return pd.Series(dtype=str, name="category")
    counts = pairs.value_counts().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n", "category"], ascending=[True, False, True])
    return counts.drop_duplicates("customer_id").set_index("customer_id")["category"]


def delivery_band(mean_delivery_days: pd.Series) -> pd.Series:
    """Return the band label of each mean delivery time; missing stays missing."""
    values = mean_delivery_days.to_numpy(np.float64, na_value=np.nan)
    idx = np.searchsorted(np.asarray(DELIVERY_EDGES), values, side="left")
    labels = np.asarray(DELIVERY_BANDS, dtype=object)[np.minimum(idx, len(DELIVERY_BANDS) - 1)]
    labels[np.isnan(values)] = None
    return pd.Series(labels, index=mean_delivery_days.index, name="delivery_band")


def segments(scores: pd.DataFrame, dims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return counts per combination of the group dimensions (see ``DIMENSIONS``).

    Parameters
    ----------
    scores : pd.DataFrame
        One row per customer (index or column ``customer_id``) with at least ``risk_tier`` and
        ``churn_probability``; ``country``, ``channel``, ``lifecycle_stage``, ``top_cause`` and
        ``value_at_risk`` are used when present.
    dims : pd.DataFrame, optional
        Extra per-customer dimensions indexed by customer_id (``category``, ``delivery_band``).

    Returns
    -------
    pd.DataFrame
        One row per non-empty group; a missing dimension value reads ``unknown``.
    """
    s = scores.set_index("customer_id") if "customer_id" in scores.columns else scores
    frame = pd.DataFrame(index=s.index)
    for dim in DIMENSIONS:
        if dim in s.columns:
            col = s[dim]
        elif dims is not None and dim in dims.columns:
            col = dims[dim].reindex(s.index)
        else:
            col = pd.Series(None, index=s.index, dtype=object)
        frame[dim] = col.astype(object).where(col.notna() & (col.astype(str) != ""), UNKNOWN).astype(str)
    tier = s["risk_tier"].astype(str)
    for t in RISK_TIERS:
        frame[t] = (tier == t).to_numpy(np.int64)
    frame["sum_probability"] = s["churn_probability"].to_numpy(np.float64)
    if "value_at_risk" in s.columns:
        frame["value_at_risk"] = pd.to_numeric(s["value_at_risk"], errors="coerce").fillna(0).to_numpy()
    cause = s["top_cause"].astype(str) if "top_cause" in s.columns else pd.Series("", index=s.index)
    high = tier == "high"
    for fam in FAMILIES:
        frame[f"high_{fam}"] = ((cause == fam) & high).to_numpy(np.int64)
    frame["customers"] = 1
    out = frame.groupby(list(DIMENSIONS), sort=True).sum().reset_index()
    first = ["customers", *RISK_TIERS]
    rest = [c for c in out.columns if c not in (*DIMENSIONS, *first)]
    out["sum_probability"] = out["sum_probability"].round(4)
    return out[[*DIMENSIONS, *first, *rest]]


def feature_importance(model: Any) -> pd.DataFrame:
    """Return the model's features with their family and share of importance, largest first.

    XGBoost: total gain per feature; logistic: |coefficient| on standardised inputs.  Shares
    sum to 1.  Empty when the model exposes neither.
    """
    from ..features import family_of

    names = list(getattr(model, "features", []))
    values = np.zeros(len(names))
    try:
        if getattr(model, "algo", None) == "xgboost":
            gain = model.estimator.get_booster().get_score(importance_type="total_gain")
            for key, v in gain.items():
                i = int(key[1:]) if key.startswith("f") and key[1:].isdigit() else (
                    names.index(key) if key in names else -1)
                if 0 <= i < len(names):
                    values[i] = v
        else:
            values = np.abs(np.asarray(model.estimator[-1].coef_[0], dtype=np.float64))
    except Exception:  # noqa: BLE001 - importance is a nicety; an odd estimator gives none
        values = np.zeros(len(names))
    total = values.sum()
    if not names or total <= 0:
        return pd.DataFrame({"feature": pd.Series(dtype=str), "family": pd.Series(dtype=str),
                             "importance": pd.Series(dtype=np.float64)})

    def family(name: str) -> str:
        try:
            return family_of(name)
        except Exception:  # noqa: BLE001
            return ""

    out = pd.DataFrame({"feature": names, "family": [family(n) for n in names],
                        "importance": np.round(values / total, 6)})
    return out.sort_values(["importance", "feature"], ascending=[False, True]).reset_index(drop=True)


def input_ranges(orders: pd.DataFrame, events: pd.DataFrame | None) -> pd.DataFrame:
    """Return the first and last date and the row count of each accepted input frame."""
    rows = []
    for kind, frame, column in (("orders", orders, "order_date"), ("events", events, "event_time")):
        if frame is None or column not in frame.columns:
            continue
        dates = pd.to_datetime(frame[column])
        rows.append({"kind": kind, "first": None if dates.empty else str(dates.min().date()),
                     "last": None if dates.empty else str(dates.max().date()), "rows": len(frame)})
    return pd.DataFrame(rows, columns=["kind", "first", "last", "rows"])


def build(orders: pd.DataFrame, scores: pd.DataFrame, as_of: pd.Timestamp, *,
          features: pd.DataFrame | None = None, events: pd.DataFrame | None = None,
          model: Any = None) -> dict[str, pd.DataFrame]:
    """Return every aggregate table by file name (``cohorts.csv`` ...), ready to write."""
    dims = pd.DataFrame(index=pd.Index(scores.index, name="customer_id"))
    category = customer_category(orders, as_of)
    if len(category):
        dims["category"] = category.reindex(dims.index)
    if features is not None and "mean_delivery_days" in features.columns:
        dims["delivery_band"] = delivery_band(features["mean_delivery_days"]).reindex(dims.index)
    out = {
        "cohorts.csv": cohorts(orders, as_of),
        "monthly.csv": monthly(orders, as_of),
        "segments.csv": segments(scores, dims),
        "inputs.csv": input_ranges(orders, events),
    }
    if model is not None:
        out["features.csv"] = feature_importance(model)
    return out
