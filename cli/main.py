"""`leadledger` commands that write, check and move the log. Thin: parse, call
leadledger.Ledger, format. Reports live in cli/reports.py; what every command
shares (exit codes, --db, errors) in cli/app.py."""

from __future__ import annotations

import codecs
import collections
import io
import json
import os
import stat
import sys
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Iterator

import click

from leadledger import reports as report_rows
from leadledger.cli import reports, service  # noqa: F401 - their commands register on import
from leadledger.cli.app import (
    EXIT_REJECTED, EXIT_USAGE, FORMAT, add_db_option, cli, fail, guarded, open_ledger, progress, quiet_stdout,
)
from leadledger.lines import read_lines
from leadledger.cli.output import render, replaced_whole, write_csv, write_json
from leadledger.cli.params import Duration, FiniteFloatRange, Timestamp
from leadledger.store import postgres_schema_sql, redacted

TIME = Timestamp(end=True)


@cli.command()
@click.option("--print-sql", is_flag=True, help="Print the PostgreSQL schema (schema.sql) and exit.")
@click.option("--roles", is_flag=True,
              help="PostgreSQL, as a superuser: also create leadledger_owner, leadledger_writer and "
                   "leadledger_auditor, and give each only its privileges (idempotent).")
@click.pass_context
@guarded
def init(ctx: click.Context, print_sql: bool, roles: bool) -> None:
    """Create the schema (idempotent; applies schema.sql on PostgreSQL).

    The events and receipts tables refuse UPDATE, DELETE and TRUNCATE
    (triggers). A store from before the hash chain is chained here.

    \b
    Examples:
      leadledger --db postgresql://postgres@127.0.0.1/leadledger init
      leadledger --db postgresql://postgres@127.0.0.1/leadledger init --roles
    """
    if print_sql:
        click.echo(postgres_schema_sql(), nl=False)
        return
    open_ledger(ctx, create=True).init(roles=roles)
    click.echo(f"initialised {redacted(ctx.obj['db'])}" + (" with the owner, writer and auditor roles" if roles else ""),
               err=True)


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
    ledger = open_ledger(ctx, create=True)
    counts: collections.Counter[str] = collections.Counter()
    numbers: collections.deque[int] = collections.deque()
    advance = progress("append", _size_of(file), unit="B")

    def lines() -> Iterator[Any]:
        for number, line in read_lines(file, getattr(file, "name", "-")):
            numbers.append(number)
            advance(len(line) + 1 if isinstance(line, bytes) else 0)
            yield line

    reader_gone = False
    for result in ledger.append_iter(lines(), atomic=atomic):
        counts[result.status] += 1
        if reader_gone:
            continue  # `| head` stopped reading: judge and record the rest all the same
        # One result per non-blank line, in order: the line number rides along.
        try:
            sys.stdout.write(json.dumps({**result.to_json(), "line": numbers.popleft() if numbers else None},
                                        ensure_ascii=False) + "\n")
        except BrokenPipeError:
            reader_gone = True
            quiet_stdout()
    advance(-1)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    read = sum(counts.values())
    click.echo(f"{read:,} read: {counts['recorded']:,} recorded, {counts['duplicate']:,} duplicate, "
               f"{counts['rejected']:,} rejected", err=True)
    sys.exit(EXIT_REJECTED if counts["rejected"] else 0)


