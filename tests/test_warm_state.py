"""A long-lived Ledger (the service's path) keeps the wallets and contacts it
judged between calls, and brings each one level with the store before the next
decision: another writer's events are applied, and an aggregate whose own last
event is no longer in the log is loaded afresh (issue 9)."""

from __future__ import annotations

from leadledger import Ledger, chain_store
from leadledger.application import judged
from leadledger.aggregates import contact_id_to_uuid, wallet_id

from tests.helpers import at, buy, empty_by_hand, guards_off, ok, one, quote, sub, wallet


def test_another_writers_purchase_is_seen_by_the_next_call(store_url):
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), buy("p1", 1000), wallet("p2"), buy("p2", 1000, ref="pay-p2")]))
        ok(mine.append([quote("c1", "p1", at(1), commission=600)]))
        ok(theirs.append([buy("p1", 500, t=at(1, 1), ref="pay-2")]))
        # 900 is there only with the other writer's purchase; nothing this call
        # records conflicts with it, so a stale wallet would wrongly refuse.
        assert one(mine, quote("c2", "p1", at(2), commission=900)).status == "recorded"
        assert mine._warm[wallet_id("p1")].balance == 0
        assert mine.balances(pro_id="p1")[0]["balance"] == 0
        # Judged on warm state without reading it, the write onto the head it knew
        # failed, and the call was judged again from the store.
        ok(theirs.append([buy("p1", 50, t=at(2, 1), ref="pay-3")]))
        assert one(mine, quote("c3", "p2", at(3), commission=100)).status == "recorded"
        # p1 was not judged on in that call: it was brought level with the log's
        # tail (the other writer's purchase applied), kept, not loaded again.
        kept = mine._warm[wallet_id("p1")]
        assert kept.balance == 50
        assert one(mine, quote("c4", "p1", at(4), commission=50)).status == "recorded"
        assert mine._warm[wallet_id("p1")] is kept
        assert mine._warm[wallet_id("p2")].balance == 900
        assert mine.balances(pro_id="p2")[0]["balance"] == 900


def test_a_warm_contacts_wallet_is_brought_level_too(store_url):
    """A contact's events name no pro: its wallet is reached through it, and must
    be as fresh as if the call had loaded everything."""
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), buy("p1", 1000), quote("c1", "p1", at(1), commission=1000)]))
        assert mine._warm.get(contact_id_to_uuid("c1")) is not None
        ok(theirs.append([buy("p1", 70, t=at(1, 1), ref="pay-2")]))
        result = one(mine, sub("RefundRequested", at(2), contact_id="c1", reason="wrong_contact_info"))
        assert result.recorded == ("RefundRequested", "QuoteFeeRefunded")
        assert mine._warm[wallet_id("p1")].balance == 1070  # the refund and the other purchase
        assert mine.balances(pro_id="p1")[0]["balance"] == 1070


def test_a_warm_wallet_whose_history_was_replaced_is_loaded_afresh(store_url):
    with Ledger.from_url(store_url) as mine:
        ok(mine.append([wallet("p1"), buy("p1", 100)]))
        assert mine._warm[wallet_id("p1")].version == 2
        # The store emptied by hand and refilled by someone else: version 2 exists
        # again, but it is another event (another recording time).
        with guards_off(mine) as curs:
            empty_by_hand(curs, mine)
        with Ledger.from_url(store_url) as theirs:
            ok(theirs.append([wallet("p1"), buy("p1", 1000, ref="pay-a"), buy("p1", 5, ref="pay-b")]))
        # Trusting the warm wallet would add only the event after version 2 (105).
        assert one(mine, quote("c1", "p1", at(1), commission=1000)).status == "recorded"
        assert mine._warm[wallet_id("p1")].balance == 5


# --- judging on warm state without reading (the writer's known head) ----------------


def test_a_warm_writer_judges_without_reading_and_knows_the_head(store_url, monkeypatch):
    with Ledger.from_url(store_url) as mine:
        ok(mine.append([wallet("p1"), buy("p1", 5000)]))
        head, _ = chain_store.recorded_head(mine._open()[0].factory.datastore, mine.config.kind == "sqlite")
        assert mine._known_head == head  # its commit chained onto the head its reads saw

        def no_reads(*args, **kwargs):
            raise AssertionError("a warm writer read the store before judging")

        monkeypatch.setattr(Ledger, "_unit_of_work", no_reads)
        # A new contact (taken as absent: checked by the write) on a warm wallet.
        assert one(mine, quote("c1", "p1", at(1), commission=700)).status == "recorded"
        assert mine._warm[wallet_id("p1")].balance == 4300
    assert Ledger.from_url(store_url).balances(pro_id="p1")[0]["balance"] == 4300


