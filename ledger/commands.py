"""The charging rules: one handler per submission type.

Every handler first decides (reads aggregates, calls pure policies, raises
``Rejection``), then records (triggers events). Nothing is recorded before the
last check has passed, so a rejected submission leaves no trace; the unit of
work asserts it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Repository

from leadledger import errors, events as ev, policies, submissions as sub
from leadledger.aggregates import (
    NAMESPACE,
    Contact,
    Customer,
    Wallet,
    contact_id_to_uuid,
    customer_id_to_uuid,
    wallet_id,
)
from leadledger.errors import Rejection
from leadledger.markets import MarketPolicy, current_policy, policy as market_policy
from leadledger.recorders import Receipt
from leadledger.timefmt import format_utc


class UnitOfWork:
    """Aggregates loaded for one batch, and the events it decided, in order."""

    def __init__(self, repository: Repository[UUID], warm: dict[UUID, Any] | None = None, *,
                 now: datetime | None = None, max_future_skew: timedelta = timedelta(minutes=5)):
        self._repository = repository
        # The recording clock, read once per batch: what "too early" and "too late" mean.
        self.now = now
        self.max_future_skew = max_future_skew
        # The caller's warm cache itself, not a copy (a chunk's copy of 50k entries
        # cost 11% of a long append): a failed attempt makes the caller drop it.
        self._cache: dict[UUID, Any] = warm if warm is not None else {}
        self.events: list[Any] = []
        self.wallets_changed: set[UUID] = set()  # wallets with events in this unit of work
        self.fetched: list[UUID] = []  # ids this unit of work read from the store
        # Ids known level with the store in this unit of work (loaded, refreshed or
        # created here). A warm aggregate outside it (reached through another, as a
        # contact's wallet) is read again before any rule sees it.
        self.verified: set[UUID] = set()
        # Receipts live in their own table, keyed by the sender's event_id: an
        # id space of its own, so no event_id can name an aggregate.
        self.receipts: dict[UUID, Receipt] = {}
        self.new_receipts: list[Receipt] = []
        # Who has the submission being judged recorded (a key's name, the CLI's
        # user): set by the application per submission, stamped on its events.
        self.recorded_by: str | None = None
        # Set by the application: the chain head its reads started from, or, when
        # it judges on warm state without reading, the ids it assumed absent
        # (see Ledger._speculative_unit_of_work).
        self.head_read: Any = None
        self.assumed_absent: set[UUID] = set()

    def preload(self, aggregates: dict[UUID, Any]) -> None:
        """Aggregates (or None for absent ids) loaded in bulk by the application."""
        for aggregate_id, aggregate in aggregates.items():
            if aggregate_id not in self.verified:  # never over this unit of work's own changes
                self._cache[aggregate_id] = aggregate
        self.fetched.extend(aggregates)
        self.verified.update(aggregates)

    def replace(self, aggregates: dict[UUID, Any]) -> None:
        """Aggregates loaded again before any judging (a compacted wallet, whole)."""
        assert not self.events, "replaced after judging began"
        self._cache.update(aggregates)
        self.verified.update(aggregates)

    def refreshed(self, ids: Any) -> None:
        """Warm aggregates brought level with the store by the application."""
        self.verified.update(ids)

    def forget(self, ids: Any) -> None:
        """Warm aggregates that cannot be trusted: the next read loads them."""
        for aggregate_id in ids:
            self._cache.pop(aggregate_id, None)

    def missing(self, ids: Any) -> list[UUID]:
        return [i for i in ids if i not in self._cache]

    def loaded(self) -> dict[UUID, Any]:
        return self._cache

    def _get(self, aggregate_id: UUID) -> Any:
        if aggregate_id not in self.verified:
            self._cache.pop(aggregate_id, None)
            self.verified.add(aggregate_id)
            try:
                self._cache[aggregate_id] = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._cache[aggregate_id] = None
            self.fetched.append(aggregate_id)
        return self._cache[aggregate_id]

    def wallet(self, pro_id: str) -> Wallet | None:
        return self._get(wallet_id(pro_id))

    def contact(self, contact_id: str) -> Contact | None:
        return self._get(contact_id_to_uuid(contact_id))

    def customer(self, customer_id: str) -> Customer | None:
        return self._get(customer_id_to_uuid(customer_id))

    def receipt(self, event_id: UUID) -> Receipt | None:
        return self.receipts.get(event_id)

    def accepted(self, receipt: Receipt) -> None:
        assert receipt.event_id not in self.receipts, "accepted twice"
        self.receipts[receipt.event_id] = receipt
        self.new_receipts.append(receipt)

    def created(self, aggregate: Any) -> Any:
        assert self._cache.get(aggregate.id) is None, "created twice"
        self._cache[aggregate.id] = aggregate
        self.verified.add(aggregate.id)
        self.collect(aggregate)
        return aggregate

    def collect(self, aggregate: Any) -> None:
        if type(aggregate) is Wallet:
            self.wallets_changed.add(aggregate.id)
        for event in aggregate.collect_events():
            # The envelope, not a decision: stamped as the event leaves its
            # aggregate, before anyone else holds it (the rules never see it).
            object.__setattr__(event, "recorded_by", self.recorded_by)
            self.events.append(event)


_KEY_FIELDS = (("pro_id", wallet_id), ("contact_id", contact_id_to_uuid),
               ("customer_id", customer_id_to_uuid), ("fee_ref", contact_id_to_uuid))

# Per submission type (one cache entry each), the fields that name aggregates:
# hasattr on a pydantic model raises and catches inside for every absent field.
@functools.cache
def _keys_of(kind: type) -> tuple[tuple[str, Callable[[str], UUID]], ...]:
    fields = getattr(kind, "model_fields", None) or getattr(kind, "__dataclass_fields__", {})
    return tuple((name, to_id) for name, to_id in _KEY_FIELDS if name in fields)


@functools.cache
def _key_names(kind: type) -> frozenset[str]:
    return frozenset(name for name, _ in _keys_of(kind))


def wallet_touched(submission: Any) -> UUID | None:
    """The wallet a submission names by its pro_id, if it names one."""
    return wallet_id(submission.pro_id) if "pro_id" in _key_names(type(submission)) else None


# The ids a writer judging on warm state may take as absent without reading them
# (Ledger._speculative_unit_of_work): those a submission of the type usually
# creates, and customers (one exists only once terminated). A wrong guess is
# caught by the write (a created aggregate's first version, or the insert's check
# that the others still have no event), never recorded.
_USUALLY_NEW = {sub.QuoteSent: ("contact_id", "customer_id"), sub.WalletOpened: ("pro_id",)}


@functools.cache
def _guesses_of(kind: type) -> tuple[tuple[str, Callable[[str], UUID], bool, bool], ...]:
    """Per submission type, each field naming an aggregate: its id function, whether
    a writer may take the aggregate as absent, and whether it is a customer's."""
    names = _USUALLY_NEW.get(kind, ("customer_id",))
    return tuple((name, to_id, name in names, name == "customer_id") for name, to_id in _keys_of(kind))


