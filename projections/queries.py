"""Read-model queries. Each is one SQL aggregation; nothing loads the log.

``as_of`` filters on ``occurred_at``. Rows come back sorted by their natural
key with integer amounts and RFC 3339 UTC times, so JSON output is byte-stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from leadledger.timefmt import format_utc, parse_utc, sortable_to_rfc3339, sortable_utc
from leadledger.projections import checkpoints
from leadledger.projections.journal import named_accounts, pro_account
from leadledger.projections.status import GERER, refund_status

_FAR_FUTURE = "9999-12-31T23:59:59.999999Z"


def _bound(as_of: datetime | None) -> str:
    return sortable_utc(as_of) if as_of is not None else _FAR_FUTURE


_NO_POSITION_BOUND = 2**62


_BALANCE_COLUMNS = (
    "SELECT w.pro_id, w.market, w.unit, w.card_currency,"
    " CAST(COALESCE(SUM(CASE WHEN p.kind = 'wallet' THEN p.credit - p.debit END), 0) AS BIGINT) AS balance,"
    " CAST(COALESCE(SUM(CASE WHEN p.kind = 'advance' THEN p.debit - p.credit END), 0) AS BIGINT)"
    " AS advance_outstanding,"
    " CAST(COALESCE(SUM(CASE WHEN p.kind = 'card' THEN p.debit - p.credit END), 0) AS BIGINT) AS card_charged"
)
_BALANCE_GROUPS = " GROUP BY w.pro_id, w.market, w.unit, w.card_currency ORDER BY w.pro_id"


def balances(view: Any, pro_id: str | None = None, as_of: datetime | None = None,
             max_position: int | None = None, market: str | None = None) -> list[dict[str, Any]]:
    """``max_position``: only what the log up to that position made (verify);
    that reads the postings themselves, anything else the checkpointed totals."""
    bound = _bound(as_of)
    filters, more = posting_filters(pro_id=pro_id, market=market, alias="w.")
    if max_position is None:
        in_market, market_params = posting_filters(market=market)
        of_pro, pro_params = posting_filters(pro_id=pro_id)
        # a pro's checkpoint rows by account name: the primary key finds them
        named, names = ((" AND account IN (?, ?, ?)", [pro_account(pro_id, k) for k in ("wallet", "advance", "card")])
                        if pro_id is not None else ("", []))
        subquery, sub_params = checkpoints.totals(
            view, bound, inclusive=True,
            where=" AND kind <> 'platform'" + in_market, params=market_params,
            checkpoint_where=named, checkpoint_params=names, posting_where=of_pro, posting_params=pro_params)
        rows = view.query(
            f"{_BALANCE_COLUMNS} FROM ll_wallets w LEFT JOIN ({subquery}) p ON p.pro_id = w.pro_id"
            f" WHERE w.opened_at <= ?{filters}{_BALANCE_GROUPS}",
            [*sub_params, bound, *more],
        )
    else:
        rows = view.query(
            f"{_BALANCE_COLUMNS} FROM ll_wallets w LEFT JOIN ll_postings p"
            " ON p.pro_id = w.pro_id AND p.kind <> 'platform' AND p.occurred_at <= ? AND p.position <= ?"
            f" WHERE w.opened_at <= ? AND w.position <= ?{filters}{_BALANCE_GROUPS}",
            [bound, max_position, bound, max_position, *more],  # join bounds, then the WHERE's, in text order
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
            as_of: datetime | None = None, max_position: int | None = None,
            market: str | None = None) -> list[dict[str, Any]]:
    """Refund status of every contact as of ``as_of`` (default: ``now``)."""
    return list(iter_refunds(view, now, pro_id, status, as_of, max_position, market))


def iter_refunds(view: Any, now: datetime, pro_id: str | None = None, status: str | None = None,
                 as_of: datetime | None = None, max_position: int | None = None,
                 market: str | None = None, contact_id: str | None = None) -> Iterator[dict[str, Any]]:
    """``refunds`` streamed: one contact at a time, in contact_id order."""
    at = sortable_utc(as_of if as_of is not None else now)
    top = max_position if max_position is not None else _NO_POSITION_BOUND
    filters, more = posting_filters(pro_id=pro_id, market=market, contact_id=contact_id, alias="c.")
    where = "c.sent_at <= ? AND c.position <= ?" + filters
    params: list[Any] = [at, top, at, top, *more]
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


def _under(account: str) -> tuple[str, str]:
    """The bounds of the accounts under ``account`` (those starting ``account:``), for
    ``>= low AND < high``: the text columns compare byte by byte on both stores
    (SQLite's BINARY, PostgreSQL's "C"), and ":" + 1 is ";". Not LIKE: SQLite's is
    blind to ASCII case (``pro:Alpha`` took in ``pro:alpha`` and ``pro:ALPHA``, on
    SQLite only), and its escape character was a backslash, which a PostgreSQL database
    set to standard_conforming_strings = off reads as an escape."""
    return account + ":", account + ";"


def account_matches(account: str, wanted: str | None) -> bool:
    """The same test as the ``account`` filter below, in Python."""
    if wanted is None:
        return True
    named = named_accounts(wanted)
    return account in named if named is not None else account == wanted or account.startswith(wanted + ":")


def posting_filters(*, pro_id: str | None = None, market: str | None = None, contact_id: str | None = None,
                    account: str | None = None, start: datetime | None = None, end: datetime | None = None,
                    alias: str = "") -> tuple[str, list[Any]]:
    """SQL conditions (each starting with AND) and their parameters, on the columns
    of ``alias`` (a table alias with its dot, or ""). ``account`` matches that
    account and the accounts under it (``platform:revenue``); ``start`` and ``end``
    bound occurred_at, both inclusive."""
    where, params = "", []
    for column, value in (("pro_id", pro_id), ("market", market), ("contact_id", contact_id)):
        if value is not None:
            where += f" AND {alias}{column} = ?"
            params.append(value)
    named = named_accounts(account) if account is not None else None
    if named is not None:  # a pro's accounts, by name: other ids may hold ':'
        where += f" AND account IN ({', '.join('?' * len(named))})"
        params += named
    elif account is not None:
        where += " AND (account = ? OR (account >= ? AND account < ?))"
        params += [account, *_under(account)]
    for bound, operator in ((start, ">="), (end, "<=")):
        if bound is not None:
            where += f" AND {alias}occurred_at {operator} ?"
            params.append(sortable_utc(bound))
    return where, params


def split_ref(reason: str | None, ref: str | None) -> tuple[str | None, str | None]:
    """A posting's outside reference as (payment_ref, card_ref): a purchase carries
    its payment_ref, a card charge the card_ref (see journal.Rows)."""
    return (ref, None) if reason == "purchase" else (None, ref)


def trial_balance(view: Any, as_of: datetime | None = None, max_position: int | None = None, *,
                  start: datetime | None = None, pro_id: str | None = None, market: str | None = None,
                  account: str | None = None) -> list[dict[str, Any]]:
    """One row per account and unit. Without ``start``: debit, credit and balance of
    everything up to ``as_of``. With ``start`` (a period): the opening balance
    before it, the period's debits and credits, and the closing balance."""
    if max_position is None and pro_id is None and (start is None or as_of is None or start <= as_of):
        return _checkpointed_trial_balance(view, as_of, start, market, account)
    where, params = posting_filters(pro_id=pro_id, market=market, account=account)
    top = max_position if max_position is not None else _NO_POSITION_BOUND
    if start is None:
        rows = view.query(
            "SELECT account, unit, CAST(SUM(debit) AS BIGINT) AS debit, CAST(SUM(credit) AS BIGINT) AS credit"
            f" FROM ll_postings WHERE occurred_at <= ? AND position <= ?{where}"
            " GROUP BY account, unit ORDER BY account, unit",
            [_bound(as_of), top, *params],
        )
        return [
            {"account": r["account"], "unit": r["unit"], "debit": int(r["debit"]),
             "credit": int(r["credit"]), "balance": int(r["debit"]) - int(r["credit"])}
            for r in rows
        ]
    first = sortable_utc(start)
    rows = view.query(
        "SELECT account, unit,"
        " CAST(SUM(CASE WHEN occurred_at < ? THEN debit - credit ELSE 0 END) AS BIGINT) AS opening,"
        " CAST(SUM(CASE WHEN occurred_at >= ? THEN debit ELSE 0 END) AS BIGINT) AS debit,"
        " CAST(SUM(CASE WHEN occurred_at >= ? THEN credit ELSE 0 END) AS BIGINT) AS credit"
        f" FROM ll_postings WHERE occurred_at <= ? AND position <= ?{where}"
        " GROUP BY account, unit ORDER BY account, unit",
        [first, first, first, _bound(as_of), top, *params],
    )
    return [
        {"account": r["account"], "unit": r["unit"], "debit": int(r["debit"]), "credit": int(r["credit"]),
         "balance": int(r["opening"]) + int(r["debit"]) - int(r["credit"]), "opening": int(r["opening"])}
        for r in rows
    ]


