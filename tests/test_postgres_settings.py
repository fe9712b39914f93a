"""PostgreSQL, whatever the database's settings: text ordered byte by byte, as on
SQLite; refused where the database cannot hold it; transactions at READ COMMITTED;
commits flushed before they are acknowledged; tables in one schema.

Order. SQLite compares text as bytes (BINARY). PostgreSQL uses the database's collation,
and a linguistic one (ICU's en-US here; glibc's en_US.UTF-8 behaves alike) sorts
"alpha" before "Bravo" and "pro_1" before "pro-1". The read models' text columns
are collated "C" on PostgreSQL (projections/tables.py), and API keys are sorted
in Python, so every report lists rows in the same order on either store.

Encoding. Ids may be any Unicode; a LATIN1 database accepted a submission and then
failed every read after it. A database not encoded in UTF8 records nothing, and
says why; what an older store holds there stays readable.

Client encoding. Text travels as UTF-8 whatever PGCLIENTENCODING or the database's
default client_encoding say.

Language. PostgreSQL words its errors in the server's language (lc_messages); the
writer tells them apart by SQLSTATE, so a Spanish-speaking server gets the same
error codes and advice as an English one.

Isolation. The writers and the read models serialise on locks and rely on READ
COMMITTED (a transaction that waited for a lock sees what its holder committed).
Under a database default of SERIALIZABLE a catch-up beside a rebuild failed with
"could not serialize access"; the ledger's sessions set READ COMMITTED.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse
from typing import Any

import pytest

from leadledger import Ledger, application
from leadledger.projections.tables import READ_MODEL_DDL, READ_MODEL_TABLES

from tests.conftest import (_connect, pg_url_for, require_postgres, scratch_database,
                            wait_for_a_blocked_session)

ICU_DATABASE = "leadledger_test_icu"
AS_OF = "2026-02-01T00:00:00Z"
NOW = "2026-01-07T00:00:00Z"
# Ids whose byte order and en-US order differ: case, and '_' against '-' and digits.
PROS = ["Zed", "alpha", "Bravo", "bravo-2", "pro_1", "pro-1", "Pro-2", "pro1"]


def _submissions() -> list[str]:
    lines: list[dict[str, Any]] = []

    def event_id(*parts: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(parts)))

    for i, pro in enumerate(PROS):
        lines += [
            {"type": "WalletOpened", "event_id": event_id("w", pro), "occurred_at": "2026-01-05T10:00:00Z",
             "pro_id": pro, "market": "pro360", "region": "US-CA"},
            {"type": "CreditsPurchased", "event_id": event_id("b", pro), "occurred_at": "2026-01-05T11:00:00Z",
             "pro_id": pro, "amount": 10_000 + i, "payment_ref": f"pay-{pro}"},
        ]
        for contact in (f"Ct-{pro}", f"ct_{pro}", f"ct-{pro}"):
            lines.append({"type": "QuoteSent", "event_id": event_id("q", contact),
                          "occurred_at": "2026-01-05T12:00:00Z", "contact_id": contact, "pro_id": pro,
                          "request_id": f"req-{contact}", "customer_id": f"cus-{contact}",
                          "category": "plumbing", "job_date": "2026-01-20", "pricing": "manual",
                          "commission": 1000 + i, "management_fee": 0})
    return [json.dumps(line) for line in lines]


def _reports(ledger: Ledger) -> dict[str, Any]:
    return {
        "balances": ledger.balances(as_of=AS_OF),
        "refunds": ledger.refunds(as_of=AS_OF, now=NOW),
        "trial_balance": ledger.trial_balance(as_of=AS_OF),
        "trial_balance_by_pro": ledger.trial_balance(as_of=AS_OF, pro_id="pro-1"),
        "keys": [key.name for key in ledger.list_keys()],
    }


def _fill(ledger: Ledger) -> None:
    results = ledger.append(_submissions())
    assert {r.status for r in results} == {"recorded"}, [r for r in results if r.status != "recorded"]
    for name in ("a1", "a_b", "a-b", "a.b", "ab"):
        ledger.create_key(name, "append")


@pytest.fixture
def icu_url() -> Any:
    """A database whose default collation is ICU's en-US (PostgreSQL 15's LOCALE_PROVIDER)."""
    with scratch_database(ICU_DATABASE, create_options="LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
                          " LOCALE 'C.UTF-8' TEMPLATE template0") as url:
        with _connect(ICU_DATABASE) as conn:  # the premise: this database orders text otherwise
            (linguistic,) = conn.execute("SELECT 'alpha' < 'Bravo'").fetchone()
            assert linguistic
        yield url


def _expected(tmp_path: Any) -> dict[str, Any]:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        ledger.init()
        _fill(ledger)
        reports = _reports(ledger)
    # SQLite's order is byte order: the premise of the comparison below.
    assert [row["pro_id"] for row in reports["balances"]] == sorted(PROS, key=str.encode)
    assert reports["keys"] == sorted(reports["keys"], key=str.encode)
    return reports


def test_reports_list_rows_in_byte_order_under_a_linguistic_collation(icu_url: str, tmp_path: Any) -> None:
    expected = _expected(tmp_path)
    with Ledger.from_url(icu_url) as ledger:
        ledger.init()
        _fill(ledger)
        assert _reports(ledger) == expected


def test_read_models_from_before_byte_order_are_projected_again(icu_url: str, tmp_path: Any) -> None:
    """A store whose read models took the database's collation (before 0.6.2) gets
    them dropped and projected again on first use, in byte order."""
    expected = _expected(tmp_path)
    with Ledger.from_url(icu_url) as ledger:
        ledger.init()
        _fill(ledger)
    with _connect(ICU_DATABASE) as conn:  # the read models as 0.6.1 created them
        for table in READ_MODEL_TABLES:
            conn.execute(f"DROP TABLE {table}")
        for statement in READ_MODEL_DDL:
            conn.execute(statement)
        conn.execute("DELETE FROM leadledger_tracking WHERE application_name <> '__migration__'")
        (collation,) = conn.execute("SELECT collation_name FROM information_schema.columns"
                                    " WHERE table_name = 'll_postings' AND column_name = 'occurred_at'").fetchone()
        assert collation is None  # the database's default
    with Ledger.from_url(icu_url) as ledger:
        assert _reports(ledger) == expected
    with _connect(ICU_DATABASE) as conn:
        collations = {row[0] for row in conn.execute(
            "SELECT collation_name FROM information_schema.columns WHERE table_name = ANY(%s)"
            " AND data_type = 'text'", (list(READ_MODEL_TABLES),))}
        assert collations == {"C"}


LATIN1_DATABASE = "leadledger_test_latin1"
ROOT = Path(__file__).resolve().parent.parent


def _cli(url: str, *args: str, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)


def test_a_database_not_in_utf8_records_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """``init`` refuses it; a store made there before 0.6.2 refuses to record and
    stays readable, so its log can be moved out (events, then replay elsewhere)."""
    with scratch_database(LATIN1_DATABASE, create_options="ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0") as url:
        where = urlparse(url)
        refusal = (f'leadledger: error[store_unavailable]: database "{LATIN1_DATABASE}" on {where.hostname}:'
                   f"{where.port} is encoded LATIN1, and leadledger records only into UTF8 databases (its text"
                   f" may be any Unicode): create one with createdb -h {where.hostname} -p {where.port} -E UTF8"
                   " -T template0 NAME (a log already here stays readable: move it with `leadledger events`"
                   " and `leadledger replay`)\n")
        proc = _cli(url, "init")
        assert (proc.returncode, proc.stderr) == (3, refusal)
        with _connect(LATIN1_DATABASE) as conn:  # refused before anything was created
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0

        # A store an older leadledger made there, with a wallet recorded then.
        monkeypatch.setattr(application, "utf8_refusal", lambda env, encoding: None)
        with Ledger.from_url(url) as ledger:
            ledger.init()
            ledger.append([json.dumps({"type": "WalletOpened", "event_id": str(uuid.uuid4()),
                                       "occurred_at": "2026-01-05T10:00:00Z", "pro_id": "josé",
                                       "market": "pro360", "region": "US-CA"})])
        monkeypatch.undo()

        submission = json.dumps({"type": "WalletOpened", "event_id": str(uuid.uuid4()),
                                 "occurred_at": "2026-01-05T10:00:00Z", "pro_id": "李",
                                 "market": "pro360", "region": "US-CA"})
        proc = _cli(url, "append", "-", stdin=submission + "\n")
        assert (proc.returncode, proc.stderr) == (3, refusal)
        proc = _cli(url, "events")
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["pro_id"] for line in proc.stdout.splitlines()] == ["josé"]
        proc = _cli(url, "balances", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert [row["pro_id"] for row in json.loads(proc.stdout)] == ["josé"]


SERIALIZABLE_DATABASE = "leadledger_test_serializable"


def test_transactions_read_committed_under_a_serializable_default() -> None:
    """A ledger transaction that waits for a lock (here the read models' advisory
    lock, held by another session that changes a row) then changes the same row:
    at SERIALIZABLE its snapshot predates the wait and it fails; at READ COMMITTED
    it sees the other's commit and goes on."""
    from leadledger.projections.postgres_view import PROJECTION_LOCK_KEY

    with scratch_database(SERIALIZABLE_DATABASE, settings={"default_transaction_isolation": "serializable"}) as url:
        with _connect(SERIALIZABLE_DATABASE) as other:
            assert other.execute("SHOW default_transaction_isolation").fetchone()[0] == "serializable"
            other.execute("CREATE TABLE counter (id int PRIMARY KEY, n int)")
            other.execute("INSERT INTO counter VALUES (1, 0)")
        with Ledger.from_url(url) as ledger:
            ledger.init()
            datastore = ledger._open()[0].factory.datastore
            with datastore.transaction(commit=False) as curs:
                curs.execute("SHOW transaction_isolation")
                assert curs.fetchone()["transaction_isolation"] == "read committed"

            with _connect(SERIALIZABLE_DATABASE) as other:
                other.autocommit = False
                other.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK_KEY,))
                other.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                failure: list[BaseException] = []

                def waiter() -> None:
                    try:
                        with datastore.transaction(commit=True) as curs:
                            curs.execute("SELECT 1")  # the snapshot, at SERIALIZABLE, is taken here
                            curs.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK_KEY,))
                            curs.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        failure.append(exc)

                thread = threading.Thread(target=waiter)
                thread.start()
                wait_for_a_blocked_session(SERIALIZABLE_DATABASE)  # the waiter holds its snapshot
                other.commit()
                thread.join(timeout=30)
                assert not thread.is_alive()
            assert failure == []
            with _connect(SERIALIZABLE_DATABASE) as other:
                assert other.execute("SELECT n FROM counter").fetchone()[0] == 2


