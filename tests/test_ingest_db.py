"""Orders from a database: a real SQLite file and a real PostgreSQL server, read in chunks."""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import ingest
from churnctl.cli import app
from churnctl.config import IngestConfig
from churnctl.errors import InputError

CFG = IngestConfig(fx_rates={"USD": 1.0, "EUR": 1.5}, chunk_rows=2)  # 2 rows per chunk
ROWS = [
    ("0001", "c1", "2024-01-05 10:00:00", 10.5, "EUR", "completed"),
    ("0002", "c2", "2024-01-06 11:00:00", 20.0, "USD", "refunded"),
    ("0003", None, "2024-01-07 12:00:00", 5.0, "USD", "completed"),
    ("0004", "c1", "not a date", 1.0, "USD", "completed"),
    ("0001", "c1", "2024-01-05 10:00:00", 12.0, "EUR", "refunded"),  # later version of 0001
]


def check(got: ingest.Loaded) -> None:
    s = got.stats[0]
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (5, 2, 2, 1)
    f = got.frame.set_index("order_id")
    assert f.loc["0001", "amount"] == 18.0 and f.loc["0001", "status"] == "refunded"
    assert f.loc["0002", "order_date"] == pd.Timestamp("2024-01-06 11:00")
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [
        [3, "customer_id", "missing value"], [4, "order_date", "unparsable date"]]
    assert s.format == "database"


@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "shop.db"
    con = sqlite3.connect(path)
    con.execute("create table orders (order_id text, customer_id text, order_date text, amount real,"
                " currency text, status text)")
    con.executemany("insert into orders values (?, ?, ?, ?, ?, ?)", ROWS)
    con.commit()
    con.close()
    return path


def test_sqlite_table_and_query(sqlite_db):
    check(ingest.load_orders([f"sqlite:///{sqlite_db}#orders"], CFG))
    got = ingest.load_orders([f"sqlite:///{sqlite_db}#SELECT * FROM orders WHERE currency = 'EUR'"], CFG)
    assert got.frame["amount"].tolist() == [18.0] and got.stats[0].collapsed == 1


def test_sqlite_errors_name_the_source(sqlite_db):
    with pytest.raises(InputError, match=r"shop.db#nope: cannot read \(.*no such table"):
        ingest.load_orders([f"sqlite:///{sqlite_db}#nope"], CFG)
    with pytest.raises(InputError, match=r"add the table or query after '#'"):
        ingest.load_orders([f"sqlite:///{sqlite_db}"], CFG)
    with pytest.raises(InputError, match=r"'orders; drop table x' is neither a table name nor a SELECT"):
        ingest.load_orders([f"sqlite:///{sqlite_db}#orders; drop table x"], CFG)


def test_validate_command_reads_a_database(sqlite_db, tmp_path):
    result = CliRunner().invoke(app, ["validate", "--orders", f"sqlite:///{sqlite_db}#orders",
                                      "--out", str(tmp_path / "v")])
    assert result.exit_code == 2  # 2 of 5 rejected is above the 5 % limit
    assert "shop.db#orders  orders  canonical     5         2         2          1" in result.stdout


# --- PostgreSQL ---------------------------------------------------------------------------
def _pg_url() -> str:
    url = os.environ.get("CHURNCTL_TEST_PG_URL")
    if not url:
        pytest.skip("PostgreSQL tests need CHURNCTL_TEST_PG_URL (set by .ci/run)")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any reason the server is not usable
        pytest.skip(f"PostgreSQL at CHURNCTL_TEST_PG_URL is unreachable: {str(exc).splitlines()[0]}")
    return url


@pytest.fixture
def pg_table():
    import sqlalchemy as sa

    url = _pg_url()
    name = f"churnctl_orders_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create table {name} (order_id text, customer_id text, order_date timestamptz,"
                             " amount numeric(12, 2), currency text, status text, bad_date text)"))
        for oid, cid, when, amount, cur, status in ROWS:
            ts = None if when == "not a date" else datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
            conn.execute(sa.text(f"insert into {name} values (:o, :c, :d, :a, :cur, :s, :b)"),
                         {"o": oid, "c": cid, "d": ts, "a": Decimal(str(amount)), "cur": cur, "s": status,
                          "b": when})
    yield url, name
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop table {name}"))
    engine.dispose()


def test_postgresql_query_in_chunks(pg_table):
    url, name = pg_table
    query = (f"SELECT order_id, customer_id, bad_date AS order_date, amount, currency, status "
             f"FROM {name} ORDER BY ctid")
    got = ingest.load_orders([f"{url}#{query}"], CFG)
    check(got)
    assert "churnctl:***@" in got.stats[0].file or "@" not in got.stats[0].file  # password hidden


def test_postgresql_table_with_native_types(pg_table):
    url, name = pg_table
    got = ingest.load_orders([f"{url}#{name}"], CFG)
    s = got.stats[0]
    # order_date is a timestamptz column: the NULL one is missing, the others parse exactly
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (5, 2, 2, 1)
    f = got.frame.set_index("order_id")
    assert f.loc["0002", "order_date"] == pd.Timestamp("2024-01-06 11:00")
    assert f.loc["0001", "amount"] == 18.0
    assert sorted(got.rejects["reason"]) == ["missing value", "missing value"]


