"""features.build on hand-made canonical frames with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from churnctl import features, schema
from churnctl.config import FeatureConfig
from churnctl.errors import ConfigError, InputError

AS_OF = pd.Timestamp("2024-03-31")
NAN = float("nan")
ORDER_COLS = ("order_id", "customer_id", "order_date", "amount", "status", "country",
              "discount_amount", "shipping_cost", "duties_amount", "delivery_days",
              "promised_days", "review_score", "email")


def orders_frame(rows: list[tuple], columns: tuple[str, ...] = ORDER_COLS) -> pd.DataFrame:
    """Canonical orders frame: str ids, naive datetimes, float money."""
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["order_id"] = frame["order_id"].astype(str)
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["order_date"] = pd.to_datetime(frame["order_date"], format="ISO8601")
    for col in set(columns) & {"amount", *schema.ORDER_MONEY, *schema.ORDER_NUMERIC}:
        frame[col] = frame[col].astype("float64")
    return frame


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_time", "event_type", "topic"])
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["event_time"] = pd.to_datetime(frame["event_time"], format="ISO8601")
    return frame


# c1: 4 completed orders 150, 120, 90 and 30 days before AS_OF (gaps 30, 30, 60) + 1 cancelled.
# c2: completed on the last instant of AS_OF, plus returned, refunded, payment_failed orders.
# 0042: two completed orders on the same day.  c3: only cancelled.  c4: only after AS_OF.
ORDERS = orders_frame([
    # id    cust    date                   amt   status      ctry  disc ship duty  deliv prom  rev  email
    ("1", "c1", "2023-11-02 09:00", 10.0, "completed", "DE", 5.0, 1.0, 0.0, 5.0, 4.0, 5.0, "a@x"),
    ("2", "c1", "2023-12-02 10:00", 20.0, "completed", "DE", 5.0, 2.0, 3.0, 3.0, 4.0, NAN, "a@x"),
    ("3", "c1", "2024-01-01 11:00", 30.0, "completed", "FR", 0.0, 3.0, 0.0, 7.0, 4.0, 2.0, "a@x"),
    ("4", "c1", "2024-03-01 12:00", 40.0, "completed", "FR", NAN, 4.0, 2.0, NAN, 4.0, 1.0, "a@x"),
    ("5", "c1", "2024-03-15 12:00", 50.0, "cancelled", None, 0.0, 100, 0.0, NAN, NAN, NAN, "a@x"),
    ("6", "c2", "2024-03-31 23:59:59", 80.0, "completed", "US", 0.0, 0.0, 0.0, 2.0, 3.0, NAN, "b@x"),
    ("7", "c2", "2024-02-15", 15.0, "returned", "US", 0.0, 0.0, 0.0, 9.0, 3.0, 1.0, "b@x"),
    ("8", "c2", "2024-02-20", 25.0, "refunded", "US", 0.0, 0.0, 0.0, NAN, NAN, NAN, "b@x"),
    ("9", "c2", "2024-03-05", 35.0, "payment_failed", "US", 0.0, 0.0, 0.0, NAN, NAN, NAN, "b@x"),
    ("10", "0042", "2024-02-10 10:00", 12.0, "completed", "GB", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
    ("11", "0042", "2024-02-10 18:00", 18.0, "completed", "GB", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
    ("12", "c3", "2024-01-10", 99.0, "cancelled", "DE", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
    ("13", "c4", "2024-04-01", 99.0, "completed", "DE", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
])

EVENTS = events_frame([
    ("c1", "2023-12-01", "email_sent", None),
    ("c1", "2023-12-01", "email_sent", None),
    ("c1", "2023-12-02", "email_open", None),
    ("c1", "2023-12-03", "email_open", None),
    ("c1", "2024-02-01", "email_sent", None),
    ("c1", "2024-02-14", "email_sent", None),
    ("c1", "2024-03-01", "email_sent", None),
    ("c1", "2024-03-19", "email_sent", None),
    ("c1", "2024-02-15", "email_open", None),
    ("c1", "2024-03-20", "email_open", None),
    ("c1", "2024-03-25", "email_click", None),
    ("c1", "2024-03-10", "complaint", "logistics"),
    ("c1", "2024-01-05", "complaint", "logistics"),  # 86 days before: inside the 90
    ("c1", "2023-12-01", "complaint", "price"),  # 121 days before: outside
    ("c1", "2024-03-30", "complaint", None),
    ("c2", "2024-03-01", "support_ticket", "service"),
    ("c2", "2024-03-05", "payment_failed", "payment"),
    ("c2", "2024-03-02", "unsubscribe", None),
    ("c2", "2024-03-31 12:00", "cart_abandon", None),
    ("zz", "2024-03-01", "complaint", "price"),  # unknown customer: ignored
])


@pytest.fixture(scope="module")
def built() -> pd.DataFrame:
    return features.build(ORDERS, AS_OF, events=EVENTS)


# --- known answers ----------------------------------------------------------------------------
def test_one_row_per_customer_with_a_completed_order(built):
    assert built.index.name == "customer_id"
    assert list(built.index) == ["0042", "c1", "c2"]  # c3: only cancelled; c4: only later


def test_activity_by_hand(built):
    c1 = built.loc["c1"]
    assert c1["recency_days"] == 30
    assert c1["frequency"] == 4
    assert c1["monetary_total"] == 100.0
    assert c1["aov"] == 25.0
    assert c1["tenure_days"] == 150
    assert c1["mean_gap_days"] == 40.0
    assert c1["median_gap_days"] == 30.0
    assert c1["overdue_ratio"] == 0.75
    assert c1["aov_last3_vs_before"] == 3.0  # (20+30+40)/3 over 10
    assert c1["orders_last_90d"] == 1  # 90 days before is the previous window
    assert c1["orders_prev_90d"] == 3
    assert c1["spend_last_90d"] == 40.0
    assert c1["spend_prev_90d"] == 60.0
    assert c1["order_trend"] == -2


def test_single_order_and_same_day_orders(built):
    c2 = built.loc["c2"]
    assert (c2["recency_days"], c2["frequency"], c2["tenure_days"]) == (0, 1, 0)
    assert math.isnan(c2["mean_gap_days"]) and math.isnan(c2["median_gap_days"])
    assert math.isnan(c2["overdue_ratio"]) and math.isnan(c2["aov_last3_vs_before"])
    z = built.loc["0042"]
    assert z["mean_gap_days"] == 0.0
    assert z["overdue_ratio"] == 50.0  # recency 50 / max(gap 0, 1)


def test_window_boundaries():
    orders = orders_frame([
        ("1", "c", "2024-01-02 00:00", 1.0),  # 89 days before AS_OF: last window
        ("2", "c", "2024-01-01 23:59:59", 2.0),  # 90 days: previous window
        ("3", "c", "2023-10-04 00:00", 4.0),  # 179 days: previous window
        ("4", "c", "2023-10-03 23:59:59", 8.0),  # 180 days: neither
    ], columns=schema.ORDER_REQUIRED)
    got = features.build(orders, AS_OF).loc["c"]
    assert (got["orders_last_90d"], got["orders_prev_90d"]) == (1, 2)
    assert (got["spend_last_90d"], got["spend_prev_90d"]) == (1.0, 6.0)
    short = features.build(orders, AS_OF, config=FeatureConfig(recent_days=30)).loc["c"]
    assert (short["orders_last_90d"], short["orders_prev_90d"]) == (0, 0)


def test_price_features(built):
    c1 = built.loc["c1"]
    assert c1["discount_share"] == 0.5
    assert c1["mean_discount_rate"] == pytest.approx((5 / 15 + 5 / 25) / 4)
    assert c1["full_price_spend_share"] == pytest.approx(0.7)
    assert c1["last_order_discounted"] == 0
    assert c1["discount_share_last3"] == pytest.approx(1 / 3)
    assert c1["discount_share_before"] == 1.0
    assert c1["discount_share_drop"] == pytest.approx(2 / 3)
    assert math.isnan(built.loc["c2", "discount_share_before"])
    assert c1["_discount_count"] == 2


def test_logistics_features(built):
    c1 = built.loc["c1"]
    assert c1["mean_delivery_days"] == 5.0
    assert c1["late_share"] == pytest.approx(2 / 3)
    assert (c1["_late_count"], c1["_delivered_count"]) == (2, 3)
    assert c1["last_order_late"] == 1.0  # order 3: the latest with both delivery and promise
    assert c1["shipping_cost_share"] == 0.1  # the cancelled order's shipping is not counted
    assert c1["duties_share"] == 0.5
    assert c1["last_order_duties"] == 1
    c2 = built.loc["c2"]
    assert c2["late_share"] == 0.5  # the returned order was late, the completed one not
    assert c2["last_order_late"] == 0.0
    assert math.isnan(built.loc["0042", "late_share"])
    assert math.isnan(built.loc["0042", "last_order_late"])


def test_rates_over_all_orders(built):
    c1, c2 = built.loc["c1"], built.loc["c2"]
    assert c1["cancel_rate"] == 0.2
    assert (c2["return_rate"], c2["refund_rate"], c2["cancel_rate"]) == (0.25, 0.25, 0.0)
    assert c2["payment_failures"] == 2  # one payment_failed order + one event
    assert c2["_orders_count"] == 4


def test_review_features(built):
    c1 = built.loc["c1"]
    assert c1["mean_review_score"] == pytest.approx(8 / 3)
    assert c1["last_review_score"] == 1.0
    assert c1["low_review_share"] == pytest.approx(2 / 3)
    assert built.loc["c2", "last_review_score"] == 1.0  # from the returned order


def test_event_features(built):
    c1 = built.loc["c1"]
    assert (c1["opens_30d"], c1["opens_90d"], c1["clicks_30d"], c1["clicks_90d"]) == (1, 2, 1, 1)
    assert c1["open_rate_90d"] == 0.5
    assert c1["open_rate_before"] == 1.0
    assert c1["open_trend"] == -0.5
    assert c1["days_since_last_open"] == 11.0
    assert c1["complaints_90d"] == 3
    assert c1["complaints_logistics_90d"] == 2
    assert c1["complaints_price_90d"] == 0
    assert c1["unsubscribed"] == 0
    c2 = built.loc["c2"]
    assert (c2["support_tickets_90d"], c2["cart_abandons_90d"], c2["unsubscribed"]) == (1, 1, 1)
    assert (c2["support_tickets_service_90d"], c2["support_tickets_logistics_90d"]) == (1, 0)
    assert math.isnan(c2["days_since_last_open"]) and math.isnan(c2["open_rate_90d"])


def test_descriptors(built):
    c1 = built.loc["c1"]
    assert c1["country"] == "FR"  # DE and FR twice each (missing ignored): the latest wins
    assert built.loc["c2", "country"] == "US"
    assert c1["first_order_date"] == pd.Timestamp("2023-11-02")
    assert c1["last_order_date"] == pd.Timestamp("2024-03-01")
    assert list(built["lifecycle_stage"]) == ["repeat", "repeat", "new"]
    assert built["channel"].isna().all()  # no channel column in the input
    assert "email" not in built.columns and "first_name" not in built.columns


def test_loyal_threshold_from_config():
    got = features.build(ORDERS, AS_OF, config=FeatureConfig(loyal_min_orders=4))
    assert got.loc["c1", "lifecycle_stage"] == "loyal"


# --- RFM --------------------------------------------------------------------------------------
def _history(cust: str, n: int, last_days_ago: int, amount: float = 10.0) -> list[tuple]:
    last = AS_OF - pd.Timedelta(days=last_days_ago)
    return [(f"{cust}-{i}", cust, str(last - pd.Timedelta(days=400 * i // max(n, 1) + i)),
             amount) for i in range(n)]


@pytest.mark.parametrize(("n", "days_ago", "r", "f", "segment"), [
    (6, 10, 5, 5, "Champions"),
    (4, 61, 3, 4, "Loyal"),
    (3, 60, 4, 3, "Potential loyalist"),
    (1, 30, 5, 1, "New"),
    (1, 31, 4, 1, "Promising"),
    (3, 100, 3, 3, "Need attention"),
    (6, 250, 1, 5, "Can't lose them"),
    (4, 121, 2, 4, "At risk"),
    (2, 200, 2, 2, "Hibernating"),
    (1, 300, 1, 1, "Lost"),
])
def test_rfm_scores_and_segments(n, days_ago, r, f, segment):
    got = features.build(orders_frame(_history("x", n, days_ago), schema.ORDER_REQUIRED), AS_OF)
    assert (got.loc["x", "recency_days"], got.loc["x", "frequency"]) == (days_ago, n)
    assert (got.loc["x", "r_score"], got.loc["x", "f_score"]) == (r, f)
    assert got.loc["x", "rfm_segment"] == segment


def test_segment_grid_matches_documented_table():
    # rows R5..R1, columns F1..F5, written out from the documented mapping
    table = [
        ["New", "Potential loyalist", "Potential loyalist", "Champions", "Champions"],
        ["Promising", "Potential loyalist", "Potential loyalist", "Champions", "Champions"],
        ["Need attention", "Need attention", "Need attention", "Loyal", "Loyal"],
        ["Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"],
        ["Lost", "Lost", "At risk", "At risk", "Can't lose them"],
    ]
    for i, row in enumerate(table):
        for j, name in enumerate(row):
            assert features._SEGMENTS[4 - i, j] == name, (5 - i, j + 1)
    assert set(features._SEGMENTS.ravel()) == set(schema.RFM_SEGMENTS)


def test_m_score_is_a_population_quintile():
    amounts = [50, 10, 40, 20, 30, 30]
    rows = [r for k, amt in enumerate(amounts) for r in _history(f"m{k}", 1, 5, amt)]
    got = features.build(orders_frame(rows, schema.ORDER_REQUIRED), AS_OF)["m_score"]
    # 6 customers; score = 1 + floor(5 * customers strictly below / 6); ties share a score
    assert got.to_dict() == {"m0": 5, "m1": 1, "m2": 4, "m3": 1, "m4": 2, "m5": 2}


def test_bad_score_edges():
    with pytest.raises(ConfigError, match="features.recency_edges: must be 4 increasing"):
        features.build(ORDERS, AS_OF, config=FeatureConfig(recency_edges=(30, 20, 60, 90)))


# --- properties -------------------------------------------------------------------------------
def test_later_orders_and_events_change_nothing(built):
    end = schema.day_end(AS_OF)  # the first instant after AS_OF
    later_orders = orders_frame([
        ("90", "c1", str(end), 1000.0, "completed", "JP", 9.0, 9.0, 9.0, 30.0, 1.0, 1.0, None),
        ("91", "c2", "2024-05-01", 1000.0, "cancelled", "JP", 9.0, 9.0, 9.0, 30.0, 1.0, 1.0, None),
        ("92", "c3", str(end), 5.0, "completed", "JP", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
        ("93", "new", "2024-06-01", 5.0, "completed", "JP", 0.0, 0.0, 0.0, NAN, NAN, NAN, None),
    ])
    later_events = events_frame([
        ("c1", str(end), "complaint", "logistics"),
        ("c1", "2024-04-02", "email_open", None),
        ("c2", str(end), "unsubscribe", None),
    ])
    got = features.build(pd.concat([ORDERS, later_orders], ignore_index=True), AS_OF,
                         events=pd.concat([EVENTS, later_events], ignore_index=True))
    assert_frame_equal(got, built)


def test_partition_invariant(built):
    parts = []
    for low in (True, False):
        orders = ORDERS[(ORDERS["customer_id"] < "c2") == low]
        events = EVENTS[(EVENTS["customer_id"] < "c2") == low]
        parts.append(features.build(orders, AS_OF, events=events))
    assert [len(p) for p in parts] == [2, 1]
    joined = pd.concat(parts).sort_index()
    assert_frame_equal(joined.drop(columns="m_score"), built.drop(columns="m_score"))


def test_input_row_order_does_not_matter(built):
    shuffled = ORDERS.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert_frame_equal(features.build(shuffled, AS_OF, events=EVENTS[::-1]), built)


def test_same_instant_orders_broken_by_order_id():
    rows = [("b2", "c", "2024-03-01 10:00", 10.0, 1.0), ("a1", "c", "2024-03-01 10:00", 10.0, 0.0)]
    cols = (*schema.ORDER_REQUIRED, "discount_amount")
    one = features.build(orders_frame(rows, cols), AS_OF)
    other = features.build(orders_frame(rows[::-1], cols), AS_OF)
    assert one.loc["c", "last_order_discounted"] == 1  # order "b2" sorts after "a1"
    assert_frame_equal(one, other)


def test_optional_columns_absent():
    minimal = ORDERS[list(schema.ORDER_REQUIRED)]
    got = features.build(minimal, AS_OF)
    activity = [n for n, f in features.FEATURES.items() if f.family == "activity" and not f.requires]
    assert features.model_columns(got) == activity
    assert not [c for c in got.columns if c.startswith("_")]
    # without a status column every order counts as completed: c3 and its order appear
    assert list(got.index) == ["0042", "c1", "c2", "c3"]
    assert got.loc["c1", "frequency"] == 5


def test_events_without_topic():
    got = features.build(ORDERS, AS_OF, events=EVENTS.drop(columns="topic"))
    assert got.loc["c1", "complaints_90d"] == 3
    assert "complaints_logistics_90d" not in got.columns
    assert "opens_30d" in got.columns


def test_ids_keep_their_spelling():
    rows = [("001", "0042", "2024-03-01", 1.0), ("002", "42", "2024-03-02", 2.0)]
    got = features.build(orders_frame(rows, schema.ORDER_REQUIRED), AS_OF)
    assert list(got.index) == ["0042", "42"]
    assert got.loc["0042", "monetary_total"] == 1.0


def test_empty_and_nothing_completed():
    got = features.build(ORDERS[ORDERS["customer_id"] == "c3"], AS_OF, events=EVENTS)
    assert got.empty
    assert list(got.columns) == list(features.build(ORDERS, AS_OF, events=EVENTS).columns)


def test_missing_required_column():
    with pytest.raises(InputError, match="^orders: missing required column 'amount'$"):
        features.build(ORDERS.drop(columns="amount"), AS_OF)
    with pytest.raises(InputError, match="events: missing required column 'event_type'"):
        features.build(ORDERS, AS_OF, events=EVENTS.drop(columns="event_type"))


# --- registry ---------------------------------------------------------------------------------
def test_registry(built):
    table = features.list_features()
    assert list(table.columns) == ["name", "family", "requires", "description"]
    assert list(table["name"]) == list(features.FEATURES)
    assert features.FEATURES["p_alive"].requires == (features.BTYD_INPUT,)
    assert set(table["family"]) == set(schema.FAMILIES)
    assert table["description"].str.len().min() > 10
    assert features.family_of("complaints_logistics_90d") == "logistics"
    assert features.family_of("complaints_price_90d") == "price"
    assert features.family_of("late_share") == "logistics"
    assert features.family_of("support_tickets_logistics_90d") == "logistics"
    assert features.family_of("complaints_payment_90d") == "service"
    with pytest.raises(KeyError, match="unknown feature 'nope'"):
        features.family_of("nope")
    model = features.model_columns(built)
    expected = [n for n, f in features.FEATURES.items() if features.BTYD_INPUT not in f.requires]
    assert model == expected  # every input present: every feature built (BG/NBD ones by the model stage)
    assert not set(model) & set(features.DESCRIPTOR_COLUMNS + features.AUX_COLUMNS)
    assert set(built.columns) == set(model) | set(features.DESCRIPTOR_COLUMNS) | {
        c for c in features.AUX_COLUMNS if c in built.columns}


def test_dtypes(built):
    assert built["frequency"].dtype == np.int64
    assert built["late_share"].dtype == np.float64
    assert built["r_score"].dtype == np.int64


# --- text columns as categoricals, one history for several dates -----------------------------
TEXT_COLUMNS = ("currency", "status", "country", "channel", "category")


def as_categories(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The frame with its text columns as pandas categoricals (categories in reverse order)."""
    out = frame.copy()
    for col in columns:
        if col in out.columns:
            values = sorted(out[col].dropna().unique(), reverse=True)
            out[col] = pd.Categorical(out[col], categories=[*values, "never_used"])
    return out


