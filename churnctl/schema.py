"""Column names, allowed values and date conventions shared by every stage.

The canonical *orders frame* (output of :func:`churnctl.ingest.load_orders`) has one row per
order and these columns; optional columns are present only when the input had them, and a
feature whose inputs are absent is simply not built.

=================  ===================  =====================================================
column             dtype                meaning
=================  ===================  =====================================================
order_id           str                  exact spelling from the input (leading zeros kept)
customer_id        str                  exact spelling from the input
order_date         datetime64 (naive)   UTC; tz-aware inputs are converted, naive taken as UTC
amount             float64              gross order value in the base currency
currency           category             ISO 4217 code the order was paid in
status             category             one of ORDER_STATUSES
country            category             ISO-2, upper case (optional)
channel            category             sales channel, lower case (optional)
email, first_name  str                  personal data: used only for campaign exports
discount_amount    float64              base currency (optional)
shipping_cost      float64              base currency (optional)
duties_amount      float64              base currency (optional)
delivery_days      float64              days from order to delivery (optional)
promised_days      float64              promised delivery days (optional)
review_score       float64              1-5 (optional)
category           category             (optional)
items              float64              number of items (optional)
=================  ===================  =====================================================

As-of convention: an as-of *date* D includes the whole day D.  Data is "on or before D" when
its timestamp is ``< day_end(D)``; the label window ``(D, D + horizon]`` is
``day_end(D) <= t < day_end(D) + horizon days``.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

# --- orders -----------------------------------------------------------------------------
ORDER_REQUIRED = ("order_id", "customer_id", "order_date", "amount")
ORDER_MONEY = ("discount_amount", "shipping_cost", "duties_amount")
ORDER_NUMERIC = ("delivery_days", "promised_days", "review_score", "items")
ORDER_TEXT = ("currency", "status", "country", "channel", "email", "first_name", "category")
ORDER_OPTIONAL = ORDER_TEXT + ORDER_MONEY + ORDER_NUMERIC
#: Low-cardinality text columns held as pandas categoricals (categories sorted).
ORDER_CATEGORIES = ("currency", "status", "country", "channel", "category")
ORDER_COLUMNS = ORDER_REQUIRED + ORDER_OPTIONAL

ORDER_STATUSES = ("completed", "cancelled", "refunded", "returned", "payment_failed")
COMPLETED = "completed"

# --- events -----------------------------------------------------------------------------
EVENT_REQUIRED = ("customer_id", "event_time", "event_type")
EVENT_OPTIONAL = ("topic", "value")
EVENT_COLUMNS = EVENT_REQUIRED + EVENT_OPTIONAL
EVENT_TYPES = (
    "email_sent",
    "email_open",
    "email_click",
    "unsubscribe",
    "support_ticket",
    "complaint",
    "cart_abandon",
    "payment_failed",
    "review",
)
EVENT_TOPICS = ("logistics", "product", "price", "service", "payment")

# --- customers --------------------------------------------------------------------------
CUSTOMER_REQUIRED = ("customer_id",)
CUSTOMER_OPTIONAL = (
    "email",
    "first_name",
    "country",
    "language",
    "timezone",
    "marketing_consent",
    "unsubscribed",
    # Personal data for export profiles only (issue 5): Meta / Google audiences, Mailchimp, Klaviyo.
    "last_name",
    "phone",
    "city",
    "zip",
)
CUSTOMER_COLUMNS = CUSTOMER_REQUIRED + CUSTOMER_OPTIONAL

# Personal data: never logged, never in scores, features or model files.
PII_COLUMNS = ("email", "first_name", "last_name", "name", "phone", "address")

# --- cause families ---------------------------------------------------------------------
#: Families a retention action can answer.
ACTIONABLE_FAMILIES = ("price", "logistics", "service", "product", "engagement")
#: Recency, rhythm and tenure: risk with no actionable cause.
ACTIVITY = "activity"
FAMILIES = ACTIONABLE_FAMILIES + (ACTIVITY,)

# --- scores -----------------------------------------------------------------------------
RISK_TIERS = ("high", "medium", "low")
VALUE_TIERS = ("A", "B", "C")
LIFECYCLE_STAGES = ("new", "repeat", "loyal")
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)


def cause_column(family: str) -> str:
    """Return the scores.csv column holding a family's contribution, e.g. ``cause_price``."""
    return f"cause_{family}"


CAUSE_COLUMNS = tuple(cause_column(f) for f in FAMILIES)

#: scores.csv columns, in order (value columns from later issues are appended after these).
SCORE_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_tier",
    "rfm_segment",
    "value_tier",
    "lifecycle_stage",
    "days_since_last_order",
    "frequency",
    "monetary_total",
    "aov",
    "country",
    "channel",
    "top_cause",
    *CAUSE_COLUMNS,
    "reasons",
    "p_alive",
    "expected_days_to_next_order",
    "predicted_value_12m",
    "value_at_risk",
)


# --- dates ------------------------------------------------------------------------------
def as_of_timestamp(value: date | datetime | str | pd.Timestamp) -> pd.Timestamp:
    """Return the as-of date as a naive midnight Timestamp (the start of day D)."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


def day_end(as_of: pd.Timestamp) -> pd.Timestamp:
    """Return the first instant after day ``as_of``: data on or before D is ``< day_end(D)``."""
    return as_of_timestamp(as_of) + pd.Timedelta(days=1)
