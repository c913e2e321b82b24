"""Measure what worked: treated versus holdout customers, per campaign and run, from the ledger.

For every contact (``ledger.contacts``) the outcome window is ``send_at_utc < order_date <=
send_at_utc + window_days`` (the run's as-of day + 1 when a contact has no send time).
Only completed orders count (all orders when the file has no status).

Per campaign and run (and pooled over runs as ``run_id = all``):

* ``repeat_rate_*``: share of customers with at least one completed order in the window;
* ``revenue_per_customer_*``: mean order amount in the window (base currency), zeros included;
* ``offer_cost``: estimated cost of the offers redeemed: the ledger's ``offer_cost`` of each
  treated customer who ordered in the window (holdout customers got no offer);
* ``uplift_repeat_rate`` = treated - holdout rate, with a 95% confidence interval (Agresti-Caffo:
  the normal interval after adding one buyer and one non-buyer to each group, which keeps its
  coverage for small groups and rates near 0 or 1);
* ``uplift_revenue_per_customer`` likewise (Welch standard error);
* ``net_value_per_customer`` = revenue uplift - offer cost per treated customer, and
  ``net_value`` = that x treated customers: the incremental revenue the campaign brought after
  paying for its offers (revenue, not margin).

``complete`` is false while a window has not ended at ``as_of`` (default: the latest order).
Groups smaller than 2 give empty intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
COLUMNS = ("campaign", "run_id", "treated", "holdout", "repeat_rate_treated", "repeat_rate_holdout",
           "uplift_repeat_rate", "uplift_ci_low", "uplift_ci_high", "revenue_per_customer_treated",
           "revenue_per_customer_holdout", "uplift_revenue_per_customer", "uplift_revenue_ci_low",
           "uplift_revenue_ci_high", "offer_cost", "offer_cost_per_treated", "net_value_per_customer",
           "net_value", "complete")


def outcomes(contacts: pd.DataFrame, orders: pd.DataFrame, *, window_days: int) -> pd.DataFrame:
    """Return ``contacts`` with ``bought`` (bool), ``revenue`` and ``window_end`` per contact row."""
    c = contacts.reset_index(drop=True)
    send = pd.to_datetime(c["send_at_utc"])
    fallback = pd.to_datetime(c["as_of"]) + pd.Timedelta(days=1)
    start = send.fillna(fallback)
    end = start + pd.Timedelta(days=window_days)
    o = orders
    if "status" in o.columns:
        o = o.loc[o["status"].eq("completed").to_numpy(dtype=bool, na_value=False)]
    o = o[["customer_id", "order_date", "amount"]]
    pairs = pd.DataFrame({"row": np.arange(len(c)), "customer_id": c["customer_id"].astype(str).to_numpy(),
                          "start": start.to_numpy(), "end": end.to_numpy()})
    joined = pairs.merge(o.assign(customer_id=o["customer_id"].astype(str)), on="customer_id", how="inner")
    inside = (joined["order_date"] > joined["start"]) & (joined["order_date"] <= joined["end"])
    revenue = joined.loc[inside.to_numpy(dtype=bool)].groupby("row")["amount"].agg(["sum", "size"])
    rev = revenue["sum"].reindex(np.arange(len(c)), fill_value=0.0).to_numpy(dtype=float)
    n = revenue["size"].reindex(np.arange(len(c)), fill_value=0).to_numpy()
    return c.assign(bought=n > 0, revenue=rev, window_end=end)


def _summary(block: pd.DataFrame, as_of: pd.Timestamp) -> dict:
    t = block.loc[block["group_name"].eq("treated").to_numpy(dtype=bool)]
    h = block.loc[block["group_name"].eq("holdout").to_numpy(dtype=bool)]
    nt, nh = len(t), len(h)
    pt = t["bought"].mean() if nt else np.nan
    ph = h["bought"].mean() if nh else np.nan
    rt = t["revenue"].mean() if nt else np.nan
    rh = h["revenue"].mean() if nh else np.nan
    ok = nt >= 2 and nh >= 2
    # Agresti-Caffo: one success and one failure added to each group for the interval only,
    # so small or all-zero groups do not get a zero-width interval.
    at, ah = (t["bought"].sum() + 1) / (nt + 2), (h["bought"].sum() + 1) / (nh + 2)
    se_p = np.sqrt(at * (1 - at) / (nt + 2) + ah * (1 - ah) / (nh + 2)) if ok else np.nan
    mid = at - ah
    se_r = np.sqrt(t["revenue"].var(ddof=1) / nt + h["revenue"].var(ddof=1) / nh) if ok else np.nan
    cost = float(pd.to_numeric(t["offer_cost"], errors="coerce").fillna(0.0)[t["bought"]].sum()) if nt else 0.0
    cost_per = cost / nt if nt else np.nan
    up_p, up_r = pt - ph, rt - rh
    net_per = up_r - cost_per
    return {
        "treated": nt, "holdout": nh, "repeat_rate_treated": pt, "repeat_rate_holdout": ph,
        "uplift_repeat_rate": up_p, "uplift_ci_low": mid - Z95 * se_p, "uplift_ci_high": mid + Z95 * se_p,
        "revenue_per_customer_treated": rt, "revenue_per_customer_holdout": rh,
        "uplift_revenue_per_customer": up_r, "uplift_revenue_ci_low": up_r - Z95 * se_r,
        "uplift_revenue_ci_high": up_r + Z95 * se_r, "offer_cost": cost, "offer_cost_per_treated": cost_per,
        "net_value_per_customer": net_per, "net_value": net_per * nt if nt else np.nan,
        "complete": bool(pd.Timestamp(block["window_end"].max()) <= as_of),
    }


def compare(contacts: pd.DataFrame, orders: pd.DataFrame, *, window_days: int = 30,
            as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Return one row per (campaign, run) plus one pooled row per campaign (``run_id`` ``all``).

    Parameters
    ----------
    contacts : DataFrame
        ``ledger.contacts``: ``run_id, as_of, customer_id, campaign, group_name, offer_cost,
        send_at_utc``.
    orders : DataFrame
        Canonical orders frame (``customer_id, order_date, amount`` and optional ``status``).
    window_days : int
        Days after the planned send during which an order counts.
    as_of : Timestamp, optional
        Windows ending after it are incomplete; default the latest order date.

    Returns
    -------
    DataFrame
        :data:`COLUMNS`, sorted by campaign then run; rates and money rounded to 4 / 2 decimals.
    """
    if window_days < 1:
        from .errors import InputError

        raise InputError(f"--window-days must be 1 or more, got {window_days}")
    if contacts.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    limit = pd.Timestamp(as_of) + pd.Timedelta(days=1) if as_of is not None else pd.Timestamp(orders["order_date"].max())
    frame = outcomes(contacts, orders, window_days=window_days)
    rows = []
    for campaign, block in frame.groupby("campaign", sort=True):
        for run_id, sub in block.groupby("run_id", sort=True):
            rows.append({"campaign": campaign, "run_id": str(run_id), **_summary(sub, limit)})
        rows.append({"campaign": campaign, "run_id": "all", **_summary(block, limit)})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    rates = [c for c in COLUMNS if "rate" in c or c.startswith("uplift_ci")]
    money = [c for c in COLUMNS if c not in rates and c not in ("campaign", "run_id", "treated", "holdout", "complete")]
    table[rates] = table[rates].astype(float).round(4)
    table[money] = table[money].astype(float).round(2)
    return table
