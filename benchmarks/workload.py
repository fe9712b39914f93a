"""A deterministic synthetic workload: many pros on both markets, buying credits,
sending quotes (manual and guaranteed reply), reading, calling, refunding.

Submissions come out in time order, as a stream: the generator holds only a few
counters, so a million events never sit in memory.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

START = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)  # a Monday; 1.7M submissions stay in the past
NAMESPACE = uuid.UUID("0b6f6f3e-3f6e-4a3b-9a53-2b3f4c5d6e7f")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(map(str, parts))))


def _t(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def submissions(pros: int, rounds: int, seed: int = 7) -> Iterator[str]:
    """``pros`` wallets, then ``rounds`` rounds in which every pro does one thing."""
    rng = random.Random(seed)
    minute = 0.0
    for p in range(pros):
        market = "pro360" if p % 2 == 0 else "cronoshare"
        region = "US-CA" if market == "pro360" else "ES-MD"
        yield json.dumps({"type": "WalletOpened", "event_id": _id("w", p), "occurred_at": _t(minute),
                          "pro_id": f"pro-{p}", "market": market, "region": region})
        yield json.dumps({"type": "CreditsPurchased", "event_id": _id("b0", p), "occurred_at": _t(minute),
                          "pro_id": f"pro-{p}", "amount": 500_000 if market == "pro360" else 5_000,
                          "payment_ref": f"pay-{p}-0"})
        if market == "pro360":
            yield json.dumps({"type": "CardRegistered", "event_id": _id("card", p), "occurred_at": _t(minute),
                              "pro_id": f"pro-{p}", "card_ref": f"card-{p}"})
    contacts = 0
    for r in range(rounds):
        for p in range(pros):
            minute += 0.5
            pro = f"pro-{p}"
            pro360 = p % 2 == 0
            roll = rng.random()
            if roll < 0.05:
                yield json.dumps({"type": "CreditsPurchased", "event_id": _id("b", r, p),
                                  "occurred_at": _t(minute), "pro_id": pro,
                                  "amount": 20_000 if pro360 else 300, "payment_ref": f"pay-{p}-{r}"})
                continue
            contacts += 1
            contact = f"ct-{r}-{p}"
            guaranteed = pro360 and roll < 0.3
            yield json.dumps({"type": "QuoteSent", "event_id": _id("q", contact), "occurred_at": _t(minute),
                              "contact_id": contact, "pro_id": pro, "request_id": f"req-{contact}",
                              "customer_id": f"cus-{rng.randrange(100_000)}", "category": "plumbing",
                              "job_date": (START + timedelta(minutes=minute, days=5)).date().isoformat(),
                              "pricing": "guaranteed_reply" if guaranteed else "manual",
                              "commission": rng.randrange(500, 2500) if pro360 else rng.randrange(10, 60),
                              "management_fee": 0 if pro360 else 20})
            follow = rng.random()
            later = minute + 30
            if guaranteed and follow < 0.7:
                yield json.dumps({"type": "CallMinutesBilled", "event_id": _id("call", contact),
                                  "occurred_at": _t(later), "contact_id": contact, "call_id": f"call-{contact}",
                                  "duration_seconds": rng.randrange(60, 600)})
            elif follow < 0.6:
                yield json.dumps({"type": "QuoteRead", "event_id": _id("read", contact),
                                  "occurred_at": _t(later), "contact_id": contact})
            if follow > 0.9:
                reason = "wrong_contact_info" if pro360 else "client_rejected_price"
                yield json.dumps({"type": "RefundRequested", "event_id": _id("refund", contact),
                                  "occurred_at": _t(later + 60), "contact_id": contact, "reason": reason})
