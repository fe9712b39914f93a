"""The command-line contract (SPEC section 8), on both stores."""

import contextlib
import csv
import io
import json
import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadledger.cli.main import cli
from leadledger.store import postgres_schema_sql
from tests.helpers import buy, quote, wallet

ROOT = Path(__file__).resolve().parent.parent


def run(url, *args, input=None):
    result = CliRunner().invoke(cli, ["--db", url, *args], input=input, obj={}, catch_exceptions=False)
    return result


def ndjson(*subs):
    return "".join(json.dumps(s) + "\n" for s in subs)


def test_append_prints_one_result_line_per_submission(store_url):
    result = run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 500), buy("ghost", 1)) + "\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.stderr == "3 read: 2 recorded, 0 duplicate, 1 rejected\n"
    assert [set(line) for line in lines] == [{"event_id", "status", "code", "message", "recorded",
                                              "line"}] * 3
    assert [line["status"] for line in lines] == ["recorded", "recorded", "rejected"]
    assert [line["line"] for line in lines] == [1, 2, 3]
    assert lines[1] == {"event_id": lines[1]["event_id"], "status": "recorded", "code": None,
                        "message": None, "recorded": ["CreditsPurchased"], "line": 2}
    assert lines[2]["code"] == "wallet_not_found"
    assert result.exit_code == 1


def test_append_exit_zero_when_nothing_rejected_and_duplicates(store_url):
    data = ndjson(wallet("p1"), buy("p1", 500))
    assert run(store_url, "append", "-", input=data).exit_code == 0
    again = run(store_url, "append", "-", input=data)
    assert again.exit_code == 0
    assert [json.loads(x)["status"] for x in again.stdout.splitlines()] == ["duplicate", "duplicate"]
    assert again.stderr == "2 read: 0 recorded, 2 duplicate, 0 rejected\n"


def test_append_atomic(store_url, tmp_path):
    path = tmp_path / "batch.ndjson"
    path.write_text(ndjson(wallet("p1"), buy("p1", 500), quote("c1", "p1", commission=900)))
    result = run(store_url, "append", str(path), "--atomic")
    assert result.exit_code == 1
    assert [json.loads(x)["code"] for x in result.stdout.splitlines()] == [
        "batch_rejected", "batch_rejected", "insufficient_funds"]
    assert json.loads(run(store_url, "balances", "--format", "json").output) == []


def test_balances_json_csv_table(store_url):
    run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 12345), wallet("p2", "cronoshare")))
    rows = json.loads(run(store_url, "balances", "--as-of", "2026-01", "--format", "json").output)
    assert rows == [
        {"pro_id": "p1", "market": "pro360", "unit": "USD", "balance": 12345,
         "advance_outstanding": 0, "card_charged": 0, "card_currency": "USD",
         "as_of": "2026-01-31T23:59:59.999999Z"},
        {"pro_id": "p2", "market": "cronoshare", "unit": "CRONO", "balance": 0,
         "advance_outstanding": 0, "card_charged": 0, "card_currency": None,
         "as_of": "2026-01-31T23:59:59.999999Z"},
    ]
    table = run(store_url, "balances").output
    assert table.startswith("balances as of now = 20") and "major units" in table.splitlines()[1]
    assert "123.45" in table and "pro_id" in table.splitlines()[3]
    parsed = list(csv.DictReader(io.StringIO(run(store_url, "balances", "--format", "csv").output)))
    assert parsed[0]["balance"] == "12345" and parsed[1]["card_currency"] == ""
    only = json.loads(run(store_url, "balances", "--pro", "p2", "--format", "json").output)
    assert [r["pro_id"] for r in only] == ["p2"]


def test_json_output_is_byte_stable(store_url):
    run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 500), quote("c1", "p1", commission=100)))
    for command in (["balances", "--as-of", "2026-02"], ["refunds", "--as-of", "2026-01-10"],
                    ["trial-balance", "--as-of", "2026-02-01T00:00:00Z"]):
        first = run(store_url, *command, "--format", "json").output
        assert first == run(store_url, *command, "--format", "json").output
        assert first.startswith("[")


