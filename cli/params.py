"""Command-line parameter types: times, periods, durations, statuses, markets."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import click

from leadledger import periods
from leadledger.projections.status import STATUSES, status_named


class Timestamp(click.ParamType):
    """RFC 3339 with an offset, or a partial date (day, month, quarter, year) that
    stands for its last microsecond (``end``: --as-of, --to) or its first (--from)."""

    name = "TIME"

    def __init__(self, *, end: bool):
        self.end = end

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return periods.instant(str(value), end=self.end)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class PeriodType(click.ParamType):
    """2026 (a year), 2026-Q1, 2026-01 or 2026-01-31."""

    name = "PERIOD"

    def convert(self, value: Any, param: Any, ctx: Any) -> periods.Period:
        if isinstance(value, periods.Period):
            return value
        try:
            return periods.period(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Duration(click.ParamType):
    """7d, 12h, 30m or 90s."""

    name = "DURATION"
    _UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

    def __init__(self, *, positive: bool = False):
        # A period (serve --sweep-every) must be one: 0s was taken as "never".
        self.positive = positive

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if len(text) >= 2 and text[-1] in self._UNITS and text[:-1].isdigit() and len(text) <= 8:
            duration = timedelta(seconds=int(text[:-1]) * self._UNITS[text[-1]])
            if self.positive and not duration:
                self.fail(f"{value!r} is no period: give 1s or more", param, ctx)
            return duration
        self.fail(f"{value!r} is not a duration like 7d, 12h, 30m or 90s", param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, without nan (every comparison with it is false, so it
    passed the bounds: `serve --max-wait nan` then refused every ?wait=)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Status(click.ParamType):
    """A refund status, spelt as SPEC 5 does or without accents and in any case
    (``Gerer``, ``non permis``, ``TRAITE``), so a terminal without é still works."""

    name = "STATUS"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        found = status_named(str(value))
        if found is None:
            self.fail(f"{value!r} is not a status: one of {', '.join(STATUSES)} "
                      "(accents and case optional)", param, ctx)
        return found

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[" + "|".join(STATUSES) + "]"


def market_choice() -> click.Choice:
    from leadledger.markets import market_names

    return click.Choice(market_names())


def resolve_period(start: datetime | None, end: datetime | None,
                   period: periods.Period | None) -> periods.Period:
    """--period, or --from/--to; both at once is a usage error."""
    if period is not None:
        if start is not None or end is not None:
            raise click.UsageError("give --period or --from/--to, not both")
        return period
    try:
        return periods.Period(start, end)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
