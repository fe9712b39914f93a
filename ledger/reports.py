"""The reports as programs read them, shared by the CLI's ``--format json`` and
the service's ``/v1`` reads, so both give the same rows: each row carries
``as_of``, the instant it describes (the one asked for, else now to the
second), and refund rows the unit of their amounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from leadledger.timefmt import format_utc


@dataclass
class Report:
    as_of: str  # RFC 3339 UTC: the instant described
    given: bool  # False: "now" (the table says so)
    rows: Iterable[dict[str, Any]]  # unstamped, streamed where the query streams

    def stamped(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield {**row, "as_of": self.as_of}


def instant(moment: datetime | None) -> tuple[str, bool, datetime]:
    """The instant a report describes: the one given, else now (to the second)."""
    at = moment or datetime.now(timezone.utc).replace(microsecond=0)
    return format_utc(at), moment is not None, at


def require_wallet(ledger: Any, pro_id: str | None) -> None:
    """A pro filter that names no wallet is wallet_not_found (exit 1, HTTP 404)."""
    if pro_id is not None:
        ledger.require_wallet(pro_id)


def with_unit(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Refund rows with the unit their amounts are in (the market's wallet unit)."""
    from leadledger.markets import current_policy

    units: dict[str, str] = {}
    for row in rows:
        if row["market"] not in units:
            units[row["market"]] = current_policy(row["market"]).wallet_unit  # type: ignore[union-attr]
        yield {**row, "unit": units[row["market"]]}


def balances(ledger: Any, *, pro_id: str | None = None, market: str | None = None,
             as_of: datetime | None = None) -> Report:
    require_wallet(ledger, pro_id)
    stamp, given, _ = instant(as_of)
    return Report(stamp, given, ledger.balances(pro_id=pro_id, as_of=as_of, market=market))


def refunds(ledger: Any, *, pro_id: str | None = None, market: str | None = None, status: str | None = None,
            as_of: datetime | None = None, contact_id: str | None = None) -> Report:
    require_wallet(ledger, pro_id)
    stamp, given, at = instant(as_of)
    return Report(stamp, given, with_unit(ledger.iter_refunds(pro_id=pro_id, status=status, as_of=at,
                                                              market=market, contact_id=contact_id)))


def trial_balance(ledger: Any, *, as_of: datetime | None = None, start: datetime | None = None,
                  pro_id: str | None = None, market: str | None = None, account: str | None = None) -> Report:
    stamp, given, _ = instant(as_of)
    require_wallet(ledger, pro_id)
    return Report(stamp, given, ledger.trial_balance(as_of=as_of, start=start, pro_id=pro_id, market=market,
                                                     account=account))


def statement(ledger: Any, pro_id: str, *, start: datetime | None = None, end: datetime | None = None,
              account: str | None = None) -> Report:
    stamp, given, _ = instant(end)
    return Report(stamp, given, ledger.statement(pro_id, start, end, account=account))