def _checkpointed_trial_balance(view: Any, as_of: datetime | None, start: datetime | None,
                                market: str | None, account: str | None) -> list[dict[str, Any]]:
    """``trial_balance`` from the checkpointed totals: closing totals up to
    ``as_of``, and with ``start`` the opening totals before it (the period's
    debits and credits are the difference)."""
    where, params = posting_filters(market=market, account=account)
    until = _bound(as_of)
    closing, closing_params = checkpoints.totals(view, until, inclusive=True,
                                                 where=where, params=params)
    parts = f"SELECT account, unit, debit AS cd, credit AS cc, 0 AS od, 0 AS oc FROM ({closing}) c"
    if start is not None:
        first = sortable_utc(start)
        opening, opening_params = checkpoints.totals(view, first, inclusive=False,
                                                     where=where, params=params)
        parts += f" UNION ALL SELECT account, unit, 0, 0, debit, credit FROM ({opening}) o"
        closing_params += opening_params
    rows = view.query(
        "SELECT account, unit, CAST(SUM(cd) AS BIGINT) AS closing_debit, CAST(SUM(cc) AS BIGINT) AS closing_credit,"
        " CAST(SUM(od) AS BIGINT) AS opening_debit, CAST(SUM(oc) AS BIGINT) AS opening_credit"
        f" FROM ({parts}) t GROUP BY account, unit ORDER BY account, unit",
        closing_params,
    )
    out = []
    for r in rows:
        opening_balance = int(r["opening_debit"]) - int(r["opening_credit"])
        debit = int(r["closing_debit"]) - int(r["opening_debit"])
        credit = int(r["closing_credit"]) - int(r["opening_credit"])
        row = {"account": r["account"], "unit": r["unit"], "debit": debit, "credit": credit,
               "balance": opening_balance + debit - credit}
        if start is not None:
            row["opening"] = opening_balance
        out.append(row)
    return out


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


