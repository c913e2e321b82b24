"""Contact ledger: runs and contacts in a database through SQLAlchemy (SQLite or PostgreSQL).

``contact.state`` is a SQLite file path (default ``state/churnctl.db``) or any SQLAlchemy URL
(``postgresql+psycopg://user:pw@host/db``). Tables (created and upgraded automatically; the
schema version is kept in ``churnctl_meta``):

* ``churnctl_runs``: one row per as-of date (``run_id`` is the as-of date, so re-running a date
  replaces it): ``as_of, command, started_at, finished_at, status, config_hash,
  model_version, customers_scored, treated, holdout, excluded`` (JSON counts), ``out_dir``,
  ``staging_dir``, ``published``.
* ``churnctl_contacts``: one row per (run, customer, campaign) that was assigned, treated or
  holdout: ``channel, offer_code, offer_type, offer_value, offer_cost, group_name``
  (``treated``/``holdout``), ``send_at_utc, language, template``. No email, no name.

Commit protocol (see :func:`commit_run` and ``api._publish``): outputs are written to a staging
folder; one transaction replaces the run's rows and marks it ``committed`` with
``published = false``; then the staged files are renamed into place and the run is marked
published. :func:`recover` (called whenever the ledger is opened under the lock) finishes the
publication of a committed run and deletes staging folders no committed run owns, so a crash at
any point ends in the whole previous run or the whole new one.

Locking: SQLite takes an exclusive ``fcntl.flock`` on ``<db>.lock``; PostgreSQL a session
advisory lock. Both are released by the operating system or the server when the process dies,
so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from .errors import ConfigError, InputError

SCHEMA_VERSION = 1
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object

metadata = sa.MetaData()
meta_table = sa.Table(
    "churnctl_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
runs_table = sa.Table(
    "churnctl_runs", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False, index=True),
    sa.Column("command", sa.String(32), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("model_version", sa.String(64)),
    sa.Column("customers_scored", sa.Integer),
    sa.Column("treated", sa.Integer),
    sa.Column("holdout", sa.Integer),
    sa.Column("excluded", sa.Text),
    sa.Column("out_dir", sa.Text),
    sa.Column("staging_dir", sa.Text),
    sa.Column("published", sa.Boolean, nullable=False, default=False),
)
contacts_table = sa.Table(
    "churnctl_contacts", metadata,
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("campaign", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("offer_code", sa.String(64)),
    sa.Column("offer_type", sa.String(32)),
    sa.Column("offer_value", sa.Float),
    sa.Column("offer_cost", sa.Float),
    sa.Column("group_name", sa.String(16), nullable=False),
    sa.Column("send_at_utc", sa.DateTime),
    sa.Column("language", sa.String(16)),
    sa.Column("template", sa.String(128)),
    sa.PrimaryKeyConstraint("run_id", "customer_id", "campaign"),
    sa.Index("ix_churnctl_contacts_customer", "customer_id", "as_of"),
)
CONTACT_COLUMNS = ("customer_id", "campaign", "channel", "offer_code", "offer_type", "offer_value",
                   "offer_cost", "group_name", "send_at_utc", "language", "template")
#: Upgrades: version -> list of SQL statements taking the schema from version - 1 to version.
MIGRATIONS: dict[int, list[str]] = {}


class LockError(InputError):
    """Another churnctl run holds the ledger lock (exit code 2)."""


def url_for(state: str) -> str:
    """Return the SQLAlchemy URL for ``contact.state``: a URL as is, a path as ``sqlite:///``."""
    if "://" in state:
        return state
    return f"sqlite:///{Path(state).as_posix()}"


def describe(state: str) -> str:
    """Return ``state`` without any password, for messages and the manifest."""
    if "://" not in state:
        return state
    try:
        return sa.engine.make_url(state).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never echo an unparsable URL that may hold a secret
        return "<database url>"


@dataclass
class Ledger:
    """An open ledger: engine, where it lives, and (while locked) the lock handle."""

    engine: sa.Engine
    state: str
    _lock: Any = None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"


def open_ledger(state: str) -> Ledger:
    """Return the ledger at ``state`` with its schema created or upgraded to :data:`SCHEMA_VERSION`.

    Raises ConfigError when the URL is unusable or the database cannot be reached.
    """
    if "://" not in state:
        Path(state).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url_for(state))
        with engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise ConfigError(f"{describe(state)}: ledger schema version {version} is newer than this "
                                  f"churnctl supports ({SCHEMA_VERSION}); upgrade churnctl")
            for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(v, []):
                    conn.execute(sa.text(statement))
            if version == 0:
                conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif version < SCHEMA_VERSION:
                conn.execute(meta_table.update().where(meta_table.c.key == "schema_version")
                             .values(value=str(SCHEMA_VERSION)))
    except ConfigError:
        raise
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"contact.state {describe(state)}: cannot open the ledger ({reason})") from None
    return Ledger(engine=engine, state=state)