def test_categorical_text_columns_give_the_same_frame(built):
    orders = ORDERS.assign(channel=["web", "app", "web", "app", None, "app", "app", "app", "app",
                                    "store", "store", "web", "web"],
                           currency="EUR", category=["a", "b"] * 6 + ["a"])
    expected = features.build(orders, AS_OF, events=EVENTS)
    assert expected.loc["c1", "channel"] == "app"  # 2 web, 2 app: the latest wins
    got = features.build(as_categories(orders, TEXT_COLUMNS), AS_OF,
                         events=as_categories(EVENTS, ("event_type", "topic")))
    assert_frame_equal(got, expected)
    assert got["country"].dtype == expected["country"].dtype == orders["customer_id"].dtype
    # customer ids as a categorical too: same rows, same (text) index
    ids = as_categories(orders, (*TEXT_COLUMNS, "customer_id"))
    assert_frame_equal(features.build(ids, AS_OF, events=EVENTS), expected)


def test_history_cut_at_each_date_equals_a_build_on_the_cut_data():
    history = features.History(ORDERS, events=EVENTS)
    for day in ("2023-12-02", "2024-02-10", "2024-03-31", "2024-04-30"):
        as_of = pd.Timestamp(day)
        end = schema.day_end(as_of)
        expected = features.build(ORDERS[ORDERS["order_date"] < end], as_of,
                                  events=EVENTS[EVENTS["event_time"] < end])
        assert_frame_equal(history.build(as_of), expected)
    # `until` drops everything after it up front: a later date sees nothing more
    early = features.History(ORDERS, events=EVENTS, until=AS_OF)
    assert "c4" not in early.build(pd.Timestamp("2024-04-30")).index
    assert_frame_equal(early.build(pd.Timestamp("2024-04-30")).drop(columns="m_score"),
                       history.build(pd.Timestamp("2024-04-30")).drop(index="c4", columns="m_score"))


