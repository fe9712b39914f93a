"""Pure mapping from recorded events to read-model rows and balanced postings.

Accounts (SPEC section 6): ``pro:{id}:wallet``, ``pro:{id}:advance``,
``pro:{id}:card``, ``platform:cash``, ``platform:revenue:commission``,
``platform:revenue:management_fee``, ``platform:revenue:call_minutes``,
``platform:refunds``, ``platform:expense:courtesy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any, Callable

from leadledger import events as ev
from leadledger.timefmt import sortable_utc

CASH = "platform:cash"
REVENUE_COMMISSION = "platform:revenue:commission"
REVENUE_MANAGEMENT_FEE = "platform:revenue:management_fee"
REVENUE_CALL_MINUTES = "platform:revenue:call_minutes"
REFUNDS = "platform:refunds"
EXPENSE_COURTESY = "platform:expense:courtesy"


def pro_account(pro_id: str, kind: str) -> str:
    assert kind in ("wallet", "advance", "card")
    return f"pro:{pro_id}:{kind}"


@dataclass(frozen=True)
class Posting:
    account: str
    unit: str
    debit: int
    credit: int
    pro_id: str | None  # the pro the posting concerns (for statements)
    kind: str  # wallet, advance, card for a pro's accounts; "platform" otherwise


@dataclass
class Rows:
    """What one event adds to the read models."""

    wallets: list[tuple[Any, ...]] = field(default_factory=list)
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    first_seen: list[tuple[str, str]] = field(default_factory=list)  # contact_id, at
    facts: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # contact, kind, at, amount, refundable
    postings: list[Posting] = field(default_factory=list)
    card_refs: list[tuple[str, str]] = field(default_factory=list)  # pro_id, card_ref
    occurred_at: str = ""  # the event's time, fixed-width UTC (set by the projection)
    contact_id: str | None = None
    # What a statement line, the reconciliation and the Beancount narration show:
    # why the money moved (purchase, contact_fee, a refund or courtesy reason...)
    # and the outside reference (payment_ref of a purchase, card_ref of a card charge).
    reason: str | None = None
    ref: str | None = None
    market: str | None = None  # the wallet's market (set by the projection)


@dataclass
class WalletFacts:
    """What the journal needs to know of a pro's wallet when it maps an event."""

    unit: str
    card_currency: str
    market: str
    card_ref: str | None = None  # the card in force, as the log stood at this event


WalletOf = Callable[[str], WalletFacts]


def _transfer(rows: Rows, debit: str, credit: str, amount: int, unit: str,
              pro_id: str, debit_kind: str, credit_kind: str) -> None:
    assert amount >= 0
    if amount == 0:
        return
    rows.postings.append(Posting(debit, unit, amount, 0, pro_id, debit_kind))
    rows.postings.append(Posting(credit, unit, 0, amount, pro_id, credit_kind))


@singledispatch
def rows_for(event: Any, wallet_of: WalletOf) -> Rows:
    """Events that move no money and feed no table (reads of calls, receipts...)."""
    return Rows()


@rows_for.register
def _(event: ev.WalletOpened, wallet_of: WalletOf) -> Rows:
    return Rows(wallets=[(
        event.pro_id, event.market, event.unit, event.card_currency, event.region,
        event.policy_version, sortable_utc(event.occurred_at),
    )])


@rows_for.register
def _(event: ev.CreditsPurchased, wallet_of: WalletOf) -> Rows:
    rows = Rows(reason="purchase", ref=event.payment_ref)
    unit = wallet_of(event.pro_id).unit
    _transfer(rows, CASH, pro_account(event.pro_id, "wallet"), event.amount, unit,
              event.pro_id, "platform", "wallet")
    return rows


@rows_for.register
def _(event: ev.AdvanceRepaid, wallet_of: WalletOf) -> Rows:
    rows = Rows(reason="advance_repaid")
    unit = wallet_of(event.pro_id).unit
    _transfer(rows, pro_account(event.pro_id, "wallet"), pro_account(event.pro_id, "advance"),
              event.amount, unit, event.pro_id, "wallet", "advance")
    return rows


@rows_for.register
def _(event: ev.CronosAdvanced, wallet_of: WalletOf) -> Rows:
    rows = Rows(reason="advance")
    unit = wallet_of(event.pro_id).unit
    _transfer(rows, pro_account(event.pro_id, "advance"), pro_account(event.pro_id, "wallet"),
              event.amount, unit, event.pro_id, "advance", "wallet")
    return rows


