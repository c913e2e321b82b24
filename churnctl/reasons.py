"""Plain-words churn reasons from a customer's own numbers and the model's contributions.

:func:`build` takes the features frame and the per-feature log-odds contributions of the model
(positive = adds churn risk) and writes, for each customer, up to ``top_n`` short phrases joined
by ``"; "``, most risk first, e.g. ``9 of 12 orders arrived late; no order for 140 days, usually
every 35 days``.  Only features with a positive contribution are explained.

Each feature has a phrase template (a vectorised function over whole columns), registered with
:func:`phrase`.  Features that describe the same fact share a *group* (``late_share`` and
``last_order_late`` both say "k of n orders arrived late"), and a group is said at most once.
A template returns ``""`` when the customer's numbers cannot support the phrase: the value is
missing, or a problem count is zero ("0 complaints" is no reason); the next contribution is
then tried.  Customers with no positive contribution, or none that can be phrased, get an
empty string.  Contribution columns that are not columns of the features frame (e.g. a bias
term) are ignored; a feature without a template is said as ``name = value``.

Picking the top phrases loops over contribution ranks and templates, never over customers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR = "; "

#: feature name -> (group, template)
_PHRASES: dict[str, tuple[str, Callable[["_View"], np.ndarray]]] = {}


def phrase(*names: str, group: str | None = None):
    """Return a decorator registering a template ``f(view) -> object array`` for features."""

    def register(func: Callable[["_View"], np.ndarray]):
        for name in names:
            _PHRASES[name] = (group or func.__name__, func)
        return func

    return register


class _Columns:
    """Float views of the features frame, converted once per call."""

    def __init__(self, frame: pd.DataFrame, window: int) -> None:
        self.frame = frame
        self.window = window
        self._cache: dict[str, np.ndarray] = {}

    def full(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name in self.frame.columns:
                values = pd.to_numeric(self.frame[name], errors="coerce")
                self._cache[name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                self._cache[name] = np.full(len(self.frame), np.nan)
        return self._cache[name]


class _View:
    """The rows of some customers: ``view["late_share"]`` is a float array (NaN if absent)."""

    def __init__(self, columns: _Columns, rows: np.ndarray) -> None:
        self._columns = columns
        self.rows = rows
        self.window = str(columns.window)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns.full(name)[self.rows]


# --- formatting (vectorised over object arrays) ---------------------------------------------
def _say_each(x: np.ndarray, say: Callable[[int], str]) -> np.ndarray:
    """``say(n)`` for each whole number ``n = round(x)`` (NaN as 0), as an object array.

    Each distinct number is formatted once: counts, days and percentages take few values, so
    this is a table lookup instead of one Python string per customer.
    """
    v = np.round(np.nan_to_num(np.asarray(x, dtype=np.float64))).astype(np.int64)
    if v.size == 0:
        return np.empty(0, dtype=object)
    lo, hi = int(v.min()), int(v.max())
    if hi - lo <= v.size + 1024:
        return np.array([say(i) for i in range(lo, hi + 1)], dtype=object)[v - lo]
    distinct, inverse = np.unique(v, return_inverse=True)
    return np.array([say(i) for i in distinct.tolist()], dtype=object)[inverse.reshape(v.shape)]


def _int(x: np.ndarray) -> np.ndarray:
    """Whole numbers as text ("12"); NaN shows as "0", so mask it first."""
    return _say_each(x, str)


def _dec(x: np.ndarray) -> np.ndarray:
    """One decimal, dropping ".0" ("3.5", "4").  Each distinct value is formatted once."""
    r = np.round(np.nan_to_num(np.asarray(x, dtype=np.float64)), 1)
    if r.size == 0:
        return np.empty(0, dtype=object)
    distinct, inverse = np.unique(r, return_inverse=True)
    whole = distinct == np.round(distinct)
    return np.where(whole, _int(distinct), distinct.astype(str).astype(object))[inverse.reshape(r.shape)]


def _pct(x: np.ndarray) -> np.ndarray:
    return _say_each(100 * np.asarray(x, dtype=np.float64), lambda i: f"{i}%")


def _s(n: np.ndarray, word: str, many: str | None = None) -> np.ndarray:
    """``word`` or its plural after the number ``n``."""
    return np.where(np.round(n) == 1, word, many or word + "s").astype(object)


def _counted(n: np.ndarray, word: str, many: str | None = None) -> np.ndarray:
    """``"1 day"``, ``"3 days"``: the number and the word (singular when it rounds to 1)."""
    plural = many or word + "s"
    return _say_each(n, lambda i: f"{i} {word if i == 1 else plural}")


def _only(ok: np.ndarray, text: np.ndarray) -> np.ndarray:
    return np.where(ok, text, "").astype(object)


def _cases(n: int, *cases: tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]) -> np.ndarray:
    """Like ``np.select(conditions, texts, "")``, but each text is built only for the rows it
    applies to: ``make(i)`` gets those row positions (the first true condition wins)."""
    out = np.full(n, "", dtype=object)
    todo = np.ones(n, dtype=bool)
    for condition, make in cases:
        rows = np.flatnonzero(condition & todo)
        if rows.size:
            out[rows] = make(rows)
        todo &= ~condition
    return out


def _k_of_frequency(v: _View, share: str, count: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (k, n) over completed orders: k from the auxiliary count, else share x n."""
    k, n = v[count], v["frequency"]
    return np.where(np.isnan(k), np.round(v[share] * n), k), n


