"""`measure`: treated vs holdout outcomes, uplift with a 95% interval, net value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnctl import measure
from churnctl.errors import InputError

SEND = pd.Timestamp("2026-07-01 08:00")


def contacts(groups: dict[str, str], campaign="c", run="2026-06-30", cost=10.0) -> pd.DataFrame:
    ids = list(groups)
    return pd.DataFrame({"run_id": run, "as_of": pd.Timestamp(run), "customer_id": ids, "campaign": campaign,
                         "group_name": [groups[i] for i in ids], "offer_cost": cost, "send_at_utc": SEND})


def orders(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount", "status"]).assign(
        order_date=lambda f: pd.to_datetime(f["order_date"], format="ISO8601"))


def test_known_answer_on_hand_made_rows():
    c = contacts({"t1": "treated", "t2": "treated", "t3": "treated", "t4": "treated", "h1": "holdout", "h2": "holdout"})
    o = orders([
        ("t1", "2026-07-02", 100.0, "completed"), ("t2", "2026-07-30", 50.0, "completed"),
        ("t3", "2026-07-01 07:00", 999.0, "completed"),   # before the send: not counted
        ("t3", "2026-08-01", 999.0, "completed"),         # after the 30-day window
        ("t4", "2026-07-05", 999.0, "cancelled"),         # not a purchase
        ("h1", "2026-07-10", 80.0, "completed"), ("zz", "2026-07-10", 5.0, "completed"),
    ])
    got = measure.compare(c, o, window_days=30, as_of=pd.Timestamp("2026-08-15"))
    assert got["run_id"].tolist() == ["2026-06-30", "all"]
    row = got.iloc[0]
    assert (row["treated"], row["holdout"]) == (4, 2)
    assert (row["repeat_rate_treated"], row["repeat_rate_holdout"], row["uplift_repeat_rate"]) == (0.5, 0.5, 0.0)
    assert (row["revenue_per_customer_treated"], row["revenue_per_customer_holdout"]) == (37.5, 40.0)
    assert row["uplift_revenue_per_customer"] == -2.5
    assert (row["offer_cost"], row["offer_cost_per_treated"]) == (20.0, 5.0)
    assert (row["net_value_per_customer"], row["net_value"]) == (-7.5, -30.0)
    assert row["uplift_ci_low"] < 0 < row["uplift_ci_high"] and bool(row["complete"])
    early = measure.compare(c, o, window_days=30, as_of=pd.Timestamp("2026-07-15"))
    assert not early["complete"].any()


def test_recovers_a_planted_uplift_within_its_interval():
    rng = np.random.default_rng(5)
    n = 20_000
    ids = [f"C{i:05d}" for i in range(n)]
    group = np.where(rng.random(n) < 0.10, "holdout", "treated")
    natural = rng.random(n) < 0.20                          # would have ordered anyway
    planted = (group == "treated") & ~natural & (rng.random(n) < 0.15)
    c = contacts(dict(zip(ids, group)), cost=5.0)
    days = rng.integers(1, 29, n)
    bought = natural | planted
    o = orders([(ids[i], SEND + pd.Timedelta(days=int(days[i])), 60.0, "completed") for i in np.flatnonzero(bought)])
    got = measure.compare(c, o, window_days=30).set_index("run_id").loc["2026-06-30"]
    truth = planted.sum() / (group == "treated").sum()      # share who bought only because of the campaign
    assert abs(truth - 0.12) < 0.01
    assert got["uplift_ci_low"] <= truth <= got["uplift_ci_high"], (got, truth)
    assert got["uplift_ci_high"] - got["uplift_ci_low"] < 0.05
    assert got["uplift_revenue_ci_low"] <= truth * 60 <= got["uplift_revenue_ci_high"]
    assert got["net_value_per_customer"] == pytest.approx(got["uplift_revenue_per_customer"]
                                                          - got["offer_cost_per_treated"], abs=0.011)


def test_runs_and_campaigns_are_separate_and_pooled():
    c = pd.concat([contacts({"a": "treated", "b": "holdout"}, campaign="x", run="2026-06-29"),
                   contacts({"c": "treated", "d": "holdout"}, campaign="x", run="2026-06-30"),
                   contacts({"e": "treated"}, campaign="y", run="2026-06-30")], ignore_index=True)
    got = measure.compare(c, orders([("a", "2026-07-03", 10.0, "completed")]), window_days=30)
    assert got[["campaign", "run_id", "treated", "holdout"]].values.tolist() == [
        ["x", "2026-06-29", 1, 1], ["x", "2026-06-30", 1, 1], ["x", "all", 2, 2], ["y", "2026-06-30", 1, 0],
        ["y", "all", 1, 0]]
    assert got["uplift_ci_low"].isna().tolist() == [True, True, False, True, True]  # groups under 2: none
    assert list(got.columns) == list(measure.COLUMNS)


def test_empty_ledger_and_bad_window():
    assert measure.compare(contacts({}).iloc[:0], orders([]), window_days=30).empty
    with pytest.raises(InputError, match="--window-days must be 1 or more"):
        measure.compare(contacts({"a": "treated"}), orders([]), window_days=0)