def ids_named(submissions: list[Any], warm: dict[UUID, Any], *,
              customers: bool = True) -> tuple[dict[UUID, Any], set[UUID]]:
    """A batch's ids in one pass: every id it names (``ids_touched``) with its aggregate
    in ``warm`` (None: not warm), and those not warm it may take as absent: the ones
    its submissions usually create (``_USUALLY_NEW``; a customer unless
    ``customers=False``: a large batch reads them, one query, where one terminated
    customer taken as absent would make the whole batch be judged twice). Each id is
    derived and looked up once (five passes took a tenth of a bulk append)."""
    touched: dict[UUID, Any] = {}
    absent: set[UUID] = set()
    for submission in submissions:
        for name, to_id, usually_new, customer in _guesses_of(type(submission)):
            value = getattr(submission, name)
            if not value:
                continue
            aggregate_id = to_id(value)
            if aggregate_id in touched:
                aggregate = touched[aggregate_id]
            else:
                aggregate = touched[aggregate_id] = warm.get(aggregate_id)
            if aggregate is None and usually_new and (customers or not customer):
                absent.add(aggregate_id)
    return touched, absent


def ids_touched(submission: Any) -> list[UUID]:
    """Aggregates a submission will read, known without reading anything."""
    return [to_id(value) for name, to_id in _keys_of(type(submission))
            if (value := getattr(submission, name))]


