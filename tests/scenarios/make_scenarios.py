"""Author the scenario library: writes <story>/submissions.ndjson and meta.json.

The NDJSON files are the library; this script is how the stories were written
(deterministic event ids, so rerunning it rewrites the same bytes). A line
{"$sweep": T} in submissions.ndjson runs `sweep --now T` at that point.
Goldens are written by `pytest tests/test_scenarios.py --update-goldens`.

    python tests/scenarios/make_scenarios.py
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS = uuid.UUID("2c6bb8f4-9a1e-4c1d-8f3e-5d4c3b2a1f00")


class Story:
    def __init__(self, name: str, description: str, as_of: str):
        self.name, self.description, self.as_of = name, description, as_of
        self.lines: list[dict] = []

    def _eid(self, key: str) -> str:
        return str(uuid.uuid5(NS, f"{self.name}:{key}:{len(self.lines)}"))

    def add(self, type_: str, t: str, **fields) -> dict:
        line = {"type": type_, "event_id": self._eid(type_), "occurred_at": t, **fields}
        self.lines.append(line)
        return line

    def raw(self, line: dict) -> None:
        self.lines.append(line)

    def sweep(self, t: str) -> None:
        self.lines.append({"$sweep": t})

    def wallet(self, pro, market="pro360", region=None, t="2026-01-05T09:00:00Z"):
        return self.add("WalletOpened", t, pro_id=pro, market=market,
                        region=region or ("US-CA" if market == "pro360" else "ES-MD"))

    def buy(self, pro, amount, t, ref=None):
        return self.add("CreditsPurchased", t, pro_id=pro, amount=amount, payment_ref=ref or f"pay-{len(self.lines)}")

    def card(self, pro, t="2026-01-05T09:30:00Z"):
        return self.add("CardRegistered", t, pro_id=pro, card_ref=f"card-{pro}")

    def quote(self, contact, pro, t, commission, fee=0, pricing="manual", customer=None,
              job_date="2026-01-20", category="plumbing"):
        return self.add("QuoteSent", t, contact_id=contact, pro_id=pro, request_id=f"req-{contact}",
                        customer_id=customer or f"cus-{contact}", category=category, job_date=job_date,
                        pricing=pricing, commission=commission, management_fee=fee)

    def c(self, type_, contact, t, **fields):
        return self.add(type_, t, contact_id=contact, **fields)

    def courtesy(self, pro, amount, t, reason="company_error", role="agent", approver=None,
                 fee_ref=None, dispute_amount=None):
        return self.add("CourtesyCreditIssued", t, pro_id=pro, amount=amount, reason=reason,
                        issued_by={"id": f"{role}-1", "role": role},
                        approved_by={"id": f"{approver}-2", "role": approver} if approver else None,
                        fee_ref=fee_ref, dispute_amount=dispute_amount)

    def write(self) -> None:
        folder = HERE / self.name
        folder.mkdir(exist_ok=True)
        (folder / "submissions.ndjson").write_text(
            "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.lines))
        (folder / "meta.json").write_text(json.dumps(
            {"description": self.description, "as_of": self.as_of}, ensure_ascii=False, indent=2) + "\n")


def stories() -> list[Story]:
    out = []

    s = Story("cronoshare_runs_on_advances", "A cronoshare pro buys contacts on advances up to the "
              "200-crono limit; purchases repay the advance first.", "2026-02-01T00:00:00Z")
    s.wallet("bruno", "cronoshare")
    s.buy("bruno", 50, "2026-01-05T10:00:00Z")
    s.quote("k1", "bruno", "2026-01-06T10:00:00Z", 60, 20, job_date="2026-02-01")      # 80: advance 30
    s.quote("k2", "bruno", "2026-01-07T10:00:00Z", 100, 20, job_date="2026-02-01")     # 120: advance 150
    s.quote("k3", "bruno", "2026-01-08T10:00:00Z", 40, 20, job_date="2026-02-01")      # 60: over 200: rejected
    s.quote("k4", "bruno", "2026-01-08T11:00:00Z", 30, 20, job_date="2026-02-01")      # 50: exactly 200
    s.buy("bruno", 120, "2026-01-09T10:00:00Z")                                        # repays 120 of 200
    s.buy("bruno", 300, "2026-01-10T10:00:00Z")                                        # repays 80, keeps 220
    s.quote("k5", "bruno", "2026-01-11T10:00:00Z", 40, 20, job_date="2026-02-01")
    out.append(s)

    s = Story("guaranteed_reply_calls_fail_five_times", "A guaranteed-reply pro: five failed calls "
              "stop the connection; the customer's reply charges the fee to the card and calls resume.",
              "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 1000, "2026-01-05T10:00:00Z")
    s.card("ana")
    s.quote("g1", "ana", "2026-01-06T10:00:00Z", 2500, pricing="guaranteed_reply", job_date="2026-02-01")
    for i in range(5):
        s.c("CallAttemptFailed", "g1", f"2026-01-06T1{i + 1}:00:00Z", reason="busy" if i % 2 else "no_answer")
    s.c("CallAttemptFailed", "g1", "2026-01-07T09:00:00Z", reason="busy")              # calls_stopped
    s.c("CallMinutesBilled", "g1", "2026-01-07T09:30:00Z", call_id="call-1", duration_seconds=200)  # calls_stopped
    s.c("QuoteRead", "g1", "2026-01-07T10:00:00Z")                                      # never charges
    s.c("CustomerReplied", "g1", "2026-01-08T10:00:00Z", channel="callback_accepted")   # fee to the card
    s.c("CallMinutesBilled", "g1", "2026-01-08T11:00:00Z", call_id="call-2", duration_seconds=425)
    s.c("CustomerReplied", "g1", "2026-01-09T10:00:00Z", channel="message")            # nothing more
    out.append(s)

    s = Story("pro360_recruiter_reported", "A pro360 pro reports a recruiter: the whole fee is refunded "
              "and the customer is terminated, so later quotes to them are refused.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.wallet("carl")
    s.buy("ana", 5000, "2026-01-05T10:00:00Z")
    s.buy("carl", 5000, "2026-01-05T10:00:00Z")
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1800, customer="recruiter-9")
    s.quote("c2", "carl", "2026-01-06T11:00:00Z", 1200, customer="recruiter-9")
    s.c("CustomerReplied", "c1", "2026-01-06T12:00:00Z", channel="message")
    s.c("RefundRequested", "c1", "2026-01-07T09:00:00Z", reason="suspected_recruitment")
    s.quote("c3", "carl", "2026-01-08T10:00:00Z", 900, customer="recruiter-9")          # customer_terminated
    s.c("RefundRequested", "c2", "2026-01-08T11:00:00Z", reason="suspected_advertisement")  # already terminated
    out.append(s)

    s = Story("courtesy_escalated_by_supervisor", "Courtesy credits: the first up to the limit by any "
              "agent; a second, or more, or a big dispute, only with a lead or supervisor.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.wallet("bruno", "cronoshare")
    s.courtesy("ana", 2000, "2026-01-06T10:00:00Z")
    s.courtesy("ana", 1000, "2026-01-07T10:00:00Z")                                     # second: approval
    s.courtesy("ana", 1000, "2026-01-07T11:00:00Z", approver="agent")                  # still not
    s.courtesy("ana", 1000, "2026-01-07T12:00:00Z", role="agent", approver="supervisor")
    s.courtesy("bruno", 40, "2026-01-06T10:00:00Z")                                     # over 35
    s.courtesy("bruno", 40, "2026-01-06T11:00:00Z", approver="lead")
    s.courtesy("bruno", 12, "2026-01-08T10:00:00Z", reason="dispute", approver="lead", dispute_amount=240)
    s.courtesy("ana", 1250, "2026-01-09T10:00:00Z", reason="dispute", role="lead", dispute_amount=30000)
    s.courtesy("ana", 1250, "2026-01-09T11:00:00Z", reason="dispute", approver="supervisor", dispute_amount=30000)
    s.courtesy("ana", 500, "2026-01-09T12:00:00Z", reason="dispute", approver="lead")  # no dispute_amount
    out.append(s)

    s = Story("cronoshare_refund_rectified", "A cronoshare refund (commission only) later rectified: "
              "the refunded cronos are charged again; a second refund is refused.", "2026-01-20T00:00:00Z")
    s.wallet("bruno", "cronoshare")
    s.buy("bruno", 200, "2026-01-05T10:00:00Z")
    s.quote("k1", "bruno", "2026-01-06T10:00:00Z", 70, 20, job_date="2026-02-01")
    s.c("RefundPostponed", "k1", "2026-01-07T10:00:00Z", until="2026-01-12")
    s.c("RefundRequested", "k1", "2026-01-12T10:00:00Z", reason="client_no_longer_needs")
    s.c("ServiceConfirmed", "k1", "2026-01-13T10:00:00Z")                                # already_refunded
    s.c("RefundRectified", "k1", "2026-01-14T10:00:00Z")
    s.c("RefundRectified", "k1", "2026-01-15T10:00:00Z")                                 # already_rectified
    s.c("RefundRequested", "k1", "2026-01-16T10:00:00Z", reason="client_rejected_price")  # already_refunded
    out.append(s)

    s = Story("pro360_unread_48h_sweep", "Unread manual quotes are refunded by the sweep 48 h after "
              "sending; a read in time prevents it; a late read moves no money.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 10000, "2026-01-05T10:00:00Z")
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1500)
    s.quote("c2", "ana", "2026-01-06T11:00:00Z", 1200)
    s.quote("c3", "ana", "2026-01-06T12:00:00Z", 900)
    s.c("QuoteRead", "c2", "2026-01-08T10:59:59Z")                                       # just in time
    s.c("QuoteRead", "c3", "2026-01-08T12:00:01Z")                                       # just too late
    s.sweep("2026-01-08T09:59:59Z")                                                      # nothing due yet
    s.sweep("2026-01-09T00:00:00Z")                                                      # c1, c3 refunded
    s.sweep("2026-01-10T00:00:00Z")                                                      # nothing more
    s.c("QuoteRead", "c1", "2026-01-07T09:00:00Z")                                       # late, dated in time
    s.c("RefundRequested", "c1", "2026-01-10T10:00:00Z", reason="wrong_contact_info")    # already_refunded
    out.append(s)

    s = Story("pro360_refund_window", "pro360 refunds must be reported within 30 days of the job date.",
              "2026-02-25T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 10000, "2026-01-05T10:00:00Z")
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1000, job_date="2026-01-10")
    s.quote("c2", "ana", "2026-01-06T11:00:00Z", 1000, job_date="2026-01-10")
    s.quote("c3", "ana", "2026-01-06T12:00:00Z", 1000, job_date="2026-01-25")
    s.c("QuoteRead", "c1", "2026-01-06T13:00:00Z")
    s.c("QuoteRead", "c2", "2026-01-06T13:00:00Z")
    s.c("QuoteRead", "c3", "2026-01-06T13:00:00Z")
    s.c("RefundRequested", "c1", "2026-02-09T23:59:59Z", reason="wrong_submission_info")  # last second
    s.c("RefundRequested", "c2", "2026-02-10T00:00:00Z", reason="wrong_submission_info")  # closed
    s.c("RefundRequested", "c3", "2026-02-20T10:00:00Z", reason="contact_unobtainable")
    out.append(s)

    s = Story("cronoshare_working_days_window", "Cronoshare's 60 working days skip weekends and Spain's "
              "national holidays (Epiphany, Good Friday) and end at midnight in Madrid.", "2026-04-02T00:00:00Z")
    s.wallet("bruno", "cronoshare")
    s.buy("bruno", 500, "2026-01-02T10:00:00Z")
    s.quote("k1", "bruno", "2026-01-05T10:00:00Z", 50, 20, job_date="2026-01-30")
    s.quote("k2", "bruno", "2026-01-05T11:00:00Z", 50, 20, job_date="2026-01-30")
    s.quote("k3", "bruno", "2026-03-02T11:00:00Z", 50, 20, job_date="2026-03-30")
    s.c("RefundRequested", "k1", "2026-03-31T21:59:59Z", reason="client_hired_another_pro")
    s.c("RefundRequested", "k2", "2026-03-31T22:00:00Z", reason="client_hired_another_pro")
    out.append(s)

    s = Story("pro360_refund_reasons", "pro360 refunds: the listed reasons give the whole fee back; "
              "unreachable customers, resolved requests and other pros do not.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 20000, "2026-01-05T10:00:00Z")
    reasons = ["customer_unreachable", "request_resolved", "hired_another_pro", "too_expensive",
               "wrong_contact_info", "contact_unobtainable", "wrong_submission_info", "price_check"]
    for i, reason in enumerate(reasons):
        s.quote(f"c{i}", "ana", f"2026-01-06T1{i}:00:00Z", 1000 + i)
        s.c("QuoteRead", f"c{i}", f"2026-01-06T1{i}:30:00Z")
        s.c("RefundRequested", f"c{i}", f"2026-01-07T1{i}:00:00Z", reason=reason)
    out.append(s)

    s = Story("cronoshare_reasons_and_postponing", "Cronoshare reasons: 'unresponsive' only after two days; "
              "pro360 reasons refused; postponing within the window only.", "2026-01-20T00:00:00Z")
    s.wallet("bruno", "cronoshare")
    s.buy("bruno", 500, "2026-01-05T10:00:00Z")
    s.quote("k1", "bruno", "2026-01-06T10:00:00Z", 40, 20, job_date="2026-02-01")
    s.quote("k2", "bruno", "2026-01-06T11:00:00Z", 40, 20, job_date="2026-02-01")
    s.c("RefundRequested", "k1", "2026-01-08T09:59:59Z", reason="client_unresponsive")   # too early
    s.c("RefundRequested", "k1", "2026-01-08T10:00:00Z", reason="client_unresponsive")
    s.c("RefundRequested", "k2", "2026-01-08T10:00:00Z", reason="wrong_contact_info")    # not cronoshare's
    s.c("RefundPostponed", "k2", "2026-01-08T11:00:00Z", until="2026-12-31")             # beyond the window
    s.c("RefundPostponed", "k2", "2026-01-08T12:00:00Z", until="2026-01-15")
    s.c("RefundRequested", "k2", "2026-01-15T10:00:00Z", reason="client_rejected_schedule")
    out.append(s)

    s = Story("guaranteed_reply_wallet_or_card", "Guaranteed reply charges nothing until a successful "
              "contact; then the wallet if it covers all, else the card, whole.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 3000, "2026-01-05T10:00:00Z")
    s.quote("g0", "ana", "2026-01-05T11:00:00Z", 2000, pricing="guaranteed_reply")        # card_required
    s.card("ana", "2026-01-05T12:00:00Z")
    s.quote("g1", "ana", "2026-01-06T10:00:00Z", 2000, pricing="guaranteed_reply")
    s.quote("g2", "ana", "2026-01-06T11:00:00Z", 2000, pricing="guaranteed_reply")
    s.c("QuoteRead", "g1", "2026-01-06T12:00:00Z")
    s.c("CustomerReplied", "g1", "2026-01-07T10:00:00Z", channel="message")              # wallet 3000 -> 1000
    s.c("CallMinutesBilled", "g2", "2026-01-07T11:00:00Z", call_id="x1", duration_seconds=179)  # card 2000, 0 minutes
    s.c("CallMinutesBilled", "g2", "2026-01-07T12:00:00Z", call_id="x1", duration_seconds=240)  # call_exists
    s.c("CallMinutesBilled", "g2", "2026-01-07T12:30:00Z", call_id="x2", duration_seconds=241)  # 2 minutes
    s.quote("g3", "ana", "2026-01-07T12:40:00Z", 1000, pricing="guaranteed_reply")
    s.c("CustomerReplied", "g3", "2026-01-07T13:00:00Z", channel="call")                # exactly covered: wallet
    s.c("RefundRequested", "g2", "2026-01-08T10:00:00Z", reason="contact_unobtainable")  # card fee back to wallet
    out.append(s)

    s = Story("west_virginia_no_courtesy", "No courtesy credit in West Virginia, whoever approves.",
              "2026-01-20T00:00:00Z")
    s.wallet("wes", region="US-WV")
    s.wallet("ana")
    s.courtesy("wes", 500, "2026-01-06T10:00:00Z")
    s.courtesy("wes", 500, "2026-01-06T11:00:00Z", approver="supervisor")
    s.courtesy("ana", 500, "2026-01-06T12:00:00Z")
    out.append(s)

    s = Story("idempotent_retries", "A sender retries: the same event_id and content is a duplicate; "
              "other content is a conflict; malformed lines are refused.", "2026-01-20T00:00:00Z")
    w = s.wallet("ana")
    b = s.buy("ana", 5000, "2026-01-05T10:00:00Z")
    s.raw(dict(b))                                                                       # duplicate
    s.raw(dict(b) | {"occurred_at": "2026-01-05T11:00:00+01:00"})                        # same instant
    s.raw(dict(b) | {"amount": 6000})                                                    # conflict
    s.raw(dict(w))
    s.raw({"type": "CreditsPurchased", "event_id": "not-a-uuid", "occurred_at": "2026-01-05T10:00:00Z",
           "pro_id": "ana", "amount": 1, "payment_ref": "x"})
    s.raw({"type": "CreditsPurchased", "event_id": s._eid("float"), "occurred_at": "2026-01-05T10:00:00Z",
           "pro_id": "ana", "amount": 12.5, "payment_ref": "x"})
    s.raw({"type": "CreditsPurchased", "event_id": s._eid("naive"), "occurred_at": "2026-01-05T10:00:00",
           "pro_id": "ana", "amount": 1, "payment_ref": "x"})
    s.raw({"type": "CreditsPurchased", "event_id": s._eid("extra"), "occurred_at": "2026-01-05T10:00:00Z",
           "pro_id": "ana", "amount": 1, "payment_ref": "x", "note": "hi"})
    s.buy("ana", 1, "2026-01-05T12:00:00Z")
    out.append(s)

    s = Story("late_and_out_of_order", "Submissions arrive late: each is judged at its own time, and a "
              "late charge may not push a later balance below zero.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 2000, "2026-01-06T10:00:00Z")
    s.quote("c2", "ana", "2026-01-09T10:00:00Z", 2000)                                   # spends it all
    s.quote("c1", "ana", "2026-01-08T10:00:00Z", 500)                                    # late: refused
    s.buy("ana", 500, "2026-01-07T10:00:00Z")                                            # late purchase
    s.quote("c1", "ana", "2026-01-08T10:00:00Z", 500)                                    # same, now covered
    s.buy("ana", 100, "2026-01-04T10:00:00Z")                                            # before the wallet
    s.c("QuoteRead", "c2", "2026-01-08T10:00:00Z")                                       # before the quote
    out.append(s)

    s = Story("fee_credit_missed_appointment", "A credit for a fee needs that fee charged to this pro "
              "and not refunded.", "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.wallet("carl")
    s.buy("ana", 5000, "2026-01-05T10:00:00Z")
    s.buy("carl", 5000, "2026-01-05T10:00:00Z")
    s.card("ana")
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 800)
    s.quote("c2", "carl", "2026-01-06T10:00:00Z", 800)
    s.quote("g1", "ana", "2026-01-06T11:00:00Z", 800, pricing="guaranteed_reply")
    s.quote("c3", "ana", "2026-01-06T12:00:00Z", 800)
    s.c("QuoteRead", "c1", "2026-01-06T13:00:00Z")
    s.c("RefundRequested", "c3", "2026-01-07T10:00:00Z", reason="wrong_contact_info")
    s.courtesy("ana", 800, "2026-01-08T10:00:00Z", reason="missed_appointment_fee", fee_ref="c2")
    s.courtesy("ana", 800, "2026-01-08T10:01:00Z", reason="missed_appointment_fee", fee_ref="g1")
    s.courtesy("ana", 800, "2026-01-08T10:02:00Z", reason="missed_appointment_fee", fee_ref="c3")
    s.courtesy("ana", 800, "2026-01-08T10:03:00Z", reason="missed_appointment_fee")
    s.courtesy("ana", 800, "2026-01-08T10:04:00Z", reason="missed_appointment_fee", fee_ref="c1")
    out.append(s)

    s = Story("confirmed_and_unused", "A confirmed service closes a contact; an unused guaranteed reply "
              "has nothing to refund; a zero fee is never charged.", "2026-03-01T00:00:00Z")
    s.wallet("ana")
    s.buy("ana", 5000, "2026-01-05T10:00:00Z")
    s.card("ana")
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1000)
    s.c("QuoteRead", "c1", "2026-01-06T11:00:00Z")
    s.c("ServiceConfirmed", "c1", "2026-01-09T10:00:00Z")
    s.c("ServiceConfirmed", "c1", "2026-01-09T11:00:00Z")                                # twice
    s.c("RefundRequested", "c1", "2026-01-10T10:00:00Z", reason="price_check")           # service_confirmed
    s.quote("g1", "ana", "2026-01-06T12:00:00Z", 1000, pricing="guaranteed_reply")
    s.c("RefundRequested", "g1", "2026-01-10T10:00:00Z", reason="wrong_contact_info")    # nothing_to_refund
    s.quote("z1", "ana", "2026-01-06T13:00:00Z", 0)
    s.c("RefundRequested", "z1", "2026-01-10T10:00:00Z", reason="wrong_contact_info")    # nothing_to_refund
    out.append(s)

    s = Story("market_rules_refusals", "What the markets refuse: unknown market, second wallet, fee "
              "mismatch, guaranteed reply where not offered, calls on manual quotes, unknown contacts.",
              "2026-01-20T00:00:00Z")
    s.wallet("ana")
    s.wallet("ana")                                                                      # wallet_exists
    s.wallet("zed", "craigslist")                                                        # unknown_market
    s.wallet("bruno", "cronoshare")
    s.buy("ana", 5000, "2026-01-05T10:00:00Z")
    s.buy("bruno", 500, "2026-01-05T10:00:00Z")
    s.card("bruno")
    s.quote("k1", "bruno", "2026-01-06T10:00:00Z", 50, 10, job_date="2026-02-01")        # invalid_fee
    s.quote("k1", "bruno", "2026-01-06T10:00:00Z", 50, 20, pricing="guaranteed_reply")   # pricing_not_offered
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1000, 20)                               # invalid_fee
    s.quote("c1", "ana", "2026-01-06T10:00:00Z", 1000)
    s.quote("c1", "ana", "2026-01-06T11:00:00Z", 1000)                                   # contact_exists
    s.c("CallAttemptFailed", "c1", "2026-01-06T12:00:00Z", reason="busy")                # calls_not_offered
    s.c("QuoteRead", "nobody", "2026-01-06T12:00:00Z")                                   # contact_not_found
    s.buy("ghost", 100, "2026-01-06T12:00:00Z")                                          # wallet_not_found
    s.c("RefundRectified", "c1", "2026-01-07T10:00:00Z")                                 # not_refunded
    out.append(s)
    return out


if __name__ == "__main__":
    for story in stories():
        story.write()
    print(f"wrote {len(stories())} scenarios under {HERE}")
