"""Rules: the YAML language, its validation messages, and vectorised first-match-wins apply."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnctl import rules, schema
from churnctl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).resolve().parent / "data" / "rules"


def ruleset(tmp_path: Path, body: str, *, columns=()) -> rules.RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nrules:\n" + body, encoding="utf-8")
    return rules.load(path, columns=columns)


def one_rule(tmp_path: Path, when: str, *, columns=()) -> rules.RuleSet:
    """A single rule 'r' with the given inline `when` mapping and an email action."""
    return ruleset(tmp_path, f"""\
  - name: r
    when: {when}
    action: {{campaign: c, channel: email, offer: {{type: none}}, template: t}}
""", columns=columns)


@pytest.fixture
def scores() -> pd.DataFrame:
    idx = pd.Index(["c1", "c2", "c3", "c4", "c5"], name="customer_id")
    return pd.DataFrame({
        "churn_probability": [0.9, 0.6, 0.59999, 0.3, np.nan],
        "risk_tier": ["high", "high", "medium", "low", "low"],
        "value_tier": ["A", "B", "C", "A", "C"],
        "top_cause": ["price", "logistics", "price", "service", "activity"],
        "days_since_last_order": [30, 59, 60, 90, 5],
        "country": ["DE", "JP", None, "US", "DE"],
    }, index=idx)


def matched(scores: pd.DataFrame, rs: rules.RuleSet) -> list[str]:
    actions = rules.apply(scores, rs)
    return actions.index[actions["campaign"].eq("c").to_numpy()].tolist()


# --- evaluation -------------------------------------------------------------------------
@pytest.mark.parametrize(("when", "expected"), [
    ("{risk_tier: {equals: high}}", ["c1", "c2"]),
    ("{risk_tier: {not_equals: high}}", ["c3", "c4", "c5"]),
    ("{value_tier: {in: [A, C]}}", ["c1", "c3", "c4", "c5"]),
    ("{value_tier: {not_in: [A, C]}}", ["c2"]),
    ("{churn_probability: {min: 0.6}}", ["c1", "c2"]),            # 0.6 itself is in
    ("{churn_probability: {max: 0.6}}", ["c2", "c3", "c4"]),      # NaN never matches
    ("{churn_probability: {min: 0.6, max: 0.6}}", ["c2"]),
    ("{days_since_last_order: {min: 30, max: 59}}", ["c1", "c2"]),  # both bounds inclusive
    ("{days_since_last_order: {min: 60}}", ["c3", "c4"]),
    ("{country: {equals: DE}}", ["c1", "c5"]),
    ("{country: {not_equals: DE}}", ["c2", "c3", "c4"]),          # missing country matches
    ("{country: {in: [DE, JP]}}", ["c1", "c2", "c5"]),
    ("{country: {not_in: [DE, JP]}}", ["c3", "c4"]),              # missing country matches
    ("{country: {is_null: true}}", ["c3"]),
    ("{churn_probability: {is_null: false}}", ["c1", "c2", "c3", "c4"]),
    ("{customer_id: {in: [c2, c4]}}", ["c2", "c4"]),              # the index is a column too
    ("{risk_tier: {in: [high]}, top_cause: {equals: price}}", ["c1"]),  # AND
    ("{}", ["c1", "c2", "c3", "c4", "c5"]),                       # empty when matches all
])
def test_operator_masks(tmp_path, scores, when, expected):
    assert matched(scores, one_rule(tmp_path, when)) == expected


def test_omitted_when_matches_everyone(tmp_path, scores):
    rs = ruleset(tmp_path, "  - name: all\n    action: {campaign: c, channel: email, offer: {type: none}, template: t}\n")
    assert matched(scores, rs) == list(scores.index)


def test_categorical_columns_behave_like_text(tmp_path, scores):
    cat = scores.assign(risk_tier=scores["risk_tier"].astype("category"),
                        country=scores["country"].astype("category"))
    for when in ("{risk_tier: {in: [high]}}", "{risk_tier: {not_equals: medium}}", "{country: {not_in: [DE]}}"):
        rs = one_rule(tmp_path, when)
        assert matched(cat, rs) == matched(scores, rs)


def test_first_match_wins_in_file_order(tmp_path, scores):
    first = """\
  - name: high_price
    when: {risk_tier: {in: [high]}, top_cause: {equals: price}}
    action: {campaign: coupon, channel: email, offer: {type: amount_off, value: 15, min_spend: 100}, template: t1}
