"""Submissions: what other services send. Strict, one model per type.

Every submission is validated from its JSON text, so the Python API and the
CLI accept exactly the same things: integers only for amounts (no floats, no
numeric strings, no booleans), timezone-aware times, UUID event ids, and no
field the type does not define.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import jiter
import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from leadledger.errors import INVALID_SUBMISSION, Rejection
from leadledger.limits import (  # re-exported: the contract's limits live there, pydantic-free
    EARLIEST,
    LATEST,
    MAX_AMOUNT,
    MAX_DURATION_SECONDS,
    MAX_IDENTIFIER_CHARS,
    MAX_LINE_BYTES,
    within_range,
)
from leadledger.timefmt import to_utc

# Unicode categories an identifier may not hold: controls (NUL included),
# format characters (zero-width spaces and joiners, bidi overrides),
# surrogates, private use, unassigned, and line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def one_spelling(value: str | None) -> str | None:
    """An id as the ledger records it: NFC-normalised (``check_identifier``), so a read
    finds it in either spelling of its accents. Nothing else is checked: a read of an
    id no submission could hold finds nothing."""
    if not isinstance(value, str) or value.isascii():
        return value
    return unicodedata.normalize("NFC", value)


def check_identifier(value: str) -> str:
    """An id names a pro, a contact, a payment: printable text, one spelling.

    NFC-normalised (so an accented id typed two ways is one id), case-sensitive,
    at most MAX_IDENTIFIER_CHARS characters, no leading or trailing space, no
    space but U+0020, and no control, format (zero-width, bidi) or unassigned
    characters: such ids cannot be read back, printed or stored everywhere
    (PostgreSQL text refuses NUL).
    """
    if value.isascii() and value.isprintable():
        # The common case, in one C-speed pass: NFC leaves ASCII as it is and the
        # only printable ASCII character of a forbidden kind is none (space is
        # the one Zs allowed).
        if len(value) > MAX_IDENTIFIER_CHARS:
            raise ValueError(f"at most {MAX_IDENTIFIER_CHARS} characters")
        if value[:1] == " " or value[-1:] == " ":
            raise ValueError("leading or trailing white space")
        return value
    value = unicodedata.normalize("NFC", value)  # one_spelling, for reads, says the same
    if len(value) > MAX_IDENTIFIER_CHARS:
        raise ValueError(f"at most {MAX_IDENTIFIER_CHARS} characters")
    if value != value.strip():
        raise ValueError("leading or trailing white space")
    for position, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES or (category == "Zs" and char != " "):
            raise ValueError(
                f"character {position} (U+{ord(char):04X}) is not printable text"
            )
    return value


def _rfc3339_text(value: Any) -> Any:
    """Only RFC 3339 text with an offset: no epoch numbers, no numeric strings."""
    if isinstance(value, datetime):  # the Python API may hand over datetimes
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        if isinstance(value, str) and _RFC3339.match(value + "Z"):
            raise ValueError("has no UTC offset: add Z or +hh:mm (RFC 3339)")
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-01-05T09:00:00Z")
    return datetime.fromisoformat(value.upper())  # ValueError for a 31st of February


def _iso_date_text(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return date.fromisoformat(value)


def _date_in_range(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError(f"must be between {EARLIEST.date()} and {LATEST.date()}")
    return value


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4 * MAX_IDENTIFIER_CHARS),
    AfterValidator(check_identifier),
]
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
NonNegativeAmount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")]
Day = Annotated[date, BeforeValidator(_iso_date_text), AfterValidator(_date_in_range)]
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Person(_Strict):
    id: Identifier
    role: Identifier


def same_person(a: Person, b: Person) -> bool:
    """Ids are case-sensitive keys, but "agent-7" approving "Agent-7" is self-approval."""
    return a.id.casefold() == b.id.casefold()


class _Envelope(_Strict):
    event_id: UUID
    occurred_at: Moment

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            moment = to_utc(value)
        except OverflowError:
            raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}") from None
        if not within_range(moment):
            raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
        return moment

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
    job_date: Day
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
    until: Day


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
        if self.approved_by is not None and same_person(self.approved_by, self.issued_by):
            raise ValueError("approved_by: the approver must be someone other than the issuer")
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


def _json_default(value: Any) -> Any:
    """The Python API may pass datetimes, dates and UUIDs: send them as JSON would."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a naive datetime (no time zone)")
        return value.isoformat()
    if isinstance(value, (date, UUID)):
        return str(value)
    raise TypeError(f"a {type(value).__name__}")


