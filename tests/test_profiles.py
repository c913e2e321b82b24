"""Export profiles: headers, normalisation and hashing against known values."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pytest

from churnctl import profiles

H_TEST_EMAIL = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"  # test@example.com
H_PHONE_PLUS = "536afd523e19dc83fccba822ef5e4ca646111314aaf0aa286667c5bea18dd70b"  # +4915112345678
H_PHONE_DIGITS = "8efb96404be52f6109b9db0f687274a81e9e3cc23fabd6f0da5d38baa3d2facd"  # 4915112345678
H_ANNA = "55579b557896d0ce1764c47fed644f9b35f58bad620674af23f356d80ed0c503"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rows(**over) -> pd.DataFrame:
    base = {
        "email": [" Test@Example.com ", "=cmd@evil.example"], "first_name": ["Anna", "@Bob"],
        "last_name": ["Müller-Lüdenscheidt", "-Smith"], "phone": ["0151 12345678", "+1 (212) 555-0100"],
        "city": ["Saint-Étienne", "New York"], "zip": ["42 000", "10001-1234"], "country": ["DE", "US"],
        "language": ["de", "en"], "customer_id": ["007", "+x"], "campaign": ["winback_30", "winback_30"],
        "channel": ["email", "email"], "offer_code": ["CC-AAAAAAAAAA", "CC-BBBBBBBBBB"],
        "offer_type": ["percent_off", "percent_off"], "offer_value": ["5", "5"], "offer_min_spend": [None, None],
        "template": ["t", "t"], "churn_probability": [0.91, 0.5], "risk_tier": ["high", "medium"],
        "top_cause": ["price", "logistics"], "marketing_consent": pd.array([True, True], dtype="boolean"),
        "unsubscribed": pd.array([False, True], dtype="boolean"),
        "send_at_utc": pd.to_datetime(["2026-07-01 07:15:00", "2026-07-01 13:40:00"]),
    }
    base.update(over)
    return pd.DataFrame(base)


def parse(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def render(profile: str, frame: pd.DataFrame, **kw):
    parts, warnings = profiles.render(profile, frame, campaign="winback_30",
                                      generic_columns=["email", "customer_id", "send_at_utc"], **kw)
    return parts, warnings


def test_e164_national_international_and_bad():
    phone = pd.Series(["0151 12345678", "+49 151 1234-5678", "0049 151 12345678",
                       "(212) 555-0100", "1 212 555 0100", "06 12345678", "12", None, "02 1234 5678"])
    country = pd.Series(["DE", "FR", "DE", "US", "US", "XX", "DE", "DE", "IT"])
    got = profiles.e164(phone, country).tolist()
    assert got[:5] == ["+4915112345678", "+4915112345678", "+4915112345678", "+12125550100", "+12125550100"]
    assert pd.isna(got[5]) and pd.isna(got[6]) and pd.isna(got[7])   # unknown country, too short, missing
    assert got[8] == "+390212345678"                                    # Italy keeps its 0


def test_generic_neutralises_formulas_and_formats_send_time():
    (name, text, n), = render("generic", rows())[0]
    assert name == "winback_30.csv" and n == 2
    got = parse(text)
    assert list(got.columns) == ["email", "customer_id", "send_at_utc"]
    assert got["email"].tolist() == [" Test@Example.com ", "'=cmd@evil.example"]
    assert got["customer_id"].tolist() == ["007", "+x"]          # ids are never altered
    assert got["send_at_utc"].tolist() == ["2026-07-01T07:15:00Z", "2026-07-01T13:40:00Z"]


def test_mailchimp_columns_tags_truncation_and_safety():
    frame = rows(first_name=["Ä" * 200, "@Bob"], top_cause=["price", "a, b"])
    (_, text, _), = render("mailchimp", frame)[0]
    got = parse(text)
    assert list(got.columns) == ["Email Address", "First Name", "Last Name", "Phone Number", "Country",
                                 "Language", "Tags", "OFFERCODE", "OFFERVALUE", "OFFERTYPE", "SENDDATE", "CUSTID"]
    assert got.loc[0, "Email Address"] == "test@example.com"
    assert got.loc[0, "First Name"] == "Ä" * 127 and len(got.loc[0, "First Name"].encode()) <= 255
    assert got.loc[1, "First Name"] == "'@Bob" and got.loc[1, "Last Name"] == "'-Smith"
    assert got["Phone Number"].tolist() == ["+4915112345678", "+12125550100"]   # E.164 is not neutralised
    assert got["Tags"].tolist() == ["winback_30,high,price", 'winback_30,medium,"a, b"']
    assert got["SENDDATE"].tolist() == ["2026-07-01", "2026-07-01"]
    assert got["OFFERCODE"].tolist() == ["CC-AAAAAAAAAA", "CC-BBBBBBBBBB"] and got["CUSTID"].tolist() == ["007", "+x"]


def test_klaviyo_consent_properties_and_split():
    frame = rows(marketing_consent=pd.array([True, pd.NA], dtype="boolean"),
                 unsubscribed=pd.array([False, pd.NA], dtype="boolean"), first_name=["An\nna", "Bob"])
    (name, text, _), = render("klaviyo", frame)[0]
    got = parse(text)
    assert list(got.columns)[:5] == ["Email", "First Name", "Last Name", "Phone Number", "Email Marketing Consent"]
    assert list(got.columns)[5:] == list(profiles.KLAVIYO_PROPERTIES)
    assert got["Email Marketing Consent"].tolist() == ["Subscribed", "Never subscribed"]
    assert got["First Name"].tolist() == ["An na", "Bob"]
    assert got["send_at_utc"].tolist() == ["2026-07-01 07:15:00", "2026-07-01 13:40:00"]
    unsub = rows()
    assert parse(render("klaviyo", unsub)[0][0][1])["Email Marketing Consent"].tolist() == ["Subscribed", "Unsubscribed"]
    big = pd.concat([rows()] * 50, ignore_index=True)
    parts, _ = render("klaviyo", big, max_bytes=4000)
    assert [p[0] for p in parts][:3] == ["winback_30.csv", "winback_30.2.csv", "winback_30.3.csv"]
    assert sum(p[2] for p in parts) == 100
    header = parts[0][1].split("\n")[0]
    for _, text, n in parts:
        assert len(text.encode()) <= 4000 and text.split("\n")[0] == header and len(parse(text)) == n


def test_meta_audience_normalised_and_hashed():
    frame = rows(email=[" Test@Example.com ", None])
    parts, warnings = render("meta_audience", frame)
    (_, text, _), = parts
    got = parse(text)
    assert list(got.columns) == ["email", "phone", "fn", "ln", "ct", "zip", "country"]
    assert got.loc[0, "email"] == H_TEST_EMAIL and got.loc[1, "email"] == ""
    assert got.loc[0, "phone"] == H_PHONE_DIGITS           # digits with country code, no +
    assert got.loc[0, "fn"] == H_ANNA
    assert got.loc[0, "ln"] == sha("müllerlüdenscheidt") and got.loc[0, "ct"] == sha("saintétienne")
    assert got.loc[0, "zip"] == sha("42000") and got.loc[1, "zip"] == sha("10001")   # US: 5 digits
    assert got["country"].tolist() == [sha("de"), sha("us")]
    assert "example" not in text.lower() and "anna" not in text.lower()
    assert warnings and "fewer than 100" in warnings[0]


def test_google_customer_match_headers_and_hashes():
    (_, text, _), = render("google_customer_match", rows())[0]
    assert text.split("\n")[0] == "Email,Phone,First Name,Last Name,Country,Zip"
    text.encode("utf-8")  # written as UTF-8 text by export (never UTF-16)
    got = parse(text)
    assert got.loc[0, "Email"] == H_TEST_EMAIL and got.loc[0, "Phone"] == H_PHONE_PLUS
    assert got.loc[0, "First Name"] == H_ANNA and got.loc[0, "Last Name"] == sha("müller-lüdenscheidt")
    assert got["Country"].tolist() == ["DE", "US"] and got["Zip"].tolist() == ["42 000", "10001-1234"]


def test_zip_formula_in_clear_column_is_neutralised():
    (_, text, _), = render("google_customer_match", rows(zip=["=1+1", "-5"]))[0]
    assert parse(text)["Zip"].tolist() == ["'=1+1", "'-5"]


@pytest.mark.parametrize("profile", ["generic", "mailchimp", "klaviyo", "meta_audience", "google_customer_match"])
def test_empty_campaign_gets_header_only(profile):
    (_, text, n), = render(profile, rows().iloc[:0])[0]
    assert n == 0 and text.count("\n") == 1


def test_timestamps_formatted_as_strftime_with_missing_kept():
    times = pd.Series(pd.to_datetime(["2026-07-01 09:05:00", None, "2026-07-01 09:05:00", "2026-12-31 23:59:59"]),
                      index=[7, 8, 9, 10])
    got = profiles._timestamps(times, "%Y-%m-%dT%H:%M:%SZ")
    assert got.index.tolist() == [7, 8, 9, 10]
    assert got.tolist()[:1] + got.tolist()[2:] == ["2026-07-01T09:05:00Z", "2026-07-01T09:05:00Z",
                                                   "2026-12-31T23:59:59Z"]
    assert pd.isna(got.iloc[1])
    pd.testing.assert_series_equal(got, times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(got.dtype))
