"""Courtesy and dispute credits (SPEC 4.4), on both stores."""

from tests.helpers import at, balance, buy, courtesy, ok, one, quote, sub, wallet


def test_first_credit_up_to_limit_needs_no_approval(ledger):
    ok(ledger.append([wallet("p1")]))
    assert one(ledger, courtesy("p1", 3500)).status == "recorded"
    assert balance(ledger, "p1")["balance"] == 3500


def test_above_limit_needs_lead_or_supervisor(ledger):
    ok(ledger.append([wallet("p1")]))
    assert one(ledger, courtesy("p1", 3501)).code == "approval_required"
    assert one(ledger, courtesy("p1", 3501, approver="agent")).code == "approval_required"
    assert one(ledger, courtesy("p1", 3501, approver="lead")).status == "recorded"


def test_second_credit_needs_approval(ledger):
    ok(ledger.append([wallet("p1"), courtesy("p1", 1000)]))
    assert one(ledger, courtesy("p1", 100, at(3))).code == "approval_required"
    assert one(ledger, courtesy("p1", 100, at(3), approver="supervisor")).status == "recorded"


def test_cronoshare_limit_is_in_cronos(ledger):
    ok(ledger.append([wallet("p2", "cronoshare")]))
    assert one(ledger, courtesy("p2", 36)).code == "approval_required"
    assert one(ledger, courtesy("p2", 35)).status == "recorded"


def test_west_virginia_is_blocked_whoever_approves(ledger):
    ok(ledger.append([wallet("wv", region="US-WV")]))
    for approver in (None, "lead", "supervisor"):
        assert one(ledger, courtesy("wv", 100, approver=approver)).code == "courtesy_blocked_region"
    assert balance(ledger, "wv")["balance"] == 0


def test_dispute_needs_amount_and_approval_above_threshold(ledger):
    ok(ledger.append([wallet("p1"), wallet("p2", "cronoshare")]))
    missing = one(ledger, courtesy("p1", 500, reason="dispute"))
    assert (missing.code, missing.message) == ("invalid_submission", "dispute_amount: required when reason is dispute")
    assert one(ledger, courtesy("p1", 500, reason="dispute", dispute_amount=25001)).code == "approval_required"
    assert one(ledger, courtesy("p1", 500, reason="dispute", dispute_amount=25000)).status == "recorded"
    assert one(ledger, courtesy("p2", 10, reason="dispute", dispute_amount=251)).code == "approval_required"
    assert one(ledger, courtesy("p2", 10, reason="dispute", dispute_amount=251, approver="lead")).status == "recorded"


def test_fee_credit_needs_a_charged_unrefunded_fee_of_this_pro(ledger):
    ok(ledger.append([wallet("p1"), wallet("p3"), buy("p1", 5000), buy("p3", 5000),
                      quote("c1", "p1"), quote("c3", "p3")]))
    missing = one(ledger, courtesy("p1", 500, reason="missed_appointment_fee"))
    assert missing.code == "invalid_submission"
    assert one(ledger, courtesy("p1", 500, reason="missed_appointment_fee", fee_ref="nope")).code == "fee_not_assessed"
    assert one(ledger, courtesy("p1", 500, reason="missed_appointment_fee", fee_ref="c3")).code == "fee_not_assessed"
    assert one(ledger, courtesy("p1", 500, reason="missed_appointment_fee", fee_ref="c1")).status == "recorded"


def test_fee_credit_refused_for_refunded_or_uncharged_fee(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1"),
                      sub("RefundRequested", at(2), contact_id="c1", reason="price_check"),
                      sub("CardRegistered", at(0, 1), pro_id="p1", card_ref="k"),
                      quote("g1", "p1", pricing="guaranteed_reply")]))
    assert one(ledger, courtesy("p1", 500, at(3), reason="missed_appointment_fee", fee_ref="c1")).code == "fee_not_assessed"
    assert one(ledger, courtesy("p1", 500, at(3), reason="missed_appointment_fee", fee_ref="g1")).code == "fee_not_assessed"
