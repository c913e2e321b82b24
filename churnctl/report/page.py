"""The report page: a run's aggregates -> one self-contained HTML document (text only).

Every figure is an inline SVG (see ``charts``), the CSS is inline and a Content-Security-Policy
forbids any request, so the page opens from disk, offline, and can be mailed as one file.
Only aggregates reach the page: counts, shares and sums per group, never a customer row.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..config import Config
from ..schema import FAMILIES, LIFECYCLE_STAGES, RISK_TIERS
from . import charts
from .aggregates import DELIVERY_BANDS, DIMENSIONS, UNKNOWN, segments as build_segments
from .data import RunData

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: Smallest group shown among "groups with the highest churn" (and its share of all customers).
MIN_GROUP, MIN_GROUP_SHARE = 20, 0.002
COHORT_ROWS, COHORT_MONTHS = 18, 13
#: Smallest number of high-risk customers a group needs to get its own bar in "causes by group".
MIN_CELL = 5
#: Dimensions shown in their natural order rather than by size.
ORDERED = {"lifecycle_stage": LIFECYCLE_STAGES, "delivery_band": DELIVERY_BANDS}

CSS = """
:root{--ink:#222;--muted:#666;--line:#ddd;--accent:#2e86c1;--high:#c0392b;--medium:#e69b22;--low:#3a9d5d}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:var(--ink);
 margin:0 auto;max-width:1120px;padding:16px 20px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;padding-top:8px;border-top:2px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px;break-after:avoid}.muted,.note{color:var(--muted);font-size:12.5px}
