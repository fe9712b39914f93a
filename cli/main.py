"""`leadledger` commands. Thin: parse, call ledger.Ledger, format.

Exit codes: 0 done; 1 a submission was rejected or an invariant failed;
2 bad usage (option, time, file); 3 the store failed or is not initialised;
4 internal error (a bug: run with LEADLEDGER_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from datetime import datetime, time, timezone
from importlib import resources
from typing import Any, Callable

import click

from cli.output import render
from ledger.errors import LedgerError
from ledger.store import DEFAULT_URL, URL_ENV, postgres_schema_sql
from ledger.timefmt import parse_utc
from projections.status import STATUSES

EXIT_REJECTED, EXIT_USAGE, EXIT_STORE, EXIT_INTERNAL = 1, 2, 3, 4

BALANCE_COLUMNS = ("pro_id", "market", "unit", "balance", "advance_outstanding", "card_charged", "card_currency")
REFUND_COLUMNS = ("contact_id", "pro_id", "market", "status", "charged", "refunded", "refundable", "deadline")
TRIAL_COLUMNS = ("account", "unit", "debit", "credit", "balance")


class Timestamp(click.ParamType):
    """RFC 3339 with an offset (2026-01-31T18:00:00+01:00), or a date: the end of that day, UTC."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = datetime.strptime(text, "%Y-%m-%d").date()
                return datetime.combine(day, time.max, tzinfo=timezone.utc)
            return parse_utc(text)
        except ValueError:
            self.fail(f"{value!r} is not an RFC 3339 time with offset (or a YYYY-MM-DD date)", param, ctx)


TIME = Timestamp()
FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
                      show_default=True, help="table for people; json (byte-stable) or csv for programs.")


