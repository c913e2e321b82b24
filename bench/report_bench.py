"""Measure the report for a big run: render time, page size, and how fast Chromium opens it.

    .venv/bin/python bench/report_bench.py [--customers 1000000] [--out bench/results/report]

Writes a synthetic run folder (scores.csv with N customers, run.json, the aggregate tables built
from synthetic orders), renders ``report.html`` with ``churnctl report``'s code, then opens it
3 times in headless Chromium (Playwright, ``/usr/bin/chromium``) and reports the load time
(navigation start to the load event) and the time until every figure has a size.  Prints one
JSON object and writes it to ``<out>/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from churnctl import export, schema  # noqa: E402
from churnctl.config import Config  # noqa: E402
from churnctl.report import aggregates, load_run, render  # noqa: E402

AS_OF = pd.Timestamp("2026-06-30")
COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "CH", "CA", "AU", "JP"])
CHANNELS = np.array(["shopify", "amazon", "ebay", "woocommerce", "web"])
CATEGORIES = np.array(["apparel", "beauty", "electronics", "books", "home", "pet", "jewelry", "shoes", "toys", "sports"])


def synthetic_run(n: int, out: Path, seed: int = 0) -> dict[str, float]:
    """Write a run folder for ``n`` customers; return seconds spent per step."""
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8))
    freq = rng.geometric(0.35, n)
    recency = rng.integers(0, 900, n)
    p = np.clip(rng.beta(2, 3, n) + recency / 2000, 0.001, 0.999).round(6)
    cfg = Config()
    tier = np.where(p >= cfg.scoring.risk_high, "high", np.where(p >= cfg.scoring.risk_medium, "medium", "low"))
    aov = rng.gamma(3, 30, n).round(2)
    scores = pd.DataFrame({
        "customer_id": ids, "churn_probability": p, "risk_tier": tier,
        "rfm_segment": rng.choice(np.array(schema.RFM_SEGMENTS), n), "value_tier": rng.choice(np.array(["A", "B", "C"]), n),
        "lifecycle_stage": np.where(freq == 1, "new", np.where(freq >= 5, "loyal", "repeat")),
        "days_since_last_order": recency, "frequency": freq, "monetary_total": (aov * freq).round(2), "aov": aov,
        "country": rng.choice(COUNTRIES, n), "channel": rng.choice(CHANNELS, n),
        "top_cause": rng.choice(np.array(schema.FAMILIES), n),
        **{c: rng.normal(0, 0.3, n).round(6) for c in schema.CAUSE_COLUMNS},
        "reasons": "no order for 120 days, usually every 22 days",
        "value_at_risk": (p * aov * 2).round(2),
    })
    out.mkdir(parents=True, exist_ok=True)
    export.write_csv(scores, out / "scores.csv")
    seconds = {"write_scores": time.perf_counter() - t}

    t = time.perf_counter()
    rows = np.repeat(np.arange(n), freq)
    last = AS_OF - pd.to_timedelta(recency, unit="D")
    back = rng.integers(0, 600, len(rows))
    back[np.r_[0, np.cumsum(freq)[:-1]]] = 0  # each customer's first row is their last order
    orders = pd.DataFrame({
        "customer_id": ids[rows], "order_date": last[rows] - pd.to_timedelta(back, unit="D"),
        "status": "completed", "amount": aov[rows], "category": rng.choice(CATEGORIES, len(rows)),
    })
    feats = pd.DataFrame({"mean_delivery_days": rng.gamma(2, 3, n)}, index=pd.Index(ids, name="customer_id"))
    tables = aggregates.build(orders, scores.set_index("customer_id"), AS_OF, features=feats)
    for name, frame in tables.items():
        export.write_csv(frame, out / "aggregates" / name)
    seconds["aggregates"] = time.perf_counter() - t
    seconds["orders"] = len(orders)

    tiers = pd.Series(tier).value_counts().to_dict()
    manifest = {
        "as_of": str(AS_OF.date()), "command": "run", "horizon_days": 90,
        "inputs": [{"kind": "orders", "file": "orders.csv", "read": len(orders) + 900, "accepted": len(orders),
                    "rejected": 700, "collapsed": 200, "rejected_by_reason": {"unparsable date": 400, "missing value": 300}}],
        "counts": {"customers_scored": n, "risk_tiers": tiers, "rows_rejected": 700, "rows_collapsed": 200,
                   "orders_after_as_of": 0, "actions": {"winback_90": n // 20, "price_coupon": n // 30},
                   "recipients": {"winback_90": n // 40, "price_coupon": n // 50},
                   "excluded_by_campaign": {"winback_90": {"no_consent": n // 40}, "price_coupon": {"no_consent": n // 75}}},
        "model": {"version": "0123456789ab", "algo": "xgboost", "trained_as_of": str(AS_OF.date()),
                  "metrics": {"roc_auc": 0.86, "pr_auc": 0.87, "brier": 0.14, "top_decile_lift": 2.2}},
        "outputs": [],
    }
    export.write_json(manifest, out / "run.json")
    return seconds


def open_in_chromium(page_path: Path, runs: int = 3) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    loads, figures = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHURNCTL_CHROMIUM", "/usr/bin/chromium"), args=args)
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            nav = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            drawn = page.evaluate("""() => { const all = [...document.querySelectorAll('svg.fig')];
                const ok = all.every(e => e.getBoundingClientRect().height > 0); return [ok, performance.now(), all.length]; }""")
            assert drawn[0], "a figure has no size"
            loads.append(nav / 1000)
            figures.append(drawn[1] / 1000)
            page.close()
        browser.close()
    return {"chromium_load_s": round(statistics.median(loads), 3),
            "chromium_figures_drawn_s": round(statistics.median(figures), 3), "figures": drawn[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "report")
    args = ap.parse_args()
    result: dict[str, object] = {"customers": args.customers}
    result.update({k: round(v, 2) for k, v in synthetic_run(args.customers, args.out).items()})
    result["scores_csv_mb"] = round((args.out / "scores.csv").stat().st_size / 2**20, 1)
    t = time.perf_counter()
    run = load_run(args.out)
    result["load_run_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    page = render(run, Config())
    result["render_s"] = round(time.perf_counter() - t, 2)
    (args.out / "report.html").write_text(page, encoding="utf-8")
    result["page_kb"] = round(len(page.encode()) / 1024)
    result.update(open_in_chromium(args.out / "report.html"))
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
