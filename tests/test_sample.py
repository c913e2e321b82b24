"""Tests of the synthetic history generator (churnctl.sample)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from churnctl import sample, schema
from churnctl.errors import InputError

END = "2026-06-30"
STOP = pd.Timestamp("2026-07-01")  # day_end(END): nothing may be at or after it


@pytest.fixture(scope="module")
def data() -> sample.SampleData:
    return sample.generate(1500, seed=3, end_date=END)


def _utc(text: pd.Series) -> pd.Series:
    """Parse ISO 8601 text (Z or offsets) to naive UTC; unparsable -> NaT."""
    return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None)


def _clean_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Return the rows an ingest would keep, with parsed dates and numbers."""
    out = orders.assign(
        ts=_utc(orders["order_date"]),
        amt=pd.to_numeric(orders["amount"], errors="coerce"),
        delivery=pd.to_numeric(orders["delivery_days"], errors="coerce"),
        promised=pd.to_numeric(orders["promised_days"], errors="coerce"),
    )
    ok = (out["ts"].notna() & out["amt"].ge(0) & out["customer_id"].ne("")
          & out["currency"].ne("XXX"))
    return out[ok].drop_duplicates().drop_duplicates("order_id", keep="last")


# --- known answers of the text helpers ------------------------------------------------------
def test_money_text_known_answers():
    units = np.array([1250, -5, 0, 1250, 0])
    two = np.array([True, True, True, False, True])
    assert sample._money(units, two).to_pylist() == ["12.50", "-0.05", "0.00", "1250", "0.00"]
    assert sample._money(units, two, zero_plain=True).to_pylist()[2] == "0"


def test_iso_text_known_answers():
    got = sample._iso(np.array([0, 86_399, 1_782_777_600 + 3_661]))
    assert got.to_pylist() == ["1970-01-01T00:00:00Z", "1970-01-01T23:59:59Z",
                               "2026-06-30T01:01:01Z"]
    assert sample._iso(np.array([3_600]), "+01:00").to_pylist() == ["1970-01-01T01:00:00+01:00"]