def submission_text(raw: str | bytes | dict[str, Any]) -> str | bytes:
    """The JSON text of one submission, checked for size and encoding."""
    if isinstance(raw, dict):
        try:
            text: str | bytes = json.dumps(raw, default=_json_default, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise Rejection(INVALID_SUBMISSION, f"not JSON-serialisable: {exc}") from None
        size = len(text)
    elif isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejection(INVALID_SUBMISSION, f"not UTF-8 text (byte {exc.start + 1})") from None
        text, size = raw, len(raw)
    elif isinstance(raw, str):
        text, size = raw, len(raw.encode("utf-8", "surrogatepass"))
    else:
        raise Rejection(INVALID_SUBMISSION, f"a submission is a JSON object, not a {type(raw).__name__}")
    if size > MAX_LINE_BYTES:
        raise Rejection(INVALID_SUBMISSION, f"submission is over {MAX_LINE_BYTES:,} bytes")
    return text


def parse_submission(raw: str | bytes | dict[str, Any]) -> Any:
    """Validate one submission; raise Rejection(invalid_submission) naming the field.

    Total over its input: whatever the bytes (deep nesting, 5,000-digit numbers,
    lone surrogates), the answer is a model or a Rejection, never another error.
    """
    text = submission_text(raw)
    try:
        model = _adapter.validate_json(text)
    except ValidationError as exc:
        # Kept past the except block without its traceback: the traceback holds
        # this frame, which holds the error, a cycle only the collector frees
        # (and a bulk append pauses it, ledger/collector.py).
        error = exc.with_traceback(None)
    except (ValueError, RecursionError, OverflowError, UnicodeError) as exc:
        raise Rejection(INVALID_SUBMISSION, f"unreadable: {type(exc).__name__}") from None
    else:
        # pydantic keeps the last of two equal keys; a ledger must not guess which
        # amount was meant. Counting keys needs a second parse (a C-speed one).
        if not isinstance(raw, dict):
            _refuse_duplicate_keys(text)
        return model
    # Only a rejected submission is parsed a second time, to word the message.
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise Rejection(INVALID_SUBMISSION, f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise Rejection(INVALID_SUBMISSION, "not JSON this ledger reads: nested too deep") from None
    except (ValueError, UnicodeError) as exc:
        if "integer string conversion" in str(exc):
            raise Rejection(INVALID_SUBMISSION, "a number of more than 4,300 digits") from None
        raise Rejection(INVALID_SUBMISSION, f"not JSON this ledger reads: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise Rejection(INVALID_SUBMISSION, "a submission is a JSON object")
    type_name = obj.get("type") if isinstance(obj.get("type"), str) else None
    raise Rejection(INVALID_SUBMISSION, _describe(error, type_name))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Rejection(INVALID_SUBMISSION, f"duplicate key {json.dumps(key, ensure_ascii=False)}")
            seen.add(key)
    return obj


def _refuse_duplicate_keys(text: str | bytes) -> None:
    # jiter (pydantic's JSON parser, as a package) finds a repeated key in 3-4 us
    # a line; the json module with a pairs hook took 7-10 us. Only a line with
    # one is parsed again, to word the message as before.
    try:
        jiter.from_json(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text,
                        catch_duplicate_keys=True)
        return
    except ValueError:
        pass
    try:
        json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError, UnicodeError) as exc:  # pydantic read it; be total anyway
        raise Rejection(INVALID_SUBMISSION, f"unreadable: {type(exc).__name__}") from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# The one reading of an event id's text, the submissions' own (pydantic's): upper
# case, braces, "urn:uuid:" and the hyphenless form name the same id. Python's
# UUID() reads more (hyphens anywhere, other scripts' digits: "٠" is a 0).
_event_id_adapter: TypeAdapter[UUID] = TypeAdapter(UUID)


def parse_event_id(value: str | UUID) -> UUID | None:
    """The UUID an event id's text names, as a submission's ``event_id`` is read (a
    UUID itself, as the Python API may pass one in a submission); None when a
    submission would be refused for it."""
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return _event_id_adapter.validate_python(value)
    except ValidationError:
        return None


def event_id_of(raw: str | bytes | dict[str, Any]) -> str | None:
    """Best effort: the event_id a sender used, to echo it back on a rejection.

    A UUID is echoed in its canonical form (lower case, hyphenated), as the
    results of recorded and duplicate submissions give it: a sender matching
    results by event_id finds each whatever form it sent. Any other string is
    echoed as sent (JSON output escapes it), up to 64 characters.
    """
    try:
        obj = raw if isinstance(raw, dict) else json.loads(raw)
        value = obj.get("event_id") if isinstance(obj, dict) else None
        key = parse_event_id(value)  # a UUID too: the Python API may pass one
        if key is not None:
            return str(key)
        return value if isinstance(value, str) and len(value) <= 64 else None
    except Exception:  # noqa: BLE001 - a bad line has no event_id to echo
        return None


def canonical_content(submission: BaseModel) -> str:
    """Content used for idempotency: same event_id + same content = duplicate.

    The text is ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` of the
    JSON dump, as stored receipts were digested; orjson writes the same bytes for
    ASCII content (sorted keys, compact) in a tenth of the time, so the json
    module only runs for content it would escape differently (non-ASCII).
    """
    content = submission.model_dump(mode="json")
    try:
        fast = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        fast = b"\x80"  # e.g. an integer past 64 bits: not ASCII, so the slow path
    if fast.isascii():
        return fast.decode("ascii")
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


def content_sha256(submission: BaseModel) -> str:
    """The idempotency digest a receipt keeps (``Receipt.content_sha256``): SHA-256
    of ``canonical_content``, in hex."""
    return hashlib.sha256(canonical_content(submission).encode("utf-8")).hexdigest()


def json_schema(ref_template: str | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one submission, generated from the models above.
    ``ref_template``: where its definitions go (the service's OpenAPI puts them in
    components/schemas); then the definitions are returned under ``$defs`` to move."""
    if ref_template is not None:
        return _adapter.json_schema(ref_template=ref_template)
    schema = _adapter.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "leadledger submission", **schema}
