"""Pure mapping from recorded events to read-model rows and balanced postings.

An event comes in as its type name and its fields: the stored state as JSON
decodes it (times and ids still tagged, see ``projections/stored.py``) on the
catch-up's and the rebuild's path, which build no event objects (they were a
quarter of a rebuild), or a live event's ``vars()`` (the follower's path). The
``stored`` helpers read a time or an id in either shape.

Each handler appends its event's rows to a ``Batch``: one list per statement
the view runs, each row already the statement's parameters. (They made a
``Rows`` object per event, then its ``Posting`` tuples, then the parameters
from those: 5.8-6.0 us an event once decoded, against 3.6-3.7 us now; 217k
events, best of three, alternated with the code before. Decoding is ~2 us.)

Accounts (SPEC section 6): ``pro:{id}:wallet``, ``pro:{id}:advance``,
``pro:{id}:card``, ``platform:cash``, ``platform:revenue:commission``,
``platform:revenue:management_fee``, ``platform:revenue:call_minutes``,
``platform:refunds``, ``platform:expense:courtesy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from leadledger.errors import LedgerError, Rejection
from leadledger.events import DOMAIN_EVENT_CLASSES
from leadledger.projections.stored import sortable, uuid_text

CASH = "platform:cash"
REVENUE_COMMISSION = "platform:revenue:commission"
REVENUE_MANAGEMENT_FEE = "platform:revenue:management_fee"
REVENUE_CALL_MINUTES = "platform:revenue:call_minutes"
REFUNDS = "platform:refunds"
EXPENSE_COURTESY = "platform:expense:courtesy"


PRO_KINDS = frozenset({"wallet", "advance", "card"})
PLATFORM_ACCOUNTS = (CASH, REVENUE_COMMISSION, REVENUE_MANAGEMENT_FEE, REVENUE_CALL_MINUTES, REFUNDS,
                     EXPENSE_COURTESY)
# The nodes a filter may name: each account and each ':'-prefix of one (platform:revenue).
_PLATFORM_NODES = frozenset(":".join(name.split(":")[:depth]) for name in PLATFORM_ACCOUNTS
                            for depth in range(1, name.count(":") + 2))
UNKNOWN_ACCOUNT = "unknown_account"


def check_account_filter(account: str, pro_id: str | None = None) -> None:
    """Refuse an ``account`` filter that names no account of the chart (SPEC 6) nor a
    node above some (``platform``, ``platform:revenue``, ``pro``, ``pro:ID``): a typo
    (``platfrom:cash``, ``walet``) matched nothing and printed an empty book, exit 0.
    With ``pro_id`` (a statement), only that pro's accounts. A pro id may hold ':',
    so any ``pro:...`` names some pro's account."""
    if pro_id is not None:
        own = [pro_account(pro_id, kind) for kind in sorted(PRO_KINDS)]
        if account not in (*pro_nodes(pro_id), *own):  # the pro's accounts, or a node above them
            raise Rejection(UNKNOWN_ACCOUNT, f"account: {account[:80]!r} is not an account of pro {pro_id[:80]!r}: "
                            "wallet, advance, card, or their full names (" + ", ".join(own) + ")")
        return
    if account in _PLATFORM_NODES or account == "pro" or (account.startswith("pro:") and len(account) > 4):
        return
    raise Rejection(UNKNOWN_ACCOUNT, f"account: {account[:80]!r} is no account of the chart: "
                    f"{', '.join(PLATFORM_ACCOUNTS)}, pro:ID:wallet|advance|card, or a node above them "
                    "(platform, platform:revenue, pro, pro:ID)")


def pro_account(pro_id: str, kind: str) -> str:
    assert kind in PRO_KINDS
    return f"pro:{pro_id}:{kind}"


def pro_nodes(pro_id: str) -> tuple[str, str]:
    """The chart's nodes above a pro's accounts: all pros', then this pro's."""
    return "pro", f"pro:{pro_id}"


