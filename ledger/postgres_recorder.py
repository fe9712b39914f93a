"""The PostgreSQL write path (see ledger/recorders.py for why it is ours).

Its own module so that the SQLite path (the embedded default, and every CLI
start) never imports psycopg: ~0.2 s of a one-line append's start-up.
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

from leadledger.recorders import Receipt
from leadledger.store import RECEIPTS_TABLE

INSERT_PAGE = 2000  # events per INSERT statement: bounded message size


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        # A retry after a lost connection is safe: the transaction either
        # committed (then the retry hits the primary key and the caller re-judges
        # the batch, finding its own submissions as duplicates) or it did not.
        receipts: Sequence[Receipt] = kwargs.get("receipts", ())
        pages = [_columns(stored_events[i:i + INSERT_PAGE])
                 for i in range(0, len(stored_events), INSERT_PAGE)]
        receipt_pages = [_receipt_columns(receipts[i:i + INSERT_PAGE])
                         for i in range(0, len(receipts), INSERT_PAGE)]
        table = f"{self.datastore.schema}.{self.events_table_name}"
        insert_events = (
            f"INSERT INTO {table} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
            " RETURNING notification_id"
        )
        insert_receipts = (
            f"INSERT INTO {RECEIPTS_TABLE} SELECT * FROM"
            " unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[])"
        )
        notification_ids: list[int] = []
        if len(pages) == 1 and len(receipt_pages) <= 1:
            return self._insert_in_one_trip(pages[0], receipt_pages, insert_events, insert_receipts)
        with self.datastore.get_connection() as conn:
            with conn.transaction(), conn.cursor() as curs:
                self._lock_table(curs)
                for columns in pages:
                    curs.execute(insert_events, columns)
                    notification_ids.extend(row["notification_id"] for row in curs.fetchall())
                for columns in receipt_pages:
                    curs.execute(insert_receipts, columns)
                self._notify_channel(curs)
        return notification_ids

    def _insert_in_one_trip(self, columns: tuple[list[Any], ...], receipt_pages: list[tuple[list[Any], ...]],
                            insert_events: str, insert_receipts: str) -> list[int]:
        """A batch of one page: BEGIN, LOCK, both INSERTs, NOTIFY and COMMIT sent as
        one pipeline, answered in one round trip (a single submission's commit was
        six). Pages are bounded (INSERT_PAGE), so the messages stay small: the
        pipeline deadlock of psycopg issue 685 needs one larger than the socket
        buffers."""
        with self.datastore.get_connection() as conn:
            with conn.pipeline():
                with conn.transaction():
                    control = conn.cursor()
                    self._lock_table(control)
                    inserted = conn.cursor()
                    inserted.execute(insert_events, columns)
                    for receipt_columns in receipt_pages:
                        control.execute(insert_receipts, receipt_columns)
                    self._notify_channel(control)
                return [row["notification_id"] for row in inserted.fetchall()]


def _columns(events: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    return ([e.originator_id for e in events], [e.originator_version for e in events],
            [e.topic for e in events], [e.state for e in events])


def _receipt_columns(receipts: Sequence[Receipt]) -> tuple[list[Any], ...]:
    rows = [r.row(as_text=False) for r in receipts]
    return tuple(list(column) for column in zip(*rows))