"""
    second = """\
  - name: high_any
    when: {risk_tier: {in: [high]}}
    action: {campaign: generic, channel: email, offer: {type: percent_off, value: 10}, template: t2}
"""
    got = rules.apply(scores, ruleset(tmp_path, first + second))
    assert got["campaign"].tolist() == ["coupon", "generic", "no_action", "no_action", "no_action"]
    assert got["rule"].tolist()[:2] == ["high_price", "high_any"]
    assert got.loc["c1", "offer_type"] == "amount_off"
    assert got.loc["c1", "offer_value"] == 15.0 and got.loc["c1", "offer_min_spend"] == 100.0
    assert got.loc["c2", "offer_value"] == 10.0 and np.isnan(got.loc["c2", "offer_min_spend"])
    swapped = rules.apply(scores, ruleset(tmp_path, second + first))
    assert swapped["campaign"].tolist()[:2] == ["generic", "generic"]


def test_no_match_gives_no_action(tmp_path, scores):
    got = rules.apply(scores, one_rule(tmp_path, "{risk_tier: {equals: medium}}"))
    assert list(got.columns) == list(rules.ACTION_COLUMNS)
    assert got.index.equals(scores.index)
    none = got.loc["c1"]
    assert none["campaign"] == "no_action" and none["offer_type"] == "none"
    assert pd.isna(none["rule"]) and pd.isna(none["channel"]) and pd.isna(none["template"])
    assert np.isnan(none["offer_value"]) and np.isnan(none["offer_min_spend"])
    assert got.loc["c3", "rule"] == "r" and got.loc["c3", "channel"] == "email"


def test_explicit_no_action_rule_names_the_rule(tmp_path, scores):
    rs = ruleset(tmp_path, """\
  - name: leave_low_alone
    when: {risk_tier: {in: [low]}}
    action: {campaign: no_action}
  - name: everyone
    action: {campaign: c, channel: email, offer: {type: none}, template: t}
