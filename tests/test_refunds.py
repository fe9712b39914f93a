"""Refunds, deadlines and refund statuses (SPEC 4.3, 5), on both stores."""

import pytest

from tests.helpers import at, balance, buy, card, cquote, ok, one, quote, refund_row, sub, wallet, when


def refund(contact="c1", reason="wrong_contact_info", t=None):
    return sub("RefundRequested", t or at(2), contact_id=contact, reason=reason)


def pro360(ledger, *extra):
    ok(ledger.append([wallet("p1"), buy("p1", 10000), quote("c1", "p1", commission=1500), *extra]))


def cronoshare(ledger, *extra):
    ok(ledger.append([wallet("p2", "cronoshare"), buy("p2", 500), cquote("c1", "p2", commission=60), *extra]))


def test_pro360_refund_returns_the_whole_fee(ledger):
    pro360(ledger)
    assert one(ledger, refund()).recorded == ("RefundRequested", "QuoteFeeRefunded")
    assert balance(ledger, "p1")["balance"] == 10000


def test_pro360_refused_reasons(ledger):
    pro360(ledger)
    for reason in ("customer_unreachable", "request_resolved", "hired_another_pro", "whatever"):
        assert one(ledger, refund(reason=reason)).code == "refund_not_allowed"
    assert balance(ledger, "p1")["balance"] == 8500


def test_terminating_reasons_terminate_the_customer(ledger):
    for reason in ("suspected_recruitment", "suspected_advertisement", "price_check"):
        ledger_ok = ledger.append([wallet(f"p-{reason}"), buy(f"p-{reason}", 5000),
                                   quote(f"c-{reason}", f"p-{reason}", customer=f"cus-{reason}")])
        ok(ledger_ok)
        result = one(ledger, refund(f"c-{reason}", reason))
        assert result.recorded == ("RefundRequested", "QuoteFeeRefunded", "CustomerTerminated")
        rejected = one(ledger, quote(f"c2-{reason}", f"p-{reason}", at(3), customer=f"cus-{reason}"))
        assert rejected.code == "customer_terminated"


def test_quote_dated_before_termination_is_allowed(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1", customer="bad"),
                      refund("c1", "price_check", at(3))]))
    assert one(ledger, quote("c0", "p1", at(2), customer="bad")).status == "recorded"


def test_at_most_one_refund(ledger):
    pro360(ledger, refund())
    assert one(ledger, refund(t=at(3), reason="price_check")).code == "already_refunded"


def test_no_refund_after_service_confirmed(ledger):
    pro360(ledger, sub("ServiceConfirmed", at(2), contact_id="c1"))
    assert one(ledger, refund(t=at(3))).code == "service_confirmed"


def test_nothing_to_refund_for_uncharged_guaranteed_reply(ledger):
    ok(ledger.append([wallet("p1"), card("p1"),
                      quote("c1", "p1", pricing="guaranteed_reply", commission=2500)]))
    assert one(ledger, refund()).code == "nothing_to_refund"


def test_pro360_window_is_30_calendar_days_from_job_date(ledger):
    # job_date 2026-01-20: requests up to the end of 2026-02-19 (UTC).
    pro360(ledger)
    assert one(ledger, refund(t="2026-02-20T00:00:00Z")).code == "refund_window_closed"
    assert one(ledger, refund(t="2026-02-19T23:59:59Z")).status == "recorded"


def test_cronoshare_refunds_commission_only(ledger):
    cronoshare(ledger)
    assert balance(ledger, "p2")["balance"] == 420
    assert one(ledger, refund(reason="client_hired_another_pro")).status == "recorded"
    assert balance(ledger, "p2")["balance"] == 480  # the 20 management fee stays
    row = refund_row(ledger, "c1", at(3))
    assert (row["charged"], row["refunded"]) == (80, 60)


def test_cronoshare_reasons(ledger):
    cronoshare(ledger)
    assert one(ledger, refund(reason="wrong_contact_info")).code == "refund_not_allowed"
    assert one(ledger, refund(reason="anything_else")).code == "refund_not_allowed"
    ok(ledger.append([cquote(f"k{i}", "p2", at(1, i)) for i in range(3)]))
    for i, reason in enumerate(("client_no_longer_needs", "client_rejected_price", "client_rejected_schedule")):
        assert one(ledger, refund(f"k{i}", reason)).status == "recorded"


def test_client_unresponsive_only_two_days_after_purchase(ledger):
    cronoshare(ledger)  # bought at day 1, 09:00
    assert one(ledger, refund(reason="client_unresponsive", t=at(2, 23))).code == "refund_not_allowed"
    assert one(ledger, refund(reason="client_unresponsive", t=at(3))).status == "recorded"


