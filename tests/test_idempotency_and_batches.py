"""Idempotency in the store, group commit, --atomic and concurrent writers."""

import multiprocessing
import threading
import uuid

from leadledger import Ledger
from tests.helpers import at, balance, buy, ok, one, quote, wallet


def test_same_event_id_same_content_is_a_duplicate_even_after_restart(store_url):
    purchase = buy("p1", 100)
    with Ledger.from_url(store_url) as first:
        ok(first.append([wallet("p1"), purchase]))
    with Ledger.from_url(store_url) as second:  # a new process would see the same
        result = one(second, purchase)
        assert (result.status, result.recorded) == ("duplicate", ("CreditsPurchased",))
        assert balance(second, "p1")["balance"] == 100


def test_equivalent_time_offsets_are_the_same_content(ledger):
    purchase = buy("p1", 100, "2026-01-05T10:00:00Z")
    ok(ledger.append([wallet("p1"), purchase]))
    same_instant = purchase | {"occurred_at": "2026-01-05T11:00:00+01:00"}
    assert one(ledger, same_instant).status == "duplicate"


def test_an_event_id_is_its_value_in_any_form_and_results_give_one_form(ledger):
    """Upper case, braces, "urn:uuid:" and the hyphenless form name one id (as
    pydantic reads a UUID): a purchase resent in another form is a duplicate, and
    every result, rejected ones too, gives the canonical form, so a sender matching
    results by event_id finds them. Text Python's UUID() alone reads (another
    script's digits, hyphens elsewhere) is no event id, and finds no submission."""
    purchase = buy("p1", 100)
    canonical = purchase["event_id"]
    hexdigits = canonical.replace("-", "")
    forms = [canonical.upper(), "{" + canonical + "}", "urn:uuid:" + canonical, hexdigits]
    results = ledger.append([wallet("p1"), purchase | {"event_id": forms[0]},
                             *[purchase | {"event_id": form} for form in forms[1:]],
                             purchase | {"event_id": forms[0], "occurred_at": "soon"}])
    assert [r.status for r in results] == ["recorded", "recorded", "duplicate", "duplicate", "duplicate",
                                           "rejected"]
    assert {r.event_id for r in results[1:]} == {canonical}
    assert balance(ledger, "p1")["balance"] == 100
    assert ledger.submission(forms[1])["event_id"] == canonical
    # A UUID object, as append takes one in a dict: the same submission (before 0.6.6 None,
    # "never recorded", to a caller that might then send it again).
    assert ledger.submission(uuid.UUID(canonical))["event_id"] == canonical
    assert ledger.append([purchase | {"event_id": uuid.UUID(canonical)}])[0].status == "duplicate"
    digit = next(i for i, c in enumerate(canonical) if c.isdigit())  # as Arabic-Indic: UUID() reads it
    mimic = canonical[:digit] + chr(0x660 + int(canonical[digit])) + canonical[digit + 1:]
    assert ledger.submission(mimic) is None
    assert ledger.submission(hexdigits[:7] + "-" + hexdigits[7:]) is None
    wrong = one(ledger, purchase | {"event_id": hexdigits[:7] + "-" + hexdigits[7:]})
    assert (wrong.status, wrong.code, wrong.event_id) == ("rejected", "invalid_submission",
                                                           hexdigits[:7] + "-" + hexdigits[7:])


def test_same_event_id_other_content_is_a_conflict(ledger):
    purchase = buy("p1", 100)
    ok(ledger.append([wallet("p1"), purchase]))
    result = one(ledger, purchase | {"amount": 200})
    assert (result.status, result.code) == ("rejected", "event_id_conflict")
    assert balance(ledger, "p1")["balance"] == 100


def test_duplicate_inside_one_batch(ledger):
    purchase = buy("p1", 100)
    results = ledger.append([wallet("p1"), purchase, purchase, purchase | {"amount": 5}])
    assert [r.status for r in results] == ["recorded", "recorded", "duplicate", "rejected"]
    assert results[3].code == "event_id_conflict"
    assert balance(ledger, "p1")["balance"] == 100