# --- activity ---------------------------------------------------------------------------------
#: Below this many days without an order, recency is not said as a reason on its own.
MIN_SILENCE_DAYS = 30
#: A rhythm slower than this many days between orders is itself a reason ("orders only about
#: every 120 days"); a faster one is said only as part of an overdue silence.
SLOW_RHYTHM_DAYS = 60


@phrase("recency_days", "overdue_ratio", "mean_gap_days", "median_gap_days", group="rhythm")
def recency(v: _View) -> np.ndarray:
    """One phrase for silence and rhythm, said once: overdue, slow, or long silent."""
    r = v["recency_days"]
    gap = np.where(np.isnan(v["mean_gap_days"]), v["median_gap_days"], v["mean_gap_days"])
    has_gap = gap >= 0.5
    overdue = has_gap & (r > gap) & (r >= MIN_SILENCE_DAYS)
    silent = ~has_gap & (r >= MIN_SILENCE_DAYS)  # one order: no rhythm to compare with
    slow = has_gap & (gap >= SLOW_RHYTHM_DAYS)
    return _cases(  # recently active at their usual pace: not a reason
        len(r),
        (overdue, lambda i: "no order for " + _counted(r[i], "day") + ", usually every " + _counted(gap[i], "day")),
        (silent, lambda i: "no order for " + _counted(r[i], "day")),
        (slow, lambda i: "orders only about every " + _counted(gap[i], "day")),
    )


@phrase("frequency")
def frequency(v: _View) -> np.ndarray:
    n = v["frequency"]
    text = np.where(n == 1, "only 1 order so far", _counted(n, "order") + " so far")
    return _only(~np.isnan(n), text)


@phrase("tenure_days")
def tenure(v: _View) -> np.ndarray:
    t = v["tenure_days"]
    return _only(~np.isnan(t), "customer for " + _counted(t, "day"))


@phrase("monetary_total")
def monetary(v: _View) -> np.ndarray:
    m = v["monetary_total"]
    return _only(~np.isnan(m), _int(m) + " spent in total")


@phrase("aov")
def aov(v: _View) -> np.ndarray:
    a = v["aov"]
    return _only(~np.isnan(a), "average order " + _int(a))


@phrase("orders_last_90d", "orders_prev_90d", "order_trend")
def order_windows(v: _View) -> np.ndarray:
    last, prev = v["orders_last_90d"], v["orders_prev_90d"]
    text = (_counted(last, "order") + " in the last " + v.window + " days vs " + _int(prev)
            + " in the " + v.window + " before")
    return _only(last < prev, text)  # only a slowdown is a reason ("0 vs 0" is not)


