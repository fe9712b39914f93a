"""The PostgreSQL write path (see ledger/recorders.py for why it is ours).

Its own module so that the SQLite path (the embedded default, and every CLI
start) never imports psycopg: ~0.2 s of a one-line append's start-up.
"""

from __future__ import annotations

import functools
from collections import deque
from contextlib import nullcontext
from typing import Any, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry
from psycopg.errors import NotNullViolation
from psycopg.sql import SQL, Identifier

from leadledger import chain_store
from leadledger.chain import Head
from leadledger.recorders import Receipt
from leadledger.store import CHAIN_COLUMN, HEAD_TABLE, POSTGRES_SCHEMA, RECEIPTS_TABLE, libpq_params

INSERT_PAGE = 2000  # events per INSERT statement: bounded message size
SMALL_ROWS = 8  # up to this many events and receipts, a writer's batch is one statement of scalars
INSERT_RECEIPTS = (f"INSERT INTO {RECEIPTS_TABLE} SELECT * FROM"
                   " unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[])")


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    # The head this recorder's last insert left (None before one): a writer that
    # still holds it can chain its next batch onto it without reading it.
    head_after: Head | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._onto_statements: dict[tuple[int, int], str] = {}

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        # A retry after a lost connection is safe: the transaction either
        # committed (then the retry finds the head moved past its positions, or
        # hits the primary key, and the caller re-judges the batch, finding its own
        # submissions as duplicates) or it did not.
        receipts: Sequence[Receipt] = kwargs.get("receipts", ())
        expect: Head | None = kwargs.get("expect_head")
        absent: Sequence[Any] = kwargs.get("expect_absent", ())
        unreceipted: Sequence[Any] = kwargs.get("expect_no_receipts", ())
        self.head_after = None
        small = len(stored_events) <= INSERT_PAGE and len(receipts) <= INSERT_PAGE
        few = 0 < len(stored_events) <= SMALL_ROWS and len(receipts) <= SMALL_ROWS
        with self.datastore.get_connection() as conn:
            if expect is not None and few:
                batch = self._insert_onto(conn, expect, absent, unreceipted, stored_events, receipts)
            else:
                batch = self._insert_at_head(conn, small, stored_events, receipts,
                                             expect=expect, absent=absent, unreceipted=unreceipted)
        if batch.links:
            self.head_after = batch.head
        return list(batch.positions)

    def _insert_onto(self, conn: Any, expect: Head, absent: Sequence[Any], unreceipted: Sequence[Any],
                     stored_events: Sequence[StoredEvent], receipts: Sequence[Receipt]) -> chain_store.Chained:
        """The writer's fast path for a few events (a single submission: the
        service's path), chained onto the head it expects: the head's move, the
        events, the receipts and the notification in ONE statement, committed on
        its own (the connection is in autocommit): one message, one round trip, no
        transaction block (a pipeline of BEGIN, the statements and COMMIT cost
        ~10% more client CPU a single append). The events' insert fails (NOT NULL
        on the position), and with it the whole statement, when the head is no
        longer ``expect`` (another writer committed, or holds it and commits
        first: the UPDATE waits for its lock, then finds the row changed), when
        the log no longer ends at the head, when an id of ``absent`` (taken as new
        by the writer) has events, or an event id of ``unreceipted`` (refused by a
        rule on warm state) has a receipt."""
        batch = chain_store.chain_onto(expect, stored_events)
        head = batch.head
        values: list[Any] = [head.position, head.sha256, expect.position, expect.sha256, expect.position,
                             _uuid_array(absent), _uuid_array(unreceipted)]
        for event, position, chain_link in zip(stored_events, batch.positions, batch.links):
            values += (position, event.originator_id, event.originator_version, event.topic, event.state,
                       chain_link)
        for receipt in receipts:
            values += receipt.row(as_text=False, first_position=batch.first)
        values.append(self.channel_name)
        try:
            conn.execute(self._onto_statement(len(stored_events), len(receipts)), values, prepare=True)
        except NotNullViolation as exc:
            raise chain_store.StaleWrite(STALE) from exc
        return batch

    @functools.cached_property
    def _notify(self) -> str:
        # Composed once: psycopg's SQL.format was ~5% of a single append.
        return SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_string(None)

    def _notify_channel(self, curs: Any) -> None:
        curs.execute(self._notify)

    def _onto_statement(self, events: int, receipts: int) -> str:
        """``_insert_onto``'s statement for ``events`` events and ``receipts``
        receipts (each at most SMALL_ROWS), one scalar parameter per value:
        psycopg's array dumpers cost ~3 us a list, ~30 us of a single append. The
        text is the same for the same counts: prepared once per connection."""
        assert 0 < events <= SMALL_ROWS and receipts <= SMALL_ROWS, (events, receipts)
        found = self._onto_statements.get((events, receipts))
        if found is None:
            table = f"{self.datastore.schema}.{self.events_table_name}"
            # Data-modifying WITH clauses run once each, whether or not the final
            # SELECT reads them, in the statement's one transaction: when the
            # events' insert fails, the head's move and the receipts' insert are
            # undone with it, and the notification is never sent.
            found = (
                f"WITH moved AS (UPDATE {HEAD_TABLE} SET position = %b, sha256 = %b"
                " WHERE id = 1 AND position = %b AND sha256 = %b RETURNING 1),"
                f" events AS (INSERT INTO {table} (notification_id, originator_id, originator_version, topic,"
                f" state, {CHAIN_COLUMN}) SELECT CASE WHEN EXISTS (SELECT FROM moved)"
                # The log still ends at the head (a cut tail is refused, as
                # chain_store.checked_head does on the other path).
                f" AND (SELECT max(notification_id) FROM {table}) = %b AND NOT EXISTS"
                # Every aggregate has a first version: primary-key lookups (a
                # generic plan of "= ANY" scanned the table).
                f" (SELECT FROM unnest(%s::uuid[]) a(id) JOIN {table} e ON e.originator_id = a.id"
                " AND e.originator_version = 1) AND NOT EXISTS (SELECT FROM unnest(%s::uuid[]) r(id)"
                f" JOIN {RECEIPTS_TABLE} k ON k.event_id = r.id) THEN n END, o, v, t, s, c"
                f" FROM {_scalar_rows(events, EVENT_CASTS)} AS u(n, o, v, t, s, c))"
                + (f", receipts AS (INSERT INTO {RECEIPTS_TABLE} SELECT * FROM"
                   f" {_scalar_rows(receipts, RECEIPT_CASTS)} AS r)" if receipts else "")
                + " SELECT pg_notify(%s, '')"
            )
            self._onto_statements[(events, receipts)] = found
        return found

    def _insert_at_head(self, conn: Any, small: bool, stored_events: Sequence[StoredEvent],
                        receipts: Sequence[Receipt], *, expect: Head | None = None, absent: Sequence[Any] = (),
                        unreceipted: Sequence[Any] = ()) -> chain_store.Chained:
        """The head read and held (FOR UPDATE), then the rows. A writer that judged
        on what it knew (``expect``: a batch of more than SMALL_ROWS events or
        receipts) has the same checks as ``_insert_onto`` made here, under the
        head's lock: one more round trip than one statement, nothing next to a
        batch's rows (arrays in one statement measured no faster in bulk)."""
        table = f"{self.datastore.schema}.{self.events_table_name}"
        insert_events = (
            f"INSERT INTO {table} (notification_id, originator_id, originator_version, topic, state,"
            f" {CHAIN_COLUMN}) SELECT * FROM unnest(%b::bigint[], %b::uuid[], %b::bigint[], %b::text[],"
            " %b::bytea[], %b::bytea[])"
        )
        read_head, read_last = chain_store.head_statements(sqlite=False)
        # Small batches (one page: a single submission, the service's path) send
        # BEGIN and the head reads as one pipeline, then every write and the
        # COMMIT as another: two round trips. Pages are bounded (INSERT_PAGE), so
        # no message outgrows the socket buffers (the pipeline deadlock of
        # psycopg issue 685); larger batches go page by page.
        with conn.pipeline() if small else nullcontext():
            with conn.transaction():
                control = conn.cursor()
                head_cursor = conn.cursor()
                head_cursor.execute(read_head)
                control.execute(read_last)
                # The links need the head, so they are computed while it is
                # held: ~5 us per event.
                head_row = head_cursor.fetchone()
                batch = chain_store.chain_batch(head_row, control.fetchone(), stored_events)
                if expect is not None:
                    self._check_guesses(control, head_row, expect, absent, unreceipted)
                for start in range(0, len(stored_events), INSERT_PAGE):
                    end = start + INSERT_PAGE
                    control.execute(insert_events, _columns(stored_events[start:end], batch.positions[start:end],
                                                            batch.links[start:end]))
                for start in range(0, len(receipts), INSERT_PAGE):
                    control.execute(INSERT_RECEIPTS, _receipt_columns(receipts[start:start + INSERT_PAGE], batch.first))
                move_head = batch.head_update(sqlite=False)
                if move_head:
                    control.execute(*move_head)
                self._notify_channel(control)
        return batch

    def _check_guesses(self, cursor: Any, head_row: Any, expect: Head, absent: Sequence[Any],
                       unreceipted: Sequence[Any]) -> None:
        chain_store.expected_head(head_row, expect)  # the log's end was checked by chain_batch
        table = f"{self.datastore.schema}.{self.events_table_name}"
        cursor.execute(f"SELECT EXISTS (SELECT FROM unnest(%b::uuid[]) a(id) JOIN {table} e ON e.originator_id = a.id"
                       " AND e.originator_version = 1) OR EXISTS (SELECT FROM unnest(%b::uuid[]) r(id)"
                       f" JOIN {RECEIPTS_TABLE} k ON k.event_id = r.id) AS stale", (list(absent), list(unreceipted)))
        if cursor.fetchone()["stale"]:
            raise chain_store.StaleWrite(STALE)