_KIND_ORDER = {"wallet": 0, "advance": 1, "card": 2}


def statement(view: Any, pro_id: str, start: datetime | None = None,
              end: datetime | None = None, account: str | None = None) -> list[dict[str, Any]]:
    """The pro's accounts, one section each (wallet, advance, card): an opening
    line, every posting in [start, end] with the account's running balance, and a
    closing line carrying the period's total debits and credits.

    Balances are in each account's natural sign: the wallet's funds (credit -
    debit), the advance owed and the card charged (debit - credit). The wallet
    section is always there; the others when they have postings. Each row has
    the fields a statement always had, then ``line``, ``reason`` and the refs.
    """
    wallet = view.query("SELECT unit FROM ll_wallets WHERE pro_id = ?", [pro_id])
    if not wallet:
        return []
    where, params = posting_filters(account=account, end=end)
    rows = view.query(
        "SELECT occurred_at, event_type, event_id, contact_id, account, kind, unit, debit, credit,"
        f" reason, ref FROM ll_postings WHERE pro_id = ? AND kind <> 'platform'{where}"
        " ORDER BY occurred_at, position, seq",
        [pro_id, *params],
    )
    start_key = sortable_utc(start) if start is not None else ""
    sections: dict[tuple[int, str], dict[str, Any]] = {}
    wallet_account = f"pro:{pro_id}:wallet"
    if account_matches(wallet_account, account):
        sections[(0, wallet_account)] = {"unit": wallet[0]["unit"], "opening": 0, "lines": []}
    for r in rows:
        section = sections.setdefault((_KIND_ORDER[r["kind"]], r["account"]),
                                      {"unit": r["unit"], "opening": 0, "lines": []})
        sign = 1 if r["kind"] == "wallet" else -1
        change = sign * (int(r["credit"]) - int(r["debit"]))
        if r["occurred_at"] < start_key:
            section["opening"] += change
        else:
            section["lines"].append((r, change))
    out: list[dict[str, Any]] = []
    for (_, name), section in sorted(sections.items()):
        balance, debits, credits = section["opening"], 0, 0
        out.append(_statement_line("opening", name, section["unit"], start, None, None, balance))
        for r, change in section["lines"]:
            balance += change
            debits += int(r["debit"])
            credits += int(r["credit"])
            out.append(_statement_line("posting", name, section["unit"], parse_utc(r["occurred_at"]),
                                       int(r["debit"]), int(r["credit"]), balance, r))
        out.append(_statement_line("closing", name, section["unit"], end, debits, credits, balance))
    return out


