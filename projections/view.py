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
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator, Sequence

from eventsourcing.persistence import ConnectionPoolClosedError, IntegrityError, Tracking
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from leadledger import chain_store, collector
from leadledger.chain import Row
from leadledger.errors import LedgerError
from leadledger.projections import checkpoints
from leadledger.projections.journal import Fields, Rows, WalletFacts, check_balanced, rows_for
from leadledger.projections.stored import EVENT_TYPES, loads, sortable, uuid_text
from leadledger.projections.tables import READ_MODEL_DDL, READ_MODEL_TABLES, SECONDARY_INDEXES
from leadledger.store import events_table, position_column

APPLICATION_NAME = "LeadLedger"
CATCH_UP_BATCH = 2000  # events per view transaction
# Behind by more than BACKLOG_EVENTS (the first catch-up after a bulk load), it
# takes BACKLOG_BATCH events per transaction: a commit per 2,000 events was a
# fifth of such a catch-up (SQLite, 536k events: 18k -> 25k events/s). Short
# backlogs keep short transactions: each one holds the writers back meanwhile.
BACKLOG_EVENTS = 100_000
BACKLOG_BATCH = 10_000

# An event the read models are given: its log position, type name and fields.
Stored = tuple[int, str, Fields]


def _insert(target: str, columns: int) -> str:
    return f"INSERT INTO {target} VALUES ({', '.join('?' * columns)})"


# Each insert's target once: the statement (executemany) and PostgreSQL's COPY
# (postgres_view.py) are both made from it.
_WALLET_TARGET = "ll_wallets (pro_id, market, unit, card_currency, region, policy_version, opened_at, position)"
_CONTACT_TARGET = ("ll_contacts (contact_id, pro_id, market, pricing, management_fee, sent_at,"
                   " refund_deadline, unread_refund_due, position)")
