"""Export: atomic files, offer codes, contacts, campaign lists, exclusions and CSV safety."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnctl import export
from churnctl.config import ExportConfig
from churnctl.errors import ConfigError

AS_OF = pd.Timestamp("2026-06-30")


def read(path: Path) -> pd.DataFrame:
    """Read a written CSV back as exact text (empty cells as "")."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --- the Arrow CSV writer: the same bytes as pandas ---------------------------------------
def _awkward_frame(n: int = 3000) -> pd.DataFrame:
    texts = ["007", "a,b", 'say "hi"', "two\nlines", "cr\rin", " padded ", "tab\tin", "", None, "Zoë; é",
             "=1+2", "'quoted'"]
    rng = np.random.default_rng(5)
    special = [0.0, -0.0, 15.0, -3.0, 1e16, 9999999999999998.0, 1e-4, 0.00009999, 1e-05, 1e10, 9999999999.5,
               123456789.123, 0.1 + 0.2, np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308, 0.014449]
    floats = np.concatenate([special, rng.normal(size=n) * 10.0 ** rng.integers(-12, 20, n),
                             np.round(rng.random(n), 6)])
    m = len(floats)
    return pd.DataFrame({
        "customer_id": pd.Series((texts * m)[:m], dtype="str"),
        "value": floats,
        "note": pd.Series((texts[::-1] * m)[:m], dtype=object),
        "count": np.arange(m) - 7,
        "flag": np.arange(m) % 3 == 0,
        "maybe": pd.array(([True, False, None] * m)[:m], dtype="boolean"),
        "n": pd.array(([1, None, -3] * m)[:m], dtype="Int64"),
        'odd "name", too': 1,
    })


def test_arrow_csv_writer_matches_pandas_byte_for_byte():
    from churnctl import csvtext

    df = _awkward_frame()
    want = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    assert csvtext.supported(df)
    assert b"".join(csvtext.chunks(df, chunk_rows=997)) == want  # several pieces, same bytes
    indexed = df.set_index("customer_id")
    assert b"".join(csvtext.chunks(indexed, index=True)) == indexed.to_csv(lineterminator="\n").encode("utf-8")
    empty = df.iloc[:0]
    assert b"".join(csvtext.chunks(empty)) == empty.to_csv(index=False, lineterminator="\n").encode("utf-8")


def test_arrow_csv_writer_few_distinct_floats_and_sparse_quoting_match_pandas():
    """Columns with few distinct floats are formatted once per value (bit-exact: -0.0 stays
    apart from 0.0, NaN stays empty); a few floats needing Python's layout among many; quoting
    found in only some rows and pieces."""
    from churnctl import csvtext

    special = [0.0, -0.0, 15.0, -3.0, 1e16, 1e-05, 0.00009999, 1e10, 3650.0, 0.9999, np.inf, -np.inf, np.nan,
               0.1 + 0.2, 5e-324]
    n = 50_000
    rng = np.random.default_rng(7)
    few = np.array(special)[rng.integers(0, len(special), n)]
    notes = np.array(["plain", "late, twice", "ü,é", 'a "b"', "x\ny", "Zoë"], dtype=object)
    note = np.full(n, "plain", dtype=object)
    note[[3, 40_000]] = notes[1:3]  # a delimiter in two rows of two pieces only
    note[45_000] = notes[3]  # a quote in one row of the last piece only
    note[12_345] = notes[4]
    df = pd.DataFrame({
        "customer_id": pd.Series([f"{i:07d}" for i in range(n)], dtype="str"),
        "few": few,
        "zeros": np.zeros(n),
        "whole": np.round(rng.random(n) * 1000),
        "note": pd.Series(note, dtype="str"),
        "unquoted": pd.Series(np.array(["A", "B", "Zoë"], dtype=object)[rng.integers(0, 3, n)], dtype="str"),
    })
    df.loc[[5, 6], "zeros"] = [-0.0, np.nan]
    sparse = rng.random(n)  # many distinct values, a few needing Python's layout
    sparse[[9, 20_001, 30_000, 30_500, 44_444, 49_999, 7]] = [1e-05, 15.0, 1e16, -0.0, -2e-07, 0.0, np.nan]
    df["sparse"] = sparse
    want = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    assert csvtext.supported(df)
    assert b"".join(csvtext.chunks(df, chunk_rows=10_000)) == want
    assert b"".join(csvtext.chunks(df)) == want


