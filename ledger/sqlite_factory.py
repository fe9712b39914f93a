"""eventsourcing's SQLite factory, with connections that keep their prepared statements
and checkpoint the write-ahead log less often.

eventsourcing 9.5 opens SQLite connections with ``cached_statements=True``, which
``sqlite3`` reads as a cache of one statement: every statement but the last one
run is parsed and planned again. A single append runs eight different ones
(``LedgerSQLiteRecorder``), so each was prepared afresh: measured on its raw
statements replayed on one connection, 234-252 us a call with a cache of one
against 194-205 us with 128 (the floor, one INSERT and COMMIT, ~125 us).

SQLite copies the write-ahead log back into the database (a checkpoint, with its
fsyncs) once it holds 1,000 pages by default: every ~2 chunks of a bulk append,
rewriting the same index pages each time. At 10,000 pages (~40 MB of log on disk
at most between checkpoints) a 273k-submission append ran at 9.2-9.3k
submissions/s against 8.1-8.6k, alternated; single appends unchanged (462-466 us
against 463-472). Durability is the same: every commit is still synced to the log.

Every connection syncs each commit (``synchronous=FULL``), whatever the build's
default. Everything else is eventsourcing's: the pool, WAL mode, the lock timeout.
"""

from __future__ import annotations

import sqlite3

from eventsourcing.persistence import InterfaceError
from eventsourcing.sqlite import (SQLITE3_DEFAULT_LOCK_TIMEOUT, SQLiteConnection, SQLiteConnectionPool,
                                  SQLiteFactory)

STATEMENT_CACHE = 128  # prepared statements kept per connection (sqlite3's own default)
WAL_AUTOCHECKPOINT_PAGES = 10_000  # log pages before a checkpoint (SQLite's default: 1,000)
# Rows ANALYZE reads per index (SQLite's own advice for PRAGMA optimize: 400-1,000). Unbounded,
# it read every index of the store: 0.6 s at 1M events and growing with the log, in each
# bulk append's end and in the service writer's idle turns; bounded, 2 ms, and the planner
# chose the same plans (benchmarks/reads.py on a 951k-event store, both ways).
ANALYSIS_LIMIT_ROWS = 1000


class StatementCachingPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        try:
            conn = sqlite3.connect(database=self.db_name, uri=True, check_same_thread=False,
                                   isolation_level=None, cached_statements=STATEMENT_CACHE,
                                   timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
        except (sqlite3.Error, TypeError) as exc:
            raise InterfaceError(exc) from exc
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            (mode,) = conn.execute("PRAGMA journal_mode;").fetchone()
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL;")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        # What is acknowledged is durable: each commit synced to the write-ahead log,
        # whatever this SQLite build's default (SQLITE_DEFAULT_WAL_SYNCHRONOUS may be
        # NORMAL, which syncs only at checkpoints: a power cut then takes back commits).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT_ROWS}")
        conn.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=conn, max_age=self.max_age)


class LedgerSQLiteFactory(SQLiteFactory):
    def __init__(self, env: object) -> None:
        super().__init__(env)  # type: ignore[arg-type]
        # The pool opens connections when first asked: replaced before any exists.
        built = self.datastore.pool
        assert not built._pool, "a connection was opened before the pool was replaced"
        self.datastore.pool = StatementCachingPool(db_name=built.db_name, lock_timeout=built.lock_timeout)
        built.close()
