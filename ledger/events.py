"""Recorded events. Each records a decision with its amounts, so replaying the
log never re-runs today's policy.

Every event carries ``event_id`` (the submission that caused it; the sweep
derives one), ``occurred_at`` (UTC) and ``recorded_by``: who had it recorded
(``key:NAME`` for the service's keys, ``cli:USER`` for the CLI, ``api:USER``
for the Python API; None in logs from before 0.6). It is stored in the event,
so the hash chain covers it. The event's class name is its type in
the log. Events are applied to their aggregate by ``aggregate.when(event)``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import field
from datetime import date, datetime
from typing import Any, Callable
from uuid import UUID

from eventsourcing.domain import TZINFO, Aggregate
from eventsourcing.utils import resolve_topic


_HANDLERS: dict[tuple[type, type], Callable[[Any, Any], None]] = {}


def _handler(aggregate_class: type, event_class: type) -> Callable[[Any, Any], None]:
    """The aggregate's ``when`` overload for the event class, looked up once.

    ``singledispatchmethod`` builds a bound wrapper (functools.update_wrapper)
    on every attribute access before Python 3.12: ~9 us per applied event, a
    tenth of an append. The registry it keeps is used as it is.
    """
    handler = _HANDLERS.get((aggregate_class, event_class))
    if handler is None:
        for klass in aggregate_class.__mro__:
            method = vars(klass).get("when")
            if method is not None:
                break
        handler = _HANDLERS[(aggregate_class, event_class)] = method.dispatcher.dispatch(event_class)
    return handler


@functools.cache
def _fields_of(event_class: type) -> tuple[tuple[str, ...], dict[str, Any]]:
    """An event class's fields in declaration order (the order its __init__ sets
    them, so the order of its stored state's keys) and their defaults."""
    fields = dataclasses.fields(event_class)
    return (tuple(f.name for f in fields),
            {f.name: f.default for f in fields if f.default is not dataclasses.MISSING})


def build(event_class: type, originator_id: UUID, originator_version: int, fields: dict[str, Any]) -> Any:
    """``event_class(originator_id=..., originator_version=..., timestamp=now, **fields)``
    without the frozen dataclass's __init__, which sets each field through
    ``object.__setattr__`` and checks the id's type: the same object (same
    ``vars()``, key order included) in about half the time. The timestamp is
    eventsourcing's ``create_timestamp()``, which no event here overrides.
    ``LedgerAggregate`` builds every event the rules record this way."""
    names, defaults = _fields_of(event_class)
    given = {**defaults, **fields, "originator_id": originator_id, "originator_version": originator_version,
             "timestamp": datetime.now(tz=TZINFO)}
    if len(given) == len(names) and type(originator_id) is UUID:
        try:
            state = {name: given[name] for name in names}
        except KeyError:  # as many fields as declared, but not the declared ones
            pass
        else:
            event = object.__new__(event_class)
            object.__setattr__(event, "__dict__", state)
            return event
    return event_class(**given)  # a missing or unknown field, or another id: the dataclass says what


class LedgerEvent(Aggregate.Event):
    event_id: UUID
    occurred_at: datetime
    # Keyword-only with a default: the rules never set it (the unit of work stamps
    # it, see commands.UnitOfWork.collect) and events stored before 0.6 lack it.
    recorded_by: str | None = field(default=None, kw_only=True)

    def apply(self, aggregate: Any) -> None:
        _handler(type(aggregate), type(self))(aggregate, self)


