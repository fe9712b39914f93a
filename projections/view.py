"""The materialised view: read-model tables plus a tracking record, written in
one transaction per batch of events, so a crash never double-counts or skips.

The view is an eventsourcing TrackingRecorder (SQLite or PostgreSQL) sharing
the application's datastore; ``LedgerProjection`` is an eventsourcing
``Projection`` over it. ``catch_up`` brings it level with the event log from
its last tracked position; every read command calls it first.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import deque
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Callable, Iterator, Sequence

from eventsourcing.persistence import ConnectionPoolClosedError, IntegrityError, Tracking
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from leadledger import chain_store, collector
from leadledger.chain import Row
from leadledger.projections import checkpoints
from leadledger.projections.journal import WalletFacts
from leadledger.projections.mapping import (
    FIRST_SEEN_STAGE, FIRST_SEEN_STAGED, INSERT_POSTING, EventMapper, MapHere, MapInWorker, Raw,
    Statements, WorkerGone, statements_for)
from leadledger.projections.stored import EVENT_TYPES
from leadledger.projections.tables import (DROPPED_FOR_A_FIRST_BACKLOG, READ_MODEL_DDL, READ_MODEL_TABLES,
                                          SECONDARY_INDEXES)
from leadledger.store import events_table, position_column

APPLICATION_NAME = "LeadLedger"
CATCH_UP_BATCH = 2000  # events per view transaction
# Behind by more than BACKLOG_EVENTS (the first catch-up after a bulk load), it
# takes BACKLOG_BATCH events per transaction: a commit per 2,000 events was a
# fifth of such a catch-up (SQLite, 536k events: 18k -> 25k events/s). Short
# backlogs keep short transactions: each one holds the writers back meanwhile.
BACKLOG_EVENTS = 100_000
BACKLOG_BATCH = 10_000
# SQLite's page cache while a backlog is caught up (its default: 2,000 KiB a
# connection). The batches insert into six B-trees at keys all over them; with the
# default, their pages are read again from the OS at every turn: a 430k-event
# first catch-up spent 3.3-3.8 s in the kernel, 1.9-2.1 s with 32 MiB, and ran in
# 9.5 s instead of 9.8-10.9 (alternated). Only for the pass: appends gained as much
# but a cold append of 50k onto ~1M events then peaked at 206 MiB (175 without),
# over issue 9's 200; a rebuild (indexes dropped while it fills) did not gain.
BACKLOG_PAGE_CACHE_KIB = 32 * 1024


class LedgerViewMixin:
    """Store-independent part of the view; subclasses set the parameter style."""

    placeholder = "?"
    tracking_table = "tracking"
    datastore: Any

    @property
    def sqlite(self) -> bool:
        return self.placeholder == "?"

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", self.placeholder)

    def write_statements_tracked(self, statements: Statements, tracking: Tracking) -> None:
        """Run a batch's statements and write the tracking record, atomically."""
        with self.datastore.transaction(commit=True) as curs:
            self.lock_projection(curs)
            self._size_page_cache(curs)
            self.write_statements(curs, statements)
            self._insert_tracking(curs, tracking)  # type: ignore[attr-defined]

    def lock_projection(self, curs: Any) -> None:
        """Serialise every writer of the read models (catch-ups and rebuilds)."""

    def lock_out_readers(self, curs: Any) -> None:
        """Before a rebuild (or a layout's reset) takes its tables' locks: wait for the
        reads in progress, and make new ones wait for this transaction's end
        (PostgreSQL's view; SQLite's readers keep their snapshot)."""

    @contextmanager
    def backlog(self, *, empty: bool = False) -> Iterator[None]:
        """A catch-up of a backlog runs its batches inside (SQLite's view gives their
        connection a bigger page cache for the pass and, when the read models are
        ``empty``, fills them without the indexes the pass does not read)."""
        yield

    def _size_page_cache(self, curs: Any) -> None:
        """Each batch's transaction, first: see SQLiteLedgerView."""

    def clear_tables(self, curs: Any) -> None:
        for table in READ_MODEL_TABLES:
            curs.execute(f"DELETE FROM {table}")

    def write_statements(self, curs: Any, statements: Statements, *, rebuilding: bool = False) -> None:
        """Run a batch's statements (mapping.statements_for). Also keeps the
        checkpointed totals level, but while ``rebuilding``: a rebuild lays them all
        once its postings are in and indexed, and sets the contacts' first-seen
        times in one statement at its end (FIRST_SEEN_STAGED)."""
        postings: list[tuple[Any, ...]] = []
        for statement, params in statements:
            self.write_statement(curs, statement, params)
            if statement == INSERT_POSTING:
                postings = params
        if not rebuilding:
            checkpoints.record(curs, self.sql, postings)

    def write_statement(self, curs: Any, statement: str, params: list[tuple[Any, ...]]) -> None:
        curs.executemany(self.sql(statement), params)

    def begin_read(self, curs: Any) -> None:
        """First in every read transaction of the read models (PostgreSQL's view waits
        there for a rebuild in progress: see lock_out_readers)."""

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            self.begin_read(curs)
            curs.execute(self.sql(statement), tuple(params))
            return [dict(row) for row in curs.fetchall()]

    def stream(self, statement: str, params: Sequence[Any] = (), page: int = 5000) -> Iterator[dict[str, Any]]:
        """Rows a page at a time, for results too big to hold (a server-side cursor
        on PostgreSQL). The read transaction stays open while the caller iterates."""
        try:
            with self.datastore.transaction(commit=False) as curs:
                self.begin_read(curs)
                # eventsourcing wraps SQLite's cursor; fetchmany needs the real one.
                cursor = getattr(curs, "sqlite_cursor", curs)
                if self.placeholder == "%s":
                    cursor = curs.connection.cursor(name="leadledger_stream")
                cursor.execute(self.sql(statement), tuple(params))
                while True:
                    rows = cursor.fetchmany(page)
                    if not rows:
                        break
                    yield from (dict(row) for row in rows)
                if self.placeholder == "%s":
                    cursor.close()
        except ConnectionPoolClosedError:
            # The reader stopped (`| head`) and the ledger closed its pool before this
            # generator was collected: the connection is gone with it, nothing to return.
            return

    def wallet_lookup(self, pro_id: str) -> WalletFacts | None:
        rows = self.query("SELECT unit, card_currency, market, card_ref FROM ll_wallets WHERE pro_id = ?",
                          (pro_id,))
        return WalletFacts(**rows[0]) if rows else None

    def raw_after(self, position: int, limit: int) -> list[Raw]:
        """The next ``limit`` domain events after ``position`` as stored. Receipts
        stored as events before 0.2 feed no read model: skipped in SQL. Each store
        reads them as tuples, which are a Raw as they come (see the subclasses)."""
        raise NotImplementedError

    def _raw_after_query(self, position: int, limit: int) -> tuple[str, tuple[Any, ...]]:
        sqlite, column = self.sqlite, position_column(self.sqlite)
        topics = list(EVENT_TYPES)
        return self.sql(
            f"SELECT {column} AS position, topic, state FROM {events_table(sqlite)} WHERE {column} > ?"
            f" AND topic IN ({', '.join('?' * len(topics))}) ORDER BY {column} LIMIT ?"), (position, *topics, limit)

    def wallets_known(self) -> dict[str, WalletFacts]:
        """Every wallet the read models hold, as of their tracking position (what a
        catch-up's mapping worker starts from)."""
        return {row["pro_id"]: WalletFacts(row["unit"], row["card_currency"], row["market"], row["card_ref"])
                for row in self.stream("SELECT pro_id, unit, card_currency, market, card_ref FROM ll_wallets")}

    def rebuild(self, inspect: Callable[[Iterator[Row], Callable[[int], Iterator[Row]], Any], None],
                advance: Callable[[int], None] = lambda n: None, *, in_worker: bool = False) -> int:
        """Empty the read models and project the whole log again, in ONE transaction
        under the projection lock: a concurrent catch-up waits for it (then finds the
        views level), and a reader sees the old views or the new ones, never a
        half-built one (PostgreSQL readers wait for the commit; SQLite readers keep
        reading the last committed snapshot). Returns the number of events projected.

        The log is read once, in this transaction: ``inspect(rows, rescan, curs)``
        is handed every stored row as it is projected (the chain walk; it may stop
        early, the rest is projected after it) and raising there rolls it all back.
        ``in_worker``: the pages are mapped in a second process (mapping.py) while
        this one walks the next page and writes the one before."""
        sqlite = self.sqlite
        done, last = 0, None
        # Every WalletOpened is projected before its money events, so the units are
        # known from this pass alone: no lookups into the tables being rebuilt.
        mapping = MapInWorker(rebuilding=True, copy_text=not sqlite) if in_worker else MapHere(rebuilding=True)
        with mapping, collector.paused(), self.datastore.transaction(commit=True) as curs:
            self.lock_out_readers(curs)  # first: before any lock a reader could wait on
            self.lock_projection(curs)
            for name, _ in SECONDARY_INDEXES:  # first: SQLite's DELETE then keeps no index level
                curs.execute(f"DROP INDEX IF EXISTS {name}")  # (1.0 s -> 0.5 s at 543k postings)
            self.clear_tables(curs)
            curs.execute(self.sql(f"DELETE FROM {self.tracking_table} WHERE application_name = ?"),
                         (APPLICATION_NAME,))
            curs.execute("DROP TABLE IF EXISTS ll_first_seen_stage")
            curs.execute(FIRST_SEEN_STAGE)

            def in_this_transaction() -> Any:
                return nullcontext(curs)

            def projected() -> Iterator[Row]:
                nonlocal done, last
                for page in chain_store.pages(in_this_transaction, sqlite):
                    # Walked first: an altered row is named by the chain, not by
                    # the mapping it may break.
                    yield from page
                    events = [(row.position, row.topic, row.state) for row in page if row.topic in EVENT_TYPES]
                    if events:
                        mapping.submit(events)
                        done, last = done + len(events), events[-1][0]
                        # One page in flight while the next is walked: the worker's.
                        while mapping.pending > 1:
                            self.write_statements(curs, mapping.take(), rebuilding=True)
                    advance(len(page))
                while mapping.pending:
                    self.write_statements(curs, mapping.take(), rebuilding=True)

            rows = projected()
            inspect(rows, lambda position: itertools.chain.from_iterable(
                chain_store.pages(in_this_transaction, sqlite, position)), curs)
            for _ in rows:
                pass  # the pages the inspection did not read
            curs.execute(FIRST_SEEN_STAGED)
            curs.execute("DROP TABLE ll_first_seen_stage")
            for _, create in SECONDARY_INDEXES:
                curs.execute(create)
            checkpoints.lay_due(curs, self.sql)
            if last is not None:
                self._insert_tracking(curs, Tracking(APPLICATION_NAME, last))  # type: ignore[attr-defined]
        return done