def test_write_csv_falls_back_to_pandas_for_other_columns(tmp_path):
    from churnctl import csvtext

    frames = {
        "dates": pd.DataFrame({"day": pd.to_datetime(["2026-01-01", None]), "n": [1, 2]}),
        "one_column": pd.DataFrame({"x": pd.Series(["", None, "a"], dtype="str")}),  # pandas writes ""
        "mixed_objects": pd.DataFrame({"x": pd.Series([1, "a"], dtype=object), "y": [1.0, 2.0]}),
        "float32": pd.DataFrame({"x": np.array([0.1, 2.5], dtype=np.float32), "y": [1, 2]}),
    }
    for name, df in frames.items():
        assert not csvtext.supported(df), name
        path = tmp_path / f"{name}.csv"
        export.write_csv(df, path)
        assert path.read_bytes() == df.to_csv(index=False, lineterminator="\n").encode("utf-8"), name


def test_write_csv_with_index_equals_reset_index(tmp_path):
    df = _awkward_frame(50).set_index("customer_id")
    export.write_csv(df, tmp_path / "a.csv", index=True)
    export.write_csv(df.reset_index(), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# --- atomic writes ----------------------------------------------------------------------
def test_write_csv_exact_text_and_row_count(tmp_path):
    df = pd.DataFrame({"customer_id": ["007", "AbC", "0012"], "amount": [1.5, 2.0, np.nan],
                       "name": ["Zoë", None, "a,b"]})
    path = tmp_path / "sub" / "x.csv"
    assert export.write_csv(df, path) == 3
    assert path.read_bytes() == "customer_id,amount,name\n007,1.5,Zoë\nAbC,2.0,\n0012,,\"a,b\"\n".encode()
    assert leftovers(tmp_path) == []


def test_write_csv_with_index(tmp_path):
    df = pd.DataFrame({"p": [0.5]}, index=pd.Index(["007"], name="customer_id"))
    export.write_csv(df, tmp_path / "s.csv", index=True)
    assert (tmp_path / "s.csv").read_text() == "customer_id,p\n007,0.5\n"


def _failing_to_csv(self, handle, **kwargs):
    handle.write("customer_id,amount\n007,1.")  # half a file, then the disk "fills up"
    raise OSError("No space left on device")


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "scores.csv"
    path.write_text("old complete file\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", _failing_to_csv)
    with pytest.raises(OSError, match="No space left"):
        export.write_csv(pd.DataFrame({"customer_id": ["007"]}), path)
    assert path.read_text() == "old complete file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_csv", _failing_to_csv)
    with pytest.raises(OSError):
        export.write_csv(pd.DataFrame({"customer_id": ["007"]}), tmp_path / "new.csv")
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_leaves_no_temp(tmp_path, monkeypatch):
    def boom(src, dst):
        raise PermissionError("locked")

    monkeypatch.setattr(export.os, "replace", boom)
    with pytest.raises(PermissionError):
        export.write_json({"a": 1}, tmp_path / "run.json")
    assert list(tmp_path.iterdir()) == []


def test_write_json_sorted_indented_and_plain(tmp_path):
    path = export.write_manifest(tmp_path, {"b": np.int64(2), "a": {"z": float("nan"), "y": AS_OF},
                                            "p": Path("campaigns") / "x.csv"})
    assert path == tmp_path / "run.json"
    text = path.read_text(encoding="utf-8")
    assert text == ('{\n  "a": {\n    "y": "2026-06-30T00:00:00",\n    "z": null\n  },\n  "b": 2,\n'
                    '  "p": "campaigns/x.csv"\n}\n')
    assert json.loads(text)["b"] == 2