# --- determinism --------------------------------------------------------------------------
def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = sample.generate(300, seed=11, end_date=END)
    b = sample.generate(300, seed=11, end_date=END)
    c = sample.generate(300, seed=12, end_date=END)
    sample.write(a, tmp_path / "a")
    sample.write(b, tmp_path / "b")
    for name in ("orders", "events", "customers", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == \
            (tmp_path / "b" / f"{name}.csv").read_bytes()
    assert not a.orders.equals(c.orders)
    assert not a.truth["churned"].equals(c.truth["churned"])


# --- schema -------------------------------------------------------------------------------
def test_columns_follow_the_canonical_schema(data):
    assert tuple(data.orders.columns) == sample.ORDER_COLUMNS
    assert set(sample.ORDER_COLUMNS) == set(schema.ORDER_COLUMNS)
    assert tuple(data.events.columns) == schema.EVENT_COLUMNS
    assert tuple(data.customers.columns) == schema.CUSTOMER_COLUMNS
    assert tuple(data.truth.columns) == ("customer_id", "churned", "churn_cause", "churn_date")
    for frame in (data.orders, data.events, data.customers, data.truth):
        assert frame.notna().all().all()  # text-ready: missing is ""
        assert all(isinstance(v, str) for v in frame.iloc[0])


def test_values_come_from_the_allowed_sets(data):
    good = _clean_orders(data.orders)
    assert set(good["status"]) == set(schema.ORDER_STATUSES)
    assert set(good["channel"]) == {"shopify", "amazon", "ebay", "woocommerce", "web"}
    assert set(data.events["event_type"]) == set(schema.EVENT_TYPES)
    assert set(data.events["topic"]) == set(schema.EVENT_TOPICS) | {""}
    assert set(good["review_score"]) <= {"", "1", "2", "3", "4", "5"}
    assert set(data.customers["marketing_consent"]) == {"true", "false"}
    assert data.customers["customer_id"].is_unique
    assert set(good["customer_id"]) == set(data.customers["customer_id"])
    # each currency per country; JPY has no decimals, the others exactly two
    pairs = set(zip(good["country"], good["currency"]))
    assert {("US", "USD"), ("GB", "GBP"), ("DE", "EUR"), ("JP", "JPY"), ("CA", "CAD")} <= pairs
    jpy = good["currency"].eq("JPY")
    assert good.loc[jpy, "amount"].str.fullmatch(r"\d+").all()
    assert good.loc[~jpy, "amount"].str.fullmatch(r"\d+\.\d\d").all()


def test_cross_border_orders_take_longer_and_pay_duties(data):
    good = _clean_orders(data.orders)
    cross = good["country"].isin(["GB", "CH", "CA", "AU", "JP"])
    assert good.loc[cross, "promised"].mean() > good.loc[~cross, "promised"].mean() + 3
    duties = pd.to_numeric(good["duties_amount"]) > 0
    assert duties[cross].mean() > 0.02
    assert not duties[~cross].any()


# --- dates --------------------------------------------------------------------------------
@pytest.mark.parametrize("end", ["2026-06-30", "2025-01-15"])
def test_nothing_after_the_end_date(end):
    d = sample.generate(1500, seed=5, end_date=end, years=2.0)
    stop = pd.Timestamp(end) + pd.Timedelta(days=1)
    orders = _utc(d.orders["order_date"]).dropna()
    events = _utc(d.events["event_time"])
    assert events.notna().all()
    assert orders.max() < stop and events.max() < stop
    assert orders.min() >= stop - pd.Timedelta(days=2 * 365.25 + 1)
    assert pd.to_datetime(d.truth["churn_date"].replace("", None)).max() < stop


def test_offset_rows_exist_and_keep_the_utc_date(data):
    dates = data.orders["order_date"]
    offset = dates.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00")
    assert 0 < offset.mean() < 0.1
    assert (dates[offset].str[:10] == _utc(dates[offset]).dt.strftime("%Y-%m-%d")).all()


# --- planted churn ------------------------------------------------------------------------
def test_churners_place_no_order_after_their_churn_date(data):
    truth = data.truth.set_index("customer_id")
    good = _clean_orders(data.orders)
    last_day = good.groupby("customer_id")["ts"].max().dt.strftime("%Y-%m-%d")
    churned = truth["churned"].eq("true")
    assert set(truth["churned"]) == {"true", "false"}
    assert 0.2 < churned.mean() < 0.6
    # churn_date is the day of the last order: nothing comes after it
    assert (last_day[churned[churned].index] == truth.loc[churned, "churn_date"]).all()
    assert set(truth.loc[churned, "churn_cause"]) == set(schema.FAMILIES)
    assert (truth.loc[~churned, ["churn_cause", "churn_date"]] == "").all().all()


def test_logistics_churners_had_late_last_orders(data):
    truth = data.truth.set_index("customer_id")
    good = _clean_orders(data.orders).sort_values("ts")
    last = good.groupby("customer_id").tail(1).set_index("customer_id")
    late = (last["delivery"] > last["promised"] + 3) | (pd.to_numeric(last["duties_amount"]) > 0)
    group = np.where(truth.loc[last.index, "churned"].eq("true"),
                     truth.loc[last.index, "churn_cause"], "stay")
    share = late.groupby(group).mean()
    assert share["logistics"] > 0.7
    assert share["stay"] < 0.1


def test_each_cause_leaves_its_own_trace(data):
    truth = data.truth.set_index("customer_id")
    good = _clean_orders(data.orders).sort_values("ts")
    last = good.groupby("customer_id").tail(1).set_index("customer_id")
    group = pd.Series(np.where(truth.loc[last.index, "churned"].eq("true"),
                               truth.loc[last.index, "churn_cause"], "stay"), index=last.index)
    bad_review = pd.to_numeric(last["review_score"], errors="coerce").le(2)
    returned = last["status"].isin(["returned", "refunded"])
    failed = last["status"].isin(["cancelled", "payment_failed"])
    discounted = pd.to_numeric(last["discount_amount"]) > 0
    product = (bad_review | returned).groupby(group).mean()
    service = failed.groupby(group).mean()
    assert product["product"] > 0.6 > 0.15 > product["stay"]
    assert service["service"] > 0.5 > 0.1 > service["stay"]
    # price leavers were deal seekers whose last order carried no discount
    prior = good.assign(d=pd.to_numeric(good["discount_amount"]) > 0)
    prior = prior[prior.groupby("customer_id").cumcount(ascending=False) > 0]
    prior_share = prior.groupby("customer_id")["d"].mean().groupby(group).mean()
    assert prior_share["price"] > 0.6 > 0.4 > prior_share["stay"]
    assert discounted.groupby(group).mean()["price"] < 0.1
    # engagement leavers unsubscribe far more often
    unsub = data.customers.set_index("customer_id")["unsubscribed"].eq("true")
    unsub_share = unsub.groupby(group.reindex(unsub.index)).mean()
    assert unsub_share["engagement"] > 0.4 > 0.1 > unsub_share["stay"]


def test_churn_mix_steers_the_causes():
    d = sample.generate(800, seed=9, end_date=END, churn_mix={"logistics": 1.0})
    causes = d.truth.loc[d.truth["churned"].eq("true"), "churn_cause"]
    assert causes.eq("logistics").mean() > 0.8


def test_label_churn_rate_at_a_training_cutoff(data):
    good = _clean_orders(data.orders)
    done = good[good["status"].eq("completed")]
    cut = pd.Timestamp("2026-04-02")  # day_end(2026-04-01)
    known = set(done.loc[done["ts"] < cut, "customer_id"])
    came_back = set(done.loc[(done["ts"] >= cut) & (done["ts"] < cut + pd.Timedelta(days=90)),
                             "customer_id"])
    rate = len(known - came_back) / len(known)
    assert 0.3 <= rate <= 0.55


# --- dirt -----------------------------------------------------------------------------------
def _rejectable(orders: pd.DataFrame) -> pd.Series:
    amount = pd.to_numeric(orders["amount"], errors="coerce")
    return (_utc(orders["order_date"]).isna() | amount.isna() | amount.lt(0)
            | orders["currency"].eq("XXX") | orders["customer_id"].eq(""))


def test_dirty_fraction_is_honoured():
    d = sample.generate(800, seed=4, end_date=END, dirty_fraction=0.03)
    bad = _rejectable(d.orders)
    assert 0.02 < bad.mean() < 0.035 < sample.MAX_DIRTY_FRACTION
    rows = d.orders[bad]
    assert rows["currency"].eq("XXX").any() and rows["customer_id"].eq("").any()
    assert rows["amount"].str.startswith("-").any()


def test_default_dirt_has_duplicates_and_status_updates(data):
    assert 0 < _rejectable(data.orders).mean() < 0.02
    assert data.orders.duplicated().sum() > 0
    repeated = data.orders[data.orders.duplicated("order_id", keep=False)
                           & ~data.orders.duplicated(keep=False)]
    firsts = repeated.drop_duplicates("order_id", keep="first")
    lasts = repeated.drop_duplicates("order_id", keep="last")
    assert len(firsts) > 0
    assert set(firsts["status"]) == {"completed"} and set(lasts["status"]) == {"refunded"}


def test_zero_dirt_gives_a_clean_file():
    d = sample.generate(300, seed=4, end_date=END, dirty_fraction=0.0)
    assert not _rejectable(d.orders).any()
    assert d.orders["order_id"].is_unique


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dirty_fraction": 0.05}, "dirty_fraction: must be in [0, 0.05)"),
        ({"churn_mix": {"prices": 1.0}}, "churn_mix: unknown cause 'prices'"),
        ({"churn_mix": {"price": 0}}, "churn_mix: at least one cause"),
        ({"end_date": "2026-13-01"}, "end_date: not a date"),
        ({"years": 0}, "years: must be in (0, 50]"),
        ({"purchase_rate": 0}, "purchase_rate: must be in (0, 10]"),
    ],
)
def test_bad_arguments_raise_one_line_input_errors(kwargs, message):
    with pytest.raises(InputError) as info:
        sample.generate(10, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_purchase_rate_scales_orders_per_customer_and_one_keeps_the_default_files():
    base = sample.generate(3000, seed=3, end_date=END, years=2.0)
    same = sample.generate(3000, seed=3, end_date=END, years=2.0, purchase_rate=1.0)
    busy = sample.generate(3000, seed=3, end_date=END, years=2.0, purchase_rate=3.0)
    pd.testing.assert_frame_equal(base.orders, same.orders)
    per = [d.orders["customer_id"].replace("", pd.NA).dropna().nunique() for d in (base, busy)]
    ratio = (len(busy.orders) / per[1]) / (len(base.orders) / per[0])
    assert per == [3000, 3000]  # the same customers ...
    assert 1.6 < ratio < 2.2  # ... with more orders each (measured 1.80 for this seed)


def test_bad_customer_count_raises():
    with pytest.raises(InputError, match="customers: must be a whole number >= 1"):
        sample.generate(0)


# --- files ----------------------------------------------------------------------------------
def test_ids_keep_leading_zeros_when_written_and_read_back(data, tmp_path):
    counts = sample.write(data, tmp_path)
    assert counts == {"orders.csv": len(data.orders), "events.csv": len(data.events),
                      "customers.csv": len(data.customers), "truth.csv": len(data.truth)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(counts)  # no temp files left
    back = pd.read_csv(tmp_path / "orders.csv", dtype=str, keep_default_na=False)
    assert back["order_id"].tolist() == data.orders["order_id"].tolist()
    assert back["order_id"].str.fullmatch(r"0\d{9}").all()
    ids = pd.read_csv(tmp_path / "customers.csv", dtype=str, keep_default_na=False)["customer_id"]
    assert ids.tolist() == data.customers["customer_id"].tolist()
    assert ids.str.fullmatch(r"C\d{7}|amz-[0-9A-Za-z]{6}").all()
    assert ids.str.startswith("C000").any()
    market = ids[ids.str.startswith("amz-")].str[4:]
    assert market.str.contains("[a-z]").any() and market.str.contains("[A-Z]").any()
    events = pd.read_csv(tmp_path / "events.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(events, data.events, check_dtype=False)


def test_tiny_history_works():
    d = sample.generate(1, seed=0, end_date=END, years=0.5)
    assert len(d.customers) == 1 and len(d.truth) == 1 and len(d.orders) >= 1
    assert re.fullmatch(r"C\d{7}|amz-\w{6}", d.customers["customer_id"].iloc[0])


# --- contact columns and the simulated treatment effect (issue 5) ---------------------------
def test_customers_have_phone_last_name_city_zip():
    from churnctl import profiles

    data = sample.generate(300, seed=4, end_date="2026-06-30")
    cust = data.customers
    assert {"last_name", "phone", "city", "zip"} <= set(cust.columns)
    market = cust["customer_id"].str.startswith("amz-")
    assert cust.loc[market, "phone"].eq("").all() and cust.loc[~market, "phone"].ne("").all()
    e164 = profiles.e164(cust.loc[~market, "phone"], cust.loc[~market, "country"])
    assert e164.notna().all() and e164.str.fullmatch(r"\+[0-9]{10,13}").all()
    assert cust["last_name"].str.match(r"^[A-Z]").all() and cust["zip"].str.fullmatch(r"[1-9][0-9]{3,4}").all()


def _contacts(ids, group, campaign="price_coupon", send="2026-07-01 08:00"):
    return pd.DataFrame({"run_id": "2026-06-30", "customer_id": ids, "campaign": campaign, "group_name": group,
                         "send_at_utc": pd.Timestamp(send)})


def test_treatment_orders_only_for_treated_without_a_natural_order():
    orders = pd.DataFrame({
        "order_id": ["1", "2", "3", "4"], "customer_id": ["a", "b", "b", "h"],
        "order_date": ["2026-06-01T10:00:00Z", "2026-06-01T10:00:00Z", "2026-07-05T10:00:00Z", "2026-06-01T10:00:00Z"],
        "amount": ["10.00", "20.00", "30.00", "40.00"], "currency": ["EUR", "USD", "USD", "USD"],
        "status": ["completed"] * 4})
    c = _contacts(["a", "b", "h"], ["treated", "treated", "holdout"])
    got = sample.treatment_orders(c, orders, effects={"price_coupon": 1.0})
    # b already ordered in the window, h is holdout: only a gets a planted order
    assert got[["customer_id", "amount", "currency", "status", "planted_for"]].values.tolist() == [
        ["a", "10.00", "EUR", "completed", "price_coupon"]]
    t = pd.Timestamp(got.loc[0, "order_date"].rstrip("Z"))
    assert pd.Timestamp("2026-07-01 08:00") <= t <= pd.Timestamp("2026-07-31 08:00")
    assert list(got.columns) == list(orders.columns) + ["planted_for"]
    assert sample.treatment_orders(c, orders, effects={"price_coupon": 0.0}).empty


def test_treatment_effect_rate_and_determinism():
    ids = [f"c{i}" for i in range(4000)]
    orders = pd.DataFrame({"order_id": ids, "customer_id": ids, "order_date": "2026-05-01T00:00:00Z",
                           "amount": "50.00", "status": "completed"})
    c = _contacts(ids, "treated", campaign="winback_30")
    got = sample.treatment_orders(c, orders, seed=3)
    assert abs(len(got) / 4000 - sample.TREATMENT_EFFECTS["winback_30"]) < 0.02
    pd.testing.assert_frame_equal(got, sample.treatment_orders(c, orders, seed=3))
