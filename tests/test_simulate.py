"""Multi-night simulation end to end: cool-downs, holdouts, ledger and `churnctl measure`."""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import ledger
from churnctl.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _simulate_module():
    spec = importlib.util.spec_from_file_location("simulate", ROOT / "scripts" / "simulate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = _simulate_module().simulate(out, customers=500, nights=2, start=date(2026, 5, 1), window_days=20,
                                         seed=3)
    return out, result


def test_nights_apply_cooldown_and_holdout(simulated):
    out, result = simulated
    first, second = result["nights"]
    assert first["treated"] > 20 and first["cooldown"] == 0
    assert second["cooldown"] > 0.5 * first["treated"]     # last night's customers rest
    contacts = ledger.contacts(ledger.open_ledger(str(out / "state" / "churnctl.db")))
    assert "2026-05-01" in set(contacts["run_id"]) and set(contacts["run_id"]) <= {"2026-05-01", "2026-05-02"}
    assert contacts["group_name"].eq("holdout").sum() > 0
    # nobody contacted on night 1 is contacted on night 2
    night = {d: set(g["customer_id"]) for d, g in contacts.groupby("run_id")}
    assert not night["2026-05-01"] & night.get("2026-05-02", set())


def test_measure_table_matches_the_ledger(simulated):
    out, result = simulated
    table = result["table"]
    contacts = ledger.contacts(ledger.open_ledger(str(out / "state" / "churnctl.db")))
    per = contacts.groupby(["campaign", "run_id", "group_name"]).size().unstack(fill_value=0)
    runs = table.loc[table["run_id"].ne("all")].set_index(["campaign", "run_id"])
    assert runs["treated"].to_dict() == per["treated"].to_dict()
    assert runs["holdout"].to_dict() == per.get("holdout", per["treated"] * 0).to_dict()
    assert (out / "measure.csv").is_file()
    planted = result["planted_uplift"]
    assert set(planted) == set(contacts.loc[contacts["group_name"].eq("treated"), "campaign"])
    assert sum(v > 0 for v in planted.values()) >= 3         # the planted effect reached the orders


def test_measure_cli(simulated, tmp_path):
    out, _ = simulated
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'o'}\ninputs: {{orders: [{out / 'orders_simulated.csv'}]}}\n"
                   f"contact: {{state: {out / 'state' / 'churnctl.db'}}}\n")
    result = CliRunner().invoke(app, ["measure", "--config", str(cfg), "--campaign", "price_coupon",
                                      "--window-days", "20"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "measure.csv", dtype={"run_id": str})
    assert set(table["campaign"]) == {"price_coupon"} and "all" in set(table["run_id"])
    assert "uplift_repeat_rate" in result.output
    bad = CliRunner().invoke(app, ["measure", "--config", str(cfg), "--campaign", "nope"])
    assert bad.exit_code == 2 and "no contacts recorded for campaign 'nope'" in bad.output