def test_write_rejects_header_only_and_neutralised(tmp_path):
    empty = pd.DataFrame(columns=["file", "line", "reason", "value"])
    assert export.write_rejects(empty, tmp_path) == 0
    assert (tmp_path / "rejects.csv").read_text() == "file,line,reason,value\n"
    bad = pd.DataFrame({"file": ["o.csv"], "line": [3], "reason": ["bad amount"], "value": ["=1+1"]})
    assert export.write_rejects(bad, tmp_path) == 1
    assert (tmp_path / "rejects.csv").read_text() == "file,line,reason,value\no.csv,3,bad amount,'=1+1\n"


# --- offer codes ------------------------------------------------------------------------
def test_offer_codes_unique_deterministic_and_dated():
    ids = pd.Series([f"{i:05d}" for i in range(5000)] + ["AbC", "abc"], index=range(100, 5102))
    camps = pd.Series(["winback_30"] * len(ids), index=ids.index)
    codes = export.offer_codes(ids, camps, AS_OF, "CC")
    assert codes.index.equals(ids.index)
    assert codes.is_unique
    assert codes.str.fullmatch(r"CC-[A-Z2-7]{10}").all()
    assert codes.equals(export.offer_codes(ids, camps, AS_OF, "CC"))
    later = export.offer_codes(ids, camps, AS_OF + pd.Timedelta(days=1), "CC")
    assert not codes.isin(later).any()
    other = export.offer_codes(ids, camps.replace("winback_30", "winback_60"), AS_OF, "CC")
    assert not codes.isin(other).any()
    salted = export.offer_codes(ids, camps, AS_OF, "CC", salt="s3cret")
    assert not codes.isin(salted).any()
    expected = hashlib.sha256(b"|5:00000|winback_30|2026-06-30").digest()
    assert codes.iloc[0] == "CC-" + base64.b32encode(expected).decode()[:10]


def test_offer_codes_lengthen_on_collision(monkeypatch):
    monkeypatch.setattr(export, "CODE_LENGTH", 1)  # 32 possible codes for 300 ids: many collide
    ids = pd.Series([f"c{i}" for i in range(300)])
    camps = pd.Series(["x"] * 300)
    codes = export.offer_codes(ids, camps, AS_OF, "P")
    assert codes.is_unique
    lengths = codes.str.len() - 2
    assert lengths.min() >= 1 and lengths.max() > 1
    assert codes.equals(export.offer_codes(ids, camps, AS_OF, "P"))
    first = codes.str.slice(2, 3)
    # A code stays short only when no other id shares its first character.
    assert ((lengths == 1) == ~first.duplicated(keep=False)).all()


def test_offer_codes_refuse_repeated_pairs_and_bad_prefix():
    with pytest.raises(ValueError, match="pair repeats"):
        export.offer_codes(pd.Series(["a", "a"]), pd.Series(["x", "x"]), AS_OF, "CC")
    with pytest.raises(ConfigError, match="export.offer_code_prefix"):
        export.offer_codes(pd.Series(["a"]), pd.Series(["x"]), AS_OF, "C C")
    assert export.offer_codes(pd.Series(["a"]), pd.Series(["x"]), AS_OF, "").str.fullmatch(r"[A-Z2-7]{10}").all()


def test_email_sha256_normalises():
    got = export.email_sha256(pd.Series(["  Foo@Example.COM ", None, "foo@example.com"]))
    want = hashlib.sha256(b"foo@example.com").hexdigest()
    assert got.iloc[0] == want and got.iloc[2] == want and pd.isna(got.iloc[1])


# --- contacts ---------------------------------------------------------------------------
ORDERS = pd.DataFrame({
    "order_id": ["1", "2", "3", "4", "5"],
    "customer_id": ["007", "007", "AbC", "AbC", "zz"],
    "order_date": pd.to_datetime(["2026-01-05", "2026-03-01", "2026-02-01", "2026-04-01", "2026-01-01"]),
    "email": ["old@x.com", "new@x.com", "abc@x.com", None, "zz@x.com"],
    "first_name": ["Al", "Alan", "Bea", "  ", "Zed"],
    "country": ["DE", "DE", "JP", "JP", "BR"],
})


