"""Builders for submissions, so each test states only what matters to it."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)  # a Monday


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sub(type_: str, occurred_at: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": str(uuid.uuid4()), "occurred_at": occurred_at, **fields}


def wallet(pro: str, market: str = "pro360", region: str | None = None, t: str | None = None) -> dict:
    region = region or ("US-CA" if market == "pro360" else "ES-MD")
    return sub("WalletOpened", t or at(), pro_id=pro, market=market, region=region)


def buy(pro: str, amount: int, t: str | None = None, ref: str = "pay") -> dict:
    return sub("CreditsPurchased", t or at(0, 1), pro_id=pro, amount=amount, payment_ref=ref)


def card(pro: str, t: str | None = None) -> dict:
    return sub("CardRegistered", t or at(0, 1), pro_id=pro, card_ref="card-1")


def quote(contact: str, pro: str, t: str | None = None, *, pricing: str = "manual",
          commission: int = 1000, management_fee: int = 0, customer: str | None = None,
          job_date: str = "2026-01-20", category: str = "plumbing") -> dict:
    return sub("QuoteSent", t or at(1), contact_id=contact, pro_id=pro, request_id=f"req-{contact}",
               customer_id=customer or f"cus-{contact}", category=category, job_date=job_date,
               pricing=pricing, commission=commission, management_fee=management_fee)


def cquote(contact: str, pro: str, t: str | None = None, commission: int = 50, **kw: Any) -> dict:
    """A cronoshare quote with the market's management fee (20)."""
    return quote(contact, pro, t, commission=commission, management_fee=20,
                 job_date=kw.pop("job_date", "2026-02-01"), **kw)


def courtesy(pro: str, amount: int, t: str | None = None, *, reason: str = "company_error",
             role: str = "agent", approver: str | None = None, fee_ref: str | None = None,
             dispute_amount: int | None = None) -> dict:
    return sub("CourtesyCreditIssued", t or at(2), pro_id=pro, amount=amount, reason=reason,
               issued_by={"id": "agent-1", "role": role},
               approved_by={"id": "boss-1", "role": approver} if approver else None,
               fee_ref=fee_ref, dispute_amount=dispute_amount)


def ok(results: list) -> list:
    """Assert every result was recorded; return them."""
    bad = [r for r in results if r.status != "recorded"]
    assert not bad, bad
    return results


def one(ledger: Any, submission: dict) -> Any:
    [result] = ledger.append([submission])
    return result


def balance(ledger: Any, pro: str, **kw: Any) -> dict:
    [row] = ledger.balances(pro_id=pro, **kw)
    return row


def refund_row(ledger: Any, contact: str, as_of: str) -> dict:
    rows = [r for r in ledger.refunds(as_of=when(as_of)) if r["contact_id"] == contact]
    assert len(rows) == 1, rows
    return rows[0]


@contextmanager
def guards_off(ledger: Any) -> Iterator[Any]:
    """A raw write transaction on the store with the append-only triggers off, as
    a superuser (or the owner of a SQLite file) could: for tampering on purpose."""
    from leadledger.store import sqlite_drop_trigger_ddl, sqlite_trigger_ddl

    app, _ = ledger._open()
    sqlite = ledger.config.kind == "sqlite"
    with app.factory.datastore.transaction(commit=True) as curs:
        if sqlite:
            for statement in sqlite_drop_trigger_ddl():
                curs.execute(statement)
        else:
            curs.execute("SET LOCAL session_replication_role = replica")
        yield curs
        if sqlite:
            for statement in sqlite_trigger_ddl():
                curs.execute(statement)


def empty_by_hand(curs: Any, ledger: Any) -> None:
    """Everything a store holds, deleted under guards_off, its chain head back at the start."""
    from leadledger.recorders import RECEIPTS_TABLE
    from leadledger.store import GENESIS_HEX, HEAD_TABLE, SNAPSHOTS_TABLE

    app, _ = ledger._open()
    for table in (app.recorder.events_table_name, RECEIPTS_TABLE, SNAPSHOTS_TABLE):
        curs.execute(f"DELETE FROM {table}")
    curs.execute(f"UPDATE {HEAD_TABLE} SET position = 0, sha256 = "
                 + ("zeroblob(32)" if ledger.config.kind == "sqlite" else f"decode('{GENESIS_HEX}', 'hex')"))


def bare_wallet(pro: str = "p") -> Any:
    """A Wallet with nothing applied (no events, no store): its timeline and
    contacts filled by hand in unit tests of the aggregate."""
    from array import array

    from leadledger.aggregates import Wallet

    w = Wallet.__new__(Wallet)
    w.pro_id, w.balance, w.advance_outstanding, w.horizon_us = pro, 0, 0, None
    w._times_us, w._balance_deltas, w._advance_deltas = array("q"), array("q"), array("q")
    w.contacts = {}
    w._pending_events = []
    return w
