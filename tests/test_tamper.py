"""A log no one can quietly change (issue 10), tried as an attacker with database
access would, on both stores: the append-only guards refuse; with them off (as a
superuser could), every kind of change to the log is named by `verify`, refused
by `rebuild`, and never answered as a `duplicate`."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable

import pytest

from leadledger import Ledger, chain_store
from leadledger.errors import LedgerError
from tests.helpers import at, buy, guards_off, ok, quote, wallet
from tests.test_faults import cli_run


def story(ledger: Ledger) -> list[dict]:
    subs = [wallet("p1"), buy("p1", 10_000, ref="pay-1"), wallet("p2"), buy("p2", 500, ref="pay-2"),
            quote("c1", "p1"), buy("p2", 700, ref="pay-3"), buy("p1", 300, ref="pay-4")]
    ok(ledger.append(subs))
    return subs


def rows(ledger: Ledger) -> list[Any]:
    app, _ = ledger._open()
    return list(chain_store.rows(app.factory.datastore, ledger.config.kind == "sqlite"))


def position_column(ledger: Ledger) -> str:
    return "rowid" if ledger.config.kind == "sqlite" else "notification_id"


def mark(ledger: Ledger) -> str:
    return "?" if ledger.config.kind == "sqlite" else "%s"


def table(ledger: Ledger) -> str:
    return ledger._open()[0].recorder.events_table_name


def originator(ledger: Ledger, row: Any) -> Any:
    return row.originator_id.hex() if ledger.config.kind == "sqlite" else uuid.UUID(bytes=row.originator_id)


def purchase_of(ledger: Ledger, ref: str) -> Any:
    return next(r for r in rows(ledger) if f'"payment_ref":"{ref}"'.encode() in r.state)


# --- the ways in ----------------------------------------------------------------

def edit_amount(ledger: Ledger) -> str:
    """The issue's first attack: 10,000 -> 1,000,000 cents, right after append."""
    row = purchase_of(ledger, "pay-1")
    with guards_off(ledger) as curs:
        curs.execute(f"UPDATE {table(ledger)} SET state = {mark(ledger)} WHERE {position_column(ledger)} = {mark(ledger)}",
                     (row.state.replace(b'"amount":10000', b'"amount":1000000'), row.position))
    return f"position {row.position}: edited"


def delete_middle(ledger: Ledger) -> str:
    row = purchase_of(ledger, "pay-2")
    with guards_off(ledger) as curs:
        curs.execute(f"DELETE FROM {table(ledger)} WHERE {position_column(ledger)} = {mark(ledger)}", (row.position,))
    return f"position {row.position + 1}: deleted (position {row.position} missing"


def delete_last(ledger: Ledger) -> str:
    last = rows(ledger)[-1]
    with guards_off(ledger) as curs:
        curs.execute(f"DELETE FROM {table(ledger)} WHERE {position_column(ledger)} = {mark(ledger)}", (last.position,))
    return f"the chain head is at position {last.position} but the log ends at {last.position - 1}"


def _forged_purchase(ledger: Ledger) -> tuple[Any, bytes]:
    """The next version of p2's wallet: a purchase nobody submitted."""
    row = purchase_of(ledger, "pay-3")
    wallet_rows = [r for r in rows(ledger) if r.originator_id == row.originator_id]
    state = row.state.replace(b"pay-3", b"pay-forged").replace(
        json.loads(row.state)["event_id"]["_data_"].encode(), uuid.uuid4().hex.encode())
    return (row, wallet_rows[-1].originator_version + 1), state


def _insert(ledger: Ledger, curs: Any, position: int, row: Any, version: int, state: bytes) -> None:
    m = mark(ledger)
    curs.execute(f"INSERT INTO {table(ledger)} ({position_column(ledger)}, originator_id, originator_version,"
                 f" topic, state, chain_sha256) VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
                 (position, originator(ledger, row), version, row.topic, state, os.urandom(32)))


