"""Rebuilds and long catch-ups map their pages in a worker process (issue 9:
projections/mapping.py): the read models must come out row for row as the
in-process mapping makes them, on both stores; a failure in the worker is raised
here with its type; a worker that dies leaves nothing half-done, and the pass is
finished in this process."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import threading

import pytest

from leadledger import Ledger, chain_store
from leadledger.errors import LedgerError
from leadledger.projections import mapping, view as view_module
from tests.helpers import at, buy, card, cquote, courtesy, ok, quote, sub, wallet

TABLES = ("ll_wallets", "ll_contacts", "ll_contact_facts", "ll_postings", "ll_checkpoints",
          "ll_checkpoint_marks")


def tables(ledger: Ledger) -> dict[str, list[tuple]]:
    """Every read-model row, in a fixed order (refs and card refs included)."""
    ledger.catch_up()
    view = ledger._open()[1]
    return {table: sorted((tuple(row.values()) for row in view.query(f"SELECT * FROM {table}")), key=repr)
            for table in TABLES}


def call(contact: str, call_id: str, t: str, seconds: int = 400) -> dict:
    return sub("CallMinutesBilled", t, contact_id=contact, call_id=call_id, duration_seconds=seconds)


def history(ledger: Ledger) -> None:
    """Both markets, a card changed halfway, charges, calls, refunds, reads and a
    courtesy credit: every handler of projections/journal.py."""
    ok(ledger.append([
        wallet("p1"), buy("p1", 100_000), card("p1"), wallet("p2", "cronoshare"), buy("p2", 5_000),
        quote("c1", "p1", commission=1500), quote("g1", "p1", at(1, 1), pricing="guaranteed_reply", commission=2500),
        call("g1", "k1", at(1, 2)), sub("QuoteRead", at(1, 3), contact_id="c1"),
        sub("RefundRequested", at(1, 4), contact_id="c1", reason="price_check"),
        cquote("k1", "p2", at(1, 5), commission=100),
        sub("QuoteRead", at(1, 6), contact_id="k1"),
    ]))
    ok(ledger.append([
        sub("CardRegistered", at(2), pro_id="p1", card_ref="card-2"),
        quote("g2", "p1", at(2, 1), pricing="guaranteed_reply", commission=2000),
        call("g2", "k2", at(2, 2)), courtesy("p1", 700, at(3)), buy("p2", 300, at(4)),
        *[quote(f"m{i}", "p1", at(4, 1, i), commission=100 + i) for i in range(12)],
        *[sub("QuoteRead", at(4, 2, i), contact_id=f"m{i}") for i in range(0, 12, 3)],
    ]))


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of 5 rows: many pages in flight, the pipeline's every turn exercised."""
    monkeypatch.setattr(chain_store, "PAGE", 5)


@pytest.fixture
def workers_started(monkeypatch) -> list[mapping.MapInWorker]:
    started: list[mapping.MapInWorker] = []
    original = mapping.MapInWorker.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(mapping.MapInWorker, "__init__", counting)
    return started


def test_a_rebuild_mapped_in_a_worker_gives_the_same_rows(store_url, monkeypatch, small_pages, workers_started):
    with Ledger.from_url(store_url) as ledger:
        history(ledger)
        caught_up = tables(ledger)  # the catch-up's rows, mapped here
        monkeypatch.setenv(mapping.WORKER_SETTING, "off")
        events = ledger.rebuild()
        assert not workers_started and tables(ledger) == caught_up
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        assert ledger.rebuild() == events
        assert len(workers_started) == 1
        assert tables(ledger) == caught_up
    refs = {(row[5], row[14]) for row in caught_up["ll_postings"] if row[3] == "CallMinutesBilled"}
    assert refs == {("p1", "card-1"), ("p1", "card-2")}  # each call charged to the card in force


