"""The materialised view: read-model tables plus a tracking record, written in
one transaction per batch of events, so a crash never double-counts or skips.

The view is an eventsourcing TrackingRecorder (SQLite or PostgreSQL) sharing
the application's datastore; ``LedgerProjection`` is an eventsourcing
``Projection`` over it. ``catch_up`` brings it level with the event log from
its last tracked position; every read command calls it first.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Iterable, Iterator, Sequence

from eventsourcing.persistence import ConnectionPoolClosedError, IntegrityError, Tracking
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from eventsourcing.utils import get_topic

from leadledger.errors import LedgerError
from leadledger.events import DOMAIN_EVENT_CLASSES, LEGACY_TOPICS
from leadledger.timefmt import sortable_utc
from leadledger.projections import checkpoints
from leadledger.projections.journal import Rows, WalletFacts, check_balanced, rows_for
from leadledger.projections.tables import READ_MODEL_DDL, READ_MODEL_TABLES, SECONDARY_INDEXES

APPLICATION_NAME = "LeadLedger"
# Receipts (SubmissionAccepted) feed no read model: the catch-up skips them in SQL.
DOMAIN_TOPICS = tuple(get_topic(cls) for cls in DOMAIN_EVENT_CLASSES.values()) + LEGACY_TOPICS
CATCH_UP_BATCH = 2000  # events per view transaction


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
_INSERT_FACT = _insert("ll_contact_facts", 7)
_INSERT_POSTING = _insert("ll_postings", 15)
COPY_TARGETS = {
    _INSERT_WALLET: _WALLET_TARGET,
    _INSERT_CONTACT: _CONTACT_TARGET,
    _INSERT_FACT: "ll_contact_facts",
    _INSERT_POSTING: "ll_postings",
}


class LedgerViewMixin:
    """Store-independent part of the view; subclasses set the parameter style."""

    placeholder = "?"
    tracking_table = "tracking"
    datastore: Any

    def sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def write(self, batch: Sequence[tuple[int, str, str, Rows]], tracking: Tracking) -> None:
        """Write the rows of a batch of events and the tracking record atomically."""
        with self.datastore.transaction(commit=True) as curs:
            self.lock_projection(curs)
            self.write_rows(curs, batch, keep_checkpoints=True)
            self._insert_tracking(curs, tracking)  # type: ignore[attr-defined]

    def lock_projection(self, curs: Any) -> None:
        """Serialise every writer of the read models (catch-ups and rebuilds)."""

    def clear_tables(self, curs: Any) -> None:
        for table in READ_MODEL_TABLES:
            curs.execute(f"DELETE FROM {table}")

    def write_rows(self, curs: Any, batch: Sequence[tuple[int, str, str, Rows]], *,
                   keep_checkpoints: bool) -> None:
        """``keep_checkpoints``: keep the checkpointed totals level too (a rebuild lays
        them all once its postings are in and indexed)."""
        wallets, contacts, first_seen, facts, postings, cards = [], [], [], [], [], []
        for position, event_type, event_id, rows in batch:
            wallets.extend((*row, position) for row in rows.wallets)
            contacts.extend((*row, position) for row in rows.contacts)
            first_seen.extend((at, contact_id, at) for contact_id, at in rows.first_seen)
            cards.extend((card_ref, pro_id) for pro_id, card_ref in rows.card_refs)
            facts.extend((position, seq, *fact) for seq, fact in enumerate(rows.facts))
            check_balanced(rows.postings)
            postings.extend(
                (position, seq, rows.occurred_at, event_type, event_id, p.pro_id, rows.contact_id, p.kind,
                 p.account, p.unit, p.debit, p.credit, rows.market, rows.reason, rows.ref)
                for seq, p in enumerate(rows.postings)
            )
        for statement, params in (
            (_INSERT_WALLET, wallets),
            (_CARD_REF, cards),
            (_INSERT_CONTACT, contacts),
            (_FIRST_SEEN, first_seen),
            (_INSERT_FACT, facts),
            (_INSERT_POSTING, postings),
        ):
            if params:
                self.write_statement(curs, statement, params)
        if keep_checkpoints:
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

    def rebuild(self, app: Any, batch_size: int = CATCH_UP_BATCH,
                advance: Callable[[int], None] = lambda n: None) -> int:
        """Empty the read models and project the whole log again, in ONE transaction
        under the projection lock: a concurrent catch-up waits for it (then finds the
        views level), and a reader sees the old views or the new ones, never a
        half-built one (PostgreSQL readers wait for the commit; SQLite readers keep
        reading the last committed snapshot). Returns the number of events projected."""
        done, position = 0, None
        # Every WalletOpened is projected before its money events, so the units are
        # known from this pass alone: no lookups into the tables being rebuilt.
        projection = LedgerProjection(self, lookup=_corrupt_log)
        with self.datastore.transaction(commit=True) as curs:
            self.lock_projection(curs)
            self.clear_tables(curs)
            for name, _ in SECONDARY_INDEXES:
                curs.execute(f"DROP INDEX IF EXISTS {name}")
            curs.execute(self.sql(f"DELETE FROM {self.tracking_table} WHERE application_name = ?"),
                         (APPLICATION_NAME,))
            while True:
                notifications = app.recorder.select_notifications(
                    start=position, limit=batch_size, inclusive_of_start=False, topics=DOMAIN_TOPICS)
                if not notifications:
                    break
                self.write_rows(curs, projection.batch_rows(
                    (app.mapper.to_domain_event(n), n.id) for n in notifications), keep_checkpoints=False)
                position = notifications[-1].id
                done += len(notifications)
                advance(len(notifications))
            for _, create in SECONDARY_INDEXES:
                curs.execute(create)
            checkpoints.lay_due(curs, self.sql)
            if position is not None:
                self._insert_tracking(curs, Tracking(APPLICATION_NAME, position))  # type: ignore[attr-defined]
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

    def batch_rows(self, events: Iterable[tuple[Any, int]]) -> list[tuple[int, str, str, Rows]]:
        return [(position, type(event).__name__, str(getattr(event, "event_id", "")), self.rows(event))
                for event, position in events]

    def rows(self, domain_event: Any) -> Rows:
        rows = rows_for(domain_event, self.wallet_of)
        for pro_id, market, unit, card_currency, *_ in rows.wallets:
            self._wallets[pro_id] = WalletFacts(unit, card_currency, market)
        for pro_id, card_ref in rows.card_refs:
            self.wallet_of(pro_id).card_ref = card_ref
        if rows.postings:
            pro_id = rows.postings[0].pro_id
            assert pro_id is not None and all(p.pro_id == pro_id for p in rows.postings)
            rows.market = self.wallet_of(pro_id).market
        rows.occurred_at = sortable_utc(domain_event.occurred_at)
        rows.contact_id = rows.contact_id or getattr(domain_event, "contact_id", None)
        return rows

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Iterable[tuple[Any, Tracking]]) -> None:
        batch = list(batch)
        if batch:
            written = self.batch_rows((event, tracking.notification_id) for event, tracking in batch)
            self.view.write(written, batch[-1][1])


def catch_up(app: Any, view: LedgerViewMixin, batch_size: int = CATCH_UP_BATCH,
             start_progress: Callable[[int], Callable[[int], None]] | None = None) -> int:
    """Project every event recorded after the view's tracking position; returns how many.

    Two processes catching up at once cannot both write a position: the second
    one's tracking insert fails, its transaction rolls back and it starts over
    from the new position. ``start_progress(events_behind)`` is asked for a
    progress callback only when a first full batch shows there is a backlog, so
    a level view costs no extra query.
    """
    projection = LedgerProjection(view)
    done = 0
    advance: Callable[[int], None] | None = None
    try:
        while True:
            position = view.max_tracking_id(APPLICATION_NAME)  # type: ignore[attr-defined]
            notifications = app.recorder.select_notifications(
                start=position, limit=batch_size, inclusive_of_start=False, topics=DOMAIN_TOPICS
            )
            if not notifications:
                return done
            if advance is None and start_progress is not None and len(notifications) == batch_size:
                advance = start_progress((app.recorder.max_notification_id() or 0) - (position or 0))
            batch = [
                (app.mapper.to_domain_event(n), Tracking(APPLICATION_NAME, n.id))
                for n in notifications
            ]
            try:
                projection.process_batch(batch)
            except (IntegrityError, sqlite3.IntegrityError):
                projection = LedgerProjection(view)  # another process got there first
                continue
            done += len(batch)
            if advance is not None:
                advance(len(batch))
    finally:
        if advance is not None:
            advance(-1)
