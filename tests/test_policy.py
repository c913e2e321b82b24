"""Contact policy: cool-down, caps, suppression, holdout, budget, send time, templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnctl import policy
from churnctl.config import ContactConfig
from churnctl.errors import ConfigError
from churnctl.rules import CampaignSettings

AS_OF = pd.Timestamp("2026-06-30")
NO_HOLDOUT = ContactConfig(holdout_share=0.0)


def frame(ids, campaign="coupon", **cols) -> pd.DataFrame:
    n = len(ids)
    base = {"customer_id": list(ids), "campaign": [campaign] * n, "channel": ["email"] * n,
            "offer_type": ["percent_off"] * n, "offer_value": [10.0] * n, "offer_min_spend": [np.nan] * n,
            "template": ["t"] * n, "reason": [""] * n, "email": [f"{i}@example.com" for i in ids],
            "language": ["en"] * n, "country": ["US"] * n, "timezone": [None] * n,
            "value_at_risk": [1.0] * n, "aov": [100.0] * n}
    base.update(cols)
    return pd.DataFrame(base)


def history(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["as_of", "customer_id", "campaign", "group_name"]).assign(
        as_of=lambda f: pd.to_datetime(f["as_of"]))


def test_cooldown_across_two_consecutive_nights():
    night1 = policy.plan(frame(["a", "b", "c"]), history=None, settings={}, contact=NO_HOLDOUT,
                         as_of=AS_OF - pd.Timedelta(days=1))
    assert night1["group"].tolist() == ["treated"] * 3
    past = history([(AS_OF - pd.Timedelta(days=1), c, "coupon", g)
                    for c, g in zip(night1["customer_id"], night1["group"])])
    night2 = policy.plan(frame(["a", "b", "d"], campaign="other"), history=past, settings={},
                         contact=NO_HOLDOUT, as_of=AS_OF)
    assert night2.set_index("customer_id")["reason"].to_dict() == {"a": "cooldown", "b": "cooldown", "d": ""}
    assert night2["group"].tolist() == ["", "", "treated"]


def test_cooldown_ends_after_cooldown_days_and_ignores_same_day_rows():
    past = history([(AS_OF - pd.Timedelta(days=14), "a", "x", "treated"),
                    (AS_OF - pd.Timedelta(days=13), "b", "x", "holdout"),   # holdout rests too
                    (AS_OF, "c", "x", "treated")])                          # the run being replaced
    got = policy.plan(frame(["a", "b", "c"]), history=past, settings={}, contact=NO_HOLDOUT, as_of=AS_OF)
    assert got["reason"].tolist() == ["", "cooldown", ""]


def test_campaign_cap_per_group():
    cap = CampaignSettings(cap_max=1, cap_days=60, cap_group="winback")
    settings = {"winback_30": cap, "winback_60": cap}
    past = history([(AS_OF - pd.Timedelta(days=40), "a", "winback_30", "treated"),
                    (AS_OF - pd.Timedelta(days=61), "b", "winback_30", "treated"),
                    (AS_OF - pd.Timedelta(days=40), "c", "other", "treated")])
    got = policy.plan(frame(["a", "b", "c"], campaign="winback_60"), history=past, settings=settings,
                      contact=NO_HOLDOUT, as_of=AS_OF)
    assert got["reason"].tolist() == ["campaign_cap", "", ""]


def test_suppression_by_email_and_id(tmp_path):
    path = tmp_path / "suppress.txt"
    path.write_text("# do not contact\nemail\n  B@Example.com \nc\n\n", encoding="utf-8")
    sup = policy.load_suppression(path)
    assert sup == (frozenset({"b@example.com"}), frozenset({"c"}))
    got = policy.plan(frame(["a", "b", "c"]).assign(reason=["", "", "no_consent"]), history=None, settings={},
                      contact=NO_HOLDOUT, as_of=AS_OF, suppression=sup)
    assert got["reason"].tolist() == ["", "suppressed", "no_consent"]   # consent reason comes first
    with pytest.raises(ConfigError, match="suppression file not found"):
        policy.load_suppression(tmp_path / "missing.txt")


def test_holdout_share_within_two_points_on_10000_and_stable():
    ids = [f"C{i:05d}" for i in range(10_000)]
    contact = ContactConfig(holdout_share=0.10)
    a = policy.plan(frame(ids), history=None, settings={}, contact=contact, as_of=AS_OF)
    share = a["group"].eq("holdout").mean()
    assert 0.08 <= share <= 0.12, share
    again = policy.plan(frame(list(reversed(ids))), history=None, settings={}, contact=contact, as_of=AS_OF)
    assert again.set_index("customer_id")["group"].sort_index().equals(a.set_index("customer_id")["group"].sort_index())
    # same 30-day period -> same split; per-campaign override
    nextday = policy.plan(frame(ids), history=None, settings={}, contact=contact, as_of=AS_OF - pd.Timedelta(days=1))
    assert (nextday["group"] == a["group"]).all()  # 2026-06-29 and 2026-06-30 share a period
    none = policy.plan(frame(ids), history=None, settings={"coupon": CampaignSettings(holdout_share=0.0)},
                       contact=contact, as_of=AS_OF)
    assert none["group"].eq("treated").all()


def test_budget_keeps_highest_value_at_risk_first():
    f = frame(["a", "b", "c", "d", "e"], value_at_risk=[5.0, 50.0, 20.0, 20.0, 1.0], aov=[100.0] * 5)
    got = policy.plan(f, history=None, settings={"coupon": CampaignSettings(max_recipients=3)},
                      contact=NO_HOLDOUT, as_of=AS_OF).set_index("customer_id")
    assert got["group"].to_dict() == {"a": "", "b": "treated", "c": "treated", "d": "treated", "e": ""}
    assert got.loc["a", "reason"] == "over_budget"
    # cost: 10% of aov each; aov 100/300/50 -> costs 10, 30, 5; budget 40 keeps b (30) then stops at c
    f = frame(["a", "b", "c"], value_at_risk=[1.0, 9.0, 5.0], aov=[100.0, 300.0, 50.0])
    got = policy.plan(f, history=None, settings={"coupon": CampaignSettings(max_offer_cost=38.0)},
                      contact=NO_HOLDOUT, as_of=AS_OF).set_index("customer_id")
    assert got["offer_cost"].to_dict() == {"a": 10.0, "b": 30.0, "c": 5.0}
    assert got["group"].to_dict() == {"b": "treated", "c": "treated", "a": ""}


def test_offer_cost_by_type():
    f = frame(["p", "a", "s", "l", "n"], offer_type=["percent_off", "amount_off", "free_shipping",
                                                    "loyalty_points", "none"],
              offer_value=[20.0, 15.0, np.nan, 200.0, np.nan], aov=[80.0] * 5)
    got = policy.offer_cost(f, ContactConfig(free_shipping_cost=7.5, point_value=0.01))
    assert got.tolist() == [16.0, 15.0, 7.5, 2.0, 0.0]


def test_send_time_in_local_morning_and_language_templates():
    f = frame(["tokyo", "berlin", "bad_tz", "none"], timezone=["Asia/Tokyo", "Europe/Berlin", "Mars/Base", None],
              country=["JP", "DE", "FR", "XX"], language=["ja", "de", "fr", "en"])
    settings = {"coupon": CampaignSettings(templates=(("de", "t_de"), ("ja", "t_ja")))}
    got = policy.plan(f, history=None, settings=settings, contact=NO_HOLDOUT, as_of=AS_OF).set_index("customer_id")
    local = {
        "tokyo": got.loc["tokyo", "send_at_utc"].tz_localize("UTC").tz_convert("Asia/Tokyo"),
        "berlin": got.loc["berlin", "send_at_utc"].tz_localize("UTC").tz_convert("Europe/Berlin"),
        "bad_tz": got.loc["bad_tz", "send_at_utc"].tz_localize("UTC").tz_convert("Europe/Paris"),  # from country
        "none": got.loc["none", "send_at_utc"].tz_localize("UTC"),                                 # default UTC
    }
    for name, t in local.items():
        assert t.date() == pd.Timestamp("2026-07-01").date() and 9 <= t.hour < 11, (name, t)
    assert got["template"].to_dict() == {"tokyo": "t_ja", "berlin": "t_de", "bad_tz": "t", "none": "t"}


def test_bad_contact_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"contact.holdout_share must be in \[0, 1\)"):
        policy.check(ContactConfig(holdout_share=1.5))
    with pytest.raises(ConfigError, match="contact.default_timezone: unknown time zone 'Nowhere'"):
        policy.check(ContactConfig(default_timezone="Nowhere"))
    with pytest.raises(ConfigError, match="contact.send_window"):
        policy.check(ContactConfig(send_window=(11, 9)))
