"""The chain in the store: the head, walking, the receipts' check, migrating.

Both stores keep the chain the same way (``ledger/chain.py`` for what it is,
``ledger/store.py`` for the DDL): a ``chain_sha256`` column on eventsourcing's
events table, the one-row head table, and triggers that refuse UPDATE, DELETE
(and on PostgreSQL TRUNCATE) of events and receipts. Positions are given by the writer while it holds the head
(the head's position + 1, ...), so they run without gaps on both stores.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence
from uuid import UUID

import orjson
from eventsourcing.persistence import IntegrityError, StoredEvent

from leadledger import chain
from leadledger.chain import GENESIS, Head, Row
from leadledger.errors import LOG_DAMAGED, LedgerError
from leadledger.store import (APPEND_ONLY_TABLES, CHAIN_COLUMN, EVENTS_TABLE, HEAD_TABLE, RECEIPTS_TABLE,
                              SQLITE_EVENTS_TABLE, SQLITE_HEAD_START, SQLITE_TRIGGER_NAMES, events_table,
                              position_column, sqlite_drop_trigger_ddl, sqlite_trigger_ddl)

PAGE = 5000  # rows per page while walking or migrating


# --- the writer's side -------------------------------------------------------------

def head_statements(sqlite: bool) -> tuple[str, str]:
    """Take the head (PostgreSQL: its row lock, which serialises writers; SQLite:
    the caller's BEGIN IMMEDIATE already did) and read the log's last position,
    in a statement of its own so it sees what the previous holder committed."""
    lock = "" if sqlite else " FOR UPDATE"
    return (f"SELECT position, sha256 FROM {HEAD_TABLE} WHERE id = 1{lock}",
            f"SELECT max({position_column(sqlite)}) AS last FROM {events_table(sqlite)}")


def read_head(curs: Any, sqlite: bool) -> Head | None:
    """The head row as it stands (no lock): where a reader's view of the log begins."""
    curs.execute(f"SELECT position, sha256 FROM {HEAD_TABLE} WHERE id = 1")
    row = curs.fetchone()
    return Head(int(row["position"]), bytes(row["sha256"])) if row is not None else None


def checked_head(head_row: Any, last_row: Any) -> Head:
    """The head to chain onto, refusing a log whose end no longer matches it."""
    if head_row is None:
        raise LedgerError("store_not_initialised", "the log has no chain head: run `leadledger init` (as the owner)")
    head = Head(int(head_row["position"]), bytes(head_row["sha256"]))
    last = int(last_row["last"] or 0)
    if last != head.position:
        raise LedgerError(LOG_DAMAGED, f"the log ends at position {last} but its chain head is at "
                          f"{head.position}: the log was altered; nothing recorded "
                          "(run `leadledger verify`, restore from a backup)")
    return head


@dataclass(frozen=True)
class Chained:
    """A batch placed on the chain: its positions, its links, the head it leaves."""

    first: int  # the batch's first position
    links: list[bytes]

    @property
    def positions(self) -> range:
        return range(self.first, self.first + len(self.links))

    @property
    def head(self) -> Head:
        """The head the batch leaves (it holds at least one event)."""
        assert self.links, "an empty batch moves no head"
        return Head(self.positions[-1], self.links[-1])

    def head_update(self, sqlite: bool) -> tuple[str, tuple[int, bytes]] | None:
        """The statement that moves the head past the batch (None for no events)."""
        if not self.links:
            return None
        mark = "?" if sqlite else "%s"
        return (f"UPDATE {HEAD_TABLE} SET position = {mark}, sha256 = {mark} WHERE id = 1",
                (self.positions[-1], self.links[-1]))


def chain_batch(head_row: Any, last_row: Any, stored_events: Sequence[Any]) -> Chained:
    """Both writers' step, while they hold the head: check it, then give the batch
    the next positions and its links."""
    head = checked_head(head_row, last_row)
    return chain_onto(head, stored_events)


def chain_onto(head: Head, stored_events: Sequence[Any]) -> Chained:
    return Chained(head.position + 1, chain.extend(head.sha256, stored_events))


class StaleWrite(IntegrityError):
    """A write made on what a writer knew, which the store no longer bears out: the
    head it expected had moved (another writer committed since), or an id it took
    as new has events. Nothing was recorded; judge again from the store."""


def expected_head(head_row: Any, expect: Head) -> None:
    """Refuse to chain onto ``expect`` unless it is still the head (read under the
    write lock: SQLite's BEGIN IMMEDIATE, PostgreSQL's FOR UPDATE; PostgreSQL's
    one-pipeline path checks inside its insert, LedgerPostgresRecorder._insert_onto)."""
    if head_row is None or (int(head_row["position"]), bytes(head_row["sha256"])) != (expect.position, expect.sha256):
        raise StaleWrite(f"the chain head moved past position {expect.position}")


# --- reading it back -----------------------------------------------------------------

def _select_rows(sqlite: bool) -> str:
    mark = "?" if sqlite else "%s"
    position = position_column(sqlite)
    return (f"SELECT {position} AS position, originator_id, originator_version, topic, state,"
            f" {CHAIN_COLUMN} AS chain_sha256 FROM {events_table(sqlite)}"
            f" WHERE {position} >= {mark} AND {position} <= {mark} ORDER BY {position} LIMIT {PAGE}")


def rows(datastore: Any, sqlite: bool, start: int = 1, stop: int | None = None,
         advance: Callable[[int], None] | None = None) -> Iterator[Row]:
    """The stored events from ``start`` to ``stop``, a page per read transaction;
    ``advance(n)`` is told of each page (progress)."""
    for page in pages(lambda: datastore.transaction(commit=False), sqlite, start, stop):
        yield from page
        if advance is not None:
            advance(len(page))


def pages(transaction: Callable[[], Any], sqlite: bool, start: int = 1,
          stop: int | None = None) -> Iterator[list[Row]]:
    """The stored events from ``start`` to ``stop`` a page at a time, each read in
    ``transaction()`` (a context manager giving a cursor: a new read transaction,
    or the caller's own, as a rebuild reads the log it projects)."""
    statement = _select_rows(sqlite)
    stop = stop if stop is not None else 2 ** 62
    while True:
        with transaction() as curs:
            if sqlite:
                curs.execute(statement, (start, stop))
                page = [Row.of(r) for r in curs.fetchall()]
            else:
                page = _typed_page(curs, statement, (start, stop))
        if not page:
            return
        yield page
        start = page[-1].position + 1


def _typed_page(curs: Any, statement: str, params: tuple[int, int]) -> list[Row]:
    """A PostgreSQL page as Rows (``Row.typed``), from tuples on a cursor of its own:
    the caller's may be a rebuild's, which reads dict rows after."""
    from psycopg.rows import tuple_row  # here: a SQLite store never imports psycopg

    with curs.connection.cursor(row_factory=tuple_row) as rows:
        rows.execute(statement, params, binary=True)
        return [Row.typed(*row) for row in rows.fetchall()]


def still_holds(curs: Any, sqlite: bool, head: Head) -> bool:
    """Whether the log still ends its first ``head.position`` events with that head's
    link: the chain makes it the same log up to there, not one rebuilt by hand."""
    if head.position == 0:
        return True
    position, mark = position_column(sqlite), "?" if sqlite else "%s"
    curs.execute(f"SELECT {CHAIN_COLUMN} AS link FROM {events_table(sqlite)} WHERE {position} = {mark}",
                 (head.position,))
    row = curs.fetchone()
    return row is not None and row["link"] is not None and bytes(row["link"]) == head.sha256


def stored_between(curs: Any, sqlite: bool, after: int, through: int) -> list[Any]:
    """The stored events at positions after ``after`` up to ``through``, in order."""
    position, mark = position_column(sqlite), "?" if sqlite else "%s"
    curs.execute(f"SELECT originator_id, originator_version, topic, state FROM {events_table(sqlite)}"
                 f" WHERE {position} > {mark} AND {position} <= {mark} ORDER BY {position}", (after, through))
    return [StoredEvent(originator_id=r["originator_id"] if isinstance(r["originator_id"], UUID)
                        else UUID(r["originator_id"]), originator_version=r["originator_version"],
                        topic=r["topic"], state=bytes(r["state"])) for r in curs.fetchall()]


def recorded_head(datastore: Any, sqlite: bool) -> tuple[Head | None, int]:
    """The head row and the log's last position, in one snapshot."""
    with datastore.transaction(commit=False) as curs:
        return head_in(curs, sqlite)


def head_in(curs: Any, sqlite: bool) -> tuple[Head | None, int]:
    position = position_column(sqlite)
    curs.execute(f"SELECT h.position, h.sha256, (SELECT max({position}) FROM {events_table(sqlite)}) AS last"
                 f" FROM (SELECT 1 AS one) o LEFT JOIN {HEAD_TABLE} h ON h.id = 1")
    row = curs.fetchone()
    head = Head(int(row["position"]), bytes(row["sha256"])) if row["position"] is not None else None
    return head, int(row["last"] or 0)


def check(datastore: Any, sqlite: bool, expect: Head | None = None, *,
          advance: Callable[[int], None] | None = None) -> tuple[list[str], Head]:
    """Walk the whole chain; the problems found (first break, head, published
    head) and the last head that chains correctly. ``advance(n)``: progress."""
    recorded, last = recorded_head(datastore, sqlite)
    stop = recorded.position if recorded is not None else last
    return judge(recorded, last, rows(datastore, sqlite, 1, stop, advance),
                 rescan=lambda p: rows(datastore, sqlite, p, stop), expect=expect)


def judge(recorded: Head | None, last: int, walked: Iterable[Row], *,
          rescan: Callable[[int], Iterator[Row]], expect: Head | None = None) -> tuple[list[str], Head]:
    """``check`` over rows the caller reads (from the first position; a rebuild
    passes the rows it projects): those past the head are not walked, the head
    and ``last`` (read in one snapshot) are judged against what the walk found."""
    stop = recorded.position if recorded is not None else last
    scan = chain.walk(itertools.takewhile(lambda row: row.position <= stop, walked), rescan=rescan,
                      watch=[expect.position] if expect else ())
    problems = [scan.problem] if scan.problem else []
    problems += chain.head_problems(recorded, last, scan)
    if expect is not None:
        problems += chain.expected_problems(expect, scan, min(last, stop))
    return problems, scan.head


def receipts_problems(datastore: Any, sqlite: bool, limit: int = 20) -> list[str]:
    """Every receipt points at its submission's events in the log (the chain
    vouches for the log; a receipt whose events are gone would answer
    ``duplicate`` for a submission the log no longer holds)."""
    problems: list[str] = []
    after: Any = None
    mark = "?" if sqlite else "%s"
    while len(problems) < limit:
        where, params = ("", ()) if after is None else (f" WHERE event_id > {mark}", (after,))
        with datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT event_id, recorded, position FROM {RECEIPTS_TABLE}{where}"
                         f" ORDER BY event_id LIMIT {PAGE}", params)
            page = curs.fetchall()
            if not page:
                return problems
            receipts = [(r["event_id"], orjson.loads(r["recorded"]), r["position"]) for r in page]
            found = _log_rows(curs, sqlite, [(position, len(recorded))
                                             for _, recorded, position in receipts if position is not None])
        for event_id, recorded, position in receipts:
            problem = _receipt_problem(event_id, recorded, position, found)
            if problem:
                problems.append(problem)
        after = page[-1]["event_id"]
    return problems[:limit]


