"""Strict submissions: anything malformed is invalid_submission naming the field."""

import json

import pytest

from leadledger.errors import Rejection
from leadledger.submissions import SUBMISSION_TYPES, parse_submission
from tests.helpers import buy, courtesy, quote, sub, wallet


def reject(raw):
    with pytest.raises(Rejection) as info:
        parse_submission(raw)
    assert info.value.code == "invalid_submission"
    assert "\n" not in info.value.message
    return info.value.message


def test_all_thirteen_types_are_known():
    assert len(SUBMISSION_TYPES) == 13


@pytest.mark.parametrize("amount", [10.0, 10.5, "10", True, None, 0, -5, 10**13])
def test_amounts_are_positive_integers_only(amount):
    assert reject(buy("p1", 1) | {"amount": amount}).startswith("amount:")


def test_commission_and_management_fee_may_be_zero_but_not_negative():
    parse_submission(quote("c1", "p1", commission=0, management_fee=0))
    assert reject(quote("c1", "p1", commission=-1)).startswith("commission:")
    assert reject(quote("c1", "p1", management_fee=-20)).startswith("management_fee:")
    assert reject(quote("c1", "p1", management_fee=20.0)).startswith("management_fee:")


@pytest.mark.parametrize("when", ["2026-01-05T09:00:00", "2026-01-05", "yesterday", 1767600000])
def test_times_must_be_rfc3339_with_offset(when):
    assert reject(buy("p1", 1) | {"occurred_at": when}).startswith("occurred_at:")


def test_times_are_normalised_to_utc():
    parsed = parse_submission(buy("p1", 1) | {"occurred_at": "2026-01-05T10:00:00+01:00"})
    assert parsed.occurred_at.isoformat() == "2026-01-05T09:00:00+00:00"


@pytest.mark.parametrize("event_id", ["42", "not-a-uuid", "", None, "00000000-0000-0000-0000-000000000000"])
def test_event_id_is_a_uuid(event_id):
    assert reject(buy("p1", 1) | {"event_id": event_id}).startswith("event_id:")


def test_unknown_fields_are_rejected_by_name():
    assert reject(wallet("p1") | {"colour": "blue"}) == "colour: unknown field"
    assert reject(courtesy("p1", 1) | {"issued_by": {"id": "a", "role": "b", "x": 1}}) == "issued_by.x: unknown field"


def test_missing_fields_and_unknown_types():
    raw = wallet("p1")
    del raw["region"]
    assert reject(raw) == "region: required field missing"
    assert reject(sub("Nope", "2026-01-05T09:00:00Z")) == "type: unknown submission type 'Nope'"
    assert reject({"event_id": "x"}) == "type: required field missing"


@pytest.mark.parametrize("text", ["", "{", "[1,2]", "42", "null"])
def test_not_an_object(text):
    reject(text)


def test_enumerations():
    assert reject(quote("c1", "p1", pricing="per_click")).startswith("pricing:")
    assert reject(sub("CustomerReplied", "2026-01-05T09:00:00Z", contact_id="c", channel="fax")).startswith("channel:")
    assert reject(sub("CallAttemptFailed", "2026-01-05T09:00:00Z", contact_id="c", reason="x")).startswith("reason:")
    assert reject(wallet("p1", region="West Virginia")).startswith("region:")


def test_json_text_and_dict_are_judged_alike():
    raw = quote("c1", "p1")
    assert parse_submission(raw) == parse_submission(json.dumps(raw))