""")
    got = rules.apply(scores, rs)
    assert got["campaign"].tolist() == ["c", "c", "c", "no_action", "no_action"]
    assert got.loc["c4", "rule"] == "leave_low_alone" and pd.isna(got.loc["c4", "channel"])
    assert rs.campaigns == {"c": "email"}


def test_no_rules_everyone_no_action(tmp_path, scores):
    got = rules.apply(scores, ruleset(tmp_path, "  []\n"))
    assert got["campaign"].eq("no_action").all() and len(got) == 5


def test_empty_scores_frame(tmp_path, scores):
    got = rules.apply(scores.iloc[:0], rules.load(None))
    assert got.empty and list(got.columns) == list(rules.ACTION_COLUMNS)


def test_extra_columns_must_be_declared(tmp_path, scores):
    when = "{margin_at_risk: {min: 100}}"
    with pytest.raises(ConfigError, match="unknown column 'margin_at_risk'"):
        one_rule(tmp_path, when)
    rs = one_rule(tmp_path, when, columns=["margin_at_risk"])
    frame = scores.assign(margin_at_risk=[50.0, 100.0, 150.0, np.nan, 0.0])
    assert matched(frame, rs) == ["c2", "c3"]
    with pytest.raises(ConfigError, match=r"rule 'r': column 'margin_at_risk' is not in the scores"):
        rules.apply(scores, rs)


# --- validation -------------------------------------------------------------------------
ERRORS = {
    "unknown_column": "rule 'price_coupon': unknown column 'risk_teir' (did you mean 'risk_tier'?)",
    "unknown_operator": "rule 'price_coupon': unknown operator 'gte' on 'churn_probability' "
                        "(allowed: equals, not_equals, in, not_in, min, max, is_null)",
    "in_not_list": "rule 'price_coupon': 'in' on 'risk_tier' needs a non-empty list, e.g. {in: [high]}",
    "min_not_number": "rule 'price_coupon': 'min' on 'churn_probability' needs a number, got 'high'",
    "unknown_category_value": "rule 'price_coupon': unknown risk_tier value 'hgh' "
                              "(did you mean 'high'? allowed: high, medium, low)",
    "unquoted_country": "rule 'price_coupon': 'country' value False is not text; quote it in YAML (e.g. 'NO')",
    "probability_percent": "rule 'price_coupon': 'churn_probability' min 60 is outside 0..1 "
                           "(probabilities are fractions, e.g. 0.6)",
    "min_above_max": "rule 'price_coupon': 'days_since_last_order' min 90 is greater than max 30",
    "unknown_channel": "rule 'price_coupon': unknown channel 'sms' "
                       "(allowed: email, ads_audience, account_manager, survey)",
    "unknown_offer_type": "rule 'price_coupon': unknown offer type 'bogo' "
                          "(allowed: percent_off, amount_off, free_shipping, loyalty_points, none)",
    "percent_missing_value": "rule 'price_coupon': offer percent_off needs a 'value'",
    "amount_missing_value": "rule 'price_coupon': offer amount_off needs a 'value'",
    "percent_over_100": "rule 'price_coupon': offer percent_off value 150 is outside (0, 100]",
    "missing_action_key": "rule 'price_coupon': missing action key 'template'",
    "unknown_action_key": "rule 'price_coupon': unknown action key 'chanel' (did you mean 'channel'?)",
    "unknown_rule_key": "rule 'price_coupon': unknown key 'wehn' (did you mean 'when'?)",
    "duplicate_name": "rule 'winback': duplicate rule name 'winback'",
    "campaign_two_channels": "rule 'service_medium': campaign 'service' has channel 'survey' but rule "
                             "'service_high' gives it 'account_manager' (one campaign, one channel)",
    "ads_with_offer": "rule 'retarget': ads_audience rules take offer type none "
                      "(an audience file carries no offer codes)",
    "bad_version": "unsupported version 2 (use version: 1)",
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_validation_errors(name):
    path = BAD / f"{name}.yaml"
    with pytest.raises(ConfigError) as info:
        rules.load(path)
    assert str(info.value) == f"{path}: {ERRORS[name]}"
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_every_bad_file_is_tested():
    extra = {"duplicate_key", "python_tag"}  # YAML-level errors, tested below
    assert {p.stem for p in BAD.glob("*.yaml")} == set(ERRORS) | extra


def test_duplicate_yaml_key_is_an_error_not_a_silent_override():
    path = BAD / "duplicate_key.yaml"
    with pytest.raises(ConfigError) as info:
        rules.load(path)
    assert str(info.value) == f"{path}:6: not valid YAML (duplicate key 'risk_tier')"


def test_python_tags_are_refused():
    path = BAD / "python_tag.yaml"
    with pytest.raises(ConfigError, match=r"python_tag.yaml:3: not valid YAML"):
        rules.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        rules.load(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: rules file not found"


@pytest.mark.parametrize(("body", "message"), [
    ("  - when: {}\n    action: {campaign: no_action}\n", "rule #1: missing key 'name'"),
    ("  - name: a\n", "rule 'a': missing key 'action'"),
    ("  - name: a\n    action: {campaign: no_action, channel: email}\n",
     "rule 'a': a no_action rule takes only 'campaign' (remove 'channel')"),
    ("  - name: a\n    action: {campaign: Price Coupon, channel: email, offer: {type: none}, template: t}\n",
     "rule 'a': campaign 'Price Coupon' must be 1-64 lower-case letters"),
    ("  - name: a\n    action: {campaign: ../x, channel: email, offer: {type: none}, template: t}\n",
     "rule 'a': campaign '../x' must be"),
    ("  - name: a\n    when: {risk_tier: {min: 1}}\n    action: {campaign: no_action}\n",
     "rule 'a': 'min' needs a numeric column; 'risk_tier' is text"),
    ("  - name: a\n    when: {risk_tier: high}\n    action: {campaign: no_action}\n",
     "rule 'a': condition on 'risk_tier' must be a mapping of operator to value, e.g. {equals: high}"),
    ("  - name: a\n    when: {risk_tier: {equals: [high]}}\n    action: {campaign: no_action}\n",
     "rule 'a': 'equals' on 'risk_tier' needs one value; use 'in' for a list"),
    ("  - name: a\n    when: {churn_probability: {equals: high}}\n    action: {campaign: no_action}\n",
     "rule 'a': 'churn_probability' value 'high' is not a number"),
    ("  - name: a\n    when: {country: {in: [jp]}}\n    action: {campaign: no_action}\n",
     "rule 'a': country value 'jp' is not an ISO-2 upper-case code"),
    ("  - name: a\n    when: {country: {is_null: yes please}}\n    action: {campaign: no_action}\n",
     "rule 'a': 'is_null' on 'country' needs true or false"),
    ("  - name: a\n    action: {campaign: c, channel: email, offer: {type: free_shipping, value: 5}, template: t}\n",
     "rule 'a': offer free_shipping takes no 'value'"),
    ("  - name: a\n    action: {campaign: c, channel: email, offer: {type: none, min_spend: 5}, template: t}\n",
     "rule 'a': offer none takes no 'min_spend'"),
    ("  - name: a\n    action: {campaign: c, channel: email, offer: {type: amount_off, value: -5}, template: t}\n",
     "rule 'a': offer amount_off value must be a number above 0, got -5"),
])
def test_more_validation_errors(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        ruleset(tmp_path, body)
    assert str(info.value).startswith(f"{tmp_path / 'rules.yaml'}: {message}")


def test_top_level_errors(tmp_path):
    path = tmp_path / "rules.yaml"
    for text, message in [("rules: []\n", "missing key 'version' (use version: 1)"),
                          ("version: 1\n", "missing key 'rules'"),
                          ("version: 1\nrule: []\n", "unknown key 'rule' (did you mean 'rules'?)"),
                          ("- a\n", "top level must be a mapping with keys 'version' and 'rules'"),
                          ("version: 1\nrules: {a: 1}\n", "'rules' must be a list of rules")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            rules.load(path)
        assert str(info.value) == f"{path}: {message}"


# --- packaged defaults ------------------------------------------------------------------
def test_packaged_default_equals_configs_copy():
    packaged = (ROOT / "churnctl" / "defaults" / "rules.yaml").read_bytes()
    assert packaged == (ROOT / "configs" / "rules.yaml").read_bytes()
    default, edited = rules.load(None), rules.load(ROOT / "configs" / "rules.yaml")
    assert default.source == rules.DEFAULT_SOURCE
    assert default.rules == edited.rules and default.sha256 == edited.sha256


def realistic(rows: list[tuple]) -> pd.DataFrame:
    """Scores rows (id, probability, tier, cause, value_tier, days) with the other columns filled."""
    ids, prob, tier, cause, value, days = zip(*rows)
    n = len(rows)
    frame = pd.DataFrame({
        "churn_probability": prob, "risk_tier": tier, "rfm_segment": ["At risk"] * n,
        "value_tier": value, "lifecycle_stage": ["repeat"] * n, "days_since_last_order": days,
        "frequency": [3] * n, "monetary_total": [420.0] * n, "aov": [140.0] * n,
        "country": ["DE"] * n, "channel": ["web"] * n, "top_cause": cause,
        **{c: [0.1] * n for c in schema.CAUSE_COLUMNS}, "reasons": ["no order in a while"] * n,
    }, index=pd.Index(list(ids), name="customer_id"))
    # Value columns (issue 4) follow `reasons`; the default rules do not need them.
    base = list(schema.SCORE_COLUMNS[1:])
    assert list(frame.columns) == base[: base.index("reasons") + 1]
    return frame


def test_default_rules_on_realistic_customers():
    frame = realistic([
        ("price_hi", 0.82, "high", "price", "B", 70),
        ("happy", 0.08, "low", "price", "A", 12),
        ("late_parcels", 0.71, "high", "logistics", "C", 45),
        ("vip_ticket", 0.45, "medium", "service", "A", 20),
        ("small_ticket", 0.66, "high", "service", "C", 40),
        ("returns", 0.5, "medium", "product", "B", 50),
        ("no_opens", 0.7, "high", "engagement", "C", 100),
        ("vip_lapsed", 0.75, "high", "activity", "A", 120),
        ("lapse_35", 0.4, "medium", "activity", "B", 35),
        ("lapse_59", 0.4, "medium", "activity", "B", 59),
        ("lapse_60", 0.4, "medium", "price", "C", 60),       # medium price: no coupon, lapse series
        ("lapse_200", 0.9, "high", "activity", "C", 200),
        ("too_early", 0.61, "high", "activity", "B", 10),
    ])
    got = rules.apply(frame, rules.load(None))["campaign"].to_dict()
    assert got == {
        "price_hi": "price_coupon", "happy": "no_action", "late_parcels": "logistics_express",
        "vip_ticket": "service_account_manager", "small_ticket": "service_survey",
        "returns": "product_feedback", "no_opens": "engagement_retarget", "vip_lapsed": "vip_winback",
        "lapse_35": "winback_30", "lapse_59": "winback_30", "lapse_60": "winback_60",
        "lapse_200": "winback_90", "too_early": "no_action",
    }
    coupon = rules.apply(frame.loc[["price_hi"]], rules.load(None)).iloc[0]
    assert (coupon["channel"], coupon["offer_type"], coupon["offer_value"], coupon["offer_min_spend"]) == \
        ("email", "amount_off", 15.0, 100.0)


def test_no_default_rule_is_shadowed():
    """Over every combination of tier, cause, value and lapse, each default rule wins somewhere."""
    combos = list(itertools.product(schema.RISK_TIERS, schema.FAMILIES, schema.VALUE_TIERS, (10, 45, 75, 120)))
    frame = realistic([(f"c{i}", 0.5, t, c, v, d) for i, (t, c, v, d) in enumerate(combos)])
    rs = rules.load(None)
    winners = set(rules.apply(frame, rs)["rule"].dropna())
    assert winners == {r.name for r in rs.rules}
    campaigns = set(rules.apply(frame, rs)["campaign"])
    assert campaigns == set(rs.campaigns) | {"no_action"}


# --- per-campaign contact settings (issue 5) ----------------------------------------------
def action(extra: str, channel: str = "email", offer: str = "{type: none}", campaign: str = "c",
           name: str = "r") -> str:
    return (f"  - name: {name}\n    action: {{campaign: {campaign}, channel: {channel}, offer: {offer}, "
            f"template: t{extra}}}\n")


def test_campaign_settings_parsed(tmp_path):
    rs = ruleset(tmp_path, action(", profile: mailchimp, cap: {max: 1, days: 60, group: winback}, "
                                  "budget: {max_recipients: 500, max_offer_cost: 2000}, "
                                  "templates: {fr: t_fr, de: t_de}, holdout_share: 0.2")
                 + action("", campaign="c", name="r2"))
    assert rs.settings == {"c": rules.CampaignSettings(
        profile="mailchimp", cap_max=1, cap_days=60, cap_group="winback", max_recipients=500,
        max_offer_cost=2000.0, templates=(("de", "t_de"), ("fr", "t_fr")), holdout_share=0.2)}
    assert ruleset(tmp_path, action("")).settings == {"c": rules.CampaignSettings()}


@pytest.mark.parametrize("extra, channel, message", [
    (", profile: hubspot", "email", "unknown profile 'hubspot'"),
    (", profile: meta_audience", "email", "profile 'meta_audience' is for channel ads_audience, not 'email'"),
    (", profile: mailchimp", "ads_audience", "profile 'mailchimp' is for channel email or survey, not 'ads_audience'"),
    (", cap: {max: 0, days: 60}", "email", "cap 'max' must be a whole number of 1 or more, got 0"),
    (", cap: {max: 1}", "email", "cap 'days' must be a whole number of 1 or more, got None"),
    (", cap: {max: 1, days: 9, every: 2}", "email", "unknown cap key 'every'"),
    (", budget: {max_recipients: -1}", "email", "budget max_recipients must be a whole number of 0 or more"),
    (", budget: {max_offer_cost: lots}", "email", "budget max_offer_cost must be a number of 0 or more"),
    (", budget: {max_cost: 5}", "email", r"unknown budget key 'max_cost' \(did you mean 'max_offer_cost'\?\)"),
    (", templates: {German: t_de}", "email", "templates language 'German' must be a lower-case code"),
    (", holdout_share: 1.0", "email", r"holdout_share must be a number in \[0, 1\), got 1.0"),
    (", holdout: 0.1", "email", r"unknown action key 'holdout' \(did you mean 'holdout_share'\?\)"),
])
def test_campaign_setting_errors(tmp_path, extra, channel, message):
    with pytest.raises(ConfigError, match=message):
        ruleset(tmp_path, action(extra, channel=channel))


def test_rules_of_one_campaign_must_agree_on_settings(tmp_path):
    body = action(", budget: {max_recipients: 5}") + action(", budget: {max_recipients: 6}", name="r2")
    with pytest.raises(ConfigError, match="rule 'r2': campaign 'c' settings .* differ from rule 'r'"):
        ruleset(tmp_path, body)


def test_default_rules_cap_every_winback_in_one_group():
    settings = rules.load(None).settings
    capped = {c for c, s in settings.items() if s.cap_group == "winback"}
    assert capped == {"vip_winback", "winback_30", "winback_60", "winback_90"}
    assert all((settings[c].cap_max, settings[c].cap_days) == (1, 60) for c in capped)