class SQLiteLedgerView(LedgerViewMixin, SQLiteTrackingRecorder):
    placeholder = "?"
    tracking_table = "tracking"
    # SQLite serialises writers by itself: one write transaction at a time.

    # The page cache (KiB) the batches of a backlog set on their connection; None: its own.
    _page_cache_kib: int | None = None

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *READ_MODEL_DDL]

    @contextmanager
    def backlog(self, *, empty: bool = False) -> Iterator[None]:
        """BACKLOG_PAGE_CACHE_KIB of page cache for the batches inside, set in each
        batch's transaction (the pool may hand another connection), then the size
        the connection had given back, so a long-lived process does not keep it.

        Read models still ``empty`` (the first read after a bulk load) are filled
        without DROPPED_FOR_A_FIRST_BACKLOG's indexes, made again at the end, as a
        rebuild does: one sort each instead of a B-tree insert a row (a 164k-event
        first catch-up 67-70k -> 84-90k events/s, alternated three times). They are made again
        whatever ends the pass; a process that dies in it leaves them to the next
        open, which creates what READ_MODEL_DDL names and is missing. Meanwhile a
        reader gets the same rows, more slowly."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("PRAGMA cache_size")
            (before,) = curs.fetchone()
        dropped = empty and self._drop_for_a_first_backlog()
        self._page_cache_kib = BACKLOG_PAGE_CACHE_KIB
        try:
            yield
        finally:
            self._page_cache_kib = None
            try:
                if dropped:
                    with self.datastore.transaction(commit=True) as curs:
                        for _, create in DROPPED_FOR_A_FIRST_BACKLOG:
                            curs.execute(create)
            finally:
                with self.datastore.transaction(commit=False) as curs:
                    curs.execute(f"PRAGMA cache_size = {int(before)}")

    def _drop_for_a_first_backlog(self) -> bool:
        """Drop the indexes a first backlog fills without, if the read models are
        still empty (another process may have begun projecting): whether it did."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.sql(f"SELECT 1 FROM {self.tracking_table} WHERE application_name = ? LIMIT 1"),
                         (APPLICATION_NAME,))
            if curs.fetchone() is not None:
                return False
            for name, _ in DROPPED_FOR_A_FIRST_BACKLOG:
                curs.execute(f"DROP INDEX IF EXISTS {name}")
        return True

    def _size_page_cache(self, curs: Any) -> None:
        if self._page_cache_kib is not None:
            curs.execute(f"PRAGMA cache_size = -{self._page_cache_kib}")

    def raw_after(self, position: int, limit: int) -> list[Raw]:
        # SQLite's own cursor, its rows as tuples: the rowid, the topic and the state
        # blob are a Raw as they come (with sqlite3.Row objects and their conversion,
        # reading a 430k-event log took 0.70 s instead of 0.36).
        with self.datastore.transaction(commit=False) as curs:
            cursor = curs.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(*self._raw_after_query(position, limit))
            return cursor.fetchall()


