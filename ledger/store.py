"""Where the ledger lives: store URLs, the eventsourcing environment, the schema.

``sqlite:///PATH`` (the default is ``sqlite:///leadledger.db`` in the working
directory; ``sqlite:///:memory:`` for a private in-memory store) or
``postgresql://user[:password]@host[:port]/dbname[?sslmode=...]`` (tables in the
default schema; ``postgresql:///dbname`` is the local Unix socket, and the query
may carry libpq's connection parameters of ``LIBPQ_URL_PARAMS``).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlparse

from leadledger.errors import LedgerError
from leadledger.keys import KEYS_DDL, KEYS_TABLE
from leadledger.projections.tables import POSTGRES_READ_MODEL_DDL

DEFAULT_URL = "sqlite:///leadledger.db"
POSTGRES_SCHEMA = "public"  # where leadledger's tables live in a PostgreSQL database
URL_ENV = "LEADLEDGER_DATABASE_URL"
EVENTS_TABLE = "leadledger_events"  # eventsourcing names it after the application (PostgreSQL)
SQLITE_EVENTS_TABLE = "stored_events"  # eventsourcing's name on SQLite
TRACKING_TABLE = "leadledger_tracking"
RECEIPTS_TABLE = "leadledger_receipts"
HEAD_TABLE = "leadledger_chain_head"  # ledger/chain.py: the last position and its hash
CHAIN_COLUMN = "chain_sha256"
GENESIS_HEX = "00" * 32
APPEND_ONLY_TABLES = (EVENTS_TABLE, RECEIPTS_TABLE)

SQLITE_RECEIPTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} ("
    " event_id TEXT PRIMARY KEY, submission_type TEXT NOT NULL,"
    " content_sha256 TEXT NOT NULL, recorded TEXT NOT NULL, occurred_at TEXT NOT NULL,"
    " position INTEGER)"
)
SNAPSHOTS_TABLE = "leadledger_snapshots"
# One row per wallet, its latest snapshot (ledger/snapshots.py): a cache of the
# log, never a source of truth.
SQLITE_SNAPSHOTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} ("
    " originator_id TEXT PRIMARY KEY, originator_version INTEGER NOT NULL, state BLOB NOT NULL)"
)
POSTGRES_SNAPSHOTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} ("
    " originator_id uuid PRIMARY KEY, originator_version bigint NOT NULL, state bytea NOT NULL)"
)
POSTGRES_RECEIPTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} ("
    " event_id uuid PRIMARY KEY, submission_type text NOT NULL,"
    " content_sha256 text NOT NULL, recorded text NOT NULL, occurred_at text NOT NULL,"
    " position bigint)"
)

# --- the chain and the append-only guards (ledger/chain.py, ledger/chain_store.py) ---

SQLITE_HEAD_DDL = (
    f"CREATE TABLE IF NOT EXISTS {HEAD_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " position INTEGER NOT NULL, sha256 BLOB NOT NULL)"
)
# A fresh store starts its chain here; a store with events gets its head from
# the migration, which chains them first (see migrate).
SQLITE_HEAD_START = (
    f"INSERT OR IGNORE INTO {HEAD_TABLE} SELECT 1, 0, zeroblob(32)"
    f" WHERE NOT EXISTS (SELECT 1 FROM {SQLITE_EVENTS_TABLE})"
)


# SQLite has no TRUNCATE: a DELETE without WHERE fires the DELETE trigger.
_SQLITE_GUARDS = [(f"{table}_no_{op.lower()}", table, op)
                  for table in (SQLITE_EVENTS_TABLE, RECEIPTS_TABLE) for op in ("UPDATE", "DELETE")]
SQLITE_TRIGGER_NAMES = [name for name, _, _ in _SQLITE_GUARDS]


def sqlite_trigger_ddl() -> list[str]:
    return [f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
            for name, table, op in _SQLITE_GUARDS]


def sqlite_drop_trigger_ddl() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]


POSTGRES_CHAIN_DDL = (
    f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS {CHAIN_COLUMN} bytea",
    f"ALTER TABLE {RECEIPTS_TABLE} ADD COLUMN IF NOT EXISTS position bigint",
    f"CREATE TABLE IF NOT EXISTS {HEAD_TABLE} ( id integer PRIMARY KEY CHECK (id = 1),"
    " position bigint NOT NULL, sha256 bytea NOT NULL)",
    # decode(), not a '\\x...' literal: a database set to standard_conforming_strings
    # = off reads the backslash as an escape (a NUL byte, and init failed).
    f"INSERT INTO {HEAD_TABLE} SELECT 1, 0, decode('{GENESIS_HEX}', 'hex')"
    f" WHERE NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE}) ON CONFLICT DO NOTHING",
    # One statement-level trigger per table: it fires even when no row matches,
    # and TRUNCATE has no row-level triggers.
    "CREATE OR REPLACE FUNCTION leadledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'leadledger: % is append-only: % refused', TG_TABLE_NAME, TG_OP"
    " USING ERRCODE = 'insufficient_privilege'; END $$",
    *(f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
      f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION leadledger_append_only()"
      for table in APPEND_ONLY_TABLES),
)


# Least privilege on PostgreSQL (``leadledger init --roles``, run as a superuser):
# the owner holds the schema and runs ``init``; the writer appends and maintains
# the read models it owns (a rebuild drops and recreates their indexes) and can
# neither change nor remove an event or a receipt; the auditor only reads.
OWNER_ROLE, WRITER_ROLE, AUDITOR_ROLE = "leadledger_owner", "leadledger_writer", "leadledger_auditor"
OWNED_TABLES = (EVENTS_TABLE, RECEIPTS_TABLE, HEAD_TABLE, SNAPSHOTS_TABLE, TRACKING_TABLE, KEYS_TABLE)


def postgres_roles_sql(dbname: str) -> list[str]:
    from leadledger.projections.tables import READ_MODEL_TABLES

    roles = (OWNER_ROLE, WRITER_ROLE, AUDITOR_ROLE)
    log = ", ".join(OWNED_TABLES)
    everything = ", ".join((*OWNED_TABLES, *READ_MODEL_TABLES))
    database = '"' + dbname.replace('"', '""') + '"'
    return [
        *(f"DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
          for role in roles),
        f"GRANT CONNECT ON DATABASE {database} TO {', '.join(roles)}",
        # The owner's init also creates the read models' tables and indexes,
        # which the writer owns: the owner acts as a member of the writer role.
        f"GRANT {WRITER_ROLE} TO {OWNER_ROLE}",
        f"GRANT USAGE, CREATE ON SCHEMA public TO {OWNER_ROLE}",
        f"GRANT USAGE ON SCHEMA public TO {AUDITOR_ROLE}",
        # CREATE: a rebuild drops the read models' indexes and creates them again
        # after the fill, and a new index asks it. It gives no hold on the log.
        f"GRANT USAGE, CREATE ON SCHEMA public TO {WRITER_ROLE}",
        *(f"ALTER TABLE {table} OWNER TO {OWNER_ROLE}" for table in OWNED_TABLES),
        "ALTER TYPE stored_event_uuid OWNER TO " + OWNER_ROLE,
        "ALTER FUNCTION leadledger_append_only() OWNER TO " + OWNER_ROLE,
        *(f"ALTER TABLE {table} OWNER TO {WRITER_ROLE}" for table in READ_MODEL_TABLES),
        f"REVOKE ALL ON {everything} FROM PUBLIC",
        f"REVOKE ALL ON {log} FROM {WRITER_ROLE}, {AUDITOR_ROLE}",
        f"GRANT SELECT, INSERT ON {EVENTS_TABLE}, {RECEIPTS_TABLE} TO {WRITER_ROLE}",
        # Holding the head's row (SELECT ... FOR UPDATE) is how writers take turns.
        f"GRANT SELECT, UPDATE ON {HEAD_TABLE} TO {WRITER_ROLE}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SNAPSHOTS_TABLE}, {TRACKING_TABLE} TO {WRITER_ROLE}",
        # The service (a writer) checks keys; only the owner creates and revokes them.
        f"GRANT SELECT ON {KEYS_TABLE} TO {WRITER_ROLE}",
        f"GRANT SELECT ON {everything} TO {AUDITOR_ROLE}",
    ]


@dataclass(frozen=True)
class StoreConfig:
    url: str
    kind: str  # "sqlite" or "postgres"
    env: dict[str, str]


def events_table(sqlite: bool) -> str:
    return SQLITE_EVENTS_TABLE if sqlite else EVENTS_TABLE


def position_column(sqlite: bool) -> str:
    """The events table's column holding an event's log position."""
    return "rowid" if sqlite else "notification_id"


def resolve_url(url: str | None) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


# libpq's connection parameters a PostgreSQL URL may carry in its query
# (``?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem``), given to every connection
# the ledger opens. The URL itself holds the user, password, host, port and
# database; the ledger sets its sessions' ``options`` and ``client_encoding``
# itself (postgres_recorder.connection_settings). Any other parameter is refused:
# before 0.6.5 the query was dropped unread, so ``sslmode=require`` connected
# without TLS to a server that has none.
LIBPQ_URL_PARAMS = frozenset({
    "host",  # a Unix socket's directory, for a URL with no host: postgresql:///db?host=/run/postgresql
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslsni",
    "channel_binding", "gssencmode", "krbsrvname", "requirepeer",
    "application_name", "target_session_attrs",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
})
LIBPQ_ENV = "LEADLEDGER_LIBPQ_PARAMS"  # the URL's parameters in the store's environment, as JSON


def redacted(url: str) -> str:
    """``url`` with its password as ***, and the value of any query parameter the
    ledger does not read (``?password=...``), for messages and logs; by hand,
    because a URL worth a message may be one urllib cannot parse (a port past 65535)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme == "sqlite":  # a path has no password
        return url
    # Up to the last "@" at all: a raw "/", "?" or "@" in a password hides more, never less.
    userinfo, at, host_and_path = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = f"{userinfo.split(':', 1)[0]}:***"
    host_and_path, question, query = host_and_path.partition("?")
    if question:
        query = "&".join(pair if pair.partition("=")[0] in LIBPQ_URL_PARAMS else f"{pair.partition('=')[0]}=***"
                         for pair in query.split("&"))
    return f"{scheme}://{userinfo}{at}{host_and_path}{question}{query}"