@phrase("spend_last_90d", "spend_prev_90d")
def spend_windows(v: _View) -> np.ndarray:
    last, prev = v["spend_last_90d"], v["spend_prev_90d"]
    text = ("spent " + _int(last) + " in the last " + v.window + " days vs " + _int(prev)
            + " in the " + v.window + " before")
    return _only(last < prev, text)


@phrase("aov_last3_vs_before")
def aov_trend(v: _View) -> np.ndarray:
    q = v["aov_last3_vs_before"]
    p = np.round(np.abs(1 - np.nan_to_num(q)) * 100)
    text = np.select(
        [p == 0, q < 1],
        ["last 3 orders the same size as before",
         "last 3 orders " + _int(p) + "% smaller than before"],
        "last 3 orders " + _int(p) + "% larger than before",
    )
    return _only(~np.isnan(q), text)


# --- price ------------------------------------------------------------------------------------
@phrase("last_order_discounted", "discount_share_last3", "discount_share_before",
        "discount_share_drop", "discount_share_prior")
def coupon(v: _View) -> np.ndarray:
    before, last3 = v["discount_share_before"], v["discount_share_last3"]
    k3 = np.round(last3 * 3)
    compared = ~np.isnan(before) & ~np.isnan(last3)
    last, prior = v["last_order_discounted"], v["discount_share_prior"]
    return _cases(
        len(before),
        (compared & (k3 == 0), lambda i: "last 3 orders at full price after " + _pct(before[i]) + " with a discount"),
        (compared, lambda i: _int(k3[i]) + " of the last 3 orders with a discount after " + _pct(before[i]) + " before"),
        ((last == 0) & (prior > 0),
         lambda i: "last order at full price after " + _pct(prior[i]) + " of earlier orders with a discount"),
        (last == 1, lambda i: np.full(i.size, "last order with a discount", dtype=object)),
        (~np.isnan(last), lambda i: np.full(i.size, "last order at full price", dtype=object)),
    )


@phrase("discount_share")
def discount_mix(v: _View) -> np.ndarray:
    k, n = _k_of_frequency(v, "discount_share", "_discount_count")
    text = _int(k) + " of " + _counted(n, "order") + " with a discount"
    return _only(~np.isnan(k) & ~np.isnan(n), text)


@phrase("mean_discount_rate")
def discount_rate(v: _View) -> np.ndarray:
    r = v["mean_discount_rate"]
    return _only(~np.isnan(r), "average discount " + _pct(r))


@phrase("full_price_spend_share")
def full_price(v: _View) -> np.ndarray:
    s = v["full_price_spend_share"]
    return _only(~np.isnan(s), _pct(s) + " of spend at full price")


# --- logistics --------------------------------------------------------------------------------
@phrase("mean_delivery_days")
def delivery_time(v: _View) -> np.ndarray:
    d = v["mean_delivery_days"]
    return _only(~np.isnan(d), "deliveries took " + _dec(d) + " days on average")


@phrase("late_share", "last_order_late", "last_order_delay_days")
def late(v: _View) -> np.ndarray:
    k, n = v["_late_count"], v["_delivered_count"]
    share, last, delay = v["late_share"], v["last_order_late"], v["last_order_delay_days"]

    def also(i: np.ndarray) -> np.ndarray:
        return _cases(i.size, (delay[i] > 0, lambda j: ", the last one " + _counted(delay[i][j], "day") + " late"),
                      (last[i] == 1, lambda j: np.full(j.size, ", the last one too", dtype=object)))

    return _cases(  # nothing late: not a reason
        len(k),
        ((k > 0) & (n > 0), lambda i: _int(k[i]) + " of " + _counted(n[i], "order") + " arrived late" + also(i)),
        (np.isnan(k) & (share > 0), lambda i: _pct(share[i]) + " of orders arrived late" + also(i)),
        (delay > 0, lambda i: "last order arrived " + _counted(delay[i], "day") + " late"),
        (last == 1, lambda i: np.full(i.size, "last order arrived late", dtype=object)),
    )


