"""Fixtures: every store test runs on real SQLite and real PostgreSQL.

PostgreSQL: $LEADLEDGER_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/leadledger_test; the database is created
if missing). When it cannot be reached the PostgreSQL cases are skipped, unless
LEADLEDGER_REQUIRE_POSTGRES=1 (CI sets it), which makes them fail instead.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlparse

import pytest

from leadledger import Ledger
from leadledger.keys import KEYS_TABLE
from leadledger.recorders import RECEIPTS_TABLE
from leadledger.store import EVENTS_TABLE, GENESIS_HEX, HEAD_TABLE, SNAPSHOTS_TABLE, TRACKING_TABLE
from leadledger.projections.tables import READ_MODEL_TABLES

PG_URL = os.environ.get(
    "LEADLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/leadledger_test"
)
REQUIRE_PG = os.environ.get("LEADLEDGER_REQUIRE_POSTGRES") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite the scenario golden files from the current code")


def _connect(dbname: str):
    import psycopg

    parts = urlparse(PG_URL)
    return psycopg.connect(host=parts.hostname, port=parts.port or 5432, dbname=dbname,
                           user=parts.username or "postgres", password=parts.password or None,
                           connect_timeout=3, autocommit=True)


_pg_state: dict[str, object] = {}


def postgres_ready() -> str | None:
    """None when PostgreSQL is usable, else why not. Creates and initialises the test database."""
    if "error" in _pg_state:
        return _pg_state["error"]  # type: ignore[return-value]
    dbname = urlparse(PG_URL).path.lstrip("/")
    try:
        with _connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{dbname}"')
        with _connect(dbname) as conn:  # the schema of this code, not of an older run
            for table in (EVENTS_TABLE, TRACKING_TABLE, RECEIPTS_TABLE, SNAPSHOTS_TABLE, HEAD_TABLE,
                          KEYS_TABLE, *READ_MODEL_TABLES):
                conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
            conn.execute("DROP TYPE IF EXISTS stored_event_uuid CASCADE")
        with Ledger.from_url(PG_URL) as ledger:
            ledger.init()
        _pg_state["error"] = None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        _pg_state["error"] = f"{type(exc).__name__}: {exc}"
    return _pg_state["error"]  # type: ignore[return-value]


def reset_postgres() -> None:
    with _connect(urlparse(PG_URL).path.lstrip("/")) as conn:
        tables = ", ".join((EVENTS_TABLE, RECEIPTS_TABLE, SNAPSHOTS_TABLE, KEYS_TABLE, *READ_MODEL_TABLES))
        # The log is append-only (triggers): a superuser's replica mode skips them.
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
        # An upsert: a test may have deleted the head row (tampering) and left it gone.
        conn.execute(f"INSERT INTO {HEAD_TABLE} VALUES (1, 0, decode('{GENESIS_HEX}', 'hex')) ON CONFLICT (id)"
                     " DO UPDATE SET position = excluded.position, sha256 = excluded.sha256")
        conn.execute(f"DELETE FROM {TRACKING_TABLE} WHERE application_name <> '__migration__'")


def wait_for_a_blocked_session(dbname: str, timeout_s: float = 60.0) -> None:
    """Until some session of ``dbname`` waits for a lock (pg_locks: one not granted):
    a race a test sets up is then under way, however slow the machine."""
    import time

    deadline = time.monotonic() + timeout_s
    with _connect("postgres") as conn:  # pg_locks shows every database's (and dbname's settings stay out)
        while not conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                               " WHERE NOT l.granted AND d.datname = %s", (dbname,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"no session of {dbname} came to wait for a lock"
            time.sleep(0.02)


def pg_url_for(dbname: str, user: str = "postgres") -> str:
    parts = urlparse(PG_URL)
    return f"postgresql://{user}@{parts.hostname}:{parts.port or 5432}/{dbname}"


@contextmanager
def scratch_database(name: str, *, create_options: str = "", settings: dict[str, str] | None = None) -> Iterator[str]:
    """A database of its own (roles and restores change ownership and contents;
    a server under test keeps state between tests). ``create_options``: CREATE
    DATABASE's (an encoding, a locale); ``settings``: its defaults (ALTER DATABASE
    ... SET name = value, the value as SQL text)."""
    require_postgres()
    with _connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" {create_options}')
        for setting, value in (settings or {}).items():
            conn.execute(f'ALTER DATABASE "{name}" SET {setting} = {value}')
    try:
        yield pg_url_for(name)
    finally:
        with _connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_postgres() -> None:
    error = postgres_ready()
    if error is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"PostgreSQL is required (LEADLEDGER_REQUIRE_POSTGRES=1) but unusable: {error}")
    pytest.skip(f"PostgreSQL not available: {error}")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    require_postgres()
    reset_postgres()
    return PG_URL


@pytest.fixture
def ledger(store_url: str):
    with Ledger.from_url(store_url) as opened:
        yield opened