class LedgerCreated(Aggregate.Created):
    event_id: UUID
    occurred_at: datetime
    # Keyword-only with a default: the rules never set it (the unit of work stamps
    # it, see commands.UnitOfWork.collect) and events stored before 0.6 lack it.
    recorded_by: str | None = field(default=None, kw_only=True)

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's Created.mutate without its generic part: it matches the
        event's fields against ``__init__`` signatures on every call (~15 us),
        and these aggregates take their whole state from ``when``, no __init__."""
        assert aggregate is None
        aggregate_class = resolve_topic(self.originator_topic)
        assert aggregate_class.__init__ is object.__init__, "state comes from `when`"
        aggregate = aggregate_class.__new__(aggregate_class)
        aggregate.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        self.apply(aggregate)
        return aggregate

    def apply(self, aggregate: Any) -> None:
        _handler(type(aggregate), type(self))(aggregate, self)


# --- wallet (one per pro): everything that moves the pro's money -------------


class WalletOpened(LedgerCreated):
    pro_id: str
    market: str
    region: str
    policy_version: int
    unit: str
    card_currency: str


class CreditsPurchased(LedgerEvent):
    pro_id: str
    amount: int
    payment_ref: str


class AdvanceRepaid(LedgerEvent):
    pro_id: str
    amount: int


class CardRegistered(LedgerEvent):
    pro_id: str
    card_ref: str


class CronosAdvanced(LedgerEvent):
    pro_id: str
    contact_id: str
    amount: int


class ContactFeeCharged(LedgerEvent):
    pro_id: str
    contact_id: str
    commission: int
    management_fee: int
    paid_from: str  # "wallet" or "card"
    refundable: int  # what a refund of this charge returns, decided now


class QuoteFeeRefunded(LedgerEvent):
    pro_id: str
    contact_id: str
    amount: int
    reason: str


class CourtesyCreditIssued(LedgerEvent):
    pro_id: str
    amount: int
    reason: str
    issued_by: dict[str, str]
    approved_by: dict[str, str] | None
    fee_ref: str | None
    dispute_amount: int | None


# --- contact (one per contact_id): the life of a bought lead -----------------


class QuoteSent(LedgerCreated):
    contact_id: str
    pro_id: str
    request_id: str
    customer_id: str
    category: str
    job_date: date
    pricing: str
    commission: int
    management_fee: int
    market: str
    refund_deadline: datetime  # decided now: the window closes at this instant
    unread_refund_due: datetime | None  # pro360 manual: sent + 48 h


class QuoteRead(LedgerEvent):
    contact_id: str


class CustomerReplied(LedgerEvent):
    contact_id: str
    channel: str


class CallAttemptFailed(LedgerEvent):
    contact_id: str
    reason: str


class CallConnectionStopped(LedgerEvent):
    contact_id: str
    failed_attempts: int


class CallMinutesBilled(LedgerEvent):
    contact_id: str
    pro_id: str
    call_id: str
    duration_seconds: int
    billable_minutes: int
    amount: int
    currency: str


class RefundRequested(LedgerEvent):
    contact_id: str
    reason: str


class RefundPostponed(LedgerEvent):
    contact_id: str
    until: date


class ServiceConfirmed(LedgerEvent):
    contact_id: str


class RefundRectified(LedgerEvent):
    contact_id: str


# --- customer: terminated for abuse ------------------------------------------


class CustomerTerminated(LedgerCreated):
    customer_id: str
    contact_id: str
    reason: str


# --- legacy: receipts were aggregates before 0.2 ------------------------------
# Stores initialised earlier hold them in the event log; `leadledger init` copies
# them into the receipts table. Nothing records this event any more.


class SubmissionAccepted(LedgerCreated):
    submission_type: str
    content_sha256: str
    recorded: list[str]


DOMAIN_EVENT_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        WalletOpened,
        CreditsPurchased,
        AdvanceRepaid,
        CardRegistered,
        CronosAdvanced,
        ContactFeeCharged,
        QuoteFeeRefunded,
        CourtesyCreditIssued,
        QuoteSent,
        QuoteRead,
        CustomerReplied,
        CallAttemptFailed,
        CallConnectionStopped,
        CallMinutesBilled,
        RefundRequested,
        RefundPostponed,
        ServiceConfirmed,
        RefundRectified,
        CustomerTerminated,
    )
}

# Before 0.3 the package's import name was `ledger`: stores written then hold
# topics such as "ledger.events:QuoteSent". Both names resolve to one class.
LEGACY_MODULE = "ledger.events"
LEGACY_TOPICS = tuple(f"{LEGACY_MODULE}:{name}" for name in DOMAIN_EVENT_CLASSES)
