"""Guaranteed reply, calls and the card (SPEC 4.2), on both stores."""

from tests.helpers import at, balance, buy, card, ok, one, quote, sub, wallet


def gr_quote(contact="c1", pro="p1", t=None, commission=2500):
    return quote(contact, pro, t, pricing="guaranteed_reply", commission=commission)


def reply(contact="c1", t=None, channel="message"):
    return sub("CustomerReplied", t or at(2), contact_id=contact, channel=channel)


def failed(contact="c1", t=None, reason="busy"):
    return sub("CallAttemptFailed", t or at(2), contact_id=contact, reason=reason)


def billed(contact="c1", call="call-1", seconds=0, t=None):
    return sub("CallMinutesBilled", t or at(2), contact_id=contact, call_id=call, duration_seconds=seconds)


def test_guaranteed_reply_needs_a_card(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000)]))
    assert one(ledger, gr_quote()).code == "card_required"
    ok(ledger.append([card("p1")]))
    result = one(ledger, gr_quote())
    assert result.recorded == ("QuoteSent",)  # nothing charged when sending
    assert balance(ledger, "p1")["balance"] == 5000


def test_card_must_be_registered_by_the_quote_time(ledger):
    ok(ledger.append([wallet("p1"), card("p1", at(3))]))
    assert one(ledger, gr_quote(t=at(2))).code == "card_required"


def test_reading_never_charges_first_reply_charges_from_wallet_once(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), card("p1"), gr_quote()]))
    assert one(ledger, sub("QuoteRead", at(1, 2), contact_id="c1")).recorded == ("QuoteRead",)
    assert balance(ledger, "p1")["balance"] == 5000
    assert one(ledger, reply()).recorded == ("CustomerReplied", "ContactFeeCharged")
    assert balance(ledger, "p1")["balance"] == 2500
    assert one(ledger, reply(t=at(3), channel="callback_accepted")).recorded == ("CustomerReplied",)
    assert balance(ledger, "p1")["balance"] == 2500


def test_fee_goes_to_card_whole_when_wallet_is_short(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 2000), card("p1"), gr_quote(commission=2500)]))
    ok(ledger.append([reply()]))
    row = balance(ledger, "p1")
    assert (row["balance"], row["card_charged"]) == (2000, 2500)  # never split
    [event] = [e for e in ledger.events() if e["type"] == "ContactFeeCharged"]
    assert event["paid_from"] == "card"


def test_wallet_that_exactly_covers_the_fee_pays_it(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 2500), card("p1"), gr_quote(commission=2500), reply()]))
    row = balance(ledger, "p1")
    assert (row["balance"], row["card_charged"]) == (0, 0)


def test_connected_call_is_a_successful_contact_and_bills_minutes_to_card(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), card("p1"), gr_quote()]))
    result = one(ledger, billed(seconds=181))
    assert result.recorded == ("CallMinutesBilled", "ContactFeeCharged")
    row = balance(ledger, "p1")
    assert (row["balance"], row["card_charged"]) == (2500, 500)  # 1 started minute beyond 180 s
    ok(ledger.append([billed(call="call-2", seconds=180, t=at(3))]))
    assert balance(ledger, "p1")["card_charged"] == 500  # free 180 s
    ok(ledger.append([billed(call="call-3", seconds=301, t=at(4))]))
    assert balance(ledger, "p1")["card_charged"] == 500 + 3 * 500
    assert balance(ledger, "p1")["balance"] == 2500  # minutes never from the wallet


def test_call_id_is_unique(ledger):
    ok(ledger.append([wallet("p1"), card("p1"), gr_quote(), billed(call="k1")]))
    assert one(ledger, billed(call="k1", t=at(3))).code == "call_exists"


def test_calls_only_for_guaranteed_reply(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1")]))
    assert one(ledger, billed()).code == "calls_not_offered"
    assert one(ledger, failed()).code == "calls_not_offered"


def test_five_failed_attempts_stop_calls_until_the_customer_replies(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), card("p1"), gr_quote()]))
    for i in range(4):
        assert one(ledger, failed(t=at(2, i))).recorded == ("CallAttemptFailed",)
    assert one(ledger, failed(t=at(2, 5))).recorded == ("CallAttemptFailed", "CallConnectionStopped")
    assert one(ledger, failed(t=at(2, 6))).code == "calls_stopped"
    assert one(ledger, billed(t=at(2, 7))).code == "calls_stopped"
    assert balance(ledger, "p1")["balance"] == 5000  # failures never charge
    ok(ledger.append([reply(t=at(3))]))
    assert one(ledger, billed(t=at(3, 1))).status == "recorded"


def test_a_connected_call_breaks_the_run_of_failures(ledger):
    ok(ledger.append([wallet("p1"), card("p1"), gr_quote()]))
    ok(ledger.append([failed(t=at(2, i)) for i in range(4)]))
    ok(ledger.append([billed(t=at(2, 4))]))
    results = ok(ledger.append([failed(t=at(2, 5 + i)) for i in range(4)]))
    assert all(r.recorded == ("CallAttemptFailed",) for r in results)
