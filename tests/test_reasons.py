"""reasons.build: exact phrases from hand-made feature and contribution frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnctl import features, reasons

NAN = np.nan

# Features of four customers, written by hand (only the columns the phrases read).
FEATURES = pd.DataFrame(
    {
        "recency_days": [140, 20, 10, 300],
        "mean_gap_days": [35.0, 14.2, NAN, NAN],
        "overdue_ratio": [4.0, 1.4, NAN, NAN],
        "frequency": [12, 5, 1, 1],
        "late_share": [0.75, 0.0, NAN, NAN],
        "last_order_late": [1.0, 0.0, NAN, NAN],
        "_late_count": [9, 0, 0, 0],
        "_delivered_count": [12, 5, 0, 0],
        "complaints_90d": [2, 0, 0, 0],
        "complaints_logistics_90d": [2, 0, 0, 0],
        "discount_share_last3": [0.0, 0.0, 1.0, 1.0],
        "discount_share_before": [0.5, 0.8, NAN, NAN],
        "discount_share_drop": [0.5, 0.8, NAN, NAN],
        "last_order_discounted": [0, 0, 1, 1],
        "duties_share": [0.25, 0.6, 0.0, 0.0],
        "last_order_duties": [0, 1, 0, 0],
        "_duties_count": [3, 3, 0, 0],
        "opens_30d": [0, 0, 2, 0],
        "opens_90d": [1, 0, 4, 0],
        "days_since_last_open": [45.0, NAN, 3.0, NAN],
        "aov": [23.4, 50.0, 80.0, 19.5],
        "x_custom": [2.5, 0.0, 0.0, 0.0],
    },
    index=pd.Index(["c1", "007", "c3", "c4"], name="customer_id"),
)

COLUMNS = ["recency_days", "overdue_ratio", "late_share", "complaints_90d",
           "complaints_logistics_90d", "discount_share_drop", "duties_share", "opens_30d",
           "frequency", "aov", "x_custom"]


def contributions(rows: dict[str, list[float]]) -> pd.DataFrame:
    """Contributions frame: given columns per customer, 0 elsewhere."""
    frame = pd.DataFrame(0.0, index=FEATURES.index, columns=COLUMNS)
    for name, values in rows.items():
        frame[name] = values
    return frame


def test_top_three_by_contribution_one_phrase_per_group():
    got = reasons.build(FEATURES, contributions({
        "late_share": [0.8, 0.0, 0.0, 0.0],
        "recency_days": [0.5, 0.0, 0.0, 0.0],
        "overdue_ratio": [0.45, 0.0, 0.0, 0.0],  # same fact as recency_days: said once
        "complaints_logistics_90d": [0.3, 0.0, 0.0, 0.0],
        "complaints_90d": [0.2, 0.0, 0.0, 0.0],  # complaints already said
        "aov": [0.1, -1.0, -1.0, -1.0],
    }))
    assert got["c1"] == ("9 of 12 orders arrived late, the last one too; "
                         "no order for 140 days, usually every 35 days; "
                         "2 complaints about logistics in the last 90 days")
    assert got.name == "reasons"
    assert list(got.index) == list(FEATURES.index)


def test_no_positive_contribution_is_an_empty_string():
    got = reasons.build(FEATURES, contributions({"aov": [-0.1, 0.0, NAN, -2.0]}))
    assert got.tolist() == ["", "", "", ""]


def test_coupon_duties_and_opens():
    got = reasons.build(FEATURES, contributions({
        "discount_share_drop": [0.0, 0.9, 0.0, 0.0],
        "duties_share": [0.0, 0.7, 0.0, 0.0],
        "opens_30d": [0.6, 0.5, 0.0, 0.4],
        "recency_days": [0.0, 0.1, 0.0, 0.0],
    }))
    assert got["007"] == ("last 3 orders at full price after 80% with a discount; "
                          "import duties charged on 3 of 5 orders, the last one too; "
                          "never opened an email")
    assert got["c1"] == "stopped opening emails (0 opens in 30 days)"
    assert got["c4"] == "never opened an email"


def test_zero_counts_and_missing_values_are_skipped():
    # c3: complaints 0 and late_share NaN say nothing; its next reasons are used instead
    got = reasons.build(FEATURES, contributions({
        "complaints_90d": [0.0, 0.0, 0.9, 0.0],
        "late_share": [0.0, 0.9, 0.8, 0.0],
        "discount_share_drop": [0.0, 0.0, 0.7, 0.0],
        "frequency": [0.0, 0.0, 0.6, 0.0],
        "opens_30d": [0.0, 0.0, 0.5, 0.0],
    }))
    assert got["c3"] == "last order with a discount; only 1 order so far; 2 email opens in 30 days"
    assert got["007"] == ""  # 0 of 5 orders late is no reason


def test_top_n_and_window_words():
    contrib = contributions({"complaints_logistics_90d": [0.9, 0, 0, 0],
                             "frequency": [0.8, 0, 0, 0]})
    assert reasons.build(FEATURES, contrib, top_n=1)["c1"] == \
        "2 complaints about logistics in the last 90 days"
    assert reasons.build(FEATURES, contrib, recent_days=60)["c1"] == \
        "2 complaints about logistics in the last 60 days; 12 orders so far"


def test_unknown_feature_generic_and_extra_columns_ignored():
    contrib = contributions({"x_custom": [0.9, 0, 0, 0], "aov": [0.1, 0, 0, 0]})
    contrib["bias"] = 5.0  # not a feature column: ignored
    assert reasons.build(FEATURES, contrib)["c1"] == "x_custom = 2.5; average order 23"


def test_contributions_aligned_by_index():
    contrib = contributions({"aov": [0.1, 0.2, 0.3, 0.4]})
    got = reasons.build(FEATURES, contrib.iloc[::-1])
    assert got.tolist() == ["average order 23", "average order 50", "average order 80",
                            "average order 20"]
    partial = reasons.build(FEATURES, contrib.iloc[:2])
    assert partial.tolist() == ["average order 23", "average order 50", "", ""]


def test_ties_keep_contribution_column_order():
    contrib = contributions({"aov": [0.5, 0, 0, 0], "frequency": [0.5, 0, 0, 0]})
    assert reasons.build(FEATURES, contrib)["c1"] == "12 orders so far; average order 23"


def test_empty_frames():
    assert reasons.build(FEATURES.iloc[:0], contributions({}).iloc[:0]).empty


@pytest.fixture(scope="module")
def built_features():
    orders = pd.DataFrame({
        "order_id": ["1", "2", "3", "4", "5", "6"],
        "customer_id": ["a", "a", "a", "a", "b", "a"],
        "order_date": pd.to_datetime(["2023-10-01", "2023-11-01", "2023-12-01", "2024-01-01",
                                      "2024-03-01", "2024-02-01"]),
        "amount": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "status": ["completed", "completed", "completed", "completed", "completed", "returned"],
        "discount_amount": [5.0, 5.0, 0.0, 0.0, 1.0, 0.0],
        "shipping_cost": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "duties_amount": [0.0, 4.0, 0.0, 4.0, 0.0, 0.0],
        "delivery_days": [9.0, 2.0, 9.0, 3.0, 2.0, 2.0],
        "promised_days": [4.0, 4.0, 4.0, 4.0, 4.0, 4.0],
        "review_score": [1.0, 2.0, 5.0, 4.0, 5.0, NAN],
    })
    events = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "a"],
        "event_time": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04",
                                      "2024-03-05"]),
        "event_type": ["email_sent", "complaint", "cart_abandon", "unsubscribe", "support_ticket"],
        "topic": [None, "price", None, None, "logistics"],
    })
    return features.build(orders, pd.Timestamp("2024-03-31"), events=events)


def test_every_registered_feature_has_its_own_phrase(built_features):
    cols = features.model_columns(built_features)
    assert set(cols) <= set(reasons._PHRASES)
    said = {}
    for name in cols:
        one = pd.DataFrame(0.0, index=built_features.index, columns=cols)
        one[name] = 1.0
        said[name] = reasons.build(built_features, one)["a"]
    assert said["late_share"] == "2 of 5 orders arrived late"
    assert said["return_rate"] == "1 of 5 orders returned"
    assert said["duties_share"] == "import duties charged on 2 of 4 orders, the last one too"
    assert said["complaints_price_90d"] == "1 complaint about prices in the last 90 days"
    assert said["cart_abandons_90d"] == "1 abandoned cart in the last 90 days"
    assert said["support_tickets_logistics_90d"] == \
        "1 support ticket about logistics in the last 90 days"
    assert said["low_review_share"] == "2 of 4 reviews scored 2 or less"
    assert said["mean_review_score"] == "average review 3 of 5"
    assert said["aov_last3_vs_before"] == "last 3 orders 200% larger than before"
    assert said["unsubscribed"] == "unsubscribed from emails"
    assert said["mean_delivery_days"] == "deliveries took 5 days on average"
    assert said["discount_share"] == "2 of 4 orders with a discount"
    assert said["order_trend"] == "0 orders in the last 90 days vs 3 in the 90 before"
    assert said["cancel_rate"] == ""  # nothing cancelled: no reason
    assert all("nan" not in text for text in said.values())


def test_recent_buyer_gets_no_silence_or_rhythm_twice_and_no_zero_windows():
    # The reported bug: ordered 7 days ago, rhythm 243 days -> "orders about every 243 days;
    # ...; no order for 7 days, usually every 243 days" and "0 orders ... vs 0 in the 90 before".
    frame = pd.DataFrame(
        {"recency_days": [7, 120, 45, 10], "mean_gap_days": [243.0, 22.0, NAN, 20.0],
         "median_gap_days": [243.0, 22.0, NAN, 20.0], "overdue_ratio": [0.03, 5.5, NAN, 0.5],
         "orders_last_90d": [1, 0, 0, 0], "orders_prev_90d": [0, 7, 0, 0],
         "mean_delivery_days": [10.8, 5.0, 5.0, 5.0]},
        index=pd.Index(["a", "b", "c", "d"], name="customer_id"),
    )
    contrib = pd.DataFrame(
        {"mean_gap_days": [0.9, 0.1, 0.0, 0.5], "recency_days": [0.8, 2.0, 0.4, 0.4],
         "orders_last_90d": [0.5, 0.3, 0.6, 0.3], "mean_delivery_days": [0.4, 0.0, 0.0, 0.0]},
        index=frame.index,
    )
    got = reasons.build(frame, contrib)
    assert got["a"] == "orders only about every 243 days; deliveries took 10.8 days on average"
    assert got["b"] == "no order for 120 days, usually every 22 days; 0 orders in the last 90 days vs 7 in the 90 before"
    assert got["c"] == "no order for 45 days"  # one order, 45 days ago: no rhythm to compare
    assert got["d"] == ""  # recent, fast rhythm, no slowdown: nothing to say


def test_last_order_experience_phrases():
    frame = pd.DataFrame(
        {"failed_after_last_order": [1, 2, 0], "returned_after_last_order": [0, 0, 1],
         "last_order_delay_days": [6.0, NAN, -1.0], "late_share": [NAN, NAN, 0.0],
         "contacts_logistics_since_last_order": [2, 0, 0], "discount_share_prior": [0.8, NAN, NAN],
         "last_order_discounted": [0, 1, 0], "p_alive": [0.2, 0.9, 0.4]},
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )
    contrib = pd.DataFrame(1.0, index=frame.index, columns=frame.columns)
    got = reasons.build(frame, contrib, top_n=8)
    assert got["a"] == ("the latest order was cancelled or failed; last order arrived 6 days late; "
                        "2 complaints or tickets about delivery since the last order; last order at full price "
                        "after 80% of earlier orders with a discount; probably no longer buying "
                        "(buying pattern model: 20% still active)")
    assert got["b"] == "2 orders cancelled or failed since the last completed one; last order with a discount"
    assert got["c"] == ("returned the latest order; last order at full price; "
                        "probably no longer buying (buying pattern model: 40% still active)")


def test_numbers_are_said_alike_whatever_their_spread():
    # Close values take the lookup table, far-apart ones the distinct-values path; same words.
    close = reasons._counted(np.array([1, 2, 0.6, NAN, 1.4, -2.4]), "day")
    assert close.tolist() == ["1 day", "2 days", "1 day", "0 days", "1 day", "-2 days"]
    spread = reasons._counted(np.array([1, 1e7, NAN, 1e7]), "order")
    assert spread.tolist() == ["1 order", "10000000 orders", "0 orders", "10000000 orders"]
    assert reasons._int(np.array([5e9, 0.4, 2.5])).tolist() == ["5000000000", "0", "2"]
    assert reasons._pct(np.array([0.25, 1.0, NAN])).tolist() == ["25%", "100%", "0%"]
    assert reasons._counted(np.array([]), "day").tolist() == []


def test_a_phrase_that_cannot_be_said_gives_way_to_the_next_contribution():
    # c3's largest contribution is late_share, but nothing of c3 arrived late: the next ones
    # are said instead, in order, up to three.
    got = reasons.build(FEATURES, contributions({
        "late_share": [0.0, 0.0, 0.9, 0.0],
        "aov": [0.0, 0.0, 0.5, 0.0],
        "opens_30d": [0.0, 0.0, 0.4, 0.0],
        "frequency": [0.0, 0.0, 0.3, 0.0],
        "x_custom": [0.0, 0.0, 0.2, 0.0],
    }))
    assert got["c3"] == "average order 80; 2 email opens in 30 days; only 1 order so far"


def test_positive_ranking_kernel_equals_repeated_argmax():
    from churnctl.kernels import positive_ranking

    got = positive_ranking(np.array([[0.5, NAN, 2.0, 0.5, -1.0], [0.0, -2.0, NAN, 0.0, 0.0]]), 5)
    # row 0: 2.0 (col 2), then the tied 0.5s in column order; row 1: nothing positive
    assert got.tolist() == [[2, 0, 3, -1, -1], [-1, -1, -1, -1, -1]]
    # the first ranks only: a later tie of the last kept value stays out
    assert positive_ranking(np.array([[0.5, 0.1, 2.0, 0.5, 0.7]]), 2).tolist() == [[2, 4]]
    assert positive_ranking(np.array([[0.5, 0.1, 0.5, 0.5, 0.7]]), 3).tolist() == [[4, 0, 2]]
    rng = np.random.default_rng(1)
    values = np.round(rng.normal(size=(200, 9)), 1)  # many ties
    values[rng.random(values.shape) < 0.1] = NAN
    left = np.where(values > 0, values, -np.inf)
    expected = np.full(values.shape, -1)
    for rank in range(values.shape[1]):
        col = np.argmax(left, axis=1)
        ok = left[np.arange(len(left)), col] > -np.inf
        expected[ok, rank] = col[ok]
        left[np.arange(len(left)), col] = -np.inf
    for depth in range(values.shape[1] + 1):  # the first ranks are the full ranking's
        assert np.array_equal(positive_ranking(values, depth), expected[:, :depth])


def test_reasons_past_the_first_ranks_equal_the_full_ranking(monkeypatch):
    """Customers whose first ranks are all one group (said once) or say nothing need ranks
    past RANK_DEPTH: the reasons are those of a ranking computed in full up front."""
    from churnctl import reasons

    rng = np.random.default_rng(5)
    n = 300
    feats = pd.DataFrame({
        "days_since_last_order": rng.integers(1, 400, n).astype(float),
        "median_gap_days": rng.integers(5, 60, n).astype(float),
        "late_share": rng.random(n), "mean_delivery_days": rng.integers(2, 30, n).astype(float),
        "discount_share": rng.random(n), "mean_discount_rate": rng.random(n) / 2,
        "cancel_rate": rng.random(n), "return_rate": rng.random(n),
        "complaints_90d": rng.integers(0, 4, n).astype(float), "frequency": rng.integers(1, 9, n).astype(float),
    }, index=pd.Index([f"C{i:04d}" for i in range(n)], name="customer_id"))
    names = list(feats.columns)
    contrib = np.round(rng.normal(size=(n, len(names))), 1)
    monkeypatch.setattr(reasons, "RANK_DEPTH", len(names))  # every rank up front
    full = reasons.phrases(feats, names, contrib, 3).to_pylist()
    for depth in (0, 1, 2):
        monkeypatch.setattr(reasons, "RANK_DEPTH", depth)  # at least top_n up front, then the rest
        assert reasons.phrases(feats, names, contrib, 3).to_pylist() == full
        assert reasons.phrases(feats, names, contrib, 1).to_pylist() == [t.split(reasons.SEPARATOR)[0] if t else t
                                                                          for t in full]


def test_decimal_text_known_answers():
    from churnctl.reasons import _dec

    x = np.array([3.5, 4.0, 4.04, NAN, -0.04, 12.25, 7.96, 3.5, 100.0])
    assert _dec(x).tolist() == ["3.5", "4", "4", "0", "0", "12.2", "8", "3.5", "100"]
    assert _dec(np.array([])).tolist() == []
