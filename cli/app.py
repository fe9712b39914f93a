"""The `leadledger` command group and what every command shares: the store
option, output formats, error handling and exit codes, progress on stderr.

Exit codes (one table for every command):
  0  done
  1  a submission was rejected, an invariant failed, or a named thing (a pro,
     a contact) was not found
  2  bad usage: an option, a time, a period, a file that is not NDJSON
  3  the store failed, is unreachable or not initialised
  4  internal error (a bug: LEADLEDGER_DEBUG=1 shows the traceback)
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import time

from typing import Any, Callable

import click

from leadledger.store import DEFAULT_URL, URL_ENV

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_STORE, EXIT_INTERNAL = 0, 1, 2, 3, 4
# LedgerErrors caused by what the user gave, not by the store.
USAGE_CODES = frozenset({"invalid_log", "store_not_empty", "not_supported", "bad_head", "key_exists",
                         "bad_key_name", "bad_key_scope", "cannot_listen", "cannot_write_output"})
# LedgerErrors that are findings about the books, exit 1 like a failed verify.
FINDING_CODES = frozenset({"chain_broken"})


def fail(code: str, message: str, exit_code: int) -> None:
    click.echo(f"leadledger: error[{code}]: {message}", err=True)
    sys.exit(exit_code)


def _persistence_error() -> type[BaseException]:
    # Evaluated only when an exception reaches that clause: `--help` starts
    # without importing eventsourcing.
    from eventsourcing.persistence import PersistenceError

    return PersistenceError


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """User and store errors become one line on stderr and an exit code, never a traceback."""
    from leadledger.lines import NotNDJSON
    from leadledger.errors import LedgerError, Rejection

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Rejection as exc:  # a named thing not found, a rule refused
            fail(exc.code, exc.message, EXIT_REJECTED)
        except LedgerError as exc:
            fail(exc.code, exc.message, EXIT_USAGE if exc.code in USAGE_CODES
                 else EXIT_REJECTED if exc.code in FINDING_CODES else EXIT_STORE)
        except NotNDJSON as exc:
            fail("usage", str(exc), EXIT_USAGE)
        except (_persistence_error(), sqlite3.Error) as exc:  # the store failed, not our code
            from leadledger.application import store_error_code

            # The codes the service answers with for the same failures.
            fail(store_error_code(exc), " ".join(str(exc).split())[:300] or type(exc).__name__, EXIT_STORE)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            quiet_stdout()
            sys.exit(EXIT_OK)
        except Exception as exc:  # a bug: say so in one line, keep the traceback opt-in
            if os.environ.get("LEADLEDGER_DEBUG"):
                raise
            fail("internal", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                 "(set LEADLEDGER_DEBUG=1 for the traceback)", EXIT_INTERNAL)

    return wrapper


def quiet_stdout() -> None:
    """The reader of stdout went away (`| head`): send the rest nowhere, so Python's
    final flush does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


PROGRESS_DELAY_S = 0.3  # a bar appears only for work that lasts longer than this


def progress(task: str, total: int | None, unit: str = "events") -> Callable[[int], None]:
    """A progress bar on stderr when stderr is a terminal (tqdm; nothing when piped).
    Returns ``advance(n)``; ``advance(-1)`` closes the bar.

    tqdm is imported only once the work has run for ``PROGRESS_DELAY_S``: a
    one-line append never pays its ~20 ms import and lock set-up."""
    if not sys.stderr.isatty():
        return _no_progress
    started, done = time.monotonic(), 0
    bar: Any = None

    def advance(count: int) -> None:
        nonlocal bar, done
        if count < 0:
            if bar is not None:
                bar.close()
            return
        done += count
        if bar is None:
            if time.monotonic() - started < PROGRESS_DELAY_S:
                return
            from tqdm import tqdm

            bar = tqdm(total=total, desc=task, unit=f" {unit}", unit_scale=True, file=sys.stderr,
                       leave=False, dynamic_ncols=True, initial=done)
            return
        bar.update(count)

    return advance


def warn(message: str) -> None:
    """Something an operator should hear of though the command went on (stderr)."""
    click.echo(f"leadledger: WARNING: {message}", err=True)


def _no_progress(count: int) -> None:
    """Progress nobody sees (stderr is not a terminal)."""


def open_ledger(ctx: click.Context, *, create: bool = False) -> Any:
    """The ledger of ``--db``. Only the commands that record into a new store
    (``create=True``: init, append, demo) make a SQLite file where there is none;
    any other command says store_not_initialised, as on PostgreSQL."""
    from leadledger import Ledger
    from leadledger.application import default_recorded_by

    ledger = Ledger.from_url(ctx.obj["db"], recorded_by=default_recorded_by("cli"), create=create)
    ledger.progress = progress
    ledger.warn = warn
    ctx.call_on_close(ledger.close)
    return ledger


def _set_db(ctx: click.Context, _: Any, value: str | None) -> None:
    if value is not None:
        ctx.obj["db"] = value


def add_db_option(command: click.Command) -> None:
    """`--db` is accepted after the command name too (`leadledger balances --db URL`)."""
    command.params.append(click.Option(["--db"], metavar="URL", expose_value=False, callback=_set_db,
                                       is_eager=True, help="The store (as before the command name)."))


FORMAT = click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
                      show_default=True, help="table for people; json (byte-stable) or csv for programs.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", metavar="URL", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
              help=f"Store: sqlite:///PATH or postgresql://USER@HOST[:PORT]/DBNAME[?sslmode=...] (or ${URL_ENV}). "
              "Accepted after the command name too.")
@click.version_option(package_name="leadledger", prog_name="leadledger", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, db: str) -> None:
    """leadledger: an event-sourced billing ledger for lead marketplaces.

    Exit codes: 0 done; 1 a submission rejected, an invariant failed or a named
    thing not found; 2 bad usage; 3 store unavailable or not initialised;
    4 internal error.

    \b
    Example:
      leadledger init
      leadledger append submissions.ndjson
      leadledger balances --format json
    """
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