# --- lock -------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(ledger: Ledger) -> Iterator[Ledger]:
    """Hold the ledger's exclusive lock for the block; raise :class:`LockError` if it is taken."""
    busy = (f"{describe(ledger.state)}: another churnctl run is active (ledger locked); "
            "try again when it has finished")
    if ledger.is_sqlite:
        import fcntl

        path = Path(ledger.engine.url.database or "churnctl.db").with_suffix(".lock")
        handle = open(path, "a+")  # noqa: SIM115 - kept open for the lifetime of the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LockError(busy) from None
        try:
            yield ledger
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
        return
    conn = ledger.engine.connect()
    key = sa.text("select hashtext('churnctl:' || current_schema())")
    try:
        lock_key = conn.execute(key).scalar()
        got = conn.execute(sa.text("select pg_try_advisory_lock(:k)"), {"k": lock_key}).scalar()
        conn.commit()
        if not got:
            raise LockError(busy)
        try:
            yield ledger
        finally:
            conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": lock_key})
            conn.commit()
    finally:
        conn.close()


# --- reads ------------------------------------------------------------------------------
def history(ledger: Ledger, *, since: date, before: date) -> pd.DataFrame:
    """Return contacts with ``since <= as_of < before`` of committed runs (treated and holdout).

    Columns ``as_of`` (datetime64), ``customer_id``, ``campaign``, ``group_name``.
    """
    c, r = contacts_table, runs_table
    query = (sa.select(c.c.as_of, c.c.customer_id, c.c.campaign, c.c.group_name)
             .join(r, r.c.run_id == c.c.run_id)
             .where(r.c.status == "committed", c.c.as_of >= since, c.c.as_of < before))
    with ledger.engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["as_of", "customer_id", "campaign", "group_name"])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    for col in ("customer_id", "campaign", "group_name"):
        frame[col] = frame[col].astype(_TEXT)
    return frame


def contacts(ledger: Ledger, *, campaign: str | None = None) -> pd.DataFrame:
    """Return every contact row of committed runs (``run_id, as_of`` and :data:`CONTACT_COLUMNS`)."""
    c, r = contacts_table, runs_table
    query = (sa.select(c.c.run_id, c.c.as_of, *[c.c[k] for k in CONTACT_COLUMNS])
             .join(r, r.c.run_id == c.c.run_id).where(r.c.status == "committed"))
    if campaign is not None:
        query = query.where(c.c.campaign == campaign)
    with ledger.engine.connect() as conn:
        rows = conn.execute(query.order_by(c.c.as_of, c.c.campaign, c.c.customer_id)).all()
    frame = pd.DataFrame(rows, columns=["run_id", "as_of", *CONTACT_COLUMNS])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["send_at_utc"] = pd.to_datetime(frame["send_at_utc"])
    for col in ("offer_value", "offer_cost"):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    return frame


def runs(ledger: Ledger) -> pd.DataFrame:
    """Return the runs table as a frame (one row per as-of date)."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(runs_table).order_by(runs_table.c.as_of)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in runs_table.columns])


# --- writes -----------------------------------------------------------------------------
def _records(contacts_frame: pd.DataFrame, run_id: str, as_of: date) -> list[dict[str, Any]]:
    frame = contacts_frame.reindex(columns=list(CONTACT_COLUMNS))
    out = frame.astype(object).where(frame.notna(), None)
    send = pd.to_datetime(frame["send_at_utc"])
    out["send_at_utc"] = [None if pd.isna(t) else t.to_pydatetime() for t in send]  # DB driver objects
    records = out.to_dict("records")
    for rec in records:
        rec["run_id"] = run_id
        rec["as_of"] = as_of
    return records


def commit_run(ledger: Ledger, run: dict[str, Any], contacts_frame: pd.DataFrame) -> None:
    """Replace the run ``run['run_id']`` and its contacts in one transaction; mark it committed.

    ``run`` holds the ``runs`` columns; ``published`` is stored false (see :func:`mark_published`).
    """
    as_of = run["as_of"]
    records = _records(contacts_frame, run["run_id"], as_of)
    row = {**run, "status": "committed", "published": False,
           "excluded": json.dumps(run.get("excluded", {}), sort_keys=True)}
    with ledger.engine.begin() as conn:
        conn.execute(contacts_table.delete().where(contacts_table.c.run_id == run["run_id"]))
        conn.execute(runs_table.delete().where(runs_table.c.run_id == run["run_id"]))
        conn.execute(runs_table.insert().values(**row))
        if records:
            conn.execute(contacts_table.insert(), records)


def mark_published(ledger: Ledger, run_id: str) -> None:
    """Record that the staged files of ``run_id`` are in place."""
    with ledger.engine.begin() as conn:
        conn.execute(runs_table.update().where(runs_table.c.run_id == run_id)
                     .values(published=True, staging_dir=None))


def unpublished(ledger: Ledger) -> list[dict[str, Any]]:
    """Return committed runs whose files were not (fully) renamed into place."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(runs_table.c.run_id, runs_table.c.out_dir, runs_table.c.staging_dir)
                            .where(runs_table.c.status == "committed",
                                   runs_table.c.published.is_(False))).mappings().all()
    return [dict(r) for r in rows]


def now_utc() -> datetime:
    """Return the current UTC time as a naive datetime to the second (the ledger stores naive UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