def test_a_resent_submission_is_a_duplicate_for_a_warm_writer(store_url):
    """Warm state holds no receipts: a resend the other writer recorded is found by
    the receipt's primary key (accepted on warm state) or by a read (refused on it)."""
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), buy("p1", 1000)]))
        first, second = quote("c1", "p1", at(1), commission=600), quote("c2", "p1", at(1), commission=400)
        recorded = ok(theirs.append([first]))[0].recorded
        ok(mine.append([buy("p1", 1, t=at(1, 1), ref="pay-x")]))  # mine is level again, and warm
        again = one(mine, first)  # on warm state: a new contact, funds enough; the receipt says otherwise
        assert again.status == "duplicate" and again.recorded == recorded
        ok(theirs.append([second]))
        ok(mine.append([buy("p1", 1, t=at(1, 2), ref="pay-y")]))
        assert mine._warm[wallet_id("p1")].balance == 2
        assert one(mine, second).status == "duplicate"  # on warm state c2 exists: refused, then found
        # The same beside a write: the write checks that the refused one has no receipt.
        results = mine.append([buy("p1", 3, t=at(1, 3), ref="pay-z"), second])
        assert [r.status for r in results] == ["recorded", "duplicate"]
    with Ledger.from_url(store_url) as reader:
        assert len(list(reader.events())) == 9  # nothing twice


def test_a_terminated_customer_is_never_taken_as_absent(store_url):
    """Customers are not kept warm and usually do not exist: a warm writer takes
    them as absent, and its write checks that they still have no events."""
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1", at(1), customer="bad")]))
        ok(theirs.append([sub("RefundRequested", at(2), contact_id="c1", reason="price_check")]))
        ok(mine.append([buy("p1", 1, t=at(2, 1), ref="pay-2")]))  # level again: the termination is old news
        assert mine._known_head is not None
        refused = one(mine, quote("c2", "p1", at(3), customer="bad"))
        assert refused.status == "rejected" and refused.code == "customer_terminated", refused
        # And with a write beside it in the same group: the group is judged again.
        results = mine.append([quote("c3", "p1", at(3), customer="good"), quote("c4", "p1", at(3), customer="bad")])
        assert [r.status for r in results] == ["recorded", "rejected"]
        assert results[1].code == "customer_terminated"


def test_a_warm_writers_batches_of_every_size_are_written_onto_the_head_at_once(store_url, monkeypatch):
    """A warm writer's batch of up to SMALL_ROWS events and receipts is one
    statement of scalars onto the known head; a larger one is checked under the
    head's lock (PostgreSQL): each size is recorded at the first attempt, and the
    receipts answer resends from the log."""
    from leadledger import postgres_recorder

    def no_reads(*args, **kwargs):
        raise AssertionError("the write onto the known head failed: judged again from the store")

    batches = [[quote(f"c{size}-{i}", "p1", at(size, minutes=i), commission=10) for i in range(size)]
               for size in (1, 3, 5, 12)]
    assert 2 * 3 <= postgres_recorder.SMALL_ROWS < 2 * 5  # one statement, then under the head's lock
    with Ledger.from_url(store_url) as mine:
        ok(mine.append([wallet("p1"), buy("p1", 5000)]))
        monkeypatch.setattr(Ledger, "_unit_of_work", no_reads)
        recorded = [[r.recorded for r in ok(mine.append(batch))] for batch in batches]
        assert mine._warm[wallet_id("p1")].balance == 5000 - 21 * 10
    monkeypatch.undo()
    with Ledger.from_url(store_url) as cold:
        assert [e["type"] for e in cold.events()][2:] == ["QuoteSent", "ContactFeeCharged"] * 21
        for batch, names in zip(batches, recorded):
            again = cold.append(batch)
            assert [r.status for r in again] == ["duplicate"] * len(batch)
            assert [r.recorded for r in again] == names == [("QuoteSent", "ContactFeeCharged")] * len(batch)
        assert cold.balances(pro_id="p1")[0]["balance"] == 5000 - 21 * 10


