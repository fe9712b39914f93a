"""Hypothesis strategies for hostile submissions, shared by the fuzz test and
``benchmarks/fuzz.py``: raw bytes, and near-valid JSON with one field spoiled
(huge or negative numbers, NaN, deep nesting, NUL and odd unicode in ids, long
lines, non-UTF-8, duplicated keys, internal-looking event ids)."""

from __future__ import annotations

import json
import uuid

from hypothesis import strategies as st

from leadledger.aggregates import contact_id_to_uuid, wallet_id
from leadledger.commands import UnreadRefundDue
from leadledger.timefmt import parse_utc

VALID = {
    "type": "CreditsPurchased", "event_id": "5f1c0f5e-0000-4000-8000-000000000001",
    "occurred_at": "2026-01-05T10:00:00Z", "pro_id": "pro-fuzz", "amount": 500, "payment_ref": "pay-1",
}
ODD_TEXT = st.sampled_from(["\u0000", "\u200b", "\u202e", "\ufeff", "\ud800", "e\u0301", "\n", " ",
                            "\u2028", "\U0001f600", "x" * 200, "", "\\", '"'])
SPOILED_VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(float("nan")), st.just(float("inf")), st.floats(allow_nan=True),
    st.text(max_size=40), ODD_TEXT.map(lambda t: f"id{t}"), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["1769767200", "0", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "2026-02-30T00:00:00Z", "2099-01-01T00:00:00Z", "2026-01-05T10:00:00"]),
    st.sampled_from([str(wallet_id("pro-fuzz")), str(contact_id_to_uuid("ct-1")),
                     str(UnreadRefundDue("ct-1", parse_utc("2026-01-07T10:00:00Z")).event_id),
                     str(uuid.UUID(int=0))]),
)


def _spoil(field_and_value: tuple[str, object]) -> bytes:
    field, value = field_and_value
    submission = dict(VALID, event_id=str(uuid.uuid4()))
    submission[field] = value
    return json.dumps(submission, ensure_ascii=False).encode("utf-8", "surrogatepass")


NEAR_VALID = st.tuples(st.sampled_from([*VALID, "extra"]), SPOILED_VALUES).map(_spoil)
STRUCTURAL = st.one_of(
    st.integers(1, 120_000).map(lambda n: b"[" * n),
    st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(4000, 6000).map(lambda n: json.dumps(dict(VALID))[:-1].encode() + b', "amount": ' + b"9" * n + b"}"),
    st.just(json.dumps(VALID)[:-1].encode() + b', "amount": 7}'),  # a duplicated key
    st.just(b'{"type": "WalletOpened", "pro_id": "\xff\xfe\xfd"}'),
    st.integers(70_000, 200_000).map(lambda n: b"x" * n),
)
HOSTILE_LINE = st.one_of(st.binary(max_size=300).filter(lambda b: b"\n" not in b), NEAR_VALID, STRUCTURAL)
