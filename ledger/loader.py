"""Loading many aggregates in one query: the batch path of the unit of work.

``Repository.get`` costs one query per aggregate; a chunk of 1000 submissions
touches a few thousand aggregates (receipts, contacts, wallets, customers),
most of which do not exist yet. Here one query per few hundred ids returns
every stored event of the ids that exist, and the aggregates are rebuilt with
eventsourcing's own mapper and mutators, exactly as the repository would.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteDatastore

IDS_PER_QUERY = 500
_COLUMNS = "originator_id, originator_version, topic, state"


@contextmanager
def reading(recorder: Any, curs: Any = None) -> Iterator[Any]:
    """``curs`` when the caller holds a read transaction, else a new one.

    A unit of work reads receipts, snapshots and events in one transaction: on
    PostgreSQL each transaction is a pool checkout and BEGIN/ROLLBACK round trips,
    most of a single submission's latency when they were five."""
    if curs is not None:
        yield curs
    else:
        with recorder.datastore.transaction(commit=False) as opened:
            yield opened


def any_created(recorder: Any, ids: Sequence[UUID], curs: Any = None) -> bool:
    """Whether any of ``ids`` has events (its first version: a primary-key lookup)."""
    table = recorder.events_table_name
    return any(select_by_ids(recorder, f"SELECT originator_id FROM {table}", "originator_id", list(ids),
                             " AND originator_version = 1 LIMIT 1", curs))


def select_by_ids(recorder: Any, select: str, column: str, ids: Sequence[UUID],
                  tail: str = "", curs: Any = None, per_query: int = IDS_PER_QUERY) -> Iterator[Any]:
    """Rows of ``select`` whose ``column`` is one of ``ids``, one query per
    ``per_query`` ids (UUIDs are stored as hex text on SQLite, uuid on PostgreSQL)."""
    is_sqlite = isinstance(recorder.datastore, SQLiteDatastore)
    for start in range(0, len(ids), per_query):
        part = ids[start:start + per_query]
        if is_sqlite:
            statement = f"{select} WHERE {column} IN ({','.join('?' * len(part))}){tail}"
            params: Any = [i.hex for i in part]
        else:
            statement = f"{select} WHERE {column} = ANY(%s){tail}"
            params = (list(part),)
        with reading(recorder, curs) as cursor:
            cursor.execute(statement, params)
            yield from cursor.fetchall()


def load_many(app: Any, ids: Iterable[UUID], max_position: int | None = None, *,
              snapshot_versions: dict[UUID, int] | None = None,
              stats: dict[str, int] | None = None, curs: Any = None,
              wallet_ids: set[UUID] | None = None) -> dict[UUID, Any]:
    """Aggregate (or None when it has no events) for each id; with ``max_position``,
    as the log up to that position made it.

    Without ``max_position``, a wallet with a snapshot is its snapshot plus the
    events after it (ledger/snapshots.py); ``snapshot_versions`` receives the
    version each loaded aggregate's snapshot holds (0: none), ``stats`` the
    counts of snapshots used and events read. ``wallet_ids``: which of ``ids``
    can have a snapshot (only wallets do), when the caller knows; else all are asked.
    """
    wanted = list(dict.fromkeys(ids))
    recorder = app.recorder
    is_sqlite = isinstance(recorder.datastore, SQLiteDatastore)
    snapshots: dict[UUID, Any] = {}
    if max_position is None:
        candidates = wanted if wallet_ids is None else [i for i in wanted if i in wallet_ids]
        snapshots = _load_snapshots(recorder, candidates, curs)
    bound = ""
    if max_position is not None:
        position = "rowid" if is_sqlite else "notification_id"
        bound = f" AND {position} <= {int(max_position)}"
    to_domain_event = app.mapper.to_domain_event
    found: dict[UUID, list[StoredEvent] | None] = {}
    if snapshots:
        found = _events_after(app, snapshots, curs)
        for aggregate_id in [i for i, events in found.items() if events is None]:
            del snapshots[aggregate_id]  # outlived its log: ignored, not trusted
            del found[aggregate_id]
    fresh = [i for i in wanted if i not in snapshots]
    rows = select_by_ids(recorder, f"SELECT {_COLUMNS} FROM {recorder.events_table_name}", "originator_id",
                         fresh, f"{bound} ORDER BY originator_id, originator_version", curs)
    found.update(_grouped(rows))
    out: dict[UUID, Any] = {}
    for aggregate_id in wanted:
        aggregate = snapshots.get(aggregate_id)
        if snapshot_versions is not None:
            snapshot_versions[aggregate_id] = 0 if aggregate is None else aggregate.version
        for stored in found.get(aggregate_id) or ():
            aggregate = to_domain_event(stored).mutate(aggregate)
        out[aggregate_id] = aggregate
    if stats is not None:
        stats["snapshots"] = stats.get("snapshots", 0) + len(snapshots)
        stats["events"] = stats.get("events", 0) + sum(len(events or ()) for events in found.values())
    return out