def test_a_batch_too_large_for_one_pipeline_is_checked_under_the_heads_lock(store_url):
    """Over 2,000 events the write goes page by page (not the one-pipeline insert):
    what the writer judged on is checked there too, while it holds the head. Here
    a refusal judged on a stale wallet beside writes to another wallet, which no
    version check would catch."""
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), wallet("p2"), buy("p2", 11_000)]))
        assert mine._known_head is not None
        ok(theirs.append([buy("p1", 5_000, t=at(0, 1), ref="pay-2")]))
        quotes = [quote(f"c{n}", "p2", at(1), commission=10) for n in range(1_100)]
        # One group (the service's writer): one transaction of 2,201 events.
        [results] = mine.append_group([list(judged([*quotes, quote("big", "p1", at(1), commission=5_000)],
                                                   "key:test"))])
        assert all(r.status == "recorded" for r in results), [r for r in results if r.status != "recorded"][:1]
        assert [r["balance"] for r in mine.balances()] == [0, 0]


# --- a resent file ------------------------------------------------------------------


def test_a_resent_batch_is_answered_from_its_receipts_without_reading_aggregates(store_url, monkeypatch):
    batch = [wallet("p1"), buy("p1", 5000)] + [quote(f"c{i}", "p1", at(1, minutes=i), commission=10)
                                                for i in range(20)]
    with Ledger.from_url(store_url) as first:
        recorded = [r.recorded for r in ok(first.append(batch))]
    import leadledger.application as application

    def no_loads(*args, **kwargs):
        raise AssertionError("a duplicate's aggregates were read")

    monkeypatch.setattr(application, "load_many", no_loads)
    with Ledger.from_url(store_url) as cold:  # another process sends the same file again
        again = cold.append(batch)
        assert [r.status for r in again] == ["duplicate"] * len(batch)
        assert [r.recorded for r in again] == recorded
        # The same event_id with other content (SPEC 3): refused from the receipt alone.
        changed = dict(batch[-1], commission=11)
        conflict = one(cold, changed)
        assert (conflict.status, conflict.code) == ("rejected", "event_id_conflict")


def test_after_a_batch_of_resends_the_next_batch_is_not_judged_on_a_guess(store_url, monkeypatch):
    """A warm writer's guess fails on a resent submission (its receipt): a file sent
    again would be judged twice per batch. One failed guess, then reads, until a
    batch has no resend."""
    chunks = [[quote(f"c{n}-{i}", "p1", at(1, minutes=n * 10 + i), commission=10) for i in range(5)]
              for n in range(4)]
    with Ledger.from_url(store_url) as mine:
        ok(mine.append([wallet("p1"), buy("p1", 5000)]))
        for chunk in chunks[:3]:
            ok(mine.append(chunk))
        wrong: list[int] = []
        after_wrong_guess = Ledger._after_wrong_guess

        def counted(self, *args, **kwargs):
            wrong.append(1)
            return after_wrong_guess(self, *args, **kwargs)

        monkeypatch.setattr(Ledger, "_after_wrong_guess", counted)
        for chunk in chunks[:3]:  # sent again
            assert {r.status for r in mine.append(chunk)} == {"duplicate"}
        assert len(wrong) == 1
        ok(mine.append(chunks[3]))  # new: judged from the store, then guessing resumes
        ok(mine.append([buy("p1", 1, t=at(9), ref="pay-z")]))
        assert len(wrong) == 1 and mine._guess_next
        assert mine._warm[wallet_id("p1")].balance == 5000 - 20 * 10 + 1


def test_a_batchs_ids_are_named_once_with_the_guesses_the_rules_allow():
    """``ids_named`` (one pass) against the rule as stated: every id a submission names,
    and the cold ones it may take as absent: a QuoteSent's contact and customer, a
    WalletOpened's wallet, any other's customer; customers only when asked."""
    import itertools
    import random
    import sys
    from pathlib import Path

    from leadledger.aggregates import customer_id_to_uuid
    from leadledger.commands import ids_named, ids_touched

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from workload import submissions

    items = [item for _, item, _ in judged(itertools.islice(submissions(40, 6), 300), "test")]
    rng = random.Random(5)
    every = {i for item in items for i in ids_touched(item)}
    warm = {i: object() for i in every if rng.random() < 0.5}
    usually_new = {"QuoteSent": ("contact_id", "customer_id"), "WalletOpened": ("pro_id",)}
    to_id = {"pro_id": wallet_id, "contact_id": contact_id_to_uuid, "customer_id": customer_id_to_uuid}
    for customers in (True, False):
        touched, absent = ids_named(items, warm, customers=customers)
        assert set(touched) == every
        assert all(touched[i] is warm.get(i) for i in every)
        expected = {to_id[name](getattr(item, name)) for item in items
                    for name in usually_new.get(item.type, ("customer_id",))
                    if getattr(item, name, None) and (customers or name != "customer_id")}
        assert absent == {i for i in expected if i not in warm}
        assert any(customer_id_to_uuid(item.customer_id) in absent for item in items
                   if item.type == "QuoteSent") is customers
