"""The read models' view on PostgreSQL (its own module: SQLite never imports psycopg)."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder

from leadledger.projections.tables import READ_MODEL_TABLES
from leadledger.projections.mapping import COPY_TARGETS
from leadledger.projections.view import LedgerViewMixin

COPY_FROM_ROWS = 64  # below this, executemany's pipeline is as quick

# pg_advisory_xact_lock key: "leadledger read models" (any constant the app owns).
PROJECTION_LOCK_KEY = 0x6C6C5F7669657773


class PostgresLedgerView(LedgerViewMixin, PostgresTrackingRecorder):
    placeholder = "%s"
    tracking_table = "leadledger_tracking"

    def lock_projection(self, curs: Any) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK_KEY,))

    def clear_tables(self, curs: Any) -> None:
        # TRUNCATE, not DELETE: no dead rows left behind (this server may run with
        # autovacuum off), and readers wait for the commit instead of seeing it empty.
        curs.execute(f"TRUNCATE {', '.join(READ_MODEL_TABLES)}")

    def write_statement(self, curs: Any, statement: str, params: list[tuple[Any, ...]]) -> None:
        # COPY instead of executemany for the inserts: executemany was 45% of a
        # rebuild (py-spy, 85k events). The updates (card_ref, first_seen) stay
        # statements: they follow the inserts of the same batch, in order.
        target = COPY_TARGETS.get(statement)
        if target is None or len(params) < COPY_FROM_ROWS:
            super().write_statement(curs, statement, params)
            return
        with curs.copy(f"COPY {target} FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