def forge_at_end(ledger: Ledger) -> str:
    (row, version), state = _forged_purchase(ledger)
    last = rows(ledger)[-1].position
    with guards_off(ledger) as curs:
        _insert(ledger, curs, last + 1, row, version, state)
    return f"positions {last + 1}..{last + 1} lie past the chain head: inserted outside leadledger"


def forge_in_middle(ledger: Ledger) -> str:
    """Room made at position 3 by moving every later event up one, then a forgery there."""
    (row, version), state = _forged_purchase(ledger)
    column, m = position_column(ledger), mark(ledger)
    with guards_off(ledger) as curs:
        for later in reversed([r.position for r in rows(ledger) if r.position >= 3]):
            curs.execute(f"UPDATE {table(ledger)} SET {column} = {m} WHERE {column} = {m}", (later + 1, later))
        _insert(ledger, curs, 3, row, version, state)
    return "position 3: inserted"


def _swap(ledger: Ledger, a: int, b: int) -> None:
    column, m = position_column(ledger), mark(ledger)
    with guards_off(ledger) as curs:
        for source, target in ((a, -1), (b, a), (-1, b)):
            curs.execute(f"UPDATE {table(ledger)} SET {column} = {m} WHERE {column} = {m}", (target, source))


def swap_neighbours(ledger: Ledger) -> str:
    _swap(ledger, 3, 4)
    return "position 3: reordered (the events at 3 and 4 were swapped)"


def swap_apart(ledger: Ledger) -> str:
    _swap(ledger, 2, 6)
    return "position 2: reordered (the event recorded after 1 now sits at position 6)"


