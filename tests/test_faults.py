"""Issue 7: faults give the right answer. Real processes, real stores, kill -9.

Bounded in time: every subprocess has a timeout and every loop a count.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest

from leadledger import Ledger
from tests.conftest import (PG_URL, _connect, pg_url_for, require_postgres, reset_postgres, scratch_database,
                            wait_for_a_blocked_session)
from tests.helpers import buy, guards_off, wallet

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)


def clean_lines(count: int, pros: int = 500, seed: int = 1) -> list[str]:
    """``count`` submissions that are all accepted: wallets, purchases, quotes, reads."""
    rng = random.Random(seed)
    ns = uuid.UUID(int=seed)
    lines: list[str] = []

    def add(kind: str, seconds: int, **fields) -> None:
        lines.append(json.dumps({"type": kind, "event_id": str(uuid.uuid5(ns, str(len(lines)))),
                                 "occurred_at": (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 **fields}))

    for p in range(pros):
        add("WalletOpened", p, pro_id=f"pro-{p}", market="pro360", region="US-CA")
        add("CreditsPurchased", p, pro_id=f"pro-{p}", amount=10**9, payment_ref=f"pay-{p}")
    n = 0
    while len(lines) < count:
        n += 1
        contact = f"ct-{n}"
        add("QuoteSent", pros + n, contact_id=contact, pro_id=f"pro-{rng.randrange(pros)}",
            request_id=f"r-{n}", customer_id=f"cus-{n}", category="plumbing", job_date="2026-02-01",
            pricing="manual", commission=rng.randrange(100, 2000), management_fee=0)
        if len(lines) < count and rng.random() < 0.5:
            add("QuoteRead", pros + n + 1, contact_id=contact)
    return lines[:count]


def cli(url: str, *args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args], cwd=ROOT,
                            stdout=stdout, stderr=subprocess.PIPE)


def cli_run(url: str, *args: str, timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, input=input)


def models(url: str) -> str:
    with Ledger.from_url(url) as ledger:
        return json.dumps(ledger.read_models(), sort_keys=True)


def clean_models(lines: list[str], tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clean.db'}"
    with Ledger.from_url(url) as ledger:
        ledger.append(lines)
    return models(url)


# --- 2. a big atomic batch on PostgreSQL used to hang holding the lock -------------

def test_an_atomic_batch_of_100000(store_url):
    lines = clean_lines(100_000)
    with Ledger.from_url(store_url) as ledger:
        results = ledger.append(lines, atomic=True)
        assert len(results) == 100_000 and all(r.status == "recorded" for r in results)
        app, _ = ledger._open()
        assert app.recorder.max_notification_id() >= 100_000
        assert all(r.status == "duplicate" for r in ledger.append(lines[:1000], atomic=True))


@pytest.mark.postgres
def test_no_writer_holds_the_chain_head_while_waiting_on_its_client(tmp_path):
    require_postgres()
    reset_postgres()
    path = tmp_path / "subs.ndjson"
    path.write_text("\n".join(clean_lines(20_000)) + "\n")
    proc = cli(PG_URL, "append", "--atomic", str(path), stdout=subprocess.DEVNULL)
    longest = streak = samples = held = 0
    with _connect(urlparse(PG_URL).path.lstrip("/")) as conn:
        while proc.poll() is None and samples < 6000:
            samples += 1
            holders = conn.execute(
                "SELECT a.wait_event FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                # Writers serialise on the chain head's row (ledger/chain.py).
                " WHERE l.relation = 'leadledger_chain_head'::regclass AND l.mode = 'RowShareLock'"
                " AND l.granted").fetchall()
            held += bool(holders)
            waiting = any(wait == "ClientRead" for (wait,) in holders)
            streak = streak + 1 if waiting else 0
            longest = max(longest, streak)
            time.sleep(0.02)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert samples > 10, "the append ended before the lock could be watched"
    assert held, "the writer was never seen holding the chain head: the watch watches nothing"
    # Between two INSERT pages the server briefly waits for the next one; never for long.
    assert longest < 25, f"the lock was held while waiting on the client for {longest} samples"


# --- kill -9: nothing acknowledged is lost, nothing half-applied ----------------------

@pytest.mark.parametrize("atomic", [False, True], ids=["chunked", "atomic"])
def test_kill_9_then_re_append_gives_the_clean_result(store_url, tmp_path, atomic):
    # ~4 s of appending at this machine's pace: the kills (0.5-3 s in) land mid-append.
    lines = clean_lines(12_000, seed=3)
    path = tmp_path / "subs.ndjson"
    path.write_text("\n".join(lines) + "\n")
    args = ("append", "--atomic", str(path)) if atomic else ("append", str(path))
    rng = random.Random(11)
    acknowledged: list[tuple[int, str, str, str | None]] = []  # (run, event_id, status, code) as printed
    for run in range(2):
        proc = cli(store_url, *args)
        reader = threading.Thread(target=lambda p=proc, n=run: acknowledged.extend(
            (n, answer["event_id"], answer["status"], answer["code"])
            for answer in map(json.loads, p.stdout)), daemon=True)
        reader.start()  # what the process acknowledged before it died
        time.sleep(rng.uniform(0.5, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    with Ledger.from_url(store_url) as ledger:
        results = ledger.append(lines)  # the sender retries everything
        statuses = {r.event_id: (r.status, r.code) for r in results}
        lost = [(run, status, code, statuses[eid]) for run, eid, status, code in acknowledged
                if statuses[eid][0] != "duplicate"]
        # Every line printed (recorded, duplicate, or a clean line rejected) reads as recorded now;
        # the first few, with what was printed and what the retry says, if not.
        assert not lost, (f"an acknowledged line was lost: {len(lost)} of {len(acknowledged)}, e.g. "
                          f"{lost[:3]} (run, printed status, code, status now)")
        assert {status for status, _ in statuses.values()} <= {"recorded", "duplicate"}
        assert all(c.ok for c in ledger.verify(replay=False))
    assert models(store_url) == clean_models(lines, tmp_path)


@pytest.mark.postgres
def test_backends_terminated_mid_append_are_retried(tmp_path):
    require_postgres()
    reset_postgres()
    lines = clean_lines(20_000, seed=5)
    path = tmp_path / "subs.ndjson"
    path.write_text("\n".join(lines) + "\n")
    proc = cli(PG_URL, "append", str(path))
    with _connect(urlparse(PG_URL).path.lstrip("/")) as conn:
        for _ in range(3):
            time.sleep(1.0)
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    out, err = proc.communicate(timeout=300)
    # What went wrong, if anything: the outcomes by status and code (CI once saw 19,000 rejections).
    outcomes = collections.Counter((r["status"], r["code"]) for r in map(json.loads, out.splitlines()))
    assert proc.returncode == 0, (err.decode(), outcomes)
    assert len(out.splitlines()) == len(lines)
    assert models(PG_URL) == clean_models(lines, tmp_path)


# --- 3. rebuild beside readers ----------------------------------------------------------

def test_rebuild_racing_readers_never_shows_a_half_built_view(store_url, tmp_path):
    lines = clean_lines(12_000, seed=7)
    with Ledger.from_url(store_url) as ledger:
        ledger.append(lines)  # the views are behind: nothing has read yet
    expected = clean_models(lines, tmp_path)
    expected_balances = json.loads(expected)["balances"]
    readers = [cli(store_url, "balances", "--format", "json") for _ in range(2)]
    time.sleep(0.3)
    rebuild = cli(store_url, "rebuild")
    time.sleep(0.2)
    readers.append(cli(store_url, "balances", "--format", "json"))
    for proc in [*readers, rebuild]:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        if proc is not rebuild:
            rows = json.loads(out)
            assert len({row.pop("as_of") for row in rows}) == 1  # one instant per report
            assert rows == expected_balances
    result = cli_run(store_url, "verify", "--quick")
    assert result.returncode == 0, result.stdout
    assert models(store_url) == expected


@pytest.mark.postgres
def test_a_rebuild_and_a_reader_holding_a_table_do_not_deadlock(tmp_path):
    """A rebuild locks the read models' tables one after another (indexes dropped,
    then the tables emptied); a reader may hold one of them and then ask for
    another. Here the reader holds ll_checkpoints, the rebuild takes ll_postings and
    waits for ll_checkpoints, the reader asks for ll_postings: before the readers'
    gate (projections/postgres_view.py) PostgreSQL found a deadlock and failed one
    of them. Now the rebuild waits for the read to finish before taking any table."""
    require_postgres()
    reset_postgres()
    lines = clean_lines(3_000, seed=11)
    with Ledger.from_url(PG_URL) as ledger:
        ledger.append(lines)
        ledger.catch_up()
        _, view = ledger._open()
        failures: list[BaseException] = []

        def rebuild() -> None:
            try:
                with Ledger.from_url(PG_URL) as other:
                    other.rebuild()
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        with view.datastore.transaction(commit=False) as curs:
            view.begin_read(curs)
            curs.execute("SELECT count(*) AS n FROM ll_checkpoints")
            thread = threading.Thread(target=rebuild)
            thread.start()
            # The rebuild waits: for this read (the gate), or, without it, for
            # ll_checkpoints while it holds ll_postings.
            wait_for_a_blocked_session(urlparse(PG_URL).path.lstrip("/"))
            curs.execute("SELECT count(*) AS n FROM ll_postings")
            assert curs.fetchone()["n"] > 0
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert failures == []
        assert all(c.ok for c in ledger.verify(replay=False))


# --- 8. verify during appends, a deleted event, a read-only role --------------------------

def test_verify_during_a_live_append_judges_a_consistent_prefix(store_url, tmp_path):
    lines = clean_lines(20_000, seed=9)
    with Ledger.from_url(store_url) as ledger:
        ledger.append(lines[:2000])
    path = tmp_path / "subs.ndjson"
    path.write_text("\n".join(lines[2000:]) + "\n")
    proc = cli(store_url, "append", str(path), stdout=subprocess.DEVNULL)
    reports = []
    with Ledger.from_url(store_url) as ledger:
        for _ in range(3):
            reports.append([c.to_json() for c in ledger.verify(replay=False)])
            time.sleep(0.2)
    assert proc.wait(timeout=300) == 0
    assert all(check["ok"] for report in reports for check in report), reports


def test_an_event_deleted_from_the_middle_is_a_finding(store_url):
    with Ledger.from_url(store_url) as ledger:
        ledger.append(clean_lines(2000, pros=20, seed=13))
        app, view = ledger._open()
        table = app.recorder.events_table_name
        with guards_off(ledger) as curs:  # the triggers refuse it otherwise
            curs.execute(f"DELETE FROM {table} WHERE originator_version = 2 AND originator_id IN"
                         f" (SELECT originator_id FROM {table} WHERE originator_version = 3 LIMIT 1)")
    result = cli_run(store_url, "verify", "--format", "json")
    assert result.returncode == 1, result.stderr
    log_check = next(c for c in json.loads(result.stdout) if c["invariant"] == 0)
    assert not log_check["ok"]
    assert any(": deleted (position " in p for p in log_check["problems"]), log_check  # the chain
    assert any("an event is missing" in p for p in log_check["problems"]), log_check  # the versions


def _test_role(role: str, grant: str) -> str:
    """An emptied test store, a login ``role`` on it given ``grant``; its URL."""
    require_postgres()
    reset_postgres()
    parts = urlparse(PG_URL)
    dbname = parts.path.lstrip("/")
    with _connect(dbname) as conn:
        conn.execute(f"DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(grant)
    return f"postgresql://{role}@{parts.hostname}:{parts.port or 5432}/{dbname}"


@pytest.mark.postgres
def test_a_select_only_role_reads_or_says_why_not():
    reader_url = _test_role("ll_test_reader", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO ll_test_reader")
    lines = clean_lines(300, pros=10, seed=17)
    with Ledger.from_url(PG_URL) as ledger:
        ledger.append(lines[:200])
        ledger.catch_up()
        ledger.append(lines[200:])  # the views are 100 submissions behind
    behind = cli_run(reader_url, "balances")
    assert behind.returncode == 3 and "behind the log" in behind.stderr, behind.stderr
    assert "Traceback" not in behind.stderr
    with Ledger.from_url(PG_URL) as ledger:
        ledger.catch_up()
    for args in (("balances",), ("refunds",), ("verify",)):
        result = cli_run(reader_url, *args)
        assert result.returncode == 0, (args, result.stderr)
    # What it may not do is permission_denied, at once, whatever the command
    # (a rebuild needs the tables' owner; it said store_unavailable).
    refused = cli_run(reader_url, "rebuild")
    assert refused.returncode == 3 and refused.stderr.startswith("leadledger: error[permission_denied]: must be "
                                                                 "owner of "), refused.stderr
    refused = cli_run(reader_url, "append", "-", input=json.dumps(buy("pro-1", 100)) + "\n")
    assert refused.returncode == 3 and refused.stderr.startswith("leadledger: error[permission_denied]: this role "
                                                                 "may not append: "), refused.stderr


@pytest.mark.postgres
def test_a_role_given_nothing_is_told_so_whatever_it_runs():
    """A role with no privilege on the ledger's tables (a URL with the wrong user):
    every command said store_unavailable, as if the store were down, where an
    append's first read (the receipts' check) or a report's catch-up was refused.
    Now permission_denied, naming the table, on the command line and the service."""
    nobody = _test_role("ll_test_nobody", "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ll_test_nobody")
    with Ledger.from_url(PG_URL) as ledger:
        assert [r.status for r in ledger.append([wallet("p1")])] == ["recorded"]
    for args in (("append", "-"), ("balances",), ("verify",), ("events",), ("rebuild",), ("keys", "list")):
        result = cli_run(nobody, *args, input=json.dumps(buy("p1", 100)) + "\n" if args[0] == "append" else None)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.startswith("leadledger: error[permission_denied]: "), (args, result.stderr)
        assert "permission denied for table" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    from leadledger.application import store_error_code
    from eventsourcing.persistence import ProgrammingError

    with Ledger.from_url(nobody) as ledger, pytest.raises(ProgrammingError) as refused:
        ledger.log_size()
    assert store_error_code(refused.value) == "permission_denied"  # the service's 503 says so too


@pytest.mark.postgres
def test_statistics_are_refreshed_after_init_and_rebuild():
    """init analyzes the whole store; a rebuild, the read models it rewrote only."""
    require_postgres()
    reset_postgres()
    with _connect(urlparse(PG_URL).path.lstrip("/")) as conn:
        def analyzed() -> dict[str, int]:
            time.sleep(0.6)  # the statistics collector reports asynchronously
            return dict(conn.execute(
                "SELECT relname, analyze_count FROM pg_stat_user_tables"
                " WHERE relname IN ('leadledger_events', 'll_postings')").fetchall())

        conn.execute("SELECT pg_stat_reset()")
        with Ledger.from_url(PG_URL) as ledger:
            ledger.init()
            ledger.append(clean_lines(100, pros=5))
            before = analyzed()
            ledger.rebuild()
            after = analyzed()
    assert before.get("leadledger_events", 0) >= 1 and before.get("ll_postings", 0) >= 1, before
    assert after["ll_postings"] == before["ll_postings"] + 1, (before, after)
    assert after["leadledger_events"] == before["leadledger_events"], (before, after)


@pytest.mark.postgres
@pytest.mark.parametrize("url, words", [
    ("postgresql://postgres@127.0.0.1:5432/leadledger_no_such_db", 'database "leadledger_no_such_db" does not exist'),
    ("postgresql://leadledger_no_such_role@127.0.0.1:5432/postgres", 'role "leadledger_no_such_role" does not exist'),
    ("postgresql://postgres@127.0.0.1:1/postgres", "nothing listens on 127.0.0.1:1"),
])
def test_an_unreachable_store_says_why_within_a_second(url, words):
    require_postgres()
    started = time.monotonic()
    result = cli_run(url, "balances", timeout=30)
    assert result.returncode == 3 and words in result.stderr, result.stderr
    assert time.monotonic() - started < 5  # interpreter start-up included; the probe answers at once


def test_a_file_that_is_not_sqlite_says_so(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database, just notes\n" * 100)
    result = cli_run(f"sqlite:///{path}", "balances", timeout=60)
    assert result.returncode == 3 and "is not a SQLite database" in result.stderr, result.stderr


def test_an_oversized_atomic_batch_is_refused_as_it_is_read(tmp_path, monkeypatch):
    from leadledger import application

    monkeypatch.setattr(application, "MAX_ATOMIC_BATCH", 10)
    consumed = []

    def lines():
        for i, line in enumerate(clean_lines(50, pros=5)):
            consumed.append(i)
            yield line

    with Ledger.from_url(f"sqlite:///{tmp_path / 'a.db'}") as ledger:
        results = ledger.append_iter(lines(), atomic=True)
        first = next(results)
        assert len(consumed) == 11  # read one past the limit, not the whole input
        assert first.code == "invalid_submission" and "at most 10" in first.message
        assert len([first, *results]) == 50
        assert ledger.balances() == []


@contextlib.contextmanager
def _store_to_break(kind: str, tmp_path: Path):
    """A store of its own, and a function running one statement on it by hand."""
    if kind == "sqlite":
        path = tmp_path / "broken.db"

        def by_hand(statement: str) -> None:
            with contextlib.closing(sqlite3.connect(path)) as conn, conn:
                conn.execute(statement)

        yield f"sqlite:///{path}", by_hand
        return
    with scratch_database("leadledger_statement_refused") as url:
        def by_hand(statement: str) -> None:
            with _connect("leadledger_statement_refused") as conn:
                conn.execute(statement)

        yield url, by_hand


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_statement_the_store_refuses_fails_at_once_and_records_nothing(kind, tmp_path, monkeypatch):
    """A missing table is not an outage: no back-off, no re-judging, one stable code
    (it used to be retried as a lost connection, 4 back-offs, then store_unavailable)."""
    from leadledger import application
    from leadledger.errors import LedgerError
    from leadledger.recorders import RECEIPTS_TABLE

    backoffs: list[float] = []
    sleep = time.sleep
    monkeypatch.setattr(application.time, "sleep", lambda s: (backoffs.append(s), sleep(s)))
    with _store_to_break(kind, tmp_path) as (url, by_hand):
        with Ledger.from_url(url) as ledger:
            ledger.init()
            wallet_line = {"type": "WalletOpened", "event_id": str(uuid.uuid4()), "occurred_at": T0.isoformat(),
                           "pro_id": "p1", "market": "pro360", "region": "US-CA"}
            assert [r.status for r in ledger.append([json.dumps(wallet_line)])] == ["recorded"]
            by_hand(f"ALTER TABLE {RECEIPTS_TABLE} RENAME TO moved_receipts")
            purchase = {"type": "CreditsPurchased", "event_id": str(uuid.uuid4()), "occurred_at": T0.isoformat(),
                        "pro_id": "p1", "amount": 5000, "payment_ref": "pay-1"}
            # The warm writer (chains onto the head it holds, reads no receipt) and a
            # cold one (reads the receipts first) both meet the missing table.
            for attempt in ("warm", "cold"):
                with pytest.raises(LedgerError) as failed:
                    ledger.append([json.dumps(purchase)])
                assert failed.value.code == "store_statement_failed", (attempt, failed.value)
                assert RECEIPTS_TABLE in failed.value.message and "\n" not in failed.value.message
            assert backoffs == []
            by_hand(f"ALTER TABLE moved_receipts RENAME TO {RECEIPTS_TABLE}")
            assert [r.status for r in ledger.append([json.dumps(purchase)])] == ["recorded"]  # none was stored
            assert [r.status for r in ledger.append([json.dumps(wallet_line)])] == ["duplicate"]
            assert all(c.ok for c in ledger.verify(replay=False))
        # From the command line (a fresh process: it reads receipts first): one line,
        # the store's exit code.
        by_hand(f"ALTER TABLE {RECEIPTS_TABLE} RENAME COLUMN event_id TO moved_event_id")
        second = {**purchase, "event_id": str(uuid.uuid4()), "payment_ref": "pay-2"}
        result = cli_run(url, "append", "-", input=json.dumps(second) + "\n", timeout=60)
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith("leadledger: error[store_statement_failed]: the store refused a statement")
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
        by_hand(f"ALTER TABLE {RECEIPTS_TABLE} RENAME COLUMN moved_event_id TO event_id")
        with Ledger.from_url(url) as ledger:
            assert [r.status for r in ledger.append([json.dumps(second)])] == ["recorded"]


def test_sqlite_commits_are_synced_whatever_the_builds_default(tmp_path, monkeypatch):
    """SQLite's WAL commits are durable at synchronous=FULL; a build compiled with
    SQLITE_DEFAULT_WAL_SYNCHRONOUS=1 opens at NORMAL, which syncs only at checkpoints
    (a power cut takes back acknowledged appends). Such a build, stood in for by
    connections opened at NORMAL: the ledger's connections still sync each commit."""
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def normal_by_default(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.execute("PRAGMA synchronous=NORMAL")
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", normal_by_default)
    with Ledger.from_url(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        assert [r.status for r in ledger.append([wallet("p1"), buy("p1", 500)])] == ["recorded", "recorded"]
        assert ledger.balances(pro_id="p1")[0]["balance"] == 500
        assert opened
        assert {conn.execute("PRAGMA synchronous").fetchone()[0] for conn in opened} == {2}  # FULL


def test_a_read_only_sqlite_store_says_why_at_once(tmp_path):
    """SQLite's refusals are told apart by result code (SQLITE_READONLY), not words:
    an append to a store opened read-only (an auditor's copy) is permission_denied at
    once, never retried as an outage; a read behind the log says it cannot catch up."""
    from leadledger.errors import LedgerError

    path = tmp_path / "l.db"
    with Ledger.from_url(f"sqlite:///{path}") as ledger:
        assert [r.status for r in ledger.append([wallet("p1")])] == ["recorded"]
    with Ledger.from_url(f"sqlite:///file:{path}?mode=ro") as ledger:
        with pytest.raises(LedgerError) as refused:  # (retried as an outage: store_unavailable)
            ledger.append([buy("p1", 500)])
        assert refused.value.code == "permission_denied", refused.value
        assert "readonly database" in refused.value.message
        with pytest.raises(LedgerError) as behind:
            ledger.balances()
        assert behind.value.code == "read_models_behind", behind.value
    with Ledger.from_url(f"sqlite:///{path}") as ledger:  # nothing was recorded read-only
        assert ledger.log_size() == 1


def _pages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA page_count").fetchone()[0]


def test_a_full_disk_is_said_at_once_and_records_nothing(tmp_path, monkeypatch, capsys):
    """Out of space is not an outage: the writer retried it five times with back-offs
    (~6 s) as a lost connection, then said store_unavailable; a read whose catch-up
    could not grow the read models failed with an undocumented error[store]. Now
    store_full, at once, nothing of the batch recorded; after room is made, the
    same batch records. The full disk is SQLite's own SQLITE_FULL (max_page_count on
    each connection the ledger opens); PostgreSQL's disk_full is
    test_postgres_settings' and test_a_full_postgres_tablespace_is_said_at_once's."""
    from leadledger import application
    from leadledger.errors import LedgerError

    path = tmp_path / "l.db"
    url = f"sqlite:///{path}"
    with Ledger.from_url(url) as ledger:
        assert [r.status for r in ledger.append([wallet("p1")])] == ["recorded"]
        ledger.balances()  # read models level
        purchases = [buy("p1", 100, ref=f"pay-{i}") for i in range(300)]
        assert {r.status for r in ledger.append(purchases[:100])} == {"recorded"}  # read models behind
    room = {"pages": _pages(path)}  # not one page more
    connect = sqlite3.connect

    def capped(*args, **kwargs):
        conn = connect(*args, **kwargs)
        if room["pages"] is not None:
            conn.execute(f"PRAGMA max_page_count = {room['pages']}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", capped)
    backoffs: list[float] = []
    monkeypatch.setattr(application.time, "sleep", backoffs.append)
    with Ledger.from_url(url) as ledger:
        with pytest.raises(LedgerError) as full:
            ledger.append(purchases[100:])
        assert full.value.code == "store_full", full.value
        assert full.value.message.startswith("the store is out of space (database or disk is full; free space "
                                             f"on the volume holding {path}): nothing of this batch was recorded")
        assert backoffs == [] and ledger.log_size() == 101
        with pytest.raises(LedgerError) as behind:
            ledger.balances()
        assert behind.value.code == "store_full", behind.value
        assert behind.value.message.startswith("the read models are 100 events behind the log and cannot be "
                                               "brought level: the store is out of space")
    # The command line's fallback for a store error no Ledger call named: the same
    # codes as the service's (it printed error[store]).
    from leadledger.cli.app import guarded

    def raw_full() -> None:
        with contextlib.closing(connect(path)) as conn:
            conn.execute(f"PRAGMA max_page_count = {_pages(path)}")
            conn.execute("CREATE TABLE filler (x)")
            conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 4000,)] * 10)

    with pytest.raises(SystemExit) as exited:
        guarded(raw_full)()
    assert exited.value.code == 3
    assert capsys.readouterr().err == "leadledger: error[store_full]: database or disk is full\n"
    room["pages"] = None
    with Ledger.from_url(url) as ledger:  # room made: the batch records whole
        assert {r.status for r in ledger.append(purchases)} == {"duplicate", "recorded"}
        assert ledger.balances(pro_id="p1")[0]["balance"] == 300 * 100
        assert all(c.ok for c in ledger.verify(replay=False))