_CONTACT_KEYS = frozenset({"contact_id", "fee_ref"})


def wallets_to_load_whole(cache: dict[UUID, Any], submissions: list[Any]) -> list[UUID]:
    """Compacted wallets in ``cache`` that cannot judge ``submissions`` (see
    ``Wallet.compact``): one is judged before its horizon, or names a contact
    sent before it. ``cache`` holds the batch's contacts; a contact the batch
    itself creates is sent at its QuoteSent's occurred_at, which names its pro."""
    earliest: dict[UUID, datetime] = {}
    for submission in submissions:
        for name, to_id in _keys_of(type(submission)):
            value = getattr(submission, name)
            if not value:
                continue
            if name == "pro_id":
                aggregate_id, at = to_id(value), submission.occurred_at
            elif name in _CONTACT_KEYS:
                contact = cache.get(to_id(value))
                if not isinstance(contact, Contact):
                    continue
                aggregate_id, at = wallet_id(contact.pro_id), contact.sent_at
            else:
                continue
            if aggregate_id not in earliest or at < earliest[aggregate_id]:
                earliest[aggregate_id] = at
    return [aggregate_id for aggregate_id, at in earliest.items()
            if isinstance(wallet := cache.get(aggregate_id), Wallet) and not wallet.covers(at)]


@dataclass(frozen=True)
class Outcome:
    status: str  # "recorded", "duplicate" or "rejected"
    code: str | None = None
    message: str | None = None
    recorded: tuple[str, ...] = ()


def is_internal(submission: Any) -> bool:
    """The ledger's own submissions (the sweep's). By type: asking a pydantic
    model (or its class) for a missing attribute raises inside __getattr__."""
    return type(submission) is UnreadRefundDue


def decide(uow: UnitOfWork, submission: Any) -> Outcome:
    """Judge one submission against the facts in ``uow``; record it or reject it.

    The ledger's own submissions (the sweep's, see ``is_internal``) have no receipt and
    no clock check: the aggregates' state makes them idempotent, and no sender's
    event_id can stand in their way.
    """
    internal = is_internal(submission)
    if not internal:
        digest = sub.content_sha256(submission)
        receipt = uow.receipt(submission.event_id)
        if receipt is not None:
            if not receipt.in_log:
                return Outcome("rejected", errors.LOG_DAMAGED,
                               f"event_id {submission.event_id} was recorded at position {receipt.position}, "
                               "but the log no longer holds its events there: the log was altered; "
                               "nothing recorded (run `leadledger verify`)")
            if receipt.content_sha256 == digest:
                return Outcome("duplicate", recorded=tuple(receipt.recorded))
            return Outcome(
                "rejected",
                errors.EVENT_ID_CONFLICT,
                f"event_id {submission.event_id} was already used for a different "
                f"{receipt.submission_type} submission",
            )
    mark = len(uow.events)
    try:
        if uow.now is not None and not internal:
            policies.check_timing(_policy_of(uow, submission), submission.occurred_at, uow.now,
                                  uow.max_future_skew)
        HANDLERS[type(submission)](uow, submission)
    except Rejection as rejection:
        assert len(uow.events) == mark, "a rule rejected after recording"
        return Outcome("rejected", rejection.code, rejection.message)
    recorded = tuple([type(event).__name__ for event in uow.events[mark:]])
    assert recorded, "an accepted submission records at least one event"
    if not internal:
        uow.accepted(Receipt(submission.event_id, submission.type, digest, recorded,
                             format_utc(submission.occurred_at), batch_index=mark))
    return Outcome("recorded", recorded=recorded)


