"""Wallets, purchases, advances and balances (SPEC 2, 3, 4.1), on both stores."""

from tests.helpers import at, balance, buy, cquote, ok, one, quote, sub, wallet, when


def test_wallet_records_market_unit_and_policy_version(ledger):
    ok(ledger.append([wallet("p1"), wallet("p2", "cronoshare")]))
    rows = ledger.balances()
    assert [(r["pro_id"], r["market"], r["unit"], r["card_currency"]) for r in rows] == [
        ("p1", "pro360", "USD", "USD"), ("p2", "cronoshare", "CRONO", None)]
    [event] = [e for e in ledger.events() if e["type"] == "WalletOpened" and e["pro_id"] == "p1"]
    assert event["policy_version"] == 1


def test_wallet_cannot_open_twice_or_under_unknown_market(ledger):
    ok(ledger.append([wallet("p1")]))
    assert one(ledger, wallet("p1")).code == "wallet_exists"
    assert one(ledger, wallet("p9", "craigslist")).code == "unknown_market"


def test_purchase_needs_an_open_wallet(ledger):
    assert one(ledger, buy("ghost", 100)).code == "wallet_not_found"
    ok(ledger.append([wallet("p1", t=at(1))]))
    # A purchase dated before the wallet was opened is judged at its own time.
    assert one(ledger, buy("p1", 100, t=at(0))).code == "wallet_not_found"


def test_purchase_credits_wallet(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 2500), buy("p1", 500, at(0, 2))]))
    assert balance(ledger, "p1")["balance"] == 3000


def test_manual_quote_charges_fee_from_wallet(ledger):
    results = ok(ledger.append([wallet("p1"), buy("p1", 2500), quote("c1", "p1", commission=1000)]))
    assert results[-1].recorded == ("QuoteSent", "ContactFeeCharged")
    assert balance(ledger, "p1")["balance"] == 1500


def test_manual_quote_without_funds_is_rejected_where_no_advances(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 999)]))
    result = one(ledger, quote("c1", "p1", commission=1000))
    assert (result.status, result.code) == ("rejected", "insufficient_funds")
    assert balance(ledger, "p1")["balance"] == 999
    assert ledger.refunds(as_of=when(at(5))) == []  # the contact was not recorded either


def test_cronoshare_advances_the_shortfall_then_purchase_repays_it(ledger):
    ok(ledger.append([wallet("p2", "cronoshare"), buy("p2", 30)]))
    result = one(ledger, cquote("c1", "p2", commission=60))  # fee 80, balance 30
    assert result.recorded == ("QuoteSent", "CronosAdvanced", "ContactFeeCharged")
    row = balance(ledger, "p2")
    assert (row["balance"], row["advance_outstanding"]) == (0, 50)
    result = one(ledger, buy("p2", 70, at(2)))
    assert result.recorded == ("CreditsPurchased", "AdvanceRepaid")
    row = balance(ledger, "p2")
    assert (row["balance"], row["advance_outstanding"]) == (20, 0)


def test_purchase_repays_only_up_to_the_outstanding_advance(ledger):
    ok(ledger.append([wallet("p2", "cronoshare"), cquote("c1", "p2", commission=30)]))  # advance 50
    ok(ledger.append([buy("p2", 20, at(2))]))
    row = balance(ledger, "p2")
    assert (row["balance"], row["advance_outstanding"]) == (0, 30)


def test_advance_limit_is_enforced(ledger):
    ok(ledger.append([wallet("p2", "cronoshare")]))
    ok(ledger.append([cquote("c1", "p2", commission=160)]))  # advance 180
    result = one(ledger, cquote("c2", "p2", at(2), commission=10))  # 30 more > 200
    assert result.code == "insufficient_funds"
    ok(ledger.append([cquote("c3", "p2", at(2), commission=0)]))  # 20 more: exactly 200
    assert balance(ledger, "p2")["advance_outstanding"] == 200


def test_late_charge_never_makes_a_later_balance_negative(ledger):
    # 100 bought on day 0, 100 spent on day 3; a charge dated day 2 arriving
    # late would make day 3 go below zero, so it is rejected.
    ok(ledger.append([wallet("p1"), buy("p1", 100), quote("c1", "p1", at(3), commission=100)]))
    assert one(ledger, quote("c2", "p1", at(2), commission=50)).code == "insufficient_funds"
    # With more credits bought later, the later balance stays covered... but not
    # the balance at day 2 itself, which is what the late charge is judged at.
    ok(ledger.append([buy("p1", 50, at(4))]))
    assert one(ledger, quote("c3", "p1", at(2), commission=50)).code == "insufficient_funds"
    ok(ledger.append([quote("c4", "p1", at(5), commission=50)]))


def test_as_of_balance_uses_occurred_at(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 100, at(1)), buy("p1", 50, at(3))]))
    assert balance(ledger, "p1", as_of=when(at(2)))["balance"] == 100
    assert balance(ledger, "p1", as_of=when(at(3)))["balance"] == 150
    assert ledger.balances(as_of=when(at(-1))) == []  # no wallet yet


def test_management_fee_must_equal_the_market_fee(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), wallet("p2", "cronoshare"), buy("p2", 500)]))
    assert one(ledger, quote("c1", "p1", management_fee=5)).code == "invalid_fee"
    assert one(ledger, cquote("c2", "p2") | {"management_fee": 10}).code == "invalid_fee"
    assert one(ledger, quote("c3", "p2", commission=50, management_fee=20)).status == "recorded"


def test_zero_fee_quote_charges_nothing(ledger):
    ok(ledger.append([wallet("p1"), quote("c1", "p1", commission=0)]))
    assert balance(ledger, "p1")["balance"] == 0
    [row] = ledger.refunds(as_of=when(at(2)))
    assert (row["status"], row["charged"]) == ("Non permis", 0)


def test_contact_id_is_unique(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1")]))
    assert one(ledger, quote("c1", "p1", at(2))).code == "contact_exists"


def test_cronoshare_does_not_offer_guaranteed_reply(ledger):
    ok(ledger.append([wallet("p2", "cronoshare"), sub("CardRegistered", at(0, 1), pro_id="p2", card_ref="x")]))
    assert one(ledger, cquote("c1", "p2", pricing="guaranteed_reply")).code == "pricing_not_offered"


def test_shipped_rule_packs_match_spec_section_2():
    from leadledger.markets import current_policy

    pro360, crono = current_policy("pro360"), current_policy("cronoshare")
    assert (pro360.wallet_unit, pro360.card_currency, pro360.management_fee, pro360.advance_limit) == ("USD", "USD", 0, 0)
    assert (crono.wallet_unit, crono.management_fee, crono.advance_limit) == ("CRONO", 20, 200)
    assert pro360.pricing_methods == {"manual", "guaranteed_reply"} and crono.pricing_methods == {"manual"}
    assert (pro360.refund.window_days, pro360.refund.unread_refund_hours) == (30, 48)
    assert (crono.refund.window_days, crono.refund.working_days_calendar) == (60, "ES")
    assert (pro360.calls.free_seconds, pro360.calls.rate_per_started_minute, pro360.calls.max_failed_attempts) == (180, 500, 5)
    assert (pro360.courtesy.limit_without_approval, crono.courtesy.limit_without_approval) == (3500, 35)
    assert (pro360.courtesy.dispute_approval_threshold, crono.courtesy.dispute_approval_threshold) == (25000, 250)
    assert pro360.courtesy.blocked_regions == crono.courtesy.blocked_regions == {"US-WV"}
    assert current_policy("craigslist") is None
