"""Presets and the mapping language: known answers on the fixture exports of each platform."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import ingest, mappings
from churnctl.cli import app
from churnctl.config import IngestConfig
from churnctl.errors import ConfigError, InputError

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
# Rates exact in binary floating point, so converted amounts compare with ==.
CFG = IngestConfig(fx_rates={"USD": 1.0, "EUR": 1.5, "GBP": 1.25})


def load(*names: str, **kw) -> ingest.Loaded:
    got = ingest.load_orders([EXPORTS / n for n in names], kw.pop("config", CFG), **kw)
    for s in got.stats:
        assert s.read == s.accepted + s.rejected + s.collapsed, s
    return got


def by_id(got: ingest.Loaded) -> pd.DataFrame:
    return got.frame.set_index("order_id")


def test_every_preset_loads_and_documents_its_columns():
    known = mappings.presets()
    assert set(known) == {"canonical", "shopify", "woocommerce", "magento", "amazon", "ebay"}
    for m in known.values():
        assert m.detect and m.description
        text = Path(m.path).read_text()
        if m.name != "canonical":
            assert "Columns read" in text, m.name


def test_shopify_line_items_collapse_to_one_order():
    got = load("shopify_orders.csv")
    f = by_id(got)
    assert got.stats[0].preset == "shopify"
    assert (got.stats[0].read, got.stats[0].accepted, got.stats[0].collapsed) == (4, 3, 1)
    assert f.loc["#1001", "amount"] == 44.90 * 1.5  # the order total, counted once
    assert f.loc["#1001", "items"] == 3.0  # line-item quantities summed
    assert f.loc["#1001", "shipping_cost"] == 4.90 * 1.5
    assert f["status"].to_dict() == {"#1001": "completed", "#1002": "refunded", "#1003": "cancelled"}
    assert f.loc["#1001", "order_date"] == pd.Timestamp("2024-03-05 13:03:11")  # +0100 -> UTC
    assert f.loc["#1001", "country"] == "DE" and f.loc["#1001", "channel"] == "shopify"


def test_customer_key_is_a_pseudonym_of_the_normalised_email():
    f = by_id(load("shopify_orders.csv"))
    key = f.loc["#1001", "customer_id"]
    assert key.startswith("em_") and len(key) == 19
    assert "example" not in "".join(f["customer_id"])
    assert f.loc["#1001", "email"] == "Ann.Lee@Example.com"  # kept for campaign exports
    same = mappings.email_key(pd.Series([" ann.lee@example.COM", ""]))
    assert same.tolist() == [key, ""]


def test_one_person_on_several_channels_is_one_customer():
    got = load("shopify_orders.csv", "woocommerce_orders.csv", "ebay_orders.csv")
    f = by_id(got)
    ann = {f.loc["#1001", "customer_id"], f.loc["812", "customer_id"], f.loc["12-11111-11111", "customer_id"]}
    assert len(ann) == 1
    assert [s.merged_customers for s in got.stats] == [1, 1, 1]
    # no email: the buyer id scoped by channel
    assert f.loc["12-22222-22222", "customer_id"] == "ebay:mo_kay"
    assert f.loc["815", "customer_id"] == "woocommerce:19"


def test_identity_rule_buyer_first():
    got = load("woocommerce_orders.csv", config=IngestConfig(fx_rates=CFG.fx_rates, identity="buyer"))
    assert by_id(got).loc["812", "customer_id"] == "woocommerce:17"


def test_woocommerce_statuses_and_guest_without_email_rejected():
    got = load("woocommerce_orders.csv")
    f = by_id(got)
    assert f["status"].to_dict() == {"812": "completed", "814": "cancelled", "815": "payment_failed"}
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [[3, "customer_id", "missing value"]]
    for col in ("billing_phone", "billing_address_1", "billing_city", "billing_postcode", "billing_last_name"):
        assert got.rejects.loc[0, col] in ("", "[redacted]"), col
    assert got.rejects.loc[0, "billing_city"] == "[redacted]"  # London
    assert got.rejects.loc[0, "customer_email"] == ""  # empty stays empty; PII redacted otherwise
    assert got.rejects.loc[0, "billing_first_name"] == "[redacted]"


def test_magento_currency_from_symbol_and_thousands():
    f = by_id(load("magento_orders.csv"))
    assert f["currency"].to_dict() == {"000000101": "EUR", "000000102": "USD", "000000103": "GBP"}
    assert f.loc["000000101", "amount"] == 1234.56 * 1.5
    assert f.loc["000000101", "order_date"] == pd.Timestamp("2024-03-05 14:03:11")
    assert f["status"].to_dict() == {"000000101": "completed", "000000102": "refunded",
                                     "000000103": "payment_failed"}


def test_amazon_tab_separated_items_summed():
    got = load("amazon_orders.txt")
    f = by_id(got)
    assert got.stats[0].delimiter == "\t"
    assert f.loc["302-1111111-1111111", "amount"] == 40.0 * 1.5
    assert f.loc["302-1111111-1111111", "items"] == 3.0
    assert f.loc["302-1111111-1111111", "discount_amount"] == 2.0 * 1.5
    assert f.loc["026-2222222-2222222", "amount"] == 18.5 * 1.25


def test_ebay_blank_lines_above_and_summary_lines_below():
    got = load("ebay_orders.csv")
    s = got.stats[0]
    assert (s.read, s.accepted, s.rejected, s.collapsed, s.skipped) == (4, 2, 0, 2, 2)
    f = by_id(got)
    assert f.loc["12-22222-22222", "amount"] == 33.0 * 1.25  # the order row's total
    assert f.loc["12-22222-22222", "items"] == 3.0
    assert f.loc["12-11111-11111", "order_date"] == pd.Timestamp("2024-03-12")
    assert f["country"].tolist() == ["DE", "GB"]


def test_overlapping_nightly_exports_keep_latest_version(tmp_path):
    first = (EXPORTS / "shopify_orders.csv").read_text()
    second = first.replace("#1002,bob@example.com,refunded", "#1002,bob@example.com,paid")
    a, b = tmp_path / "2024-03-08.csv", tmp_path / "2024-03-09.csv"
    a.write_text(second)  # night 1: #1002 still paid
    b.write_text(first)   # night 2: #1002 refunded
    got = ingest.load_orders([str(tmp_path / "*.csv")], CFG)  # a glob, expanded by name
    assert [Path(s.file).name for s in got.stats] == ["2024-03-08.csv", "2024-03-09.csv"]
    assert by_id(got).loc["#1002", "status"] == "refunded"
    assert len(got.frame) == 3
    assert [(s.read, s.accepted, s.collapsed) for s in got.stats] == [(4, 0, 4), (4, 3, 1)]


def test_source_forces_a_preset_and_unknown_header_lists_closest(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("Name,Email,Total\n#1,a@b.c,3\n")
    with pytest.raises(InputError) as info:
        ingest.load_orders([path], CFG)
    assert str(info.value).startswith(f"{path}: header matches no preset (pass --source); closest: shopify "
                                      "(missing 'Financial Status', 'Lineitem quantity')")
    with pytest.raises(InputError, match=r"missing required column 'Created at' \(preset shopify\)"):
        ingest.load_orders([path], CFG, source="shopify")
    with pytest.raises(ConfigError, match="unknown preset 'shopfy'"):
        ingest.load_orders([path], CFG, source="shopfy")


def write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(text))
    return path


MINE = """\
    version: 1
    name: mine
    detect: [Bestellnr, Datum, Betrag]
    channel: laden
    decimal: ","
    date_format: "%d.%m.%Y"
    fields:
      order_id: Bestellnr
      order_date: Datum
      amount: Betrag
      currency: {symbol_of: Betrag, default: EUR}
      status: {from: Status, map: {bezahlt: completed, storniert: cancelled}, default: completed}
      email: Mail
      buyer_id: Kunde
      category: {value: books}
