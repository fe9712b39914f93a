"""Least privilege on PostgreSQL (`init --roles`), backups restored with the
database's own tools, and stores from before the chain chained by `init`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from urllib.parse import urlparse

import pytest

from leadledger import Ledger
from leadledger.errors import LedgerError
from tests.conftest import PG_URL, _connect, pg_url_for as _url, scratch_database
from tests.helpers import buy, ok
from tests.test_faults import cli_run
from tests.test_tamper import story


def as_role(url: str, role: str, statement: str) -> str | None:
    """Run one statement connected as ``role``; the error message, or None."""
    import psycopg

    parts = urlparse(url)
    with psycopg.connect(host=parts.hostname, port=parts.port or 5432, dbname=parts.path.lstrip("/"),
                         user=role, autocommit=True, connect_timeout=3) as conn:
        try:
            conn.execute(statement)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            return str(exc).splitlines()[0]
    return None


@pytest.mark.postgres
def test_each_role_can_do_its_job_and_nothing_else():
    with scratch_database("leadledger_test_roles") as url:
        first = cli_run(url, "init", "--roles")
        assert first.returncode == 0, first.stderr
        again = cli_run(url, "init", "--roles")  # idempotent
        assert again.returncode == 0, again.stderr
        dbname = urlparse(url).path.lstrip("/")
        writer, auditor, owner = (_url(dbname, r) for r in ("leadledger_writer", "leadledger_auditor",
                                                            "leadledger_owner"))
        # The writer appends, reads, rebuilds the read models it owns.
        with Ledger.from_url(writer) as ledger:
            story(ledger)
            assert ledger.balances(pro_id="p2")[0]["balance"] == 1200
            assert ledger.rebuild() == 8
        # ... and can neither change nor remove the log, nor its guards.
        for statement in ("UPDATE leadledger_events SET topic = topic", "DELETE FROM leadledger_events",
                          "TRUNCATE leadledger_events", "DELETE FROM leadledger_receipts",
                          "UPDATE leadledger_receipts SET recorded = recorded"):
            assert "permission denied" in (as_role(url, "leadledger_writer", statement) or ""), statement
        for statement in ("DROP TABLE leadledger_events", "ALTER TABLE leadledger_events DISABLE TRIGGER ALL",
                          "DROP TRIGGER leadledger_events_append_only ON leadledger_events"):
            assert "must be owner" in (as_role(url, "leadledger_writer", statement) or ""), statement
        # The auditor reads and verifies, and cannot write anything.
        balances = cli_run(auditor, "balances", "--pro", "p2", "--format", "json")
        assert balances.returncode == 0 and json.loads(balances.stdout)[0]["balance"] == 1200, balances
        verified = cli_run(auditor, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        head = cli_run(auditor, "verify", "--head")
        assert head.returncode == 0 and head.stdout.startswith("8:"), head
        with Ledger.from_url(auditor) as ledger:
            with pytest.raises(LedgerError) as denied:
                ledger.append([buy("p2", 5, ref="by-auditor")])
            assert denied.value.code == "permission_denied"
        for statement in ("INSERT INTO ll_wallets SELECT * FROM ll_wallets",
                          "UPDATE leadledger_chain_head SET position = 0", "DELETE FROM leadledger_snapshots"):
            assert "permission denied" in (as_role(url, "leadledger_auditor", statement) or ""), statement
        # The owner holds the schema: it may run init (migrations), and even it
        # cannot UPDATE the log while the trigger stands.
        assert cli_run(owner, "init").returncode == 0
        assert "append-only" in (as_role(url, "leadledger_owner", "DELETE FROM leadledger_events") or "")
        with Ledger.from_url(writer) as ledger:
            assert len(ledger.append([buy("p2", 5, ref="pay-5")])) == 1
            assert ledger.chain_problems()[0] == []


@pytest.mark.postgres
def test_a_store_from_before_the_chain_is_chained_by_init():
    with scratch_database("leadledger_test_migrate") as url:
        with Ledger.from_url(url) as ledger:
            ledger.init()
            subs = story(ledger)
            expected = ledger.read_models()
        with _connect("leadledger_test_migrate") as conn:  # what a 0.4 store holds
            conn.execute("DROP TRIGGER leadledger_events_append_only ON leadledger_events")
            conn.execute("DROP TRIGGER leadledger_receipts_append_only ON leadledger_receipts")
            conn.execute("ALTER TABLE leadledger_events DROP COLUMN chain_sha256")
            conn.execute("ALTER TABLE leadledger_receipts DROP COLUMN position")
            conn.execute("DROP TABLE leadledger_chain_head")
        with Ledger.from_url(url) as ledger:
            with pytest.raises(LedgerError, match="predates leadledger 0.5"):
                ledger.balances()
        assert cli_run(url, "init").returncode == 0
        with Ledger.from_url(url) as ledger:
            problems, head = ledger.chain_problems()
            assert problems == [] and head.position == 8
            assert all(c.ok for c in ledger.verify()), [c.problems for c in ledger.verify()]
            assert ledger.read_models() == expected
            # recorded before the migration: their receipts were given their positions,
            # so the log answers them as duplicates
            assert [r.status for r in ledger.append(subs)] == ["duplicate"] * len(subs)


def _same_books(original: str, restored: str) -> None:
    with Ledger.from_url(original) as a, Ledger.from_url(restored) as b:
        assert a.chain_problems()[1] == b.chain_problems()[1]
        assert b.chain_problems()[0] == []
        assert all(c.ok for c in b.verify()), [c.problems for c in b.verify()]
        assert json.dumps(a.read_models(), sort_keys=True) == json.dumps(b.read_models(), sort_keys=True)
        ok(b.append([buy("p2", 5, ref="after-restore")]))  # the restored store takes appends


@pytest.mark.postgres
def test_pg_dump_and_pg_restore_give_the_same_books(tmp_path):
    with scratch_database("leadledger_test_backup") as url, \
            scratch_database("leadledger_test_restored") as restored:
        assert cli_run(url, "init").returncode == 0
        with Ledger.from_url(url) as ledger:
            story(ledger)
        parts = urlparse(PG_URL)
        connection = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", "postgres"]
        dump = tmp_path / "leadledger.dump"
        # The README's commands.
        subprocess.run(["pg_dump", *connection, "-Fc", "-f", str(dump), "leadledger_test_backup"], check=True)
        subprocess.run(["pg_restore", *connection, "-d", "leadledger_test_restored", str(dump)], check=True)
        _same_books(url, restored)


def test_a_sqlite_backup_gives_the_same_books(tmp_path):
    url = f"sqlite:///{tmp_path / 'leadledger.db'}"
    with Ledger.from_url(url) as ledger:
        story(ledger)
    backup = tmp_path / "backup.db"
    if shutil.which("sqlite3"):  # the README's command
        subprocess.run(["sqlite3", str(tmp_path / "leadledger.db"), f".backup '{backup}'"], check=True)
    else:  # the same online backup API, from Python
        with sqlite3.connect(tmp_path / "leadledger.db") as source, sqlite3.connect(backup) as target:
            source.backup(target)
    _same_books(url, f"sqlite:///{backup}")


def test_roles_are_refused_on_sqlite_with_a_reason(tmp_path):
    refused = cli_run(f"sqlite:///{tmp_path / 'l.db'}", "init", "--roles")
    assert refused.returncode == 2 and "error[not_supported]: roles are PostgreSQL's" in refused.stderr