def test_rejected_submission_leaves_no_trace_and_can_be_sent_again(ledger):
    ok(ledger.append([wallet("p1")]))
    q = quote("c1", "p1", commission=500)
    assert one(ledger, q).code == "insufficient_funds"
    assert list(ledger.events())[-1]["type"] == "WalletOpened"
    ok(ledger.append([buy("p1", 500)]))
    assert one(ledger, q).status == "recorded"  # the same event_id, judged anew


def test_a_rejection_does_not_stop_the_rest_of_the_batch(ledger):
    results = ledger.append([wallet("p1"), buy("ghost", 5), "not json", buy("p1", 7)])
    assert [r.status for r in results] == ["recorded", "rejected", "rejected", "recorded"]
    assert results[2].event_id is None
    assert balance(ledger, "p1")["balance"] == 7


def test_atomic_batch_records_nothing_when_one_is_rejected(ledger):
    results = ledger.append([wallet("p1"), buy("p1", 5), buy("ghost", 5)], atomic=True)
    assert [r.code for r in results] == ["batch_rejected", "batch_rejected", "wallet_not_found"]
    assert ledger.balances() == []
    assert list(ledger.events()) == []
    ok(ledger.append([wallet("p1"), buy("p1", 5)], atomic=True))


def test_later_submissions_of_a_batch_see_earlier_ones(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 1000), quote("c1", "p1", commission=1000)]))
    assert balance(ledger, "p1")["balance"] == 0


def test_big_batch_is_committed_in_chunks(ledger):
    purchases = [buy("p1", 1, at(0, 1, i)) for i in range(2500)]
    ok(ledger.append([wallet("p1"), *purchases]))
    assert balance(ledger, "p1")["balance"] == 2500


def _append_in_thread(url, batch, out):
    with Ledger.from_url(url) as ledger:
        out.extend(ledger.append(batch))


def test_concurrent_writers_never_lose_or_double_a_submission(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet("p1"), wallet("p2", "cronoshare")]))
    shared = [buy("p1", 1, at(0, 1, i)) for i in range(40)]  # both writers send these
    own = [[buy("p1", 100, at(0, 2, i)) for i in range(20)] for _ in range(2)]
    outs: list[list] = [[], []]
    threads = [threading.Thread(target=_append_in_thread, args=(store_url, shared + own[i], outs[i]))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for out in outs:
        assert all(r.status in ("recorded", "duplicate") for r in out), out
    recorded = [r.event_id for out in outs for r in out[:40] if r.status == "recorded"]
    assert sorted(recorded) == sorted(s["event_id"] for s in shared)  # each exactly once
    with Ledger.from_url(store_url) as ledger:
        assert balance(ledger, "p1")["balance"] == 40 + 2 * 20 * 100
        _chain_holds_without_gaps(ledger)


def _chain_holds_without_gaps(ledger: Ledger) -> None:
    """Concurrent writers took turns on the chain head: one chain, no fork, no gap."""
    problems, head = ledger.chain_problems()
    assert problems == []
    assert head.position == ledger.log_size() == len(list(ledger.events()))


def _append_in_process(url, batch, queue):
    with Ledger.from_url(url) as ledger:
        queue.put([r.status for r in ledger.append(batch)])


def test_concurrent_processes(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet("p1")]))
    shared = [buy("p1", 1, at(0, 1, i)) for i in range(30)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_append_in_process, args=(store_url, shared, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    statuses = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for i in range(30):
        assert sorted(s[i] for s in statuses) == ["duplicate", "duplicate", "recorded"]
    with Ledger.from_url(store_url) as ledger:
        assert balance(ledger, "p1")["balance"] == 30
        _chain_holds_without_gaps(ledger)