def _policy_of(uow: UnitOfWork, submission: Any) -> MarketPolicy | None:
    """The rule pack that will judge a submission, where one is known yet."""
    if isinstance(submission, sub.WalletOpened):
        return current_policy(submission.market)
    wallet = None
    fields = _key_names(type(submission))
    if "pro_id" in fields:
        wallet = uow.wallet(submission.pro_id)
    elif "contact_id" in fields:
        contact = uow.contact(submission.contact_id)
        wallet = uow.wallet(contact.pro_id) if contact is not None else None
    return market_policy(wallet.market, wallet.policy_version) if wallet is not None else None


# --- lookups that reject -------------------------------------------------------


def _open_wallet(uow: UnitOfWork, pro_id: str, at: datetime) -> tuple[Wallet, MarketPolicy]:
    wallet = uow.wallet(pro_id)
    if wallet is None:
        raise Rejection(errors.WALLET_NOT_FOUND, f"pro {pro_id!r} has no wallet")
    if wallet.opened_at > at:
        raise Rejection(
            errors.WALLET_NOT_FOUND,
            f"pro {pro_id!r} had no wallet yet at {format_utc(at)}",
        )
    return wallet, market_policy(wallet.market, wallet.policy_version)


def _contact(uow: UnitOfWork, contact_id: str, at: datetime) -> tuple[Contact, Wallet, MarketPolicy]:
    contact = uow.contact(contact_id)
    if contact is None:
        raise Rejection(errors.CONTACT_NOT_FOUND, f"no quote was sent for contact {contact_id!r}")
    if at < contact.sent_at:
        raise Rejection(
            errors.INVALID_SUBMISSION,
            f"occurred_at: {format_utc(at)} is before the quote was sent "
            f"({format_utc(contact.sent_at)})",
        )
    wallet, policy = _open_wallet(uow, contact.pro_id, contact.sent_at)
    return contact, wallet, policy


def _charge_from_wallet(wallet: Wallet, policy: MarketPolicy, fee: int, at: datetime) -> int:
    """The advance a wallet charge needs (0 if none); rejects when it cannot be funded."""
    position = wallet.position_at(at)
    return policies.fund_wallet_charge(
        fee, position.headroom, position.advance_peak, policy.advance_limit
    )


# --- handlers ------------------------------------------------------------------


def wallet_opened(uow: UnitOfWork, s: sub.WalletOpened) -> None:
    if uow.wallet(s.pro_id) is not None:
        raise Rejection(errors.WALLET_EXISTS, f"pro {s.pro_id!r} already has a wallet")
    policy = current_policy(s.market)
    if policy is None:
        raise Rejection(errors.UNKNOWN_MARKET, f"market {s.market!r} is not one this ledger knows")
    uow.created(
        Wallet.open(
            s.event_id, s.occurred_at, pro_id=s.pro_id, market=policy.market,
            region=s.region, policy_version=policy.version, unit=policy.wallet_unit,
            card_currency=policy.card_currency,
        )
    )


def credits_purchased(uow: UnitOfWork, s: sub.CreditsPurchased) -> None:
    wallet, _ = _open_wallet(uow, s.pro_id, s.occurred_at)
    repaid = policies.repayment(s.amount, wallet.position_at(s.occurred_at).advance_floor)
    wallet.record(ev.CreditsPurchased, s.event_id, s.occurred_at, amount=s.amount,
                  payment_ref=s.payment_ref)
    if repaid:
        wallet.record(ev.AdvanceRepaid, s.event_id, s.occurred_at, amount=repaid)
    uow.collect(wallet)


