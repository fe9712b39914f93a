"""The read models' view on PostgreSQL (its own module: SQLite never imports psycopg)."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder

from leadledger.projections.tables import READ_MODEL_TABLES
from leadledger.projections.view import LedgerViewMixin

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