def test_detached_history_gives_the_same_features_without_the_orders_frame(built):
    """History.detach reads every used order column up front; the frame can then go."""
    orders = ORDERS.copy()
    history = features.History(orders, events=EVENTS).detach()
    for column in list(orders.columns):  # empty the frame: the history must not need it
        del orders[column]
    assert_frame_equal(history.build(AS_OF), built)
    with pytest.raises(KeyError, match="items"):
        history.col("items")
    once = features.History(ORDERS, events=EVENTS).detach(once=True)
    assert_frame_equal(once.build(AS_OF), built)  # each column handed to the groups, used once
    with pytest.raises(KeyError, match="amount"):
        once.col("amount")


def test_sort_kernel_orders_by_customer_then_time_keeping_ties_in_input_order():
    from churnctl.kernels import sort_by_group_time

    group = np.array([2, 0, 2, 1, 0, 2, 0], dtype=np.int64)
    time = np.array([5, 9, 5, 3, 1, 4, 9], dtype=np.int64)
    # customer 0: rows 4 (t=1), then 1 and 6 (t=9, input order); customer 1: row 3;
    # customer 2: row 5 (t=4), then 0 and 2 (t=5, input order)
    assert sort_by_group_time(group, time, 3).tolist() == [4, 1, 6, 3, 5, 0, 2]
    # A customer with many orders (sorted by the stable merge path) and random ties.
    rng = np.random.default_rng(0)
    group = rng.integers(0, 4, 500)
    group[:300] = 1
    time = rng.integers(0, 20, 500)
    assert np.array_equal(sort_by_group_time(group, time, 4), np.lexsort((time, group)))