@phrase("shipping_cost_share")
def shipping(v: _View) -> np.ndarray:
    s = v["shipping_cost_share"]
    return _only(~np.isnan(s), "shipping cost " + _pct(s) + " of order value")


@phrase("duties_share", "last_order_duties")
def duties(v: _View) -> np.ndarray:
    k, n = _k_of_frequency(v, "duties_share", "_duties_count")
    text = "import duties charged on " + _int(k) + " of " + _counted(n, "order")
    text = text + np.where(v["last_order_duties"] == 1, ", the last one too", "")
    return _only((k > 0) & (n > 0), text)


# --- service and product ----------------------------------------------------------------------
def _rate_phrase(v: _View, rate: str, count: str, verb: str) -> np.ndarray:
    k, n, r = v[count], v["_orders_count"], v[rate]
    return _cases(
        len(r),
        ((r > 0) & (np.isnan(k) | np.isnan(n)), lambda i: _pct(r[i]) + " of orders " + verb),
        (r > 0, lambda i: _int(k[i]) + " of " + _counted(n[i], "order") + " " + verb),
    )


@phrase("cancel_rate")
def cancels(v: _View) -> np.ndarray:
    return _rate_phrase(v, "cancel_rate", "_cancelled_count", "cancelled")


@phrase("refund_rate")
def refunds(v: _View) -> np.ndarray:
    return _rate_phrase(v, "refund_rate", "_refunded_count", "refunded")


@phrase("return_rate")
def returns(v: _View) -> np.ndarray:
    return _rate_phrase(v, "return_rate", "_returned_count", "returned")


@phrase("failed_after_last_order")
def failed_after_last(v: _View) -> np.ndarray:
    n = v["failed_after_last_order"]
    text = np.where(n == 1, "the latest order was cancelled or failed",
                    _counted(n, "order") + " cancelled or failed since the last completed one")
    return _only(n > 0, text)


@phrase("returned_after_last_order")
def returned_after_last(v: _View) -> np.ndarray:
    n = v["returned_after_last_order"]
    text = np.where(n == 1, "returned the latest order", "returned the latest " + _counted(n, "order"))
    return _only(n > 0, text)


@phrase("payment_failures")
def payments(v: _View) -> np.ndarray:
    n = v["payment_failures"]
    return _only(n > 0, _counted(n, "failed payment"))


def _in_window(v: _View, name: str, word: str, *, zero: bool = False) -> np.ndarray:
    """Say a count in the recent window; a zero count is said only when ``zero``."""
    n = v[name]
    ok = (n >= 0) if zero else (n > 0)
    return _only(ok, _counted(n, word) + " in the last " + v.window + " days")


@phrase("support_tickets_90d", group="tickets")
def tickets(v: _View) -> np.ndarray:
    return _in_window(v, "support_tickets_90d", "support ticket")


#: Complaint topic -> the words used in "complaints about ...".
TOPIC_WORDS = {"logistics": "logistics", "price": "prices", "service": "service",
               "product": "products", "payment": "payments"}


@phrase("complaints_90d", group="complaints")
def complaints(v: _View) -> np.ndarray:
    return _in_window(v, "complaints_90d", "complaint")


def _about(name: str, word: str, topic: str) -> Callable[[_View], np.ndarray]:
    def render(v: _View) -> np.ndarray:
        n = v[name]
        text = (_counted(n, word) + " about " + TOPIC_WORDS[topic] + " in the last "
                + v.window + " days")
        return _only(n > 0, text)

    return render


for _topic in TOPIC_WORDS:
    phrase(f"complaints_{_topic}_90d", group="complaints")(
        _about(f"complaints_{_topic}_90d", "complaint", _topic))
    phrase(f"support_tickets_{_topic}_90d", group="tickets")(
        _about(f"support_tickets_{_topic}_90d", "support ticket", _topic))


def _since_last(family: str, words: str) -> Callable[[_View], np.ndarray]:
    name = f"contacts_{family}_since_last_order"

    def render(v: _View) -> np.ndarray:
        n = v[name]
        return _only(n > 0, _counted(n, "complaint or ticket", "complaints or tickets") + " about "
                     + words + " since the last order")

    return render


