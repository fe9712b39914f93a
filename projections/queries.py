"""Read-model queries. Each is one SQL aggregation; nothing loads the log.

``as_of`` filters on ``occurred_at``. Rows come back sorted by their natural
key with integer amounts and RFC 3339 UTC times, so JSON output is byte-stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from leadledger.timefmt import parse_utc, sortable_to_rfc3339, sortable_utc
from leadledger.projections.status import GERER, refund_status

_FAR_FUTURE = "9999-12-31T23:59:59.999999Z"


def _bound(as_of: datetime | None) -> str:
    return sortable_utc(as_of) if as_of is not None else _FAR_FUTURE


_NO_POSITION_BOUND = 2**62


def balances(view: Any, pro_id: str | None = None, as_of: datetime | None = None,
             max_position: int | None = None) -> list[dict[str, Any]]:
    """``max_position``: only what the log up to that position made (verify)."""
    bound = _bound(as_of)
    top = max_position if max_position is not None else _NO_POSITION_BOUND
    params: list[Any] = [bound, top, bound, top]
    where = "w.opened_at <= ? AND w.position <= ?"
    if pro_id is not None:
        where += " AND w.pro_id = ?"
        params.append(pro_id)
    rows = view.query(
        "SELECT w.pro_id, w.market, w.unit, w.card_currency,"
        " CAST(COALESCE(SUM(CASE WHEN p.kind = 'wallet' THEN p.credit - p.debit END), 0) AS BIGINT) AS balance,"
        " CAST(COALESCE(SUM(CASE WHEN p.kind = 'advance' THEN p.debit - p.credit END), 0) AS BIGINT) AS advance_outstanding,"
        " CAST(COALESCE(SUM(CASE WHEN p.kind = 'card' THEN p.debit - p.credit END), 0) AS BIGINT) AS card_charged"
        " FROM ll_wallets w LEFT JOIN ll_postings p"
        " ON p.pro_id = w.pro_id AND p.kind <> 'platform' AND p.occurred_at <= ? AND p.position <= ?"
        f" WHERE {where}"
        " GROUP BY w.pro_id, w.market, w.unit, w.card_currency ORDER BY w.pro_id",
        params,  # join bound, then the WHERE bounds, in text order
    )
    return [
        {
            "pro_id": r["pro_id"],
            "market": r["market"],
            "unit": r["unit"],
            "balance": int(r["balance"]),
            "advance_outstanding": int(r["advance_outstanding"]),
            "card_charged": int(r["card_charged"]),
            "card_currency": r["card_currency"] or None,
        }
        for r in rows
    ]


def refunds(view: Any, now: datetime, pro_id: str | None = None, status: str | None = None,
            as_of: datetime | None = None, max_position: int | None = None) -> list[dict[str, Any]]:
    """Refund status of every contact as of ``as_of`` (default: ``now``)."""
    return list(iter_refunds(view, now, pro_id, status, as_of, max_position))


def iter_refunds(view: Any, now: datetime, pro_id: str | None = None, status: str | None = None,
                 as_of: datetime | None = None, max_position: int | None = None) -> Iterator[dict[str, Any]]:
    """``refunds`` streamed: one contact at a time, in contact_id order."""
    at = sortable_utc(as_of if as_of is not None else now)
    top = max_position if max_position is not None else _NO_POSITION_BOUND
    where = "c.sent_at <= ? AND c.position <= ?"
    params: list[Any] = [at, top, at, top]
    if pro_id is not None:
        where += " AND c.pro_id = ?"
        params.append(pro_id)
    rows = view.stream(
        "SELECT c.contact_id, c.pro_id, c.market, c.refund_deadline,"
        " CAST(COALESCE(SUM(CASE WHEN f.kind = 'charge' THEN f.amount END), 0) AS BIGINT) AS charged,"
        " CAST(COALESCE(SUM(CASE WHEN f.kind = 'charge' THEN f.refundable END), 0) AS BIGINT) AS refundable,"
        " CAST(COALESCE(SUM(CASE WHEN f.kind = 'refund' THEN f.amount END), 0) AS BIGINT) AS refunded,"
        " COUNT(CASE WHEN f.kind = 'confirm' THEN 1 END) AS confirmed,"
        " COUNT(CASE WHEN f.kind = 'rectify' THEN 1 END) AS rectified"
        " FROM ll_contacts c LEFT JOIN ll_contact_facts f"
        " ON f.contact_id = c.contact_id AND f.occurred_at <= ? AND f.position <= ?"
        f" WHERE {where}"
        " GROUP BY c.contact_id, c.pro_id, c.market, c.refund_deadline ORDER BY c.contact_id",
        params,
    )
    for r in rows:
        state = refund_status(
            charged=int(r["charged"]), refunded=int(r["refunded"]),
            confirmed=int(r["confirmed"]) > 0, rectified=int(r["rectified"]) > 0,
            window_open=at < r["refund_deadline"],
        )
        if status is not None and state != status:
            continue
        yield {
            "contact_id": r["contact_id"],
            "pro_id": r["pro_id"],
            "market": r["market"],
            "status": state,
            "charged": int(r["charged"]),
            "refunded": int(r["refunded"]),
            "refundable": int(r["refundable"]) if state == GERER else 0,
            "deadline": sortable_to_rfc3339(r["refund_deadline"]),
        }


def trial_balance(view: Any, as_of: datetime | None = None,
                  max_position: int | None = None) -> list[dict[str, Any]]:
    rows = view.query(
        "SELECT account, unit, CAST(SUM(debit) AS BIGINT) AS debit, CAST(SUM(credit) AS BIGINT) AS credit"
        " FROM ll_postings WHERE occurred_at <= ? AND position <= ?"
        " GROUP BY account, unit ORDER BY account, unit",
        [_bound(as_of), max_position if max_position is not None else _NO_POSITION_BOUND],
    )
    return [
        {"account": r["account"], "unit": r["unit"], "debit": int(r["debit"]),
         "credit": int(r["credit"]), "balance": int(r["debit"]) - int(r["credit"])}
        for r in rows
    ]


def unread_refund_candidates(view: Any, now: datetime) -> list[tuple[str, str]]:
    """Contacts whose 48 h unread deadline has passed with no read or reply in time
    and no refund yet; the aggregates re-check each one before anything is recorded."""
    rows = view.query(
        "SELECT c.contact_id, c.unread_refund_due FROM ll_contacts c"
        " WHERE c.unread_refund_due IS NOT NULL AND c.unread_refund_due <= ?"
        " AND (c.first_seen_at IS NULL OR c.first_seen_at > c.unread_refund_due)"
        " AND NOT EXISTS (SELECT 1 FROM ll_contact_facts f WHERE f.contact_id = c.contact_id"
        " AND f.kind IN ('refund', 'confirm'))"
        " ORDER BY c.unread_refund_due, c.contact_id",
        [sortable_utc(now)],
    )
    return [(r["contact_id"], r["unread_refund_due"]) for r in rows]


def statement(view: Any, pro_id: str, start: datetime | None = None,
              end: datetime | None = None) -> list[dict[str, Any]]:
    """Every posting on the pro's accounts with a running balance per account.

    Running balances are in each account's natural sign: the wallet's funds
    (credit - debit), the advance owed and the card charged (debit - credit).
    Postings before ``start`` are summed into the opening balance, not listed.
    """
    start_key = sortable_utc(start) if start is not None else ""
    rows = view.query(
        "SELECT occurred_at, event_type, event_id, contact_id, account, kind, unit, debit, credit"
        " FROM ll_postings WHERE pro_id = ? AND kind <> 'platform' AND occurred_at <= ?"
        " ORDER BY occurred_at, position, seq",
        [pro_id, _bound(end)],
    )
    running: dict[str, int] = {}
    out = []
    for r in rows:
        sign = 1 if r["kind"] == "wallet" else -1
        running[r["account"]] = running.get(r["account"], 0) + sign * (int(r["credit"]) - int(r["debit"]))
        if r["occurred_at"] < start_key:
            continue
        out.append({
            "occurred_at": sortable_to_rfc3339(r["occurred_at"]),
            "event_type": r["event_type"],
            "event_id": r["event_id"],
            "contact_id": r["contact_id"],
            "account": r["account"],
            "unit": r["unit"],
            "debit": int(r["debit"]),
            "credit": int(r["credit"]),
            "running_balance": running[r["account"]],
        })
    return out


def wallet_exists(view: Any, pro_id: str) -> bool:
    return bool(view.query("SELECT 1 AS one FROM ll_wallets WHERE pro_id = ?", [pro_id]))


def latest_occurred_at(view: Any, max_position: int | None = None) -> datetime | None:
    rows = view.query("SELECT MAX(occurred_at) AS latest FROM ll_postings WHERE position <= ?",
                      [max_position if max_position is not None else _NO_POSITION_BOUND])
    return parse_utc(rows[0]["latest"]) if rows and rows[0]["latest"] else None