@rows_for.register
def _(event: ev.ContactFeeCharged, wallet_of: WalletOf) -> Rows:
    wallet = wallet_of(event.pro_id)
    total = event.commission + event.management_fee
    source_kind = event.paid_from
    unit = wallet.unit if source_kind == "wallet" else wallet.card_currency
    assert unit, f"no unit for a {source_kind} payment of {event.pro_id}"
    at = sortable_utc(event.occurred_at)
    rows = Rows(facts=[(event.contact_id, "charge", at, total, event.refundable)], reason="contact_fee",
                ref=wallet.card_ref if source_kind == "card" else None)
    rows.postings.append(Posting(pro_account(event.pro_id, source_kind), unit, total, 0,
                                 event.pro_id, source_kind))
    if event.commission:
        rows.postings.append(Posting(REVENUE_COMMISSION, unit, 0, event.commission,
                                     event.pro_id, "platform"))
    if event.management_fee:
        rows.postings.append(Posting(REVENUE_MANAGEMENT_FEE, unit, 0, event.management_fee,
                                     event.pro_id, "platform"))
    return rows


@rows_for.register
def _(event: ev.QuoteFeeRefunded, wallet_of: WalletOf) -> Rows:
    unit = wallet_of(event.pro_id).unit
    rows = Rows(facts=[(event.contact_id, "refund", sortable_utc(event.occurred_at), event.amount, 0)],
                reason=event.reason)
    _transfer(rows, REFUNDS, pro_account(event.pro_id, "wallet"), event.amount, unit,
              event.pro_id, "platform", "wallet")
    return rows


@rows_for.register
def _(event: ev.CourtesyCreditIssued, wallet_of: WalletOf) -> Rows:
    rows = Rows(reason=event.reason, contact_id=event.fee_ref)
    unit = wallet_of(event.pro_id).unit
    _transfer(rows, EXPENSE_COURTESY, pro_account(event.pro_id, "wallet"), event.amount, unit,
              event.pro_id, "platform", "wallet")
    return rows


@rows_for.register
def _(event: ev.CallMinutesBilled, wallet_of: WalletOf) -> Rows:
    rows = Rows(reason="call_minutes", ref=wallet_of(event.pro_id).card_ref)
    _transfer(rows, pro_account(event.pro_id, "card"), REVENUE_CALL_MINUTES, event.amount,
              event.currency, event.pro_id, "card", "platform")
    return rows


@rows_for.register
def _(event: ev.CardRegistered, wallet_of: WalletOf) -> Rows:
    return Rows(card_refs=[(event.pro_id, event.card_ref)])


@rows_for.register
def _(event: ev.QuoteSent, wallet_of: WalletOf) -> Rows:
    return Rows(contacts=[(
        event.contact_id, event.pro_id, event.market, event.pricing, event.management_fee,
        sortable_utc(event.occurred_at), sortable_utc(event.refund_deadline),
        sortable_utc(event.unread_refund_due) if event.unread_refund_due else None,
    )])


@rows_for.register
def _(event: ev.QuoteRead, wallet_of: WalletOf) -> Rows:
    return Rows(first_seen=[(event.contact_id, sortable_utc(event.occurred_at))])


@rows_for.register
def _(event: ev.CustomerReplied, wallet_of: WalletOf) -> Rows:
    return Rows(first_seen=[(event.contact_id, sortable_utc(event.occurred_at))])


@rows_for.register
def _(event: ev.ServiceConfirmed, wallet_of: WalletOf) -> Rows:
    return Rows(facts=[(event.contact_id, "confirm", sortable_utc(event.occurred_at), 0, 0)])


@rows_for.register
def _(event: ev.RefundRectified, wallet_of: WalletOf) -> Rows:
    return Rows(facts=[(event.contact_id, "rectify", sortable_utc(event.occurred_at), 0, 0)])


def check_balanced(postings: list[Posting]) -> None:
    """Invariant: every event's postings balance per unit."""
    per_unit: dict[str, int] = {}
    for posting in postings:
        per_unit[posting.unit] = per_unit.get(posting.unit, 0) + posting.debit - posting.credit
    assert all(v == 0 for v in per_unit.values()), f"unbalanced postings: {postings}"