"""


def test_own_mapping_file(tmp_path):
    mapping = write_mapping(tmp_path, MINE)
    data = tmp_path / "laden.csv"
    data.write_text("Bestellnr;Datum;Betrag;Status;Mail;Kunde\n"
                    "1;05.04.2024;1.234,50 €;bezahlt;;K9\n"
                    "2;06.04.2024;12,50;STORNIERT;x@y.de;\n"
                    "3;2024-04-07;3,00;bezahlt;;K9\n"
                    "4;07.04.2024;3,00;offen;;K9\n", encoding="utf-8")
    got = ingest.load_orders([data], CFG, source=str(mapping))
    f = by_id(got)
    assert f.loc["1", "amount"] == 1234.5 * 1.5 and f.loc["1", "currency"] == "EUR"
    assert f.loc["1", "order_date"] == pd.Timestamp("2024-04-05")  # day first, as declared
    assert f.loc["1", "customer_id"] == "laden:K9" and f.loc["2", "customer_id"].startswith("em_")
    assert f["status"].tolist() == ["completed", "cancelled"]
    assert f["category"].tolist() == ["books", "books"]
    assert got.rejects[["line", "reason"]].values.tolist() == [[4, "unparsable date"], [5, "unknown status"]]
    # mapping_dirs makes it a named preset, detected from the header
    cfg = IngestConfig(fx_rates=CFG.fx_rates, mapping_dirs=(str(tmp_path),))
    assert ingest.load_orders([data], cfg).stats[0].preset == "mine"


@pytest.mark.parametrize("old, new, message", [
    ("amount: Betrag", "amount: {frm: Betrag}", "'fields.amount.frm' (did you mean 'fields.amount.from'?)"),
    ("amount: Betrag", "amont: Betrag", "unknown field 'fields.amont' (did you mean 'amount'?)"),
    ("bezahlt: completed", "bezahlt: done", "'fields.status.map.bezahlt' 'done' is not a status"),
    ('decimal: ","', 'decimal: ";"', "'decimal' must be '.' or ','"),
    ("name: mine", "name: My Shop", "'name' must be a lower-case word"),
    ("category: {value: books}", "category: {value: books, from: X}",
     "'fields.category' needs exactly one of 'from', 'value', 'symbol_of'"),
    ("  amount: Betrag\n", "", "'fields.amount' is required"),
    ('date_format: "%d.%m.%Y"', 'date_format: "dd.mm.yyyy"', "is not a strptime format"),
    ("email: Mail", "email: {from: Mail, aggregate: sum}", "'sum' is only for amounts"),
    ("version: 1", "version: 1\nimport: x", "unknown key 'import'"),
])
def test_bad_mapping_names_file_key_and_problem(tmp_path, old, new, message):
    text = textwrap.dedent(MINE)
    assert text.count(old) == 1
    path = write_mapping(tmp_path, text.replace(old, new))
    with pytest.raises(ConfigError) as info:
        mappings.load_mapping(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_numbers_are_normalised_only_in_the_declared_style():
    s = pd.Series(["1.234,56", "€12,50", "US$ 12.00", "1,234.56", "12abc", "", "-3,5", "1.2.3"])
    assert mappings.normalise_numbers(s, ",").tolist() == [
        "1234.56", "12.50", "?US$ 12.00", "?1,234.56", "?12abc", "", "-3.5", "?1.2.3"]
    assert mappings.normalise_numbers(s, ".").tolist() == [
        "?1.234,56", "?€12,50", "12.00", "1234.56", "?12abc", "", "?-3,5", "?1.2.3"]
    assert mappings.currency_of(pd.Series(["€1", "US$ 2", "3 GBP", "4", "CA$5"]), {}).tolist() == [
        "EUR", "USD", "GBP", "", "CAD"]


def test_decimal_comma_config_for_a_canonical_semicolon_file():
    path = EXPORTS / "messy_bom_semicolon_decimal_comma.csv"
    plain = ingest.load_orders([path], CFG)
    assert plain.stats[0].rejected_by_reason == {"unparsable number": 3}  # nothing guessed
    got = ingest.load_orders([path], IngestConfig(fx_rates=CFG.fx_rates, decimal=","))
    f = by_id(got)
    assert f["amount"].to_dict() == {"M-1": 1234.56 * 1.5, "M-2": 12.5 * 1.5, "M-4": 7 * 1.5}
    assert f.loc["M-4", "shipping_cost"] == 1.5 * 1.5
    # "12.50" under decimal comma is neither 12.5 nor 1250: rejected, never guessed
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [[4, "amount", "unparsable number"]]


def test_dated_fx_table(tmp_path):
    table = tmp_path / "fx.csv"
    table.write_text("date,currency,rate\n2024-03-01,EUR,1.25\n2024-03-10,EUR,1.5\n")
    cfg = IngestConfig(fx_rates={"USD": 1.0}, fx_table=str(table),
                       fx_history={"GBP": {"2024-03-09": 2.0}})
    got = load("shopify_orders.csv", "woocommerce_orders.csv", config=cfg)
    f = by_id(got)
    assert f.loc["#1001", "amount"] == 44.90 * 1.25   # 2024-03-05: rate of 03-01
    assert f.loc["812", "amount"] == 55.0 * 1.5       # 2024-03-10: rate of 03-10
    early = tmp_path / "early.csv"
    early.write_text("order_id,customer_id,order_date,amount,currency\n"
                     "e1,c1,2024-02-01,10,EUR\ne2,c1,2024-03-09,10,GBP\ne3,c1,2024-03-09,10,CHF\n")
    got = ingest.load_orders([early], cfg)
    assert got.frame["amount"].tolist() == [20.0]
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [
        [2, "currency", "no fx rate for date"], [4, "currency", "unknown currency"]]


def test_validate_command_table_rejects_and_exit_codes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "v"
    result = runner.invoke(app, ["validate", "--orders", str(EXPORTS / "shopify_orders.csv"),
                                 "--orders", str(EXPORTS / "ebay_orders.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:9] == ["file", "kind", "preset", "read", "accepted", "rejected", "collapsed",
                                    "skipped", "customers"]
    assert lines[1].split()[1:10] == ["orders", "shopify", "4", "3", "0", "1", "0", "3",
                                      "2024-03-05..2024-03-08"]
    assert lines[2].split()[2:9] == ["ebay", "4", "2", "0", "2", "2", "2"]
    assert lines[3].split()[:6] == ["total", "8", "5", "0", "3", "2"]
    assert (out / "rejects.csv").exists()
    result = runner.invoke(app, ["validate", "--orders", str(EXPORTS / "woocommerce_orders.csv"),
                                 "--out", str(out)])
    assert result.exit_code == 2
    assert "25.0% of rows rejected (1 of 4, mostly 'missing value')" in result.output
    assert pd.read_csv(out / "rejects.csv")["reason"].tolist() == ["missing value"]
    result = runner.invoke(app, ["validate", "--orders", str(EXPORTS / "woocommerce_orders.csv"),
                                 "--source", "shopify"])
    assert result.exit_code == 2 and "(preset shopify)" in result.output
