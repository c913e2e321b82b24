"""Contact ledger: SQLite and PostgreSQL, schema version, lock, idempotent re-runs, crash safety."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from churnctl import api, ledger
from churnctl.cli import app
from churnctl.config import Config, ScoringConfig
from churnctl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PG_ENV = "CHURNCTL_TEST_PG_URL"


def _pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL ledger tests skipped (.ci/run sets it)")
    try:
        with sa.create_engine(url).connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {PG_ENV} unreachable ({type(exc).__name__}): ledger tests skipped")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path):
    """A ledger location: a SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "state" / "churnctl.db")
        return
    url = _pg_url()
    schema = f"churnctl_t_{secrets.token_hex(5)}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    engine.dispose()


def contact_rows(ids, campaign="coupon", group="treated") -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids, "campaign": campaign, "channel": "email",
                         "offer_code": [f"CC-{i}" for i in ids], "offer_type": "percent_off", "offer_value": 10.0,
                         "offer_cost": 4.5, "group_name": group,
                         "send_at_utc": pd.Timestamp("2026-07-01 07:00"), "language": "en", "template": "t"})


def run_row(day: str, **over) -> dict:
    return {"run_id": day, "as_of": date.fromisoformat(day), "command": "run",
            "started_at": ledger.now_utc(), "finished_at": ledger.now_utc(), "config_hash": "h",
            "model_version": "m", "customers_scored": 10, "treated": 2, "holdout": 0, "excluded": {"cooldown": 1},
            "out_dir": "out/x", "staging_dir": None, **over}


def test_schema_created_versioned_and_rerun_replaces(state):
    led = ledger.open_ledger(state)
    with led.engine.connect() as conn:
        version = conn.execute(sa.select(ledger.meta_table.c.value)).scalar()
    assert version == str(ledger.SCHEMA_VERSION)
    ledger.commit_run(led, run_row("2026-06-29"), contact_rows(["007", "AbC"]))
    ledger.commit_run(led, run_row("2026-06-30"), contact_rows(["007"], group="holdout"))
    ledger.commit_run(led, run_row("2026-06-30"), contact_rows(["x1", "x2"]))      # replaces the run
    led = ledger.open_ledger(state)                                                 # reopen: no upgrade needed
    got = ledger.contacts(led)
    assert got[["run_id", "customer_id", "group_name"]].values.tolist() == [
        ["2026-06-29", "007", "treated"], ["2026-06-29", "AbC", "treated"],
        ["2026-06-30", "x1", "treated"], ["2026-06-30", "x2", "treated"]]
    assert got["offer_cost"].tolist() == [4.5] * 4 and got["send_at_utc"].iloc[0] == pd.Timestamp("2026-07-01 07:00")
    assert len(ledger.runs(led)) == 2
    hist = ledger.history(led, since=date(2026, 6, 1), before=date(2026, 6, 30))
    assert hist["customer_id"].tolist() == ["007", "AbC"]
    assert ledger.unpublished(led) and all(not r["staging_dir"] for r in ledger.unpublished(led))
    ledger.mark_published(led, "2026-06-29")
    assert [r["run_id"] for r in ledger.unpublished(led)] == ["2026-06-30"]


def test_newer_schema_is_refused(state):
    led = ledger.open_ledger(state)
    with led.engine.begin() as conn:
        conn.execute(ledger.meta_table.update().values(value="99"))
    with pytest.raises(ConfigError, match="ledger schema version 99 is newer"):
        ledger.open_ledger(state)


def test_second_lock_fails_and_lock_is_released(state):
    first, second = ledger.open_ledger(state), ledger.open_ledger(state)
    with ledger.locked(first):
        with pytest.raises(ledger.LockError, match="another churnctl run is active"):
            with ledger.locked(second):
                pass
    with ledger.locked(second):   # released on exit
        pass


def test_unreachable_database_is_one_line():
    with pytest.raises(ConfigError, match=r"contact.state postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x\?connect_timeout=2: cannot open the ledger"):
        ledger.open_ledger("postgresql+psycopg://u:secret@127.0.0.1:1/x?connect_timeout=2")


# --- through the API and the CLI ---------------------------------------------------------
FAST = Config(scoring=ScoringConfig(contributions="approx"))  # same outputs contract, quicker
FAST_YAML = "scoring: {contributions: approx}\n"


def _score(small_sample, model, out, state, as_of="2026-06-30"):
    return api.score(small_sample / "orders.csv", events=small_sample / "events.csv",
                     customers=small_sample / "customers.csv", as_of=date.fromisoformat(as_of), out=out,
                     model_path=model, config=FAST, state=state)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _ledger_rows(state: str) -> list:
    return ledger.contacts(ledger.open_ledger(state)).astype(str).values.tolist()


