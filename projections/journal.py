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

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from leadledger.events import DOMAIN_EVENT_CLASSES
from leadledger.projections.stored import sortable

CASH = "platform:cash"
REVENUE_COMMISSION = "platform:revenue:commission"
REVENUE_MANAGEMENT_FEE = "platform:revenue:management_fee"
REVENUE_CALL_MINUTES = "platform:revenue:call_minutes"
REFUNDS = "platform:refunds"
EXPENSE_COURTESY = "platform:expense:courtesy"


_PRO_KINDS = frozenset({"wallet", "advance", "card"})


def pro_account(pro_id: str, kind: str) -> str:
    assert kind in _PRO_KINDS
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
    """What one event adds to the read models. Empty parts are the shared empty
    tuple: a rebuild makes one Rows per event, and six new lists each was a
    tenth of its mapping."""

    wallets: Sequence[tuple[Any, ...]] = ()
    contacts: Sequence[tuple[Any, ...]] = ()
    first_seen: Sequence[tuple[str, str]] = ()  # contact_id, at
    facts: Sequence[tuple[str, str, str, int, int]] = ()  # contact, kind, at, amount, refundable
    postings: Sequence[Posting] = ()
    card_refs: Sequence[tuple[str, str]] = ()  # pro_id, card_ref
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
Fields = dict[str, Any]  # an event's fields by name, as stored or as a live event holds them


def _transfer(debit: str, credit: str, amount: int, unit: str,
              pro_id: str, debit_kind: str, credit_kind: str) -> tuple[Posting, ...]:
    assert amount >= 0
    if amount == 0:
        return ()
    return (Posting(debit, unit, amount, 0, pro_id, debit_kind), Posting(credit, unit, 0, amount, pro_id, credit_kind))


def _in_wallet_unit(e: Fields, wallet_of: WalletOf, debit: str, credit: str) -> tuple[Posting, ...]:
    """The event's ``amount`` moved in the pro's wallet unit. Each side is one of
    the pro's accounts by kind (``wallet``, ``advance``) or a platform account."""
    pro_id = e["pro_id"]
    debit_account, debit_kind = _side(pro_id, debit)
    credit_account, credit_kind = _side(pro_id, credit)
    return _transfer(debit_account, credit_account, e["amount"], wallet_of(pro_id).unit,
                     pro_id, debit_kind, credit_kind)


def _side(pro_id: str, account: str) -> tuple[str, str]:
    """An account and its posting kind: a pro's by kind, else the platform's."""
    return (pro_account(pro_id, account), account) if account in _PRO_KINDS else (account, "platform")


# A handler is given the event's fields, its time as sortable text (computed once
# per event by the caller) and the wallet lookup.
Handler = Callable[[Fields, str, WalletOf], Rows]
_HANDLERS: dict[str, Handler] = {}


def rows_for(event_type: str, e: Fields, at: str, wallet_of: WalletOf) -> Rows | None:
    """The rows an event adds; None for the events that move no money and feed no
    table (reads of calls, receipts...). ``at``: its ``occurred_at``, sortable."""
    handler = _HANDLERS.get(event_type)
    return handler(e, at, wallet_of) if handler is not None else None


def _for(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[event_type] = handler
        return handler
    return register


@_for("WalletOpened")
def _wallet_opened(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(wallets=((e["pro_id"], e["market"], e["unit"], e["card_currency"], e["region"],
                          e["policy_version"], at),))


@_for("CreditsPurchased")
def _credits_purchased(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(reason="purchase", ref=e["payment_ref"], postings=_in_wallet_unit(e, wallet_of, CASH, "wallet"))


@_for("AdvanceRepaid")
def _advance_repaid(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(reason="advance_repaid", postings=_in_wallet_unit(e, wallet_of, "wallet", "advance"))


@_for("CronosAdvanced")
def _cronos_advanced(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(reason="advance", postings=_in_wallet_unit(e, wallet_of, "advance", "wallet"))


@_for("ContactFeeCharged")
def _contact_fee_charged(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    pro_id, commission, management_fee = e["pro_id"], e["commission"], e["management_fee"]
    wallet = wallet_of(pro_id)
    total = commission + management_fee
    source_kind = e["paid_from"]
    unit = wallet.unit if source_kind == "wallet" else wallet.card_currency
    assert unit, f"no unit for a {source_kind} payment of {pro_id}"
    postings = [Posting(pro_account(pro_id, source_kind), unit, total, 0, pro_id, source_kind)]
    if commission:
        postings.append(Posting(REVENUE_COMMISSION, unit, 0, commission, pro_id, "platform"))
    if management_fee:
        postings.append(Posting(REVENUE_MANAGEMENT_FEE, unit, 0, management_fee, pro_id, "platform"))
    return Rows(facts=((e["contact_id"], "charge", at, total, e["refundable"]),), postings=postings,
                reason="contact_fee", ref=wallet.card_ref if source_kind == "card" else None)


@_for("QuoteFeeRefunded")
def _quote_fee_refunded(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(facts=((e["contact_id"], "refund", at, e["amount"], 0),), reason=e["reason"],
                postings=_in_wallet_unit(e, wallet_of, REFUNDS, "wallet"))


@_for("CourtesyCreditIssued")
def _courtesy_credit_issued(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(reason=e["reason"], contact_id=e["fee_ref"],
                postings=_in_wallet_unit(e, wallet_of, EXPENSE_COURTESY, "wallet"))


@_for("CallMinutesBilled")
def _call_minutes_billed(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    pro_id = e["pro_id"]
    return Rows(reason="call_minutes", ref=wallet_of(pro_id).card_ref, postings=_transfer(
        pro_account(pro_id, "card"), REVENUE_CALL_MINUTES, e["amount"], e["currency"], pro_id, "card", "platform"))


@_for("CardRegistered")
def _card_registered(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(card_refs=((e["pro_id"], e["card_ref"]),))


@_for("QuoteSent")
def _quote_sent(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    unread_refund_due = e["unread_refund_due"]
    return Rows(contacts=((
        e["contact_id"], e["pro_id"], e["market"], e["pricing"], e["management_fee"],
        at, sortable(e["refund_deadline"]), sortable(unread_refund_due) if unread_refund_due else None,
    ),))


@_for("QuoteRead")
@_for("CustomerReplied")
def _first_seen(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(first_seen=((e["contact_id"], at),))


@_for("ServiceConfirmed")
def _service_confirmed(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(facts=((e["contact_id"], "confirm", at, 0, 0),))


@_for("RefundRectified")
def _refund_rectified(e: Fields, at: str, wallet_of: WalletOf) -> Rows:
    return Rows(facts=((e["contact_id"], "rectify", at, 0, 0),))


# Every handler is named for an event the log can hold (a misspelt name would
# leave that event's rows out, silently).
assert set(_HANDLERS) <= set(DOMAIN_EVENT_CLASSES), set(_HANDLERS) - set(DOMAIN_EVENT_CLASSES)


def check_balanced(postings: Sequence[Posting]) -> None:
    """Invariant: every event's postings balance per unit."""
    per_unit: dict[str, int] = {}
    for posting in postings:
        per_unit[posting.unit] = per_unit.get(posting.unit, 0) + posting.debit - posting.credit
    assert all(v == 0 for v in per_unit.values()), f"unbalanced postings: {postings}"