def test_build_contacts_orders_only():
    got = export.build_contacts(ORDERS, None, ExportConfig())
    assert got.index.name == "customer_id" and sorted(got.index) == ["007", "AbC", "zz"]
    assert list(got.columns) == list(export.CONTACT_COLUMNS)
    assert got.loc["007", "email"] == "new@x.com" and got.loc["007", "first_name"] == "Alan"
    # latest order has no email / a blank name: the latest order that has one is used
    assert got.loc["AbC", "email"] == "abc@x.com" and got.loc["AbC", "first_name"] == "Bea"
    assert got["language"].to_dict() == {"007": "de", "AbC": "ja", "zz": "pt"}
    assert got["marketing_consent"].isna().all() and got["unsubscribed"].isna().all()
    assert str(got["marketing_consent"].dtype) == "boolean"


def test_build_contacts_customers_file_wins_and_events_unsubscribe():
    customers = pd.DataFrame({
        "customer_id": ["007", "AbC", "new"],
        "email": ["crm@x.com", None, "n@x.com"],
        "country": [None, "FR", "US"],
        "language": [None, "en", None],
        "marketing_consent": [True, False, None],
        "unsubscribed": [False, None, None],
    })
    events = pd.DataFrame({"customer_id": ["zz", "007"], "event_type": ["unsubscribe", "email_open"]})
    got = export.build_contacts(ORDERS, customers, ExportConfig(default_language="xx"), events=events)
    assert sorted(got.index) == ["007", "AbC", "new", "zz"]
    assert got.loc["007", "email"] == "crm@x.com"            # customers file wins
    assert got.loc["AbC", "email"] == "abc@x.com"            # ... where it has a value
    assert got.loc["AbC", "country"] == "FR" and got.loc["007", "country"] == "DE"
    assert got["language"].to_dict() == {"007": "de", "AbC": "en", "new": "xx", "zz": "pt"}
    assert got["marketing_consent"].tolist()[:2] == [True, False]
    assert pd.isna(got.loc["new", "marketing_consent"])
    assert got.loc["zz", "unsubscribed"] == True  # noqa: E712 - nullable boolean
    assert got.loc["007", "unsubscribed"] == False  # noqa: E712


# --- campaigns --------------------------------------------------------------------------
def campaign_inputs():
    ids = ["007", "AbC", "noemail", "noconsent", "unknown", "unsub", "both", "am_none", "ads1", "ads2",
           "low", "tie_b", "tie_a"]
    idx = pd.Index(ids, name="customer_id")
    n = len(ids)
    scores = pd.DataFrame({
        "churn_probability": [0.81, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7, 0.66, 0.9, 0.1, 0.5, 0.5],
        "risk_tier": ["high"] * 10 + ["low", "medium", "medium"],
        "top_cause": ["price"] * 7 + ["service", "engagement", "engagement", "activity", "price", "price"],
        "value_tier": ["A"] * n, "monetary_total": [123.456] * n, "reasons": ["-3 orders late"] + ["r"] * (n - 1),
        "country": ["DE"] * n, "channel": ["web"] * n,
    }, index=idx)
    camp = (["coupon"] * 7 + ["am", "ads", "ads", "no_action", "coupon", "coupon"])
    chan = {"coupon": "email", "am": "account_manager", "ads": "ads_audience", "no_action": None}
    actions = pd.DataFrame({
        "rule": [c if c != "no_action" else None for c in camp], "campaign": camp,
        "channel": [chan[c] for c in camp],
        "offer_type": ["amount_off" if c == "coupon" else "none" for c in camp],
        "offer_value": [15.0 if c == "coupon" else np.nan for c in camp],
        "offer_min_spend": [100.0 if c == "coupon" else np.nan for c in camp],
        "template": [None if c == "no_action" else f"t_{c}" for c in camp],
    }, index=idx)
    contacts = pd.DataFrame({
        "email": ["a@x.com", "b@x.com", None, "d@x.com", "e@x.com", "f@x.com", "   ", None,
                  "  Foo@Example.COM ", "nope-at-all", "l@x.com", "tb@x.com", "ta@x.com"],
        "first_name": ["=HYPERLINK(\"http://evil\")", "+Bo", "C", "D", "E", "F", "G", "@Hal", "I", "J",
                       "L", "-Tb", "Ta"],
        "language": ["de", "fr", "en", "en", "en", "en", "en", "en", "en", "en", "en", None, "en"],
        "country": ["DE", "FR", "US", "US", "US", "US", "US", "US", "US", "US", "US", "JP", "US"],
        "marketing_consent": pd.array([True, True, True, False, None, True, False, False, True, True,
                                       True, True, True], dtype="boolean"),
        "unsubscribed": pd.array([False, None, False, False, False, True, True, True, False, False,
                                  False, False, False], dtype="boolean"),
    }, index=idx)
    return scores, actions, contacts