def test_mode_kernel_takes_the_most_frequent_value_and_the_latest_on_ties():
    from churnctl.kernels import mode_per_group

    group = np.array([0, 0, 0, 1, 1, 1, 1, 2, 3, 3], dtype=np.int64)
    value = np.array([1, 0, 1, 0, 2, 2, 0, -1, 2, -1], dtype=np.int64)
    # 0: value 1 twice; 1: 0 and 2 twice each, 0 seen last; 2: only missing; 3: value 2
    assert mode_per_group(group, value, 5, 3).tolist() == [1, 0, -1, 2, -1]


def test_median_gap_kernel_by_hand():
    from churnctl.kernels import median_gap

    group = np.array([0, 0, 0, 0, 1, 3, 3], dtype=np.int64)
    day = np.array([0, 10, 12, 30, 5, 1, 4], dtype=np.int64)
    # 0: gaps 10, 2, 18 -> 10; 1 and 2: no gap; 3: gap 3
    got = median_gap(group, day, 4)
    assert got[0] == 10 and math.isnan(got[1]) and math.isnan(got[2]) and got[3] == 3
    many = np.arange(0, 400, dtype=np.int64) ** 2 // 7  # 399 gaps: the long path
    assert median_gap(np.zeros(400, dtype=np.int64), many, 1)[0] == np.median(np.diff(many))
    assert median_gap(np.zeros(5, dtype=np.int64), np.array([0, 1, 5, 6, 8]), 1)[0] == 1.5  # mean of 1, 2


def test_history_from_shared_customer_codes_equals_history_from_the_ids():
    # The score command hands History the codes the contacts stage computed (first appearance,
    # -1 without an id); the history must be the one it would build by hashing the ids itself.
    from churnctl import export

    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
        "customer_id": pd.array(["b", "A", "b", "a", None, "0007"], dtype="str"),
        "order_date": pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-01", "2024-01-02",
                                      "2024-01-02", "2024-01-05"]),
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    })
    plain = features.History(orders)
    shared = features.History(orders, codes=export.customer_codes(orders))
    assert list(shared.uniques) == ["0007", "A", "a", "b"] and shared.uniques.equals(plain.uniques)
    assert shared.uniques.dtype == plain.uniques.dtype
    assert np.array_equal(shared.rows, plain.rows) and np.array_equal(shared.cust, plain.cust)
    assert shared.rows.tolist() == [5, 1, 3, 2, 0]  # by customer, then time; no id: left out