class LedgerProjection(Projection[Any]):
    """Maps each domain event to read-model rows (see projections.mapping and
    projections.journal) and writes them with its tracking record."""

    # The runner names the view's tracking table after the projection:
    # "leadledger_tracking" on PostgreSQL, as schema.sql creates it.
    name = "LeadLedger"

    def __init__(self, view: Any):
        super().__init__(view)
        self.mapper = EventMapper(view.wallet_lookup)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """eventsourcing's ProjectionRunner (``follow``) hands live events: their
        fields are their attributes."""
        event = (tracking.notification_id, type(domain_event).__name__, vars(domain_event))
        self.view.write_statements_tracked(statements_for(self.mapper.batch([event]), rebuilding=False), tracking)


def _no_progress(events: int) -> None:
    pass


def _no_warning(message: str) -> None:
    pass


def catch_up(app: Any, view: LedgerViewMixin, batch_size: int | None = None,
             start_progress: Callable[[int], Callable[[int], None]] | None = None,
             in_worker: Callable[[int], bool] = lambda behind: False,
             warn: Callable[[str], None] = _no_warning) -> int:
    """Project every event recorded after the view's tracking position; returns how many.

    Two processes catching up at once cannot both write a position: the second
    one's tracking insert fails, its transaction rolls back and it starts over
    from the new position. ``start_progress(events_behind)`` is asked for a
    progress callback only when a first full batch shows there is a backlog, so
    a level view costs no extra query; ``in_worker(events_behind)`` says whether
    that backlog is mapped in a second process (_backlog_in_worker); if that
    process cannot start or stops, ``warn`` hears why and the rest is mapped here.
    """
    mapper = EventMapper(view.wallet_lookup)
    batch_size = batch_size or CATCH_UP_BATCH
    done = 0
    behind: int | None = None  # known once a first full batch shows a backlog
    advance: Callable[[int], None] | None = None
    try:
        # see ledger/collector.py: a backlog is a rebuild's kind of pass
        with collector.paused(), ExitStack() as for_the_backlog:
            while True:
                position = view.max_tracking_id(APPLICATION_NAME)  # type: ignore[attr-defined]
                page = view.raw_after(position or 0, batch_size)
                if not page:
                    return done
                if behind is None and len(page) == batch_size:
                    behind = (app.recorder.max_notification_id() or 0) - (position or 0)
                    if behind >= BACKLOG_EVENTS:
                        batch_size = max(batch_size, BACKLOG_BATCH)
                        for_the_backlog.enter_context(view.backlog(empty=not position))
                    if start_progress is not None:
                        advance = start_progress(behind)
                    if in_worker(behind):
                        # Its first batch included: the loop goes on from where it stopped.
                        done += _backlog_in_worker(view, batch_size, advance or _no_progress, warn)
                        mapper = EventMapper(view.wallet_lookup)  # the worker saw wallets change
                        continue
                try:
                    view.write_statements_tracked(mapper.statements(page, rebuilding=False),
                                                  Tracking(APPLICATION_NAME, page[-1][0]))
                except (IntegrityError, sqlite3.IntegrityError) as exc:
                    if view.max_tracking_id(APPLICATION_NAME) == position:  # type: ignore[attr-defined]
                        # Nobody got there first: these events break the read models' keys.
                        # Trying again would fail again, forever (it did, growing to 10 GB).
                        raise ProjectionFailed(page[0][0], page[-1][0], exc) from None
                    mapper = EventMapper(view.wallet_lookup)  # another process got there first
                    continue
                done += len(page)
                if advance is not None:
                    advance(len(page))
    finally:
        if advance is not None:
            advance(-1)