class _MostRecentFirst(deque):  # type: ignore[type-arg]
    """A pool's idle connections, the one returned last handed out first.

    psycopg_pool takes connections from the left and returns them to the right:
    each call of a single-threaded writer got the connection idle the longest, so
    six server processes took turns (their caches and prepared statements cold
    in turn). Returned to the left, the writer's connection is the one it gets
    next. A single submission per call on a warm PostgreSQL Ledger: 660-740 us
    against 900-950 (three alternations, 600 calls each). Under concurrent use
    the others are handed out as before. psycopg_pool has no option for this; its
    shrinking after ``max_idle`` also takes from the left, so it closes the
    connection used last (reopened on the next call): once per ``max_idle``
    (10 minutes) at most, and only with more connections open than the pool's size."""

    def append(self, conn: Any) -> None:
        self.appendleft(conn)


class LedgerPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, its pool serving the connection used
    last first (as ledger/sqlite_factory.py replaces the SQLite pool where it is
    built), its sessions at READ COMMITTED and never acknowledging a commit before
    it is flushed: every datastore of a PostgreSQL store gets them, whoever opens it."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        serve_most_recent_first(self.datastore)
        session_options(self.datastore, flush_commits=env.get(FLUSH_COMMITS_ENV) == "1")
        # The URL's own libpq parameters (?sslmode=..., store.LIBPQ_URL_PARAMS).
        self.datastore.pool.kwargs.update(libpq_params(env))