for _family, _words in (("logistics", "delivery"), ("price", "prices"), ("service", "service or payment"),
                        ("product", "products")):
    phrase(f"contacts_{_family}_since_last_order", group="complaints")(_since_last(_family, _words))


@phrase("p_alive", "expected_orders_horizon", "p_no_order_horizon", group="rhythm")
def alive(v: _View) -> np.ndarray:
    """The BG/NBD features summarise silence and rhythm: say those in the customer's own numbers
    when they are a reason, else the model's estimate that the customer has stopped."""
    own = recency(v)
    p = v["p_alive"]
    return _cases(
        len(p),
        (own != "", lambda i: own[i]),
        (p < 0.5, lambda i: "probably no longer buying (buying pattern model: " + _pct(p[i]) + " still active)"),
    )


@phrase("mean_review_score", group="reviews")
def mean_review(v: _View) -> np.ndarray:
    mean = v["mean_review_score"]
    return _only(~np.isnan(mean), "average review " + _dec(mean) + " of 5")


@phrase("low_review_share", group="reviews")
def low_reviews(v: _View) -> np.ndarray:
    k, n, share = v["_low_review_count"], v["_review_count"], v["low_review_share"]
    return np.select(
        [(k > 0) & (n > 0), np.isnan(k) & (share > 0)],
        [_int(k) + " of " + _counted(n, "review") + " scored 2 or less",
         _pct(share) + " of reviews scored 2 or less"],
        "",
    ).astype(object)


@phrase("last_review_score")
def last_review(v: _View) -> np.ndarray:
    s = v["last_review_score"]
    return _only(~np.isnan(s), "last review " + _dec(s) + " of 5")


# --- engagement -------------------------------------------------------------------------------
@phrase("opens_30d", "opens_90d", "days_since_last_open")
def opens(v: _View) -> np.ndarray:
    o30, days = v["opens_30d"], v["days_since_last_open"]
    return np.select(
        [o30 > 0, (o30 == 0) & ~np.isnan(days), o30 == 0],
        [_counted(o30, "email open") + " in 30 days",
         "stopped opening emails (0 opens in 30 days)",
         "never opened an email"],
        "",
    ).astype(object)


@phrase("clicks_30d", "clicks_90d")
def clicks(v: _View) -> np.ndarray:
    return _in_window(v, "clicks_90d", "email click", zero=True)


@phrase("open_rate_90d", "open_rate_before", "open_trend")
def open_rate(v: _View) -> np.ndarray:
    now, before = v["open_rate_90d"], v["open_rate_before"]
    text = "opened " + _pct(now) + " of emails in the last " + v.window + " days"
    text = text + np.where(np.isnan(before), "", " vs " + _pct(before) + " before")
    return _only(~np.isnan(now), text)


@phrase("cart_abandons_90d")
def carts(v: _View) -> np.ndarray:
    return _in_window(v, "cart_abandons_90d", "abandoned cart")


@phrase("unsubscribed")
def unsubscribe(v: _View) -> np.ndarray:
    return _only(v["unsubscribed"] == 1, np.full(len(v.rows), "unsubscribed from emails", object))


def _generic(name: str) -> Callable[[_View], np.ndarray]:
    def render(v: _View) -> np.ndarray:
        x = v[name]
        return _only(~np.isnan(x), name + " = " + _dec(x))

    return render


