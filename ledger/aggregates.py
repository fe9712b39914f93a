"""Aggregates: the state each rule needs, rebuilt from recorded events.

Command methods here only record decisions already taken (see
``ledger.commands``); they assert invariants and never reject. Ids are
derived from business keys with uuid5, so the same key always finds the same
aggregate, in any store.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache, singledispatchmethod
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from leadledger import events as ev
from leadledger.timefmt import ONE_US, epoch_us, from_epoch_us

NAMESPACE = uuid5(NAMESPACE_URL, "https://leadledger.invalid/aggregates")
ID_CACHE_SIZE = 1 << 16  # business key -> uuid5 per kind: a chunk asks for each id 3-4 times


# ContactMoney packed: the number of charges, then each charge (at in epoch
# microseconds, total, refundable), then each refund (at, amount); amounts are
# bounded far below 2**63 (limits.MAX_AMOUNT).
_COUNT = struct.Struct("<I")
_CHARGE = struct.Struct("<qqq")
_REFUND = struct.Struct("<qq")


@lru_cache(maxsize=ID_CACHE_SIZE)
def wallet_id(pro_id: str) -> UUID:
    return uuid5(NAMESPACE, f"wallet:{pro_id}")


@lru_cache(maxsize=ID_CACHE_SIZE)
def contact_id_to_uuid(contact_id: str) -> UUID:
    return uuid5(NAMESPACE, f"contact:{contact_id}")


@lru_cache(maxsize=ID_CACHE_SIZE)
def customer_id_to_uuid(customer_id: str) -> UUID:
    return uuid5(NAMESPACE, f"customer:{customer_id}")


class LedgerAggregate(Aggregate):
    """eventsourcing's Aggregate, its events built (``events.build``) and applied
    the lean way. ``trigger_event`` and ``_create`` copy, check and match their
    keyword arguments generically and build each event through its frozen
    dataclass's __init__: a seventh of a bulk append (py-spy). These aggregates
    take every event from ``record`` and their creating classmethods, which do
    what those two do (the next version, the timestamp, the event applied, then
    pending) and nothing else; ``tests/test_hot_path.py`` holds them to it."""

    def _record(self, event_class: type, fields: dict[str, Any]) -> None:
        version = self._version + 1
        event = ev.build(event_class, self._id, version, fields)
        event.apply(self)
        self._version = version
        self._modified_on = event.timestamp
        self._pending_events.append(event)

    @classmethod
    def _created(cls, event_class: type, originator_id: UUID, fields: dict[str, Any]) -> Any:
        fields["originator_topic"] = _TOPICS[cls]
        event = ev.build(event_class, originator_id, cls.INITIAL_VERSION, fields)
        aggregate = cls.__new__(cls)
        aggregate.__base_init__(originator_id, cls.INITIAL_VERSION, event.timestamp)
        event.apply(aggregate)
        aggregate._pending_events.append(event)
        return aggregate


# --- wallet ------------------------------------------------------------------


@dataclass(slots=True)
class ContactMoney:
    """What one contact cost the pro: charges and refunds with their times.

    A wallet keeps one per contact it ever paid for, which makes it most of a
    long-lived wallet's memory: the wallet holds them packed (``pack``: 24 bytes
    a charge, 16 a refund, where the objects took ~270 for one charge) and
    ``Wallet.money`` unpacks the one a rule asks about."""

    charges: tuple[tuple[datetime, int, int], ...] = ()  # at, total, refundable
    refunds: tuple[tuple[datetime, int], ...] = ()  # at, amount

    def pack(self) -> bytes:
        return b"".join([_COUNT.pack(len(self.charges)),
                         *(_CHARGE.pack(epoch_us(at), total, refundable) for at, total, refundable in self.charges),
                         *(_REFUND.pack(epoch_us(at), amount) for at, amount in self.refunds)])

    @staticmethod
    def _rows(packed: bytes) -> tuple[Any, Any]:
        """The packed charges and refunds, as rows of integers."""
        (count,) = _COUNT.unpack_from(packed)
        split = _COUNT.size + count * _CHARGE.size
        return _CHARGE.iter_unpack(packed[_COUNT.size:split]), _REFUND.iter_unpack(packed[split:])

    @classmethod
    def unpack(cls, packed: bytes) -> "ContactMoney":
        charges, refunds = cls._rows(packed)
        return cls(tuple((from_epoch_us(at_us), total, refundable) for at_us, total, refundable in charges),
                   tuple((from_epoch_us(at_us), amount) for at_us, amount in refunds))

    @classmethod
    def last_us(cls, packed: bytes) -> int:
        """The latest charge or refund of a packed entry, in epoch microseconds
        (no datetimes made)."""
        charges, refunds = cls._rows(packed)
        return max([row[0] for row in charges] + [row[0] for row in refunds])

    def charged_by(self, at: datetime) -> int:
        return sum(total for when, total, _ in self.charges if when <= at)

    def refundable_by(self, at: datetime) -> int:
        return sum(refundable for when, _, refundable in self.charges if when <= at)

    @property
    def charged_total(self) -> int:
        return sum(total for _, total, _ in self.charges)

    @property
    def refunded_total(self) -> int:
        return sum(amount for _, amount in self.refunds)

    def refunded_by(self, at: datetime) -> bool:
        return any(when <= at for when, _ in self.refunds)


@dataclass(frozen=True)
class WalletPosition:
    """The wallet seen from one instant: what is there and what later facts need."""

    balance: int  # balance at the instant
    headroom: int  # lowest balance from the instant on
    advance: int  # outstanding advance at the instant
    advance_peak: int  # highest outstanding advance from the instant on
    advance_floor: int  # lowest outstanding advance from the instant on


class Wallet(LedgerAggregate):
    """One per pro: the wallet, its advance and its card, with a timeline.

    Submissions arrive late and out of order, so the wallet keeps its balance
    changes ordered by ``occurred_at``: a late debit is allowed only if no later
    balance would go below zero, which keeps invariant 3 true at every as-of time.
    """

    @singledispatchmethod
    def when(self, event: Any) -> None:
        raise AssertionError(f"Wallet cannot apply {type(event).__name__}")

    @when.register
    def _(self, event: ev.WalletOpened) -> None:
        self.pro_id = event.pro_id
        self.market = event.market
        self.region = event.region
        self.policy_version = event.policy_version
        self.opened_at: datetime = event.occurred_at
        self.unit = event.unit
        self.card_registered_at: datetime | None = None
        self.courtesy_credits = 0
        self.contacts: dict[str, bytes] = {}  # contact_id -> ContactMoney.pack()
        # The balance changes in time order (equal times: in the order recorded),
        # as three parallel arrays of 64-bit integers: 24 bytes a change, where a
        # tuple with a datetime took ~200 (a wallet keeps every change it had).
        self._times_us = array("q")  # occurred_at, microseconds since the epoch
        self._balance_deltas = array("q")
        self._advance_deltas = array("q")
        self.balance = 0
        self.advance_outstanding = 0
        # Set once ``compact`` dropped history: the instant (epoch microseconds)
        # from which this wallet still answers; None: it holds its whole history.
        self.horizon_us: int | None = None

    def _move(self, at: datetime, balance_delta: int, advance_delta: int) -> None:
        at_us = epoch_us(at)
        index = bisect.bisect_right(self._times_us, at_us)  # after the changes at the same instant
        self._times_us.insert(index, at_us)
        self._balance_deltas.insert(index, balance_delta)
        self._advance_deltas.insert(index, advance_delta)
        self.balance += balance_delta
        self.advance_outstanding += advance_delta
        assert self.balance >= 0, f"wallet {self.pro_id} below zero: {self.balance}"
        assert self.advance_outstanding >= 0, self.advance_outstanding

    def covers(self, at: datetime) -> bool:
        """Whether this wallet answers for ``at``: a compacted wallet dropped the
        balance changes and contacts' money from before its horizon."""
        return self.horizon_us is None or epoch_us(at) >= self.horizon_us

    def position_at(self, at: datetime) -> WalletPosition:
        # Exact for any instant from the horizon on: a position is the balance
        # less the changes after the instant, and none of those was dropped.
        at_us = epoch_us(at)
        assert self.horizon_us is None or at_us >= self.horizon_us, \
            f"wallet {self.pro_id} compacted from {self.horizon_us}: load it whole to judge {at_us}"
        start = bisect.bisect_right(self._times_us, at_us)
        balance = self.balance - sum(self._balance_deltas[start:])
        advance = self.advance_outstanding - sum(self._advance_deltas[start:])
        headroom, peak, floor = balance, advance, advance
        running_balance, running_advance = balance, advance
        for balance_delta, advance_delta in zip(self._balance_deltas[start:], self._advance_deltas[start:]):
            running_balance += balance_delta
            running_advance += advance_delta
            headroom = min(headroom, running_balance)
            peak = max(peak, running_advance)
            floor = min(floor, running_advance)
        return WalletPosition(balance, headroom, advance, peak, floor)

    def money(self, contact: Any) -> ContactMoney:
        """What ``contact`` (a Contact of this pro) cost: its charges all come on or
        after its ``sent_at``, so a compacted wallet holds them whole from its horizon on."""
        assert self.covers(contact.sent_at), \
            f"wallet {self.pro_id} compacted from {self.horizon_us}: load it whole to judge {contact.contact_id}"
        return self._money(contact.contact_id)

    def _money(self, contact_id: str) -> ContactMoney:
        packed = self.contacts.get(contact_id)
        return ContactMoney() if packed is None else ContactMoney.unpack(packed)

    def compact(self, keep: timedelta) -> bool:
        """Drop what no decision from ``keep`` before this wallet's latest fact on can
        read: balance changes before that horizon and the money of contacts whose
        every charge and refund is before it. Returns whether anything was dropped.

        Memory then follows the wallet's recent activity, not the log's length
        (issue 9). A submission judged before the horizon, or naming a contact
        sent before it, needs the whole wallet: the application loads it from the
        log first (``Ledger._load_whole_where_needed``); the asserts above hold
        that line. Totals (balance, outstanding advance) are never compacted."""
        assert not self.pending_events, "only committed state is compacted"
        latest_us = self._times_us[-1] if self._times_us else None
        last_of: dict[str, int] = {}
        for contact_id, packed in self.contacts.items():
            last_us = ContactMoney.last_us(packed)
            last_of[contact_id] = last_us
            latest_us = last_us if latest_us is None or last_us > latest_us else latest_us
        if latest_us is None:
            return False
        horizon_us = latest_us - keep // ONE_US
        drop = bisect.bisect_left(self._times_us, horizon_us)
        gone = [contact_id for contact_id, last_us in last_of.items() if last_us < horizon_us]
        if not drop and not gone:
            return False
        del self._times_us[:drop], self._balance_deltas[:drop], self._advance_deltas[:drop]
        for contact_id in gone:
            del self.contacts[contact_id]
        self.horizon_us = horizon_us if self.horizon_us is None else max(self.horizon_us, horizon_us)
        return True

    def card_registered_by(self, at: datetime) -> bool:
        return self.card_registered_at is not None and self.card_registered_at <= at

    @when.register
    def _(self, event: ev.CreditsPurchased) -> None:
        self._move(event.occurred_at, event.amount, 0)

    @when.register
    def _(self, event: ev.AdvanceRepaid) -> None:
        self._move(event.occurred_at, -event.amount, -event.amount)

    @when.register
    def _(self, event: ev.CardRegistered) -> None:
        if self.card_registered_at is None or event.occurred_at < self.card_registered_at:
            self.card_registered_at = event.occurred_at

    @when.register
    def _(self, event: ev.CronosAdvanced) -> None:
        self._move(event.occurred_at, event.amount, event.amount)

    @when.register
    def _(self, event: ev.ContactFeeCharged) -> None:
        total = event.commission + event.management_fee
        assert total > 0 and 0 <= event.refundable <= total
        if event.paid_from == "wallet":
            self._move(event.occurred_at, -total, 0)
        else:
            assert event.paid_from == "card", event.paid_from
        # After a compaction this may be the entry of a contact whose older charges
        # were dropped: never read (Wallet.money asks for contacts sent from the horizon on).
        money = self._money(event.contact_id)
        money.charges += ((event.occurred_at, total, event.refundable),)
        self.contacts[event.contact_id] = money.pack()

    @when.register
    def _(self, event: ev.QuoteFeeRefunded) -> None:
        money = self._money(event.contact_id)
        if self.horizon_us is None:  # a compacted wallet may have dropped the charge
            assert event.contact_id in self.contacts, "a refund follows a charge"
            assert not money.refunds, "at most one refund per contact"
            assert 0 < event.amount <= money.refundable_by(event.occurred_at)
        money.refunds += ((event.occurred_at, event.amount),)
        self.contacts[event.contact_id] = money.pack()
        self._move(event.occurred_at, event.amount, 0)

    @when.register
    def _(self, event: ev.CourtesyCreditIssued) -> None:
        self.courtesy_credits += 1
        self._move(event.occurred_at, event.amount, 0)

    # Commands: record decisions taken by ledger.commands.

    @classmethod
    def open(cls, event_id: UUID, at: datetime, **fields: Any) -> "Wallet":
        return cls._created(ev.WalletOpened, wallet_id(fields["pro_id"]),
                            {"event_id": event_id, "occurred_at": at, **fields})

    def record(self, event_class: type[ev.LedgerEvent], event_id: UUID, at: datetime, **fields: Any) -> None:
        self._record(event_class, {"event_id": event_id, "occurred_at": at, "pro_id": self.pro_id, **fields})