def _statement_line(line: str, account: str, unit: str, at: datetime | None, debit: int | None,
                    credit: int | None, balance: int, posting: dict[str, Any] | None = None) -> dict[str, Any]:
    posting = posting or {}
    payment_ref, card_ref = split_ref(posting.get("reason"), posting.get("ref"))
    return {"occurred_at": format_utc(at) if at else None, "event_type": posting.get("event_type"),
            "event_id": posting.get("event_id"), "contact_id": posting.get("contact_id"),
            "account": account, "unit": unit, "debit": debit, "credit": credit, "running_balance": balance,
            "line": line, "reason": posting.get("reason"), "payment_ref": payment_ref, "card_ref": card_ref}


REVENUE_KINDS = {
    "platform:revenue:commission": "commission",
    "platform:revenue:management_fee": "management_fee",
    "platform:revenue:call_minutes": "call_minutes",
}
INCOME_FIELDS = ("commission", "management_fee", "call_minutes", "revenue", "refunds", "courtesy", "net")


def income(view: Any, start: datetime | None = None, end: datetime | None = None,
           market: str | None = None) -> list[dict[str, Any]]:
    """Revenue by kind, refunds and courtesy expense in [start, end], one row per
    market and unit; net = revenue - refunds - courtesy."""
    where, params = posting_filters(market=market, start=start, end=end)
    rows = view.query(
        "SELECT market, unit, account, CAST(SUM(debit) AS BIGINT) AS debit,"
        " CAST(SUM(credit) AS BIGINT) AS credit FROM ll_postings"
        f" WHERE kind = 'platform' AND account <> 'platform:cash'{where}"
        " GROUP BY market, unit, account ORDER BY market, unit, account",
        params,
    )
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        row = out.setdefault((r["market"], r["unit"]), {
            "market": r["market"], "unit": r["unit"], **{name: 0 for name in INCOME_FIELDS}})
        debit, credit = int(r["debit"]), int(r["credit"])
        if r["account"] in REVENUE_KINDS:
            row[REVENUE_KINDS[r["account"]]] += credit - debit
        elif r["account"] == "platform:refunds":
            row["refunds"] += debit - credit
        elif r["account"] == "platform:expense:courtesy":
            row["courtesy"] += debit - credit
        else:  # a new platform account must be placed in this report deliberately
            raise AssertionError(f"income: account {r['account']!r} has no place")
    for row in out.values():
        row["revenue"] = row["commission"] + row["management_fee"] + row["call_minutes"]
        row["net"] = row["revenue"] - row["refunds"] - row["courtesy"]
    return [out[key] for key in sorted(out)]


def reconcile(view: Any, start: datetime | None = None, end: datetime | None = None,
              market: str | None = None) -> Iterator[dict[str, Any]]:
    """Every movement that crossed the platform's boundary in [start, end], in time
    order: credits bought (money in, by payment_ref) and card charges (by card_ref;
    a negative amount would be money back to a card). Refunds never leave the
    platform: they credit the wallet (SPEC 4.3, 6)."""
    where, params = posting_filters(market=market, start=start, end=end)
    rows = view.stream(
        "SELECT occurred_at, market, pro_id, event_type, event_id, contact_id, kind, reason, ref,"
        f" unit, debit, credit FROM ll_postings WHERE (account = 'platform:cash' OR kind = 'card'){where}"
        " ORDER BY occurred_at, position, seq",
        params,
    )
    for r in rows:
        payment_ref, card_ref = split_ref(r["reason"], r["ref"])
        yield {
            "occurred_at": sortable_to_rfc3339(r["occurred_at"]),
            "market": r["market"],
            "pro_id": r["pro_id"],
            "movement": "card_charge" if r["kind"] == "card" else "credit_purchase",
            "payment_ref": payment_ref,
            "card_ref": card_ref,
            "event_type": r["event_type"],
            "event_id": r["event_id"],
            "contact_id": r["contact_id"],
            "unit": r["unit"],
            "amount": int(r["debit"]) - int(r["credit"]),
        }


def wallet_exists(view: Any, pro_id: str) -> bool:
    return bool(view.query("SELECT 1 AS one FROM ll_wallets WHERE pro_id = ?", [pro_id]))


def latest_occurred_at(view: Any, max_position: int | None = None) -> datetime | None:
    rows = view.query("SELECT MAX(occurred_at) AS latest FROM ll_postings WHERE position <= ?",
                      [max_position if max_position is not None else _NO_POSITION_BOUND])
    return parse_utc(rows[0]["latest"]) if rows and rows[0]["latest"] else None
