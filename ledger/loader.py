"""Loading many aggregates in one query: the batch path of the unit of work.

``Repository.get`` costs one query per aggregate; a chunk of 1000 submissions
touches a few thousand aggregates (receipts, contacts, wallets, customers),
most of which do not exist yet. Here one query per few hundred ids returns
every stored event of the ids that exist, and the aggregates are rebuilt with
eventsourcing's own mapper and mutators, exactly as the repository would.
"""

from __future__ import annotations

from typing import Any, Iterable
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteDatastore

IDS_PER_QUERY = 500


def load_many(app: Any, ids: Iterable[UUID], max_position: int | None = None) -> dict[UUID, Any]:
    """Aggregate (or None when it has no events) for each id; with ``max_position``,
    as the log up to that position made it."""
    wanted = list(dict.fromkeys(ids))
    found: dict[UUID, list[StoredEvent]] = {}
    recorder = app.recorder
    datastore = recorder.datastore
    is_sqlite = isinstance(datastore, SQLiteDatastore)
    table = recorder.events_table_name
    bound = ""
    if max_position is not None:
        bound = f" AND {'rowid' if is_sqlite else 'notification_id'} <= {int(max_position)}"
    for start in range(0, len(wanted), IDS_PER_QUERY):
        part = wanted[start:start + IDS_PER_QUERY]
        if is_sqlite:
            marks = ",".join("?" * len(part))
            statement = (f"SELECT originator_id, originator_version, topic, state FROM {table}"
                         f" WHERE originator_id IN ({marks}){bound} ORDER BY originator_id, originator_version")
            params: Any = [i.hex for i in part]
        else:
            statement = (f"SELECT originator_id, originator_version, topic, state FROM {table}"
                         f" WHERE originator_id = ANY(%s){bound} ORDER BY originator_id, originator_version")
            params = (part,)
        with datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            for row in curs.fetchall():
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