def card_registered(uow: UnitOfWork, s: sub.CardRegistered) -> None:
    wallet, _ = _open_wallet(uow, s.pro_id, s.occurred_at)
    wallet.record(ev.CardRegistered, s.event_id, s.occurred_at, card_ref=s.card_ref)
    uow.collect(wallet)


def quote_sent(uow: UnitOfWork, s: sub.QuoteSent) -> None:
    at = s.occurred_at
    wallet, policy = _open_wallet(uow, s.pro_id, at)
    if uow.contact(s.contact_id) is not None:
        raise Rejection(errors.CONTACT_EXISTS, f"contact {s.contact_id!r} was already sent a quote")
    customer = uow.customer(s.customer_id)
    if customer is not None and customer.terminated_at <= at:
        raise Rejection(
            errors.CUSTOMER_TERMINATED,
            f"customer {s.customer_id!r} was terminated at {format_utc(customer.terminated_at)}",
        )
    if s.pricing not in policy.pricing_methods:
        raise Rejection(errors.PRICING_NOT_OFFERED, f"{policy.market} does not offer {s.pricing} pricing")
    guaranteed = s.pricing == "guaranteed_reply"
    if guaranteed and not policy.offers_guaranteed_reply_for(s.category):
        raise Rejection(
            errors.PRICING_NOT_OFFERED,
            f"guaranteed_reply is not open to category {s.category!r}",
        )
    if s.management_fee != policy.management_fee:
        raise Rejection(
            errors.INVALID_FEE,
            f"management_fee must be {policy.management_fee} on {policy.market}, not {s.management_fee}",
        )
    if guaranteed and not wallet.card_registered_by(at):
        raise Rejection(errors.CARD_REQUIRED, "guaranteed_reply needs a registered card")
    fee = s.commission + s.management_fee
    advance = 0
    if not guaranteed and fee > 0:
        advance = _charge_from_wallet(wallet, policy, fee, at)

    uow.created(
        Contact.send(
            s.event_id, at, contact_id=s.contact_id, pro_id=s.pro_id, request_id=s.request_id,
            customer_id=s.customer_id, category=s.category, job_date=s.job_date,
            pricing=s.pricing, commission=s.commission, management_fee=s.management_fee,
            market=policy.market, refund_deadline=policies.refund_deadline(policy, at, s.job_date),
            unread_refund_due=policies.unread_refund_due(policy, at, s.pricing),
        )
    )
    if not guaranteed and fee > 0:
        if advance:
            wallet.record(ev.CronosAdvanced, s.event_id, at, contact_id=s.contact_id, amount=advance)
        _record_charge(wallet, policy, s.event_id, at, s.contact_id, s.commission,
                       s.management_fee, "wallet")
        uow.collect(wallet)


def _record_charge(wallet: Wallet, policy: MarketPolicy, event_id: UUID, at: datetime,
                   contact_id: str, commission: int, management_fee: int, paid_from: str) -> None:
    wallet.record(
        ev.ContactFeeCharged, event_id, at, contact_id=contact_id, commission=commission,
        management_fee=management_fee, paid_from=paid_from,
        refundable=policies.refund_amount(policy, commission, management_fee),
    )


def _successful_contact_source(contact: Contact, wallet: Wallet, at: datetime) -> str | None:
    """Guaranteed reply: the first successful contact charges the fee, once. Where
    it is paid from, or None when nothing is charged (decided before anything is recorded)."""
    if contact.pricing != "guaranteed_reply" or contact.fee == 0 or wallet.money(contact).charges:
        return None
    paid_from = policies.guaranteed_reply_source(contact.fee, wallet.position_at(at).headroom)
    assert paid_from == "wallet" or wallet.card_registered_by(contact.sent_at)
    return paid_from


def _record_successful_contact_charge(uow: UnitOfWork, contact: Contact, wallet: Wallet,
                                      policy: MarketPolicy, event_id: UUID, at: datetime,
                                      paid_from: str | None) -> None:
    if paid_from is None:
        return
    _record_charge(wallet, policy, event_id, at, contact.contact_id, contact.commission,
                   contact.management_fee, paid_from)
    uow.collect(wallet)


