"""One way to write times and dates, so read models compare byte for byte."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """An aware instant as whole microseconds since the epoch (exact: no float)."""
    return (moment - EPOCH) // ONE_US


def from_epoch_us(microseconds: int) -> datetime:
    """The UTC instant ``epoch_us`` gave."""
    return EPOCH + microseconds * ONE_US


def to_utc(moment: datetime) -> datetime:
    assert moment.tzinfo is not None, "naive datetimes never enter the ledger"
    return moment.astimezone(timezone.utc)


def format_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are some."""
    if moment.tzinfo is not timezone.utc:
        moment = to_utc(moment)
    # isoformat is strftime's text (4-digit years in the ledger's range, 6-digit
    # microseconds only when there are some) at a third of the cost.
    text = moment.isoformat()
    assert text.endswith("+00:00"), text
    return text[:-6] + "Z"


def sortable_utc(moment: datetime) -> str:
    """Fixed-width UTC text: lexical order is time order (read-model columns)."""
    if moment.tzinfo is not timezone.utc:
        moment = to_utc(moment)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # strftime's text, faster


def parse_utc(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset; reject naive ones."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no offset")
    return to_utc(moment)


def sortable_to_rfc3339(text: str) -> str:
    return format_utc(parse_utc(text))
