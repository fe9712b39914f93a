"""Checkpointed account totals (issue 9): balances and trial balances as of any
instant read the latest checkpoint plus the postings after it, and must equal
the sum of every posting up to that instant (the position-bounded path, which
reads the postings themselves)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from leadledger import Ledger
from leadledger.projections import checkpoints, queries
from leadledger.timefmt import parse_utc

from tests.helpers import at, buy, card, cquote, courtesy, ok, quote, sub, wallet

EVERYTHING = 2**62  # a position bound past the log: the postings path


@pytest.fixture(autouse=True)
def small_checkpoints(monkeypatch):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_POSTINGS", 6)


def _history() -> list[list[dict]]:
    """Three pros over three days, appended in several calls (batches)."""
    calls = [[wallet("p1"), buy("p1", 100_000, t=at(0, 1)), card("p1", t=at(0, 1)),
              wallet("p2", "cronoshare"), buy("p2", 5_000, t=at(0, 1)), wallet("p3", t=at(0, 2))]]
    for day in range(3):
        call = []
        for hour in range(0, 20, 3):
            t = at(day, 3 + hour)
            call += [quote(f"c1-{day}-{hour}", "p1", t, commission=500 + hour),
                     cquote(f"c2-{day}-{hour}", "p2", t, commission=40)]
        call.append(sub("RefundRequested", at(day, 4), contact_id=f"c1-{day}-0", reason="wrong_contact_info"))
        call.append(courtesy("p3", 70 + day, t=at(day, 5), approver="lead" if day else None))
        calls.append(call)
    calls.append([quote("g1", "p1", at(2, 8), pricing="guaranteed_reply", commission=30),
                  sub("CallMinutesBilled", at(2, 9), contact_id="g1", call_id="call-1", duration_seconds=300)])
    return calls


def _record_history(ledger: Ledger, *, project_each_call: bool = True) -> None:
    """Append the history; with ``project_each_call`` the view catches up after
    each call (one view batch each: boundaries laid as the log grows), else once."""
    for call in _history():
        ok(ledger.append(call))
        if project_each_call:
            ledger.catch_up()
    ledger.catch_up()


def _marks(ledger: Ledger) -> list[str]:
    ledger.catch_up()
    return [r["checkpoint_at"] for r in ledger._view.query(
        "SELECT checkpoint_at FROM ll_checkpoint_marks ORDER BY checkpoint_at")]


def _instants(ledger: Ledger) -> list[datetime | None]:
    """Every posting's instant, every boundary and the microsecond before it."""
    view = ledger._view
    times = {r["occurred_at"] for r in view.query("SELECT DISTINCT occurred_at FROM ll_postings")}
    out: list[datetime | None] = [None]
    for text in sorted(times | set(_marks(ledger)[1:])):
        instant = parse_utc(text)
        out += [instant - timedelta(microseconds=1), instant]
    return out


def _agree(ledger: Ledger) -> int:
    """Compare the checkpointed reports with the postings at every instant."""
    view = ledger._view
    compared = 0
    instants = _instants(ledger)
    for as_of in instants:
        for pro_id, market in ((None, None), ("p1", None), ("p2", None), ("p3", None), (None, "cronoshare")):
            fast = queries.balances(view, pro_id=pro_id, as_of=as_of, market=market)
            slow = queries.balances(view, pro_id=pro_id, as_of=as_of, market=market, max_position=EVERYTHING)
            assert fast == slow, (as_of, pro_id, market)
        for market, account in ((None, None), ("pro360", None), (None, "platform:revenue"), (None, "pro:p1")):
            fast = queries.trial_balance(view, as_of, market=market, account=account)
            slow = queries.trial_balance(view, as_of, EVERYTHING, market=market, account=account)
            assert fast == slow, (as_of, market, account)
            compared += 1
    for start in instants[1::7]:
        for end in (None, instants[-1]):
            if end is not None and start > end:
                continue
            assert (queries.trial_balance(view, end, start=start)
                    == queries.trial_balance(view, end, EVERYTHING, start=start)), (start, end)
    return compared


def test_checkpointed_reports_equal_the_postings_at_every_instant(store_url):
    with Ledger.from_url(store_url) as ledger:
        _record_history(ledger)
        marks = _marks(ledger)
        assert len(marks) >= 4, marks  # the beginning and at least three boundaries
        assert _agree(ledger) > 100
        assert checkpoints.problems(ledger._view) == []
        assert all(check.ok for check in ledger.verify(replay=False))


def test_a_late_event_before_a_checkpoint_counts_in_it(store_url):
    with Ledger.from_url(store_url) as ledger:
        _record_history(ledger)
        first = _marks(ledger)[1]
        after = parse_utc(_marks(ledger)[-1]) + timedelta(hours=1)
        before = {r["pro_id"]: r["balance"] for r in ledger.balances(as_of=after)}
        # Recorded now, occurred before the first boundary: every checkpoint after
        # its instant must count it, or every later as-of report would miss it.
        ok(ledger.append([buy("p3", 1234, t=at(0, 2, minutes=30), ref="late"),
                          courtesy("p2", 9, t=at(0, 2, minutes=31), approver="lead")]))
        assert at(0, 2, minutes=30) < first.replace(".000000Z", "Z")
        assert _marks(ledger)[1] == first  # no boundary moved; the totals did
        now = {r["pro_id"]: r["balance"] for r in ledger.balances(as_of=after)}
        assert now["p3"] == before["p3"] + 1234 and now["p2"] == before["p2"] + 9
        assert _agree(ledger) > 100
        assert checkpoints.problems(ledger._view) == []


def test_rebuild_lays_checkpoints_that_give_the_same_reports(store_url):
    with Ledger.from_url(store_url) as ledger:
        _record_history(ledger, project_each_call=False)
        wanted = ledger.read_models(with_refunds=False)
        ledger.rebuild()
        assert len(_marks(ledger)) >= 4
        assert ledger.read_models(with_refunds=False) == wanted
        assert _agree(ledger) > 100
        assert checkpoints.problems(ledger._view) == []


def test_verify_names_a_checkpoint_that_disagrees_with_the_postings(store_url):
    with Ledger.from_url(store_url) as ledger:
        _record_history(ledger)
        boundary = _marks(ledger)[2]
        with ledger._view.datastore.transaction(commit=True) as curs:
            curs.execute(ledger._view.sql("UPDATE ll_checkpoints SET debit = debit + 1"
                                          " WHERE checkpoint_at = ? AND account = 'platform:cash'"), (boundary,))
        found = checkpoints.problems(ledger._view)
        assert found and found[0].startswith(f"checkpoint {boundary}:"), found
        [check] = [c for c in ledger.verify(replay=False) if c.number == 1]
        assert any(p.startswith(f"checkpoint {boundary}:") for p in check.problems)


def test_a_store_without_checkpoints_gets_them_on_first_use(store_url):
    """A store whose read models predate checkpoints (0.4) gets them laid from its postings."""
    with Ledger.from_url(store_url) as ledger:
        _record_history(ledger, project_each_call=False)
        wanted = ledger.read_models(with_refunds=False)
        with ledger._view.datastore.transaction(commit=True) as curs:
            curs.execute("DROP TABLE ll_checkpoints")
            curs.execute("DROP TABLE ll_checkpoint_marks")
    with Ledger.from_url(store_url) as ledger:
        assert ledger.read_models(with_refunds=False) == wanted
        assert len(_marks(ledger)) >= 4
        assert checkpoints.problems(ledger._view) == []