def _fall_behind(ledger: Ledger) -> None:
    """The read models lose every row: the next catch-up projects the whole log."""
    view = ledger._open()[1]
    with view.datastore.transaction(commit=True) as curs:
        view.clear_tables(curs)
        curs.execute("DELETE FROM " + view.tracking_table + " WHERE application_name = 'LeadLedger'")
        curs.execute("INSERT INTO ll_checkpoint_marks VALUES ('', 0)")


def _small_batches(monkeypatch) -> None:
    monkeypatch.setattr(view_module, "CATCH_UP_BATCH", 3)
    monkeypatch.setattr(view_module, "BACKLOG_EVENTS", 5)
    monkeypatch.setattr(view_module, "BACKLOG_BATCH", 4)


def _behind_in_small_batches(ledger: Ledger, monkeypatch) -> None:
    """The whole log is a backlog, caught up in batches of 4 once 3 show it."""
    _fall_behind(ledger)
    _small_batches(monkeypatch)


def test_a_backlog_mapped_in_a_worker_gives_the_same_rows(store_url, monkeypatch, workers_started):
    with Ledger.from_url(store_url) as ledger:
        history(ledger)
        expected = tables(ledger)
        _behind_in_small_batches(ledger, monkeypatch)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        written: list[int] = []
        original = view_module.LedgerViewMixin.write_statements_tracked
        monkeypatch.setattr(view_module.LedgerViewMixin, "write_statements_tracked", lambda self, st, tracking: (
            written.append(tracking.notification_id), original(self, st, tracking))[1])
        events = ledger.log_size()
        assert ledger.catch_up() == events
        assert len(workers_started) == 1
        # The first batch (3) only showed the backlog: the worker's batches of 4 start at the view's position.
        assert written == [*range(4, events, 4), events] if events % 4 else list(range(4, events + 1, 4))
        assert tables(ledger) == expected
        assert all(check.ok for check in ledger.verify())


def test_a_backlog_after_a_level_view_starts_from_the_views_wallets(store_url, monkeypatch, workers_started):
    """The worker knows no WalletOpened of before the view's position: it starts
    from the view's wallets, with the card in force there (card-1), then sees
    card-2 registered within the backlog."""
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet("p1"), buy("p1", 100_000), card("p1"), wallet("p2", "cronoshare"),
                          buy("p2", 5_000)]))
        ledger.catch_up()
        _small_batches(monkeypatch)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        before = ledger.log_size()
        ok(ledger.append([
            quote("g1", "p1", at(1, 1), pricing="guaranteed_reply", commission=2500), call("g1", "k1", at(1, 2)),
            sub("CardRegistered", at(2), pro_id="p1", card_ref="card-2"),
            quote("g2", "p1", at(2, 1), pricing="guaranteed_reply", commission=2000), call("g2", "k2", at(2, 2)),
            *[cquote(f"k{i}", "p2", at(3, 0, i), commission=60) for i in range(6)],
        ]))
        assert ledger.catch_up() == ledger.log_size() - before
        assert len(workers_started) == 1
        view = ledger._open()[1]
        assert view.max_tracking_id("LeadLedger") == ledger.log_size()
        caught_up = tables(ledger)
        monkeypatch.setenv(mapping.WORKER_SETTING, "off")
        ledger.rebuild()
        assert tables(ledger) == caught_up
    refs = [row[14] for row in sorted(caught_up["ll_postings"]) if row[3] == "CallMinutesBilled"]
    assert refs == ["card-1", "card-1", "card-2", "card-2"]  # both legs of each call


def _stored_page(ledger: Ledger) -> list[mapping.Raw]:
    return ledger._open()[1].raw_after(0, 1_000)


