"""Instants and periods as finance writes them: pure parsing, no I/O.

An instant is RFC 3339 with an offset, or a partial date that names a span:
``2026-01-31`` (a day), ``2026-01`` (a month), ``2026-Q1`` (a quarter), ``2026``
(a year). Where an instant is wanted, a span stands for its first microsecond
(``--from``) or its last (``--to``, ``--as-of``), in UTC: ``--as-of 2026-01-31``
is 2026-01-31T23:59:59.999999Z, so it includes everything that occurred that day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from leadledger.limits import EARLIEST, LATEST, within_range
from leadledger.timefmt import format_utc, parse_utc


_SPAN = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})(?:-(?P<day>\d{2}))?|[Qq](?P<quarter>[1-4])))?$")


@dataclass(frozen=True)
class Period:
    """A closed interval of instants [start, end], UTC; either side may be open (None)."""

    start: datetime | None
    end: datetime | None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"the period starts ({format_utc(self.start)}) after it ends "
                             f"({format_utc(self.end)})")

    def describe(self) -> str:
        first = format_utc(self.start) if self.start else "the first event"
        last = format_utc(self.end) if self.end else "now"
        return f"{first} .. {last}"


def span(text: str) -> tuple[datetime, datetime] | None:
    """The first and last microsecond of a day, month, quarter or year; None if
    ``text`` is not such a partial date. Raises ValueError for a bad one (2026-13)."""
    match = _SPAN.match(text.strip())
    if not match:
        return None
    year = int(match["year"])
    if match["quarter"]:
        first = date(year, 3 * int(match["quarter"]) - 2, 1)
        after = _add_months(first, 3)
    elif match["day"]:
        first = date(year, int(match["month"]), int(match["day"]))
        after = first + timedelta(days=1)
    elif match["month"]:
        first = date(year, int(match["month"]), 1)
        after = _add_months(first, 1)
    else:
        first, after = date(year, 1, 1), date(year + 1, 1, 1)
    start = datetime.combine(first, time.min, tzinfo=timezone.utc)
    end = datetime.combine(after - timedelta(days=1), time.max, tzinfo=timezone.utc)
    return start, end


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def instant(text: str, *, end: bool) -> datetime:
    """An instant from RFC 3339 text or a partial date (its last microsecond if
    ``end``, else its first). Raises ValueError, naming the accepted forms."""
    try:
        bounds = span(text)
        moment = (bounds[1] if end else bounds[0]) if bounds else parse_utc(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an RFC 3339 time with offset, nor a date "
                         "(2026-01-31), month (2026-01), quarter (2026-Q1) or year (2026)") from None
    if not within_range(moment):
        raise ValueError(f"{text!r} is outside {EARLIEST.year}-{LATEST.year}")
    return moment


def period(text: str) -> Period:
    """``--period``: a day, month, quarter or year."""
    try:
        bounds = span(text)
    except ValueError:
        bounds = None
    if bounds is None or not within_range(bounds[0]):
        raise ValueError(f"{text!r} is not a period: a year (2026), quarter (2026-Q1), "
                         "month (2026-01) or day (2026-01-31)")
    return Period(*bounds)


def as_instant(value: object, name: str, *, end: bool = True) -> datetime | None:
    """The Python API's time arguments: None, an aware datetime, or text as the CLI
    takes it. Anything else is a TypeError that names the parameter."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name}: a naive datetime has no offset; give tzinfo (e.g. timezone.utc)")
        return value.astimezone(timezone.utc)
    if isinstance(value, str):
        return instant(value, end=end)
    if isinstance(value, date):
        return instant(value.isoformat(), end=end)
    raise TypeError(f"{name} must be a datetime with a timezone or an RFC 3339 string, "
                    f"not {type(value).__name__}")
