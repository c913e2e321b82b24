"""Realistic synthetic history of a cross-border e-commerce seller, with planted churn.

:func:`generate` simulates customers of a seller that ships from a US and an EU warehouse to
twelve countries, over several sales channels, and returns four text-ready frames (every value
already spelled as it appears in the CSV files that :func:`write` produces):

* ``orders``: one row per order line of an export, in order-date order, including a few dirty
  rows (unparsable dates, negative or non-numeric amounts, unknown currency, missing customer
  id), exact duplicate rows, and repeated order ids whose later row updates the status.
* ``events``: email sends, opens, clicks, unsubscribes, cart abandons, support tickets,
  complaints, payment failures and reviews.
* ``customers``: one row per customer, with language, IANA timezone and marketing consent.
* ``truth``: the planted answer, for evaluation only: who decided to leave, why, and when.

How churn is planted.  Each customer has one *sensitivity* (price, logistics, service, product,
engagement, or activity) drawn from ``churn_mix``.  The simulation loops over order numbers:
at step k every still-active customer places order k, which may carry an *incident* (a late
delivery or a surprise duty, a coupon that ended, a cancellation or payment failure, a return
or a bad review, or emails that stopped being read).  Everybody meets incidents, but customers
meet the incident of their own sensitivity more often, and leave after it with high
probability; any customer may also lapse without cause (``activity``).  The recorded cause is
the experience that triggered the decision, so signals are informative but not perfect.
Everything is drawn from one ``numpy.random.default_rng(seed)``: the same arguments give
byte-identical files.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .config import DEFAULT_FX_RATES
from .errors import InputError

#: Share of churn decisions per cause family when ``churn_mix`` is not given.
DEFAULT_CHURN_MIX = {
    "price": 0.20,
    "logistics": 0.20,
    "service": 0.15,
    "product": 0.15,
    "engagement": 0.15,
    "activity": 0.15,
}
#: Above this share of unparsable order rows the pipeline would refuse the file.
MAX_DIRTY_FRACTION = 0.05

ORDER_COLUMNS = (
    "order_id", "customer_id", "order_date", "amount", "currency", "status", "country",
    "channel", "email", "first_name", "discount_amount", "shipping_cost", "delivery_days",
    "promised_days", "duties_amount", "review_score", "category", "items",
)
EVENT_COLUMNS = schema.EVENT_COLUMNS
CUSTOMER_COLUMNS = schema.CUSTOMER_COLUMNS
TRUTH_COLUMNS = ("customer_id", "churned", "churn_cause", "churn_date")

# --- world --------------------------------------------------------------------------------
# country: share of customers, currency, cross-border from its warehouse, promised days,
# language, timezones.  US warehouse serves the Americas and Asia-Pacific, EU warehouse Europe.
_COUNTRIES = (
    ("US", 0.30, "USD", False, 4, "en", ("America/New_York", "America/Chicago",
                                          "America/Denver", "America/Los_Angeles")),
    ("GB", 0.12, "GBP", True, 6, "en", ("Europe/London",)),
    ("DE", 0.13, "EUR", False, 2, "de", ("Europe/Berlin",)),
    ("FR", 0.08, "EUR", False, 3, "fr", ("Europe/Paris",)),
    ("NL", 0.05, "EUR", False, 3, "nl", ("Europe/Amsterdam",)),
    ("ES", 0.04, "EUR", False, 5, "es", ("Europe/Madrid",)),
    ("IT", 0.03, "EUR", False, 5, "it", ("Europe/Rome",)),
    ("SE", 0.02, "SEK", False, 5, "sv", ("Europe/Stockholm",)),
    ("CH", 0.02, "CHF", True, 6, "de", ("Europe/Zurich",)),
    ("CA", 0.08, "CAD", True, 8, "en", ("America/Toronto", "America/Vancouver",
                                         "America/Edmonton", "America/Halifax")),
    ("AU", 0.07, "AUD", True, 10, "en", ("Australia/Sydney", "Australia/Melbourne",
                                          "Australia/Brisbane", "Australia/Perth")),
    ("JP", 0.06, "JPY", True, 9, "ja", ("Asia/Tokyo",)),
)
_EU_OFFSET = ("DE", "FR", "NL", "ES", "IT", "SE", "CH")  # woocommerce exports local time there
_ZERO_DECIMALS = ("JPY",)

_NAMES = {
    "en": (("James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Mia", "Lucas", "Chloe", "Jack",
            "Grace", "Ethan", "Zoë", "Amelia", "Harry", "Isla", "Sean", "Aoife"),
           ("smith", "brown", "taylor", "wilson", "clark", "walker", "young", "hall", "wright")),
    "de": (("Lukas", "Anna", "Jürgen", "Lea", "Felix", "Sophie", "Maximilian", "Marie", "Jonas",
            "Hannah", "Björn", "Emilia"),
           ("mueller", "schmidt", "schneider", "fischer", "weber", "wagner", "becker")),
    "fr": (("Léa", "Hugo", "Élodie", "Louis", "Camille", "Gabriel", "Manon", "Jules", "Chloé",
            "Noémie", "Théo", "Inès"),
           ("martin", "bernard", "dubois", "moreau", "laurent", "lefebvre", "roux")),
    "nl": (("Daan", "Sanne", "Lotte", "Bram", "Femke", "Sem", "Eva", "Luuk", "Anouk", "Jesse"),
           ("jansen", "devries", "bakker", "visser", "smit", "meijer")),
    "es": (("Lucía", "Hugo", "Martina", "Mateo", "Sofía", "Pablo", "Carmen", "Álvaro"),
           ("garcia", "lopez", "martinez", "sanchez", "perez")),
    "it": (("Giulia", "Luca", "Francesca", "Marco", "Chiara", "Matteo", "Sofia", "Niccolò"),
           ("rossi", "russo", "ferrari", "esposito", "bianchi")),
    "sv": (("Elsa", "Oskar", "Astrid", "Erik", "Maja", "Linnéa", "Axel", "Saga"),
           ("andersson", "johansson", "karlsson", "nilsson")),
    "ja": (("Yuki", "Haruto", "Sakura", "Ren", "Aoi", "Sota", "Hina", "Yui"),
           ("sato", "suzuki", "takahashi", "tanaka", "watanabe")),
}
_DOMAINS = ("example.com", "example.net", "example.org")

# category, typical unit price in USD
_CATEGORIES = (("apparel", 40.0), ("shoes", 85.0), ("beauty", 28.0), ("home", 55.0),
               ("electronics", 140.0), ("toys", 32.0), ("sports", 60.0), ("jewelry", 95.0),
               ("books", 18.0), ("pet", 35.0))
_CHANNELS = ("shopify", "amazon", "ebay", "woocommerce", "web")
_CHANNEL_SHARE = (0.35, 0.22, 0.10, 0.11, 0.22)
_AMAZON = 1

# --- behaviour ---------------------------------------------------------------------------
# Tuned so that ~45% of the customers known at a cutoff place no completed order in the next
# 90 days, and the realised causes of churn follow the mix (see the module tests).
_GROWTH = 1.1           # log growth per year of new-customer acquisition
_RATE_SHAPE = 3.0       # gamma shape of purchase rates across customers
_MEAN_RATE = 1 / 40     # mean purchase rate per day (mean gap ~ 60 days)
_GAP_SHAPE = 2.0        # gamma shape of one customer's gaps (1 would be memoryless)
_P_ONE_TIME = 0.30      # activity-sensitive customers: extra chance to leave after order 1
_H_ACTIVITY = 0.05      # activity-sensitive customers: per-order chance to lapse
_H_BACKGROUND = 0.002   # everybody else: per-order chance to lapse without cause
_Q_OWN = 0.07           # per-order chance of an incident of the customer's own sensitivity
_Q_OTHER = 0.02         # per-order chance of an incident of each other family
_S_OWN = 0.72           # mean chance to leave after an incident of one's own sensitivity
_S_OTHER = 0.05         # chance to leave after any other incident
_DEAL_SEEKERS = 0.15    # share of deal seekers among customers who are not price-sensitive
_CONSENT = 0.78         # marketing consent of non-marketplace customers
_EMAIL_EVERY = 14       # days between newsletters

_NONE = -1
_PRICE, _LOGISTICS, _SERVICE, _PRODUCT, _ENGAGEMENT, _ACTIVITY = range(6)
_FAMILIES = schema.FAMILIES  # index order matches the codes above
assert _FAMILIES[_ACTIVITY] == "activity" and _FAMILIES[_PRICE] == "price"

# status codes index schema.ORDER_STATUSES
_COMPLETED, _CANCELLED, _REFUNDED, _RETURNED, _PAYMENT_FAILED = range(5)


@dataclass
class SampleData:
    """Text-ready frames of a synthetic history; ``truth`` is for evaluation only."""

    orders: pd.DataFrame
    events: pd.DataFrame
    customers: pd.DataFrame
    truth: pd.DataFrame


def generate(
    n_customers: int,
    *,
    seed: int = 0,
    end_date: str | date = "2026-06-30",
    years: float = 3.0,
    dirty_fraction: float = 0.01,
    churn_mix: dict[str, float] | None = None,
    purchase_rate: float = 1.0,
) -> SampleData:
    """Return a synthetic history of ``n_customers`` customers: four text-ready frames.

    Parameters
    ----------
    n_customers : int
        Number of customers; each places at least one order (about 5.5 on average).
    seed : int
        Seed of the single random generator; equal arguments give identical frames.
    end_date : str or date
        Last day of data (inclusive, UTC); nothing is dated after it.
    years : float
        Length of the history; first orders are staggered over it (a growing shop).
    dirty_fraction : float
        Share of extra order rows the pipeline must reject (unparsable date or amount,
        negative amount, unknown currency, missing customer id), in ``[0, 0.05)``.  Exact
        duplicates (0.3 x) and status updates (0.2 x) come on top; ``0`` gives a clean file.
    churn_mix : dict, optional
        Relative weight of each cause family (keys from ``schema.FAMILIES``) among the
        customers' sensitivities, hence among churn causes; missing keys weigh 0.
    purchase_rate : float
        Multiplier of every customer's purchase rate, in ``(0, 10]``: ``2`` gives about twice
        the orders per customer (a shop of frequent buyers); ``1`` (default) keeps the files
        of earlier releases byte for byte.

    Returns
    -------
    SampleData
        ``orders``, ``events``, ``customers``, ``truth`` with the columns of ``ORDER_COLUMNS``,
        ``EVENT_COLUMNS``, ``CUSTOMER_COLUMNS`` and ``TRUTH_COLUMNS``; every value is a string
        (empty when missing).

    Raises
    ------
    InputError
        If an argument is out of range or ``churn_mix`` names an unknown family.
    """
    if isinstance(n_customers, bool) or not isinstance(n_customers, (int, np.integer)) \
            or n_customers < 1:
        raise InputError(f"customers: must be a whole number >= 1, got {n_customers!r}")
    if not 0 < purchase_rate <= 10:
        raise InputError(f"purchase_rate: must be in (0, 10], got {purchase_rate!r}")
    if not isinstance(dirty_fraction, (int, float)) or not 0 <= dirty_fraction < MAX_DIRTY_FRACTION:
        raise InputError(f"dirty_fraction: must be in [0, {MAX_DIRTY_FRACTION}), "
                         f"got {dirty_fraction!r}")
    if not isinstance(years, (int, float)) or not 0 < years <= 50:
        raise InputError(f"years: must be in (0, 50], got {years!r}")
    mix = _mix_weights(churn_mix)
    try:
        stop = schema.day_end(schema.as_of_timestamp(end_date))
    except (TypeError, ValueError):
        raise InputError(f"end_date: not a date (YYYY-MM-DD): {end_date!r}") from None
    start = (stop - pd.Timedelta(days=float(years) * 365.25)).normalize()
    world = _World(start=start, days=(stop - start).days)
    rng = np.random.default_rng(seed)

    cust = _draw_customers(rng, int(n_customers), mix, world, float(purchase_rate))
    _people(cust)
    orders = _simulate(rng, cust, world)
    _order_details(rng, cust, orders, world)
    events = _events(rng, cust, orders, world)
    order_frame = _dirty(rng, _order_frame(cust, orders, world), dirty_fraction, orders)
    return SampleData(
        orders=order_frame,
        events=_event_frame(cust, events, world),
        customers=_customer_frame(cust, world),
        truth=_truth_frame(cust, world),
    )


def write(data: SampleData, out_dir: Path) -> dict[str, int]:
    """Return the data rows written per file name after writing the four CSV files.

    Each file appears whole (written under a temporary name, then renamed); UTF-8, ``\\n``
    line ends, no index.

    Parameters
    ----------
    data : SampleData
        Frames from :func:`generate`.
    out_dir : Path
        Folder to write ``orders.csv``, ``events.csv``, ``customers.csv``, ``truth.csv`` in;
        created if missing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in ("orders", "events", "customers", "truth"):
        frame: pd.DataFrame = getattr(data, name)
        path = out_dir / f"{name}.csv"
        tmp = out_dir / f".{name}.csv.tmp"
        frame.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
        os.replace(tmp, path)
        counts[path.name] = len(frame)
    return counts