# The writers' and read models' transactions are serialised by locks (the chain
# head's row, the read models' advisory lock) and rely on READ COMMITTED: a
# transaction that waited for a lock then sees what the holder committed. Under a
# database default of REPEATABLE READ or SERIALIZABLE (ALTER DATABASE ... SET
# default_transaction_isolation) its snapshot predates the wait, and a reader's
# catch-up beside a rebuild failed with "could not serialize access". Set in the
# connection's startup packet (libpq's options): no round trip.
READ_COMMITTED_OPTION = r"-c default_transaction_isolation=read\ committed"
# What is acknowledged is durable: under a database default of synchronous_commit
# = off, a commit returns before its WAL is flushed, and a crash loses it. Ledger
# opens a store after reading the setting (application.probe_postgres) and, only
# then, has its sessions flush locally ("local"); a stronger setting (on,
# remote_write, remote_apply: every one flushes locally first) is left as it is.
FLUSH_COMMITS_ENV = "LEADLEDGER_FLUSH_COMMITS"
FLUSH_COMMITS_OPTION = "-c synchronous_commit=local"


# schema.sql's DDL and the ledger's own queries name tables without a schema, and
# eventsourcing's name them in the datastore's (store.POSTGRES_SCHEMA): under a
# database search_path that puts another schema first, `init` created the tables
# there and eventsourcing then found none. Every session looks in that one schema.
SEARCH_PATH_OPTION = f"-c search_path={POSTGRES_SCHEMA}"


