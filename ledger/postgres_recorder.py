"""The PostgreSQL write path (see ledger/recorders.py for why it is ours).

Its own module so that the SQLite path (the embedded default, and every CLI
start) never imports psycopg: ~0.2 s of a one-line append's start-up.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

from leadledger import chain_store
from leadledger.recorders import Receipt
from leadledger.store import CHAIN_COLUMN, RECEIPTS_TABLE

INSERT_PAGE = 2000  # events per INSERT statement: bounded message size


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        # A retry after a lost connection is safe: the transaction either
        # committed (then the retry finds the head moved past its positions, or
        # hits the primary key, and the caller re-judges the batch, finding its own
        # submissions as duplicates) or it did not.
        receipts: Sequence[Receipt] = kwargs.get("receipts", ())
        table = f"{self.datastore.schema}.{self.events_table_name}"
        insert_events = (
            f"INSERT INTO {table} (notification_id, originator_id, originator_version, topic, state,"
            f" {CHAIN_COLUMN}) SELECT * FROM unnest(%b::bigint[], %b::uuid[], %b::bigint[], %b::text[],"
            " %b::bytea[], %b::bytea[])"
        )
        insert_receipts = (
            f"INSERT INTO {RECEIPTS_TABLE} SELECT * FROM"
            " unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[])"
        )
        read_head, read_last = chain_store.head_statements(sqlite=False)
        with self.datastore.get_connection() as conn:
            # Small batches (one page: a single submission, the service's path) send
            # BEGIN and the head reads as one pipeline, then every write and the
            # COMMIT as another: two round trips. Pages are bounded (INSERT_PAGE), so
            # no message outgrows the socket buffers (the pipeline deadlock of
            # psycopg issue 685); larger batches go page by page.
            small = len(stored_events) <= INSERT_PAGE and len(receipts) <= INSERT_PAGE
            with conn.pipeline() if small else nullcontext():
                with conn.transaction():
                    control = conn.cursor()
                    head_cursor = conn.cursor()
                    head_cursor.execute(read_head)
                    control.execute(read_last)
                    # The links need the head, so they are computed while it is
                    # held: ~5 us per event.
                    batch = chain_store.chain_batch(head_cursor.fetchone(), control.fetchone(), stored_events)
                    for start in range(0, len(stored_events), INSERT_PAGE):
                        end = start + INSERT_PAGE
                        control.execute(insert_events, _columns(stored_events[start:end], batch.positions[start:end],
                                                                batch.links[start:end]))
                    for start in range(0, len(receipts), INSERT_PAGE):
                        control.execute(insert_receipts,
                                        _receipt_columns(receipts[start:start + INSERT_PAGE], batch.first))
                    move_head = batch.head_update(sqlite=False)
                    if move_head:
                        control.execute(*move_head)
                    self._notify_channel(control)
        return list(batch.positions)


def _columns(events: Sequence[StoredEvent], positions: range, links: Sequence[bytes]) -> tuple[list[Any], ...]:
    return (list(positions), [e.originator_id for e in events], [e.originator_version for e in events],
            [e.topic for e in events], [e.state for e in events], list(links))


def _receipt_columns(receipts: Sequence[Receipt], first: int) -> tuple[list[Any], ...]:
    rows = [r.row(as_text=False, first_position=first) for r in receipts]
    return tuple(list(column) for column in zip(*rows))