TAMPERINGS: dict[str, Callable[[Ledger], str]] = {
    "edited": edit_amount, "deleted": delete_middle, "tail cut": delete_last,
    "forged at the end": forge_at_end, "forged in the middle": forge_in_middle,
    "reordered": swap_neighbours, "moved": swap_apart,
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_each_kind_of_tampering_is_named_and_stops_rebuild(store_url, tamper):
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        assert ledger.chain_problems()[0] == []
        expected = TAMPERINGS[tamper](ledger)
    with Ledger.from_url(store_url) as ledger:
        log_check = ledger.verify(replay=False)[0]
        assert log_check.number == 0 and not log_check.ok
        assert any(expected in problem for problem in log_check.problems), (expected, log_check.problems)
        with pytest.raises(LedgerError) as refused:
            ledger.rebuild()
        assert refused.value.code == "chain_broken" and expected.split(":")[0] in refused.value.message


@pytest.mark.parametrize("tamper", ["edited", "deleted", "reordered", "moved"])
def test_a_refused_rebuild_leaves_the_read_models_as_they_were(store_url, monkeypatch, tamper):
    """The rebuild walks the chain over the rows it projects, a page at a time, in
    its one transaction: pages before the break are projected before it is found,
    and the refusal rolls them back (pages of 2 rows here, so some are)."""
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        before = ledger.read_models()
        TAMPERINGS[tamper](ledger)
    monkeypatch.setattr(chain_store, "PAGE", 2)
    with Ledger.from_url(store_url) as ledger:
        with pytest.raises(LedgerError) as refused:
            ledger.rebuild()
        assert refused.value.code == "chain_broken"
        app, view = ledger._open()
        assert view.max_tracking_id("LeadLedger") == 8  # still level with the log it was built from
        assert ledger.read_models() == before


def test_the_command_line_reports_a_broken_chain(store_url):
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        expected = delete_middle(ledger)
    verify = cli_run(store_url, "verify", "--quick", "--format", "json")
    assert verify.returncode == 1, verify.stderr
    log_check = json.loads(verify.stdout)[0]
    assert log_check["invariant"] == 0 and any(expected in p for p in log_check["problems"]), log_check
    head = cli_run(store_url, "verify", "--head")
    assert head.returncode == 1 and "chain broken" in head.stderr, head
    assert head.stdout.startswith("3:")  # the last event that still chains correctly
    rebuild = cli_run(store_url, "rebuild")
    assert rebuild.returncode == 1 and "error[chain_broken]" in rebuild.stderr, rebuild


def test_an_edited_amount_stays_found_after_a_forced_rebuild(store_url):
    """The issue's attack: edit, rebuild, and verify was green with 997,300 in the wallet."""
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        before = ledger.balances(pro_id="p1")[0]["balance"]
        edit_amount(ledger)
    forced = cli_run(store_url, "rebuild", "--force")
    assert forced.returncode == 0 and "WARNING" in forced.stderr and "edited" in forced.stderr, forced
    with Ledger.from_url(store_url) as ledger:
        assert ledger.balances(pro_id="p1")[0]["balance"] == before + 990_000  # the altered log says so
        checks = ledger.verify(replay=False)
        assert not checks[0].ok  # and the chain still says it was altered


def test_the_log_and_its_receipts_refuse_update_delete_and_truncate(store_url):
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        app, _ = ledger._open()
        datastore = app.factory.datastore
        statements = [f"UPDATE {table(ledger)} SET topic = topic", f"DELETE FROM {table(ledger)}",
                      "UPDATE leadledger_receipts SET recorded = recorded", "DELETE FROM leadledger_receipts"]
        if ledger.config.kind == "postgres":
            statements += [f"TRUNCATE {table(ledger)}", "TRUNCATE leadledger_receipts"]
        for statement in statements:
            with pytest.raises(Exception, match="append-only") as refused:
                with datastore.transaction(commit=True) as curs:
                    curs.execute(statement)
            assert ("UPDATE" if "UPDATE" in statement else "TRUNCATE" if "TRUNCATE" in statement
                    else "DELETE") in str(refused.value)
        assert len(rows(ledger)) == 8 and ledger.chain_problems()[0] == []
        with guards_off(ledger) as curs:  # the guard is what stopped them
            curs.execute(f"UPDATE {table(ledger)} SET topic = topic")


def test_a_submission_whose_events_were_deleted_is_not_a_duplicate(store_url):
    with Ledger.from_url(store_url) as ledger:
        subs = story(ledger)
        row = purchase_of(ledger, "pay-3")  # p2's last event, in the middle of the log
        with guards_off(ledger) as curs:
            curs.execute(f"DELETE FROM {table(ledger)} WHERE {position_column(ledger)} = {mark(ledger)}",
                         (row.position,))
        again = ledger.append([subs[5], subs[1]])  # pay-3's event is gone; pay-1's is there
        assert again[0].status == "rejected" and again[0].code == "log_damaged", again[0]
        assert "no longer holds its events" in again[0].message
        assert again[1].status == "duplicate"
        assert len(rows(ledger)) == 7  # nothing recorded


def test_an_aggregate_with_a_hole_in_its_history_refuses_the_batch(store_url):
    """pay-2 deleted: p2's events run 1, 3. Replaying it would skip a purchase, so
    a writer that loads p2 judges nothing: the batch is refused (a writer already
    holding p2 does not read its history again; `verify` finds the hole)."""
    with Ledger.from_url(store_url) as writer:
        subs = story(writer)
        delete_middle(writer)
    with Ledger.from_url(store_url) as ledger:
        with pytest.raises(LedgerError) as refused:
            ledger.append([buy("p1", 5, ref="pay-8"), buy("p2", 1, ref="pay-9")])
        assert refused.value.code == "log_damaged", refused.value
        assert "not in sequence" in refused.value.message
        assert len(rows(ledger)) == 7  # nothing recorded
        assert ledger.append([subs[1]])[0].status == "duplicate"  # p1 is intact


def test_a_writer_refuses_to_chain_onto_a_cut_log(store_url):
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        delete_last(ledger)
        with pytest.raises(LedgerError) as refused:
            ledger.append([buy("p2", 1, ref="pay-9")])
        assert refused.value.code == "log_damaged" and "chain head is at 8" in refused.value.message
        assert len(rows(ledger)) == 7


def test_a_published_head_proves_the_log_up_to_it_unchanged(store_url):
    with Ledger.from_url(store_url) as ledger:
        story(ledger)
    published = cli_run(store_url, "verify", "--head")
    assert published.returncode == 0, published.stderr
    head = published.stdout.strip()
    position, digest = head.split(":")
    assert position == "8" and len(digest) == 64
    as_json = json.loads(cli_run(store_url, "verify", "--head", "--format", "json").stdout)
    assert as_json["head"] == head and as_json["ok"] and as_json["position"] == 8
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([buy("p2", 5, ref="pay-later")]))  # the log grows: the head still holds
    later = cli_run(store_url, "verify", "--quick", "--expect-head", head)
    assert later.returncode == 0, later.stdout
    wrong = cli_run(store_url, "verify", "--quick", "--expect-head", f"8:{'0' * 64}")
    assert wrong.returncode == 1 and "was published: the log up to it was changed" in wrong.stdout
    with Ledger.from_url(store_url) as ledger:
        edit_amount(ledger)  # position 2, before the published head
        problems, _ = ledger.chain_problems(head)
    assert any("before the published head at 8" in p for p in problems), problems
    bad = cli_run(store_url, "verify", "--expect-head", "8:xyz")
    assert bad.returncode == 2 and "error[bad_head]" in bad.stderr