def nonzero(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if v}


def test_write_campaigns_lists_exclusions_and_order(tmp_path):
    scores, actions, contacts = campaign_inputs()
    result = export.write_campaigns(tmp_path, scores, actions, contacts, AS_OF, ExportConfig(),
                                    campaigns={"coupon": "email", "am": "account_manager",
                                               "ads": "ads_audience", "empty_one": "survey"})
    assert [f["campaign"] for f in result.files] == ["coupon", "am", "ads", "empty_one"]
    assert result.files[0] == {"path": str(tmp_path / "campaigns" / "coupon.csv"), "rows": 4,
                               "campaign": "coupon", "channel": "email", "profile": "generic"}
    assert result.recipients == {"coupon": 4, "am": 1, "ads": 1, "empty_one": 0}
    # first failing reason wins: "both" has a blank email and no consent -> no_email
    assert nonzero(result.excluded) == {"no_email": 3, "no_consent": 2, "unsubscribed": 1}
    assert set(result.excluded) == set(export.EXCLUSION_REASONS)
    assert nonzero(result.excluded_by_campaign["coupon"]) == {"no_email": 2, "no_consent": 2, "unsubscribed": 1}
    assert nonzero(result.excluded_by_campaign["ads"]) == {"no_email": 1}
    assert nonzero(result.excluded_by_campaign["am"]) == {}
    assert sorted(p.name for p in (tmp_path / "campaigns").iterdir()) == \
        ["ads.csv", "am.csv", "coupon.csv", "empty_one.csv"]
    assert leftovers(tmp_path) == []

    coupon = read(tmp_path / "campaigns" / "coupon.csv")
    assert list(coupon.columns) == list(export.MAIL_COLUMNS)
    # probability desc, then customer_id; ids exactly as given
    assert coupon["customer_id"].tolist() == ["AbC", "007", "tie_a", "tie_b"]
    first = coupon.set_index("customer_id")
    assert first.loc["007", "first_name"] == "'=HYPERLINK(\"http://evil\")"
    assert first.loc["AbC", "first_name"] == "'+Bo" and first.loc["tie_b", "first_name"] == "'-Tb"
    assert first.loc["tie_a", "first_name"] == "Ta"
    assert first.loc["tie_b", "language"] == "ja"            # missing language: from country
    assert (first.loc["007", "offer_type"], first.loc["007", "offer_value"], first.loc["007", "offer_min_spend"]) \
        == ("amount_off", "15", "100")
    assert first["offer_code"].str.fullmatch(r"CC-[A-Z2-7]{10}").all() and first["offer_code"].is_unique
    assert first.loc["007", "churn_probability"] == "0.81" and first.loc["007", "template"] == "t_coupon"

    am = read(tmp_path / "campaigns" / "am.csv")
    assert list(am.columns) == list(export.MAIL_COLUMNS) + list(export.ACCOUNT_MANAGER_EXTRA)
    # kept without email, consent or subscription: a service follow-up, not marketing
    assert am.iloc[0][["customer_id", "email", "first_name", "offer_code", "monetary_total",
                       "marketing_consent", "unsubscribed"]].tolist() == \
        ["am_none", "", "'@Hal", "", "123.46", "False", "True"]

    raw = (tmp_path / "campaigns" / "ads.csv").read_text()
    assert raw == ("email_sha256,country,customer_id,campaign\n"
                   f"{hashlib.sha256(b'foo@example.com').hexdigest()},US,ads1,ads\n")
    assert "@" not in raw and "foo" not in raw.lower()
    assert (tmp_path / "campaigns" / "empty_one.csv").read_text() == ",".join(export.MAIL_COLUMNS) + "\n"