def fail(code: str, message: str, exit_code: int) -> None:
    click.echo(f"leadledger: error[{code}]: {message}", err=True)
    sys.exit(exit_code)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """User and store errors become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LedgerError as exc:
            fail(exc.code, exc.message, EXIT_STORE)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            sys.exit(0)
        except Exception as exc:  # a bug: say so in one line, keep the traceback opt-in
            if os.environ.get("LEADLEDGER_DEBUG"):
                raise
            fail("internal", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                 "(set LEADLEDGER_DEBUG=1 for the traceback)", EXIT_INTERNAL)

    return wrapper


def open_ledger(ctx: click.Context) -> Any:
    from ledger import Ledger

    ledger = Ledger.from_url(ctx.obj["db"])
    ctx.call_on_close(ledger.close)
    return ledger


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", metavar="URL", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
              help=f"Store: sqlite:///PATH or postgresql://USER@HOST[:PORT]/DBNAME (or ${URL_ENV}).")
@click.pass_context
def cli(ctx: click.Context, db: str) -> None:
    """leadledger: an event-sourced billing ledger for lead marketplaces.

    \b
    Example:
      leadledger init
      leadledger append submissions.ndjson
      leadledger balances --format json
    """
    ctx.ensure_object(dict)
    ctx.obj["db"] = db


@cli.command()
@click.option("--print-sql", is_flag=True, help="Print the PostgreSQL schema (schema.sql) and exit.")
@click.pass_context
@guarded
def init(ctx: click.Context, print_sql: bool) -> None:
    """Create the schema (idempotent; applies schema.sql on PostgreSQL).

    \b
    Example:
      leadledger --db postgresql://postgres@127.0.0.1/leadledger init
    """
    if print_sql:
        click.echo(postgres_schema_sql(), nl=False)
        return
    open_ledger(ctx).init()
    click.echo(f"initialised {ctx.obj['db']}", err=True)


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--atomic", is_flag=True, help="All or nothing: one rejection records nothing of the batch.")
@click.pass_context
@guarded
def append(ctx: click.Context, file: Any, atomic: bool) -> None:
    """Append NDJSON submissions from FILE (or - for stdin).

    Prints one JSON result line per submission, in order, once it is committed:
    {"event_id", "status": recorded|duplicate|rejected, "code", "message", "recorded"}.
    Exit 0 when none was rejected, 1 otherwise.

    \b
    Example:
      echo '{"type": "WalletOpened", "event_id": "5f1c...", "occurred_at":
            "2026-01-05T09:00:00Z", "pro_id": "pro-1", "market": "pro360",
            "region": "US-CA"}' | leadledger append -
    """
    ledger = open_ledger(ctx)
    rejected = False
    for result in ledger.append_iter(file, atomic=atomic):
        rejected = rejected or result.status == "rejected"
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
    sys.exit(EXIT_REJECTED if rejected else 0)


@cli.command()
@click.option("--pro", "pro_id", metavar="ID", help="Only this pro's wallet.")
@click.option("--as-of", type=TIME, help="Balances from the events that occurred up to this time.")
@FORMAT
@click.pass_context
@guarded
def balances(ctx: click.Context, pro_id: str | None, as_of: datetime | None, fmt: str) -> None:
    """One row per wallet: balance, advance outstanding, card charged.

    Amounts are integers in the wallet's minor unit (USD cents, whole CRONO);
    the table shows them in major units.

    \b
    Example:
      leadledger balances --as-of 2026-01-31T23:59:59Z --format json
    """
    rows = open_ledger(ctx).balances(pro_id=pro_id, as_of=as_of)
    click.echo(render(rows, BALANCE_COLUMNS, fmt), nl=False)


@cli.command()
@click.option("--pro", "pro_id", metavar="ID", help="Only this pro's contacts.")
@click.option("--status", type=click.Choice(STATUSES), help="Only contacts in this status.")
@click.option("--as-of", type=TIME, help="Status as of this time (default: now).")
@FORMAT
@click.pass_context
@guarded
def refunds(ctx: click.Context, pro_id: str | None, status: str | None, as_of: datetime | None,
            fmt: str) -> None:
    """Refund status of every contact: Non permis, Gérer, Rectifier, Traité, Expiré.

    \b
    Example:
      leadledger refunds --status Gérer --as-of 2026-02-01 --format csv
    """
    rows = open_ledger(ctx).refunds(pro_id=pro_id, status=status, as_of=as_of)
    click.echo(render(rows, REFUND_COLUMNS, fmt), nl=False)


@cli.command("trial-balance")
@click.option("--as-of", type=TIME, help="Postings of events that occurred up to this time.")
@FORMAT
@click.pass_context
@guarded
def trial_balance(ctx: click.Context, as_of: datetime | None, fmt: str) -> None:
    """One row per account and unit: debit, credit, balance (debit - credit).

    JSON and CSV hold the account rows only; the table adds totals per unit,
    whose balance is zero when the books balance.

    \b
    Example:
      leadledger trial-balance --as-of 2026-01-31
    """
    rows = open_ledger(ctx).trial_balance(as_of=as_of)
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(row["unit"], {"account": "TOTAL", "unit": row["unit"],
                                                "debit": 0, "credit": 0, "balance": 0})
        for key in ("debit", "credit", "balance"):
            total[key] += row[key]
    footer = [totals[u] for u in sorted(totals)] if fmt == "table" else []
    click.echo(render(rows, TRIAL_COLUMNS, fmt, footer=footer), nl=False)


@cli.command()
@click.option("--now", type=TIME, help="The time deadlines are judged at (default: the clock).")
@click.pass_context
@guarded
def sweep(ctx: click.Context, now: datetime | None) -> None:
    """Record what deadlines imply: pro360 manual quotes unread 48 h after sending
    are refunded (reason unread_48h). Idempotent: a second sweep records nothing.

    Prints one JSON result line per refund recorded.

    \b
    Example:
      leadledger sweep --now 2026-01-08T00:00:00Z
    """
    for result in open_ledger(ctx).sweep(now):
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))


@cli.command()
@click.pass_context
@guarded
def demo(ctx: click.Context) -> None:
    """Append the bundled sample submissions, sweep, and print balances and refunds.

    Safe to run twice: the second run reports every submission as a duplicate.

    \b
    Example:
      leadledger --db sqlite:///demo.db demo
    """
    ledger = open_ledger(ctx)
    lines = resources.files("cli").joinpath("demo.ndjson").read_text(encoding="utf-8").splitlines()
    results = ledger.append(lines)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status == "rejected":
            click.echo(f"  rejected as the rules say: {result.code}: {result.message}")
    click.echo("submissions: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    swept = ledger.sweep(parse_utc("2026-03-01T00:00:00Z"))
    click.echo(f"sweep at 2026-03-01: {len(swept)} unread refund(s) recorded\n")
    click.echo(render(ledger.balances(), BALANCE_COLUMNS, "table"))
    click.echo(render(ledger.refunds(as_of=parse_utc("2026-03-01T00:00:00Z")), REFUND_COLUMNS, "table"), nl=False)


def main() -> None:
    try:
        cli.main(obj={}, standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", "interrupted", EXIT_USAGE)
    except click.ClickException as exc:  # usage errors: one line, exit 2
        fail("usage", exc.format_message().replace("\n", " "), EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