# --- events and customers from a database (issue 3) ----------------------------------------
EVENTS = [
    ("c1", "2024-01-05 10:00:00", "email_open", None, None),
    ("c2", "2024-01-06 11:00:00", "Support_Ticket", "logistics", 1.0),
    ("c2", "2024-01-06 11:00:00", "Support_Ticket", "logistics", 1.0),  # exact repeat: kept once
    ("c3", "2024-01-07 12:00:00", "teleport", None, None),  # unknown event type
    ("c1", "yesterday", "email_click", None, None),  # unparsable date
]
CUSTOMERS = [
    ("00c1", "a@example.com", "de", "yes"),
    ("C1", "b@example.com", "FR", "0"),  # another customer: ids keep their case
    ("00c1", "a2@example.com", "DE", "no"),  # later version of 00c1 wins
    ("c9", None, "IT", "maybe"),  # unparsable boolean
]


def check_events(got: ingest.Loaded) -> None:
    s = got.stats[0]
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (5, 2, 2, 1)
    assert got.frame["event_type"].tolist() == ["email_open", "support_ticket"]
    assert got.frame["event_time"].tolist() == [pd.Timestamp("2024-01-05 10:00"), pd.Timestamp("2024-01-06 11:00")]
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [
        [4, "event_type", "unknown event type"], [5, "event_time", "unparsable date"]]


def check_customers(got: ingest.Loaded) -> None:
    s = got.stats[0]
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (4, 2, 1, 1)
    f = got.frame.set_index("customer_id")
    assert sorted(f.index) == ["00c1", "C1"]
    assert f.loc["00c1", "email"] == "a2@example.com" and f.loc["00c1", "marketing_consent"] == False  # noqa: E712
    assert f.loc["C1", "country"] == "FR"
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [[4, "marketing_consent", "unparsable boolean"]]


@pytest.fixture
def sqlite_more(sqlite_db):
    con = sqlite3.connect(sqlite_db)
    con.execute("create table events (customer_id text, event_time text, event_type text, topic text, value real)")
    con.executemany("insert into events values (?, ?, ?, ?, ?)", EVENTS)
    con.execute("create table customers (customer_id text, email text, country text, marketing_consent text)")
    con.executemany("insert into customers values (?, ?, ?, ?)", CUSTOMERS)
    con.commit()
    con.close()
    return sqlite_db


def test_sqlite_events_and_customers_in_chunks(sqlite_more):
    check_events(ingest.load_events([f"sqlite:///{sqlite_more}#events"], CFG))
    check_customers(ingest.load_customers([f"sqlite:///{sqlite_more}#customers"], CFG))
    got = ingest.load_events([f"sqlite:///{sqlite_more}#SELECT * FROM events WHERE customer_id = 'c2'"], CFG)
    assert (len(got.frame), got.stats[0].collapsed, got.stats[0].format) == (1, 1, "database")


def test_validate_command_reads_events_and_customers_urls(sqlite_more, tmp_path):
    url = f"sqlite:///{sqlite_more}"
    result = CliRunner().invoke(app, ["validate", "--orders", f"{url}#orders", "--events", f"{url}#events",
                                      "--customers", f"{url}#customers", "--out", str(tmp_path / "v")])
    assert result.exit_code == 2  # above the 5 % reject limit, after writing rejects.csv
    assert re.search(r"shop.db#events +events +- +5 +2 +2 +1", result.stdout)
    assert re.search(r"shop.db#customers +customers +- +4 +2 +1 +1", result.stdout)
    rejects = pd.read_csv(tmp_path / "v" / "rejects.csv", dtype=str)
    assert sorted(rejects["reason"]) == sorted(["missing value", "unparsable date", "unknown event type",
                                                "unparsable date", "unparsable boolean"])


@pytest.fixture
def pg_more():
    import sqlalchemy as sa

    url = _pg_url()
    ev, cu = (f"churnctl_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("events", "customers"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create table {ev} (customer_id text, event_time text, event_type text, topic text,"
                             " value double precision)"))
        for row in EVENTS:
            conn.execute(sa.text(f"insert into {ev} values (:c, :t, :e, :p, :v)"),
                         dict(zip("ctepv", row)))
        conn.execute(sa.text(f"create table {cu} (customer_id text, email text, country text, marketing_consent text)"))
        for row in CUSTOMERS:
            conn.execute(sa.text(f"insert into {cu} values (:c, :e, :k, :m)"), dict(zip("cekm", row)))
    yield url, ev, cu
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop table {ev}"))
        conn.execute(sa.text(f"drop table {cu}"))
    engine.dispose()


def test_postgresql_events_and_customers(pg_more):
    url, ev, cu = pg_more
    check_events(ingest.load_events([f"{url}#SELECT * FROM {ev} ORDER BY ctid"], CFG))
    check_customers(ingest.load_customers([f"{url}#SELECT * FROM {cu} ORDER BY ctid"], CFG))