def _size_of(file: Any) -> int | None:
    """Bytes in a regular file (for the progress bar's ETA); None for a pipe."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


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
    ledger = open_ledger(ctx)
    advance = progress("events", ledger.log_size())
    for line in ledger.event_lines():
        out.write(line + "\n")
        advance(1)
    advance(-1)


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

    from leadledger.application import PROJECTION_ADVICE
    from leadledger.errors import PROJECTION_FAILED, LedgerError

    with Ledger.from_url("sqlite:///:memory:") as fresh:
        count = fresh.load_log(file)
        try:
            models = fresh.read_models(as_of=as_of)
        except LedgerError as exc:
            if exc.code != PROJECTION_FAILED:
                raise
            refused = exc.message.removesuffix(PROJECTION_ADVICE)
            raise LedgerError("invalid_log", f"not a log the ledger records: {refused} (positions: the file's "
                              "event lines, blank lines not counted)") from None
    click.echo(json.dumps(models, ensure_ascii=False, indent=2))
    judged = "--as-of" if as_of else "the log's latest occurred_at"
    click.echo(f"replayed {count:,} events; judged at {models['as_of']} ({judged})", err=True)


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
@click.option("--force", is_flag=True,
              help="Rebuild even when the log's hash chain is broken (each break is printed as a WARNING).")
@click.pass_context
@guarded
def rebuild(ctx: click.Context, force: bool) -> None:
    """Drop the read models of the store and rebuild them from its log.

    The log's hash chain is walked first: on a broken chain (an event edited,
    deleted, inserted or moved) rebuild refuses, exit 1, error[chain_broken],
    since read models rebuilt from an altered log would agree with it.

    \b
    Example:
      leadledger --db postgresql://postgres@127.0.0.1/leadledger rebuild
    """
    count = open_ledger(ctx).rebuild(force=force)
    click.echo(f"rebuilt the read models from {count:,} events", err=True)


@cli.command()
@click.option("--seconds", type=FiniteFloatRange(min=0), help="Stop after this long (default: until Ctrl-C).")
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
@click.option("--head", "head_only", is_flag=True,
              help="Only walk the hash chain and print its head (POSITION:SHA256), to publish.")
@click.option("--expect-head", metavar="POSITION:SHA256",
              help="A head published earlier: fail unless the log up to it is unchanged.")
@FORMAT
@click.pass_context
@guarded
def verify_command(ctx: click.Context, quick: bool, head_only: bool, expect_head: str | None, fmt: str) -> None:
    """Check the invariants of SPEC section 7 on the store; exit 1 if one fails.

    Check 0 walks the log's hash chain and names the first position edited,
    deleted, inserted or reordered. Invariant 5 (appending the same submissions
    again changes nothing) needs the submissions themselves: the test suite
    checks it.

    \b
    Examples:
      leadledger verify && echo books are sound
      leadledger verify --head                 # 1842:9f86d081...  publish it
      leadledger verify --expect-head 1842:9f86d081...
    """
    ledger = open_ledger(ctx)
    if head_only:
        problems, head = ledger.chain_problems(expect_head)
        row = {"position": head.position, "sha256": head.sha256.hex(), "head": head.text(),
               "ok": not problems, "problems": problems}
        if fmt == "json":
            click.echo(json.dumps(row, indent=2))
        elif fmt == "csv":
            write_csv([{**row, "ok": str(not problems).lower(), "problems": "; ".join(problems)}],
                      ("position", "sha256", "head", "ok", "problems"), sys.stdout)
        else:
            click.echo(head.text())
            for problem in problems:
                click.echo(f"leadledger: chain broken: {problem} (the head above is the last "
                           "event that chains correctly)", err=True)
        sys.exit(0 if not problems else EXIT_REJECTED)
    checks = ledger.verify(replay=not quick, expect_head=expect_head)
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
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              help="File to write (default: stdout); it replaces FILE only once written whole.")
@click.pass_context
@guarded
def export(ctx: click.Context, fmt: str, output: Any) -> None:
    """Export the double-entry journal for accountants (Beancount; check it with bean-check).

    \b
    Example:
      leadledger export --format beancount -o ledger.beancount && bean-check ledger.beancount
    """
    ledger = open_ledger(ctx)
    advance = progress("export", None, unit="lines")
    with replaced_whole(output) as out:
        for line in ledger.export_beancount():
            out.write(line + "\n")
            advance(1)
    advance(-1)


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
    ledger = open_ledger(ctx, create=True)
    lines = resources.files("leadledger.cli").joinpath("demo.ndjson").read_text(encoding="utf-8").splitlines()
    results = ledger.append(lines)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status == "rejected":
            click.echo(f"  rejected as the rules say: {result.code}: {result.message}")
    click.echo("submissions: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    at = "2026-03-01T00:00:00Z"
    swept = ledger.sweep(at)
    click.echo(f"sweep at {at}: {len(swept)} unread refund(s) recorded")
    click.echo(f"balances and refund statuses below are as of {at} (the demo's clock)\n")
    click.echo(render(ledger.balances(as_of=at), reports.BALANCE_COLUMNS, "table"))
    click.echo(render(list(report_rows.with_unit(ledger.refunds(as_of=at))), reports.REFUND_TABLE, "table"),
               nl=False)


@cli.command()
@click.pass_context
@guarded
def schema(ctx: click.Context) -> None:
    """Print the JSON Schema of a submission (generated from the pydantic models:
    one object per type, told apart by "type"). Other services can validate or
    generate clients from it.

    \b
    Example:
      leadledger schema > submission.schema.json
    """
    from leadledger.submissions import json_schema

    click.echo(json.dumps(json_schema(), ensure_ascii=False, indent=2))


for _command in cli.commands.values():
    add_db_option(_command)


def utf8_stdout() -> None:
    """What leadledger prints is UTF-8, whatever the locale says: NDJSON, JSON and
    CSV must be (RFC 8259), ids may be any Unicode, and under an ASCII or Latin-1
    stdout (PYTHONIOENCODING, a non-UTF-8 locale, a redirected Windows console)
    printing one failed halfway through with error[internal]. `export -o FILE`
    writes UTF-8 already. Only before anything is written (reconfigure's rule)."""
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper) and codecs.lookup(stream.encoding).name != "utf-8":
        # backslashreplace: only a lone surrogate (refused at the door) is not UTF-8.
        stream.reconfigure(encoding="utf-8", errors="backslashreplace")


def main() -> None:
    utf8_stdout()
    try:
        cli.main(obj={}, standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", "interrupted", EXIT_USAGE)
    except click.ClickException as exc:  # usage errors: one line, exit 2
        fail("usage", " ".join(exc.format_message().split()), EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