def test_refunds_and_filters(store_url):
    run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 5000), quote("c1", "p1", commission=100)))
    rows = json.loads(run(store_url, "refunds", "--as-of", "2026-01-10T00:00:00Z", "--format", "json").output)
    assert rows == [{"contact_id": "c1", "pro_id": "p1", "market": "pro360", "status": "Gérer",
                     "charged": 100, "refunded": 0, "refundable": 100, "deadline": "2026-02-20T00:00:00Z",
                     "unit": "USD", "as_of": "2026-01-10T00:00:00Z"}]
    none = run(store_url, "refunds", "--status", "Expiré", "--as-of", "2026-01-10", "--format", "json")
    assert json.loads(none.output) == []
    later = run(store_url, "refunds", "--status", "Expiré", "--as-of", "2026-03-01", "--format", "json")
    assert [r["contact_id"] for r in json.loads(later.output)] == ["c1"]


def test_trial_balance_table_adds_totals_json_does_not(store_url):
    run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 500)))
    rows = json.loads(run(store_url, "trial-balance", "--as-of", "2026-01-31", "--format", "json").output)
    stamp = "2026-01-31T23:59:59.999999Z"
    assert rows == [
        {"account": "platform:cash", "unit": "USD", "debit": 500, "credit": 0, "balance": 500, "as_of": stamp},
        {"account": "pro:p1:wallet", "unit": "USD", "debit": 0, "credit": 500, "balance": -500, "as_of": stamp},
    ]
    table = run(store_url, "trial-balance").output
    assert re.search(r"TOTAL\s+USD\s+5\.00\s+5\.00\s+0\.00", table)


def test_sweep_command_is_idempotent(store_url):
    run(store_url, "append", "-", input=ndjson(wallet("p1"), buy("p1", 5000), quote("c1", "p1", commission=100)))
    first = run(store_url, "sweep", "--now", "2026-01-09T00:00:00Z")
    assert [json.loads(x)["recorded"] for x in first.output.splitlines()] == [["QuoteFeeRefunded"]]
    assert run(store_url, "sweep", "--now", "2026-01-09T00:00:00Z").output == ""


def test_user_errors_are_one_line_with_a_code_and_no_traceback(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for args, code, exit_code in (
        (["balances", "--as-of", "yesterday"], "usage", 2),
        (["--db", "mysql://x", "balances"], "bad_database_url", 3),
        # A port past 65535 or not a number, a broken IPv6 host: urllib raised a bare
        # ValueError when the port was read, error[internal] (exit 4) before 0.6.3.
        (["--db", "postgresql://u@127.0.0.1:99999/db", "balances"], "bad_database_url", 3),
        (["--db", "postgresql://u@127.0.0.1:abc/db", "balances"], "bad_database_url", 3),
        (["--db", "postgresql://u@[::1/db", "balances"], "bad_database_url", 3),
        (["refunds", "--status", "Done"], "usage", 2),
        # click lists the choices of a missing option on lines of their own, tab-indented.
        (["keys", "create", "billing"], "usage", 2),
        # nan passed click's FloatRange (no comparison with it holds); a period of 0s meant never.
        (["serve", "--max-wait", "nan"], "usage", 2),
        (["serve", "--sweep-every", "0s"], "usage", 2),
        (["follow", "--seconds", "nan"], "usage", 2),
    ):
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == exit_code, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"leadledger: error[{code}]")
        assert "Traceback" not in proc.stderr and "\t" not in proc.stderr and "  " not in proc.stderr