def named_accounts(wanted: str) -> list[str] | None:
    """The accounts a filter below ``pro`` names, exactly: ``pro:ID:KIND`` that account,
    any other ``pro:ID`` that pro's three; None for the platform's and ``pro``, whose
    names hold no id and take the accounts under them. A pro id may hold ':', so as
    text pro ``a:wallet``'s accounts lie under ``pro:a`` and ``pro:a:wallet``: taking
    the accounts under a pro's filter summed that pro in with pro ``a``."""
    if not wanted.startswith("pro:"):
        return None
    pro_id, _, kind = wanted[len("pro:"):].rpartition(":")
    if pro_id and kind in PRO_KINDS:
        return [wanted]
    return [pro_account(wanted[len("pro:"):], kind) for kind in sorted(PRO_KINDS)]


@dataclass
class WalletFacts:
    """What the journal needs to know of a pro's wallet when it maps an event."""

    unit: str
    card_currency: str
    market: str
    card_ref: str | None = None  # the card in force, as the log stood at this event


Fields = dict[str, Any]  # an event's fields by name, as stored or as a live event holds them
Lookup = Callable[[str], "WalletFacts | None"]


class Wallets:
    """The wallets as the log stands at the event being mapped: those seen opened
    in this pass, and ``lookup(pro_id)`` for the others (the view's table on a
    catch-up; nothing on a rebuild, which sees every WalletOpened first)."""

    def __init__(self, lookup: Lookup, known: dict[str, WalletFacts] | None = None):
        self._known: dict[str, WalletFacts] = dict(known or {})
        self._lookup = lookup

    def of(self, pro_id: str) -> WalletFacts:
        wallet = self._known.get(pro_id)
        if wallet is None:
            wallet = self._lookup(pro_id)
            if wallet is None:
                raise altered(pro_id)
            self._known[pro_id] = wallet
        return wallet

    def opened(self, pro_id: str, wallet: WalletFacts) -> None:
        self._known[pro_id] = wallet


def altered(pro_id: str) -> LedgerError:
    # The writer never records one (its rules need the wallet): the log was changed by hand.
    return LedgerError("log_damaged", f"the log has a money event for pro {pro_id!r} before its "
                       "WalletOpened: it was altered (run `leadledger verify`)")


class Batch:
    """The read-model rows of a run of events, one list per statement, each row
    in the order of the statement's columns (projections/mapping.py)."""

    __slots__ = ("wallets", "card_refs", "contacts", "first_seen", "facts", "postings")

    def __init__(self) -> None:
        # pro_id, market, unit, card_currency, region, policy_version, opened_at, position
        self.wallets: list[tuple[Any, ...]] = []
        self.card_refs: list[tuple[str, str]] = []  # card_ref, pro_id
        # contact_id, pro_id, market, pricing, management_fee, sent_at, refund_deadline,
        # unread_refund_due, first_seen_at (None: mapping.statements_for sets it), position
        self.contacts: list[tuple[Any, ...]] = []
        self.first_seen: list[tuple[str, str]] = []  # contact_id, at
        # position, seq, contact_id, kind, occurred_at, amount, refundable
        self.facts: list[tuple[Any, ...]] = []
        # position, seq, occurred_at, event_type, event_id, pro_id, contact_id, kind, account,
        # unit, debit, credit, market, reason, ref (what checkpoints.record reads too)
        self.postings: list[tuple[Any, ...]] = []


# A leg of an event's postings: account, kind (wallet, advance, card for a pro's
# accounts; "platform" otherwise), unit, debit, credit.
Leg = tuple[str, str, str, int, int]