def test_a_whole_tail_rewritten_with_fresh_hashes_is_caught_by_the_published_head(store_url):
    """An attacker who recomputes every link after an edit (and the head) leaves a
    chain that holds: only a head published before shows the change."""
    from leadledger import chain

    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        _, published = ledger.chain_problems()
        edit_amount(ledger)
        previous = chain.GENESIS
        column, m = position_column(ledger), mark(ledger)
        with guards_off(ledger) as curs:
            for row in rows(ledger):
                previous = chain.link(previous, row.originator_id, row.originator_version, row.topic, row.state)
                curs.execute(f"UPDATE {table(ledger)} SET chain_sha256 = {m} WHERE {column} = {m}",
                             (previous, row.position))
            curs.execute(f"UPDATE leadledger_chain_head SET sha256 = {m}", (previous,))
        assert ledger.chain_problems()[0] == []  # the rewritten chain holds by itself
        problems, _ = ledger.chain_problems(published)
        assert problems and "was published: the log up to it was changed" in problems[0]


def test_receipts_emptied_by_hand_refuse_appends_and_are_named(store_url):
    """Without its receipts a store would take a resent purchase as new (the wallet
    credited twice): a writer refuses to record, and verify names every submission
    whose events no receipt covers (the sweep's refunds have none by design)."""
    with Ledger.from_url(store_url) as ledger:
        subs = story(ledger)
        ok(ledger.append([quote("c9", "p1", at(1), commission=100)]))
        submitted = [r.position for r in rows(ledger)]
        swept = ledger.sweep(at(5))  # c1's and c9's unread refunds
        assert [r.recorded for r in swept] == [("QuoteFeeRefunded",)] * 2
        assert ledger.verify(replay=False)[0].problems == []
        with guards_off(ledger) as curs:
            curs.execute("DELETE FROM leadledger_receipts")
        count = len(rows(ledger))
    with Ledger.from_url(store_url) as writer:
        with pytest.raises(LedgerError) as refused:
            writer.append([subs[1]])  # pay-1 again
        assert refused.value.code == "log_damaged" and "receipts are gone" in refused.value.message
        assert len(rows(writer)) == count
        problems = writer.verify(replay=False)[0].problems
        assert [int(p.split(":")[0].split()[1]) for p in problems] == submitted, problems
        assert all("no receipt covers this event of submission" in p for p in problems)
    result = cli_run(store_url, "append", "-", input=json.dumps(subs[1]) + "\n", timeout=60)
    assert result.returncode == 3 and result.stderr.startswith("leadledger: error[log_damaged]"), result.stderr