@pytest.mark.parametrize("where", ["here", "worker"])
def test_the_workers_statements_are_the_in_process_ones(tmp_path, where):
    with Ledger.from_url(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        history(ledger)
        page = _stored_page(ledger)
    # Split at the first read: c1 is read in the second part, sent in the first
    # (an UPDATE); the contacts sent and read in one part carry it in their insert.
    split = next(i for i, (_, topic, _) in enumerate(page) if topic.endswith("QuoteRead"))
    parts = [page[:split], page[split:]]
    mapper = mapping.EventMapper(mapping.no_lookup)  # one mapper: the wallets carry over
    expected = [mapper.statements(part, rebuilding=False) for part in parts]
    assert {statement for statements in expected for statement, _ in statements} == {
        mapping.INSERT_WALLET, mapping.CARD_REF, mapping.INSERT_CONTACT, mapping.FIRST_SEEN, mapping.INSERT_FACT,
        mapping.INSERT_POSTING}
    assert [contact_id for _, contact_id, _ in dict(expected[1])[mapping.FIRST_SEEN]] == ["c1"]
    sent_and_read = [row for row in dict(expected[1])[mapping.INSERT_CONTACT]
                     if row[mapping.FIRST_SEEN_COLUMN] is not None]
    assert sorted(row[0] for row in sent_and_read) == ["k1", "m0", "m3", "m6", "m9"]
    with (mapping.MapHere(rebuilding=False) if where == "here" else mapping.MapInWorker(rebuilding=False)) as m:
        for part in parts:
            m.submit(part)
        assert m.pending == 2
        got = [m.take(), m.take()]
        assert m.pending == 0
    assert got == expected


@pytest.mark.parametrize("where", ["here", "worker"])
def test_a_money_event_before_its_wallet_is_raised_with_its_code(tmp_path, where):
    """An altered log (a purchase whose WalletOpened is gone): the worker's
    LedgerError reaches the caller as it is, and the worker takes no more pages."""
    with Ledger.from_url(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        history(ledger)
        page = [row for row in _stored_page(ledger) if not row[1].endswith("WalletOpened")]
    with (mapping.MapHere(rebuilding=True) if where == "here" else mapping.MapInWorker(rebuilding=True)) as m:
        with pytest.raises(LedgerError) as raised:
            m.submit(page)
            m.take()
    assert raised.value.code == "log_damaged" and "'p1'" in raised.value.message


def _kill_worker_at(monkeypatch, submission: int) -> list[int]:
    """The worker is killed right after its ``submission``-th page is sent; the list
    holds the count of pages submitted."""
    submitted = [0]
    original = mapping.MapInWorker.submit

    def submit_then_die(self, page):
        original(self, page)
        submitted[0] += 1
        if submitted[0] == submission:
            self._process.kill()

    monkeypatch.setattr(mapping.MapInWorker, "submit", submit_then_die)
    return submitted


def test_a_worker_killed_mid_rebuild_leaves_the_rebuild_to_this_process(store_url, monkeypatch, small_pages,
                                                                        workers_started):
    warnings: list[str] = []
    with Ledger.from_url(store_url) as ledger:
        history(ledger)
        expected = tables(ledger)
        submitted = _kill_worker_at(monkeypatch, 3)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        assert ledger.rebuild(warn=warnings.append) > 0
        assert len(workers_started) == 1 and submitted[0] >= 3
        assert tables(ledger) == expected
    assert len(warnings) == 1 and warnings[0].startswith("the mapping worker stopped") \
        and warnings[0].endswith("rebuilding in this process"), warnings


def test_a_worker_killed_mid_catch_up_keeps_what_it_wrote(store_url, monkeypatch, workers_started):
    warnings: list[str] = []
    with Ledger.from_url(store_url) as ledger:
        history(ledger)
        expected = tables(ledger)
        _behind_in_small_batches(ledger, monkeypatch)
        submitted = _kill_worker_at(monkeypatch, 4)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        ledger.warn = warnings.append
        assert ledger.catch_up() == ledger.log_size()
        assert len(workers_started) == 1 and submitted[0] >= 4
        assert tables(ledger) == expected
        assert all(check.ok for check in ledger.verify())
    assert len(warnings) == 1 and warnings[0].startswith("the mapping worker stopped") \
        and warnings[0].endswith("catching up in this process"), warnings


def test_a_worker_that_cannot_start_is_a_warning_not_a_failure(store_url, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    warnings: list[str] = []
    with Ledger.from_url(store_url) as ledger:
        ledger.warn = warnings.append  # heard by rebuild and catch-up alike
        history(ledger)
        expected = tables(ledger)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        assert ledger.rebuild() > 0
        assert tables(ledger) == expected
        _behind_in_small_batches(ledger, monkeypatch)
        assert ledger.catch_up() == ledger.log_size()  # mapped here instead
        assert tables(ledger) == expected
    assert len(warnings) == 2 and all("could not start" in warning for warning in warnings), warnings
    assert warnings[0].endswith("rebuilding in this process") \
        and warnings[1].endswith("catching up in this process"), warnings


def test_a_read_whose_worker_cannot_start_answers_with_a_warning_on_stderr(tmp_path, monkeypatch):
    """The CLI's reads catch up first: a worker that cannot run is said on stderr,
    one line, and the answer on stdout is the same as without a worker."""
    from click.testing import CliRunner

    from leadledger.cli.main import cli

    url = f"sqlite:///{tmp_path / 'l.db'}"
    with Ledger.from_url(url) as ledger:
        history(ledger)
        ledger.catch_up()

    def balances():
        # A fixed instant: without --as-of the answer says the second it was read.
        return CliRunner().invoke(cli, ["--db", url, "balances", "--as-of", "2026-02-01T00:00:00Z",
                                        "--format", "json"], obj={}, catch_exceptions=False)

    expected = balances()
    assert expected.exit_code == 0 and not expected.stderr
    with Ledger.from_url(url) as ledger:
        _behind_in_small_batches(ledger, monkeypatch)
    monkeypatch.setenv(mapping.WORKER_SETTING, "on")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    result = balances()
    assert result.exit_code == 0, result.output
    assert result.stdout == expected.stdout
    assert result.stderr.startswith("leadledger: WARNING: the mapping worker could not start")
    assert result.stderr.rstrip("\n").endswith("; catching up in this process")
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are Linux's")
def test_the_workers_pipes_hold_a_mebibyte():
    import fcntl

    with mapping.MapInWorker(rebuilding=True) as worker:
        sizes = [fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ)
                 for stream in (worker._process.stdin, worker._process.stdout)]
    assert sizes == [mapping.PIPE_BYTES] * 2, sizes


@pytest.mark.parametrize("where", ["worker", "here"])
def test_a_backlogs_batches_run_with_a_bigger_page_cache_given_back_after(tmp_path, monkeypatch, where):
    """SQLite: every batch of a backlog, mapped in the worker or here, writes with
    BACKLOG_PAGE_CACHE_KIB of page cache; the connection has its own size again after."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    seen: list[int] = []
    original = view_module.SQLiteLedgerView._size_page_cache

    def sized(self, curs):
        original(self, curs)
        curs.execute("PRAGMA cache_size")
        seen.append(curs.fetchone()[0])

    with Ledger.from_url(url) as ledger:
        history(ledger)
        expected = tables(ledger)
        view = ledger._open()[1]
        with view.datastore.transaction(commit=False) as curs:
            curs.execute("PRAGMA cache_size")
            (own,) = curs.fetchone()
        assert own != -view_module.BACKLOG_PAGE_CACHE_KIB
        _behind_in_small_batches(ledger, monkeypatch)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on" if where == "worker" else "off")
        monkeypatch.setattr(view_module.SQLiteLedgerView, "_size_page_cache", sized)
        assert ledger.catch_up() == ledger.log_size()
        assert tables(ledger) == expected
        with view.datastore.transaction(commit=False) as curs:
            curs.execute("PRAGMA cache_size")
            assert curs.fetchone()[0] == own
    # The first batch read shows the backlog before it is written: every batch is sized.
    assert len(seen) > 3 and set(seen) == {-view_module.BACKLOG_PAGE_CACHE_KIB}, seen


def test_the_setting(monkeypatch):
    monkeypatch.setattr(mapping.os, "sched_getaffinity", lambda pid: {0, 1})
    for setting, small, large in (("auto", False, True), ("on", True, True), ("off", False, False)):
        monkeypatch.setenv(mapping.WORKER_SETTING, setting)
        assert (mapping.worker_wanted(10), mapping.worker_wanted(mapping.WORKER_FROM_EVENTS)) == (small, large)
    monkeypatch.setenv(mapping.WORKER_SETTING, "auto")
    monkeypatch.setattr(mapping.os, "sched_getaffinity", lambda pid: {0})
    assert not mapping.worker_wanted(10 ** 9)  # one CPU: a worker would only take turns with this process


@pytest.mark.parametrize("value", ["yes", "", "ON", "on ", "o" * 5000])
def test_a_bad_setting_is_one_line(tmp_path, value):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with Ledger.from_url(url) as ledger:
        history(ledger)
    env = {"LEADLEDGER_MAPPING_WORKER": value}
    result = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, "rebuild"],
                            capture_output=True, text=True, env={**_env(), **env})
    assert result.returncode == 3, result
    assert result.stderr.startswith("leadledger: error[bad_config]: LEADLEDGER_MAPPING_WORKER=")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "LEADLEDGER_MAPPING_WORKER"}


# Ids a COPY text must escape or must not take for its own markers (ids may hold
# any printable text: check_identifier).
ODD_IDS = ["p\\1", "\\N", "a\\.b", "\\", "é-ünï ✓", "c\\tx", "N"]


def test_copy_text_reads_back_exactly_on_postgresql():
    """What PostgreSQL's COPY reads from copy_text is the rows as given: NULLs,
    integers, backslashes, the \\N and \\. markers as text, and the separators
    a value may hold (tabs, newlines, carriage returns)."""
    import psycopg

    from leadledger.projections.copytext import copy_text
    from tests.conftest import PG_URL, require_postgres

    require_postgres()
    rows = [(i, f"plain-{i}", None, -i * 10**15) for i in range(70)]
    rows += [(100 + i, text, None if i % 2 else text, i) for i, text in enumerate(
        [*ODD_IDS, "tab\there", "new\nline", "cr\rhere", "\\.", "end\\", ""])]
    clean = rows[:70]
    with psycopg.connect(PG_URL) as conn:
        for block in (clean, rows):
            conn.execute("CREATE TEMPORARY TABLE t (n BIGINT, a TEXT, b TEXT, m BIGINT)")
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                copy.write(copy_text(block))
            assert conn.execute("SELECT * FROM t ORDER BY n").fetchall() == block
            conn.execute("DROP TABLE t")
    assert copy_text([]) == b""


def odd_history(ledger: Ledger) -> None:
    """Pages with 64+ rows per COPY target, odd ids, and late postings: quotes
    sent before the latest checkpoint once the small checkpoints are laid."""
    pros = [f"{pro}-{i}" for i in range(2) for pro in ODD_IDS]
    ok(ledger.append([item for pro in pros for item in (wallet(pro), buy(pro, 1_000_000))]))
    ok(ledger.append([quote(f"{pro}/{n}", pro, at(2, n % 24, n), commission=100 + n)
                      for n in range(40) for pro in pros[:4]]))
    ok(ledger.append([sub("QuoteRead", at(3, 0, n), contact_id=f"{pros[0]}/{n}") for n in range(40)]))
    ok(ledger.append([quote(f"late-{pro}/{n}", pro, at(1, 1, n), commission=7)
                      for n in range(20) for pro in pros[:4]]))


def test_copy_text_pages_give_the_same_rows(store_url, monkeypatch, workers_started):
    """On PostgreSQL the worker sends COPY text (projections/copytext.py): rebuilds
    and backlogs in the worker give the in-process rows, checkpoints included
    (late postings make the catch-up load the rows behind a CopyText)."""
    from leadledger.projections import checkpoints
    from leadledger.projections.copytext import CopyText

    monkeypatch.setattr(checkpoints, "CHECKPOINT_POSTINGS", 40)
    copied: list[str] = []
    loaded: list[int] = []
    original_rows = CopyText.rows
    monkeypatch.setattr(CopyText, "rows", lambda self: (loaded.append(self.count), original_rows(self))[1])
    with Ledger.from_url(store_url) as ledger:
        odd_history(ledger)
        view_kind = type(ledger._open()[1])
        original = view_kind.write_statement
        monkeypatch.setattr(view_kind, "write_statement", lambda self, curs, statement, params: (
            copied.append(statement) if isinstance(params, CopyText) else None,
            original(self, curs, statement, params))[1])
        monkeypatch.setattr(chain_store, "PAGE", 150)
        monkeypatch.setattr(view_module, "BACKLOG_EVENTS", 5)
        monkeypatch.setattr(view_module, "BACKLOG_BATCH", 150)
        monkeypatch.setattr(view_module, "CATCH_UP_BATCH", 150)
        passes = {}
        for setting in ("off", "on"):
            monkeypatch.setenv(mapping.WORKER_SETTING, setting)
            ledger.rebuild()
            rebuilt = tables(ledger)
            _fall_behind(ledger)
            assert ledger.catch_up() == ledger.log_size()
            passes[setting] = rebuilt, tables(ledger)  # checkpoints are laid where the batches end
        assert len(workers_started) == 2
        assert passes["on"] == passes["off"]
        rebuilt, caught_up = passes["on"]
        assert len(caught_up["ll_checkpoint_marks"]) > 3
        for marks in (rebuilt["ll_checkpoint_marks"], caught_up["ll_checkpoint_marks"]):
            assert all(pending == 0 for _, pending in sorted(marks)[:-1])  # only the latest counts
        assert {table: rows for table, rows in rebuilt.items() if "checkpoint" not in table} == {
            table: rows for table, rows in caught_up.items() if "checkpoint" not in table}
        assert all(check.ok for check in ledger.verify())
    if ledger.config.kind == "postgres":
        assert {mapping.INSERT_CONTACT, mapping.INSERT_POSTING} <= set(copied)
        assert loaded  # a batch with late postings: the checkpoints read its rows
    else:
        assert not copied and not loaded


def test_the_services_ledgers_log_what_they_are_warned_of(tmp_path, caplog):
    """The service's readers (a read catches up first) and its writer hand a
    warning to the ``leadledger.service`` log, where an operator looks."""
    from leadledger.service.app import Readers
    from leadledger.service.writer import writers_ledger

    url = f"sqlite:///{tmp_path / 'l.db'}"
    readers = Readers(url, 2)
    writer = writers_ledger(url)
    with caplog.at_level("WARNING", logger="leadledger.service"):
        for number, ledger in enumerate([*readers._all, writer]):
            ledger.warn(f"the mapping worker could not start ({number}); catching up in this process")
    writer.close()
    for ledger in readers._all:
        ledger.close()
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("leadledger.service", "WARNING", f"the mapping worker could not start ({n}); catching up in this process")
        for n in range(3)]


# --- the pipe between the processes ---------------------------------------------


def _message(data: bytes) -> bytes:
    out = io.BytesIO()
    mapping._write_message(out, data)
    return out.getvalue()


def test_a_message_that_does_not_check_out_is_refused_not_read():
    data = pickle.dumps(("ok", [("INSERT", [(1, "a")])]))
    framed = _message(data)
    assert mapping._read_message(io.BytesIO(framed)) == data
    assert mapping._read_message(io.BytesIO(framed[:-1])) is None  # cut: the stream's end
    assert mapping._read_message(io.BytesIO(b"")) is None
    changed = bytearray(framed)
    changed[-3] ^= 0x01  # one bit of the body
    with pytest.raises(mapping.DamagedMessage, match="CRC-32"):
        mapping._read_message(io.BytesIO(bytes(changed)))
    # A length no page has: refused before anything is allocated for it.
    huge = (mapping.MAX_MESSAGE_BYTES + 1).to_bytes(8, "big") + bytes(4)
    with pytest.raises(mapping.DamagedMessage, match="announced"):
        mapping._read_message(io.BytesIO(huge + b"x" * 100))


class _SpoiledPipe:
    """The worker's answers as this process reads them (a raw file), the ``at``-th
    read of a message's body spoiled: one byte changed (``how="flip"``) or the
    read failing (``how="fail"``)."""

    def __init__(self, stream, at: int, how: str):
        self._stream, self._at, self._how, self.body_reads = stream, at, how, 0

    def readinto(self, view) -> int:
        if len(view) > 12:  # not a message's head (length and CRC-32)
            self.body_reads += 1
            if self.body_reads == self._at and self._how == "fail":
                raise OSError("the pipe failed")
        count = self._stream.readinto(view)
        if self.body_reads == self._at and self._how == "flip" and len(view) > 12 and count:
            view[count - 1] ^= 0xFF
        return count

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._stream.close()


@pytest.mark.parametrize("how", ["flip", "fail"])
def test_a_worker_whose_answers_cannot_be_read_leaves_the_catch_up_to_this_process(store_url, monkeypatch,
                                                                                   workers_started, how):
    """A changed byte is caught by the message's CRC-32, a failing read by the
    reader thread: either way the worker is dropped with a warning (never an
    unpickled page of wrong rows, never a wait for an answer that cannot come),
    and the catch-up goes on here from what the worker's pages wrote."""

    class SpoiledPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.stdout = _SpoiledPipe(self.stdout, 3, how)  # the third read of a body

    warnings: list[str] = []
    with Ledger.from_url(store_url) as ledger:
        history(ledger)
        expected = tables(ledger)
        _behind_in_small_batches(ledger, monkeypatch)
        unspoiled = subprocess.Popen
        monkeypatch.setattr(subprocess, "Popen", SpoiledPopen)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on")
        ledger.warn = warnings.append
        caught_up: list[int] = []
        runner = threading.Thread(target=lambda: caught_up.append(ledger.catch_up()), daemon=True)
        runner.start()
        runner.join(timeout=120)
        assert caught_up == [ledger.log_size()], "the catch-up waited for an answer that could not come"
        monkeypatch.setattr(subprocess, "Popen", unspoiled)  # verify's own worker, if it starts one
        assert len(workers_started) == 1
        assert tables(ledger) == expected
        assert all(check.ok for check in ledger.verify())
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("the mapping worker stopped: its answers could not be read (")
    assert ("CRC-32 does not match" if how == "flip" else "the pipe failed") in warnings[0]
    assert warnings[0].endswith("catching up in this process")


def test_a_worker_sent_a_damaged_page_stops_and_says_why():
    first = _message(pickle.dumps(({}, True, False)))
    page = bytearray(_message(pickle.dumps([])))
    page[-1] ^= 0x01
    done = subprocess.run([sys.executable, "-c", "from leadledger.projections.mapping import serve; serve()"],
                          input=first + bytes(page), capture_output=True, timeout=60)
    assert done.returncode == 1 and done.stdout == b""  # no answer to a page it could not read
    assert done.stderr.decode().strip().splitlines()[-1] == (
        f"its pages could not be read (a message of {len(page) - 12:,} bytes whose CRC-32 does not match)")


class _Unpicklable(Exception):
    def __init__(self, a, b):  # pickled with one argument, so it does not unpickle
        super().__init__(f"{a} {b}")


def test_an_answer_that_does_not_unpickle_is_the_worker_gone_not_a_traceback():
    """The worker's own error, of a class that unpickles only with other arguments:
    WorkerGone (the caller maps the page here, where the error is raised as itself)."""
    with mapping.MapInWorker(rebuilding=True) as worker:
        worker._pending += 1
        worker._answers.put(bytearray(pickle.dumps(("error", _Unpicklable(1, 2)))))
        with pytest.raises(mapping.WorkerGone, match=r"an answer could not be read \(TypeError\)"):
            worker.take()
        assert worker._process.wait(timeout=10) is not None  # stopped, not left running


def _index_names(view) -> set[str]:
    return {row["name"] for row in view.query("SELECT name FROM sqlite_master WHERE type = 'index'"
                                              " AND name LIKE 'll_%'")}


@pytest.mark.parametrize("where", ["worker", "here"])
def test_a_first_catch_up_fills_an_empty_view_without_the_indexes_it_does_not_read(tmp_path, monkeypatch, where):
    """SQLite: a backlog caught up onto empty read models (the first read after a bulk
    load) drops the secondary indexes no catch-up query reads, fills the tables, then
    creates them again (one sort each instead of a B-tree insert a row: 67-70k ->
    84-90k events/s on a 164k-event log). The rows are a catch-up's; a view that
    already holds rows keeps its indexes; a pass that fails midway, or a process
    that dies in it, leaves them to be made again (the former at once, the latter at
    the next open)."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    every = {name for name, _ in view_module.SECONDARY_INDEXES}
    kept = every - {name for name, _ in view_module.DROPPED_FOR_A_FIRST_BACKLOG}
    assert kept == {"ll_postings_time"}  # checkpoints.record reads postings by time in every batch
    during: list[set[str]] = []
    original = view_module.LedgerViewMixin.write_statements_tracked

    def spying(self, statements, tracking):
        during.append(_index_names(self))
        return original(self, statements, tracking)

    with Ledger.from_url(url) as ledger:
        history(ledger)
        expected = tables(ledger)
        view = ledger._open()[1]
        assert _index_names(view) == every
        _behind_in_small_batches(ledger, monkeypatch)
        monkeypatch.setenv(mapping.WORKER_SETTING, "on" if where == "worker" else "off")
        monkeypatch.setattr(view_module.LedgerViewMixin, "write_statements_tracked", spying)
        assert ledger.catch_up() == ledger.log_size()
        assert len(during) > 3 and all(names == kept for names in during), during
        assert _index_names(view) == every
        assert tables(ledger) == expected
        assert all(check.ok for check in ledger.verify())

        # Behind, but not empty: the indexes stay.
        _fall_behind(ledger)
        ok(ledger.append([buy("p1", 5, at(9))]))
        monkeypatch.setattr(view_module, "BACKLOG_EVENTS", 10 ** 9)
        assert ledger.catch_up() > 0  # a first batch of 3, level: the view holds rows now
        monkeypatch.setattr(view_module, "BACKLOG_EVENTS", 5)
        ok(ledger.append([buy("p1", 5, at(9, i)) for i in range(1, 20)]))
        during.clear()
        ledger.catch_up()
        assert during and all(names == every for names in during), during

        # A pass that fails midway makes them again before the error goes on.
        _fall_behind(ledger)
        calls = []

        def failing(self, statements, tracking):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("the disk went away")
            return original(self, statements, tracking)

        monkeypatch.setattr(view_module.LedgerViewMixin, "write_statements_tracked", failing)
        with pytest.raises(RuntimeError):
            ledger.catch_up()
        assert _index_names(view) == every
        monkeypatch.setattr(view_module.LedgerViewMixin, "write_statements_tracked", original)

    # A process that died in the pass: the next open makes them.
    with Ledger.from_url(url) as ledger:
        view = ledger._open()[1]
        with view.datastore.transaction(commit=True) as curs:
            for name, _ in view_module.DROPPED_FOR_A_FIRST_BACKLOG:
                curs.execute(f"DROP INDEX {name}")
    with Ledger.from_url(url, create=False) as ledger:
        assert _index_names(ledger._open()[1]) == every