FULL_DATABASE = "leadledger_test_full"
SMALL_TABLESPACE = "leadledger_test_small"


@contextlib.contextmanager
def _small_postgres_tablespace(megabytes: int):
    """A tablespace on a tmpfs of ``megabytes`` (remounted larger by the function
    yielded). Needs the server on this machine and the right to mount (root): where
    either is missing the test is skipped, the classifier test covering disk_full."""
    import os
    import shutil
    import tempfile

    require_postgres()
    with _connect("postgres") as conn:
        data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    if not os.path.isdir(data_directory):
        pytest.skip("the PostgreSQL server runs on another machine: no tablespace can be made small here")
    server_uid = os.stat(data_directory).st_uid
    where = Path(tempfile.mkdtemp(prefix="leadledger-small-", dir="/tmp"))
    where.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700,uid={server_uid}",
                              "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        pytest.skip(f"cannot mount a small volume here ({mounted.stderr.strip()[:100]}): PostgreSQL's disk_full "
                    "is covered by test_errors_are_classified_by_sqlstate_not_words")

    def grow(to_megabytes: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={to_megabytes}m", str(where)], check=True)

    try:
        with _connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{FULL_DATABASE}" WITH (FORCE)')
            conn.execute(f'DROP TABLESPACE IF EXISTS "{SMALL_TABLESPACE}"')
            conn.execute(f"CREATE TABLESPACE \"{SMALL_TABLESPACE}\" LOCATION '{where}'")
            conn.execute(f'CREATE DATABASE "{FULL_DATABASE}" TABLESPACE "{SMALL_TABLESPACE}"')
        yield pg_url_for(FULL_DATABASE), grow
    finally:
        with _connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{FULL_DATABASE}" WITH (FORCE)')
            conn.execute(f'DROP TABLESPACE IF EXISTS "{SMALL_TABLESPACE}"')
        subprocess.run(["umount", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def test_a_full_postgres_tablespace_is_said_at_once(tmp_path):
    """A real disk_full (53100): the database's tablespace on a volume that fills up
    mid-append. The command says store_full at once (it retried ~6 s, then
    store_unavailable), every chunk it acknowledged is in the log, and once the
    volume is grown the same file records the rest."""
    with _small_postgres_tablespace(megabytes=12) as (url, grow):
        assert cli_run(url, "init").returncode == 0
        lines = clean_lines(12_000)
        text = "\n".join(lines) + "\n"
        started = time.monotonic()
        failed = cli_run(url, "append", "-", input=text, timeout=120)
        assert time.monotonic() - started < 30
        assert failed.returncode == 3, failed.stderr
        assert failed.stderr.startswith("leadledger: error[store_full]: the store is out of space (could not "
                                        "extend file"), failed.stderr
        assert "nothing of this batch was recorded" in failed.stderr and failed.stderr.count("\n") == 1
        acknowledged = [json.loads(line)["event_id"] for line in failed.stdout.splitlines()]
        assert 0 < len(acknowledged) < len(lines)
        behind = cli_run(url, "balances")  # the read models cannot grow either
        assert behind.returncode == 3 and behind.stderr.startswith("leadledger: error[store_full]: the read "
                                                                   "models are "), behind.stderr
        grow(200)
        again = cli_run(url, "append", "-", input=text, timeout=300)
        assert again.returncode == 0, again.stderr
        statuses = [json.loads(line)["status"] for line in again.stdout.splitlines()]
        assert statuses == ["duplicate"] * len(acknowledged) + ["recorded"] * (len(lines) - len(acknowledged))
        with Ledger.from_url(url) as ledger:
            assert all(c.ok for c in ledger.verify(replay=False))


def test_statistics_that_fail_after_the_commits_are_a_warning(store_url, monkeypatch):
    """The statistics refresh at the end of a bulk append runs after every chunk was
    committed and answered: when it failed (a statement timeout, a dropped
    connection) the append raised, and `append` exited 3 with everything recorded.
    Now a warning; the next append tries again."""
    from eventsourcing.persistence import OperationalError

    from leadledger import application

    monkeypatch.setattr(application, "ANALYZE_AFTER_EVENTS", 2)
    failing = [False]
    analyze = Ledger.analyze

    def timed_out(self, tables=()):
        if failing[0] and not tables:
            raise OperationalError("canceling statement due to statement timeout")
        return analyze(self, tables)

    monkeypatch.setattr(Ledger, "analyze", timed_out)
    warnings: list[str] = []
    with Ledger.from_url(store_url) as ledger:
        ledger.init()
        ledger.warn = warnings.append
        failing[0] = True
        assert [r.status for r in ledger.append([wallet("p1"), buy("p1", 500)])] == ["recorded", "recorded"]
        assert warnings == ["the planner's statistics were not refreshed after this append (canceling statement "
                            "due to statement timeout); the next append tries again"]
        assert ledger.analyze_due  # still due
        failing[0] = False
        assert [r.status for r in ledger.append([buy("p1", 300)])] == ["recorded"]
        assert not ledger.analyze_due and len(warnings) == 1
        assert ledger.balances(pro_id="p1")[0]["balance"] == 800


def test_a_full_temporary_folder_is_named_beside_the_store(tmp_path, monkeypatch):
    """SQLite says "database or disk is full" for its temporary files' folder too
    (a rebuild's sorts spill there): the message named only the store's volume,
    which had room. It names the temporary folder when that is another volume."""
    import os

    from leadledger import application
    from leadledger.store import config_for

    other = "/dev/shm"
    if not os.path.isdir(other) or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip(f"{other} is not another volume than {tmp_path} here")
    config = config_for(f"sqlite:///{tmp_path / 'l.db'}")
    full = sqlite3.OperationalError("database or disk is full")
    monkeypatch.setenv("SQLITE_TMPDIR", other)
    assert application._full_message(config, full) == (
        f"the store is out of space (database or disk is full; free space on the volume holding {tmp_path}/l.db "
        f"or on {other}, where SQLite writes its temporary files (SQLITE_TMPDIR, TMPDIR))")
    monkeypatch.setenv("SQLITE_TMPDIR", str(tmp_path))  # the same volume: named once
    assert application._full_message(config, full) == (
        f"the store is out of space (database or disk is full; free space on the volume holding {tmp_path}/l.db)")


def test_events_the_read_models_refuse_stop_a_catch_up_instead_of_spinning(store_url):
    """A catch-up whose write broke a read model's key took it for another process
    having projected those events first and tried again, forever: a second
    WalletOpened for a pro (a log altered by hand; in replay, a log with a NUL in an
    id) kept every reader busy, its memory growing to 10 GB in 10 minutes. Now the
    read says which positions the read models refuse, at once."""
    with Ledger.from_url(store_url) as ledger:
        assert [r.status for r in ledger.append([wallet("p1"), buy("p1", 500)])] == ["recorded"] * 2
        assert ledger.balances(pro_id="p1")[0]["balance"] == 500  # level
        app, _ = ledger._open()
        table = app.recorder.events_table_name
        sqlite = ledger.config.kind == "sqlite"
        forged = str(uuid.uuid4()) if sqlite else uuid.uuid4()
        mark = "?" if sqlite else "%s"
        position = "rowid" if sqlite else "notification_id"
        with guards_off(ledger) as curs:  # p1's wallet opened again, under another aggregate
            if sqlite:
                curs.execute(f"INSERT INTO {table} (originator_id, originator_version, topic, state)"
                             f" SELECT {mark}, 1, topic, state FROM {table} WHERE originator_version = 1", (forged,))
            else:
                curs.execute(f"INSERT INTO {table} (originator_id, originator_version, topic, state, {position})"
                             f" SELECT {mark}, 1, topic, state, (SELECT max({position}) + 1 FROM {table})"
                             f" FROM {table} WHERE originator_version = 1", (forged,))
    result = cli_run(store_url, "balances", timeout=60)  # (it never returned)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("leadledger: error[projection_failed]: the read models cannot take the events "
                                    "at positions 3..3 ("), result.stderr
    assert result.stderr.endswith("the read models stay as they were, before those events\n")
    with Ledger.from_url(store_url) as ledger:  # nothing was projected of it
        app, view = ledger._open()
        assert view.max_tracking_id("LeadLedger") == 2
    # verify reports it (the chain names the insertion) instead of failing with it
    result = cli_run(store_url, "verify", "--format", "json", timeout=60)
    assert result.returncode == 1, result.stderr
    log_check = next(c for c in json.loads(result.stdout) if c["invariant"] == 0)
    assert any("cannot take the events at positions 3..3" in p for p in log_check["problems"]), log_check
    result = cli_run(store_url, "rebuild", "--force", timeout=60)  # (it was store_unavailable)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1].startswith("leadledger: error[projection_failed]: the read models "
                                                     "cannot take the log's events (")
    assert result.stderr.endswith("the rebuild was rolled back: the read models are as they were\n")


def test_a_connection_lost_while_opening_is_retried(monkeypatch):
    """A backend terminated while the writer opened the store (the first probe of
    the server, or a second open after an earlier loss) failed the append at once
    with store_unavailable: CI saw it under load, where the opening took a second.
    The server had answered: it is a lost connection, retried as any other. Here
    the probe's own backend is terminated, for real, once it has connected."""
    import psycopg

    require_postgres()
    reset_postgres()
    connect, cut = psycopg.connect, []

    def cut_once(*args, **kwargs):
        conn = connect(*args, **kwargs)
        if not cut:
            cut.append(conn.info.backend_pid)
            with _connect(urlparse(PG_URL).path.lstrip("/")) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        return conn

    monkeypatch.setattr(psycopg, "connect", cut_once)
    with Ledger.from_url(PG_URL) as ledger:
        assert [r.status for r in ledger.append([wallet("p1"), buy("p1", 500)])] == ["recorded", "recorded"]
    assert cut  # the cut happened, and the append went on after it
    with Ledger.from_url(PG_URL) as ledger:
        assert ledger.balances(pro_id="p1")[0]["balance"] == 500
