"""`leadledger` commands. Thin: parse, call ledger.Ledger, format.

Exit codes: 0 done; 1 a submission was rejected or an invariant failed;
2 bad usage (option, time, file); 3 the store failed or is not initialised;
4 internal error (a bug: run with LEADLEDGER_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sqlite3
import sys
from datetime import datetime, time, timedelta, timezone
from importlib import resources
from typing import Any, Callable, Iterator

import click
from eventsourcing.persistence import PersistenceError

from leadledger.cli.lines import NotNDJSON, read_lines
from leadledger.cli.output import render, write_csv, write_json
from leadledger.errors import LedgerError, Rejection
from leadledger.store import DEFAULT_URL, URL_ENV, postgres_schema_sql
from leadledger.submissions import EARLIEST, LATEST, within_range
from leadledger.timefmt import parse_utc
from leadledger.projections.status import STATUSES

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
                moment = datetime.combine(day, time.max, tzinfo=timezone.utc)
            else:
                moment = parse_utc(text)
        except (ValueError, OverflowError):
            self.fail(f"{value!r} is not an RFC 3339 time with offset (or a YYYY-MM-DD date)", param, ctx)
        if not within_range(moment):
            self.fail(f"{value!r} is outside {EARLIEST.year}-{LATEST.year}", param, ctx)
        return moment


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
        except NotNDJSON as exc:
            fail("usage", str(exc), EXIT_USAGE)
        except (PersistenceError, sqlite3.Error) as exc:  # the store failed, not our code
            fail("store", " ".join(str(exc).split())[:300] or type(exc).__name__, EXIT_STORE)
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
    from leadledger import Ledger

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
@click.argument("file", type=click.File("rb"), default="-")
@click.option("--atomic", is_flag=True, help="All or nothing: one rejection records nothing of the batch.")
@click.pass_context
@guarded
def append(ctx: click.Context, file: Any, atomic: bool) -> None:
    """Append NDJSON submissions from FILE (or - for stdin).

    Prints one JSON result line per submission, in order, once it is committed:
    {"event_id", "status": recorded|duplicate|rejected, "code", "message", "recorded",
    "line"} (line: 1-based, blank lines counted). Lines over 64 KiB, not UTF-8 or
    not JSON are rejected alone; the rest of the file is judged as usual.
    Exit 0 when none was rejected, 1 otherwise.

    \b
    Example:
      echo '{"type": "WalletOpened", "event_id": "5f1c...", "occurred_at":
            "2026-01-05T09:00:00Z", "pro_id": "pro-1", "market": "pro360",
            "region": "US-CA"}' | leadledger append -
    """
    ledger = open_ledger(ctx)
    rejected = False
    numbers: collections.deque[int] = collections.deque()

    def lines() -> Iterator[Any]:
        for number, line in read_lines(file, getattr(file, "name", "-")):
            numbers.append(number)
            yield line

    for result in ledger.append_iter(lines(), atomic=atomic):
        rejected = rejected or result.status == "rejected"
        # One result per non-blank line, in order: the line number rides along.
        click.echo(json.dumps({**result.to_json(), "line": numbers.popleft() if numbers else None},
                              ensure_ascii=False))
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
    rows = open_ledger(ctx).iter_refunds(pro_id=pro_id, status=status, as_of=as_of)
    out = sys.stdout
    if fmt == "json":  # streamed: a store's every contact need not fit in memory
        write_json(rows, out)
    elif fmt == "csv":
        write_csv(rows, REFUND_COLUMNS, out)
    else:
        out.write(render(list(rows), REFUND_COLUMNS, fmt))


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


STATEMENT_COLUMNS = ("occurred_at", "event_type", "contact_id", "account", "unit", "debit", "credit",
                     "running_balance")


@cli.command()
@click.argument("pro_id")
@click.option("--from", "start", type=TIME, help="First occurred_at listed (earlier postings open the balance).")
@click.option("--to", "end", type=TIME, help="Last occurred_at listed.")
@FORMAT
@click.pass_context
@guarded
def statement(ctx: click.Context, pro_id: str, start: datetime | None, end: datetime | None,
              fmt: str) -> None:
    """Every posting on the pro's wallet, advance and card, with a running balance.

    Running balances are per account, in its natural sign: funds in the wallet,
    advance owed, card charged. JSON and CSV also carry the event_id.

    \b
    Example:
      leadledger statement pro-ana --from 2026-01-01 --to 2026-01-31 --format csv
    """
    try:
        rows = open_ledger(ctx).statement(pro_id, start, end)
    except Rejection as exc:
        fail(exc.code, exc.message, EXIT_REJECTED)
    columns = STATEMENT_COLUMNS if fmt == "table" else (*STATEMENT_COLUMNS[:2], "event_id", *STATEMENT_COLUMNS[2:])
    click.echo(render(rows, columns, fmt), nl=False)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True,
              help="NDJSON: one event per line.")
@click.pass_context
@guarded
def events(ctx: click.Context, fmt: str) -> None:
    """Print the recorded log as NDJSON, in recording order (what `replay` reads).

    \b
    Example:
      leadledger events > log.ndjson
    """
    out = sys.stdout
    for line in open_ledger(ctx).event_lines():
        out.write(line + "\n")


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--as-of", type=TIME, help="Judge refund statuses and balances at this time "
              "(default: balances of the whole log, statuses at its latest occurred_at).")
@click.pass_context
@guarded
def replay(ctx: click.Context, file: Any, as_of: datetime | None) -> None:
    """Replay a recorded log (from `leadledger events`) into a fresh in-memory store and
    print the read models as one JSON object: as_of, balances, refunds, trial_balance.

    No rule runs: the recorded decisions are projected as they are.

    \b
    Example:
      leadledger events > log.ndjson && leadledger replay log.ndjson > models.json
    """
    from leadledger import Ledger

    with Ledger.from_url("sqlite:///:memory:") as fresh:
        fresh.load_log(file)
        models = fresh.read_models(as_of=as_of)
    click.echo(json.dumps(models, ensure_ascii=False, indent=2))


class Duration(click.ParamType):
    """7d, 12h, 30m or 90s."""

    name = "DURATION"
    _UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if len(text) >= 2 and text[-1] in self._UNITS and text[:-1].isdigit() and len(text) <= 8:
            return timedelta(seconds=int(text[:-1]) * self._UNITS[text[-1]])
        self.fail(f"{value!r} is not a duration like 7d, 12h, 30m or 90s", param, ctx)


LATE_COLUMNS = ("event_type", "event_id", "occurred_at", "recorded_at", "lag_seconds")


@cli.command()
@click.option("--min-lag", type=Duration(), default="7d", show_default=True,
              help="List events recorded at least this long after they occurred.")
@FORMAT
@click.pass_context
@guarded
def late(ctx: click.Context, min_lag: timedelta, fmt: str) -> None:
    """Events recorded long after they occurred (late or backfilled submissions).

    Late arrivals are judged at their own occurred_at (a refund asked inside its
    window is refunded even if it reaches the ledger months later): this report
    shows finance which ones did, with both times and the lag.

    \b
    Example:
      leadledger late --min-lag 30d --format csv
    """
    rows = open_ledger(ctx).late_events(min_lag)
    if fmt == "json":
        write_json(rows, sys.stdout)
    elif fmt == "csv":
        write_csv(rows, LATE_COLUMNS, sys.stdout)
    else:
        sys.stdout.write(render(list(rows), LATE_COLUMNS, "table"))


@cli.command()
@click.pass_context
@guarded
def rebuild(ctx: click.Context) -> None:
    """Drop the read models of the store and rebuild them from its log.

    \b
    Example:
      leadledger --db postgresql://postgres@127.0.0.1/leadledger rebuild
    """
    count = open_ledger(ctx).rebuild()
    click.echo(f"rebuilt the read models from {count} events", err=True)


@cli.command()
@click.option("--seconds", type=click.FloatRange(min=0), help="Stop after this long (default: until Ctrl-C).")
@click.pass_context
@guarded
def follow(ctx: click.Context, seconds: float | None) -> None:
    """Keep the read models following the log as other processes append (a daemon).

    Uses eventsourcing's ProjectionRunner: on PostgreSQL it wakes on LISTEN/NOTIFY,
    and each event's rows are written with its tracking record in one transaction.
    Reading commands catch up by themselves; run this so they never have to wait.

    \b
    Example:
      leadledger --db postgresql://postgres@127.0.0.1/leadledger follow
    """
    with open_ledger(ctx).follower() as runner:
        click.echo("following the event log (Ctrl-C stops)", err=True)
        try:
            runner.run_forever(timeout=seconds)
        except KeyboardInterrupt:
            pass


@cli.command("verify")
@click.option("--quick", is_flag=True, help="Skip invariant 6 (a full replay into a scratch store).")
@FORMAT
@click.pass_context
@guarded
def verify_command(ctx: click.Context, quick: bool, fmt: str) -> None:
    """Check the invariants of SPEC section 7 on the store; exit 1 if one fails.

    Invariant 5 (appending the same submissions again changes nothing) needs the
    submissions themselves: the test suite checks it.

    \b
    Example:
      leadledger verify && echo books are sound
    """
    ledger = open_ledger(ctx)
    checks = ledger.verify(replay=not quick)
    skipped = ledger.skipped_by_quick() if quick else []
    if fmt == "json":
        click.echo(json.dumps([c.to_json() for c in checks], ensure_ascii=False, indent=2))
    elif fmt == "csv":  # one row per problem (a passing check: one row, empty problem)
        rows = [{"invariant": c.number, "name": c.name, "ok": str(c.ok).lower(), "problem": problem}
                for c in checks for problem in (c.problems[:20] or [""])]
        write_csv(rows, ("invariant", "name", "ok", "problem"), sys.stdout)
    else:
        for check in checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.number}. {check.name}")
            for problem in check.problems[:20]:
                click.echo(f"        {problem}")
        for name in skipped:
            click.echo(f"skip  {name} (--quick)")
    if skipped and fmt != "table":
        click.echo(f"verify --quick skipped: {'; '.join(skipped)}", err=True)
    sys.exit(0 if all(c.ok for c in checks) else EXIT_REJECTED)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["beancount"]), default="beancount", show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default: stdout).")
@click.pass_context
@guarded
def export(ctx: click.Context, fmt: str, output: Any) -> None:
    """Export the double-entry journal for accountants (Beancount; check it with bean-check).

    \b
    Example:
      leadledger export --format beancount -o ledger.beancount && bean-check ledger.beancount
    """
    for line in open_ledger(ctx).export_beancount():
        output.write(line + "\n")


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
    lines = resources.files("leadledger.cli").joinpath("demo.ndjson").read_text(encoding="utf-8").splitlines()
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