# --- contact -----------------------------------------------------------------


class Contact(LedgerAggregate):
    """One per contact_id: quote, reads and replies, calls, refund requests."""

    @singledispatchmethod
    def when(self, event: Any) -> None:
        raise AssertionError(f"Contact cannot apply {type(event).__name__}")

    @when.register
    def _(self, event: ev.QuoteSent) -> None:
        self.contact_id = event.contact_id
        self.pro_id = event.pro_id
        self.customer_id = event.customer_id
        self.category = event.category
        self.job_date: date = event.job_date
        self.pricing = event.pricing
        self.commission = event.commission
        self.management_fee = event.management_fee
        self.market = event.market
        self.sent_at: datetime = event.occurred_at
        self.refund_deadline: datetime = event.refund_deadline
        self.unread_refund_due: datetime | None = event.unread_refund_due
        self.first_seen_at: datetime | None = None  # earliest read or reply
        self.successful_contact = False
        self.failed_streak = 0
        self.calls_stopped = False
        self.call_ids: set[str] = set()
        self.refund_requested = False
        self.postponed_until: date | None = None
        self.confirmed_at: datetime | None = None
        self.rectified_at: datetime | None = None

    @property
    def fee(self) -> int:
        return self.commission + self.management_fee

    def _seen(self, at: datetime) -> None:
        if self.first_seen_at is None or at < self.first_seen_at:
            self.first_seen_at = at

    @when.register
    def _(self, event: ev.QuoteRead) -> None:
        self._seen(event.occurred_at)

    @when.register
    def _(self, event: ev.CustomerReplied) -> None:
        self._seen(event.occurred_at)
        self.successful_contact = True
        self.failed_streak = 0
        self.calls_stopped = False

    @when.register
    def _(self, event: ev.CallAttemptFailed) -> None:
        self.failed_streak += 1

    @when.register
    def _(self, event: ev.CallConnectionStopped) -> None:
        self.calls_stopped = True

    @when.register
    def _(self, event: ev.CallMinutesBilled) -> None:
        self.call_ids.add(event.call_id)
        self.successful_contact = True
        self.failed_streak = 0

    @when.register
    def _(self, event: ev.RefundRequested) -> None:
        self.refund_requested = True

    @when.register
    def _(self, event: ev.RefundPostponed) -> None:
        self.postponed_until = event.until

    @when.register
    def _(self, event: ev.ServiceConfirmed) -> None:
        self.confirmed_at = event.occurred_at

    @when.register
    def _(self, event: ev.RefundRectified) -> None:
        self.rectified_at = event.occurred_at

    @classmethod
    def send(cls, event_id: UUID, at: datetime, **fields: Any) -> "Contact":
        return cls._created(ev.QuoteSent, contact_id_to_uuid(fields["contact_id"]),
                            {"event_id": event_id, "occurred_at": at, **fields})

    def record(self, event_class: type[ev.LedgerEvent], event_id: UUID, at: datetime, **fields: Any) -> None:
        self._record(event_class, {"event_id": event_id, "occurred_at": at, "contact_id": self.contact_id,
                                    **fields})