def quote_read(uow: UnitOfWork, s: sub.QuoteRead) -> None:
    contact, _, _ = _contact(uow, s.contact_id, s.occurred_at)
    # Reading never charges; after an unread refund it is recorded and moves no money.
    contact.record(ev.QuoteRead, s.event_id, s.occurred_at)
    uow.collect(contact)


def customer_replied(uow: UnitOfWork, s: sub.CustomerReplied) -> None:
    contact, wallet, policy = _contact(uow, s.contact_id, s.occurred_at)
    paid_from = _successful_contact_source(contact, wallet, s.occurred_at)
    contact.record(ev.CustomerReplied, s.event_id, s.occurred_at, channel=s.channel)
    uow.collect(contact)
    _record_successful_contact_charge(uow, contact, wallet, policy, s.event_id, s.occurred_at, paid_from)


def _check_calls(contact: Contact, policy: MarketPolicy) -> None:
    if not policy.calls.offered or contact.pricing != "guaranteed_reply":
        raise Rejection(errors.CALLS_NOT_OFFERED, "calls are only for guaranteed_reply contacts")
    if contact.calls_stopped:
        raise Rejection(
            errors.CALLS_STOPPED,
            f"calls stopped after {policy.calls.max_failed_attempts} failed attempts; "
            "they resume when the customer replies",
        )


def call_attempt_failed(uow: UnitOfWork, s: sub.CallAttemptFailed) -> None:
    contact, _, policy = _contact(uow, s.contact_id, s.occurred_at)
    _check_calls(contact, policy)
    contact.record(ev.CallAttemptFailed, s.event_id, s.occurred_at, reason=s.reason)
    if contact.failed_streak >= policy.calls.max_failed_attempts:
        contact.record(ev.CallConnectionStopped, s.event_id, s.occurred_at,
                       failed_attempts=contact.failed_streak)
    uow.collect(contact)


def call_minutes_billed(uow: UnitOfWork, s: sub.CallMinutesBilled) -> None:
    contact, wallet, policy = _contact(uow, s.contact_id, s.occurred_at)
    _check_calls(contact, policy)
    if s.call_id in contact.call_ids:
        raise Rejection(errors.CALL_EXISTS, f"call {s.call_id!r} was already billed")
    minutes = policies.billable_minutes(s.duration_seconds, policy.calls.free_seconds)
    paid_from = _successful_contact_source(contact, wallet, s.occurred_at)
    contact.record(
        ev.CallMinutesBilled, s.event_id, s.occurred_at, pro_id=contact.pro_id,
        call_id=s.call_id, duration_seconds=s.duration_seconds, billable_minutes=minutes,
        amount=minutes * policy.calls.rate_per_started_minute, currency=policy.card_currency,
    )
    uow.collect(contact)
    _record_successful_contact_charge(uow, contact, wallet, policy, s.event_id, s.occurred_at, paid_from)


def _check_refundable(contact: Contact, wallet: Wallet, at: datetime) -> int:
    """What a refund at ``at`` would return; rejects when none is possible."""
    money = wallet.money(contact)
    if money.refunds:
        raise Rejection(errors.ALREADY_REFUNDED, f"contact {contact.contact_id!r} was already refunded")
    if contact.confirmed_at is not None:
        raise Rejection(errors.SERVICE_CONFIRMED, "the pro confirmed the service: no refund")
    refundable = money.refundable_by(at)
    if refundable <= 0:
        raise Rejection(
            errors.NOTHING_TO_REFUND,
            f"nothing refundable was charged for contact {contact.contact_id!r}",
        )
    if at >= contact.refund_deadline:
        raise Rejection(
            errors.REFUND_WINDOW_CLOSED,
            f"the refund window closed at {format_utc(contact.refund_deadline)}",
        )
    return refundable


