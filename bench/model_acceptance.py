"""Acceptance figures of issue 4: backtest of the model against the baselines, and cause recovery.

Run from the repository root: ``.venv/bin/python bench/model_acceptance.py`` (a few minutes on
2 cores).  Datasets: the committed sample (2,500 customers, seed 7, horizon 90) and a second,
differently shaped one from the generator (1,800 customers, seed 23, 2.5 years ending
2026-03-31, price-heavy churn mix, horizon 60).  Also runs the orders-only variant (no events,
no delivery or review columns) and times BG/NBD on 1M customers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from churnctl import btyd, evaluate, ingest, model, sample, scoring  # noqa: E402
from churnctl.config import Config  # noqa: E402

ORDERS_ONLY_DROP = ["delivery_days", "promised_days", "review_score"]


def dataset(path: Path, as_of: str, horizon: int, *, orders_only: bool = False) -> dict:
    cfg = Config().replace(horizon_days=horizon)
    orders = ingest.load_orders([path / "orders.csv"], cfg.ingest, base_currency="USD").frame
    events = None if orders_only else ingest.load_events([path / "events.csv"], cfg.ingest).frame
    if orders_only:
        orders = orders.drop(columns=[c for c in ORDERS_ONLY_DROP if c in orders.columns])
    ts = pd.Timestamp(as_of)
    t = time.perf_counter()
    ev = evaluate.backtest(orders, ts, cfg, events=events, backtests=3)
    took = time.perf_counter() - t
    out = {"backtest_seconds": round(took, 1), "cutoffs": [str(c.date()) for c in ev.cutoffs],
           "overall": {k: {m: round(float(v[m]), 4) for m in ("roc_auc", "pr_auc", "brier", "log_loss", "ece",
                                                                "capture_10", "lift_10", "capture_20", "lift_20")}
                       for k, v in ev.overall().items()}}
    if not orders_only:
        fitted = model.train(orders, ts, cfg, events=events)
        scores = scoring.score(model.scoring_features(orders, ts, cfg, events=events), fitted, cfg)
        truth = pd.read_csv(path / "truth.csv", dtype=str, keep_default_na=False)
        out["cause_recovery"] = evaluate.cause_recovery(scores, truth)
    return out


def simulate_bgnbd(n: int, params: tuple[float, float, float, float], seed: int = 0):
    """Draw n customers from the BG/NBD process (days), ages 30-1000 days; return x, t_x, T."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    T = np.floor(rng.uniform(30, 1000, n))
    lam, p = rng.gamma(r, 1.0 / alpha, n), rng.beta(a, b, n)
    t, x, t_x = np.zeros(n), np.zeros(n), np.zeros(n)
    idx = np.arange(n)
    while len(idx):  # one pass per purchase number, all customers at once
        t_new = t[idx] + rng.exponential(1.0, len(idx)) / lam[idx]
        keep = t_new <= T[idx]
        idx, t_new = idx[keep], t_new[keep]
        x[idx] += 1
        t_x[idx] = np.floor(t_new)  # whole days, as btyd.summary counts them
        t[idx] = t_new
        idx = idx[rng.random(len(idx)) >= p[idx]]
    return x, t_x, T


def bgnbd_million() -> dict:
    x, t_x, T = simulate_bgnbd(1_000_000, (0.8, 60.0, 0.8, 4.0))
    t = time.perf_counter()
    params = btyd.fit_bgnbd(x, t_x, T)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    btyd.p_alive(params, x, t_x, T)
    btyd.p_no_order(params, x, t_x, T, 90)
    btyd.expected_orders(params, x, t_x, T, 90)
    btyd.expected_days_to_next_order(params, x, t_x, T)
    pred_s = time.perf_counter() - t
    return {"customers": len(x), "repeat_customers": int((x > 0).sum()), "fit_seconds": round(fit_s, 2),
            "predict_seconds": round(pred_s, 2),
            "params": {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b}}


def main() -> None:
    if sys.argv[1:] == ["--bgnbd-only"]:
        print(json.dumps(bgnbd_million(), indent=2))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        second = Path(tmp) / "second"
        sample.write(sample.generate(1800, seed=23, end_date="2026-03-31", years=2.5,
                                     churn_mix={"price": 3, "logistics": 1, "service": 2, "product": 1,
                                                "engagement": 1, "activity": 2}), second)
        results["sample"] = dataset(ROOT / "data" / "sample", "2026-06-30", 90)
        results["sample_orders_only"] = dataset(ROOT / "data" / "sample", "2026-06-30", 90, orders_only=True)
        results["second"] = dataset(second, "2026-03-31", 60)
        results["second_orders_only"] = dataset(second, "2026-03-31", 60, orders_only=True)
    results["bgnbd_1m"] = bgnbd_million()
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