@pytest.mark.parametrize("state", ["sqlite", "postgresql"], indirect=True)
def test_rerun_same_day_is_byte_identical_without_duplicates(small_sample, trained_model, tmp_path, state):
    out = tmp_path / "out"
    first = _score(small_sample, trained_model, out, state)
    files, rows = _files(out), _ledger_rows(state)
    second = _score(small_sample, trained_model, out, state)
    again = _files(out)
    assert set(again) == set(files)
    for name in files:
        if name != "run.json":   # run.json holds start/end times and timings
            assert again[name] == files[name], name
    assert _ledger_rows(state) == rows and len(rows) == sum(first.manifest["counts"]["recipients"].values()) \
        + sum(first.manifest["counts"]["holdout"].values())
    assert second.manifest["counts"] == first.manifest["counts"]
    assert sum(first.manifest["counts"]["holdout"].values()) > 0
    # the next night: customers contacted tonight are in cool-down
    nxt = _score(small_sample, trained_model, tmp_path / "next", state, as_of="2026-07-01")
    assert nxt.manifest["counts"]["excluded"]["cooldown"] >= len({r[2] for r in rows}) * 0.5
    assert not list(out.glob(".staging-*"))


def test_cli_lock_exits_2_with_one_line(small_sample, trained_model, tmp_path):
    state = str(tmp_path / "state.db")
    with ledger.locked(ledger.open_ledger(state)):
        result = CliRunner().invoke(app, [
            "score", "--orders", str(small_sample / "orders.csv"), "--as-of", "2026-06-30",
            "--model", str(trained_model), "--out", str(tmp_path / "out"), "--state", state])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"churnctl: {state}: another churnctl run is active (ledger locked); try again when it has finished")
    assert "Traceback" not in result.output


# "committed" (after the ledger transaction, before any rename) recovers like a half-done publish.
POINTS = ["staged", "publish:campaigns/price_coupon.csv"]


@pytest.fixture(scope="module")
def crash_base(small_sample, trained_model, tmp_path_factory):
    """A previous run (2026-06-29) and, on a copy, the uninterrupted next run (2026-06-30)."""
    base = tmp_path_factory.mktemp("crash")
    _score(small_sample, trained_model, base / "out", str(base / "state.db"), as_of="2026-06-29")
    shutil.copytree(base / "out", base / "ref")
    shutil.copy(base / "state.db", base / "ref.db")
    _score(small_sample, trained_model, base / "ref", str(base / "ref.db"))
    (base / "fast.yaml").write_text(FAST_YAML)
    return base


@pytest.mark.parametrize("point", POINTS)
def test_kill_during_export_leaves_a_whole_run(small_sample, trained_model, tmp_path, crash_base, point):
    """SIGKILL at a named point, then recovery: either the previous run or the new one, whole."""
    out, state = tmp_path / "out", str(tmp_path / "state.db")
    shutil.copytree(crash_base / "out", out)
    shutil.copy(crash_base / "state.db", state)
    before_files, before_rows = _files(out), _ledger_rows(state)
    after_files, after_rows = _files(crash_base / "ref"), _ledger_rows(str(crash_base / "ref.db"))
    assert after_rows != before_rows

    cmd = [sys.executable, "-m", "churnctl", "score", "--orders", str(small_sample / "orders.csv"),
           "--events", str(small_sample / "events.csv"), "--customers", str(small_sample / "customers.csv"),
           "--as-of", "2026-06-30", "--model", str(trained_model), "--out", str(out), "--state", state,
           "--config", str(crash_base / "fast.yaml")]
    proc = subprocess.run(cmd, env={**os.environ, "CHURNCTL_FAULT": point}, capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    assert list(out.glob(".staging-*"))            # the kill did leave work behind
    led = ledger.open_ledger(state)
    with ledger.locked(led):   # a killed process leaves no stale lock
        api.recover(led, out_dirs=[out])
    files, rows = _files(out), _ledger_rows(state)
    expected = (before_files, before_rows) if point == "staged" else (after_files, after_rows)
    assert rows == expected[1]
    assert set(files) == set(expected[0])
    for name, data in files.items():
        if name != "run.json":
            assert data == expected[0][name], name
    manifest = json.loads(files["run.json"])
    assert manifest["as_of"] == ("2026-06-29" if point == "staged" else "2026-06-30")
    assert not list(out.glob(".staging-*"))


def test_default_ledger_lives_beside_the_config_file(tmp_path):
    from churnctl.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("contact: {cooldown_days: 7}\n")
    got = load_config(cfg).contact
    assert (got.state, got.cooldown_days) == (str(tmp_path / "state" / "churnctl.db"), 7)
    cfg.write_text("output_dir: out\n")
    assert load_config(cfg).contact.state == str(tmp_path / "state" / "churnctl.db")
    cfg.write_text("contact: {state: 'postgresql+psycopg://u@h/db'}\n")
    assert load_config(cfg).contact.state == "postgresql+psycopg://u@h/db"