def refund_requested(uow: UnitOfWork, s: sub.RefundRequested) -> None:
    at = s.occurred_at
    contact, wallet, policy = _contact(uow, s.contact_id, at)
    amount = _check_refundable(contact, wallet, at)
    policies.check_refund_reason(policy, s.reason, contact.sent_at, at)
    terminate = s.reason in policy.refund.terminating_reasons and uow.customer(contact.customer_id) is None

    contact.record(ev.RefundRequested, s.event_id, at, reason=s.reason)
    uow.collect(contact)
    wallet.record(ev.QuoteFeeRefunded, s.event_id, at, contact_id=s.contact_id, amount=amount,
                  reason=s.reason)
    uow.collect(wallet)
    if terminate:
        uow.created(Customer.terminate(s.event_id, at, contact.customer_id, s.contact_id, s.reason))


def refund_postponed(uow: UnitOfWork, s: sub.RefundPostponed) -> None:
    at = s.occurred_at
    contact, wallet, policy = _contact(uow, s.contact_id, at)
    if not policy.refund.postpone_allowed:
        raise Rejection(errors.REFUND_NOT_ALLOWED, f"{policy.market} has no postponed refunds")
    _check_refundable(contact, wallet, at)
    if s.until < policies.local_date(at, policy.timezone):
        raise Rejection(errors.INVALID_SUBMISSION, "until: must not be before the day it is postponed on")
    if policies.end_of_day(s.until, policy.timezone) > contact.refund_deadline:
        raise Rejection(
            errors.REFUND_WINDOW_CLOSED,
            f"until: the refund window closes at {format_utc(contact.refund_deadline)}",
        )
    contact.record(ev.RefundPostponed, s.event_id, at, until=s.until)
    uow.collect(contact)


def service_confirmed(uow: UnitOfWork, s: sub.ServiceConfirmed) -> None:
    contact, wallet, _ = _contact(uow, s.contact_id, s.occurred_at)
    if contact.confirmed_at is not None:
        raise Rejection(errors.SERVICE_CONFIRMED, "the service was already confirmed")
    if wallet.money(contact).refunds:
        raise Rejection(
            errors.ALREADY_REFUNDED,
            "the contact was refunded: send RefundRectified to confirm the service",
        )
    contact.record(ev.ServiceConfirmed, s.event_id, s.occurred_at)
    uow.collect(contact)


def refund_rectified(uow: UnitOfWork, s: sub.RefundRectified) -> None:
    at = s.occurred_at
    contact, wallet, policy = _contact(uow, s.contact_id, at)
    money = wallet.money(contact)
    if not money.refunded_by(at):
        raise Rejection(errors.NOT_REFUNDED, f"contact {s.contact_id!r} has no refund to rectify")
    if contact.rectified_at is not None:
        raise Rejection(errors.ALREADY_RECTIFIED, "the refund was already rectified")
    if at >= contact.refund_deadline:
        raise Rejection(
            errors.REFUND_WINDOW_CLOSED,
            f"the refund window closed at {format_utc(contact.refund_deadline)}",
        )
    amount = money.refunded_total
    advance = _charge_from_wallet(wallet, policy, amount, at)

    contact.record(ev.RefundRectified, s.event_id, at)
    uow.collect(contact)
    if advance:
        wallet.record(ev.CronosAdvanced, s.event_id, at, contact_id=s.contact_id, amount=advance)
    # The refunded amount is charged again; it is not refundable a second time.
    wallet.record(ev.ContactFeeCharged, s.event_id, at, contact_id=s.contact_id,
                  commission=amount, management_fee=0, paid_from="wallet", refundable=0)
    uow.collect(wallet)