def test_postgres_without_init_says_so(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db",
                           "postgresql://postgres@127.0.0.1:1/nowhere", "balances"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.startswith("leadledger: error[store_unavailable]")


def test_every_command_has_help_with_an_example():
    for name, command in cli.commands.items():
        text = CliRunner().invoke(cli, [name, "--help"]).output
        assert "Example" in text and "leadledger" in text, name


def test_schema_sql_is_what_init_applies():
    assert (ROOT / "schema.sql").read_text() == postgres_schema_sql()
    assert "stored_event_uuid" in postgres_schema_sql()


@pytest.mark.parametrize("rows", [[], [{"a": 1}], [{"a": 1, "b": "Gérer", "c": None}, {"a": 2, "b": [1]}]])
def test_streamed_json_is_byte_identical_to_the_array(rows):
    from leadledger.cli.output import to_json, write_json

    out = io.StringIO()
    write_json(iter(rows), out)
    assert out.getvalue() == to_json(rows)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_output_is_utf8_whatever_the_locale_says(tmp_path, encoding):
    """Ids may be any Unicode. Under an ASCII or Latin-1 stdout (PYTHONIOENCODING, a
    non-UTF-8 locale, a redirected Windows console) printing one failed halfway with
    error[internal]: UnicodeEncodeError, exit 4. NDJSON, JSON, CSV and tables are UTF-8."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'l.db'}"
    env = {**os.environ, "PYTHONIOENCODING": encoding}

    def leadledger(*args, stdin=None):
        proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args], env=env,
                              input=stdin, capture_output=True, timeout=120, cwd=Path(__file__).parent.parent)
        return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr

    pro = "pro-李 ü"
    code, out, err = leadledger("append", "-", stdin=ndjson(wallet(pro), buy(pro, 5000), buy("pro-ß李", 5)).encode())
    assert code == 1, err  # the last one is rejected: no such wallet, named in the result
    assert "'pro-ß李' has no wallet" in out.splitlines()[2], out
    for fmt in ("json", "csv", "table"):
        code, out, err = leadledger("balances", "--format", fmt)
        assert code == 0, err
        assert pro in out, out
    code, out, err = leadledger("events")
    assert code == 0 and pro in out, err


def test_a_url_with_a_nul_byte_is_refused():
    """libpq cuts a parameter at its NUL: ".../ledger\\x00x" opened the database
    "ledger", another one than named; sqlite3 raised a bare ValueError."""
    from leadledger import Ledger
    from leadledger.errors import LedgerError

    for url in ("sqlite:///ledger\x00x.db", "postgresql://postgres@127.0.0.1:5432/ledger\x00x"):
        with pytest.raises(LedgerError) as refused:
            with Ledger.from_url(url) as ledger:
                ledger.balances()
        assert refused.value.code == "bad_database_url"


def test_a_password_in_the_url_is_never_printed():
    """A URL's password went into the message of every bad_database_url error (and
    `init` printed the URL whole); it shows as *** now."""
    import subprocess
    import sys

    for url in ("postgresql://u:s3cret@127.0.0.1:99999/db", "postgresql://u:s3cret@127.0.0.1:5432/",
                "mysql://u:s3cret@x/y", "postgresql://u:s3cret@[::1/db", "postgresql://u:s3/cret@h/db",
                # A query the ledger refuses (its values too: ?password=), a raw "?" in the password.
                "postgresql://u:s3cret@127.0.0.1:5432/db?password=s3cret", "postgresql://u:s3?cret@h/db"):
        proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, "balances"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "cret" not in proc.stdout + proc.stderr, proc.stderr
        assert "u:***@" in proc.stderr, proc.stderr


def test_a_command_on_a_sqlite_path_with_no_store_says_so_and_creates_nothing(tmp_path):
    """A report on a mistyped SQLite path printed an empty, balanced book with exit 0
    and left a new file behind (on PostgreSQL: store_not_initialised). Only init,
    append and demo, which record into it, create a store; every other command says
    there is none, exit 3, and the path stays empty."""
    import subprocess
    import sys

    path = tmp_path / "ledgr.db"
    url = f"sqlite:///{path}"
    said = f"leadledger: error[store_not_initialised]: no store at {path}: nothing was ever recorded there"
    for args in (["balances"], ["refunds"], ["trial-balance"], ["statement", "pro-1"], ["income", "--period", "2026"],
                 ["reconcile", "--period", "2026"], ["explain", "ct-1"], ["late"], ["events"], ["verify"],
                 ["rebuild"], ["export", "--format", "beancount"], ["sweep"], ["keys", "list"],
                 ["keys", "create", "billing", "--scope", "read"], ["keys", "revoke", "billing"]):
        result = run(url, *args)
        assert (result.exit_code, result.stderr.startswith(said)) == (3, True), (args, result.output)
        assert not path.exists(), args
    for args in (["serve", "--port", "0"],):  # it would run until stopped (follow is PostgreSQL's)
        proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert (proc.returncode, proc.stderr.startswith(said)) == (3, True), (args, proc.stderr)
        assert not path.exists(), args
    # A file that is not a ledger (another program's SQLite database, an empty file) gets
    # no tables added: the same answer, the file as it was.
    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE mine (x)")
        conn.commit()
    empty.touch()
    for target, what, args in ((other, "another SQLite database", ["trial-balance"]),
                               (empty, "an empty file", ["trial-balance"]),
                               (other, "another SQLite database", ["append", "-"])):  # append too: init adopts
        result = run(f"sqlite:///{target}", *args, input=ndjson(wallet("p1")))
        assert (result.exit_code, result.stderr) == (3, f"leadledger: error[store_not_initialised]: {target} holds no "
                                                      f"leadledger store ({what}): nothing is added to it; "
                                                      "`leadledger init` makes it one\n"), args
    with contextlib.closing(sqlite3.connect(other)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("mine",)]
    assert empty.stat().st_size == 0
    assert run(f"sqlite:///{empty}", "append", "-", input=ndjson(wallet("p1"))).exit_code == 0  # empty: a new store
    assert run(f"sqlite:///{other}", "init").exit_code == 0  # said explicitly: the ledger's tables join "mine"
    assert run(f"sqlite:///{other}", "balances").exit_code == 0
    assert run(url, "append", "-", input=ndjson(wallet("p1"))).exit_code == 0
    assert path.exists() and run(url, "balances").exit_code == 0
    for creates in (["init"], ["demo"]):
        other = tmp_path / f"{creates[0]}.db"
        assert run(f"sqlite:///{other}", *creates).exit_code == 0 and other.exists()


def test_an_export_that_fails_midway_leaves_the_previous_file_as_it_was(tmp_path, monkeypatch):
    """``export -o FILE`` writes a file of its own and puts it in FILE's place once whole.
    It wrote into FILE as it went: a store lost mid-way (or a full disk, or Ctrl-C) left
    the accountants' previous export cut short, its transactions each still balanced."""
    from leadledger import Ledger
    from leadledger.errors import LedgerError

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run(url, "append", "-", input=ndjson(wallet("ana"), buy("ana", 1200))).exit_code == 0
    books = tmp_path / "books.beancount"
    books.write_text("; last month's export\n")
    books.chmod(0o640)

    def lost_midway(self):
        yield "; leadledger journal export (double-entry, checked by bean-check)"
        yield 'option "operating_currency" "USD"'
        raise LedgerError("store_unavailable", "the connection was lost")

    with monkeypatch.context() as patched:
        patched.setattr(Ledger, "export_beancount", lost_midway)
        result = run(url, "export", "-o", str(books))
    assert result.exit_code == 3 and "store_unavailable" in result.stderr, result.output
    assert books.read_text() == "; last month's export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "books" in p.name) == ["books.beancount"]

    result = run(url, "export", "-o", str(books))
    assert result.exit_code == 0, result.output
    assert "Liabilities:Pro:P-ana:Wallet  -12.00 USD" in books.read_text()
    assert books.stat().st_mode & 0o777 == 0o640  # the file's permissions are kept
    fresh = tmp_path / "new.beancount"
    assert run(url, "export", "-o", str(fresh)).exit_code == 0
    assert fresh.read_text() == books.read_text()
    assert run(url, "export").stdout == books.read_text()
    link = tmp_path / "link.beancount"
    link.symlink_to(fresh)
    assert run(url, "export", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and fresh.read_text() == books.read_text()  # the link's target replaced
    missing = run(url, "export", "-o", str(tmp_path / "no-such-folder" / "x.beancount"))
    assert missing.exit_code == 2 and "error[cannot_write_output]" in missing.stderr, missing.output


def test_an_export_to_a_device_is_written_in_place_never_replaced(tmp_path):
    """A path that is not a regular file (a device, a pipe) has nothing to replace: it is
    written as it goes. Replaced, /dev/null and /dev/full became regular files."""
    import threading

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run(url, "append", "-", input=ndjson(wallet("ana"), buy("ana", 1200))).exit_code == 0
    # First a pipe of this test's own: were it replaced, the test stops here, before it
    # could replace the machine's /dev/null or /dev/full (as a broken version once did).
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_text()), daemon=True)
    reader.start()
    assert run(url, "export", "-o", str(pipe)).exit_code == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert read and "Liabilities:Pro:P-ana:Wallet  -12.00 USD" in read[0]
    assert run(url, "export", "-o", os.devnull).exit_code == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    if os.path.exists("/dev/full"):
        full = run(url, "export", "-o", "/dev/full")
        assert full.exit_code == 2, full.output
        assert "error[cannot_write_output]: cannot write /dev/full: No space left on device" in full.stderr
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
