"""Reports for finance: balances, refunds, trial balance, statement, income,
reconciliation, explain. Each table names the instant it describes and its
units; JSON and CSV rows carry the same instant in an ``as_of`` field."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Callable, Sequence

import click

from leadledger import reports
from leadledger.cli.app import FORMAT, cli, guarded, open_ledger
from leadledger.cli.output import heading, to_table, totals, write_csv, write_json
from leadledger.cli.params import PeriodType, Status, Timestamp, market_choice, resolve_period
from leadledger.periods import Period
from leadledger.timefmt import format_utc
from leadledger.units import major

BALANCE_COLUMNS = ("pro_id", "market", "unit", "balance", "advance_outstanding", "card_charged", "card_currency")
# SPEC 8's fields first, in its order; what this project adds comes after them.
REFUND_COLUMNS = ("contact_id", "pro_id", "market", "status", "charged", "refunded", "refundable", "deadline",
                  "unit")
REFUND_TABLE = ("contact_id", "pro_id", "market", "status", "unit", "charged", "refunded", "refundable",
                "deadline")
TRIAL_COLUMNS = ("account", "unit", "debit", "credit", "balance")
TRIAL_PERIOD_COLUMNS = ("account", "unit", "debit", "credit", "balance", "opening")
TRIAL_PERIOD_TABLE = ("account", "unit", "opening", "debit", "credit", "balance")
STATEMENT_COLUMNS = ("occurred_at", "event_type", "event_id", "contact_id", "account", "unit", "debit", "credit",
                     "running_balance", "line", "reason", "payment_ref", "card_ref")
STATEMENT_TABLE = ("occurred_at", "event_type", "contact_id", "reason", "ref", "debit", "credit",
                   "running_balance")
INCOME_COLUMNS = ("market", "unit", "commission", "management_fee", "call_minutes", "revenue", "refunds",
                  "courtesy", "net")
RECONCILE_COLUMNS = ("occurred_at", "market", "pro_id", "movement", "payment_ref", "card_ref", "event_type",
                     "event_id", "contact_id", "unit", "amount")
RECONCILE_TABLE = ("occurred_at", "market", "pro_id", "movement", "payment_ref", "card_ref", "contact_id",
                   "unit", "amount")

AS_OF = click.option("--as-of", type=Timestamp(end=True),
                     help="The instant reported (RFC 3339, or 2026-01-31 / 2026-01 / 2026-Q1 / 2026 for "
                     "the end of that span, UTC). Default: now.")
FROM = click.option("--from", "start", type=Timestamp(end=False),
                    help="First instant of the period (a date means its start, UTC).")
TO = click.option("--to", "end", type=Timestamp(end=True), help="Last instant of the period (a date: its end).")
PERIOD = click.option("--period", type=PeriodType(), help="A year (2026), quarter (2026-Q1), month (2026-01) "
                      "or day (2026-01-31), instead of --from/--to.")


def market_option(what: str) -> Callable[..., Any]:
    return click.option("--market", type=market_choice(), help=f"Only {what} of this market.")


def period_report(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--from, --to, --period, --market and --format, as income and reconcile take them."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed((FROM, TO, PERIOD, market_option(what), FORMAT)):
            command = option(command)
        return command
    return decorate


def emit(report: reports.Report, columns: Sequence[str], fmt: str, *, title: str,
         footer: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
         table_columns: Sequence[str] | None = None) -> None:
    """JSON and CSV rows as ledger.reports stamps them (the service's too); a table for people."""
    out = sys.stdout
    if fmt == "json":  # streamed: a large report need not fit in memory
        write_json(report.stamped(), out)
    elif fmt == "csv":
        write_csv(report.stamped(), (*columns, "as_of"), out)
    else:
        rows = list(report.rows)
        out.write(heading(title, report.as_of, report.given))
        out.write(to_table(rows, table_columns or columns, footer=footer(rows) if footer and rows else []))


@cli.command()
@click.option("--pro", "pro_id", metavar="ID", help="Only this pro's wallet (exit 1 if it has none).")
@market_option("wallets")
@AS_OF
@FORMAT
@click.pass_context
@guarded
def balances(ctx: click.Context, pro_id: str | None, market: str | None, as_of: datetime | None,
             fmt: str) -> None:
    """One row per wallet: balance, advance outstanding, card charged.

    JSON/CSV amounts are integers in the minor unit (USD cents, whole CRONO);
    the table shows major units and adds a TOTAL row per unit. Every row
    carries as_of, the instant described (default: now).

    \b
    Example:
      leadledger balances --as-of 2026-01-31 --format json
      leadledger balances --market cronoshare -f csv
    """
    report = reports.balances(open_ledger(ctx), pro_id=pro_id, market=market, as_of=as_of)
    emit(report, BALANCE_COLUMNS, fmt, title="balances",
         footer=lambda r: totals(r, "pro_id", ("balance", "advance_outstanding", "card_charged")))


@cli.command()
@click.option("--pro", "pro_id", metavar="ID", help="Only this pro's contacts (exit 1 if it has no wallet).")
@market_option("contacts")
@click.option("--status", type=Status(), help="Only contacts in this status (Gerer = Gérer: accents and "
              "case optional).")
@AS_OF
@FORMAT
@click.pass_context
@guarded
def refunds(ctx: click.Context, pro_id: str | None, market: str | None, status: str | None,
            as_of: datetime | None, fmt: str) -> None:
    """Refund status of every contact: Non permis, Gérer, Rectifier, Traité, Expiré.

    Statuses are judged at --as-of (default: now). Rows carry the wallet's unit;
    amounts are minor units in JSON/CSV, major units in the table (TOTAL per unit).

    \b
    Example:
      leadledger refunds --status Gerer --as-of 2026-02-01 --format csv
    """
    report = reports.refunds(open_ledger(ctx), pro_id=pro_id, market=market, status=status, as_of=as_of)
    emit(report, REFUND_COLUMNS, fmt, title="refund statuses", table_columns=REFUND_TABLE,
         footer=lambda r: totals(r, "contact_id", ("charged", "refunded", "refundable")))


def _period_end(as_of: datetime | None, end: datetime | None) -> datetime | None:
    if as_of is not None and end is not None:
        raise click.UsageError("--as-of and --to name the same instant here: give one")
    return as_of or end


@cli.command("trial-balance")
@AS_OF
@FROM
@TO
@PERIOD
@click.option("--pro", "pro_id", metavar="ID", help="Only the postings of this pro's events (still balanced).")
@market_option("postings")
@click.option("--account", metavar="ACCOUNT", help="Only this account and those under it (platform:revenue).")
@FORMAT
@click.pass_context
@guarded
def trial_balance(ctx: click.Context, as_of: datetime | None, start: datetime | None, end: datetime | None,
                  period: Period | None, pro_id: str | None, market: str | None, account: str | None,
                  fmt: str) -> None:
    """One row per account and unit: debit, credit, balance (debit - credit).

    With a period (--period, or --from/--to): the period's debits and credits,
    balance = the closing balance, and opening, the balance before the period. The table adds totals per unit, zero
    when the books balance (unfiltered).

    \b
    Example:
      leadledger trial-balance --as-of 2026-01-31
      leadledger trial-balance --period 2026-Q1 --market pro360 -f csv
    """
    chosen = resolve_period(start, _period_end(as_of, end), period)
    report = reports.trial_balance(open_ledger(ctx), as_of=chosen.end, start=chosen.start, pro_id=pro_id,
                                   market=market, account=account)
    if chosen.start is None:
        emit(report, TRIAL_COLUMNS, fmt, title="trial balance",
             footer=lambda r: totals(r, "account", ("debit", "credit", "balance")))
    else:
        emit(report, TRIAL_PERIOD_COLUMNS, fmt, title=f"trial balance from {format_utc(chosen.start)}",
             table_columns=TRIAL_PERIOD_TABLE,
             footer=lambda r: totals(r, "account", ("opening", "debit", "credit", "balance")))


@cli.command()
@click.argument("pro_id")
@FROM
@TO
@PERIOD
@click.option("--account", metavar="ACCOUNT", help="wallet, advance, card, or a full account name.")
@FORMAT
@click.pass_context
@guarded
def statement(ctx: click.Context, pro_id: str, start: datetime | None, end: datetime | None,
              period: Period | None, account: str | None, fmt: str) -> None:
    """The pro's accounts, one section each (wallet, advance, card): an opening
    balance, every posting with its reason, payment_ref / card_ref and contact,
    a running balance, and a closing line with the period's totals.

    Balances are in each account's natural sign: funds in the wallet, advance
    owed, card charged. JSON/CSV rows: line = opening, posting or closing.

    \b
    Example:
      leadledger statement pro-ana --period 2026-01
      leadledger statement pro-ana --from 2026-01-01 --to 2026-01-31 --account wallet -f csv
    """
    chosen = resolve_period(start, end, period)
    report = reports.statement(open_ledger(ctx), pro_id, start=chosen.start, end=chosen.end, account=account)
    if fmt != "table":
        emit(report, STATEMENT_COLUMNS, fmt, title="")
        return
    rows, stamp, given = report.rows, report.as_of, report.given
    out = sys.stdout
    since = f" from {format_utc(chosen.start)}" if chosen.start else ""
    out.write(heading(f"statement of {pro_id}{since}", stamp, given))
    for number, name in enumerate(dict.fromkeys(r["account"] for r in rows)):
        section = [r for r in rows if r["account"] == name]
        out.write(("\n" if number else "") + f"{name} ({section[0]['unit']})\n")
        shown = [{**r, "ref": r["payment_ref"] or r["card_ref"],
                  "event_type": r["event_type"] or f"{r['line']} balance",
                  "occurred_at": r["occurred_at"] or ("(start)" if r["line"] == "opening" else stamp)}
                 for r in section]
        out.write(to_table(shown[:-1], STATEMENT_TABLE, footer=shown[-1:]))


@cli.command()
@period_report("revenue")
@click.pass_context
@guarded
def income(ctx: click.Context, start: datetime | None, end: datetime | None, period: Period | None,
           market: str | None, fmt: str) -> None:
    """Income for a period, per market and unit: revenue by kind (commission,
    management fee, call minutes), refunds, courtesy expense, and net.

    net = revenue - refunds - courtesy. Cronoshare amounts are cronos, never money.

    \b
    Example:
      leadledger income --period 2026-01
      leadledger income --period 2026-Q1 --market pro360 -f json
    """
    chosen = resolve_period(start, end, period)
    stamp, given, _ = reports.instant(chosen.end)
    report = reports.Report(stamp, given, open_ledger(ctx).income(chosen.start, chosen.end, market=market))
    emit(report, INCOME_COLUMNS, fmt, title=f"income {chosen.describe()},",
         footer=lambda r: totals(r, "market", INCOME_COLUMNS[2:]) if len(r) > 1 else [])


@cli.command()
@period_report("movements")
@click.pass_context
@guarded
def reconcile(ctx: click.Context, start: datetime | None, end: datetime | None, period: Period | None,
              market: str | None, fmt: str) -> None:
    """Every movement that crossed the platform boundary in the period, to match
    against the payment provider's export: credits bought (movement
    credit_purchase, by payment_ref) and card charges (card_charge, by card_ref:
    contact fees paid by card and call minutes). The table adds totals per market,
    unit and movement.

    Refunds never cross the boundary: they credit the wallet (SPEC 4.3, 6).

    \b
    Example:
      leadledger reconcile --period 2026-01 -f csv > leadledger-2026-01.csv
    """
    chosen = resolve_period(start, end, period)
    stamp, given, _ = reports.instant(chosen.end)
    report = reports.Report(stamp, given, open_ledger(ctx).reconcile(chosen.start, chosen.end, market=market))
    emit(report, RECONCILE_COLUMNS, fmt, title=f"movements across the platform boundary {chosen.describe()},",
         table_columns=RECONCILE_TABLE,
         footer=lambda r: totals(r, "occurred_at", ("amount",), by=("market", "movement")))


@cli.command()
@click.argument("contact_id")
@AS_OF
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@guarded
def explain(ctx: click.Context, contact_id: str, as_of: datetime | None, fmt: str) -> None:
    """Why a contact has its refund status: each recorded fact with its time, the
    refund deadline and how it was computed (30 calendar days from the job date,
    or 60 Spanish working days from the purchase with the holidays skipped), what
    was charged and refunded and by which rule. Exit 1 if the contact is unknown.

    \b
    Example:
      leadledger explain ct-1001 --as-of 2026-02-01
    """
    _, given, at = reports.instant(as_of)
    found = open_ledger(ctx).explain(contact_id, at)
    if fmt == "json":
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    unit = found["unit"]
    deadline = found["deadline"]
    lines = [
        f"contact {found['contact_id']} of {found['pro_id']} ({found['market']} v{found['policy_version']}, "
        f"{found['pricing']}) as of {'' if given else 'now = '}{found['as_of']}",
        f"status: {found['status']}: {found['because']}",
        f"charged {major(found['charged'], unit, True)} {unit}, refunded {major(found['refunded'], unit, True)} "
        f"{unit}, refundable now {major(found['refundable'], unit, True)} {unit}",
        f"deadline: {deadline['closes_at']} ({'open' if deadline['open'] else 'closed'}): {deadline['rule']},",
        f"  counted from {deadline['counted_from']}, last day {deadline['last_day']} ({deadline['timezone']}),"
        f" the window closes when that day ends",
    ]
    if deadline["skipped_weekend_days"] or deadline["skipped_holidays"]:
        names = ", ".join(f"{h['date']} {h['name']}" for h in deadline["skipped_holidays"]) or "none"
        lines.append(f"  skipped {deadline['skipped_weekend_days']} weekend days and these holidays: {names}")
    if not deadline["matches_recorded"]:
        lines.append("  WARNING: today's policy file computes another deadline; the recorded one rules")
    lines.append("facts:")
    lines += [f"  {f['occurred_at']}  {f['event_type']:<18} {f['detail']}" for f in found["facts"]]
    click.echo("\n".join(lines))