class ProjectionFailed(Exception):
    """Events the read models cannot take (their keys refuse them) though no other
    process projected them first: a log altered by hand, or a bug. Not retried."""

    def __init__(self, first: int, last: int, cause: BaseException):
        super().__init__(f"the read models cannot take the events at positions {first:,}..{last:,} "
                         f"({' '.join(str(cause).split())[:200]})")


def _backlog_in_worker(view: LedgerViewMixin, batch_size: int, advance: Callable[[int], None],
                       warn: Callable[[str], None]) -> int:
    """Catch up a backlog with its mapping in a worker process: batch N+1 is read
    and mapped while batch N is written, each with its tracking record. Returns
    the events projected; stops at the log's end, when another process wrote a
    batch first, or when the worker stopped (WorkerGone: what it wrote stays,
    tracked): the caller goes on from the tracking position then, mapping here.

    The worker starts from the wallets the view holds, read after its position:
    if another process moved the view on meanwhile, the first write collides with
    its rows and rolls back; if not, they are the wallets as of that position."""
    done = 0
    position = view.max_tracking_id(APPLICATION_NAME) or 0  # type: ignore[attr-defined]
    written: deque[tuple[int, int]] = deque()  # each batch in flight: its last position, its size
    try:
        mapping = MapInWorker(view.wallets_known(), rebuilding=False, copy_text=not view.sqlite)
    except WorkerGone as exc:
        warn(f"{exc}; catching up in this process")
        return 0
    with mapping:

        def read_next() -> bool:
            nonlocal position
            page = view.raw_after(position, batch_size)
            if page:
                mapping.submit(page)
                written.append((page[-1][0], len(page)))
                position = page[-1][0]
            return bool(page)

        more = read_next()
        while written:
            if more:
                more = read_next()
            try:
                statements = mapping.take()
            except WorkerGone as exc:
                warn(f"{exc}; catching up in this process")
                return done
            last, count = written.popleft()
            try:
                view.write_statements_tracked(statements, Tracking(APPLICATION_NAME, last))
            except (IntegrityError, sqlite3.IntegrityError):
                return done
            done += count
            advance(count)
    return done
