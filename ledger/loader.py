"""Loading many aggregates in one query: the batch path of the unit of work.

``Repository.get`` costs one query per aggregate; a chunk of 1000 submissions
touches a few thousand aggregates (receipts, contacts, wallets, customers),
most of which do not exist yet. Here one query per few hundred ids returns
every stored event of the ids that exist, and the aggregates are rebuilt with
eventsourcing's own mapper and mutators, exactly as the repository would.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteDatastore

IDS_PER_QUERY = 500


def select_by_ids(recorder: Any, select: str, column: str, ids: Sequence[UUID],
                  tail: str = "") -> Iterator[Any]:
    """Rows of ``select`` whose ``column`` is one of ``ids``, one query per
    IDS_PER_QUERY ids (UUIDs are stored as hex text on SQLite, uuid on PostgreSQL)."""
    is_sqlite = isinstance(recorder.datastore, SQLiteDatastore)
    for start in range(0, len(ids), IDS_PER_QUERY):
        part = ids[start:start + IDS_PER_QUERY]
        if is_sqlite:
            statement = f"{select} WHERE {column} IN ({','.join('?' * len(part))}){tail}"
            params: Any = [i.hex for i in part]
        else:
            statement = f"{select} WHERE {column} = ANY(%s){tail}"
            params = (list(part),)
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            yield from curs.fetchall()


def load_many(app: Any, ids: Iterable[UUID], max_position: int | None = None) -> dict[UUID, Any]:
    """Aggregate (or None when it has no events) for each id; with ``max_position``,
    as the log up to that position made it."""
    wanted = list(dict.fromkeys(ids))
    recorder = app.recorder
    bound = ""
    if max_position is not None:
        position = "rowid" if isinstance(recorder.datastore, SQLiteDatastore) else "notification_id"
        bound = f" AND {position} <= {int(max_position)}"
    found: dict[UUID, list[StoredEvent]] = {}
    rows = select_by_ids(
        recorder, f"SELECT originator_id, originator_version, topic, state FROM {recorder.events_table_name}",
        "originator_id", wanted, f"{bound} ORDER BY originator_id, originator_version")
    for row in rows:
        originator_id = row["originator_id"]
        if not isinstance(originator_id, UUID):
            originator_id = UUID(originator_id)
        found.setdefault(originator_id, []).append(StoredEvent(
            originator_id=originator_id, originator_version=row["originator_version"],
            topic=row["topic"], state=bytes(row["state"])))
    out: dict[UUID, Any] = {}
    for aggregate_id in wanted:
        aggregate = None
        for stored in found.get(aggregate_id, ()):
            aggregate = app.mapper.to_domain_event(stored).mutate(aggregate)
        out[aggregate_id] = aggregate
    return out
