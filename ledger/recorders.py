"""The event store's write path: eventsourcing's recorders, with our own insert.

Two things eventsourcing's stock recorders cannot do for us:

- Receipts (the idempotency records, one per accepted submission, keyed by the
  sender's ``event_id``) live in their own table, not in the aggregates' id
  space, so no sender-chosen id can name a wallet, a contact or a sweep record.
  They are written in the same transaction as the submission's events: pass
  ``receipts=[Receipt, ...]`` to ``Application.save``.
- eventsourcing's PostgreSQL insert sends all events as one composite-array
  parameter in pipeline mode; past ~6,000 events that message deadlocks
  (psycopg issue 685: the server waits in ClientRead while holding the events
  table's EXCLUSIVE lock). Here every parameter is encoded before the lock is
  taken, pages of ``INSERT_PAGE`` rows are sent as plain array parameters,
  outside pipeline mode, and the lock is held only while they are sent.

The events table stays eventsourcing's own: its readers, mappers and
notification log work unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from leadledger.loader import select_by_ids
from leadledger.store import RECEIPTS_TABLE, SQLITE_RECEIPTS_DDL, SQLITE_SNAPSHOTS_DDL



@dataclass(frozen=True)
class Receipt:
    """What the ledger answered a sender's submission: the idempotency record."""

    event_id: UUID
    submission_type: str
    content_sha256: str
    recorded: tuple[str, ...]
    occurred_at: str  # RFC 3339 UTC

    def row(self, *, as_text: bool) -> tuple[Any, ...]:
        return (self.event_id.hex if as_text else self.event_id, self.submission_type,
                self.content_sha256, json.dumps(list(self.recorded)), self.occurred_at)

    @classmethod
    def from_row(cls, row: Any) -> "Receipt":
        event_id = row["event_id"]
        return cls(event_id if isinstance(event_id, UUID) else UUID(event_id),
                   row["submission_type"], row["content_sha256"],
                   tuple(json.loads(row["recorded"])), row["occurred_at"])


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), SQLITE_RECEIPTS_DDL, SQLITE_SNAPSHOTS_DDL]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        receipts: Sequence[Receipt] = kwargs.pop("receipts", ())
        # One executemany (sqlite3's C loop) instead of eventsourcing's execute per
        # row for its lastrowid (~13% of an append). The write transaction holds
        # SQLite's one writer lock from the first row on, and rowids are max+1:
        # the new positions are the last len(stored_events) ones.
        c.executemany(self.insert_events_statement, [
            (s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
             s.originator_version, s.topic, s.state) for s in stored_events])
        ids: list[int] = []
        if stored_events:
            c.execute(f"SELECT max(rowid) FROM {self.events_table_name}")
            last = c.fetchone()[0]
            ids = list(range(last - len(stored_events) + 1, last + 1))
        tracking = kwargs.get("tracking")
        if tracking is not None:
            self._insert_tracking(c, tracking)
        if receipts:
            c.executemany(f"INSERT INTO {RECEIPTS_TABLE} VALUES (?, ?, ?, ?, ?)",
                          [r.row(as_text=True) for r in receipts])
        return ids


def load_receipts(recorder: Any, event_ids: Sequence[UUID], curs: Any = None) -> dict[UUID, Receipt]:
    """The receipts of those event ids that have one, a page of ids per query."""
    receipts = (Receipt.from_row(row) for row in
                select_by_ids(recorder, f"SELECT * FROM {RECEIPTS_TABLE}", "event_id", event_ids, curs=curs))
    return {receipt.event_id: receipt for receipt in receipts}
