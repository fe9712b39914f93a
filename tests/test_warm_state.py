"""A long-lived Ledger (the service's path) keeps the wallets and contacts it
judged between calls, and brings each one level with the store before the next
decision: another writer's events are applied, and an aggregate whose own last
event is no longer in the log is loaded afresh (issue 9)."""

from __future__ import annotations

from leadledger import Ledger
from leadledger.aggregates import contact_id_to_uuid, wallet_id

from tests.helpers import at, buy, empty_by_hand, guards_off, ok, one, quote, sub, wallet


def test_another_writers_purchase_is_seen_by_the_next_call(store_url):
    with Ledger.from_url(store_url) as mine, Ledger.from_url(store_url) as theirs:
        ok(mine.append([wallet("p1"), buy("p1", 1000)]))
        ok(mine.append([quote("c1", "p1", at(1), commission=600)]))
        held = mine._warm[wallet_id("p1")]
        ok(theirs.append([buy("p1", 500, t=at(1, 1), ref="pay-2")]))
        # 900 is there only with the other writer's purchase; nothing this call
        # records conflicts with it, so a stale wallet would wrongly refuse.
        assert one(mine, quote("c2", "p1", at(2), commission=900)).status == "recorded"
        assert mine._warm[wallet_id("p1")] is held  # kept and brought level, not loaded again
        assert held.balance == 0
        assert mine.balances(pro_id="p1")[0]["balance"] == 0


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
