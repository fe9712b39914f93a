"""`leadledger explain CONTACT_ID`: why a contact has its refund status.

Everything shown is read back from what was recorded: the contact's own events
from the log, its money from the journal, and the refund deadline decided when
the quote was sent. The deadline's computation is re-derived from the policy
version the wallet recorded, and checked against the recorded instant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadledger.aggregates import contact_id_to_uuid
from leadledger.errors import CONTACT_NOT_FOUND, Rejection
from leadledger.markets import policy as market_policy
from leadledger.policies import describe_deadline
from leadledger.projections.queries import iter_refunds
from leadledger.timefmt import format_utc, parse_utc, sortable_utc
from leadledger.units import major

# What each recorded fact means for the contact (the money it moved is added from the journal).
_MEANING = {
    "QuoteSent": "quote sent",
    "QuoteRead": "the customer read the quote (stops the 48 h unread refund)",
    "CustomerReplied": "the customer replied",
    "CallAttemptFailed": "call attempt failed",
    "CallConnectionStopped": "calls stopped after repeated failed attempts",
    "CallMinutesBilled": "call minutes billed to the card",
    "RefundRequested": "the pro asked for a refund",
    "RefundPostponed": "the pro postponed the refund decision",
    "ServiceConfirmed": "the pro confirmed the service: no refund from now on",
    "RefundRectified": "rectified: the pro did the job after all, the refund is charged again",
    "ContactFeeCharged": "contact fee charged",
    "CronosAdvanced": "cronos advanced to cover the shortfall",
    "QuoteFeeRefunded": "fee refunded",
}


def _money(amount: int, unit: str) -> str:
    return f"{major(amount, unit, thousands=True)} {unit}"


def _detail(event: Any, unit: str, pol: Any) -> str:
    name = type(event).__name__
    text = _MEANING.get(name, name)
    if name == "QuoteSent":
        fee = _money(event.commission + event.management_fee, unit)
        text += (f": {event.pricing}, commission {_money(event.commission, unit)} + management fee "
                 f"{_money(event.management_fee, unit)} = {fee}, job date {event.job_date.isoformat()}, "
                 f"category {event.category}")
        if event.pricing == "guaranteed_reply":
            text += "; nothing charged until the customer's first successful contact (SPEC 4.2)"
        else:
            text += "; charged now from the wallet (SPEC 4.1)"
    elif name == "CustomerReplied":
        text += f" by {event.channel}"
    elif name == "CallAttemptFailed":
        text += f" ({event.reason})"
    elif name == "CallMinutesBilled":
        text += (f": call {event.call_id}, {event.duration_seconds} s, {event.billable_minutes} billable "
                 f"minute(s) after {pol.calls.free_seconds} s free = {_money(event.amount, event.currency)}")
    elif name in ("RefundRequested",):
        text += f" ({event.reason})"
    elif name == "RefundPostponed":
        text += f" until {event.until.isoformat()}"
    return text


def _money_detail(row: dict[str, Any], pol: Any) -> str:
    name, unit = row["event_type"], row["unit"]
    if name == "ContactFeeCharged":
        source = "the card" + (f" {row['ref']}" if row["ref"] else "") if row["kind"] == "card" else "the wallet"
        return f"contact fee charged: {_money(row['amount'], unit)} from {source}"
    if name == "CronosAdvanced":
        return (f"cronos advanced: {_money(row['amount'], unit)} to cover the shortfall "
                f"(outstanding advance limit {_money(pol.advance_limit, unit)})")
    if name == "QuoteFeeRefunded":
        returns = "the whole fee" if pol.refund.returns == "whole_fee" else "the commission only (the management fee is never refunded)"
        why = ("automatic: the quote was not read within "
               f"{pol.refund.unread_refund_hours} h of sending" if row["reason"] == "unread_48h"
               else f"reason {row['reason']}, allowed on {pol.market}")
        return f"fee refunded: {_money(row['amount'], unit)} to the wallet ({why}; {pol.market} returns {returns})"
    return f"{name}: {_money(row['amount'], unit)}"


def explain_contact(app: Any, view: Any, contact_id: str, as_of: datetime) -> dict[str, Any]:
    rows = view.query("SELECT c.*, w.unit, w.policy_version FROM ll_contacts c"
                      " JOIN ll_wallets w ON w.pro_id = c.pro_id WHERE c.contact_id = ?", [contact_id])
    if not rows or rows[0]["sent_at"] > sortable_utc(as_of):
        when = "" if not rows else f" by {format_utc(as_of)}"
        raise Rejection(CONTACT_NOT_FOUND, f"no quote was sent for contact {contact_id!r}{when}")
    contact = rows[0]
    unit, pol = contact["unit"], market_policy(contact["market"], int(contact["policy_version"]))

    facts: list[tuple[str, int, int, dict[str, Any]]] = []
    sent = None
    for stored in app.recorder.select_events(contact_id_to_uuid(contact_id)):
        event = app.mapper.to_domain_event(stored)
        if type(event).__name__ == "QuoteSent":
            sent = event
        if event.occurred_at > as_of:
            continue
        facts.append((sortable_utc(event.occurred_at), 0, event.originator_version, {
            "occurred_at": format_utc(event.occurred_at), "event_type": type(event).__name__,
            "event_id": str(event.event_id), "detail": _detail(event, unit, pol)}))
    assert sent is not None, f"contact {contact_id!r} is projected but has no QuoteSent"

    money = view.query(
        "SELECT position, occurred_at, event_type, event_id, kind, unit, reason, ref,"
        " CAST(SUM(debit) AS BIGINT) AS debit, CAST(SUM(credit) AS BIGINT) AS credit"
        " FROM ll_postings WHERE pro_id = ? AND contact_id = ? AND kind <> 'platform' AND occurred_at <= ?"
        " AND event_type IN ('ContactFeeCharged', 'CronosAdvanced', 'QuoteFeeRefunded')"
        " GROUP BY position, occurred_at, event_type, event_id, kind, unit, reason, ref ORDER BY position",
        [contact["pro_id"], contact_id, sortable_utc(as_of)])
    for posting in money:
        if posting["kind"] == "advance":
            continue  # the advance's other leg is the wallet credit, shown once
        debit, credit = int(posting["debit"]), int(posting["credit"])
        posting["amount"] = debit if posting["event_type"] == "ContactFeeCharged" else credit
        facts.append((posting["occurred_at"], 1, int(posting["position"]), {
            "occurred_at": format_utc(parse_utc(posting["occurred_at"])), "event_type": posting["event_type"],
            "event_id": posting["event_id"], "detail": _money_detail(posting, pol), "amount": posting["amount"],
            "unit": posting["unit"]}))
    # Status and amounts exactly as `refunds` reports them (one query, one rule).
    row = next(iter_refunds(view, as_of, contact_id=contact_id, as_of=as_of))
    deadline = parse_utc(row["deadline"])
    window_open = as_of < deadline
    kinds = {fact["event_type"] for *_, fact in facts}
    computed = describe_deadline(pol, sent.occurred_at, sent.job_date)
    recomputed = computed.pop("closes_at")
    return {
        "contact_id": contact_id,
        "pro_id": contact["pro_id"],
        "market": contact["market"],
        "policy_version": pol.version,
        "pricing": contact["pricing"],
        "unit": unit,
        "as_of": format_utc(as_of),
        "status": row["status"],
        "because": _because(row["charged"], row["refunded"], "ServiceConfirmed" in kinds,
                            "RefundRectified" in kinds, window_open, deadline, unit),
        "charged": row["charged"],
        "refunded": row["refunded"],
        "refundable": row["refundable"],
        "deadline": {
            "closes_at": format_utc(deadline),
            "open": window_open,
            **computed,
            # The recorded instant rules; a differing re-computation would mean the
            # policy file changed under a shipped version (a bug worth seeing).
            "matches_recorded": format_utc(recomputed) == format_utc(deadline),
        },
        "facts": [fact for *_, fact in sorted(facts, key=lambda f: f[:3])],
    }


def _because(charged: int, refunded: int, confirmed: bool, rectified: bool,
             window_open: bool, deadline: datetime, unit: str) -> str:
    window = (f"the refund window is open until {format_utc(deadline)}" if window_open
              else f"the refund window closed at {format_utc(deadline)}")
    if charged == 0:
        return "nothing has been charged for this contact"
    if rectified:
        return "the refund was rectified: the fee is charged again"
    if confirmed:
        return "the pro confirmed the service"
    if refunded:
        return f"{_money(refunded, unit)} was refunded and {window}"
    return f"{_money(charged, unit)} was charged, not refunded nor confirmed, and {window}"