def libpq_params(env: dict[str, str]) -> dict[str, str]:
    """The libpq parameters a store's URL carried (``LIBPQ_URL_PARAMS``), for every
    connection to it."""
    return json.loads(env.get(LIBPQ_ENV) or "{}")


def server_name(env: dict[str, str]) -> str:
    """Where a PostgreSQL store's server is, in words: host:port, or its socket."""
    host, port = env["POSTGRES_HOST"], env["POSTGRES_PORT"]
    if not host:
        return f"the local socket (port {port})"
    if host.startswith("/"):
        return f"the socket in {host} (port {port})"
    return f"{host}:{port}"


def _url_params(url: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise LedgerError("bad_database_url", f"{redacted(url)!r}: its query is not name=value pairs") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in LIBPQ_URL_PARAMS:
            raise LedgerError("bad_database_url", f"{redacted(url)!r}: the parameter {name[:40]!r} is not one the "
                              f"ledger passes on (it reads {', '.join(sorted(LIBPQ_URL_PARAMS))})")
        if name in params:
            raise LedgerError("bad_database_url", f"{redacted(url)!r}: the parameter {name!r} is given twice")
        params[name] = value
    return params


def config_for(url: str) -> StoreConfig:
    if os.environ.get("POSTGRES_ENABLE_DB_FUNCTIONS"):
        # In eventsourcing 9.5.6 the insert function drops tracking records.
        raise LedgerError("bad_config", "unset POSTGRES_ENABLE_DB_FUNCTIONS: leadledger does not support it")
    if "\x00" in url:
        # libpq cuts a parameter at its NUL (".../ledger\x00x" opened the database "ledger"),
        # and sqlite3 refuses one with a bare ValueError.
        raise LedgerError("bad_database_url", "the URL holds a NUL byte")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise LedgerError("bad_database_url", f"no file in {redacted(url)!r}")
        if path == ":memory:":
            # One shared in-memory database for all the pool's connections.
            path = f"file:leadledger-{uuid.uuid4().hex}?mode=memory&cache=shared"
        return StoreConfig(url, "sqlite", {
            "PERSISTENCE_MODULE": "leadledger.sqlite_factory:LedgerSQLiteFactory",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "CREATE_TABLE": "true",
            "APPLICATION_RECORDER_TOPIC": "leadledger.recorders:LedgerSQLiteRecorder",
        })
    if url.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlparse(url)
            port = parts.port  # parsed on access: a port past 65535, or not a number, raises here
        except ValueError as exc:  # and "Invalid IPv6 URL" from urlparse
            raise LedgerError("bad_database_url", f"{redacted(url)!r}: {exc}") from None
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise LedgerError("bad_database_url", f"{redacted(url)!r} needs a database name")
        params = _url_params(url, parts.query)
        socket = params.pop("host", None)
        if socket is not None and parts.hostname:
            raise LedgerError("bad_database_url", f"{redacted(url)!r} names its host twice (before the path and "
                              "in ?host=)")
        return StoreConfig(url, "postgres", {
            # eventsourcing's factory, its pool handing out the connection used last first.
            "PERSISTENCE_MODULE": "leadledger.postgres_recorder:LedgerPostgresFactory",
            "POSTGRES_DBNAME": dbname,
            # No host: libpq's default, the local Unix socket (as psql without -h).
            "POSTGRES_HOST": parts.hostname or socket or "",
            LIBPQ_ENV: json.dumps(params),
            "POSTGRES_PORT": str(port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_LOCK_TIMEOUT": "10",
            # A streamed `refunds` holds a read transaction while its reader (a pipe,
            # a pager) takes its time: eventsourcing's default of 5 s would cut it.
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "300",
            # schema.sql (``leadledger init``) owns the tables, not eventsourcing.
            "CREATE_TABLE": "false",
            # The tables' schema, for eventsourcing's qualified names; the sessions'
            # search_path is pinned to it (postgres_recorder.session_options), so the
            # unqualified DDL and queries of schema.sql and the read models meet them
            # there whatever the database's search_path.
            "POSTGRES_SCHEMA": POSTGRES_SCHEMA,
            "APPLICATION_RECORDER_TOPIC": "leadledger.postgres_recorder:LedgerPostgresRecorder",
        })
    raise LedgerError(
        "bad_database_url",
        f"{redacted(url)!r} is neither sqlite:///PATH nor postgresql://USER@HOST/DBNAME",
    )


POSTGRES_EVENT_STORE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} ("
    " originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text,"
    " state bytea, notification_id bigserial, chain_sha256 bytea,"
    " PRIMARY KEY (originator_id, originator_version))",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {EVENTS_TABLE}_notification_id_idx"
    f" ON {EVENTS_TABLE} (notification_id ASC)",
    # eventsourcing inserts events through this composite type.
    "DO $$ BEGIN"
    " CREATE TYPE stored_event_uuid AS"
    " (originator_id uuid, originator_version bigint, topic text, state bytea);"
    " EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    # Idempotency receipts, keyed by the sender's event_id (ledger/recorders.py).
    POSTGRES_RECEIPTS_DDL,
    POSTGRES_SNAPSHOTS_DDL,
    f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
    " application_name text, notification_id bigint, PRIMARY KEY (application_name))",
    # Marks the tracking table as single-row (eventsourcing's migration record).
    f"INSERT INTO {TRACKING_TABLE} VALUES ('__migration__', 1) ON CONFLICT DO NOTHING",
    *POSTGRES_CHAIN_DDL,
    # The service's API keys (ledger/keys.py): names, scopes, hashes of secrets.
    KEYS_DDL,
)


def postgres_schema_sql() -> str:
    """The PostgreSQL schema, as ``schema.sql`` holds it and ``init`` applies it."""
    header = (
        "-- leadledger PostgreSQL schema. Applied by `leadledger init` (idempotent).\n"
        "-- Generated by `leadledger init --print-sql`; tests check this file matches.\n"
        "-- In the public schema, whatever the database's search_path (the ledger's sessions pin it):\n"
        f"SET search_path = {POSTGRES_SCHEMA};\n\n"
        "-- Event store (eventsourcing 9.5, CREATE_TABLE=false):\n"
    )
    body = ";\n\n".join(POSTGRES_EVENT_STORE_DDL)
    views = ";\n\n".join(POSTGRES_READ_MODEL_DDL)
    return f"{header}{body};\n\n-- Read models (projections/tables.py):\n{views};\n"
