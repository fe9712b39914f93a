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
  table's EXCLUSIVE lock). Here pages of ``INSERT_PAGE`` rows are sent as
  plain array parameters (ledger/postgres_recorder.py).
- The hash chain (ledger/chain.py): every batch is chained onto the head
  while the writer holds it (instead of eventsourcing's table lock), and
  written with explicit positions (head + 1, ...), so positions run without
  gaps on both stores.

The events table stays eventsourcing's own (plus the ``chain_sha256`` column):
its readers, mappers and notification log work unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteTransaction

from leadledger import chain_store
from leadledger.chain import Head
from leadledger.keys import KEYS_DDL
from leadledger.loader import any_created, select_by_ids
from leadledger.store import (CHAIN_COLUMN, RECEIPTS_TABLE, SQLITE_EVENTS_TABLE, SQLITE_HEAD_DDL,
                              SQLITE_RECEIPTS_DDL, SQLITE_SNAPSHOTS_DDL)


@dataclass(frozen=True)
class Receipt:
    """What the ledger answered a sender's submission: the idempotency record."""

    event_id: UUID
    submission_type: str
    content_sha256: str
    recorded: tuple[str, ...]
    occurred_at: str  # RFC 3339 UTC
    # Where the submission's first event lies in the log: written as an index into
    # the batch's events (the writer adds the batch's first position), read back as
    # a position. Duplicates are answered from the log there, not from the receipt.
    batch_index: int = 0
    position: int | None = None
    in_log: bool = True  # False: the log no longer holds the events this receipt acknowledged

    def row(self, *, as_text: bool, first_position: int) -> tuple[Any, ...]:
        return (self.event_id.hex if as_text else self.event_id, self.submission_type,
                self.content_sha256, _names_json(self.recorded), self.occurred_at,
                first_position + self.batch_index)

    @classmethod
    def from_row(cls, row: Any) -> "Receipt":
        event_id = row["event_id"]
        position = row["position"]
        return cls(event_id if isinstance(event_id, UUID) else UUID(event_id),
                   row["submission_type"], row["content_sha256"],
                   tuple(json.loads(row["recorded"])), row["occurred_at"],
                   position=int(position) if position is not None else None)


def _names_json(names: tuple[str, ...]) -> str:
    """``json.dumps(list(names))``, byte for byte, for event type names (ASCII
    identifiers need no escaping): the json module was ~5% of a group commit."""
    if all(name.isidentifier() and name.isascii() for name in names):
        return "[" + ", ".join(f'"{name}"' for name in names) + "]"
    return json.dumps(list(names))


class _WriteTransaction(SQLiteTransaction):
    """BEGIN IMMEDIATE: the write lock before the head is read, so the head this
    writer chains onto is the last one committed."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        statements = [s for s in super().construct_create_table_statements()
                      if f" {SQLITE_EVENTS_TABLE} (" not in s]
        return [*statements,
                f"CREATE TABLE IF NOT EXISTS {SQLITE_EVENTS_TABLE} (originator_id TEXT, originator_version INTEGER,"
                f" topic TEXT, state BLOB, {CHAIN_COLUMN} BLOB, PRIMARY KEY (originator_id, originator_version))",
                SQLITE_RECEIPTS_DDL, SQLITE_SNAPSHOTS_DDL, SQLITE_HEAD_DDL, KEYS_DDL]

    # The head this recorder's last insert left (None before one): a writer that
    # still holds it passes it back as ``expect_head`` (see LedgerPostgresRecorder).
    head_after: Head | None = None
    _chained: chain_store.Chained | None = None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self.head_after = self._chained = None
        with self.datastore.get_connection(commit=True) as conn, \
                _WriteTransaction(conn, commit=True) as curs, curs:
            positions = self._insert_events(curs, stored_events, **kwargs)
        if self._chained is not None and self._chained.links:  # committed
            self.head_after = self._chained.head
        return positions

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        receipts: Sequence[Receipt] = kwargs.pop("receipts", ())
        expect: Head | None = kwargs.pop("expect_head", None)
        read_head, read_last = chain_store.head_statements(sqlite=True)
        c.execute(read_head)
        head_row = c.fetchone()
        if expect is not None:  # under the write lock already: reading it is the check
            chain_store.expected_head(head_row, expect)
            if any_created(self, list(kwargs.pop("expect_absent", ())), c):
                raise chain_store.StaleWrite("an id taken as new has events")
            if load_receipts(self, list(kwargs.pop("expect_no_receipts", ())), c):
                raise chain_store.StaleWrite("a submission refused as new has a receipt")
        c.execute(read_last)
        batch = self._chained = chain_store.chain_batch(head_row, c.fetchone(), stored_events)
        # One executemany (sqlite3's C loop) instead of eventsourcing's execute per
        # row for its lastrowid (~13% of an append).
        c.executemany(
            f"INSERT INTO {SQLITE_EVENTS_TABLE} (rowid, originator_id, originator_version, topic, state,"
            f" {CHAIN_COLUMN}) VALUES (?, ?, ?, ?, ?, ?)",
            [(position, s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
              s.originator_version, s.topic, s.state, sha)
             for position, s, sha in zip(batch.positions, stored_events, batch.links)])
        tracking = kwargs.get("tracking")
        if tracking is not None:
            self._insert_tracking(c, tracking)
        if receipts:
            c.executemany(f"INSERT INTO {RECEIPTS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                          [r.row(as_text=True, first_position=batch.first) for r in receipts])
        move_head = batch.head_update(sqlite=True)
        if move_head:
            c.execute(*move_head)
        return list(batch.positions)


def load_receipts(recorder: Any, event_ids: Sequence[UUID], curs: Any = None) -> dict[UUID, Receipt]:
    """The receipts of those event ids that have one, a page of ids per query."""
    receipts = (Receipt.from_row(row) for row in
                select_by_ids(recorder, f"SELECT * FROM {RECEIPTS_TABLE}", "event_id", event_ids, curs=curs))
    return {receipt.event_id: receipt for receipt in receipts}