def _post(out: Batch, position: int, event_type: str, e: Fields, at: str, pro_id: str, wallet: WalletFacts,
          legs: Sequence[Leg], reason: str | None, ref: str | None = None,
          contact_id: str | None = None) -> None:
    """An event's postings. The pro is the one the postings concern (statements);
    the market is its wallet's; reason and ref are what a statement line shows:
    why the money moved and the outside reference (payment_ref of a purchase,
    card_ref of a card charge)."""
    if not legs:
        return
    check_balanced(legs)
    event_id = uuid_text(e["event_id"])
    contact_id = contact_id or e.get("contact_id")
    out.postings.extend(
        (position, seq, at, event_type, event_id, pro_id, contact_id, kind, account, unit, debit, credit,
         wallet.market, reason, ref)
        for seq, (account, kind, unit, debit, credit) in enumerate(legs))


def _transfer(debit: str, credit: str, amount: int, unit: str, pro_id: str) -> tuple[Leg, ...]:
    """``amount`` from ``credit`` to ``debit``: each one of the pro's accounts by
    kind (``wallet``, ``advance``, ``card``) or a platform account. Nothing for 0."""
    assert amount >= 0
    if amount == 0:
        return ()
    debit_account, debit_kind = _side(pro_id, debit)
    credit_account, credit_kind = _side(pro_id, credit)
    return ((debit_account, debit_kind, unit, amount, 0), (credit_account, credit_kind, unit, 0, amount))


def _side(pro_id: str, account: str) -> tuple[str, str]:
    """An account and its posting kind: a pro's by kind, else the platform's."""
    return (pro_account(pro_id, account), account) if account in PRO_KINDS else (account, "platform")


def _in_wallet_unit(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets,
                    debit: str, credit: str, reason: str | None, ref: str | None = None,
                    contact_id: str | None = None) -> None:
    """The event's ``amount`` moved in the pro's wallet unit."""
    pro_id = e["pro_id"]
    wallet = wallets.of(pro_id)
    _post(out, position, event_type, e, at, pro_id, wallet,
          _transfer(debit, credit, e["amount"], wallet.unit, pro_id), reason, ref, contact_id)


# A handler is given the batch to fill, the event's position, type name and
# fields, its time as sortable text (computed once per event by the caller)
# and the wallets.
Handler = Callable[[Batch, int, str, Fields, str, Wallets], None]
_HANDLERS: dict[str, Handler] = {}


def map_event(out: Batch, position: int, event_type: str, e: Fields, wallets: Wallets) -> None:
    """Append the rows an event adds; the events that move no money and feed no
    table (reads of calls, receipts...) add none."""
    handler = _HANDLERS.get(event_type)
    if handler is not None:
        handler(out, position, event_type, e, sortable(e["occurred_at"]), wallets)