def test_unknown_consent_allowed_when_not_required(tmp_path):
    scores, actions, contacts = campaign_inputs()
    result = export.write_campaigns(tmp_path, scores, actions, contacts, AS_OF,
                                    ExportConfig(require_consent=False))
    assert nonzero(result.excluded) == {"no_email": 3, "no_consent": 1, "unsubscribed": 1}
    assert "unknown" in read(tmp_path / "campaigns" / "coupon.csv")["customer_id"].tolist()
    assert [f["campaign"] for f in result.files] == ["coupon", "am", "ads"]  # from actions


def test_codes_deterministic_across_runs_and_reorderings(tmp_path):
    scores, actions, contacts = campaign_inputs()
    export.write_campaigns(tmp_path / "a", scores, actions, contacts, AS_OF, ExportConfig())
    order = list(reversed(scores.index))
    export.write_campaigns(tmp_path / "b", scores.loc[order], actions.loc[order], contacts, AS_OF, ExportConfig())
    a = (tmp_path / "a" / "campaigns" / "coupon.csv").read_bytes()
    assert a == (tmp_path / "b" / "campaigns" / "coupon.csv").read_bytes()


def test_customers_missing_from_contacts_count_as_no_email(tmp_path):
    scores, actions, contacts = campaign_inputs()
    result = export.write_campaigns(tmp_path, scores, actions, contacts.iloc[:0], AS_OF, ExportConfig())
    assert result.recipients == {"coupon": 0, "am": 1, "ads": 0}
    assert nonzero(result.excluded) == {"no_email": 11}
    am = read(tmp_path / "campaigns" / "am.csv")
    assert am.loc[0, "country"] == "DE" and am.loc[0, "language"] == "de"  # from the scores frame


def test_neutralise_only_touches_formula_starts():
    df = pd.DataFrame({"first_name": ["=1", "+1", "-1", "@a", "\tx", "\rx", "a=b", None, "Ann"],
                       "customer_id": ["-1"] * 9})
    got = export._neutralise(df, export.NEUTRALISED_COLUMNS)
    assert got["first_name"].tolist()[:7] == ["'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx", "a=b"]
    assert pd.isna(got["first_name"].iloc[7]) and got["first_name"].iloc[8] == "Ann"
    assert got["customer_id"].tolist() == ["-1"] * 9          # ids are never altered
    buf = io.StringIO()
    got.to_csv(buf, index=False)
    assert "\n'=1," in buf.getvalue()


def test_campaign_names_cannot_escape_the_folder(tmp_path):
    scores, actions, contacts = campaign_inputs()
    bad = actions.assign(campaign=actions["campaign"].replace("coupon", "../../evil"))
    with pytest.raises(ValueError, match="not a valid file name"):
        export.write_campaigns(tmp_path, scores, bad, contacts, AS_OF, ExportConfig())
    assert not (tmp_path.parent / "evil.csv").exists()


def test_planned_export_with_profiles_holdout_and_ledger_rows(tmp_path):
    from churnctl import policy
    from churnctl.config import ContactConfig
    from churnctl.rules import CampaignSettings

    scores, actions, contacts = campaign_inputs()
    scores = scores.assign(aov=50.0, value_at_risk=[5.0, 1.0] + [2.0] * 11)
    frame, channels = export.candidates(scores, actions, contacts, ExportConfig())
    settings = {"coupon": CampaignSettings(profile="klaviyo"), "ads": CampaignSettings(profile="google_customer_match")}
    planned = policy.plan(frame, history=None, settings=settings, contact=ContactConfig(holdout_share=0.0),
                          as_of=AS_OF)
    planned.loc[planned["customer_id"].eq("tie_a"), "group"] = "holdout"   # as if drawn
    result = export.write_planned(tmp_path, planned, channels, AS_OF, ExportConfig(), settings=settings,
                                  order_by_value=True)
    coupon = read(tmp_path / "campaigns" / "coupon.csv")
    assert list(coupon.columns[:5]) == ["Email", "First Name", "Last Name", "Phone Number", "Email Marketing Consent"]
    assert coupon["customer_id"].tolist() == ["007", "tie_b", "AbC"]   # value_at_risk 5, 2, 1; tie_a held out
    ads = read(tmp_path / "campaigns" / "ads.csv")
    assert list(ads.columns) == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert ads.loc[0, "Email"] == hashlib.sha256(b"foo@example.com").hexdigest()
    assert result.recipients == {"coupon": 3, "am": 1, "ads": 1} and result.holdout["coupon"] == 1
    assert [f["profile"] for f in result.files] == ["klaviyo", "generic", "google_customer_match"]
    ledger_rows = result.contacts
    assert list(ledger_rows.columns) == ["customer_id", "campaign", "channel", "offer_code", "offer_type",
                                         "offer_value", "offer_cost", "group_name", "send_at_utc", "language",
                                         "template"]
    held = ledger_rows.set_index("customer_id").loc["tie_a"]
    assert held["group_name"] == "holdout" and pd.isna(held["offer_code"])   # holdouts get no code
    assert ledger_rows.loc[ledger_rows["customer_id"].eq("007"), "offer_cost"].item() == 15.0
    assert "email" not in ledger_rows.columns and "first_name" not in ledger_rows.columns


