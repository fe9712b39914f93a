"""Export of the journal as a Beancount file, for accountants and bean-check.

Each event with postings becomes one transaction dated at its occurred_at
(UTC date), payee the pro, a narration a person can read ("Contact fee for
contact ct-1001, from the wallet"), and as metadata the event type and id, the
contact, the reason and the outside reference (payment_ref or card_ref). Amounts become
decimals of the commodity (USD cents -> 12.34 USD; whole CRONO).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterator

from leadledger.projections.queries import split_ref
from leadledger.timefmt import sortable_to_rfc3339
from leadledger.units import major

_ROOTS = {
    "platform:cash": "Assets:Platform:Cash",
    "platform:revenue:commission": "Income:Platform:Commission",
    "platform:revenue:management_fee": "Income:Platform:ManagementFee",
    "platform:revenue:call_minutes": "Income:Platform:CallMinutes",
    "platform:refunds": "Expenses:Platform:Refunds",
    "platform:expense:courtesy": "Expenses:Platform:Courtesy",
}
_PRO_KINDS = {"wallet": "Liabilities:Pro", "advance": "Assets:Pro", "card": "Assets:Pro"}


DIGEST_HEX = 16  # 64 bits: no one finds an id whose digest matches a given pro's
_ESCAPED_TAIL = re.compile(rf"-[0-9a-f]{{{DIGEST_HEX}}}$")


def _component(pro_id: str) -> str:
    """A Beancount account component for a pro id, one per id.

    An id Beancount takes as it is (letters, digits, '-') is itself after ``P-``,
    unless it ends as an escaped one does; any other id is its cleaned form and
    its digest. The two kinds never meet (only the second ends in '-' and
    DIGEST_HEX hex digits), so a pro cannot get another's accounts by taking the
    escaped form of that pro's id as its own id (before 0.6.6 it could: the
    digest was 8 hex digits and such an id was written as itself)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", pro_id)
    if cleaned == pro_id and not _ESCAPED_TAIL.search(pro_id):
        return "P-" + pro_id
    return f"P-{cleaned}-{hashlib.sha256(pro_id.encode()).hexdigest()[:DIGEST_HEX]}"


def account_name(account: str) -> str:
    if account in _ROOTS:
        return _ROOTS[account]
    assert account.startswith("pro:"), account
    pro_id, kind = account[len("pro:"):].rsplit(":", 1)
    return f"{_PRO_KINDS[kind]}:{_component(pro_id)}:{kind.capitalize()}"


def narration(r: dict[str, Any]) -> str:
    """What a person reads in the journal: what happened, to which contact, why."""
    contact = f" for contact {r['contact_id']}" if r["contact_id"] else ""
    kind, reason, ref = r["event_type"], r["reason"], r["ref"]
    if kind == "CreditsPurchased":
        return f"Credits purchased, payment {ref}"
    if kind == "ContactFeeCharged":
        return f"Contact fee{contact}" + (f", paid by card {ref}" if ref else ", from the wallet")
    if kind == "QuoteFeeRefunded":
        return f"Fee refunded{contact} ({reason})"
    if kind == "CourtesyCreditIssued":
        return f"Courtesy credit ({reason})" + (f" on the fee of contact {r['contact_id']}" if r["contact_id"] else "")
    if kind == "CronosAdvanced":
        return f"Cronos advanced{contact}"
    if kind == "AdvanceRepaid":
        return "Advance repaid from a purchase"
    if kind == "CallMinutesBilled":
        return f"Call minutes{contact}, card {ref}"
    return kind


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def export(view: Any) -> Iterator[str]:
    """Yield the Beancount file, line by line, streaming over the postings."""
    yield "; leadledger journal export (double-entry, checked by bean-check)"
    yield 'option "operating_currency" "USD"'
    units = [r["unit"] for r in view.query("SELECT DISTINCT unit FROM ll_postings ORDER BY unit")]
    first = view.query("SELECT MIN(occurred_at) AS first FROM ll_postings")[0]["first"]
    if first is None:
        return
    open_date = first[:10]
    for unit in units:
        yield f"{open_date} commodity {unit}"
    for r in view.query("SELECT DISTINCT account FROM ll_postings ORDER BY account"):
        yield f"{open_date} open {account_name(r['account'])}"
    yield ""
    current: int | None = None
    for r in stream_postings(view):
        if r["position"] != current:
            current = r["position"]
            yield ""
            yield f"{r['occurred_at'][:10]} * {_quote(r['pro_id'] or 'platform')} {_quote(narration(r))}"
            yield f"  event_type: {_quote(r['event_type'])}"
            yield f"  event_id: {_quote(r['event_id'])}"
            yield f"  occurred_at: {_quote(sortable_to_rfc3339(r['occurred_at']))}"
            payment_ref, card_ref = split_ref(r["reason"], r["ref"])
            for key, value in (("contact_id", r["contact_id"]), ("reason", r["reason"]),
                               ("payment_ref", payment_ref), ("card_ref", card_ref)):
                if value:
                    yield f"  {key}: {_quote(value)}"
        value = int(r["debit"]) - int(r["credit"])
        yield f"  {account_name(r['account'])}  {major(value, r['unit'])} {r['unit']}"


def stream_postings(view: Any, page_size: int = 5000) -> Iterator[dict[str, Any]]:
    """All postings in log order, a page at a time (keyset on position)."""
    after = -1
    while True:
        page = view.query("SELECT * FROM ll_postings WHERE position > ? ORDER BY position, seq"
                          " LIMIT ?", [after, page_size])
        if not page:
            return
        if len(page) == page_size:  # the last position may continue on the next page
            last = page[-1]["position"]
            complete = [r for r in page if r["position"] != last]
            if complete:
                page = complete
        yield from page
        after = page[-1]["position"]
