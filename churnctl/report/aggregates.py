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

from dataclasses import dataclass
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
    months = np.asarray(dates, dtype="datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return months + 1970 * 12  # months since 1970-01 -> year * 12 + month - 1


def _month_label(number: np.ndarray | pd.Series) -> np.ndarray:
    n = np.asarray(number, dtype=np.int64)
    return np.char.add(np.char.add((n // 12).astype(str), "-"), np.char.zfill((n % 12 + 1).astype(str), 2))


def completed_until(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return the completed orders on or before ``as_of`` (all orders when there is no status)."""
    return orders.loc[_completed_mask(orders, as_of)]


def _completed_mask(orders: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    keep = (orders["order_date"] < day_end(as_of)).to_numpy(dtype=bool, na_value=False)
    if "status" in orders.columns:
        keep = keep & orders["status"].eq(COMPLETED).to_numpy(dtype=bool, na_value=False)
    return keep


def _unique(keys: np.ndarray, size: int | None = None, *, counts: bool = True
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (sorted distinct keys, count of each, or None when ``counts`` is False).

    ``size``: the keys are known to be below it; when they are not negative and the range is
    not much larger than the array, they are counted (or marked) in a table, with no sort.
    Otherwise one sort (numpy 2.4's ``np.unique`` is several times slower on large integer
    arrays).
    """
    if size is not None and len(keys) and int(keys.min()) >= 0:
        if counts and size <= 4 * len(keys) + (1 << 20):
            table = np.bincount(keys, minlength=size)
            distinct = np.flatnonzero(table)
            return distinct.astype(np.int64, copy=False), table[distinct]
        if not counts and size <= 16 * len(keys) + (1 << 20):
            mark = np.zeros(size, dtype=bool)
            mark[keys] = True
            return np.flatnonzero(mark).astype(np.int64, copy=False), None
    keys = np.sort(keys, kind="stable")
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.intp)
    return keys[starts], (np.diff(np.r_[starts, len(keys)]) if counts else None)


def _codes(values: pd.Series, keep: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Return (integer code per kept row, -1 when missing; the distinct values), via Arrow."""
    import pyarrow as pa

    arr = pa.array(values.array, from_pandas=True)  # .array: see csvtext._column
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = arr.filter(pa.array(keep)).dictionary_encode()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, pd.Index(enc.dictionary.to_pandas(), dtype=values.dtype)


def _dense(codes: tuple[np.ndarray, Any], keep: np.ndarray, dtype: Any) -> tuple[np.ndarray, pd.Index]:
    """Return :func:`_codes` of the kept rows from the codes of all rows (``export.customer_codes``):
    the kept rows' customers renumbered 0..k-1 (-1 stays missing), and those customers."""
    import pyarrow as pa

    all_codes, ids = codes
    kept = all_codes[keep]
    present = np.bincount(kept[kept >= 0], minlength=len(ids)) > 0
    remap = np.full(len(ids) + 1, -1, dtype=np.int64)  # remap[-1]: missing stays -1
    remap[np.flatnonzero(present)] = np.arange(int(present.sum()))
    return remap[kept], pd.Index(ids.filter(pa.array(present)).to_pandas(), dtype=dtype)


@dataclass
class _Purchases:
    """The completed orders up to as_of as integer arrays, built once for every table.

    ``cust``: customer code per order (codes index ``customers``); ``month``: year * 12 +
    month - 1; ``pairs``: the distinct (customer code, month) pairs sorted by customer then
    month; ``first``: each customer's first month (indexed by code).
    """

    customers: pd.Index
    cust: np.ndarray
    month: np.ndarray
    amount: np.ndarray
    #: (code per order, -1 when missing; names), or None without a category column.
    category: tuple[np.ndarray, pd.Index] | None
    pair_cust: np.ndarray
    pair_month: np.ndarray
    first: np.ndarray

    @classmethod
    def of(cls, orders: pd.DataFrame, as_of: pd.Timestamp, codes: tuple[np.ndarray, Any] | None = None
           ) -> _Purchases:
        keep = _completed_mask(orders, as_of)
        if codes is not None:
            cust, customers = _dense(codes, keep, orders["customer_id"].dtype)
        else:
            cust, customers = _codes(orders["customer_id"], keep)
        month = _month_number(orders["order_date"].to_numpy()[keep])
        amount = (orders["amount"].to_numpy(np.float64, na_value=np.nan)[keep] if "amount" in orders.columns
                  else np.zeros(len(month)))
        category = _codes(orders["category"], keep) if "category" in orders.columns else None
        if len(month):
            base = int(month.min())
            span = int(month.max()) - base + 1
            key, _ = _unique(cust * span + (month - base), (int(cust.max()) + 1) * span, counts=False)
            pair_cust, pair_month = key // span, key % span + base
            starts = np.flatnonzero(np.r_[True, pair_cust[1:] != pair_cust[:-1]])
            first = pair_month[starts]  # pairs are sorted: a customer's first month comes first
        else:
            pair_cust = pair_month = first = np.zeros(0, dtype=np.int64)
        return cls(pd.Index(customers, name="customer_id"), cust, month, amount, category,
                   pair_cust, pair_month, first)


def cohorts(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return cohort retention counts: one row per (cohort_month, months_since).

    A customer's cohort is the month of their first completed order; ``customers`` counts the
    cohort's customers with at least one completed order ``months_since`` months later
    (months_since 0 is the cohort size).
    """
    return _cohorts(_Purchases.of(orders, as_of))


def _cohorts(p: _Purchases) -> pd.DataFrame:
    if not len(p.month):
        return pd.DataFrame({"cohort_month": pd.Series(dtype=str), "months_since": pd.Series(dtype=np.int64),
                             "customers": pd.Series(dtype=np.int64)})
    first = p.first[p.pair_cust]
    since = p.pair_month - first
    span = int(since.max()) + 1
    key, counts = _unique((first - int(first.min())) * span + since, (int(first.max()) - int(first.min()) + 1) * span)
    return pd.DataFrame({
        "cohort_month": _month_label(key // span + int(first.min())),
        "months_since": (key % span).astype(np.int64),
        "customers": counts.astype(np.int64),
    })


def monthly(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return one row per calendar month: buyers, new and repeat buyers, orders, revenue.

    ``buyers`` are customers with a completed order in the month; ``new_buyers`` those whose
    first completed order is in it; ``repeat_buyers = buyers - new_buyers`` (they had bought in
    an earlier month).  The repeat purchase rate of a month is repeat_buyers / buyers.
    """
    return _monthly(_Purchases.of(orders, as_of))


def _monthly(p: _Purchases) -> pd.DataFrame:
    cols = {"month": pd.Series(dtype=str), "buyers": pd.Series(dtype=np.int64),
            "new_buyers": pd.Series(dtype=np.int64), "repeat_buyers": pd.Series(dtype=np.int64),
            "orders": pd.Series(dtype=np.int64), "revenue": pd.Series(dtype=np.float64)}
    if not len(p.month):
        return pd.DataFrame(cols)
    base = int(p.month.min())
    n = int(p.month.max()) - base + 1
    buyers = np.bincount(p.pair_month - base, minlength=n)
    new = np.bincount(p.first - base, minlength=n)
    orders = np.bincount(p.month - base, minlength=n)
    # pandas' (compensated) sum, as before, so the rounded revenue does not move.
    revenue = pd.Series(p.amount).groupby(p.month).sum().round(2).reindex(np.arange(base, base + n)).fillna(0)
    return pd.DataFrame({
        "month": _month_label(np.arange(base, base + n)),
        "buyers": buyers.astype(np.int64),
        "new_buyers": new.astype(np.int64),
        "repeat_buyers": (buyers - new).astype(np.int64),
        "orders": orders.astype(np.int64),
        "revenue": revenue.to_numpy(np.float64),
    })


def customer_category(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Return each customer's most frequent category over completed orders (ties: alphabetical)."""
    return _category(_Purchases.of(orders, as_of))


def _category(p: _Purchases) -> pd.Series:
    empty = pd.Series(dtype=str, name="category")
    if p.category is None:
        return empty
    codes, names = p.category
    present = codes >= 0
    if not present.any():
        return empty
    # Renumber the categories alphabetically, so the smallest code is the first name.
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(names.to_numpy(dtype=object), kind="stable")] = np.arange(len(names))
    ncat = len(names)
    cust = p.cust[present]
    key, counts = _unique(cust * ncat + rank[codes[present]], (int(cust.max()) + 1) * ncat)
    cust = key // ncat
    # Per customer: the highest count, ties to the alphabetically first category. The keys are
    # sorted by customer, then category rank: the first row of a customer with its highest count.
    starts = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
    highest = np.repeat(np.maximum.reduceat(counts, starts), np.diff(np.r_[starts, len(cust)]))
    best = np.flatnonzero(counts == highest)
    top = best[np.r_[True, cust[best][1:] != cust[best][:-1]]]
    alphabetical = names.to_numpy(dtype=object)[np.argsort(names.to_numpy(dtype=object), kind="stable")]
    return pd.Series(alphabetical[key[top] % ncat], index=p.customers[cust[top]], name="category")


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
        text = col.astype(str)
        frame[dim] = text.where(col.notna().to_numpy() & text.ne("").to_numpy(dtype=bool, na_value=False),
                                UNKNOWN)
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


@dataclass
class OrderTables:
    """The tables that need the order history, computed as soon as the orders are loaded.

    ``score`` builds them right after the features so the orders frame can be released before
    scoring; :func:`finish` adds the per-customer tables once the scores exist.
    """

    cohorts: pd.DataFrame
    monthly: pd.DataFrame
    inputs: pd.DataFrame
    #: Each customer's most frequent category (see :func:`customer_category`).
    category: pd.Series


def from_orders(orders: pd.DataFrame, as_of: pd.Timestamp, *,
                events: pd.DataFrame | None = None, codes: tuple[np.ndarray, Any] | None = None) -> OrderTables:
    """Return the order-based tables (cohorts, monthly, input ranges, categories) in one pass.

    ``codes`` (optional): the orders' customer codes and distinct ids as
    ``export.customer_codes`` returns them (saves a hash pass over the ids)."""
    p = _Purchases.of(orders, as_of, codes)
    return OrderTables(_cohorts(p), _monthly(p), input_ranges(orders, events), _category(p))


def _align(values: pd.Series, index: pd.Index) -> pd.Series:
    """Return ``values.reindex(index)``; ids matched by an Arrow hash join (pandas' string
    ``get_indexer`` is the slow part otherwise)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.index.equals(index):
        return values.set_axis(index)
    if not (pd.api.types.is_string_dtype(index.dtype) and pd.api.types.is_string_dtype(values.index.dtype)):
        return values.reindex(index)
    pos = pc.index_in(pa.array(index.array, from_pandas=True),
                     value_set=pa.array(values.index.array, from_pandas=True))
    taken = pa.array(values.array, from_pandas=True).take(pos).to_numpy(zero_copy_only=False)
    return pd.Series(taken, index=index, name=values.name, dtype=values.dtype)


def finish(tables: OrderTables, scores: pd.DataFrame, *, mean_delivery_days: pd.Series | None = None,
           model: Any = None) -> dict[str, pd.DataFrame]:
    """Return every aggregate table by file name (``cohorts.csv`` ...), ready to write.

    ``mean_delivery_days``: the feature of that name per customer (for ``delivery_band``).
    """
    dims = pd.DataFrame(index=pd.Index(scores.index, name="customer_id"))
    if len(tables.category):
        dims["category"] = _align(tables.category, dims.index)
    if mean_delivery_days is not None:
        dims["delivery_band"] = _align(delivery_band(mean_delivery_days), dims.index)
    out = {
        "cohorts.csv": tables.cohorts,
        "monthly.csv": tables.monthly,
        "segments.csv": segments(scores, dims),
        "inputs.csv": tables.inputs,
    }
    if model is not None:
        out["features.csv"] = feature_importance(model)
    return out


def build(orders: pd.DataFrame, scores: pd.DataFrame, as_of: pd.Timestamp, *,
          features: pd.DataFrame | None = None, events: pd.DataFrame | None = None,
          model: Any = None) -> dict[str, pd.DataFrame]:
    """Return every aggregate table by file name (``cohorts.csv`` ...), ready to write."""
    delivery = features["mean_delivery_days"] if features is not None and "mean_delivery_days" in features else None
    return finish(from_orders(orders, as_of, events=events), scores, mean_delivery_days=delivery, model=model)
