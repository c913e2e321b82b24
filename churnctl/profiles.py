"""Export profiles: one campaign's rows -> the file(s) an email or ads tool imports as is.

A profile is chosen per campaign in rules.yaml (``action.profile``):

* ``generic``: churnctl's own columns (the campaign CSV described in the README).
* ``mailchimp``: audience import. ``Email Address`` first, ``First Name``, ``Last Name``,
  ``Phone Number`` (E.164), ``Country`` (ISO-2), ``Language``, ``Tags`` (campaign, risk tier,
  cause; a tag holding a comma is wrapped in double quotes), merge fields ``OFFERCODE``,
  ``OFFERVALUE``, ``OFFERTYPE``, ``SENDDATE`` (YYYY-MM-DD) and ``CUSTID``. Text cells are cut
  to 255 bytes of UTF-8 (never inside a character).
* ``klaviyo``: list upload. ``Email`` first, ``First Name``, ``Last Name``, ``Phone Number``
  (E.164), ``Email Marketing Consent`` (``Subscribed`` when consent is true and the customer
  has not unsubscribed, ``Unsubscribed`` when they have, otherwise ``Never subscribed``), then
  our columns as custom properties under their own names; timestamps ``YYYY-MM-DD HH:MM:SS``
  (UTC). Files above 50 MB are split on row boundaries into ``<campaign>.csv``,
  ``<campaign>.2.csv``, ... each with the header.
* ``meta_audience``: Meta Custom Audience file ``email, phone, fn, ln, ct, zip, country``;
  each value normalised (email trimmed and lower-cased; phone digits only with the country
  code, no ``+`` and no leading zeros; names and city lower-case without punctuation or
  spaces; zip lower-case without spaces, US zips cut to 5 digits; country ISO-2 lower-case)
  and SHA-256 hashed (hex); a missing value stays empty. Meta needs about 100 people to match
  an audience: smaller lists are written but warned about.
* ``google_customer_match``: headers exactly ``Email, Phone, First Name, Last Name, Country,
  Zip``, UTF-8. Email (trimmed, lower-case) and phone (E.164, with ``+``) are SHA-256 hashed;
  first and last names are hashed too (lower-case, trimmed) because Google rejects clear names
  in a hashed upload; country (ISO-2) and zip are in clear.

Every profile neutralises spreadsheet formulas: a text cell that starts with ``=``, ``+``,
``-``, ``@``, tab or CR gets a leading ``'``. Hashes and E.164 phone numbers (``+`` followed by
digits only, which a spreadsheet reads as a number, not a formula) are exempt.

Phone numbers (:func:`e164`): a minimal, documented normaliser instead of a phone-number library.
A number written with ``+`` or ``00`` is taken as international; otherwise it is national: its
trunk ``0`` is dropped (Italy keeps it) and the country's calling code is put in front
(:data:`CALLING_CODES`; a country not listed gives no phone). The result must have 8 to 15
digits, else it is dropped. It does not validate numbering plans.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_FORMULA_START = r"[=+\-@\t\r]"
_E164 = r"^\+[0-9]{8,15}$"
#: Klaviyo's upload limit per file.
KLAVIYO_MAX_BYTES = 50 * 1024 * 1024
MAILCHIMP_MAX_BYTES = 255
META_MIN_PEOPLE = 100
GOOGLE_COLUMNS = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
META_COLUMNS = ("email", "phone", "fn", "ln", "ct", "zip", "country")
#: ITU country calling codes for national phone numbers (extend as needed).
CALLING_CODES = {
    "US": "1", "CA": "1", "MX": "52", "BR": "55", "AR": "54", "GB": "44", "IE": "353", "DE": "49",
    "AT": "43", "CH": "41", "FR": "33", "BE": "32", "NL": "31", "LU": "352", "ES": "34", "PT": "351",
    "IT": "39", "SE": "46", "NO": "47", "DK": "45", "FI": "358", "PL": "48", "CZ": "420", "GR": "30",
    "AU": "61", "NZ": "64", "JP": "81", "CN": "86", "IN": "91", "KR": "82", "SG": "65", "HK": "852",
    "ZA": "27", "AE": "971", "IL": "972", "TR": "90",
}
_KEEP_TRUNK_ZERO = ("IT",)


def _col(rows: pd.DataFrame, name: str) -> pd.Series:
    if name in rows.columns:
        return rows[name].astype(_TEXT).str.strip().replace("", pd.NA).astype(_TEXT)
    return pd.Series(pd.NA, index=rows.index, dtype=_TEXT)


# --- normalisers ------------------------------------------------------------------------
def e164(phone: pd.Series, country: pd.Series) -> pd.Series:
    """Return phones as E.164 text (``+4915112345678``); missing when not normalisable."""
    raw = phone.astype(_TEXT).str.strip()
    intl = raw.str.startswith("+", na=False) | raw.str.startswith("00", na=False)
    digits = raw.str.replace(r"\D", "", regex=True)
    digits = digits.where(~raw.str.startswith("00", na=False), digits.str.slice(2))
    cc = country.astype(_TEXT).str.strip().str.upper().map(CALLING_CODES).astype(_TEXT)
    keep_zero = country.astype(_TEXT).str.upper().isin(_KEEP_TRUNK_ZERO).to_numpy(dtype=bool)
    national = digits.where(keep_zero, digits.str.lstrip("0"))
    # NANP numbers written with their leading 1 (1 212 555 0100) already carry the code.
    nanp = (cc == "1").to_numpy(dtype=bool, na_value=False) & national.str.len().eq(11).to_numpy(
        dtype=bool, na_value=False) & national.str.startswith("1", na=False).to_numpy(dtype=bool)
    national = national.where(~nanp, national.str.slice(1))
    full = digits.where(intl.to_numpy(dtype=bool, na_value=False), cc + national)
    full = full.str.lstrip("0")
    ok = full.str.len().between(8, 15).to_numpy(dtype=bool, na_value=False)
    return ("+" + full).where(ok).astype(_TEXT)


def normalise_email(email: pd.Series) -> pd.Series:
    """Return emails trimmed and lower-cased; blank or without ``@`` -> missing."""
    e = email.astype(_TEXT).str.strip().str.lower()
    return e.where(e.str.contains("@", regex=False, na=False)).astype(_TEXT)


def _lower_plain(s: pd.Series) -> pd.Series:
    """Return lower-case text without spaces and punctuation (Meta's rule for names and city)."""
    out = s.astype(_TEXT).str.strip().str.lower().str.replace(r"[\s\W_]+", "", regex=True)
    return out.where(out.str.len().gt(0)).astype(_TEXT)


def sha256_hex(values: pd.Series) -> pd.Series:
    """Return the SHA-256 hex of each value's UTF-8 bytes; missing stays missing."""
    present = values.notna().to_numpy()
    out = np.full(len(values), None, dtype=object)
    out[present] = [hashlib.sha256(v.encode("utf-8")).hexdigest() for v in values[present].tolist()]
    return pd.Series(out, index=values.index).astype(_TEXT)


def neutralise(df: pd.DataFrame, exempt: tuple[str, ...] = ()) -> pd.DataFrame:
    """Return ``df`` with text cells starting with = + - @ tab CR prefixed by ``'``.

    Columns in ``exempt`` (hashes) are left alone, and so are E.164 phone numbers anywhere.
    """
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if col in exempt or not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            continue
        text = s.astype(_TEXT)
        hit = text.str.match(_FORMULA_START, na=False).to_numpy(dtype=bool).copy()
        if hit.any():
            hit[hit] = ~text[hit].str.match(_E164, na=False).to_numpy(dtype=bool)
        if hit.any():
            fixed = s.astype(object)
            fixed[hit] = "'" + text[hit]
            out[col] = fixed.astype(_TEXT)
    return out


def truncate_bytes(s: pd.Series, limit: int) -> pd.Series:
    """Return text cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    text = s.astype(_TEXT)
    long = text.str.len().gt(limit // 4).to_numpy(dtype=bool, na_value=False)
    if not long.any():
        return text
    cut = text[long].str.encode("utf-8").str.slice(0, limit).str.decode("utf-8", errors="ignore")
    out = text.astype(object)
    out[long] = cut.to_numpy(dtype=object)
    return out.astype(_TEXT)


def _mailchimp_tag(s: pd.Series) -> pd.Series:
    s = s.astype(_TEXT).fillna("")
    quoted = '"' + s.str.replace('"', "'", regex=False) + '"'
    return s.where(~s.str.contains(",", regex=False), quoted)


# --- profiles ---------------------------------------------------------------------------
def _csv(df: pd.DataFrame) -> str:
    """Return ``df.to_csv(index=False, lineterminator="\\n")``, formatted by Arrow when it can be."""
    from .csvtext import to_text

    return to_text(df)


def _timestamps(s: pd.Series, fmt: str) -> pd.Series:
    """Return ``pd.to_datetime(s).dt.strftime(fmt)`` as text; each distinct time is formatted
    once (send times are a few thousand minutes among many rows)."""
    t = pd.to_datetime(s)
    codes, uniques = pd.factorize(t)
    text = pd.Series(uniques).dt.strftime(fmt).astype(_TEXT)
    return pd.Series(text.array.take(codes, allow_fill=True), index=s.index, name=s.name)


def generic(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Return the generic campaign frame (``columns`` of ``rows``; send time ISO 8601 UTC ``Z``)."""
    out = rows.reindex(columns=columns).copy()
    if "send_at_utc" in out.columns:
        out["send_at_utc"] = _timestamps(out["send_at_utc"], "%Y-%m-%dT%H:%M:%SZ")
    return neutralise(out, exempt=("email_sha256", "customer_id"))


def mailchimp(rows: pd.DataFrame) -> pd.DataFrame:
    """Return a Mailchimp audience-import frame (see module docstring)."""
    tags = (_mailchimp_tag(_col(rows, "campaign")) + "," + _mailchimp_tag(_col(rows, "risk_tier")) + ","
            + _mailchimp_tag(_col(rows, "top_cause"))).str.strip(",")
    out = pd.DataFrame({
        "Email Address": normalise_email(_col(rows, "email")),
        "First Name": _col(rows, "first_name"),
        "Last Name": _col(rows, "last_name"),
        "Phone Number": e164(_col(rows, "phone"), _col(rows, "country")),
        "Country": _col(rows, "country").str.upper(),
        "Language": _col(rows, "language"),
        "Tags": tags,
        "OFFERCODE": _col(rows, "offer_code"),
        "OFFERVALUE": _col(rows, "offer_value"),
        "OFFERTYPE": _col(rows, "offer_type"),
        "SENDDATE": _timestamps(rows["send_at_utc"], "%Y-%m-%d") if "send_at_utc" in rows
        else pd.Series(pd.NA, index=rows.index, dtype=_TEXT),
        "CUSTID": _col(rows, "customer_id"),
    }, index=rows.index)
    for col in out.columns:
        out[col] = truncate_bytes(out[col], MAILCHIMP_MAX_BYTES)
    return neutralise(out, exempt=("CUSTID",))


def consent_status(rows: pd.DataFrame) -> pd.Series:
    """Return Klaviyo's ``Email Marketing Consent`` per row."""
    consent = rows["marketing_consent"].astype("boolean") if "marketing_consent" in rows \
        else pd.Series(pd.NA, index=rows.index, dtype="boolean")
    unsub = rows["unsubscribed"].astype("boolean") if "unsubscribed" in rows \
        else pd.Series(pd.NA, index=rows.index, dtype="boolean")
    status = np.select([unsub.eq(True).to_numpy(dtype=bool, na_value=False),
                        consent.eq(True).to_numpy(dtype=bool, na_value=False)],
                       ["Unsubscribed", "Subscribed"], default="Never subscribed")
    return pd.Series(status, index=rows.index, dtype=object).astype(_TEXT)


KLAVIYO_PROPERTIES = ("customer_id", "campaign", "language", "country", "offer_code", "offer_type",
                      "offer_value", "offer_min_spend", "template", "churn_probability", "risk_tier",
                      "top_cause", "send_at_utc")


def klaviyo(rows: pd.DataFrame) -> pd.DataFrame:
    """Return a Klaviyo list-upload frame (see module docstring)."""
    head = pd.DataFrame({
        "Email": normalise_email(_col(rows, "email")),
        "First Name": _col(rows, "first_name"),
        "Last Name": _col(rows, "last_name"),
        "Phone Number": e164(_col(rows, "phone"), _col(rows, "country")),
        "Email Marketing Consent": consent_status(rows),
    }, index=rows.index)
    props = rows.reindex(columns=list(KLAVIYO_PROPERTIES)).copy()
    props["send_at_utc"] = _timestamps(props["send_at_utc"], "%Y-%m-%d %H:%M:%S")
    out = pd.concat([head, props], axis=1)
    for col in out.columns:  # one line per row, so a split never cuts a record
        if pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object:
            out[col] = out[col].astype(_TEXT).str.replace(r"[\r\n]+", " ", regex=True)
    return neutralise(out, exempt=("customer_id",))


def meta_audience(rows: pd.DataFrame) -> pd.DataFrame:
    """Return a Meta Custom Audience frame: normalised, SHA-256 hashed columns (see module docstring)."""
    country = _col(rows, "country").str.upper()
    phone = e164(_col(rows, "phone"), country).str.lstrip("+").str.lstrip("0")
    zip_ = _col(rows, "zip").str.lower().str.replace(r"\s+", "", regex=True)
    us = country.eq("US").to_numpy(dtype=bool, na_value=False)
    zip_ = zip_.where(~us, zip_.str.slice(0, 5))
    clear = {
        "email": normalise_email(_col(rows, "email")),
        "phone": phone,
        "fn": _lower_plain(_col(rows, "first_name")),
        "ln": _lower_plain(_col(rows, "last_name")),
        "ct": _lower_plain(_col(rows, "city")),
        "zip": zip_.where(zip_.str.len().gt(0)),
        "country": country.str.lower(),
    }
    return pd.DataFrame({k: sha256_hex(v.astype(_TEXT)) for k, v in clear.items()}, index=rows.index)


def google_customer_match(rows: pd.DataFrame) -> pd.DataFrame:
    """Return a Google Ads Customer Match frame (see module docstring)."""
    country = _col(rows, "country").str.upper()
    out = pd.DataFrame({
        "Email": sha256_hex(normalise_email(_col(rows, "email"))),
        "Phone": sha256_hex(e164(_col(rows, "phone"), country)),
        "First Name": sha256_hex(_col(rows, "first_name").str.lower()),
        "Last Name": sha256_hex(_col(rows, "last_name").str.lower()),
        "Country": country,
        "Zip": _col(rows, "zip"),
    }, index=rows.index)
    return neutralise(out, exempt=("Email", "Phone", "First Name", "Last Name"))


def render(profile: str, rows: pd.DataFrame, *, campaign: str, generic_columns: list[str],
           max_bytes: int = KLAVIYO_MAX_BYTES) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Return ``[(file name, CSV text, rows)]`` for one campaign, and warnings.

    ``rows`` are the campaign's treated contacts in export order. Klaviyo files above
    ``max_bytes`` are split on row boundaries (``<campaign>.csv``, ``<campaign>.2.csv``, ...).
    """
    warnings: list[str] = []
    if profile == "generic":
        frame = generic(rows, generic_columns)
    elif profile == "mailchimp":
        frame = mailchimp(rows)
    elif profile == "klaviyo":
        frame = klaviyo(rows)
    elif profile == "meta_audience":
        frame = meta_audience(rows)
        people = int(frame["email"].notna().sum() + 0)
        if len(frame) < META_MIN_PEOPLE:
            warnings.append(f"campaign '{campaign}': Meta audience has {len(frame)} people "
                            f"({people} with email), fewer than {META_MIN_PEOPLE}: Meta may not match it")
    elif profile == "google_customer_match":
        frame = google_customer_match(rows)
    else:  # rules.py validates profiles; this is a programming error
        raise ValueError(f"unknown profile {profile!r}")
    text = _csv(frame)
    if profile != "klaviyo" or len(text.encode("utf-8")) <= max_bytes:
        return [(f"{campaign}.csv", text, len(frame))], warnings
    return _split(text, campaign, max_bytes), warnings


def _split(text: str, campaign: str, max_bytes: int) -> list[tuple[str, str, int]]:
    """Return ``text`` split on line boundaries into files of at most ``max_bytes`` (header in each)."""
    lines = [line + "\n" for line in text.split("\n")[:-1]]  # klaviyo() removed breaks in cells
    header, body = lines[0], lines[1:]
    sizes = np.array([len(line.encode("utf-8")) for line in body], dtype=np.int64)
    room = max_bytes - len(header.encode("utf-8"))
    if room <= 0 or (sizes > room).any():
        raise ValueError(f"campaign '{campaign}': a row does not fit in {max_bytes} bytes")
    parts: list[tuple[str, str, int]] = []
    start = 0
    while start < len(body):
        cum = np.cumsum(sizes[start:])
        stop = start + int(np.searchsorted(cum, room, side="right"))
        name = f"{campaign}.csv" if not parts else f"{campaign}.{len(parts) + 1}.csv"
        parts.append((name, header + "".join(body[start:stop]), stop - start))
        start = stop
    return parts