def _for(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[event_type] = handler
        return handler
    return register


@_for("WalletOpened")
def _wallet_opened(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    pro_id, market, unit, card_currency = e["pro_id"], e["market"], e["unit"], e["card_currency"]
    out.wallets.append((pro_id, market, unit, card_currency, e["region"], e["policy_version"], at, position))
    wallets.opened(pro_id, WalletFacts(unit, card_currency, market))


@_for("CreditsPurchased")
def _credits_purchased(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    _in_wallet_unit(out, position, event_type, e, at, wallets, CASH, "wallet", "purchase", e["payment_ref"])


@_for("AdvanceRepaid")
def _advance_repaid(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    _in_wallet_unit(out, position, event_type, e, at, wallets, "wallet", "advance", "advance_repaid")


@_for("CronosAdvanced")
def _cronos_advanced(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    _in_wallet_unit(out, position, event_type, e, at, wallets, "advance", "wallet", "advance")


@_for("ContactFeeCharged")
def _contact_fee_charged(out: Batch, position: int, event_type: str, e: Fields, at: str,
                         wallets: Wallets) -> None:
    pro_id, commission, management_fee = e["pro_id"], e["commission"], e["management_fee"]
    wallet = wallets.of(pro_id)
    total = commission + management_fee
    source_kind = e["paid_from"]
    unit = wallet.unit if source_kind == "wallet" else wallet.card_currency
    assert unit, f"no unit for a {source_kind} payment of {pro_id}"
    legs = [(pro_account(pro_id, source_kind), source_kind, unit, total, 0)]
    if commission:
        legs.append((REVENUE_COMMISSION, "platform", unit, 0, commission))
    if management_fee:
        legs.append((REVENUE_MANAGEMENT_FEE, "platform", unit, 0, management_fee))
    out.facts.append((position, 0, e["contact_id"], "charge", at, total, e["refundable"]))
    _post(out, position, event_type, e, at, pro_id, wallet, legs, "contact_fee",
          wallet.card_ref if source_kind == "card" else None)


@_for("QuoteFeeRefunded")
def _quote_fee_refunded(out: Batch, position: int, event_type: str, e: Fields, at: str,
                        wallets: Wallets) -> None:
    out.facts.append((position, 0, e["contact_id"], "refund", at, e["amount"], 0))
    _in_wallet_unit(out, position, event_type, e, at, wallets, REFUNDS, "wallet", e["reason"])


@_for("CourtesyCreditIssued")
def _courtesy_credit_issued(out: Batch, position: int, event_type: str, e: Fields, at: str,
                            wallets: Wallets) -> None:
    _in_wallet_unit(out, position, event_type, e, at, wallets, EXPENSE_COURTESY, "wallet", e["reason"],
                    contact_id=e["fee_ref"])


@_for("CallMinutesBilled")
def _call_minutes_billed(out: Batch, position: int, event_type: str, e: Fields, at: str,
                         wallets: Wallets) -> None:
    pro_id = e["pro_id"]
    wallet = wallets.of(pro_id)
    _post(out, position, event_type, e, at, pro_id, wallet,
          _transfer("card", REVENUE_CALL_MINUTES, e["amount"], e["currency"], pro_id), "call_minutes",
          wallet.card_ref)


@_for("CardRegistered")
def _card_registered(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    pro_id, card_ref = e["pro_id"], e["card_ref"]
    out.card_refs.append((card_ref, pro_id))
    wallets.of(pro_id).card_ref = card_ref


@_for("QuoteSent")
def _quote_sent(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    unread_refund_due = e["unread_refund_due"]
    out.contacts.append((
        e["contact_id"], e["pro_id"], e["market"], e["pricing"], e["management_fee"],
        at, sortable(e["refund_deadline"]), sortable(unread_refund_due) if unread_refund_due else None,
        None, position,  # first_seen_at: mapping.statements_for fills it from the batch
    ))


@_for("QuoteRead")
@_for("CustomerReplied")
def _first_seen(out: Batch, position: int, event_type: str, e: Fields, at: str, wallets: Wallets) -> None:
    out.first_seen.append((e["contact_id"], at))


@_for("ServiceConfirmed")
def _service_confirmed(out: Batch, position: int, event_type: str, e: Fields, at: str,
                       wallets: Wallets) -> None:
    out.facts.append((position, 0, e["contact_id"], "confirm", at, 0, 0))


@_for("RefundRectified")
def _refund_rectified(out: Batch, position: int, event_type: str, e: Fields, at: str,
                      wallets: Wallets) -> None:
    out.facts.append((position, 0, e["contact_id"], "rectify", at, 0, 0))


# Every handler is named for an event the log can hold (a misspelt name would
# leave that event's rows out, silently).
assert set(_HANDLERS) <= set(DOMAIN_EVENT_CLASSES), set(_HANDLERS) - set(DOMAIN_EVENT_CLASSES)


def check_balanced(legs: Sequence[Leg]) -> None:
    """Invariant: every event's postings balance per unit."""
    per_unit: dict[str, int] = {}
    for _, _, unit, debit, credit in legs:
        per_unit[unit] = per_unit.get(unit, 0) + debit - credit
    assert all(v == 0 for v in per_unit.values()), f"unbalanced postings: {legs}"