# --- set-up -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _World:
    start: pd.Timestamp  # midnight UTC; simulated times are float days since it
    days: int            # times lie in [0, days): the end date is the last day

    @property
    def start_seconds(self) -> int:
        return int(self.start.value // 1_000_000_000)


def _mix_weights(churn_mix: dict[str, float] | None) -> np.ndarray:
    mix = DEFAULT_CHURN_MIX if churn_mix is None else churn_mix
    weights = np.zeros(len(_FAMILIES))
    for key, value in mix.items():
        if key not in _FAMILIES:
            raise InputError(f"churn_mix: unknown cause '{key}' "
                             f"(expected one of {', '.join(_FAMILIES)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InputError(f"churn_mix: weight of '{key}' must be a number >= 0, got {value!r}")
        weights[_FAMILIES.index(key)] = float(value)
    if weights.sum() <= 0:
        raise InputError("churn_mix: at least one cause needs a positive weight")
    return weights / weights.sum()


def _draw_customers(rng: np.random.Generator, n: int, mix: np.ndarray, world: _World,
                    purchase_rate: float = 1.0) -> dict:
    """Return customer-level arrays (index = position in acquisition order)."""
    # Acquisition grows over time: first-order time by inverse CDF of exp(growth * t).
    g = _GROWTH / 365.25
    u = np.sort(rng.random(n))
    first = np.log1p(u * np.expm1(g * world.days)) / g
    first = np.minimum(first, np.nextafter(world.days, 0))

    shares = np.array([c[1] for c in _COUNTRIES])
    country = rng.choice(len(_COUNTRIES), n, p=shares / shares.sum())
    channel = rng.choice(len(_CHANNELS), n, p=_CHANNEL_SHARE)
    marketplace = channel == _AMAZON
    consent = ~marketplace & (rng.random(n) < _CONSENT)

    # Sensitivity from the mix; engagement needs newsletters, so only consenting customers
    # carry it, at a rate that keeps the overall mix as asked.
    c_share = max(consent.mean(), 1e-9)
    m_eng = mix[_ENGAGEMENT]
    p_cons = mix * (1 - min(1.0, m_eng / c_share)) / max(1 - m_eng, 1e-12)
    p_cons[_ENGAGEMENT] = min(1.0, m_eng / c_share)
    p_none = mix.copy()
    p_none[_ENGAGEMENT] = 0.0
    if p_none.sum() == 0:
        p_none[_ACTIVITY] = 1.0
    p_none = p_none / p_none.sum()
    p_cons = p_cons / p_cons.sum()
    cum = np.where(consent[:, None], np.cumsum(p_cons)[None, :], np.cumsum(p_none)[None, :])
    sensitivity = (rng.random(n)[:, None] >= cum).sum(axis=1).clip(0, len(_FAMILIES) - 1)

    rate = rng.gamma(_RATE_SHAPE, _MEAN_RATE * purchase_rate / _RATE_SHAPE, n)
    mean_gap = np.clip(1.0 / rate, 7.0, 540.0)
    loyalty = rng.gamma(2.0, 0.5, n)  # hazard multiplier, mean 1
    s_own = np.clip(rng.beta(_S_OWN * 8, (1 - _S_OWN) * 8, n), 0.05, 0.97)
    deal_seeker = (sensitivity == _PRICE) | (rng.random(n) < _DEAL_SEEKERS)
    p_discount = np.where(deal_seeker, rng.uniform(0.7, 0.95, n), rng.uniform(0.0, 0.2, n))

    return {
        "n": n,
        "first": first,
        "country": country,
        "channel": channel,
        "consent": consent,
        "sensitivity": sensitivity,
        "mean_gap": mean_gap,
        "loyalty": loyalty,
        "s_own": s_own,
        "deal_seeker": deal_seeker,
        "p_discount": p_discount,
        "category": rng.integers(0, len(_CATEGORIES), n),
        "items_mean": rng.uniform(0.1, 1.2, n),
        "open_rate": rng.beta(2.0, 4.0, n),
        "click_rate": rng.beta(1.5, 6.0, n),
        "cart_rate": rng.gamma(1.5, 1 / (1.5 * 200), n),  # cart abandons per day
        "timezone_pick": rng.random(n),
        "name_pick": rng.random(n),
        "last_pick": rng.random(n),
        "domain": rng.integers(0, len(_DOMAINS), n),
        "number": 1000 + np.cumsum(rng.integers(1, 4, n)),  # customer numbers with gaps
        # Filled by the simulation:
        "left": np.zeros(n, bool),
        "cause": np.full(n, _NONE),
        "last": np.zeros(n),
        "disengaged": np.full(n, np.inf),
    }


# --- simulation -------------------------------------------------------------------------------
def _simulate(rng: np.random.Generator, cust: dict, world: _World) -> dict:
    """Return order-level arrays from the loop over order numbers (sorted by time)."""
    n = cust["n"]
    sens = cust["sensitivity"]
    t = cust["first"].copy()
    coupon = cust["deal_seeker"].copy()  # a deal seeker's coupon runs until a price incident
    active = np.arange(n)
    parts: dict[str, list] = {key: [] for key in ("cust", "t", "incident", "coupon")}
    fam = np.arange(_ACTIVITY)  # actionable incident families
    k = 0
    while active.size:
        k += 1
        m = active.size
        own = sens[active]
        q = np.where(own[:, None] == fam[None, :], _Q_OWN, _Q_OTHER)
        q[:, _PRICE] *= coupon[active] & (k >= 2)  # only a running coupon can end
        q[:, _ENGAGEMENT] *= cust["consent"][active]
        cum = np.cumsum(q, axis=1)
        u = rng.random(m)
        incident = np.where(u < cum[:, -1], (u[:, None] >= cum).sum(axis=1), _NONE)

        ended = incident == _PRICE
        coupon_state = np.where(coupon[active], 1, 0)
        was_deal = cust["deal_seeker"][active]
        coupon_state = np.where(ended | (was_deal & ~coupon[active]), 2, coupon_state)
        coupon[active[ended]] = False
        # A price-sensitive customer keeps resenting full prices after the coupon ended.
        resent = (own == _PRICE) & (coupon_state == 2) & (incident == _NONE)
        experience = np.where(resent, _PRICE, incident)

        s = np.where(experience == _NONE, 0.0,
                     np.where(experience == own, cust["s_own"][active], _S_OTHER))
        h = np.where(own == _ACTIVITY, _H_ACTIVITY, _H_BACKGROUND) * cust["loyalty"][active]
        h = np.minimum(h + np.where((own == _ACTIVITY) & (k == 1), _P_ONE_TIME, 0.0), 0.95)
        leave = rng.random(m) < 1 - (1 - h) * (1 - s)
        # The decision's cause: the experience or a lapse, in proportion to their hazards.
        by_incident = rng.random(m) * (s + h) < s
        cause = np.where(by_incident, experience, _ACTIVITY)

        newly = (incident == _ENGAGEMENT) & ~np.isfinite(cust["disengaged"][active])
        who = active[newly]
        cust["disengaged"][who] = np.maximum(
            t[who] - rng.uniform(30.0, 90.0, who.size), cust["first"][who])

        for key, value in (("cust", active), ("t", t[active]), ("incident", incident),
                           ("coupon", coupon_state)):
            parts[key].append(value)
        gone = active[leave]
        cust["left"][gone] = True
        cust["cause"][gone] = cause[leave]
        cust["last"][active] = t[active]

        stay = active[~leave]
        mg = cust["mean_gap"][stay]
        t[stay] = t[stay] + np.maximum(rng.gamma(_GAP_SHAPE, mg / _GAP_SHAPE), 0.5)
        active = stay[t[stay] < world.days]

    orders = {key: np.concatenate(v) for key, v in parts.items()}
    order = np.argsort(orders["t"], kind="stable")
    return {key: v[order] for key, v in orders.items()}


def _order_details(rng: np.random.Generator, cust: dict, o: dict, world: _World) -> None:
    """Add order attributes (amounts, status, delivery, review) to ``o`` in place."""
    ci = o["cust"]
    m = ci.size
    inc = o["incident"]
    country = cust["country"][ci]
    cross = np.array([c[3] for c in _COUNTRIES])[country]
    promised_base = np.array([c[4] for c in _COUNTRIES])[country]

    primary = cust["channel"][ci]
    other = rng.choice(np.array([0, 2, 3, 4]), m)
    o["channel"] = np.where((primary == _AMAZON) | (rng.random(m) < 0.85), primary, other)
    o["category"] = np.where(rng.random(m) < 0.65, cust["category"][ci],
                             rng.integers(0, len(_CATEGORIES), m))
    o["items"] = 1 + rng.poisson(cust["items_mean"][ci])
    unit = np.array([c[1] for c in _CATEGORIES])[o["category"]]
    subtotal = o["items"] * unit * rng.lognormal(0.0, 0.35, m)  # USD

    p_disc = np.select([o["coupon"] == 1, o["coupon"] == 2], [cust["p_discount"][ci], 0.03],
                       np.minimum(cust["p_discount"][ci], 0.2))
    discounted = rng.random(m) < p_disc
    discount = np.where(discounted, subtotal * rng.choice([0.1, 0.15, 0.2, 0.25], m), 0.0)
    free_from = np.where(cross, 100.0, 50.0)
    shipping = np.where(subtotal - discount >= free_from, 0.0, np.where(cross, 12.99, 4.99))

    # Status: background noise on orders without incident, then the incidents that show in
    # the status (an incident is never hidden behind an unrelated cancellation).
    u = np.where(inc == _NONE, rng.random(m), 1.0)
    status = np.select([u < 0.022, u < 0.036, u < 0.050, u < 0.080],
                       [_CANCELLED, _PAYMENT_FAILED, _REFUNDED, _RETURNED], _COMPLETED)
    v = rng.random(m)
    status = np.where(inc == _SERVICE,
                      np.select([v < 0.42, v < 0.77], [_CANCELLED, _PAYMENT_FAILED], _COMPLETED),
                      status)
    status = np.where(inc == _PRODUCT, np.where(v < 0.55, _RETURNED, _COMPLETED), status)
    failed = (status == _CANCELLED) | (status == _PAYMENT_FAILED)

    # Delivery: usually on time; incidents are well past the promise or a duty on delivery.
    promised = promised_base + rng.integers(0, 3, m) - (o["channel"] == _AMAZON)
    promised = np.maximum(promised, 1)
    w = rng.random(m)
    early = rng.integers(0, 3, m)
    mild = rng.integers(1, 3, m)
    severe = rng.integers(4, 15, m)
    delay = np.select([w < np.where(cross, 0.025, 0.012), w < np.where(cross, 0.13, 0.07)],
                      [severe, mild], -early)
    logistic = inc == _LOGISTICS
    duty_hit = logistic & cross & (rng.random(m) < 0.55)
    late_hit = logistic & (~duty_hit | (rng.random(m) < 0.35))
    delay = np.where(late_hit, severe, delay)
    delivery = np.maximum(promised + delay, 1)
    duties = np.where(duty_hit | (cross & (rng.random(m) < 0.05)),
                      subtotal * rng.uniform(0.08, 0.2, m), 0.0)

    delivered_at = o["t"] + delivery
    delivered = ~failed & (delivered_at < world.days)
    # Undelivered orders cannot have been returned or refunded yet.
    status = np.where(~failed & ~delivered, _COMPLETED, status)
    low = rng.integers(1, 3, m)
    z = rng.random(m)
    score = np.select([z < 0.03, z < 0.06, z < 0.16, z < 0.46], [1, 2, 3, 4], 5)
    score = np.where(inc == _PRODUCT, low, score)
    reviewed_at = delivered_at + rng.uniform(2.0, 14.0, m)
    p_review = np.where(inc == _PRODUCT, 0.85, np.where(score <= 2, 0.5, 0.2))
    reviewed = delivered & (rng.random(m) < p_review) & (reviewed_at < world.days)

    o.update(
        country=country, cross=cross, subtotal=subtotal, discount=discount, shipping=shipping,
        duties=np.where(delivered, duties, 0.0), duty_hit=duty_hit & delivered,
        late_hit=late_hit, status=status, failed=failed, promised=promised,
        delivery=delivery, delivered=delivered, delivered_at=delivered_at,
        score=score, reviewed=reviewed, reviewed_at=reviewed_at,
    )


# --- events -----------------------------------------------------------------------------------
def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (owner, rank): owner index of each of ``counts.sum()`` items, rank within owner."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _events(rng: np.random.Generator, cust: dict, o: dict, world: _World) -> dict:
    """Return event arrays: customer, time (days), type code, topic code, value."""
    types = schema.EVENT_TYPES
    topics = schema.EVENT_TOPICS
    n = cust["n"]
    end = float(world.days)
    out: list[tuple] = []  # (customer, time, type, topic, value)

    def add(c, t, etype, topic=-1, value=None):
        c = np.asarray(c)
        t = np.broadcast_to(np.asarray(t, float), c.shape)
        value = np.full(c.size, np.nan) if value is None else np.asarray(value, float)
        out.append((c, t, np.full(c.size, types.index(etype)),
                    np.broadcast_to(np.asarray(topic), c.shape), value))

    # Unsubscribes: most disengaged churners, some disengaged stayers, a few others.
    dis = cust["disengaged"]
    last = cust["last"]
    consent = cust["consent"]
    eng_left = cust["left"] & (cust["cause"] == _ENGAGEMENT)
    p_unsub = np.where(np.isfinite(dis), np.where(eng_left, 0.65, 0.3), 0.06) * consent
    unsub = np.full(n, np.inf)
    draw = rng.random(n) < p_unsub
    lag = rng.uniform(30.0, 110.0, n)
    anytime = cust["first"] + rng.random(n) * (end - cust["first"])
    unsub = np.where(draw, np.where(np.isfinite(dis), dis + lag, anytime), unsub)
    cust["unsubscribe"] = unsub
    has_unsub = unsub < end
    add(np.flatnonzero(has_unsub), unsub[has_unsub], "unsubscribe")

    # Newsletters every _EMAIL_EVERY days at 09:00 UTC to consenting customers until they
    # unsubscribe (lapsed customers too: win-back); opens fade out after a customer disengages.
    grid = np.arange(3.0, end, _EMAIL_EVERY) + 9 / 24
    stop = np.minimum(unsub, end)
    lo = np.searchsorted(grid, cust["first"])
    hi = np.where(consent, np.searchsorted(grid, stop), lo)
    owner, rank = _expand(np.maximum(hi - lo, 0))
    sent = grid[lo[owner] + rank] + rng.uniform(0, 1 / 24, owner.size)
    add(owner, sent, "email_sent")
    fade = np.clip(1 - (sent - dis[owner]) / 30.0, 0.02, 1.0)
    opened = rng.random(owner.size) < cust["open_rate"][owner] * fade
    open_t = sent + rng.exponential(0.4, owner.size)
    opened &= open_t < end
    add(owner[opened], open_t[opened], "email_open")
    clicked = opened & (rng.random(owner.size) < cust["click_rate"][owner])
    click_t = open_t + rng.exponential(0.01, owner.size)
    clicked &= click_t < end
    add(owner[clicked], click_t[clicked], "email_click")

    # Cart abandons at a personal rate while active; price leavers come back to look.
    window = np.minimum(last + 45.0, end) - cust["first"]
    owner, _ = _expand(rng.poisson(cust["cart_rate"] * window))
    cart_t = cust["first"][owner] + rng.random(owner.size) * window[owner]
    add(owner, cart_t, "cart_abandon", value=rng.uniform(20.0, 180.0, owner.size))
    price_left = np.flatnonzero(cust["left"] & (cust["cause"] == _PRICE))
    extra = (rng.random(price_left.size) < 0.6) + (rng.random(price_left.size) < 0.3)
    owner, _ = _expand(extra.astype(np.int64))
    who = price_left[owner]
    add(who, last[who] + rng.uniform(3.0, 45.0, who.size), "cart_abandon",
        value=rng.uniform(20.0, 180.0, who.size))

    # Order-linked events.
    ci, ot, inc, m = o["cust"], o["t"], o["incident"], o["cust"].size
    r = rng.random((6, m))
    pf = o["status"] == _PAYMENT_FAILED
    add(ci[pf], ot[pf] + 0.002, "payment_failed", topics.index("payment"))
    retry = (o["status"] == _COMPLETED) & (r[0] < 0.015)
    add(ci[retry], ot[retry] - 0.003, "payment_failed", topics.index("payment"))

    where_is_it = ot + o["promised"] + rng.uniform(1.0, 3.0, m)
    ask = o["late_hit"] & (r[1] < 0.7)
    kind = np.where(r[2] < 0.4, "complaint", "support_ticket")
    for k in ("complaint", "support_ticket"):
        sel = ask & (kind == k)
        add(ci[sel], np.minimum(where_is_it, o["delivered_at"])[sel], k, topics.index("logistics"))
    duty_c = o["duty_hit"] & ~ask & (r[3] < 0.6)
    add(ci[duty_c], o["delivered_at"][duty_c] + 0.2, "complaint", topics.index("logistics"))

    service = inc == _SERVICE
    sel = service & (r[1] < 0.85)
    add(ci[sel], ot[sel] + rng.uniform(0.05, 3.0, m)[sel], "support_ticket",
        topics.index("service"))
    sel = service & (r[3] < 0.35)
    add(ci[sel], ot[sel] + rng.uniform(1.0, 5.0, m)[sel], "complaint", topics.index("service"))

    sel = (inc == _PRODUCT) & o["delivered"] & (r[1] < 0.4)
    add(ci[sel], o["delivered_at"][sel] + rng.uniform(1.0, 10.0, m)[sel], "complaint",
        topics.index("product"))
    sel = (inc == _PRICE) & (r[1] < 0.3)
    add(ci[sel], ot[sel] + rng.uniform(0.0, 2.0, m)[sel], "support_ticket", topics.index("price"))

    rv = o["reviewed"]
    add(ci[rv], o["reviewed_at"][rv], "review", topics.index("product"), o["score"][rv])

    # Everyday questions, unrelated to leaving.
    sel = r[4] < 0.04
    topic = rng.choice(len(topics), m, p=[0.3, 0.3, 0.1, 0.2, 0.1])
    add(ci[sel], ot[sel] + rng.uniform(0.1, 10.0, m)[sel], "support_ticket", topic[sel])

    c, t, ty, tp, val = (np.concatenate([part[i] for part in out]) for i in range(5))
    keep = (t < end) & (t >= 0)
    c, t, ty, tp, val = c[keep], t[keep], ty[keep], tp[keep], val[keep]
    sec = np.floor(t * 86400).astype(np.int64)
    order = np.lexsort((ty, c, sec))
    return {"cust": c[order], "sec": sec[order], "type": ty[order], "topic": tp[order],
            "value": val[order]}


# --- text -------------------------------------------------------------------------------------
# Strings are built with pyarrow compute kernels: formatting a million rows with numpy string
# arrays or Python would dominate the run time.
_PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
_DAY_SECONDS = 86_400


def _text(arr: pa.Array) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """Return a string column for a frame: pandas' ``str`` dtype, or objects before pandas 3."""
    if _PANDAS_3:
        return pd.array(arr, dtype="str")
    return np.asarray(arr.to_pylist(), dtype=object)


def _digits(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def _pick(vocab, codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array([str(v) for v in vocab], pa.string()),
                   pa.array(np.asarray(codes, dtype=np.int64)))


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _where(mask: np.ndarray, yes, no) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), yes, no)


@functools.lru_cache(maxsize=1)
def _clock() -> pa.Array:
    """Return the 86,400 ``HH:MM:SS`` strings of a day."""
    s = np.arange(_DAY_SECONDS)
    two = [pc.utf8_lpad(_digits(v), 2, padding="0") for v in (s // 3600, s // 60 % 60, s % 60)]
    return _join(two[0], ":", two[1], ":", two[2])


def _days(day: np.ndarray) -> pa.Array:
    """Return ``YYYY-MM-DD`` of whole days since 1970-01-01."""
    if day.size == 0:
        return pa.array([], pa.string())
    lo = int(day.min())
    vocab = np.datetime_as_string(np.arange(lo, int(day.max()) + 1).astype("datetime64[D]"))
    return _pick(vocab, day - lo)


def _iso(seconds: np.ndarray, suffix="Z") -> pa.Array:
    """Return ``YYYY-MM-DDTHH:MM:SS`` + ``suffix`` of seconds since 1970-01-01 UTC."""
    seconds = np.asarray(seconds, dtype=np.int64)
    clock = pc.take(_clock(), pa.array(seconds % _DAY_SECONDS))
    return _join(_days(seconds // _DAY_SECONDS), "T", clock, suffix)


def _money(units: np.ndarray, two_decimals: np.ndarray, zero_plain: bool = False) -> pa.Array:
    """Return minor-unit integers as decimal text: ``-12.50`` (two decimals) or ``1250``."""
    units = np.asarray(units, dtype=np.int64)
    a = np.abs(units)
    two = _join(_digits(a // 100), ".", pc.utf8_lpad(_digits(a % 100), 2, padding="0"))
    text = _join(_where(units < 0, "-", ""), _where(two_decimals, two, _digits(a)))
    return _where(units == 0, "0", text) if zero_plain else text


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _people(cust: dict) -> None:
    """Add ids, first names, emails, country codes, languages and timezones to ``cust``."""
    n = cust["n"]
    country = cust["country"]

    def flat(lists):  # one vocabulary of all countries' lists, with each country's offset
        vocab = [v for lst in lists for v in lst]
        sizes = np.array([len(lst) for lst in lists])
        return vocab, (np.cumsum(sizes) - sizes)[country], sizes[country]

    firsts, f_off, f_len = flat([_NAMES[c[5]][0] for c in _COUNTRIES])
    lasts, l_off, l_len = flat([_NAMES[c[5]][1] for c in _COUNTRIES])
    zones, z_off, z_len = flat([c[6] for c in _COUNTRIES])
    fi = f_off + (cust["name_pick"] * f_len).astype(np.int64)
    li = l_off + (cust["last_pick"] * l_len).astype(np.int64)
    zi = z_off + (cust["timezone_pick"] * z_len).astype(np.int64)

    number = _digits(cust["number"])
    width = max(7, len(str(int(cust["number"].max()))))
    plain = _join("C", pc.utf8_lpad(number, width, padding="0"))
    # Marketplace buyers get scattered mixed-case codes; an affine bijection of Z/62^6 keeps
    # them unique.
    x = (np.arange(n, dtype=np.int64) * _SCATTER + 7_919_777) % (62**6)
    code = _join(*[_pick(_BASE62, (x // 62**p) % 62) for p in range(5, -1, -1)])
    market = cust["channel"] == _AMAZON
    email = _join(_pick([_ascii(f) for f in firsts], fi), ".", _pick(lasts, li), number, "@",
                  _pick(_DOMAINS, cust["domain"]))
    relay = _join(pc.utf8_lower(code), number, "@marketplace.example.com")
    # Phone, city and zip derive from the customer number (no random draw: the other columns
    # stay exactly as they were). Half the phones are written nationally (trunk 0), half
    # internationally, as shops export them; marketplace buyers have none.
    num = np.asarray(cust["number"], dtype=np.int64)
    subscriber = _digits(1_000_000 + (num * 7_919 + 1_003) % 9_000_000)  # 7 digits
    calling = _pick([_CALLING[c[0]] for c in _COUNTRIES], country)
    prefix = _pick([_MOBILE[c[0]] for c in _COUNTRIES], country)
    national = _join(_pick([("" if c[0] in ("US", "CA") else "0") for c in _COUNTRIES], country), prefix,
                     " ", subscriber)
    intl = _join("+", calling, " ", prefix, " ", subscriber)
    phone = _where(num % 2 == 0, intl, national)
    cities = [_CITIES[c[0]] for c in _COUNTRIES]
    c_off = np.cumsum([len(x) for x in cities]) - np.array([len(x) for x in cities])
    city = _pick([v for lst in cities for v in lst], c_off[country] + num % 3)
    zip_width = np.array([_ZIP_WIDTH[c[0]] for c in _COUNTRIES])[country]
    zip_code = _digits(10 ** (zip_width - 1) + (num * 104_729) % (9 * 10 ** (zip_width - 1)))
    cust.update(
        id=_where(market, _join("amz-", code), plain),
        email=_where(market, relay, email),
        first_name=_pick(firsts, fi),
        last_name=pc.utf8_capitalize(_pick(lasts, li)),
        phone=_where(market, pa.scalar("", pa.string()), phone),
        city=city,
        zip=zip_code,
        timezone=_pick(zones, zi),
        country_code=_pick([c[0] for c in _COUNTRIES], country),
        language=_pick([c[5] for c in _COUNTRIES], country),
    )


_CALLING = {"US": "1", "GB": "44", "DE": "49", "FR": "33", "NL": "31", "ES": "34", "IT": "39", "SE": "46",
            "CH": "41", "CA": "1", "AU": "61", "JP": "81"}
_MOBILE = {"US": "212", "GB": "7700", "DE": "151", "FR": "6", "NL": "6", "ES": "6", "IT": "3", "SE": "70",
           "CH": "79", "CA": "416", "AU": "4", "JP": "90"}
_CITIES = {"US": ("New York", "Chicago", "Austin"), "GB": ("London", "Leeds", "Bristol"),
           "DE": ("Berlin", "München", "Köln"), "FR": ("Paris", "Lyon", "Saint-Étienne"),
           "NL": ("Amsterdam", "Utrecht", "Den Haag"), "ES": ("Madrid", "Sevilla", "A Coruña"),
           "IT": ("Roma", "Milano", "Reggio Emilia"), "SE": ("Stockholm", "Göteborg", "Malmö"),
           "CH": ("Zürich", "Genève", "Basel"), "CA": ("Toronto", "Montréal", "Calgary"),
           "AU": ("Sydney", "Melbourne", "Perth"), "JP": ("Tokyo", "Osaka", "Kyoto")}
_ZIP_WIDTH = {"US": 5, "GB": 5, "DE": 5, "FR": 5, "NL": 4, "ES": 5, "IT": 5, "SE": 5, "CH": 4, "CA": 5,
              "AU": 4, "JP": 5}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SCATTER = 9_876_543_211  # odd and not a multiple of 31: invertible modulo 62**6 = 2**6 * 31**6


# --- frames -----------------------------------------------------------------------------------
def _order_frame(cust: dict, o: dict, world: _World) -> pd.DataFrame:
    ci = o["cust"]
    take = pa.array(ci.astype(np.int64))
    m = ci.size
    currency = np.array([c[2] for c in _COUNTRIES])[o["country"]]
    fx = np.array([DEFAULT_FX_RATES[c[2]] for c in _COUNTRIES])[o["country"]]
    two = ~np.isin(currency, _ZERO_DECIMALS)
    scale = np.where(two, 100.0, 1.0)

    def units(usd: np.ndarray) -> np.ndarray:
        return np.round(usd / fx * scale).astype(np.int64)

    sub, disc, ship, duty = (units(o[k]) for k in ("subtotal", "discount", "shipping", "duties"))
    amount = sub - disc + ship

    sec = np.floor(o["t"] * _DAY_SECONDS).astype(np.int64) + world.start_seconds
    # A WooCommerce store in Europe exports local time with its offset (CET/CEST); only where
    # the local date is still the UTC date, so a row's date part is always its UTC date.
    month = sec.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
    offset = np.where((month >= 3) & (month <= 9), 2, 1)
    eu = np.isin(np.array([c[0] for c in _COUNTRIES])[o["country"]], _EU_OFFSET)
    local = (eu & (o["channel"] == _CHANNELS.index("woocommerce"))
             & (sec % _DAY_SECONDS + offset * 3600 < _DAY_SECONDS))
    when = _where(local, _iso(sec + offset * 3600, _where(offset == 2, "+02:00", "+01:00")),
                  _iso(sec))

    # Order numbers grow with time, with gaps (other stores' orders), zero-padded to 10 digits.
    o["number"] = 100_000 + np.cumsum(1 + (np.arange(m) * 7919 % 5 == 0))
    delivered = o["delivered"]
    columns = {
        "order_id": pc.utf8_lpad(_digits(o["number"]), 10, padding="0"),
        "customer_id": pc.take(cust["id"], take),
        "order_date": when,
        "amount": _money(amount, two),
        "currency": _pick([c[2] for c in _COUNTRIES], o["country"]),
        "status": _pick(schema.ORDER_STATUSES, o["status"]),
        "country": pc.take(cust["country_code"], take),
        "channel": _pick(_CHANNELS, o["channel"]),
        "email": pc.take(cust["email"], take),
        "first_name": pc.take(cust["first_name"], take),
        "discount_amount": _money(disc, two, zero_plain=True),
        "shipping_cost": _money(ship, two, zero_plain=True),
        "delivery_days": _where(delivered, _digits(o["delivery"]), ""),
        "promised_days": _digits(o["promised"]),
        "duties_amount": _money(duty, two, zero_plain=True),
        "review_score": _where(o["reviewed"], _digits(o["score"]), ""),
        "category": _pick([c[0] for c in _CATEGORIES], o["category"]),
        "items": _digits(o["items"]),
    }
    return pd.DataFrame({k: _text(columns[k]) for k in ORDER_COLUMNS})


def _dirty(rng: np.random.Generator, frame: pd.DataFrame, fraction: float, o: dict) -> pd.DataFrame:
    """Return ``frame`` with bad rows, exact duplicates and status updates mixed in."""
    m = len(frame)
    n_bad = int(round(fraction * m))
    n_dup = int(round(fraction * 0.3 * m))
    completed = np.flatnonzero((o["status"] == _COMPLETED) & o["delivered"])
    n_upd = min(int(round(fraction * 0.2 * m)), completed.size)
    if n_bad + n_dup + n_upd == 0:
        return frame
    # Bad rows copy a real row (same date, fresh order id) and break one field.
    bad_src = np.sort(rng.choice(m, n_bad, replace=False))
    kind = rng.integers(0, 5, n_bad)
    pick = rng.integers(0, 3, n_bad)
    bad = frame.iloc[bad_src].reset_index(drop=True)
    col = {c: bad[c].to_numpy(dtype=object) for c in
           ("order_date", "amount", "currency", "customer_id")}
    start = int(o["number"][-1]) + 1 if m else 100_000
    col["order_id"] = np.array([f"{v:010d}" for v in range(start, start + n_bad)], dtype=object)
    col["order_date"] = np.where(kind == 0, np.array(_BAD_DATES, dtype=object)[pick],
                                 col["order_date"])
    col["amount"] = np.where(kind == 1, "-" + col["amount"], col["amount"])
    col["currency"] = np.where(kind == 2, "XXX", col["currency"])
    col["customer_id"] = np.where(kind == 3, "", col["customer_id"])
    col["amount"] = np.where(kind == 4, np.array(_BAD_AMOUNTS, dtype=object)[pick], col["amount"])
    bad = bad.assign(**{c: pd.array(v.astype(str), dtype=frame[c].dtype)
                        for c, v in col.items()})

    dup_src = np.sort(rng.choice(m, n_dup, replace=False))
    upd_src = np.sort(rng.choice(completed, n_upd, replace=False))
    upd = frame.iloc[upd_src].reset_index(drop=True)
    upd = upd.assign(status=pd.array(["refunded"] * n_upd, dtype=frame["status"].dtype))

    # Bad rows and duplicates sit right after their source row; status updates come last.
    pos = np.concatenate([np.arange(m), bad_src + 0.5, dup_src + 0.25, m + np.arange(n_upd)])
    both = pd.concat([frame, bad, frame.iloc[dup_src], upd], ignore_index=True)
    return both.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)


_BAD_DATES = ("2025-02-30T10:00:00Z", "30/02/2025 10:00", "not a date")
_BAD_AMOUNTS = ("ERR", "twelve", "12.5O")


def _event_frame(cust: dict, e: dict, world: _World) -> pd.DataFrame:
    value = e["value"]
    has = ~np.isnan(value)
    cents = np.round(np.nan_to_num(value) * 100).astype(np.int64)
    review = e["type"] == schema.EVENT_TYPES.index("review")
    text = _where(review, _digits(cents // 100), _money(cents, np.ones(value.size, bool)))
    columns = {
        "customer_id": pc.take(cust["id"], pa.array(e["cust"].astype(np.int64))),
        "event_time": _iso(e["sec"] + world.start_seconds),
        "event_type": _pick(schema.EVENT_TYPES, e["type"]),
        "topic": _pick(("",) + schema.EVENT_TOPICS, e["topic"] + 1),
        "value": _where(has, text, ""),
    }
    return pd.DataFrame({k: _text(columns[k]) for k in EVENT_COLUMNS})


def _customer_frame(cust: dict, world: _World) -> pd.DataFrame:
    columns = {
        "customer_id": cust["id"],
        "email": cust["email"],
        "first_name": cust["first_name"],
        "country": cust["country_code"],
        "language": cust["language"],
        "timezone": cust["timezone"],
        "marketing_consent": _where(cust["consent"], "true", "false"),
        "unsubscribed": _where(cust["unsubscribe"] < world.days, "true", "false"),
        "last_name": cust["last_name"],
        "phone": cust["phone"],
        "city": cust["city"],
        "zip": cust["zip"],
    }
    return pd.DataFrame({k: _text(columns[k]) for k in CUSTOMER_COLUMNS})


def _truth_frame(cust: dict, world: _World) -> pd.DataFrame:
    left = cust["left"]
    sec = np.floor(cust["last"] * _DAY_SECONDS).astype(np.int64) + world.start_seconds
    columns = {
        "customer_id": cust["id"],
        "churned": _where(left, "true", "false"),
        "churn_cause": _where(left, _pick(_FAMILIES, np.maximum(cust["cause"], 0)), ""),
        "churn_date": _where(left, _days(sec // _DAY_SECONDS), ""),
    }
    return pd.DataFrame({k: _text(columns[k]) for k in TRUTH_COLUMNS})


# --- simulated treatment effect (issue 5) ------------------------------------------------------
#: Planted effect per campaign: the chance that a treated customer who would not have ordered in
#: the window orders because of the campaign. Campaigns not listed get ``DEFAULT_EFFECT``.
TREATMENT_EFFECTS = {
    "price_coupon": 0.25, "logistics_express": 0.20, "service_account_manager": 0.30,
    "service_survey": 0.05, "product_feedback": 0.10, "engagement_retarget": 0.05,
    "vip_winback": 0.30, "winback_30": 0.15, "winback_60": 0.15, "winback_90": 0.12,
}
DEFAULT_EFFECT = 0.10


def treatment_orders(contacts: pd.DataFrame, orders: pd.DataFrame, *, window_days: int = 30,
                     effects: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Return extra orders planted for treated contacts: the simulated effect of a campaign.

    A treated customer (``group_name == "treated"``) who has no completed order in ``orders``
    within ``window_days`` after the planned send buys once, with probability
    ``effects[campaign]`` (default :data:`TREATMENT_EFFECTS`), at a uniformly drawn moment of the
    window; the order repeats their latest order's amount, currency, country and channel.
    Holdout customers are never touched, so treated minus holdout estimates the effect.

    Parameters
    ----------
    contacts : DataFrame
        Ledger rows: ``run_id, customer_id, campaign, group_name, send_at_utc``.
    orders : DataFrame
        The sample's orders as text (``sample.generate(...).orders`` or read from the CSV).
    window_days : int
        Outcome window after the send.
    effects : dict, optional
        campaign -> probability.
    seed : int
        Same inputs and seed give the same orders.

    Returns
    -------
    DataFrame
        Text frame with the columns of ``orders`` (``order_id`` ``T<run>-<n>``, status
        ``completed``) and a ``planted_for`` column (the campaign), one row per planted order.
    """
    effects = {**TREATMENT_EFFECTS, **(effects or {})}
    treated = contacts.loc[contacts["group_name"].eq("treated").to_numpy(dtype=bool)]
    treated = treated.sort_values(["run_id", "campaign", "customer_id"]).reset_index(drop=True)
    cols = list(orders.columns)
    if treated.empty:
        return pd.DataFrame(columns=cols + ["planted_for"], dtype=object)
    o = orders.assign(_t=pd.to_datetime(orders["order_date"], utc=True, errors="coerce").dt.tz_localize(None),
                      _amount=pd.to_numeric(orders["amount"], errors="coerce"))
    o = o.loc[o["_t"].notna().to_numpy() & o["_amount"].notna().to_numpy()]
    done = o.loc[o["status"].eq("completed").to_numpy(dtype=bool, na_value=False)] if "status" in o else o
    start = pd.to_datetime(treated["send_at_utc"])
    end = start + pd.Timedelta(days=window_days)
    pairs = pd.DataFrame({"row": np.arange(len(treated)), "customer_id": treated["customer_id"].astype(str),
                          "start": start, "end": end})
    hits = pairs.merge(done[["customer_id", "_t"]].astype({"customer_id": str}), on="customer_id")
    inside = (hits["_t"] > hits["start"]) & (hits["_t"] <= hits["end"])
    natural = np.zeros(len(treated), dtype=bool)
    natural[hits.loc[inside.to_numpy(dtype=bool), "row"].unique()] = True
    rng = np.random.default_rng([seed, len(treated)])
    u, when = rng.random(len(treated)), rng.random(len(treated))
    p = treated["campaign"].map(effects).astype(float).fillna(DEFAULT_EFFECT).to_numpy()
    buy = ~natural & (u < p)
    chosen = treated.loc[buy]
    if chosen.empty:
        return pd.DataFrame(columns=cols + ["planted_for"], dtype=object)
    last = o.sort_values("_t", kind="stable").groupby("customer_id", sort=False).tail(1).set_index("customer_id")
    base = last.reindex(chosen["customer_id"].astype(str))
    t = start[buy] + pd.to_timedelta(np.floor(when[buy] * window_days * 86400), unit="s")
    out = pd.DataFrame({c: pd.Series("", index=range(len(chosen)), dtype=object) for c in cols})
    out["order_id"] = ("T" + chosen["run_id"].astype(str).str.replace("-", "", regex=False) + "-"
                       + pd.Series(np.arange(len(chosen)), index=chosen.index).astype(str)).to_numpy()
    out["customer_id"] = chosen["customer_id"].astype(str).to_numpy()
    out["order_date"] = t.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()
    for c in ("amount", "currency", "country", "channel", "email", "first_name", "category", "items"):
        if c in cols:
            out[c] = base[c].astype(object).fillna("").to_numpy()
    if "status" in cols:
        out["status"] = "completed"
    out["planted_for"] = chosen["campaign"].to_numpy()
    return out.astype(str)