# A database (or role) default statement_timeout cancelled the ledger's own long
# statements part-way: a rebuild (one transaction of large COPYs) never finished
# under 200 ms, and a bulk append's statistics refresh failed after its commits;
# each would fail the same way again. A default lock_timeout turned the ledger's
# own coordination into failures: a report waiting for a rebuild's commit (the
# read-model locks) failed instead of answering after it. The ledger's work is
# bounded by its own limits (chunks, MAX_ATOMIC_BATCH), and what it waits for is
# another of its transactions; its sessions run with PostgreSQL's defaults for both.
OWN_TIMEOUTS_OPTION = "-c statement_timeout=0 -c lock_timeout=0"


# The ledger's text is any Unicode (submissions.check_identifier), and psycopg
# encodes and decodes it in the session's client_encoding: under PGCLIENTENCODING=
# LATIN1 (or a database default of it) a `李` id was recorded (the state is bytes),
# then every read after it failed in the read models' catch-up with an internal
# UnicodeEncodeError. libpq's own keyword, which beats both (an `options` -c
# setting would not: the startup packet's client_encoding is applied after it).
CLIENT_ENCODING = "UTF8"


def connection_settings(*, flush_commits: bool = False) -> dict[str, str]:
    """libpq's parameters for every session of the ledger (sent at connection start,
    no round trip): its ``options`` and its client_encoding."""
    options = " ".join(filter(None, (READ_COMMITTED_OPTION, SEARCH_PATH_OPTION, OWN_TIMEOUTS_OPTION,
                                     FLUSH_COMMITS_OPTION if flush_commits else None)))
    return {"options": options, "client_encoding": CLIENT_ENCODING}


def session_options(datastore: Any, *, flush_commits: bool) -> None:
    """Every connection of ``datastore``'s pool runs its transactions at READ
    COMMITTED, looks for tables in the ledger's schema, has neither a statement nor
    a lock timeout, speaks UTF-8 and, with
    ``flush_commits``, flushes each commit before acknowledging it."""
    assert datastore.schema == POSTGRES_SCHEMA, datastore.schema
    kwargs = datastore.pool.kwargs
    ours = connection_settings(flush_commits=flush_commits)
    kwargs.update(ours, options=" ".join(filter(None, (kwargs.get("options"), ours["options"]))))


def serve_most_recent_first(datastore: Any) -> None:
    """Make ``datastore``'s pool hand out its most recently used connection first.
    A psycopg_pool laid out otherwise is left as it is: slower single calls, not an
    error (tests/test_hot_path.py notices)."""
    pool = getattr(datastore, "pool", None)
    lock, idle = getattr(pool, "_lock", None), getattr(pool, "_pool", None)
    if lock is None or type(idle) is not deque:
        return
    with lock:  # psycopg_pool's own lock: its workers add connections under it
        pool._pool = _MostRecentFirst(pool._pool)


STALE = ("the store no longer bears out what the writer judged on: the chain head moved, or the log no"
         " longer ends at it, or an id taken as new has events, or a refused submission has a receipt")


def _columns(events: Sequence[StoredEvent], positions: range, links: Sequence[bytes]) -> tuple[list[Any], ...]:
    return (list(positions), [e.originator_id for e in events], [e.originator_version for e in events],
            [e.topic for e in events], [e.state for e in events], list(links))


def _receipt_columns(receipts: Sequence[Receipt], first: int) -> tuple[list[Any], ...]:
    rows = [r.row(as_text=False, first_position=first) for r in receipts]
    return tuple(list(column) for column in zip(*rows))


@functools.lru_cache(maxsize=64)
def _scalar_rows(count: int, casts: tuple[str, ...]) -> str:
    one = "(" + ", ".join(f"%b::{cast}" for cast in casts) + ")"
    return "(VALUES " + ", ".join([one] * count) + ")"


EVENT_CASTS = ("bigint", "uuid", "bigint", "text", "bytea", "bytea")
RECEIPT_CASTS = ("uuid", "text", "text", "text", "text", "bigint")


def _uuid_array(ids: Sequence[Any]) -> str:
    """An array of UUIDs as PostgreSQL's text literal (their text has nothing to escape)."""
    return "{" + ",".join(str(i) for i in ids) + "}"