# --- public API -------------------------------------------------------------------------------
def build(features: pd.DataFrame, contributions: pd.DataFrame, top_n: int = 3, *,
          recent_days: int = 90) -> pd.Series:
    """Return one string per customer: up to ``top_n`` reasons joined by ``"; "``.

    Parameters
    ----------
    features : DataFrame
        The features frame (:func:`churnctl.features.build`), auxiliary columns included.
    contributions : DataFrame
        Same index; one column per model feature holding its log-odds contribution
        (positive adds churn risk).  Rows missing here get no reasons.
    top_n : int
        Maximum number of reasons per customer.
    recent_days : int
        The recent window of the features (``FeatureConfig.recent_days``), used in the words.

    Returns
    -------
    Series
        Index of ``features``, name ``reasons``: phrases for positive contributions, largest
        first, one per group of related features; ``""`` when there is none.
    """
    index = features.index
    names = [c for c in contributions.columns if c in features.columns]
    if len(index) == 0 or not names or top_n <= 0:
        return pd.Series(np.full(len(index), "", dtype=object), index=index, name="reasons", dtype="str")
    contrib = contributions[names].reindex(index).to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.Series(pd.array(phrases(features, names, contrib, top_n, recent_days=recent_days), dtype="str"),
                     index=index, name="reasons")


#: Ranks of each customer's positive contributions computed up front (see :func:`phrases`).
RANK_DEPTH = 8


def phrases(features: pd.DataFrame, names: list[str], contrib: np.ndarray, top_n: int = 3, *,
            recent_days: int = 90) -> pa.Array:
    """Return :func:`build`'s strings as an Arrow array, from a contribution matrix.

    ``contrib`` has one row per row of ``features`` (same order) and one column per name of
    ``names`` (each a column of ``features``).
    """
    index = features.index
    if len(index) == 0 or not names or top_n <= 0:
        return pa.array(np.full(len(index), "", dtype=object), type=pa.large_string())
    from .kernels import positive_ranking  # compiled (numba), imported when reasons are written

    # Each customer's positive contributions, largest first (ties: contribution column order);
    # NaN and <= 0 never explain.  The first RANK_DEPTH ranks of every customer are enough for
    # almost all; the full ranking is computed for the few still without top_n reasons then.
    contrib = np.ascontiguousarray(contrib, dtype=np.float64)
    ranking = positive_ranking(contrib, min(len(names), max(RANK_DEPTH, top_n)))
    renders = [_PHRASES[c][1] if c in _PHRASES else _generic(c) for c in names]
    group_of, _ = pd.factorize(pd.Series([_PHRASES.get(c, (c,))[0] for c in names]))
    columns = _Columns(features, recent_days)
    slots = np.full((len(index), top_n), "", dtype=object)
    said = np.full((len(index), top_n), -1, dtype=np.int64)  # group ids already said
    count = np.zeros(len(index), dtype=np.int64)
    active = np.arange(len(index))  # customers who may still get a reason; rows of ``ranking``

    for rank in range(len(names)):
        if rank == ranking.shape[1]:  # past the first ranks: the whole ranking of those left
            full = np.full((len(index), len(names)), -1, dtype=np.int64)
            full[active] = positive_ranking(contrib[active], len(names))
            ranking = full
        col = ranking[active, rank]  # each active customer's next largest contribution
        live = (count[active] < top_n) & (col >= 0)
        if not live.any():
            break  # nobody has a positive contribution left to say
        active, col = active[live], col[live]  # the others are done for good
        group, fresh = group_of[col], np.ones(len(active), dtype=bool)
        for k in range(top_n):  # a group is said at most once
            fresh &= said[active, k] != group
        rows, col = active[fresh], col[fresh]
        text = np.full(rows.size, "", dtype=object)
        by_col = np.argsort(col, kind="stable")  # the rows of each feature, in row order
        cols, starts = np.unique(col[by_col], return_index=True)
        for c, pick in zip(cols.tolist(), np.split(by_col, starts[1:])):
            text[pick] = renders[c](_View(columns, rows[pick]))
        spoken = text != ""
        rows, text, col = rows[spoken], text[spoken], col[spoken]
        slots[rows, count[rows]] = text
        said[rows, count[rows]] = group_of[col]
        count[rows] += 1

    # Slots fill in order: slot s is said iff count > s; the others are null, skipped by the join.
    said_slots = [pa.array(slots[:, s], mask=count <= s if s else None, type=pa.large_string())
                  for s in range(top_n)]
    return pc.binary_join_element_wise(*said_slots, pa.scalar(SEPARATOR, pa.large_string()),
                                       null_handling="skip")