nav{font-size:13px;margin:6px 0 10px}nav a{margin-right:12px;color:var(--accent);text-decoration:none}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card .v{font-size:21px;font-weight:600}.card .k{font-size:12px;color:var(--muted)}
.card .d{font-size:12px}.up{color:var(--high)}.down{color:var(--low)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;align-items:start}
figure{margin:6px 0;break-inside:avoid;page-break-inside:avoid}
figcaption{font-size:12.5px;color:var(--muted);margin-top:2px}
svg.fig{display:block;width:100%;height:auto;max-width:760px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 10px;break-inside:avoid}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.missing{border-left:4px solid var(--medium);background:#fdf6ec;padding:6px 10px;font-size:13px;margin:8px 0}
code{font-size:12.5px;background:#f3f3f3;padding:0 3px;border-radius:3px}
.tier-high{color:var(--high)}.tier-medium{color:var(--medium)}.tier-low{color:var(--low)}
@media (max-width:700px){.grid{grid-template-columns:1fr}body{padding:10px}}
@media print{@page{size:A4;margin:12mm}body{max-width:none;padding:0;font-size:11px}nav{display:none}
 h2{break-before:page;border-top:none}section:first-of-type h2{break-before:auto}
 .grid{grid-template-columns:1fr 1fr;gap:8px}svg.fig{max-width:100%}a{color:inherit;text-decoration:none}}
"""


# --- small HTML helpers -----------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_int(v: Any) -> str:
    try:
        return f"{int(round(float(v))):,}"
    except (TypeError, ValueError):
        return "—"


def fmt_num(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if not np.isfinite(f) else f"{f:,.{digits}f}"


def fmt_money(v: Any, currency: str = "") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return f"{f:,.0f} {esc(currency)}".strip()


def pct(v: float, digits: int = 0) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.{digits}f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          cls: str = "") -> str:
    """Return an HTML table; every cell is escaped unless it is a ``Markup`` string."""
    num = set(numeric)
    head = "".join(f'<th class="n">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{"n" if i in num else ""}">{c if isinstance(c, Markup) else esc(c)}</td>' for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class Markup(str):
    """Text already escaped (HTML built here from escaped parts)."""


def missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def delta(now: float | None, before: float | None, digits: int = 0, good_down: bool = True) -> str:
    """Return the change since the previous run as a small coloured text (empty without one)."""
    if now is None or before is None:
        return ""
    try:
        d = float(now) - float(before)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(d):
        return ""
    if d == 0:
        return '<span class="d">no change</span>'
    rel = f" ({d / float(before):+.1%})" if before else ""
    cls = ("down" if d < 0 else "up") if good_down else ("up" if d < 0 else "down")
    text = f"{d:+,.{digits}f}{rel}"
    return f'<span class="d {cls}">{text} since previous run</span>'


def card(label: str, value: str, change: str = "", tier: str = "") -> str:
    cls = f' class="v tier-{tier}"' if tier else ' class="v"'
    return f'<div class="card"><div{cls}>{value}</div><div class="k">{esc(label)}</div>{change}</div>'


# --- sections ---------------------------------------------------------------------------
def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    c = manifest.get("counts")
    return c if isinstance(c, dict) else {}


def value_at_risk(scores: pd.DataFrame) -> float | None:
    if "value_at_risk" not in scores.columns:
        return None
    return float(pd.to_numeric(scores["value_at_risk"], errors="coerce").sum())


def headline(run: RunData, currency: str) -> str:
    m, c = run.manifest, _counts(run.manifest)
    prev = run.previous or {}
    pc = _counts(prev)
    tiers = c.get("risk_tiers") or run.scores["risk_tier"].value_counts().to_dict()
    ptiers = pc.get("risk_tiers") or {}
    scored = c.get("customers_scored", len(run.scores))
    recipients = c.get("recipients") or {}
    contacts = sum(int(v) for v in recipients.values())
    pcontacts = sum(int(v) for v in (pc.get("recipients") or {}).values()) if pc else None
    var = value_at_risk(run.scores)
    cards = [
        card("customers scored", fmt_int(scored), delta(scored, pc.get("customers_scored"), good_down=False)),
        *(card(f"{t} risk", fmt_int(tiers.get(t, 0)), delta(tiers.get(t, 0), ptiers.get(t) if ptiers else None,
                                                             good_down=t != "low"), t) for t in RISK_TIERS),
        card("expected value at risk", fmt_money(var, currency) if var is not None else "—",
             delta(var, run.previous_value_at_risk)),
        card("contacts in campaigns", fmt_int(contacts), delta(contacts, pcontacts, good_down=False)),
        card("rows rejected", fmt_int(c.get("rows_rejected", 0)), delta(c.get("rows_rejected"), pc.get("rows_rejected"))),
    ]
    model = m.get("model") or {}
    metrics = model.get("metrics") or {}
    pmetrics = (prev.get("model") or {}).get("metrics") or {}
    parts = [f'<div class="cards">{"".join(cards)}</div>']
    if recipients:
        by = ", ".join(f"{esc(k)} {fmt_int(v)}" for k, v in sorted(recipients.items(), key=lambda kv: (-int(kv[1]), kv[0])))
        parts.append(f"<p>Contacts by campaign: {by}.</p>")
    if var is None:
        parts.append(missing("no value columns in this run's <code>scores.csv</code> (<code>value_at_risk</code>): "
                             "expected value at risk is not shown."))
    rows = []
    for key, label, lower_better in (("roc_auc", "ROC-AUC", False), ("pr_auc", "PR-AUC", False),
                                     ("brier", "Brier", True), ("log_loss", "log-loss", True),
                                     ("top_decile_lift", "top-decile lift", False)):
        if key in metrics:
            rows.append((label, fmt_num(metrics[key]), Markup(delta(metrics.get(key), pmetrics.get(key), 3,
                                                                     good_down=not lower_better) or "—")))
    prev_version = (prev.get("model") or {}).get("version")
    version = model.get("version") or "—"
    changed = ("" if not prev else " (same as previous run)" if prev_version == model.get("version")
               else f" (previous run: {esc(prev_version or '—')})")
    parts.append(f"<p>Model <code>{esc(version)}</code>{changed}, {esc(model.get('algo', ''))}, trained as of "
                 f"{esc(model.get('trained_as_of', '—'))}{' in this run' if model.get('trained_this_run') else ''}; "
                 "validation metrics on the held-out snapshot:</p>")
    if rows:
        parts.append(table(("metric", "value", "change"), rows, numeric=(1,)))
    else:
        parts.append(missing("no validation metrics in <code>run.json</code>."))
    if run.previous_path is not None:
        parts.append(f'<p class="note">Changes compare with the previous run <code>{esc(run.previous_path.name)}</code>'
                     f" (as of {esc(prev.get('as_of', '—'))}).</p>")
    else:
        parts.append('<p class="note">No previous run found beside this folder (a dated sibling folder with a '
                     "<code>run.json</code>): no changes shown.</p>")
    return "".join(parts)


def _bins(values: pd.Series, edges: Sequence[float], reverse: bool) -> np.ndarray:
    """Return score 1..5 (``reverse``: small values score 5, as recency) for each value."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values.to_numpy(np.float64), side="left")
    return 5 - idx if reverse else idx + 1


def _edge_labels(edges: Sequence[int], unit: str) -> list[str]:
    e = list(edges)
    labels = [f"≤{e[0]}{unit}" if unit or e[0] > 1 else f"{e[0]}"] + [f"{a + 1}-{b}{unit}" if b > a + 1 else f"{b}{unit}" for a, b in zip(e, e[1:])]
    return labels + [f">{e[-1]}{unit}"]


def customer_base(run: RunData, config: Config) -> str:
    s = run.scores
    parts = []
    sc = config.scoring
    parts.append('<div class="grid">')
    if {"days_since_last_order", "frequency"} <= set(s.columns):
        fe = config.features
        r = _bins(s["days_since_last_order"].fillna(1e9), fe.recency_edges, reverse=True)
        f = _bins(s["frequency"].fillna(0), fe.frequency_edges, reverse=False)
        cell = (5 - r) * 5 + (f - 1)  # row 0 = R5 (most recent)
        counts = np.bincount(cell, minlength=25).reshape(5, 5)
        sums = np.bincount(cell, weights=s["churn_probability"].to_numpy(np.float64), minlength=25).reshape(5, 5)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(counts > 0, sums / counts, np.nan)
        r_labels = _edge_labels(fe.recency_edges, "d")
        f_labels = _edge_labels(fe.frequency_edges, "")
        parts.append(figure(charts.rfm_grid(counts, rates, r_labels, f_labels),
                            "RFM segment map: customers per recency × frequency cell and their mean churn probability "
                            "(the expected churn rate of the cell)."))
    else:
        parts.append(missing("no recency/frequency columns in <code>scores.csv</code>: no RFM map."))
    parts.append(figure(charts.risk_histogram(s["churn_probability"], sc.risk_high, sc.risk_medium),
                        f"Churn-risk distribution: customers per 5-point probability bin; high ≥ {sc.risk_high:g}, "
                        f"medium ≥ {sc.risk_medium:g}."))
    parts.append("</div>")
    if "rfm_segment" in s.columns:
        g = s.groupby("rfm_segment")
        seg = pd.DataFrame({"n": g.size(), "p": g["churn_probability"].mean(),
                            "high": g["risk_tier"].apply(lambda t: (t == "high").mean())}).sort_values("n", ascending=False)
        parts.append("<h3>RFM segments</h3>")
        parts.append(table(("segment", "customers", "mean churn probability", "high risk"),
                           ((k, fmt_int(r.n), pct(r.p), pct(r.high)) for k, r in seg.iterrows()), numeric=(1, 2, 3)))

    cohorts = run.aggregates.get("cohorts")
    monthly = run.aggregates.get("monthly")
    parts.append('<h3>Cohort retention and repeat purchases</h3><div class="grid">')
    if cohorts is not None and len(cohorts):
        piv = cohorts.pivot_table(index="cohort_month", columns="months_since", values="customers", aggfunc="sum")
        size = piv.get(0)
        share = piv.div(size, axis=0) if size is not None else piv * np.nan
        share = share.iloc[-COHORT_ROWS:, :COHORT_MONTHS]
        parts.append(figure(charts.cohort_heatmap(share),
                            "Cohort retention: customers are grouped by the month of their first completed order "
                            "(cohort); each cell is the share of the cohort with at least one completed order "
                            f"that many months later (last {COHORT_ROWS} cohorts, first {COHORT_MONTHS - 1} months; "
                            "recent cohorts have had less time)."))
    else:
        parts.append(missing("no cohort aggregates in this run (<code>aggregates/cohorts.csv</code>): "
                             "rerun <code>churnctl score</code> or <code>churnctl run</code> to write them."))
    if monthly is not None and len(monthly):
        parts.append(figure(charts.repeat_rate(monthly.tail(36)),
                            "Repeat purchase rate by month = buyers of the month who had already bought in an earlier "
                            "month ÷ all buyers of the month (completed orders; the as-of month may be partial)."))
    else:
        parts.append(missing("no monthly aggregates in this run (<code>aggregates/monthly.csv</code>): "
                             "rerun <code>churnctl score</code> or <code>churnctl run</code> to write them."))
    parts.append("</div>")
    return "".join(parts)


def _segments(run: RunData) -> pd.DataFrame:
    seg = run.aggregates.get("segments")
    if seg is None or "customers" not in seg.columns:
        seg = build_segments(run.scores)
    for dim in DIMENSIONS:
        if dim not in seg.columns:
            seg[dim] = UNKNOWN
        seg[dim] = seg[dim].fillna(UNKNOWN).astype(str)
    return seg


def top_groups(seg: pd.DataFrame, *, max_dims: int = 3, limit: int = 8) -> pd.DataFrame:
    """Return the groups (1 to ``max_dims`` dimensions) with the highest share of high-risk customers.

    Groups smaller than ``max(MIN_GROUP, MIN_GROUP_SHARE x customers)`` and groups with an
    unknown value are left out; a group is kept only if its share is above each of its
    one-dimension-smaller parents (so "DE, marketplace" is listed only if it says more than "DE").
    """
    total = int(seg["customers"].sum())
    floor = max(MIN_GROUP, int(np.ceil(MIN_GROUP_SHARE * total)))
    dims = [d for d in DIMENSIONS if (seg[d] != UNKNOWN).any()]
    high_cols = [f"high_{f}" for f in FAMILIES if f"high_{f}" in seg.columns]
    shares: dict[tuple[str, ...], pd.Series] = {}
    rows = []
    for k in range(1, max_dims + 1):
        for combo in itertools.combinations(dims, k):
            g = seg.groupby(list(combo), sort=True)[["customers", "high", *high_cols]].sum()
            keys = g.index.to_frame(index=False)
            g = g[((keys != UNKNOWN).all(axis=1) & (g["customers"] >= floor).to_numpy()).to_numpy()]
            share = g["high"] / g["customers"]
            shares[combo] = share
            ok = np.ones(len(g), dtype=bool)
            for drop in combo if k > 1 else ():
                parent = shares[tuple(d for d in combo if d != drop)]
                ok &= share.to_numpy() > parent.reindex(g.index.droplevel(drop)).fillna(1.0).to_numpy()
            g, share = g[ok], share[ok]
            if g.empty:
                continue
            causes = g[high_cols].to_numpy(np.float64) if high_cols else np.zeros((len(g), 1))
            top = causes.argmax(axis=1)
            top_n = causes.max(axis=1)
            names = [", ".join(map(str, key if isinstance(key, tuple) else (key,))) for key in g.index]
            rows.append(pd.DataFrame({
                "group": names, "dims": k, "customers": g["customers"].to_numpy(np.int64),
                "high": g["high"].to_numpy(np.int64), "share": share.to_numpy(),
                "cause": np.where(top_n > 0, np.asarray([c[5:] for c in high_cols] or ["—"], dtype=object)[top], "—"),
                "cause_share": np.where(g["high"].to_numpy() > 0, top_n / np.maximum(g["high"].to_numpy(), 1), np.nan),
            }))
    columns = ["group", "dims", "customers", "high", "share", "cause", "cause_share"]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return out.sort_values(["share", "customers"], ascending=[False, False]).head(limit).reset_index(drop=True)


def causes(run: RunData) -> str:
    s = run.scores
    parts = []
    if "top_cause" not in s.columns:
        return missing("no <code>top_cause</code> column in <code>scores.csv</code>: no cause breakdown.")
    high = s[s["risk_tier"] == "high"]
    counts = high["top_cause"].value_counts().reindex(list(FAMILIES), fill_value=0)
    counts = counts[counts > 0] if counts.sum() else counts
    parts.append('<div class="grid">')
    parts.append(figure(charts.cause_bars(counts),
                        "High-risk customers by their top cause: the actionable family (price, logistics, service, "
                        "product, engagement) that adds the most risk, or activity (plain inactivity) when none does."))
    imp = run.aggregates.get("features")
    if imp is not None and len(imp) and {"feature", "importance"} <= set(imp.columns):
        imp = imp.assign(family=imp.get("family", "")).head(12)
        parts.append(figure(charts.importance_bars(imp),
                            "Features that matter most: share of the model's total gain (XGBoost) or of its "
                            "standardised coefficients (logistic), coloured by cause family."))
    else:
        fam = [c for c in (f"cause_{f}" for f in FAMILIES) if c in s.columns]
        if fam:
            means = high[fam].clip(lower=0).mean().sort_values(ascending=False)
            parts.append("<div><h3>Cause contributions</h3>" + table(
                ("family", "mean positive contribution (log-odds), high risk"),
                ((c[6:], fmt_num(v)) for c, v in means.items()), numeric=(1,)) +
                missing("no feature importance in this run (<code>aggregates/features.csv</code>).") + "</div>")
    parts.append("</div>")

    seg = _segments(run)
    high_cols = [f"high_{f}" for f in FAMILIES if f"high_{f}" in seg.columns]
    parts.append("<h3>Causes by group</h3>")
    labels = {"country": "country", "channel": "channel", "category": "category (most frequent)",
              "lifecycle_stage": "lifecycle stage", "delivery_band": "mean delivery time"}
    grid, absent = [], []
    for dim in ("country", "channel", "category", "lifecycle_stage", "delivery_band"):
        if not (seg[dim] != UNKNOWN).any():
            absent.append(labels[dim])
            continue
        g = seg[seg[dim] != UNKNOWN].groupby(dim)[["customers", "high", *high_cols]].sum()
        g = g[g["high"] > 0]
        if dim in ORDERED:
            shown = g.reindex([v for v in ORDERED[dim] if v in g.index])
        else:
            shown = g.sort_values("high", ascending=False).head(12)
        # Groups too small to show a share without pointing at a person are pooled as "other".
        small = shown["high"] < MIN_CELL
        rest = g.drop(index=shown.index[~small])
        shown = shown[~small]
        if rest["high"].sum() > 0:
            shown = pd.concat([shown, rest.sum().to_frame("other").T])
        if shown.empty:
            continue
        tbl = shown[high_cols].rename(columns=lambda c: c[5:])
        tbl.index = [f"{k} (n={int(n)})" for k, n in zip(shown.index, shown["high"])]
        grid.append(figure(charts.cause_share_by(tbl, dim, f"by-{dim}"),
                           f"Top cause of high-risk customers per {esc(labels[dim])} (n = high-risk customers; "
                           f"groups with fewer than {MIN_CELL}, and beyond the largest 12, pooled as other)."))
    parts.append('<div class="grid">' + "".join(grid) + "</div>")
    if absent:
        parts.append(missing("not in this run's aggregates: " + esc(", ".join(absent)) +
                             " (needs <code>aggregates/segments.csv</code>, written by <code>churnctl score</code>/"
                             "<code>run</code> when the orders have those columns)."))
    tops = top_groups(seg)
    parts.append("<h3>Groups with the highest churn</h3>")
    if len(tops):
        total = int(seg["customers"].sum())
        floor = max(MIN_GROUP, int(np.ceil(MIN_GROUP_SHARE * total)))
        parts.append(table(
            ("group", "customers", "high risk", "dominant cause", "summary"),
            ((r.group, fmt_int(r.customers), pct(r.share), f"{r.cause} ({pct(r.cause_share)} of high risk)",
              f"{r.group}: {pct(r.share)} high risk, {r.cause}") for r in tops.itertuples()),
            numeric=(1, 2)))
        parts.append(f'<p class="note">Groups of 1-3 dimensions (country, channel, category, mean delivery time, '
                     f"lifecycle stage) with at least {floor} customers, ranked by share of high-risk customers; a "
                     "combination is listed only when it is riskier than each of its parts.</p>")
    else:
        parts.append(missing("no group is large enough to rank."))
    return "".join(parts)


#: Metric columns of the comparison table: source key -> label.
METRICS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "brier": "Brier (lower is better)",
           "top_decile_lift": "top-decile lift", "lift_10": "top-decile lift", "ece": "calibration error (ECE)"}
#: Scorer names as shown.
SCORERS = {"model": "model", "xgboost": "model (xgboost)", "logistic": "model (logistic)",
           "logistic_rfm": "logistic on RFM", "bgnbd": "BG/NBD", "recency_baseline": "recency",
           "recency": "recency"}


def _metric_table(by_scorer: dict[str, Any] | None) -> pd.DataFrame | None:
    """Return scorers (rows) x metrics (columns) from ``{scorer: {metric: value}}`` mappings."""
    rows = {}
    for key, m in (by_scorer or {}).items():
        if isinstance(m, dict) and any(k in m for k in METRICS):
            rows[SCORERS.get(key, key)] = {label: m.get(k) for k, label in METRICS.items() if k in m}
    if not rows:
        return None
    frame = pd.DataFrame(rows).T.apply(pd.to_numeric, errors="coerce")
    order = list(dict.fromkeys(SCORERS.values()))  # the product model first, then the baselines
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: (
        order.index(frame.index[i]) if frame.index[i] in order else len(order), str(frame.index[i])))]
    return frame.loc[:, frame.notna().any()]


