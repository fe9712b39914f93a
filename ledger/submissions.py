"""Submissions: what other services send. Strict, one model per type.

Every submission is validated from its JSON text, so the Python API and the
CLI accept exactly the same things: integers only for amounts (no floats, no
numeric strings, no booleans), timezone-aware times, UUID event ids, and no
field the type does not define.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.errors import INVALID_SUBMISSION, Rejection
from ledger.timefmt import to_utc

# Explicit limits (TigerBeetle style): an amount beyond this is a typo, not a
# purchase, and sums of many of them still fit a signed 64-bit column.
MAX_AMOUNT = 10**12
MAX_DURATION_SECONDS = 7 * 24 * 3600
MAX_LINE_BYTES = 64 * 1024

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, strip_whitespace=False)
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
NonNegativeAmount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Person(_Strict):
    id: Identifier
    role: Identifier


class _Envelope(_Strict):
    event_id: UUID
    occurred_at: AwareDatetime

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_validator("event_id")
    @classmethod
    def _not_nil(cls, value: UUID) -> UUID:
        if value.int == 0:
            raise ValueError("the nil UUID is not an event id")
        return value


class WalletOpened(_Envelope):
    type: Literal["WalletOpened"]
    pro_id: Identifier
    market: Identifier
    region: Region


class CreditsPurchased(_Envelope):
    type: Literal["CreditsPurchased"]
    pro_id: Identifier
    amount: Amount
    payment_ref: Identifier


class CardRegistered(_Envelope):
    type: Literal["CardRegistered"]
    pro_id: Identifier
    card_ref: Identifier


class QuoteSent(_Envelope):
    type: Literal["QuoteSent"]
    contact_id: Identifier
    pro_id: Identifier
    request_id: Identifier
    customer_id: Identifier
    category: Identifier
    job_date: date
    pricing: Literal["manual", "guaranteed_reply"]
    commission: NonNegativeAmount
    management_fee: NonNegativeAmount


class QuoteRead(_Envelope):
    type: Literal["QuoteRead"]
    contact_id: Identifier


class CustomerReplied(_Envelope):
    type: Literal["CustomerReplied"]
    contact_id: Identifier
    channel: Literal["message", "call", "callback_accepted"]


class CallAttemptFailed(_Envelope):
    type: Literal["CallAttemptFailed"]
    contact_id: Identifier
    reason: Literal["busy", "no_answer"]


class CallMinutesBilled(_Envelope):
    type: Literal["CallMinutesBilled"]
    contact_id: Identifier
    call_id: Identifier
    duration_seconds: Annotated[int, Field(ge=0, le=MAX_DURATION_SECONDS)]


class RefundRequested(_Envelope):
    type: Literal["RefundRequested"]
    contact_id: Identifier
    reason: Identifier


class RefundPostponed(_Envelope):
    type: Literal["RefundPostponed"]
    contact_id: Identifier
    until: date


class ServiceConfirmed(_Envelope):
    type: Literal["ServiceConfirmed"]
    contact_id: Identifier


class RefundRectified(_Envelope):
    type: Literal["RefundRectified"]
    contact_id: Identifier


class CourtesyCreditIssued(_Envelope):
    type: Literal["CourtesyCreditIssued"]
    pro_id: Identifier
    amount: Amount
    reason: Literal[
        "missed_appointment_fee", "loss_protection_opt_out", "company_error", "dispute"
    ]
    issued_by: Person
    approved_by: Person | None = None
    fee_ref: Identifier | None = None
    dispute_amount: Amount | None = None

    @model_validator(mode="after")
    def _reason_needs(self) -> "CourtesyCreditIssued":
        if self.reason == "dispute" and self.dispute_amount is None:
            raise ValueError("dispute_amount: required when reason is dispute")
        if self.reason == "missed_appointment_fee" and self.fee_ref is None:
            raise ValueError("fee_ref: required when reason is missed_appointment_fee")
        return self


Submission = Annotated[
    Union[
        WalletOpened,
        CreditsPurchased,
        CardRegistered,
        QuoteSent,
        QuoteRead,
        CustomerReplied,
        CallAttemptFailed,
        CallMinutesBilled,
        RefundRequested,
        RefundPostponed,
        ServiceConfirmed,
        RefundRectified,
        CourtesyCreditIssued,
    ],
    Field(discriminator="type"),
]

SUBMISSION_TYPES = tuple(
    model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for model in Submission.__origin__.__args__  # type: ignore[attr-defined]
)

_adapter: TypeAdapter[Any] = TypeAdapter(Submission)


def _describe(error: ValidationError, type_name: str | None) -> str:
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if loc and loc[0] == type_name:
        loc = loc[1:]
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        return f"{'.'.join(loc)}: unknown field"
    if kind == "missing":
        return f"{'.'.join(loc)}: required field missing"
    if kind == "union_tag_invalid":
        return f"type: unknown submission type {type_name!r}"
    if kind == "union_tag_not_found":
        return "type: required field missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        if ": " in msg and not loc:
            return msg
    where = ".".join(loc) if loc else "submission"
    return f"{where}: {msg}"


def parse_submission(raw: str | bytes | dict[str, Any]) -> Any:
    """Validate one submission; raise Rejection(invalid_submission) naming the field."""
    if isinstance(raw, dict):
        text = json.dumps(raw)
    else:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if len(text.encode("utf-8")) > MAX_LINE_BYTES:
            raise Rejection(INVALID_SUBMISSION, f"submission is over {MAX_LINE_BYTES} bytes")
    try:
        return _adapter.validate_json(text)
    except ValidationError as exc:
        error = exc
    # Only a rejected submission is parsed a second time, to word the message.
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejection(INVALID_SUBMISSION, f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise Rejection(INVALID_SUBMISSION, "a submission is a JSON object")
    type_name = obj.get("type") if isinstance(obj.get("type"), str) else None
    raise Rejection(INVALID_SUBMISSION, _describe(error, type_name))


def event_id_of(raw: str | bytes | dict[str, Any]) -> str | None:
    """Best effort: the event_id a sender used, to echo it back on a rejection."""
    try:
        obj = raw if isinstance(raw, dict) else json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def canonical_content(submission: Any) -> str:
    """Content used for idempotency: same event_id + same content = duplicate."""
    if isinstance(submission, BaseModel):
        data = submission.model_dump(mode="json")
    else:  # internal submissions (the sweep's) are dataclasses
        data = {k: str(v) for k, v in vars(submission).items()}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
