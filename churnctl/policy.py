"""Contact policy: who of the customers the rules picked is contacted tonight, held out, or left out.

:func:`plan` takes one row per (customer, campaign) candidate and returns it with ``reason``
(why the customer is left out, ``""`` if not), ``group`` (``treated``, ``holdout`` or ``""``),
``offer_cost``, ``send_at_utc`` and the language's ``template``. Everything is vectorised;
the only loops run over campaigns and time zones, never over customers.

Left out, counted by the first reason that applies (:data:`REASONS`):

1. ``no_email``, ``no_consent``, ``unsubscribed``: consent, decided by ``export`` (marketing
   channels only);
2. ``suppressed``: the customer id, or the trimmed lower-cased email, is in
   ``contact.suppression_file`` (one per line; ``#`` starts a comment);
3. ``cooldown``: assigned (treated or holdout) to any campaign on a day C with
   ``as_of - C < contact.cooldown_days``: a customer contacted on C is next eligible on
   C + cooldown_days. Holdout assignments count too, so a holdout customer is not contacted
   by another campaign while they are being measured;
4. ``campaign_cap``: the campaign's cap group (``cap: {max, days, group}`` in rules.yaml) already
   has ``max`` assignments of this customer in the last ``days`` days;
5. ``over_budget``: see below.

Holdout: of each campaign's eligible customers, those whose
``sha256(customer_id | campaign | period)`` falls below the campaign's holdout share
(``contact.holdout_share``, or ``holdout_share`` in the rule's action) are ``holdout``: recorded,
not exported. ``period`` is ``days since 1970-01-01 // contact.holdout_period_days``, so a
customer keeps their group within a period and re-runs give the same split.

Budget (``budget: {max_recipients, max_offer_cost}`` per campaign and run): eligible customers
are ranked by ``value_at_risk`` (highest first, ties by customer_id) and kept while the treated
customers so far fit both limits; the first one who does not fit and everybody after are
``over_budget``. Holdout customers cost nothing but are cut at the same rank, so the holdout
stays comparable with the treated group. Offer cost if redeemed (base currency):
``percent_off`` value% of the customer's ``aov``; ``amount_off`` its value; ``free_shipping``
``contact.free_shipping_cost``; ``loyalty_points`` value x ``contact.point_value``; ``none`` 0.

Send time: ``send_at_utc`` is a minute in the customer's local window ``contact.send_window``
(``[start hour, end hour)``) on day ``as_of + contact.send_delay_days``, spread by the same
hash; the time zone comes from the customers file, else ``contact.country_timezones``, else
``contact.default_timezone``. ``template``: the rule's ``templates[language]`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from .config import ContactConfig
from .errors import ConfigError

CONSENT_REASONS = ("no_email", "no_consent", "unsubscribed")
REASONS = (*CONSENT_REASONS, "suppressed", "cooldown", "campaign_cap", "over_budget")
GROUPS = ("treated", "holdout")
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


def check(contact: ContactConfig) -> None:
    """Raise ConfigError (one line naming the key) for contact settings out of range."""
    if not 0 <= contact.holdout_share < 1:
        raise ConfigError(f"contact.holdout_share must be in [0, 1), got {contact.holdout_share}")
    if contact.cooldown_days < 0:
        raise ConfigError(f"contact.cooldown_days must be 0 or more, got {contact.cooldown_days}")
    if contact.holdout_period_days < 1:
        raise ConfigError(f"contact.holdout_period_days must be 1 or more, got {contact.holdout_period_days}")
    w = contact.send_window
    if len(w) != 2 or not 0 <= w[0] < w[1] <= 24:
        raise ConfigError(f"contact.send_window must be [start hour, end hour] with 0 <= start < end <= 24, got {list(w)}")
    _zone(contact.default_timezone, "contact.default_timezone")
    for country, tz in contact.country_timezones.items():
        _zone(tz, f"contact.country_timezones.{country}")


def _zone(name: str, key: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}: unknown time zone '{name}' (use an IANA name such as 'Europe/Berlin')") from None


def load_suppression(path: str | Path | None) -> tuple[frozenset[str], frozenset[str]]:
    """Return (lower-cased emails, customer ids) of the suppression file; empty sets without one.

    One value per line; a value with ``@`` is an email, anything else a customer id (exact
    spelling). Blank lines and lines starting with ``#`` are skipped; an optional first line
    ``email`` or ``customer_id`` (a CSV header) is skipped too.
    """
    if path is None:
        return frozenset(), frozenset()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: suppression file not found (contact.suppression_file)")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: suppression file is not UTF-8 text") from None
    values = [v for v in lines if v and not v.startswith("#") and v.lower() not in ("email", "customer_id")]
    emails = frozenset(v.lower() for v in values if "@" in v)
    ids = frozenset(v for v in values if "@" not in v)
    return emails, ids


def offer_cost(frame: pd.DataFrame, contact: ContactConfig) -> pd.Series:
    """Return the estimated cost of each row's offer if redeemed (base currency, 2 decimals)."""
    kind = frame["offer_type"].astype(_TEXT)
    value = pd.to_numeric(frame["offer_value"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    aov = pd.to_numeric(frame["aov"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    cost = np.select(
        [kind.eq("percent_off").to_numpy(dtype=bool, na_value=False),
         kind.eq("amount_off").to_numpy(dtype=bool, na_value=False),
         kind.eq("free_shipping").to_numpy(dtype=bool, na_value=False),
         kind.eq("loyalty_points").to_numpy(dtype=bool, na_value=False)],
        [value / 100.0 * aov, value, np.full(len(frame), contact.free_shipping_cost),
         value * contact.point_value], default=0.0)
    return pd.Series(np.round(cost, 2), index=frame.index, dtype="float64")


def _digests(customer_ids: pd.Series, campaigns: pd.Series, period: int) -> np.ndarray:
    from .csvtext import sha256_rows

    ids = customer_ids.astype(_TEXT)
    return sha256_rows([ids.str.len().astype(str), ":", ids, "|", campaigns.astype(_TEXT).to_numpy(), f"|{period}"])


def period_of(as_of: pd.Timestamp, period_days: int) -> int:
    """Return the holdout period number of ``as_of``."""
    return int((pd.Timestamp(as_of).normalize() - pd.Timestamp("1970-01-01")).days // period_days)


def holdout_draw(customer_ids: pd.Series, campaigns: pd.Series, as_of: pd.Timestamp,
                 period_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (uniform draw in [0, 1), minute spread in [0, 2**16)) per row, from one sha256 each."""
    d = _digests(customer_ids, campaigns, period_of(as_of, period_days))
    if not len(d):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    word = np.ascontiguousarray(d[:, :8]).view(">u8").ravel().astype(np.uint64)
    u = (word >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    spread = (d[:, 8].astype(np.int64) << 8) | d[:, 9].astype(np.int64)
    return u, spread


def send_times(timezones: pd.Series, countries: pd.Series, spread: np.ndarray, as_of: pd.Timestamp,
               contact: ContactConfig) -> pd.Series:
    """Return naive-UTC send times: a minute of the local window on as_of + send_delay_days."""
    zone = timezones.astype(_TEXT).str.strip()
    valid = {z: True for z in zone.dropna().unique()}
    for z in valid:
        try:
            ZoneInfo(z)
        except (ZoneInfoNotFoundError, ValueError):
            valid[z] = False
    ok = zone.map(valid).astype("boolean").fillna(False).to_numpy(dtype=bool)
    fallback = countries.astype(_TEXT).str.upper().map(contact.country_timezones).astype(_TEXT).fillna(
        contact.default_timezone)
    zone = zone.where(ok, fallback)
    start, end = contact.send_window
    minutes = start * 60 + (spread % ((end - start) * 60))
    day = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=contact.send_delay_days)
    local = day + pd.to_timedelta(minutes, unit="min")
    out = pd.Series(pd.NaT, index=timezones.index, dtype="datetime64[ns]")
    for z, idx in pd.Series(np.arange(len(zone))).groupby(zone.to_numpy()).groups.items():
        pos = np.asarray(idx)
        stamps = pd.DatetimeIndex(local[pos]).tz_localize(z, ambiguous="NaT", nonexistent="shift_forward")
        out.iloc[pos] = stamps.tz_convert("UTC").tz_localize(None).to_numpy()
    return out


def plan(frame: pd.DataFrame, *, history: pd.DataFrame | None, settings: Mapping[str, object],
         contact: ContactConfig, as_of: pd.Timestamp,
         suppression: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())) -> pd.DataFrame:
    """Return ``frame`` with ``reason``, ``group``, ``offer_cost``, ``send_at_utc`` and ``template``.

    Parameters
    ----------
    frame : DataFrame
        One row per candidate: ``customer_id, campaign, channel, offer_type, offer_value,
        template, reason`` (consent reason or ""), ``email, language, country, timezone,
        value_at_risk, aov``.
    history : DataFrame or None
        Earlier assignments (``ledger.history``): ``as_of, customer_id, campaign``; None: none.
    settings : mapping
        campaign -> ``rules.CampaignSettings``.
    contact : ContactConfig
    as_of : Timestamp
    suppression : (emails, ids)
        From :func:`load_suppression`.
    """
    check(contact)
    as_of = pd.Timestamp(as_of).normalize()
    out = frame.copy()
    reason = out["reason"].astype(_TEXT).fillna("").to_numpy(dtype=object)
    free = reason == ""
    ids = out["customer_id"].astype(_TEXT)
    camp = out["campaign"].astype(_TEXT)

    emails, sup_ids = suppression
    if emails or sup_ids:
        mail = out["email"].astype(_TEXT).str.strip().str.lower() if "email" in out else ids.iloc[:0]
        hit = ids.isin(sup_ids).to_numpy(dtype=bool).copy()
        if len(mail):
            hit |= mail.isin(emails).to_numpy(dtype=bool, na_value=False)
        reason[free & hit] = "suppressed"
        free = reason == ""

    if history is not None and len(history):
        age = (as_of - pd.to_datetime(history["as_of"])).dt.days.to_numpy()
        hist = history.assign(age=age)
        hist = hist.loc[(hist["age"] > 0).to_numpy()]
        recent = pd.Index(hist.loc[(hist["age"] < contact.cooldown_days).to_numpy(), "customer_id"].unique())
        hit = ids.isin(recent).to_numpy(dtype=bool)
        reason[free & hit] = "cooldown"
        free = reason == ""
        groups = {c: (getattr(s, "cap_group", None) or c) for c, s in settings.items()}
        hist_group = hist["campaign"].map(lambda c: groups.get(c, c)) if len(hist) else hist["campaign"]
        for campaign, s in settings.items():
            if getattr(s, "cap_max", None) is None:
                continue
            mine = hist.loc[(hist_group.eq(groups[campaign]) & hist["age"].lt(s.cap_days)).to_numpy(dtype=bool)]
            counts = mine.groupby("customer_id").size()
            capped = pd.Index(counts.index[counts.to_numpy() >= s.cap_max])
            hit = camp.eq(campaign).to_numpy(dtype=bool) & ids.isin(capped).to_numpy(dtype=bool)
            reason[free & hit] = "campaign_cap"
            free = reason == ""

    # The draw matters only for rows still free (the others are left out whatever it says):
    # one sha256 per free row, not per candidate.
    u = np.ones(len(out))
    spread = np.zeros(len(out), dtype=np.int64)
    at = np.flatnonzero(free)
    u[at], spread[at] = holdout_draw(ids.iloc[at], camp.iloc[at], as_of, contact.holdout_period_days)
    codes, names = pd.factorize(camp)  # a few campaigns: look each up once, not per row
    shares = {c: (s.holdout_share if getattr(s, "holdout_share", None) is not None
                  else contact.holdout_share) for c, s in settings.items()}
    share = pd.to_numeric(pd.Series([shares.get(c, np.nan) for c in names] + [np.nan], dtype=object),
                          errors="coerce").fillna(contact.holdout_share).to_numpy(dtype=float)[codes]
    holdout = free & (u < share)
    cost = offer_cost(out, contact)

    # Budget: rank eligible rows per campaign by value at risk; keep the prefix that fits.
    var = pd.to_numeric(out["value_at_risk"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    budgets = [c for c, s in settings.items()
               if getattr(s, "max_recipients", None) is not None or getattr(s, "max_offer_cost", None) is not None]
    # Only campaigns with a budget are ranked (the others keep every eligible row).
    sel = np.flatnonzero(free & camp.isin(budgets).to_numpy(dtype=bool))
    order = pd.DataFrame({"campaign": camp.iloc[sel].to_numpy(), "var": var[sel], "id": ids.iloc[sel].to_numpy(),
                          "pos": sel})
    order = order.sort_values(["campaign", "var", "id"], ascending=[True, False, True], kind="stable")
    over = np.zeros(len(out), dtype=bool)
    for campaign, block in order.groupby("campaign", sort=False):
        s = settings.get(campaign)
        max_n = getattr(s, "max_recipients", None)
        max_cost = getattr(s, "max_offer_cost", None)
        if max_n is None and max_cost is None:
            continue
        pos = block["pos"].to_numpy()
        treated = (~holdout[pos]).astype(np.int64)
        c = cost.to_numpy()[pos] * treated
        n_before = np.cumsum(treated) - treated
        cost_before = np.cumsum(c) - c
        own = cost.to_numpy()[pos]
        fits = np.ones(len(pos), dtype=bool)
        if max_n is not None:
            fits &= n_before + 1 <= max_n
        if max_cost is not None:
            fits &= cost_before + own <= max_cost + 1e-9
        fits = np.logical_and.accumulate(fits)
        over[pos[~fits]] = True
    reason[free & over] = "over_budget"
    free = reason == ""

    group = np.where(free, np.where(holdout, "holdout", "treated"), "")
    tz = out["timezone"] if "timezone" in out else pd.Series(pd.NA, index=out.index, dtype=_TEXT)
    at = np.flatnonzero(free)  # send times of the rows that are sent or held out; the rest NaT
    send = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    send.iloc[at] = send_times(tz.iloc[at], (out["country"] if "country" in out else tz).iloc[at], spread[at],
                               as_of, contact).to_numpy()
    template = out["template"].astype(_TEXT)
    lang = out["language"].astype(_TEXT) if "language" in out else pd.Series(pd.NA, index=out.index, dtype=_TEXT)
    for campaign, s in settings.items():
        for language, name in getattr(s, "templates", ()):
            hit = (camp.eq(campaign) & lang.eq(language)).to_numpy(dtype=bool, na_value=False)
            template = template.mask(hit, name)
    return out.assign(
        reason=pd.Series(reason, index=out.index, dtype=object).astype(_TEXT),
        group=pd.Series(group, index=out.index, dtype=object).astype(_TEXT),
        offer_cost=cost,
        send_at_utc=send,
        template=template.astype(_TEXT),
    )