# --- customer ----------------------------------------------------------------


class Customer(LedgerAggregate):
    """Exists only once a customer is terminated (recruiter, advertiser, price check)."""

    @singledispatchmethod
    def when(self, event: Any) -> None:
        raise AssertionError(f"Customer cannot apply {type(event).__name__}")

    @when.register
    def _(self, event: ev.CustomerTerminated) -> None:
        self.customer_id = event.customer_id
        self.terminated_at: datetime = event.occurred_at

    @classmethod
    def terminate(cls, event_id: UUID, at: datetime, customer_id: str, contact_id: str, reason: str) -> "Customer":
        return cls._created(ev.CustomerTerminated, customer_id_to_uuid(customer_id),
                            {"event_id": event_id, "occurred_at": at, "customer_id": customer_id,
                             "contact_id": contact_id, "reason": reason})


def _register_legacy_topics() -> None:
    """Resolve the topics stores written before 0.3 hold (package then named `ledger`)."""
    from eventsourcing.utils import register_topic

    from leadledger.events import DOMAIN_EVENT_CLASSES, LEGACY_MODULE, SubmissionAccepted

    for name, cls in {**DOMAIN_EVENT_CLASSES, "SubmissionAccepted": SubmissionAccepted}.items():
        register_topic(f"{LEGACY_MODULE}:{name}", cls)
    for aggregate in (Wallet, Contact, Customer):
        register_topic(f"ledger.aggregates:{aggregate.__name__}", aggregate)


_register_legacy_topics()
_TOPICS = {cls: get_topic(cls) for cls in (Wallet, Contact, Customer)}
