"""Pure mapping from recorded events to read-model rows and balanced postings.

An event comes in as its type name and its fields: the stored state as JSON
decodes it (times and ids still tagged, see ``projections/stored.py``) on the
catch-up's and the rebuild's path, which build no event objects (they were a
quarter of a rebuild), or a live event's ``vars()`` (the follower's path). The
``stored`` helpers read a time or an id in either shape.

Accounts (SPEC section 6): ``pro:{id}:wallet``, ``pro:{id}:advance``,
``pro:{id}:card``, ``platform:cash``, ``platform:revenue:commission``,
``platform:revenue:management_fee``, ``platform:revenue:call_minutes``,
``platform:refunds``, ``platform:expense:courtesy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from leadledger.projections.stored import sortable

CASH = "platform:cash"
REVENUE_COMMISSION = "platform:revenue:commission"
REVENUE_MANAGEMENT_FEE = "platform:revenue:management_fee"
REVENUE_CALL_MINUTES = "platform:revenue:call_minutes"
REFUNDS = "platform:refunds"
EXPENSE_COURTESY = "platform:expense:courtesy"


def pro_account(pro_id: str, kind: str) -> str:
    assert kind in ("wallet", "advance", "card")
    return f"pro:{pro_id}:{kind}"


class Posting(NamedTuple):  # a NamedTuple: a rebuild makes one per posting, ~1M
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


Fields = dict[str, Any]  # an event's fields by name, as stored or as a live event holds them
Handler = Callable[[Fields, WalletOf], Rows]
_HANDLERS: dict[str, Handler] = {}


def rows_for(event_type: str, e: Fields, wallet_of: WalletOf) -> Rows | None:
    """The rows an event adds; None for the events that move no money and feed no
    table (reads of calls, receipts...)."""
    handler = _HANDLERS.get(event_type)
    return handler(e, wallet_of) if handler is not None else None


def _for(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[event_type] = handler
        return handler
    return register


@_for("WalletOpened")
def _wallet_opened(e: Fields, wallet_of: WalletOf) -> Rows:
    return Rows(wallets=[(
        e["pro_id"], e["market"], e["unit"], e["card_currency"], e["region"],
        e["policy_version"], sortable(e["occurred_at"]),
    )])


@_for("CreditsPurchased")
def _credits_purchased(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    rows = Rows(reason="purchase", ref=e["payment_ref"])
    _transfer(rows, CASH, pro_account(pro_id, "wallet"), e["amount"], wallet_of(pro_id).unit,
              pro_id, "platform", "wallet")
    return rows


@_for("AdvanceRepaid")
def _advance_repaid(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    rows = Rows(reason="advance_repaid")
    _transfer(rows, pro_account(pro_id, "wallet"), pro_account(pro_id, "advance"),
              e["amount"], wallet_of(pro_id).unit, pro_id, "wallet", "advance")
    return rows


@_for("CronosAdvanced")
def _cronos_advanced(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    rows = Rows(reason="advance")
    _transfer(rows, pro_account(pro_id, "advance"), pro_account(pro_id, "wallet"),
              e["amount"], wallet_of(pro_id).unit, pro_id, "advance", "wallet")
    return rows


@_for("ContactFeeCharged")
def _contact_fee_charged(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id, commission, management_fee = e["pro_id"], e["commission"], e["management_fee"]
    wallet = wallet_of(pro_id)
    total = commission + management_fee
    source_kind = e["paid_from"]
    unit = wallet.unit if source_kind == "wallet" else wallet.card_currency
    assert unit, f"no unit for a {source_kind} payment of {pro_id}"
    rows = Rows(facts=[(e["contact_id"], "charge", sortable(e["occurred_at"]), total, e["refundable"])],
                reason="contact_fee", ref=wallet.card_ref if source_kind == "card" else None)
    rows.postings.append(Posting(pro_account(pro_id, source_kind), unit, total, 0, pro_id, source_kind))
    if commission:
        rows.postings.append(Posting(REVENUE_COMMISSION, unit, 0, commission, pro_id, "platform"))
    if management_fee:
        rows.postings.append(Posting(REVENUE_MANAGEMENT_FEE, unit, 0, management_fee, pro_id, "platform"))
    return rows


@_for("QuoteFeeRefunded")
def _quote_fee_refunded(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id, amount = e["pro_id"], e["amount"]
    rows = Rows(facts=[(e["contact_id"], "refund", sortable(e["occurred_at"]), amount, 0)], reason=e["reason"])
    _transfer(rows, REFUNDS, pro_account(pro_id, "wallet"), amount, wallet_of(pro_id).unit,
              pro_id, "platform", "wallet")
    return rows


@_for("CourtesyCreditIssued")
def _courtesy_credit_issued(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    rows = Rows(reason=e["reason"], contact_id=e["fee_ref"])
    _transfer(rows, EXPENSE_COURTESY, pro_account(pro_id, "wallet"), e["amount"], wallet_of(pro_id).unit,
              pro_id, "platform", "wallet")
    return rows


@_for("CallMinutesBilled")
def _call_minutes_billed(e: Fields, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    rows = Rows(reason="call_minutes", ref=wallet_of(pro_id).card_ref)
    _transfer(rows, pro_account(pro_id, "card"), REVENUE_CALL_MINUTES, e["amount"],
              e["currency"], pro_id, "card", "platform")
    return rows


@_for("CardRegistered")
def _card_registered(e: Fields, wallet_of: WalletOf) -> Rows:
    return Rows(card_refs=[(e["pro_id"], e["card_ref"])])


@_for("QuoteSent")
def _quote_sent(e: Fields, wallet_of: WalletOf) -> Rows:
    unread_refund_due = e["unread_refund_due"]
    return Rows(contacts=[(
        e["contact_id"], e["pro_id"], e["market"], e["pricing"], e["management_fee"],
        sortable(e["occurred_at"]), sortable(e["refund_deadline"]),
        sortable(unread_refund_due) if unread_refund_due else None,
    )])


@_for("QuoteRead")
@_for("CustomerReplied")
def _first_seen(e: Fields, wallet_of: WalletOf) -> Rows:
    return Rows(first_seen=[(e["contact_id"], sortable(e["occurred_at"]))])


@_for("ServiceConfirmed")
def _service_confirmed(e: Fields, wallet_of: WalletOf) -> Rows:
    return Rows(facts=[(e["contact_id"], "confirm", sortable(e["occurred_at"]), 0, 0)])


@_for("RefundRectified")
def _refund_rectified(e: Fields, wallet_of: WalletOf) -> Rows:
    return Rows(facts=[(e["contact_id"], "rectify", sortable(e["occurred_at"]), 0, 0)])


def check_balanced(postings: list[Posting]) -> None:
    """Invariant: every event's postings balance per unit."""
    per_unit: dict[str, int] = {}
    for posting in postings:
        per_unit[posting.unit] = per_unit.get(posting.unit, 0) + posting.debit - posting.credit
    assert all(v == 0 for v in per_unit.values()), f"unbalanced postings: {postings}"