def refresh(app: Any, aggregates: dict[UUID, Any], curs: Any = None) -> list[UUID]:
    """Bring aggregates held in memory level with the store: apply the events
    recorded after each one's version (another writer's, or a late event), in
    place. Returns the ids that cannot be trusted and must be loaded afresh:
    those whose own last event is no longer the stored one (a store reset by
    hand, a restore), as for a snapshot."""
    if not aggregates:
        return []
    to_domain_event = app.mapper.to_domain_event
    untrusted = []
    for aggregate_id, events in _events_after(app, aggregates, curs).items():
        if events is None:
            untrusted.append(aggregate_id)
            continue
        for stored in events:
            to_domain_event(stored).mutate(aggregates[aggregate_id])
    return untrusted


def _version(stored: StoredEvent) -> int:
    return stored.originator_version


def _grouped(rows: Iterable[Any]) -> dict[UUID, list[StoredEvent]]:
    """Stored events by aggregate, each list in version order."""
    found: dict[UUID, list[StoredEvent]] = {}
    for row in rows:
        originator_id = row["originator_id"]
        if not isinstance(originator_id, UUID):
            originator_id = UUID(originator_id)
        found.setdefault(originator_id, []).append(StoredEvent(
            originator_id=originator_id, originator_version=row["originator_version"],
            topic=row["topic"], state=bytes(row["state"])))
    for events in found.values():
        events.sort(key=_version)
    return found


def _load_snapshots(recorder: Any, ids: Sequence[UUID], curs: Any = None) -> dict[UUID, Any]:
    from leadledger import snapshots
    from leadledger.store import SNAPSHOTS_TABLE

    out: dict[UUID, Any] = {}
    for row in select_by_ids(recorder, f"SELECT originator_id, state FROM {SNAPSHOTS_TABLE}", "originator_id", ids,
                             curs=curs, per_query=snapshots.PAGE_WALLETS):
        wallet = snapshots.decode(bytes(row["state"]))
        if wallet is not None:
            out[wallet.id] = wallet
    return out


def _events_after(app: Any, held: dict[UUID, Any], curs: Any = None) -> dict[UUID, list[StoredEvent] | None]:
    """For each aggregate held (a snapshot, or one kept in memory), the stored
    events after its version; None when its own last event is no longer the
    stored one (same version, same recording time): state outliving its log (a
    store reset by hand, a partial restore) is reloaded, never trusted."""
    found = _grouped(_select_from_versions(app.recorder, {i: a.version for i, a in held.items()}, curs))
    out: dict[UUID, list[StoredEvent] | None] = {}
    for aggregate_id, aggregate in held.items():
        events = found.get(aggregate_id, [])
        continues = (events and events[0].originator_version == aggregate.version
                     and app.mapper.to_domain_event(events[0]).timestamp == aggregate.modified_on)
        out[aggregate_id] = events[1:] if continues else None
    return out


def _select_from_versions(recorder: Any, versions: dict[UUID, int], curs: Any = None) -> Iterator[Any]:
    """Each aggregate's events from the given version on (its own last event
    included, to check it), one query per IDS_PER_QUERY ids."""
    table = recorder.events_table_name
    items = list(versions.items())
    is_sqlite = isinstance(recorder.datastore, SQLiteDatastore)
    for start in range(0, len(items), IDS_PER_QUERY):
        part = items[start:start + IDS_PER_QUERY]
        if is_sqlite:
            # OR of primary-key ranges: SQLite answers each term from the index.
            terms = " OR ".join(["(originator_id = ? AND originator_version >= ?)"] * len(part))
            statement = f"SELECT {_COLUMNS} FROM {table} WHERE {terms}"
            params: Any = [value for i, v in part for value in (i.hex, v)]
        else:
            statement = (f"SELECT {', '.join('e.' + c for c in _COLUMNS.split(', '))} FROM {table} e"
                         " JOIN unnest(%s::uuid[], %s::bigint[]) AS s(id, v)"
                         " ON e.originator_id = s.id AND e.originator_version >= s.v")
            params = ([i for i, _ in part], [v for _, v in part])
        with reading(recorder, curs) as cursor:
            cursor.execute(statement, params)
            yield from cursor.fetchall()