def test_build_contacts_latest_non_blank_value_missing_dates_last_and_file_duplicates():
    orders = pd.DataFrame({
        "customer_id": ["b", "a", "a", "a", "a", "c", None],
        "order_date": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-03", "2026-01-04", None,
                                      "2026-01-05", "2026-01-06"]),
        # a's latest orders: a blank, then a missing date (sorts last) with whitespace only
        "email": ["b@x.com", " first@x.com ", "second@x.com", "  ", "\t", "c@x.com", "nobody@x.com"],
        "first_name": [None, "Ann", None, None, None, " Cy ", "X"],
        "country": pd.Categorical(["DE", "FR", " ", "JP", None, "BR", "DE"]),
    })
    got = export.build_contacts(orders, None, ExportConfig())
    assert list(got.index) == ["a", "b", "c"]  # first appearance in date order
    assert got.loc["a", "email"] == "second@x.com" and got.loc["a", "first_name"] == "Ann"
    assert got.loc["a", "country"] == "JP" and got.loc["c", "first_name"] == "Cy"
    assert pd.isna(got.loc["b", "first_name"])
    customers = pd.DataFrame({"customer_id": ["z", "c", "z"], "email": ["z1@x.com", None, "z2@x.com"],
                              "marketing_consent": [True, None, False]})
    with_file = export.build_contacts(orders, customers, ExportConfig(),
                                      codes=export.customer_codes(orders))
    assert list(with_file.index) == ["c", "z", "a", "b"]  # file rows (last per id, file order), then orders
    assert with_file.loc["z", "email"] == "z2@x.com" and with_file.loc["z", "marketing_consent"] == False  # noqa: E712
    assert with_file.loc["c", "email"] == "c@x.com"  # the file has no value: the orders' one
    pd.testing.assert_frame_equal(with_file, export.build_contacts(orders, customers, ExportConfig()))


def test_sha256_rows_hash_the_joined_text():
    from churnctl.csvtext import sha256_rows

    ids = pd.Series(["007", "Äbc", ""], dtype="str")
    got = sha256_rows(["s|", ids, ":", np.array(["x", "y", "z"], dtype=object), "|2026"])
    want = [hashlib.sha256(f"s|{i}:{c}|2026".encode()).digest() for i, c in zip(ids, "xyz")]
    assert [bytes(row) for row in got] == want
    assert sha256_rows(["a", ids.iloc[:0]]).shape == (0, 32)
    with pytest.raises(ValueError):
        sha256_rows([pd.Series(["a", None], dtype=object)])


def test_campaign_rows_sorted_as_pandas_sorts_them():
    frame = pd.DataFrame({"key": [0.5, np.nan, 0.9, 0.5, 0.5, np.nan],
                          "customer_id": pd.array(["b", "a", "c", "a", "B", None], dtype="str"),
                          "n": range(6)}, index=list("uvwxyz"))
    got = export._sort_rows(frame, ["key", "customer_id"], [False, True])
    assert list(got.index) == ["w", "y", "x", "u", "v", "z"]  # NaN keys last; "B" < "a" < "b"
    want = frame.sort_values(["key", "customer_id"], ascending=[False, True], na_position="last")
    pd.testing.assert_frame_equal(got, want)