def _log_rows(curs: Any, sqlite: bool, spans: Sequence[tuple[int, int]]) -> dict[int, tuple[str, Any]]:
    """topic and event_id of the events at the positions the spans cover."""
    positions = sorted({int(p) + i for p, n in spans for i in range(n)})
    found: dict[int, tuple[str, Any]] = {}
    column = position_column(sqlite)
    select = f"SELECT {column} AS position, topic, state FROM {events_table(sqlite)} WHERE {column}"
    for start in range(0, len(positions), 900):
        part = positions[start:start + 900]
        if sqlite:
            curs.execute(f"{select} IN ({','.join('?' * len(part))})", part)
        else:
            curs.execute(f"{select} = ANY(%s)", (part,))
        for row in curs.fetchall():
            found[int(row["position"])] = (row["topic"], _event_id_of(row["state"]))
    return found


def _event_id_of(state: bytes) -> str | None:
    try:
        value = orjson.loads(chain.as_bytes(state)).get("event_id")
        return value.get("_data_") if isinstance(value, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _receipt_problem(event_id: Any, recorded: list[str], position: Any,
                     found: dict[int, tuple[str, Any]]) -> str | None:
    eid = event_id if isinstance(event_id, UUID) else UUID(event_id)
    if position is None:
        return f"submission {eid}: its receipt names no position in the log"
    for offset, event_type in enumerate(recorded):
        at = int(position) + offset
        topic, logged_id = found.get(at, ("", None))
        if topic.rpartition(":")[2].rpartition(".")[2] != event_type or logged_id != eid.hex:
            return (f"submission {eid}: its {event_type} should be at position {at} and is not: "
                    "the log lost an event it acknowledged")
    return None


def receipts_not_in_log(curs: Any, sqlite: bool, receipts: Sequence[Any]) -> set[UUID]:
    """The event ids among ``receipts`` whose events the log does not hold."""
    spans = [(r.position, len(r.recorded)) for r in receipts if r.position is not None]
    found = _log_rows(curs, sqlite, spans) if spans else {}
    return {r.event_id for r in receipts
            if _receipt_problem(r.event_id, list(r.recorded), r.position, found) is not None}


# --- migration: chaining a store that predates the chain (0.4) ------------------------

def migrate(curs: Any, sqlite: bool, progress: Any = None) -> int:
    """Chain every event of a store with no head yet, give each receipt the
    position of its submission's first event, and lay the head. The caller holds
    a write transaction with the append-only triggers off. Returns events chained.

    Only a log that was never chained (a 0.4 store) is chained here. A chained log
    whose head row is gone (deleted by hand) gets its head back from its last
    stored link, its links left as they are: chaining it again would make an
    event edited before the head was removed chain cleanly."""
    mark = "?" if sqlite else "%s"
    table, position = events_table(sqlite), position_column(sqlite)
    curs.execute(f"SELECT {position} AS position, {CHAIN_COLUMN} AS link FROM {table}"
                 f" WHERE {CHAIN_COLUMN} IS NOT NULL ORDER BY {position} DESC LIMIT 1")
    linked = curs.fetchall()
    if linked:
        curs.execute(head_statements(sqlite)[1])  # the log's last position
        last_position = int(curs.fetchall()[0]["last"])
        if int(linked[0]["position"]) != last_position:
            raise LedgerError(LOG_DAMAGED, f"the chain head is missing and the log's last event (position "
                              f"{last_position}) has no link: both were removed by hand; restore the store "
                              "from a backup (`leadledger verify --expect-head` proves a published head)")
        curs.execute(f"INSERT INTO {HEAD_TABLE} VALUES (1, {mark}, {mark})",
                     (last_position, bytes(linked[0]["link"])))
        return 0
    previous, last, count = GENESIS, 0, 0
    while True:
        curs.execute(_select_rows(sqlite), (last + 1, 2 ** 62))
        page = [Row.of(r) for r in curs.fetchall()]
        if not page:
            break
        links = chain.extend(previous, page)
        positions = [row.position for row in page]
        if sqlite:
            curs.executemany(f"UPDATE {SQLITE_EVENTS_TABLE} SET {CHAIN_COLUMN} = ? WHERE rowid = ?",
                             list(zip(links, positions)))
        else:
            curs.execute(f"UPDATE {EVENTS_TABLE} e SET {CHAIN_COLUMN} = v.sha FROM"
                         " unnest(%s::bytea[], %s::bigint[]) AS v(sha, pos) WHERE e.notification_id = v.pos",
                         (links, positions))
        previous, last, count = links[-1], positions[-1], count + len(page)
        if progress is not None:
            progress(len(page))
    _place_receipts(curs, sqlite)
    curs.execute(f"INSERT INTO {HEAD_TABLE} VALUES (1, {mark}, {mark})", (last, previous))
    return count


def _place_receipts(curs: Any, sqlite: bool) -> None:
    """Each receipt gets the position of the first event carrying its event_id."""
    if sqlite:
        curs.execute("CREATE TEMP TABLE ll_firsts AS SELECT"
                     " json_extract(CAST(state AS TEXT), '$.event_id._data_') AS event_id,"
                     f" min(rowid) AS position FROM {SQLITE_EVENTS_TABLE} GROUP BY 1")
        curs.execute("CREATE INDEX temp.ll_firsts_id ON ll_firsts (event_id)")
        curs.execute(f"UPDATE {RECEIPTS_TABLE} SET position = (SELECT f.position FROM ll_firsts f"
                     f" WHERE f.event_id = {RECEIPTS_TABLE}.event_id) WHERE position IS NULL")
        curs.execute("DROP TABLE temp.ll_firsts")
    else:
        curs.execute(f"UPDATE {RECEIPTS_TABLE} r SET position = f.position FROM"
                     " (SELECT (convert_from(state, 'UTF8')::jsonb #>> '{event_id,_data_}')::uuid AS event_id,"
                     f" min(notification_id) AS position FROM {EVENTS_TABLE} GROUP BY 1) f"
                     " WHERE r.event_id = f.event_id AND r.position IS NULL")


def ensure_sqlite(datastore: Any, progress: Any = None) -> int:
    """Bring a SQLite store up to the chained layout (whoever can open the file
    owns it): the column, the head (chaining a 0.4 log first) and the triggers.
    One read when all is in place. Returns events chained by a migration."""
    triggers = sqlite_trigger_ddl()
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            f" AND name IN ({', '.join(repr(n) for n in SQLITE_TRIGGER_NAMES)})) AS triggers,"
            f" (SELECT count(*) FROM {HEAD_TABLE}) AS heads,"
            f" (SELECT count(*) FROM pragma_table_info('{SQLITE_EVENTS_TABLE}') WHERE name = '{CHAIN_COLUMN}') AS chained,"
            f" (SELECT count(*) FROM pragma_table_info('{RECEIPTS_TABLE}') WHERE name = 'position') AS placed")
        state = curs.fetchone()
    if state["triggers"] == len(triggers) and state["heads"] and state["chained"] and state["placed"]:
        return 0
    chained = 0
    with datastore.transaction(commit=True) as curs:
        if not state["chained"]:
            curs.execute(f"ALTER TABLE {SQLITE_EVENTS_TABLE} ADD COLUMN {CHAIN_COLUMN} BLOB")
        if not state["placed"]:
            curs.execute(f"ALTER TABLE {RECEIPTS_TABLE} ADD COLUMN position INTEGER")
        if not state["heads"]:
            for statement in sqlite_drop_trigger_ddl():
                curs.execute(statement)
            curs.execute(SQLITE_HEAD_START)
            curs.execute(f"SELECT count(*) AS n FROM {HEAD_TABLE}")
            if not curs.fetchone()["n"]:
                chained = migrate(curs, sqlite=True, progress=progress)
        for statement in triggers:
            curs.execute(statement)
    return chained


def ensure_postgres(conn: Any, progress: Any = None) -> int:
    """After schema.sql: chain a 0.4 log (no head yet), with the append-only
    triggers off for that one transaction. Needs the tables' owner (``init``)."""
    with conn.transaction(), conn.cursor() as curs:
        curs.execute(f"SELECT count(*) AS n FROM {HEAD_TABLE}")
        if curs.fetchone()[0]:
            return 0
        curs.execute(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
        for table in APPEND_ONLY_TABLES:
            curs.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        chained = migrate(_DictCursor(curs), sqlite=False, progress=progress)
        for table in APPEND_ONLY_TABLES:
            curs.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
    return chained


class _DictCursor:
    """A psycopg tuple cursor read by column name (as eventsourcing's cursors are)."""

    def __init__(self, curs: Any):
        self._curs = curs

    def execute(self, statement: str, params: Any = None) -> None:
        self._curs.execute(statement, params)

    def fetchall(self) -> list[dict[str, Any]]:
        names = [c.name for c in self._curs.description]
        return [dict(zip(names, row)) for row in self._curs.fetchall()]