DURABILITY_DATABASE = "leadledger_test_durability"


@pytest.mark.parametrize("default, session", [("off", "local"), ("on", "on"), ("remote_apply", "remote_apply")])
def test_commits_are_flushed_whatever_the_database_default(default: str, session: str) -> None:
    """What is acknowledged is durable: a database default of synchronous_commit =
    off (a commit returns before its WAL is flushed) becomes "local" for the
    ledger's sessions; a setting that flushes is left as it is."""
    with scratch_database(DURABILITY_DATABASE, settings={"synchronous_commit": default}) as url:
        with Ledger.from_url(url) as ledger:
            ledger.init()
            datastore = ledger._open()[0].factory.datastore
            with datastore.transaction(commit=False) as curs:
                curs.execute("SHOW synchronous_commit")
                assert curs.fetchone()["synchronous_commit"] == session


SEARCH_PATH_DATABASE = "leadledger_test_search_path"


def test_tables_live_in_public_whatever_the_search_path() -> None:
    """Under a database search_path that puts another schema first, `init` created
    the tables there (its DDL names no schema) while eventsourcing looked for them in
    public: every command after it failed. The sessions pin search_path."""
    with scratch_database(SEARCH_PATH_DATABASE, settings={"search_path": "app, public"}) as url:
        with _connect(SEARCH_PATH_DATABASE) as conn:
            conn.execute("CREATE SCHEMA app")
        assert _cli(url, "init").returncode == 0
        proc = _cli(url, "append", "cli/demo.ndjson")
        assert proc.returncode == 1, proc.stderr  # the demo holds one rejected line
        assert proc.stderr.endswith("24 recorded, 0 duplicate, 1 rejected\n"), proc.stderr
        proc = _cli(url, "balances", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert {row["pro_id"] for row in json.loads(proc.stdout)} >= {"pro-ana"}
        with _connect(SEARCH_PATH_DATABASE) as conn:
            schemas = dict(conn.execute("SELECT schemaname, count(*) FROM pg_tables"
                                        " WHERE schemaname IN ('app', 'public') GROUP BY schemaname").fetchall())
        assert set(schemas) == {"public"}


READ_ONLY_DATABASE = "leadledger_test_read_only"


def test_a_database_that_takes_no_writes_is_said_at_once() -> None:
    """A standby, or default_transaction_read_only = on: the writer said "the store
    failed 5 times in a row" after ~6 s of retries; it says why at once."""
    with scratch_database(READ_ONLY_DATABASE) as url:
        assert _cli(url, "init").returncode == 0
        with _connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{READ_ONLY_DATABASE}" SET default_transaction_read_only = on')
        started = time.monotonic()
        proc = _cli(url, "append", "cli/demo.ndjson")
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith("leadledger: error[permission_denied]: this database takes no writes: ")
        assert proc.stderr.endswith("(a standby, or default_transaction_read_only = on: append to the primary)\n")
        assert proc.stderr.count("\n") == 1
        assert time.monotonic() - started < 5  # no retries with back-off (they took ~6 s)
        proc = _cli(url, "balances", "--format", "json")  # reads still work
        assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr
        # Read models behind a log recorded before: said, in words (it was permission_denied with
        # the server's "cannot execute INSERT in a read-only transaction").
        with _connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{READ_ONLY_DATABASE}" SET default_transaction_read_only = off')
        assert _cli(url, "append", "cli/demo.ndjson").returncode == 1  # its one rejected line
        with _connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{READ_ONLY_DATABASE}" SET default_transaction_read_only = on')
        proc = _cli(url, "balances")
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr == ("leadledger: error[read_models_behind]: the read models are 36 events behind the log "
                               "and this database takes no writes (a standby, or default_transaction_read_only = "
                               "on): run `leadledger follow` on the primary, or read there\n")


SPANISH_DATABASE = "leadledger_test_spanish"
SPANISH = "es_ES.utf8"  # glibc's name for it (localedef -i es_ES -f UTF-8 es_ES.UTF-8)


def _speaks_spanish() -> bool:
    import psycopg

    with _connect("postgres") as conn:
        try:
            conn.execute(f"SET lc_messages = '{SPANISH}'")
        except psycopg.errors.InvalidParameterValue:
            return False
    return True


def test_the_servers_language_changes_no_error_code() -> None:
    """PostgreSQL words its errors in lc_messages' language (a server set up on a
    Spanish system speaks Spanish). The writer read them as English text: there a
    read-only database was retried for ~3 s and called store_unavailable, and a
    role that may not append was told store_statement_failed ("its schema was
    changed by hand, or a bug"). It reads their SQLSTATE now."""
    require_postgres()
    if not _speaks_spanish():
        pytest.skip(f"this machine has no {SPANISH} locale for PostgreSQL's messages (localedef -i es_ES"
                    " -f UTF-8 es_ES.UTF-8 as root, then restart PostgreSQL): the classifying is tested"
                    " without it by test_errors_are_classified_by_sqlstate_not_words")
    with scratch_database(SPANISH_DATABASE, settings={"lc_messages": f"'{SPANISH}'"}) as url:
        import psycopg

        with pytest.raises(psycopg.errors.DivisionByZero, match="división por cero"), \
                psycopg.connect(url) as conn:  # the server speaks Spanish here
            conn.execute("SELECT 1/0")
        assert _cli(url, "init", "--roles").returncode == 0
        writer, auditor, owner = (pg_url_for(SPANISH_DATABASE, role)
                                  for role in ("leadledger_writer", "leadledger_auditor", "leadledger_owner"))
        line = ('{"type": "WalletOpened", "event_id": "0b5e8a3c-6f1e-4a8e-9a51-3d1c0e5b7f21",'
                ' "occurred_at": "2026-01-05T10:00:00Z", "pro_id": "pro-es", "market": "cronoshare",'
                ' "region": "ES-MD"}\n')
        proc = _cli(auditor, "append", "-", stdin=line)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith("leadledger: error[permission_denied]: this role may not append: "
                                      "permiso denegado"), proc.stderr
        assert proc.stderr.count("\n") == 1
        proc = _cli(auditor, "keys", "create", "billing", "--scope", "append")
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith("leadledger: error[permission_denied]: this role may not manage keys"), \
            proc.stderr
        # The read models behind the log, for a role that may not bring them level.
        assert _cli(writer, "append", "-", stdin=line).returncode == 0
        proc = _cli(auditor, "balances")
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith("leadledger: error[read_models_behind]: the read models are 1 events "
                                      "behind the log"), proc.stderr
        assert _cli(owner, "balances").returncode == 0
        # A database that takes no writes (a standby): said at once.
        with _connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{SPANISH_DATABASE}" SET default_transaction_read_only = on')
        proc = _cli(writer, "append", "-", stdin=line.replace("pro-es", "pro-es-2").replace("0b5e", "1b5e"))
        assert proc.returncode == 3, proc.stderr
        # (Not store_unavailable after ~3 s of retries: the code says it was not retried.)
        assert proc.stderr.startswith("leadledger: error[permission_denied]: this database takes no writes: "
                                      "no se puede ejecutar"), proc.stderr


def _raised_as_eventsourcing_does(error: Exception, wrapper: type[Exception]) -> Exception:
    try:
        try:
            raise error
        except Exception as driver_error:
            raise wrapper(str(driver_error)) from driver_error
    except Exception as wrapped:
        return wrapped


def test_errors_are_classified_by_sqlstate_not_words() -> None:
    """Each kind of store error the writer acts on, worded in French: its SQLSTATE
    says what it is (the server above speaks Spanish, where that locale exists)."""
    import psycopg.errors as pg
    from eventsourcing import persistence as es

    def wrapped(error: Exception, wrapper: type[Exception] = es.OperationalError) -> Exception:
        return _raised_as_eventsourcing_does(error, wrapper)

    read_only = wrapped(pg.ReadOnlySqlTransaction("ne peut pas exécuter INSERT dans une transaction en lecture seule"),
                        es.InternalError)
    refused = wrapped(pg.InsufficientPrivilege("droit refusé pour la table leadledger_chain_head"),
                      es.ProgrammingError)
    conflicts = [wrapped(pg.SerializationFailure("n'a pas pu sérialiser un accès")),
                 wrapped(pg.DeadlockDetected("blocage mortel détecté")),
                 wrapped(pg.LockNotAvailable("annulation de la requête à cause du délai écoulé pour l'obtention"
                                             " des verrous"))]
    lost = wrapped(pg.AdminShutdown("arrêt de la connexion à cause d'une commande de l'administrateur"))
    full = wrapped(pg.DiskFull("n'a pas pu étendre le fichier : Aucun espace disponible sur le périphérique"))
    assert application._is_read_only(read_only) and not application._is_refusal(read_only)
    assert application._is_refusal(refused) and not application._is_read_only(refused)
    assert all(application._is_conflict(exc) for exc in conflicts)
    for exc in (read_only, refused, lost):
        assert not application._is_conflict(exc)
    assert not application._is_statement_error(lost)
    assert application.is_full(full) and not application._is_conflict(full)
    assert not any(application.is_full(exc) for exc in (read_only, refused, lost, *conflicts))
    # English words that once decided it decide nothing against the code.
    assert not application._is_conflict(wrapped(pg.AdminShutdown("lock busy deadlock")))
    assert not application._is_refusal(wrapped(pg.AdminShutdown("permission denied")))


CLIENT_ENCODING_DATABASE = "leadledger_test_client_encoding"


@pytest.mark.parametrize("where", ["environment", "database"])
def test_text_travels_as_utf8_whatever_the_client_encoding(where: str) -> None:
    """psycopg encodes text in the session's client_encoding. Under PGCLIENTENCODING=
    LATIN1, or a database default of it, a `李` id was recorded (an event's state is
    bytes) and then every read failed: `error[internal]: UnicodeEncodeError` as the
    read models caught up. The ledger's sessions ask for UTF8."""
    settings = {"client_encoding": "'LATIN1'"} if where == "database" else {}
    env = {**os.environ, "PGCLIENTENCODING": "LATIN1"} if where == "environment" else None
    with scratch_database(CLIENT_ENCODING_DATABASE, settings=settings) as url:
        assert _cli(url, "init", env=env).returncode == 0
        lines = "".join(line + "\n" for line in _submissions()[:6])
        lines += json.dumps({"type": "WalletOpened", "event_id": "2c1b7a52-8e0d-4f55-b7f4-5a3e7d1c9b60",
                             "occurred_at": "2026-01-05T10:00:00Z", "pro_id": "pro-李 ü",
                             "market": "cronoshare", "region": "ES-MD"}, ensure_ascii=False) + "\n"
        proc = _cli(url, "append", "-", stdin=lines, env=env)
        assert proc.returncode == 0, proc.stderr
        proc = _cli(url, "balances", "--format", "json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert "pro-李 ü" in {row["pro_id"] for row in json.loads(proc.stdout)}
        proc = _cli(url, "events", "--format", "json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert '"pro-李 ü"' in proc.stdout
        assert _cli(url, "verify", env=env).returncode == 0


def test_init_prints_the_url_without_its_password() -> None:
    with scratch_database("leadledger_test_password") as url:
        with_password = url.replace("postgres@", "postgres:s3cret@", 1)  # trust auth: ignored
        proc = _cli(with_password, "init")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == f"initialised {url.replace('postgres@', 'postgres:***@', 1)}\n"


ESCAPE_STRINGS_DATABASE = "leadledger_test_escape_strings"


def test_no_backslash_in_sql_literals_under_standard_conforming_strings_off(tmp_path: Any) -> None:
    """A database set to standard_conforming_strings = off reads a backslash inside
    '...' as an escape: `init` failed on the chain head's '\\x00...' literal (invalid
    byte sequence for encoding "UTF8": 0x00), and the account filter's LIKE ... ESCAPE
    '\\' was a syntax error. Same reports as SQLite's, filters included."""
    sqlite_url = f"sqlite:///{tmp_path / 'l.db'}"
    with scratch_database(ESCAPE_STRINGS_DATABASE, settings={"standard_conforming_strings": "off"}) as url:
        assert _cli(url, "init").returncode == 0
        for store in (url, sqlite_url):
            proc = _cli(store, "append", "cli/demo.ndjson")
            assert proc.returncode == 1, proc.stderr  # the demo holds one rejected line
        reports = [("trial-balance", "--as-of", AS_OF, "--format", "json"),
                   ("trial-balance", "--as-of", AS_OF, "--account", "platform", "--format", "json"),
                   ("trial-balance", "--as-of", AS_OF, "--account", "platform:revenue", "--format", "json"),
                   ("statement", "pro-ana", "--period", "2025", "--account", "pro", "--format", "json"),
                   ("balances", "--as-of", AS_OF, "--format", "json")]
        for report in reports:
            on_postgres, on_sqlite = _cli(url, *report), _cli(sqlite_url, *report)
            assert on_postgres.returncode == 0, (report, on_postgres.stderr)
            assert on_postgres.stdout == on_sqlite.stdout, report
        filtered = json.loads(_cli(url, *reports[2]).stdout)
        assert filtered and all(row["account"].startswith("platform:revenue:") for row in filtered)
        assert _cli(url, "verify").returncode == 0


TIMEOUT_DATABASE = "leadledger_test_timeouts"


def test_no_database_timeout_cuts_the_ledgers_own_statements_and_waits() -> None:
    """Database defaults of statement_timeout and lock_timeout (here 1 ms each)
    cancelled the ledger's statements part-way: under 200 ms a rebuild never
    finished and a bulk append's statistics refresh failed after its commits;
    under 1 ms not even `init` ran. And a report waiting for a rebuild's commit
    (the read models' lock) failed instead of answering after it. Each would fail
    the same way again. The ledger's sessions run with PostgreSQL's defaults for
    both (its work and its waits are its own, bounded); other sessions keep the
    database's."""
    from leadledger.projections.postgres_view import READERS_LOCK_KEY

    settings = {"statement_timeout": "'1ms'", "lock_timeout": "'1ms'"}
    with scratch_database(TIMEOUT_DATABASE, settings=settings) as url:
        for args in (("init",), ("append", "cli/demo.ndjson"), ("rebuild",), ("balances", "--format", "json"),
                     ("verify",)):
            proc = _cli(url, *args)
            assert proc.returncode in (0, 1) and "error[" not in proc.stderr, (args, proc.stderr)
        with Ledger.from_url(url) as ledger:
            datastore = ledger._open()[0].factory.datastore
            with datastore.transaction(commit=False) as curs:
                curs.execute("SHOW statement_timeout")
                assert curs.fetchone()["statement_timeout"] == "0"
                curs.execute("SHOW lock_timeout")
                assert curs.fetchone()["lock_timeout"] == "0"
            expected = ledger.balances()
            with _connect(TIMEOUT_DATABASE) as rebuild:  # holds what a rebuild holds against readers
                assert rebuild.execute("SHOW lock_timeout").fetchone()[0] == "1ms"
                rebuild.autocommit = False
                rebuild.execute("SELECT pg_advisory_xact_lock(%s)", (READERS_LOCK_KEY,))
                answers: list[object] = []
                reader = threading.Thread(target=lambda: answers.append(_try(ledger.balances)))
                reader.start()
                wait_for_a_blocked_session(TIMEOUT_DATABASE)
                time.sleep(0.1)  # a hundred times the database's lock_timeout
                rebuild.commit()
                reader.join(timeout=30)
            assert answers == [expected]


def _try(read: Any) -> object:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - the test compares what came back
        return exc


URL_PARAMS_DATABASE = "leadledger_test_url_params"


def test_a_urls_libpq_parameters_reach_every_connection() -> None:
    """A PostgreSQL URL's query (``?sslmode=require``) was dropped unread before
    0.6.5: against this server, which has no TLS, ``init``, ``append`` and every
    report then connected in clear text where the URL's author demanded TLS. Each
    of the ledger's connections (init's, the writer's probe, the pool's) now gets
    the parameters; ``application_name`` shows them on the pool's sessions."""
    with scratch_database(URL_PARAMS_DATABASE) as url, _connect(URL_PARAMS_DATABASE) as conn:
        (ssl,) = conn.execute("SHOW ssl").fetchone()
        assert ssl == "off"  # the premise: TLS demanded cannot be had here
        for args in (("init",), ("append", "-"), ("balances",), ("verify", "--quick")):
            proc = _cli(f"{url}?sslmode=require", *args, stdin=_submissions()[0] + "\n")
            assert proc.returncode == 3, (args, proc.stderr)
            assert proc.stderr.startswith("leadledger: error[store_unavailable]: ") and \
                "SSL was required" in proc.stderr, (args, proc.stderr)
        name = f"ledger-{uuid.uuid4().hex[:8]}"
        with Ledger.from_url(f"{url}?sslmode=disable&application_name={name}") as ledger:
            ledger.init()
            assert {r.status for r in ledger.append(_submissions()[:4])} == {"recorded"}
            assert ledger.balances()
            (sessions,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                       (name,)).fetchone()
            assert sessions >= 1


def test_a_url_without_a_host_is_the_local_socket() -> None:
    """``postgresql:///db`` (psql's default: the Unix socket) was refused as
    bad_database_url; ``?host=DIR`` names the socket's folder."""
    with scratch_database(URL_PARAMS_DATABASE) as url, _connect(URL_PARAMS_DATABASE) as conn:
        (folders,) = conn.execute("SHOW unix_socket_directories").fetchone()
        folder = folders.split(",")[0].strip()
        if not folder:
            pytest.skip("this server listens on no Unix socket")
        user = urlparse(url).username or "postgres"
        for socket_url in (f"postgresql://{user}@/{URL_PARAMS_DATABASE}?host={folder}",
                           f"postgresql://{user}@/{URL_PARAMS_DATABASE}"
                           if folder == "/var/run/postgresql" else None):  # libpq's compiled default here
            if socket_url is None:
                continue
            proc = _cli(socket_url, "init")
            assert proc.returncode == 0, proc.stderr
            proc = _cli(socket_url, "append", "-", stdin="\n".join(_submissions()[:2]) + "\n")
            assert proc.returncode == 0, proc.stderr
            proc = _cli(socket_url, "balances", "--format", "json")
            assert proc.returncode == 0 and json.loads(proc.stdout), proc.stderr
        proc = _cli(f"postgresql://{user}@/no_such_db_here?host={folder}", "balances")
        assert (proc.returncode, proc.stderr) == (3, 'leadledger: error[store_unavailable]: database "no_such_db_here" '
                                                  f"does not exist on the socket in {folder} (port 5432) (createdb -h "
                                                  f"{folder} -p 5432 -U {user} no_such_db_here, then leadledger init)\n")


@pytest.mark.parametrize("url, said", [
    ("postgresql://u@h/db?password=s3cret&x=1",
     "'postgresql://u@h/db?password=***&x=***': the parameter 'password' is not one the ledger passes on"),
    ("postgresql://u:s3cret@h/db?options=-c%20default_transaction_isolation%3Dserializable",
     "'postgresql://u:***@h/db?options=***': the parameter 'options' is not one the ledger passes on"),
    ("postgresql://u@h/db?sslmode=disable&sslmode=require",
     "'postgresql://u@h/db?sslmode=disable&sslmode=require': the parameter 'sslmode' is given twice"),
    ("postgresql://u@h/db?host=/run/postgresql",
     "'postgresql://u@h/db?host=/run/postgresql' names its host twice (before the path and in ?host=)"),
    ("postgresql://u@h/db?sslmode", "'postgresql://u@h/db?sslmode': its query is not name=value pairs"),
    ("postgresql://u@h/", "'postgresql://u@h/' needs a database name"),
])
def test_a_url_parameter_the_ledger_does_not_pass_on_is_refused(url: str, said: str) -> None:
    """Never dropped unread, and its value never printed (it may be a secret)."""
    from leadledger.errors import LedgerError
    from leadledger.store import config_for

    with pytest.raises(LedgerError) as raised:
        config_for(url)
    assert raised.value.code == "bad_database_url"
    assert raised.value.message.startswith(said), raised.value.message
    assert "s3cret" not in raised.value.message