_INSERT_WALLET = _insert(_WALLET_TARGET, 8)
_CARD_REF = "UPDATE ll_wallets SET card_ref = ? WHERE pro_id = ?"
_INSERT_CONTACT = _insert(_CONTACT_TARGET, 9)
_FIRST_SEEN = (
    "UPDATE ll_contacts SET first_seen_at = ? WHERE contact_id = ?"
    " AND (first_seen_at IS NULL OR first_seen_at > ?)"
)
# A rebuild stages the first-seen times (an insert each) and sets them in one
# statement at its end: an UPDATE per QuoteRead was 6% of a PostgreSQL rebuild.
# A contact's reads always follow its QuoteSent in the log (its aggregate's
# versions), so the result is the UPDATEs'.
_FIRST_SEEN_STAGE = "CREATE TEMPORARY TABLE ll_first_seen_stage (contact_id TEXT NOT NULL, at TEXT NOT NULL)"
_STAGE_FIRST_SEEN = _insert("ll_first_seen_stage", 2)
_FIRST_SEEN_STAGED = (
    "UPDATE ll_contacts SET first_seen_at = s.at FROM (SELECT contact_id, MIN(at) AS at"
    " FROM ll_first_seen_stage GROUP BY contact_id) AS s WHERE ll_contacts.contact_id = s.contact_id"
)
_INSERT_FACT = _insert("ll_contact_facts", 7)
_INSERT_POSTING = _insert("ll_postings", 15)
COPY_TARGETS = {
    _INSERT_WALLET: _WALLET_TARGET,
    _INSERT_CONTACT: _CONTACT_TARGET,
    _INSERT_FACT: "ll_contact_facts",
    _INSERT_POSTING: "ll_postings",
    _STAGE_FIRST_SEEN: "ll_first_seen_stage",
}


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

    def write(self, batch: Sequence[tuple[int, str, str, Rows]], tracking: Tracking) -> None:
        """Write the rows of a batch of events and the tracking record atomically."""
        with self.datastore.transaction(commit=True) as curs:
            self.lock_projection(curs)
            self.write_rows(curs, batch)
            self._insert_tracking(curs, tracking)  # type: ignore[attr-defined]

    def lock_projection(self, curs: Any) -> None:
        """Serialise every writer of the read models (catch-ups and rebuilds)."""

    def clear_tables(self, curs: Any) -> None:
        for table in READ_MODEL_TABLES:
            curs.execute(f"DELETE FROM {table}")

    def write_rows(self, curs: Any, batch: Sequence[tuple[int, str, str, Rows]], *,
                   rebuilding: bool = False) -> None:
        """Also keeps the checkpointed totals level, but while ``rebuilding``: a
        rebuild lays them all once its postings are in and indexed, and sets the
        contacts' first-seen times in one statement at its end (_FIRST_SEEN_STAGED)."""
        wallets, contacts, first_seen, facts, postings, cards = [], [], [], [], [], []
        for position, event_type, event_id, rows in batch:
            # Most events fill one part: test before building a generator per part.
            if rows.wallets:
                wallets.extend((*row, position) for row in rows.wallets)
            if rows.contacts:
                contacts.extend((*row, position) for row in rows.contacts)
            if rows.first_seen:
                first_seen.extend(rows.first_seen)
            if rows.card_refs:
                cards.extend((card_ref, pro_id) for pro_id, card_ref in rows.card_refs)
            if rows.facts:
                facts.extend((position, seq, *fact) for seq, fact in enumerate(rows.facts))
            if rows.postings:
                check_balanced(rows.postings)
                occurred_at, contact_id, market, reason, ref = (rows.occurred_at, rows.contact_id, rows.market,
                                                                rows.reason, rows.ref)
                postings.extend(
                    (position, seq, occurred_at, event_type, event_id, p.pro_id, contact_id, p.kind,
                     p.account, p.unit, p.debit, p.credit, market, reason, ref)
                    for seq, p in enumerate(rows.postings)
                )
        for statement, params in (
            (_INSERT_WALLET, wallets),
            (_CARD_REF, cards),
            (_INSERT_CONTACT, contacts),
            (_STAGE_FIRST_SEEN, first_seen) if rebuilding
            else (_FIRST_SEEN, [(at, contact_id, at) for contact_id, at in first_seen]),
            (_INSERT_FACT, facts),
            (_INSERT_POSTING, postings),
        ):
            if params:
                self.write_statement(curs, statement, params)
        if not rebuilding:
            checkpoints.record(curs, self.sql, postings)

    def write_statement(self, curs: Any, statement: str, params: list[tuple[Any, ...]]) -> None:
        curs.executemany(self.sql(statement), params)

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.sql(statement), tuple(params))
            return [dict(row) for row in curs.fetchall()]

    def stream(self, statement: str, params: Sequence[Any] = (), page: int = 5000) -> Iterator[dict[str, Any]]:
        """Rows a page at a time, for results too big to hold (a server-side cursor
        on PostgreSQL). The read transaction stays open while the caller iterates."""
        try:
            with self.datastore.transaction(commit=False) as curs:
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

    def stored_after(self, position: int, limit: int) -> list[Stored]:
        """The next ``limit`` domain events after ``position``, decoded (no event
        objects: projections/stored.py). Receipts stored as events before 0.2
        feed no read model: skipped in SQL."""
        sqlite, column = self.sqlite, position_column(self.sqlite)
        topics = list(EVENT_TYPES)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.sql(
                f"SELECT {column} AS position, topic, state FROM {events_table(sqlite)} WHERE {column} > ?"
                f" AND topic IN ({', '.join('?' * len(topics))}) ORDER BY {column} LIMIT ?"),
                (position, *topics, limit))
            page = curs.fetchall()
        return [(int(r["position"]), EVENT_TYPES[r["topic"]], loads(bytes(r["state"]))) for r in page]

    def rebuild(self, inspect: Callable[[Iterator[Row], Callable[[int], Iterator[Row]], Any], None],
                advance: Callable[[int], None] = lambda n: None) -> int:
        """Empty the read models and project the whole log again, in ONE transaction
        under the projection lock: a concurrent catch-up waits for it (then finds the
        views level), and a reader sees the old views or the new ones, never a
        half-built one (PostgreSQL readers wait for the commit; SQLite readers keep
        reading the last committed snapshot). Returns the number of events projected.

        The log is read once, in this transaction: ``inspect(rows, rescan, curs)``
        is handed every stored row as it is projected (the chain walk; it may stop
        early, the rest is projected after it) and raising there rolls it all back."""
        sqlite = self.sqlite
        done, last = 0, None
        # Every WalletOpened is projected before its money events, so the units are
        # known from this pass alone: no lookups into the tables being rebuilt.
        projection = LedgerProjection(self, lookup=_corrupt_log)
        with collector.paused(), self.datastore.transaction(commit=True) as curs:
            self.lock_projection(curs)
            for name, _ in SECONDARY_INDEXES:  # first: SQLite's DELETE then keeps no index level
                curs.execute(f"DROP INDEX IF EXISTS {name}")  # (1.0 s -> 0.5 s at 543k postings)
            self.clear_tables(curs)
            curs.execute(self.sql(f"DELETE FROM {self.tracking_table} WHERE application_name = ?"),
                         (APPLICATION_NAME,))
            curs.execute("DROP TABLE IF EXISTS ll_first_seen_stage")
            curs.execute(_FIRST_SEEN_STAGE)

            def in_this_transaction() -> Any:
                return nullcontext(curs)

            def projected() -> Iterator[Row]:
                nonlocal done, last
                for page in chain_store.pages(in_this_transaction, sqlite):
                    # Walked first: an altered row is named by the chain, not by
                    # the mapping it may break.
                    yield from page
                    events = [(row.position, EVENT_TYPES[row.topic], loads(row.state))
                              for row in page if row.topic in EVENT_TYPES]
                    if events:
                        self.write_rows(curs, projection.batch_rows(events), rebuilding=True)
                        done, last = done + len(events), events[-1][0]
                    advance(len(page))

            rows = projected()
            inspect(rows, lambda position: itertools.chain.from_iterable(
                chain_store.pages(in_this_transaction, sqlite, position)), curs)
            for _ in rows:
                pass  # the pages the inspection did not read
            curs.execute(_FIRST_SEEN_STAGED)
            curs.execute("DROP TABLE ll_first_seen_stage")
            for _, create in SECONDARY_INDEXES:
                curs.execute(create)
            checkpoints.lay_due(curs, self.sql)
            if last is not None:
                self._insert_tracking(curs, Tracking(APPLICATION_NAME, last))  # type: ignore[attr-defined]
        return done