def test_cronoshare_window_is_60_working_days_minus_spanish_holidays(ledger):
    # Bought Mon 2026-01-05 in Madrid. Counting from the next day, skipping weekends
    # and Epiphany (Tue 2026-01-06, a national holiday), the 60th working day is
    # Tue 2026-03-31 (it would be 03-30 if Epiphany counted): the window ends at its
    # midnight, Madrid time (CEST, UTC+2).
    ok(ledger.append([wallet("p2", "cronoshare"), buy("p2", 500),
                      cquote("c1", "p2", "2026-01-05T10:00:00Z", commission=60)]))
    assert refund_row(ledger, "c1", at(3))["deadline"] == "2026-03-31T22:00:00Z"
    assert one(ledger, refund(reason="client_rejected_price", t="2026-03-31T22:00:00Z")).code == "refund_window_closed"
    assert refund_row(ledger, "c1", "2026-03-31T21:59:59Z")["status"] == "Gérer"
    assert refund_row(ledger, "c1", "2026-03-31T22:00:00Z")["status"] == "Expiré"
    assert one(ledger, refund(reason="client_rejected_price", t="2026-03-31T21:59:59Z")).status == "recorded"


def test_statuses_through_a_contacts_life(ledger):
    cronoshare(ledger)
    assert refund_row(ledger, "c1", at(1, 1))["status"] == "Gérer"
    assert refund_row(ledger, "c1", at(1, 1))["refundable"] == 60
    ok(ledger.append([sub("RefundPostponed", at(2), contact_id="c1", until="2026-01-20")]))
    assert refund_row(ledger, "c1", at(3))["status"] == "Gérer"  # postponed stays here
    ok(ledger.append([refund(reason="client_rejected_price", t=at(10))]))
    assert refund_row(ledger, "c1", at(9))["status"] == "Gérer"  # as of before the refund
    assert refund_row(ledger, "c1", at(11))["status"] == "Rectifier"
    assert refund_row(ledger, "c1", at(11))["refundable"] == 0
    assert refund_row(ledger, "c1", at(200))["status"] == "Traité"  # refunded, window closed


def test_expired_and_confirmed_statuses(ledger):
    pro360(ledger, quote("c2", "p1", at(1, 1)), sub("ServiceConfirmed", at(3), contact_id="c2"))
    assert refund_row(ledger, "c1", "2026-02-20T00:00:00Z")["status"] == "Expiré"
    assert refund_row(ledger, "c2", at(2))["status"] == "Gérer"
    assert refund_row(ledger, "c2", at(4))["status"] == "Traité"


def test_non_permis_until_guaranteed_reply_is_used(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), card("p1"),
                      quote("c1", "p1", pricing="guaranteed_reply", commission=2500),
                      sub("CustomerReplied", at(3), contact_id="c1", channel="message")]))
    assert refund_row(ledger, "c1", at(2))["status"] == "Non permis"
    assert refund_row(ledger, "c1", at(4))["status"] == "Gérer"


def test_rectified_refund_charges_the_refunded_amount_again(ledger):
    cronoshare(ledger, refund(reason="client_rejected_price"))
    assert balance(ledger, "p2")["balance"] == 480
    result = one(ledger, sub("RefundRectified", at(5), contact_id="c1"))
    assert result.recorded == ("RefundRectified", "ContactFeeCharged")
    assert balance(ledger, "p2")["balance"] == 420
    assert refund_row(ledger, "c1", at(6))["status"] == "Traité"
    assert one(ledger, sub("RefundRectified", at(6), contact_id="c1")).code == "already_rectified"
    assert one(ledger, refund(reason="client_rejected_price", t=at(7))).code == "already_refunded"


def test_rectify_needs_a_refund(ledger):
    cronoshare(ledger)
    assert one(ledger, sub("RefundRectified", at(5), contact_id="c1")).code == "not_refunded"


def test_postpone_is_cronoshare_only_and_within_the_window(ledger):
    pro360(ledger)
    assert one(ledger, sub("RefundPostponed", at(2), contact_id="c1", until="2026-01-10")).code == "refund_not_allowed"
    ok(ledger.append([wallet("p2", "cronoshare"), buy("p2", 500), cquote("k1", "p2")]))
    assert one(ledger, sub("RefundPostponed", at(2), contact_id="k1", until="2026-12-31")).code == "refund_window_closed"


def test_unknown_contact(ledger):
    assert one(ledger, refund("nope")).code == "contact_not_found"


def test_confirmed_twice_and_after_refund(ledger):
    pro360(ledger, quote("c2", "p1", at(1, 1)), refund("c2"))
    ok(ledger.append([sub("ServiceConfirmed", at(3), contact_id="c1")]))
    assert one(ledger, sub("ServiceConfirmed", at(4), contact_id="c1")).code == "service_confirmed"
    assert one(ledger, sub("ServiceConfirmed", at(4), contact_id="c2")).code == "already_refunded"