def test_a_resend_let_in_by_emptied_receipts_is_named_with_the_original(store_url, monkeypatch):
    """A writer looks for the receipts when it first writes, then every
    RECEIPTS_RECHECK_SECONDS: within that time, one that looked before they were
    emptied records a resend, and verify is what finds it. Both purchases' events
    are named but the resend's, whose receipt covers it."""
    from leadledger import application

    monkeypatch.setattr(application, "RECEIPTS_RECHECK_SECONDS", 3600.0)
    with Ledger.from_url(store_url) as ledger:
        subs = story(ledger)
        with guards_off(ledger) as curs:
            curs.execute("DELETE FROM leadledger_receipts")
        assert [r.status for r in ledger.append([subs[1]])] == ["recorded"]  # pay-1 credited twice
        problems = ledger.verify(replay=False)[0].problems
        assert [int(p.split(":")[0].split()[1]) for p in problems] == list(range(1, 9)), problems


def test_a_long_lived_writer_looks_for_the_receipts_again(store_url, monkeypatch):
    """Past RECEIPTS_RECHECK_SECONDS the same writer looks again, and refuses."""
    from leadledger import application

    monkeypatch.setattr(application, "RECEIPTS_RECHECK_SECONDS", 0.0)
    with Ledger.from_url(store_url) as ledger:
        subs = story(ledger)
        count = len(rows(ledger))
        with guards_off(ledger) as curs:
            curs.execute("DELETE FROM leadledger_receipts")
        with pytest.raises(LedgerError) as refused:
            ledger.append([subs[1]])
        assert refused.value.code == "log_damaged" and len(rows(ledger)) == count


def test_a_replayed_log_has_no_receipts_and_is_not_a_finding(store_url, tmp_path):
    """replay records a log as it was, without receipts (the log carries no submission
    content): verify does not ask those events for one, and asks what comes after."""
    with Ledger.from_url(f"sqlite:///{tmp_path / 'source.db'}") as source:
        story(source)
        lines = [json.dumps(event) for event in source.events()]
    with Ledger.from_url(store_url) as replayed:
        assert replayed.load_log(lines) == 8
        assert replayed.verify(replay=False)[0].problems == []
        ok(replayed.append([buy("p1", 100, t=at(2), ref="pay-9")]))
        assert replayed.verify(replay=False)[0].problems == []
        with guards_off(replayed) as curs:
            curs.execute("DELETE FROM leadledger_receipts")
        problems = replayed.verify(replay=False)[0].problems
        assert [p.split(":")[0] for p in problems] == ["position 9"], problems


def test_a_chain_head_removed_by_hand_does_not_rechain_an_edited_log(store_url):
    """With the head row gone, opening the store (SQLite) or `init` (PostgreSQL) lays
    the head again from the last stored link, never by chaining the log anew: that
    would make an event edited before it chain cleanly."""
    from leadledger.store import HEAD_TABLE

    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        edited = edit_amount(ledger)
        head = ledger.chain_problems()[1]
        with guards_off(ledger) as curs:
            curs.execute(f"DELETE FROM {HEAD_TABLE}")
    with Ledger.from_url(store_url) as ledger:
        if ledger.config.kind == "postgres":
            ledger.init()
        problems, _ = ledger.chain_problems()
        assert problems and problems[0].startswith(edited), problems
        assert ledger.chain_problems()[1] == head  # the last good link, as before
        assert not ledger.verify(replay=False)[0].ok


def test_a_chain_head_and_the_last_link_both_removed_are_refused(store_url):
    """With the head gone and the log's last event unlinked too, no stored link
    vouches for the end of the log: the store is refused (log_damaged), never
    chained anew over whatever was edited."""
    from leadledger.store import HEAD_TABLE

    with Ledger.from_url(store_url) as ledger:
        story(ledger)
        last = rows(ledger)[-1].position
        with guards_off(ledger) as curs:
            curs.execute(f"DELETE FROM {HEAD_TABLE}")
            curs.execute(f"UPDATE {table(ledger)} SET {chain_store.CHAIN_COLUMN} = NULL"
                         f" WHERE {position_column(ledger)} = {mark(ledger)}", (last,))
    with pytest.raises(LedgerError) as refused:
        with Ledger.from_url(store_url) as ledger:
            ledger.init() if ledger.config.kind == "postgres" else ledger.balances()
    assert refused.value.code == "log_damaged" and f"position {last}) has no link" in refused.value.message