def _corrupt_log(pro_id: str) -> WalletFacts:
    raise _altered(pro_id)


def _altered(pro_id: str) -> LedgerError:
    # The writer never records one (its rules need the wallet): the log was changed by hand.
    return LedgerError("log_damaged", f"the log has a money event for pro {pro_id!r} before its "
                       "WalletOpened: it was altered (run `leadledger verify`)")


class SQLiteLedgerView(LedgerViewMixin, SQLiteTrackingRecorder):
    placeholder = "?"
    tracking_table = "tracking"
    # SQLite serialises writers by itself: one write transaction at a time.

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *READ_MODEL_DDL]


class LedgerProjection(Projection[Any]):
    """Maps each domain event to read-model rows (see projections.journal)."""

    # The runner names the view's tracking table after the projection:
    # "leadledger_tracking" on PostgreSQL, as schema.sql creates it.
    name = "LeadLedger"

    def __init__(self, view: Any, lookup: Any = None):
        super().__init__(view)
        self._wallets: dict[str, WalletFacts] = {}
        self._lookup = lookup or view.wallet_lookup

    def wallet_of(self, pro_id: str) -> WalletFacts:
        if pro_id not in self._wallets:
            found = self._lookup(pro_id)
            if found is None:
                raise _altered(pro_id)
            self._wallets[pro_id] = found
        return self._wallets[pro_id]

    def batch_rows(self, events: Iterable[Stored]) -> list[tuple[int, str, str, Rows]]:
        """The rows of each event that feeds the read models."""
        batch = []
        for position, event_type, fields in events:
            rows = self.rows(event_type, fields)
            if rows is not None:
                event_id = uuid_text(fields["event_id"]) if rows.postings else ""
                batch.append((position, event_type, event_id, rows))
        return batch

    def rows(self, event_type: str, fields: Fields) -> Rows | None:
        at = sortable(fields["occurred_at"])
        rows = rows_for(event_type, fields, at, self.wallet_of)
        if rows is None:
            return None
        for pro_id, market, unit, card_currency, *_ in rows.wallets:
            self._wallets[pro_id] = WalletFacts(unit, card_currency, market)
        for pro_id, card_ref in rows.card_refs:
            self.wallet_of(pro_id).card_ref = card_ref
        if rows.postings:
            pro_id = rows.postings[0].pro_id
            assert pro_id is not None and all(p.pro_id == pro_id for p in rows.postings)
            rows.market = self.wallet_of(pro_id).market
        rows.occurred_at = at
        rows.contact_id = rows.contact_id or fields.get("contact_id")
        return rows

    def process_stored(self, events: list[Stored], tracking: Tracking) -> None:
        """Write a batch of decoded events (the catch-up's path) and its tracking record."""
        self.view.write(self.batch_rows(events), tracking)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """eventsourcing's ProjectionRunner (``follow``) hands live events: their
        fields are their attributes."""
        self.process_stored([(tracking.notification_id, type(domain_event).__name__, vars(domain_event))],
                            tracking)


def catch_up(app: Any, view: LedgerViewMixin, batch_size: int | None = None,
             start_progress: Callable[[int], Callable[[int], None]] | None = None) -> int:
    """Project every event recorded after the view's tracking position; returns how many.

    Two processes catching up at once cannot both write a position: the second
    one's tracking insert fails, its transaction rolls back and it starts over
    from the new position. ``start_progress(events_behind)`` is asked for a
    progress callback only when a first full batch shows there is a backlog, so
    a level view costs no extra query.
    """
    projection = LedgerProjection(view)
    batch_size = batch_size or CATCH_UP_BATCH
    done = 0
    behind: int | None = None  # known once a first full batch shows a backlog
    advance: Callable[[int], None] | None = None
    try:
        with collector.paused():  # see ledger/collector.py: a backlog is a rebuild's kind of pass
            while True:
                position = view.max_tracking_id(APPLICATION_NAME)  # type: ignore[attr-defined]
                events = view.stored_after(position or 0, batch_size)
                if not events:
                    return done
                if behind is None and len(events) == batch_size:
                    behind = (app.recorder.max_notification_id() or 0) - (position or 0)
                    if behind >= BACKLOG_EVENTS:
                        batch_size = max(batch_size, BACKLOG_BATCH)
                    if start_progress is not None:
                        advance = start_progress(behind)
                try:
                    projection.process_stored(events, Tracking(APPLICATION_NAME, events[-1][0]))
                except (IntegrityError, sqlite3.IntegrityError):
                    projection = LedgerProjection(view)  # another process got there first
                    continue
                done += len(events)
                if advance is not None:
                    advance(len(events))
    finally:
        if advance is not None:
            advance(-1)
