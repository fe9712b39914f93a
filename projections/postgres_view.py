"""The read models' view on PostgreSQL (its own module: SQLite never imports psycopg)."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.rows import tuple_row

from leadledger.projections.tables import READ_MODEL_TABLES
from leadledger.projections.copytext import COPY_FROM_ROWS, CopyText
from leadledger.projections.mapping import COPY_TARGETS, FIRST_SEEN, Raw
from leadledger.projections.view import LedgerViewMixin

# FIRST_SEEN for many contacts at once (each contact once: mapping.statements_for).
_FIRST_SEEN_ARRAYS = (
    "UPDATE ll_contacts AS c SET first_seen_at = v.at FROM unnest(%s::text[], %s::text[]) AS v (contact_id, at)"
    " WHERE c.contact_id = v.contact_id AND (c.first_seen_at IS NULL OR c.first_seen_at > v.at)"
)

# pg_advisory_xact_lock key: "leadledger read models" (any constant the app owns).
PROJECTION_LOCK_KEY = 0x6C6C5F7669657773
_READ_GATE = "SELECT pg_advisory_xact_lock_shared(%s)"
# "ll_reads": every read of the read models takes it shared, first; a rebuild takes
# it exclusive before any table lock. A rebuild drops indexes and empties tables
# one after another, and a report's one statement locks its tables in its plan's
# order: the two could each hold a table the other waited for ("deadlock
# detected", and the report failed). Now a read waits for a rebuild before it
# holds anything, and a rebuild for the reads in progress.
READERS_LOCK_KEY = 0x6C6C5F7265616473


class PostgresLedgerView(LedgerViewMixin, PostgresTrackingRecorder):
    placeholder = "%s"
    tracking_table = "leadledger_tracking"

    def lock_projection(self, curs: Any) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK_KEY,))

    def lock_out_readers(self, curs: Any) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (READERS_LOCK_KEY,))

    def begin_read(self, curs: Any) -> None:
        curs.execute(_READ_GATE, (READERS_LOCK_KEY,))

    def clear_tables(self, curs: Any) -> None:
        # TRUNCATE, not DELETE: no dead rows left behind (this server may run with
        # autovacuum off), and readers wait for the commit instead of seeing it empty.
        curs.execute(f"TRUNCATE {', '.join(READ_MODEL_TABLES)}")

    def raw_after(self, position: int, limit: int) -> list[Raw]:
        # Rows as tuples: bigint, text and bytea arrive as int, str and bytes, a Raw
        # as they are (dict rows and their conversion were ~9% of a catch-up's main
        # process, py-spy, in the process that had just appended 273k submissions).
        with self.datastore.transaction(commit=False) as curs:
            curs.row_factory = tuple_row
            curs.execute(*self._raw_after_query(position, limit), binary=True)
            return curs.fetchall()

    def write_statement(self, curs: Any, statement: str, params: list[tuple[Any, ...]] | CopyText) -> None:
        # COPY instead of executemany for the inserts: executemany was 45% of a
        # rebuild (py-spy, 85k events). The updates (card_ref, first_seen) stay
        # statements: they follow the inserts of the same batch, in order; the
        # first-seen times of a long batch go as one UPDATE over two arrays, not
        # an UPDATE each (pipelined): a 430k-event catch-up took 1-2% less time
        # and a sixth less client CPU (2.1-2.2 s against 2.6), alternated.
        if isinstance(params, CopyText):  # rows the worker made COPY text of (UTF-8)
            with curs.copy(f"COPY {COPY_TARGETS[statement]} FROM STDIN") as copy:
                copy.write(params.text if curs.connection.info.encoding == "utf-8" else params.text.decode("utf-8"))
            return
        if statement == FIRST_SEEN and len(params) >= COPY_FROM_ROWS:
            curs.execute(_FIRST_SEEN_ARRAYS, ([contact_id for _, contact_id, _ in params],
                                              [at for at, _, _ in params]))
            return
        target = COPY_TARGETS.get(statement)
        if target is None or len(params) < COPY_FROM_ROWS:
            super().write_statement(curs, statement, params)
            return
        with curs.copy(f"COPY {target} FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
