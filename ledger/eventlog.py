"""The recorded log as plain JSON objects, and back.

One object per domain event, in recording order: ``type``, ``originator_id``,
``originator_version``, ``event_id``, ``occurred_at``, ``recorded_by`` and the
event's fields.
Idempotency receipts and the store's own timestamps are left out, so the same
submissions give the same log, byte for byte, on any store.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any, Iterator
from uuid import UUID

from eventsourcing.utils import get_topic

from leadledger.aggregates import Contact, Customer, Wallet
from leadledger.events import DOMAIN_EVENT_CLASSES, LedgerCreated
from leadledger.limits import EARLIEST, LATEST, LATEST_DECIDED, MAX_AMOUNT
from leadledger.timefmt import format_utc, parse_utc

PAGE_SIZE = 1000
# A tracking row ``replay`` leaves: the log up to its position was recorded as it
# was, without receipts (the log carries no submission content to digest), so
# verify does not ask those events for one.
REPLAYED = "__replayed__"
_CREATED_BY = {"WalletOpened": Wallet, "QuoteSent": Contact, "CustomerTerminated": Customer}
_BASE_FIELDS = ("originator_id", "originator_version", "timestamp", "originator_topic",
                "event_id", "occurred_at")
# What a recorded value can be (replay takes a log from outside: a hand-edited or
# hostile one must be refused line by line, not reach the read models, where a
# string amount was an internal error and a NUL in an id made every catch-up retry
# forever). Loose enough for any log a ledger wrote: ids of older rules included.
MAX_TEXT_CHARS = 1024
MAX_VERSION = 2**62


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def to_record(event: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": type(event).__name__,
        "originator_id": str(event.originator_id),
        "originator_version": event.originator_version,
        "event_id": str(event.event_id),
        "occurred_at": format_utc(event.occurred_at),
    }
    for f in dataclasses.fields(event):
        if f.name not in _BASE_FIELDS:
            record[f.name] = _plain(getattr(event, f.name))
    return record


def to_line(event: Any) -> str:
    return json.dumps(to_record(event), ensure_ascii=False, separators=(",", ":"))


class LogError(ValueError):
    pass


def from_record(record: dict[str, Any], recorded_at: datetime) -> Any:
    """Rebuild the domain event a log line describes (for replay)."""
    try:
        cls = DOMAIN_EVENT_CLASSES[record["type"]]
    except KeyError:
        raise LogError(f"unknown event type {record.get('type')!r}") from None
    version = record["originator_version"]
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise LogError(f"originator_version: {_shown(version)} is not a whole number 1..2**62")
    kwargs: dict[str, Any] = {
        "originator_id": UUID(_text("originator_id", record["originator_id"])),
        "originator_version": version,
        "timestamp": recorded_at,
        "event_id": UUID(_text("event_id", record["event_id"])),
        "occurred_at": _instant("occurred_at", parse_utc(_text("occurred_at", record["occurred_at"]))),
    }
    if issubclass(cls, LedgerCreated):
        kwargs["originator_topic"] = get_topic(_CREATED_BY[cls.__name__])
    for f in dataclasses.fields(cls):
        if f.name in _BASE_FIELDS:
            continue
        if f.name not in record:
            if f.default is None:  # recorded_by: logs from before 0.6 lack it
                continue
            raise LogError(f"{record['type']} without field {f.name!r}")
        kwargs[f.name] = _value(f.name, str(f.type), record[f.name])
    return cls(**kwargs)


# Instants a rule decided (QuoteSent's), not a sender's: read to limits.LATEST_DECIDED.
DECIDED_INSTANTS = frozenset({"refund_deadline", "unread_refund_due"})


def _value(name: str, kind: str, value: Any) -> Any:
    """A recorded field's value, checked against its declared type and the ledger's limits."""
    if value is None and kind.endswith(" | None"):
        return None
    kind = kind.removesuffix(" | None")
    if kind == "int":
        if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
            raise LogError(f"{name}: {_shown(value)} is not a whole number 0..{MAX_AMOUNT}")
        return value
    if kind == "str":
        return _text(name, value)
    if kind == "date":
        day = date.fromisoformat(_text(name, value))
        if not EARLIEST.date() <= day <= LATEST.date():
            raise LogError(f"{name}: {value} is outside 1970..2999")
        return day
    if kind == "datetime":
        # A rule's decision may fall after 2999 (limits.LATEST_DECIDED).
        return _instant(name, parse_utc(_text(name, value)),
                        latest=LATEST_DECIDED if name in DECIDED_INSTANTS else LATEST)
    if kind == "dict[str, str]":
        if type(value) is not dict:
            raise LogError(f"{name}: {_shown(value)} is not an object of texts")
        return {_text(name, key): _text(name, item) for key, item in value.items()}
    raise LogError(f"{name}: a field of type {kind} is not read from a log")  # a new field type: say so


def _text(name: str, value: Any) -> str:
    if type(value) is not str or len(value) > MAX_TEXT_CHARS:
        raise LogError(f"{name}: {_shown(value)} is not text of at most {MAX_TEXT_CHARS} characters")
    if not value.isprintable() and any(_unstorable(c) for c in value):  # printable: the common case, one pass
        raise LogError(f"{name}: {_shown(value)} holds a control character or a lone surrogate")
    return value


def _unstorable(char: str) -> bool:
    """A control character (NUL first: PostgreSQL text refuses it) or a lone
    surrogate (UTF-8 cannot hold it)."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


def _instant(name: str, moment: datetime, latest: datetime = LATEST) -> datetime:
    if not EARLIEST <= moment <= latest:
        raise LogError(f"{name}: {format_utc(moment)} is outside {EARLIEST.year}..{latest.year}")
    return moment


def _shown(value: Any) -> str:
    return repr(value)[:40]


def page(app: Any, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The log's feed: up to ``limit`` events after position ``after``, each as
    ``to_record`` makes it plus its ``position``; and the position to ask after
    next (the last one read, past any legacy receipt rows skipped)."""
    assert 0 < limit <= PAGE_SIZE
    records: list[dict[str, Any]] = []
    last = after
    for notification in app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False):
        last = notification.id
        if notification.topic != _RECEIPT_TOPIC:
            records.append({"position": notification.id, **to_record(app.mapper.to_domain_event(notification))})
    return records, last


_RECEIPT_TOPIC = "ledger.events:SubmissionAccepted"  # 0.1's receipts, kept in old logs


def iter_events(app: Any, stop: int | None = None) -> Iterator[Any]:
    """Every domain event of the store (up to position ``stop``), in recording order."""
    position: int | None = None
    receipt_topic = _RECEIPT_TOPIC
    while True:
        page = app.recorder.select_notifications(start=position, limit=PAGE_SIZE, stop=stop,
                                                 inclusive_of_start=False)
        if not page:
            return
        for notification in page:
            if notification.topic != receipt_topic:
                yield app.mapper.to_domain_event(notification)
        position = page[-1].id