def _pick(frame: pd.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in frame.columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _legend(name: str, kind: str, metric: dict[str, Any], x: np.ndarray, y: np.ndarray) -> str:
    """Return a curve's legend label: the scorer, and its ROC-AUC / PR-AUC / lift@10% when known.

    The value comes from the backtest's pooled ``metric``; without it the ROC and PR areas are
    the trapezoids under the drawn curve, marked ≈.
    """
    key, shown = {"roc": ("roc_auc", "AUC"), "pr": ("pr_auc", "PR-AUC"), "lift": ("lift_10", "lift@10%")}[kind]
    label = SCORERS.get(str(name), str(name))
    try:
        value = float(metric.get(key))
    except (TypeError, ValueError):
        value = float("nan")
    if np.isfinite(value):
        return f"{label}, {shown} {value:.3f}"
    if kind in ("roc", "pr") and len(x) > 1:
        return f"{label}, {shown} ≈{float(np.trapezoid(y, x)):.3f}"
    return label


def decile_curves(rel: pd.DataFrame, overall: dict[str, Any] | None = None
                  ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Return ROC, precision-recall, lift/capture and reliability points per model from deciles.

    ``rel`` has one row per (model, decile of the predicted probability) with ``mean_predicted``,
    ``observed_rate`` and ``n`` (``reliability.csv``).  Walking the deciles from the riskiest
    down gives the ROC and precision-recall curves at decile resolution, and the capture curve
    (share of churners among the first x% contacted).  With ``overall`` (model -> pooled metrics)
    the ROC, PR and lift labels carry them (:func:`_legend`).
    """
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"roc": {}, "pr": {}, "lift": {}, "reliability": {}}
    if rel is None or not {"model", "decile", "mean_predicted", "observed_rate", "n"} <= set(rel.columns):
        return out
    if "cutoff" in rel.columns and (rel["cutoff"].astype(str) == "all").any():
        rel = rel[rel["cutoff"].astype(str) == "all"]
    for name, part in rel.groupby("model", sort=False):
        part = part.sort_values("decile", ascending=False)
        n = part["n"].to_numpy(np.float64)
        pos = n * part["observed_rate"].to_numpy(np.float64)
        neg = n - pos
        if pos.sum() <= 0 or neg.sum() <= 0:
            continue
        label = SCORERS.get(str(name), str(name))
        cum_n, cum_pos, cum_neg = np.cumsum(n), np.cumsum(pos), np.cumsum(neg)
        tpr = np.r_[0, cum_pos / pos.sum()]
        points = {"roc": (np.r_[0, cum_neg / neg.sum()], tpr), "pr": (tpr[1:], cum_pos / cum_n),
                  "lift": (np.r_[0, cum_n / n.sum()], tpr)}
        metric = (overall or {}).get(str(name))
        for kind, (x, y) in points.items():
            out[kind][_legend(str(name), kind, metric, x, y) if isinstance(metric, dict) else label] = (x, y)
        asc = part.iloc[::-1]
        out["reliability"][label] = (asc["mean_predicted"].to_numpy(np.float64), asc["observed_rate"].to_numpy(np.float64))
    return out


#: Evaluation models in drawing order.
EVAL_MODELS = ("xgboost", "logistic_rfm", "bgnbd", "recency")


def eval_curves(cur: pd.DataFrame | None, overall: dict[str, Any] | None = None,
                cutoff: str = "all") -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Return ROC, precision-recall and capture points per model from ``curves.csv`` rows.

    Rows of ``cutoff`` (pooled ``all`` by default; the latest cutoff when there is no pooled
    row).  Legend labels carry ROC-AUC, PR-AUC and lift in the top 10% from ``overall`` (the
    backtest's pooled metrics, ``evaluation.json``); without them the AUC is the trapezoid under
    the thinned curve (marked ≈).
    """
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"roc": {}, "pr": {}, "lift": {}}
    if cur is None or not {"model", "curve", "x", "y"} <= set(cur.columns):
        return out
    if "cutoff" in cur.columns:
        cuts = cur["cutoff"].astype(str)
        cur = cur[cuts == (cutoff if (cuts == cutoff).any() else cuts.max())]
    overall = overall or {}
    names = [m for m in EVAL_MODELS if m in set(cur["model"])] + sorted(set(cur["model"]) - set(EVAL_MODELS))
    for name in names:
        part = cur[cur["model"] == name]
        metric = overall.get(name) if isinstance(overall.get(name), dict) else {}
        for kind, key_out in (("roc", "roc"), ("pr", "pr"), ("capture", "lift")):
            c = part[part["curve"] == kind]
            if c.empty:
                continue
            x = pd.to_numeric(c["x"], errors="coerce").to_numpy(np.float64)
            y = pd.to_numeric(c["y"], errors="coerce").to_numpy(np.float64)
            out[key_out][_legend(str(name), key_out, metric, x, y)] = (x, y)
    return out


def model_quality(run: RunData) -> str:
    parts = []
    ev = run.evaluation
    summary = ev.get("summary") or {}
    em = _metric_table(summary.get("overall"))
    tm = _metric_table({k: v for k, v in (run.training_metrics or {}).items()
                        if k in ("model", "recency_baseline")})
    if tm is None and (run.manifest.get("model") or {}).get("metrics"):
        tm = _metric_table({"model": run.manifest["model"]["metrics"]})
    if tm is not None:
        parts.append("<h3>Validation at training</h3>")
        parts.append(figure(charts.metric_bars(tm, "validation", _curve_colors(tm.index)), "Model against the recency baseline (customers "
                            "ranked by days since their last order alone) on the latest training snapshot, held out "
                            "(<code>metrics.json</code> beside the model)."))
        parts.append(table(("scorer", *tm.columns), ((i, *(fmt_num(v) for v in r)) for i, r in tm.iterrows()),
                           numeric=tuple(range(1, len(tm.columns) + 1))))
    else:
        parts.append(missing("no validation metrics found (<code>metrics.json</code> beside the model is gone)."))
    if not ev:
        parts.append(missing("no evaluation in this run: run <code>churnctl evaluate</code> (and "
                             "<code>churnctl report --evaluation DIR</code>) for ROC and precision-recall curves, the "
                             "calibration (reliability) plot, the lift/capture chart and the BG/NBD baseline."))
        return "".join(parts)
    cutoffs = summary.get("cutoffs") or []
    where = esc(ev["path"].name if hasattr(ev.get("path"), "name") else ev.get("path", ""))
    parts.append(f"<h3>Backtest</h3><p>From <code>churnctl evaluate</code> (folder <code>{where}</code>, as of "
                 f"{esc(summary.get('as_of', '—'))}): models retrained at {len(cutoffs)} past cutoff(s) "
                 f"{esc(', '.join(map(str, cutoffs)))} and compared with what customers did next, pooled.</p>")
    if em is not None:
        parts.append(figure(charts.metric_bars(em, "backtest", _curve_colors(em.index)), "Model against baselines in the backtest."))
        parts.append(table(("scorer", *em.columns), ((i, *(fmt_num(v) for v in r)) for i, r in em.iterrows()),
                           numeric=tuple(range(1, len(em.columns) + 1))))
    deciles = decile_curves(ev.get("reliability"), summary.get("overall"))
    full = eval_curves(ev.get("curves"), summary.get("overall"))
    exact = bool(full["roc"])
    curves = {**(full if exact else deciles), "reliability": deciles["reliability"]}
    resolution = ("from <code>curves.csv</code> (every threshold, thinned to at most 200 points)" if exact
                  else "at decile resolution (rebuilt from <code>reliability.csv</code>)")
    captions = {
        "roc": f"ROC curve {resolution}, pooled over the cutoffs; ROC-AUC in the legend. Dashed: a random ranking.",
        "pr": f"Precision-recall curve {resolution}, pooled; PR-AUC (average precision) in the legend.",
        "reliability": "Calibration (reliability): observed churn rate against the mean predicted probability per "
                       "decile of the prediction, pooled; on the dashed diagonal the probabilities are honest.",
        "lift": ("Lift / capture: share of all churners among the riskiest x% of customers"
                 + (", per percentile" if exact else ", per decile") + "; lift = capture ÷ x (lift in the top 10% "
                 "in the legend). Dashed: contacting at random."),
    }
    specs = (("roc", "ROC curve", "false positive rate", "true positive rate"),
             ("pr", "Precision-recall", "recall", "precision"),
             ("reliability", "Calibration (reliability)", "mean predicted probability", "observed churn rate"),
             ("lift", "Lift / capture", "share of customers contacted, riskiest first", "share of churners captured"))
    if not exact and (deciles["roc"] or ev.get("reliability") is not None):
        parts.append(missing("this evaluation has no <code>curves.csv</code> (written by <code>churnctl evaluate"
                             "</code> since curves were added): ROC, precision-recall and capture curves are rebuilt "
                             "from the 10 deciles of <code>reliability.csv</code>, too coarse to read off exactly; "
                             "rerun <code>churnctl evaluate</code> for the full curves."))
    figs = [figure(charts.curve(k, t, curves[k], xl, yl, diagonal=k != "pr", colors=_curve_colors(curves[k])),
                   captions[k]) for k, t, xl, yl in specs if curves.get(k)]
    if figs:
        parts.append('<div class="grid">' + "".join(figs) + "</div>")
    else:
        parts.append(missing("the evaluation has no curves (<code>curves.csv</code>) and no reliability table "
                             "(<code>reliability.csv</code>): no curves."))
    return "".join(parts)


#: Line colour per evaluation model (the product model in the accent colour).
MODEL_COLORS = {"xgboost": "#2e86c1", "logistic": "#2e86c1", "model": "#2e86c1", "logistic_rfm": "#e69b22",
                "bgnbd": "#3a9d5d", "recency": "#7f8c8d", "recency_baseline": "#7f8c8d"}


def _curve_colors(series: dict[str, Any]) -> list[str | None]:
    """Return each series' colour, by the model its label names (None: the chart's palette)."""
    by_label = sorted(((SCORERS.get(k, k), v) for k, v in MODEL_COLORS.items()), key=lambda kv: -len(kv[0]))
    return [next((c for lab, c in by_label if label == lab or label.startswith(lab + ",")), None)
            for label in series]


def _offer_text(frame: pd.DataFrame) -> str:
    cols = [c for c in ("offer_type", "offer_value", "offer_min_spend") if c in frame.columns]
    if not cols or frame.empty:
        return "—"
    combos = frame[cols].fillna("").drop_duplicates().head(3)
    texts = []
    for r in combos.itertuples(index=False):
        d = dict(zip(cols, r))
        t = str(d.get("offer_type", "") or "none")
        if t in ("", "none"):
            texts.append("no offer")
            continue
        v = d.get("offer_value", "")
        ms = d.get("offer_min_spend", "")
        texts.append(f"{t} {v}" + (f" (min spend {ms})" if ms else ""))
    return "; ".join(texts)


def _max_cost(frame: pd.DataFrame, aov: pd.Series) -> float | None:
    """Return the offer cost if every recipient redeemed once at their average order value."""
    if "offer_type" not in frame.columns or "offer_value" not in frame.columns:
        return None
    value = pd.to_numeric(frame["offer_value"], errors="coerce").fillna(0).to_numpy()
    kind = frame["offer_type"].fillna("").to_numpy(dtype=str)
    order = aov.reindex(frame["customer_id"]).to_numpy(np.float64) if "customer_id" in frame.columns else np.nan
    cost = np.where(np.char.find(kind.astype(str), "percent") >= 0, value / 100.0 * order,
                    np.where(np.char.find(kind.astype(str), "amount") >= 0, value, 0.0))
    return float(np.nansum(cost))


def _budget_text(budgets: dict[str, dict[str, Any]] | None, name: str, currency: str) -> str:
    """Return a campaign's budget per run ("≤ 500 recipients; ≤ 2,000 USD"), "no budget" or "—" if unknown."""
    if budgets is None:
        return "—"
    b = budgets.get(name) or {}
    parts = []
    if b.get("max_recipients") is not None:
        parts.append(f"≤ {fmt_int(b['max_recipients'])} recipients")
    if b.get("max_offer_cost") is not None:
        parts.append(f"≤ {fmt_money(b['max_offer_cost'], currency)}")
    return "; ".join(parts) or "no budget"


def campaigns(run: RunData, currency: str) -> str:
    c = _counts(run.manifest)
    recipients = c.get("recipients") or {}
    actions = c.get("actions") or {}
    excluded = c.get("excluded_by_campaign") or {}
    holdouts = c.get("holdouts") or c.get("holdout") or {}
    costs = c.get("estimated_cost") or c.get("offer_cost") or c.get("costs") or {}
    budgets = run.budgets
    names = sorted(set(recipients) | set(k for k in actions if k != "no_action"))
    if not names:
        return missing("no campaigns in this run.")
    offers = run.offers
    aov = run.scores.set_index("customer_id")["aov"] if {"customer_id", "aov"} <= set(run.scores.columns) else pd.Series(dtype=float)
    rows, chart = [], {}
    reasons = sorted({r for v in excluded.values() if isinstance(v, dict) for r in v})
    for name in names:
        ex = excluded.get(name) or {}
        hold = holdouts.get(name, 0) if isinstance(holdouts, dict) else 0
        part = offers[offers["campaign"] == name] if offers is not None and "campaign" in offers.columns else pd.DataFrame()
        est = costs.get(name) if isinstance(costs, dict) else None
        if isinstance(est, dict):
            est = est.get("estimated_cost", est.get("cost"))
        if est is None and "offer_cost" in part.columns and part["offer_cost"].notna().any():
            est = float(pd.to_numeric(part["offer_cost"], errors="coerce").sum())  # cost if every recipient redeems
        upper = _max_cost(part, aov)
        cost = (fmt_money(est, currency) if est is not None else
                (f"≤ {fmt_money(upper, currency)}" if upper else "—"))
        rows.append((name, fmt_int(actions.get(name, 0)), fmt_int(recipients.get(name, 0)),
                     fmt_int(hold) if holdouts else "—", fmt_int(sum(int(v) for v in ex.values())),
                     _offer_text(part), cost, _budget_text(budgets, name, currency)))
        chart[name] = {"recipients": recipients.get(name, 0), "holdout": hold,
                       **{r: ex.get(r, 0) for r in reasons}}
    frame = pd.DataFrame(chart).T.fillna(0)
    frame = frame.loc[:, frame.sum() > 0] if frame.to_numpy().sum() else frame
    parts = [figure(charts.campaign_bars(frame), "Customers per campaign: recipients written to the campaign file, "
                    "holdouts kept out to measure uplift, and customers left out (no consent, unsubscribed, no email).")]
    parts.append(table(("campaign", "matched by rules", "recipients", "holdout", "excluded", "offer",
                        "estimated cost", "budget"), rows, numeric=(1, 2, 3, 4, 6, 7)))
    notes = []
    if not holdouts:
        notes.append("no holdouts recorded in this run")
    if costs:
        notes.append("estimated cost: the offers of this run's recipients if each is redeemed once, as recorded in "
                     "run.json")
    elif offers is None or "offer_cost" not in offers.columns:
        notes.append("costs marked ≤ are upper bounds: every recipient redeeming the offer once at their average "
                     "order value (free shipping not priced)")
    if run.budget_note:
        notes.append(run.budget_note)
    over = sum(int((excluded.get(n) or {}).get("over_budget", 0)) for n in names)
    if over:
        notes.append(f"{over:,} eligible customer(s) left out because a budget was reached (over budget)")
    if notes:
        parts.append(f'<p class="note">{esc("; ".join(notes))}.</p>')
    m = run.measure
    if m is not None:
        label = _pick(m, "campaign", "name") or m.columns[0]
        value = next(c for c in m.columns if "uplift" in c.lower())
        low = _pick(m, "ci_low", "uplift_low", "lower", "ci_lower", "uplift_ci_low")
        high = _pick(m, "ci_high", "uplift_high", "upper", "ci_upper", "uplift_ci_high")
        parts.append("<h3>Measured uplift</h3>" + figure(charts.uplift_chart(m, label, value, low, high),
                     "Measured uplift per campaign (recipients against holdout) with its confidence interval."))
        cols = [c for c in ("campaign", "treated", "holdout", "repeat_rate_treated", "repeat_rate_holdout", value,
                            low, high, "uplift_revenue_per_customer", "net_value", "complete") if c and c in m.columns]
        cols = list(dict.fromkeys(cols)) or list(m.columns)
        parts.append(table([c.replace("_", " ") for c in cols],
                           ([fmt_num(v) if isinstance(v, float) else v for v in r] for r in m[cols].itertuples(index=False))))
    else:
        parts.append(missing("no measured uplift: run <code>churnctl measure</code> once the campaign window has passed."))
    return "".join(parts)


def data_quality(run: RunData) -> str:
    m, c = run.manifest, _counts(run.manifest)
    inputs = [f for f in m.get("inputs", []) if isinstance(f, dict)]
    parts = []
    if inputs:
        parts.append(table(("kind", "file", "read", "accepted", "rejected", "collapsed"),
                           ((f.get("kind", ""), str(f.get("file", "")).replace("\\", "/").rsplit("/", 1)[-1],
                             fmt_int(f.get("read")), fmt_int(f.get("accepted")), fmt_int(f.get("rejected")),
                             fmt_int(f.get("collapsed"))) for f in inputs), numeric=(2, 3, 4, 5)))
    by_reason: dict[str, int] = {}
    rows = []
    for f in inputs:
        for reason, n in (f.get("rejected_by_reason") or {}).items():
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
            rows.append((str(f.get("file", "")).replace("\\", "/").rsplit("/", 1)[-1], reason, fmt_int(n)))
    if not by_reason and run.rejects is not None and "reason" in run.rejects.columns:
        by_reason = run.rejects["reason"].value_counts().to_dict()
    if by_reason:
        counts = pd.Series(by_reason).sort_values(ascending=False)
        parts.append('<div class="grid">' + figure(charts.reject_bars(counts), "Rejected rows by reason "
                     "(details, with the original values and personal data redacted, in <code>rejects.csv</code>).")
                     + "<div>" + table(("file", "reason", "rows"), rows, numeric=(2,)) + "</div></div>")
    else:
        parts.append("<p>No rejected rows.</p>")
    ranges = run.aggregates.get("inputs")
    if ranges is not None and len(ranges):
        parts.append("<h3>Input date ranges</h3>" + table(
            ("input", "first", "last", "rows"), ((r.kind, r.first, r.last, fmt_int(r.rows)) for r in ranges.itertuples()),
            numeric=(3,)))
    else:
        parts.append(missing("no input date ranges in this run (<code>aggregates/inputs.csv</code>)."))
    parts.append(f"<p>Orders dated after the as-of date (left out of this run): "
                 f"{fmt_int(c.get('orders_after_as_of', 0))}; duplicate rows collapsed: "
                 f"{fmt_int(c.get('rows_collapsed', 0))}.</p>")
    return "".join(parts)


SECTIONS = (("headline", "Headline"), ("customers", "Customer base"), ("causes", "Why customers leave"),
            ("model", "Model quality"), ("campaigns", "Campaigns"), ("data-quality", "Data quality"))


def render(run: RunData, config: Config | None = None) -> str:
    """Return the report of ``run`` as one self-contained HTML document."""
    config = config or Config()
    currency = config.base_currency
    m = run.manifest
    bodies = {
        "headline": headline(run, currency),
        "customers": customer_base(run, config),
        "causes": causes(run),
        "model": model_quality(run),
        "campaigns": campaigns(run, currency),
        "data-quality": data_quality(run),
    }
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{esc(t)}</h2>{bodies[k]}</section>' for k, t in SECTIONS)
    title = f"churnctl report — {m.get('as_of', '')}"
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="muted">{esc(m.get("command", ""))} as of {esc(m.get("as_of", ""))}, horizon '
        f'{esc(m.get("horizon_days", ""))} days; money in {esc(currency)}; generated {esc(generated)} by churnctl '
        f"{esc(__version__)}. Aggregates only: no customer is listed on this page.</p>"
        f"<nav>{nav}</nav></header>{sections}</body></html>\n"
    )