class TestUnreadSweep:
    def test_unread_manual_quote_is_refunded_after_48h(self, ledger):
        pro360(ledger)  # quote sent at day 1, 09:00
        assert ledger.sweep(when(at(3, 0, -1))) == []  # 47h59
        [result] = ledger.sweep(when(at(3)))
        assert result.recorded == ("QuoteFeeRefunded",)
        assert balance(ledger, "p1")["balance"] == 10000
        assert ledger.sweep(when(at(4))) == []  # idempotent
        [event] = [e for e in ledger.events() if e["type"] == "QuoteFeeRefunded"]
        assert (event["reason"], event["occurred_at"]) == ("unread_48h", at(3))

    def test_read_in_time_prevents_it(self, ledger):
        pro360(ledger, sub("QuoteRead", at(2, 23), contact_id="c1"))
        assert ledger.sweep(when(at(5))) == []

    def test_reply_in_time_prevents_it(self, ledger):
        pro360(ledger, sub("CustomerReplied", at(2), contact_id="c1", channel="message"))
        assert ledger.sweep(when(at(5))) == []

    def test_read_after_the_deadline_does_not(self, ledger):
        pro360(ledger, sub("QuoteRead", at(3, 1), contact_id="c1"))
        assert len(ledger.sweep(when(at(5)))) == 1

    def test_late_read_after_refund_is_recorded_and_moves_no_money(self, ledger):
        pro360(ledger)
        ledger.sweep(when(at(4)))
        result = one(ledger, sub("QuoteRead", at(2), contact_id="c1"))  # dated before the deadline
        assert result.recorded == ("QuoteRead",)
        assert balance(ledger, "p1")["balance"] == 10000
        assert ledger.sweep(when(at(6))) == []

    def test_guaranteed_reply_and_cronoshare_are_never_swept(self, ledger):
        cronoshare(ledger, card("p2"))
        ok(ledger.append([wallet("p1"), card("p1"), quote("g1", "p1", pricing="guaranteed_reply")]))
        assert ledger.sweep(when(at(30))) == []


@pytest.fixture
def frozen(ledger):
    """freeze_time for this ledger: datetimes made under it are freezegun's
    FakeDatetime, which the store's JSON transcoder learns to write as it writes
    any datetime (a test-only registration)."""
    from eventsourcing.persistence import DatetimeAsISO
    from freezegun import freeze_time
    from freezegun.api import FakeDatetime

    class FakeDatetimeAsISO(DatetimeAsISO):
        type = FakeDatetime

    app, _ = ledger._open()
    app.mapper.transcoder.register(FakeDatetimeAsISO())
    return freeze_time


class TestClockDefaults:
    """Without --now / --as-of the clock decides; freezegun stands in for it."""

    def test_a_sweep_may_not_run_ahead_of_the_clock(self, ledger, frozen):
        """`sweep --now` later than the clock recorded a refund before it fell due (and
        it stood when the quote was then read in time): refused as a submission
        from the future is, nothing recorded; within the clock's skew it runs."""
        from leadledger.errors import Rejection

        pro360(ledger)  # quote sent at day 1, 09:00: due at day 3, 09:00
        with frozen(when(at(2))):
            with pytest.raises(Rejection) as refused:
                ledger.sweep(when(at(5)))
            assert refused.value.code == "occurred_in_future"
            assert ledger.sweep(when(at(2, 0, 4))) == []  # 4 minutes ahead: within the skew
            ok(ledger.append([sub("QuoteRead", at(2, 0, 1), contact_id="c1")]))  # read in time
        with frozen(when(at(5))):
            assert ledger.sweep() == []  # nothing was due: the quote was read before day 3
        assert balance(ledger, "p1")["balance"] == 8500  # the fee stays charged: no refund

    def test_sweep_without_now_uses_the_clock(self, ledger, frozen):
        pro360(ledger)  # quote sent at day 1, 09:00: due at day 3, 09:00
        with frozen(when(at(3, 0, -1))):
            assert ledger.sweep() == []
        with frozen(when(at(3))):
            assert len(ledger.sweep()) == 1
        assert balance(ledger, "p1")["balance"] == 10000

    def test_refund_statuses_without_as_of_are_judged_now(self, ledger, frozen):
        pro360(ledger)
        ok(ledger.append([sub("QuoteRead", at(1, 1), contact_id="c1")]))
        with frozen("2026-02-19T23:59:59Z"):
            assert [r["status"] for r in ledger.refunds()] == ["Gérer"]
        with frozen("2026-02-20T00:00:00Z"):
            assert [r["status"] for r in ledger.refunds()] == ["Expiré"]