def courtesy_credit_issued(uow: UnitOfWork, s: sub.CourtesyCreditIssued) -> None:
    at = s.occurred_at
    wallet, policy = _open_wallet(uow, s.pro_id, at)
    if wallet.region in policy.courtesy.blocked_regions:
        raise Rejection(
            errors.COURTESY_BLOCKED_REGION,
            f"no courtesy credits in {wallet.region}, whoever approves",
        )
    if s.fee_ref is not None:
        contact = uow.contact(s.fee_ref)
        money = wallet.money(contact) if contact is not None and contact.pro_id == s.pro_id else None
        if money is None or money.charged_by(at) <= 0 or money.refunded_by(at):
            raise Rejection(
                errors.FEE_NOT_ASSESSED,
                f"fee_ref: no fee for contact {s.fee_ref!r} is charged to pro {s.pro_id!r} "
                "and unrefunded",
            )
    policies.check_courtesy_approval(
        policy,
        s.amount,
        wallet.courtesy_credits,
        s.dispute_amount if s.reason == "dispute" else None,
        s.approved_by.role if s.approved_by is not None else None,
    )
    wallet.record(
        ev.CourtesyCreditIssued, s.event_id, at, amount=s.amount, reason=s.reason,
        issued_by=s.issued_by.model_dump(),
        approved_by=s.approved_by.model_dump() if s.approved_by is not None else None,
        fee_ref=s.fee_ref, dispute_amount=s.dispute_amount,
    )
    uow.collect(wallet)


# --- deadlines -----------------------------------------------------------------

UNREAD_REFUND_REASON = "unread_48h"


@dataclass(frozen=True)
class UnreadRefundDue:
    """Internal submission made by ``sweep``: the 48 h unread refund of one contact.

    Its event_id is derived from the contact, so sweeping twice records once.
    """

    contact_id: str
    occurred_at: datetime
    type: str = "UnreadRefundDue"

    @property
    def event_id(self) -> UUID:
        return sweep_event_id(self.contact_id)


def sweep_event_id(contact_id: str) -> UUID:
    """The event_id the sweep records a contact's unread refund under (no receipt:
    the contact's state makes it idempotent)."""
    return uuid5(NAMESPACE, f"sweep:{UNREAD_REFUND_REASON}:{contact_id}")


def unread_refund_due(uow: UnitOfWork, s: UnreadRefundDue) -> None:
    contact, wallet, _ = _contact(uow, s.contact_id, s.occurred_at)
    due = contact.unread_refund_due
    if due is None or due != s.occurred_at:
        raise Rejection("not_due", "no unread refund is due for this contact")
    if contact.first_seen_at is not None and contact.first_seen_at <= due:
        raise Rejection("not_due", "the quote was read or answered in time")
    money = wallet.money(contact)
    if money.refunds or contact.confirmed_at is not None:
        raise Rejection("not_due", "the contact was refunded or confirmed")
    amount = money.refundable_by(due)
    if amount <= 0:
        raise Rejection("not_due", "nothing was charged")
    wallet.record(ev.QuoteFeeRefunded, s.event_id, due, contact_id=s.contact_id,
                  amount=amount, reason=UNREAD_REFUND_REASON)
    uow.collect(wallet)


HANDLERS: dict[type, Callable[[UnitOfWork, Any], None]] = {
    sub.WalletOpened: wallet_opened,
    sub.CreditsPurchased: credits_purchased,
    sub.CardRegistered: card_registered,
    sub.QuoteSent: quote_sent,
    sub.QuoteRead: quote_read,
    sub.CustomerReplied: customer_replied,
    sub.CallAttemptFailed: call_attempt_failed,
    sub.CallMinutesBilled: call_minutes_billed,
    sub.RefundRequested: refund_requested,
    sub.RefundPostponed: refund_postponed,
    sub.ServiceConfirmed: service_confirmed,
    sub.RefundRectified: refund_rectified,
    sub.CourtesyCreditIssued: courtesy_credit_issued,
    UnreadRefundDue: unread_refund_due,
}
assert {t.__name__ for t in HANDLERS} >= set(sub.SUBMISSION_TYPES)
