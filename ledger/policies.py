"""Small pure functions that make the charging decisions. No I/O, no clock."""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


from leadledger import errors
from leadledger.errors import Rejection
from leadledger.markets import MarketPolicy
from leadledger.limits import LATEST_DECIDED, MAX_WINDOW_DAYS

LATEST_DECIDED_DAY = LATEST_DECIDED.date()


def check_timing(policy: MarketPolicy | None, occurred_at: datetime, now: datetime,
                 max_future_skew: timedelta) -> None:
    """A submission may not come from the future (beyond clock skew), nor, where
    the market bounds it, arrive later than its pack allows."""
    if occurred_at > now + max_future_skew:
        raise Rejection(
            errors.OCCURRED_IN_FUTURE,
            f"occurred_at is more than {int(max_future_skew.total_seconds())} s ahead of the "
            "ledger's clock",
        )
    if policy is not None and policy.max_lateness_days is not None:
        if now - occurred_at > timedelta(days=policy.max_lateness_days):
            raise Rejection(
                errors.TOO_LATE,
                f"{policy.market} accepts submissions at most {policy.max_lateness_days} days "
                "after they occurred",
            )


# --- money -------------------------------------------------------------------


def fund_wallet_charge(
    fee: int, headroom: int, advance_peak: int, advance_limit: int
) -> int:
    """Advance needed to charge ``fee`` from the wallet; 0 when the wallet covers it.

    ``headroom`` is the lowest wallet balance from the charge's time on (a late
    charge must not push any later balance below zero); ``advance_peak`` is the
    highest outstanding advance from then on.
    """
    assert fee > 0 and headroom >= 0 and advance_peak >= 0
    if headroom >= fee:
        return 0
    shortfall = fee - headroom
    if advance_limit > 0 and advance_peak + shortfall <= advance_limit:
        return shortfall
    if advance_limit > 0:
        raise Rejection(
            errors.INSUFFICIENT_FUNDS,
            f"fee {fee} exceeds balance {headroom} and advancing {shortfall} would "
            f"bring the outstanding advance to {advance_peak + shortfall}, over the "
            f"limit of {advance_limit}",
        )
    raise Rejection(errors.INSUFFICIENT_FUNDS, f"fee {fee} exceeds balance {headroom}")


def guaranteed_reply_source(fee: int, headroom: int) -> str:
    """Wallet when it covers all of the fee, otherwise the card, whole (never split)."""
    return "wallet" if headroom >= fee else "card"


def repayment(amount: int, advance_floor: int) -> int:
    """How much of a purchase repays the advance (the lowest outstanding from then on)."""
    assert amount > 0 and advance_floor >= 0
    return min(amount, advance_floor)


def refund_amount(policy: MarketPolicy, commission: int, management_fee: int) -> int:
    if policy.refund.returns == "whole_fee":
        return commission + management_fee
    return commission  # the management fee is never refunded


def billable_minutes(duration_seconds: int, free_seconds: int) -> int:
    """Started minutes beyond the free seconds (a started minute counts whole)."""
    assert duration_seconds >= 0 and free_seconds >= 0
    beyond = max(0, duration_seconds - free_seconds)
    return -(-beyond // 60)


# --- time --------------------------------------------------------------------


@functools.cache
def _calendar(country: str, year: int) -> frozenset[date]:
    # National holidays only: no subdivision is named. Imported here: holidays
    # costs ~70 ms of start-up and only working-day windows need it.
    import holidays

    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_working_day(day: date, country: str) -> bool:
    return day.weekday() < 5 and day not in _calendar(country, day.year)


@functools.lru_cache(maxsize=4096)
def add_working_days(start: date, count: int, country: str) -> date:
    """The ``count``-th working day after ``start`` (``start`` itself not counted)."""
    assert 0 < count <= MAX_WINDOW_DAYS
    day = start
    remaining = count
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day, country):
            remaining -= 1
    return day


@functools.lru_cache(maxsize=4096)  # pure; a deadline per quote asked for it (~14% of a quote's cost)
def end_of_day(day: date, tz_name: str) -> datetime:
    """The instant the day ends in the market's time zone (exclusive bound)."""
    zone = ZoneInfo(tz_name)
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=zone)


def local_date(moment: datetime, tz_name: str) -> date:
    return moment.astimezone(ZoneInfo(tz_name)).date()


def refund_deadline(policy: MarketPolicy, sent_at: datetime, job_date: date) -> datetime:
    """The instant a contact's refund window closes (requests must come before it)."""
    rules = policy.refund
    assert 0 < rules.window_days <= MAX_WINDOW_DAYS
    if rules.window_kind == "calendar_days_from_job_date":
        last_day = job_date + timedelta(days=rules.window_days)
    else:
        purchase_day = local_date(sent_at, policy.timezone)
        last_day = add_working_days(
            purchase_day, rules.window_days, rules.working_days_calendar
        )
    # What replay and verify read back; dates compare in ~30 ns where aware instants
    # in two zones take ~400 (a QuoteSent's): the window closes the next local midnight.
    assert last_day < LATEST_DECIDED_DAY, (policy.market, last_day)
    return end_of_day(last_day, policy.timezone)


def describe_deadline(policy: MarketPolicy, sent_at: datetime, job_date: date) -> dict[str, Any]:
    """How ``refund_deadline`` reaches its instant, in words and dates (for explain):
    the rule, the day counted from, the last day, and for working days every
    weekend day and holiday skipped on the way."""
    rules = policy.refund
    deadline = refund_deadline(policy, sent_at, job_date)
    last_day = deadline.astimezone(ZoneInfo(policy.timezone)).date() - timedelta(days=1)
    described: dict[str, Any] = {"window_days": rules.window_days, "timezone": policy.timezone,
                                 "last_day": last_day.isoformat()}
    if rules.window_kind == "calendar_days_from_job_date":
        described.update(rule=f"{rules.window_days} calendar days from the job date", counted_from=job_date.isoformat(),
                         skipped_weekend_days=0, skipped_holidays=[])
    else:
        country = rules.working_days_calendar
        purchase_day = local_date(sent_at, policy.timezone)
        names: dict[date, str] = {}
        weekend = 0
        day = purchase_day
        while day < last_day:
            day += timedelta(days=1)
            if day.weekday() >= 5:
                weekend += 1
            elif day in _calendar(country, day.year):
                import holidays

                names[day] = holidays.country_holidays(country, years=day.year).get(day) or "holiday"
        described.update(
            rule=f"{rules.window_days} working days from the purchase (Mon-Fri, {country} national holidays skipped)",
            counted_from=purchase_day.isoformat(), skipped_weekend_days=weekend,
            skipped_holidays=[{"date": d.isoformat(), "name": n} for d, n in sorted(names.items())])
    described["closes_at"] = deadline
    return described


def unread_refund_due(policy: MarketPolicy, sent_at: datetime, pricing: str) -> datetime | None:
    hours = policy.refund.unread_refund_hours
    if hours <= 0 or pricing != "manual":
        return None
    assert hours <= 24 * MAX_WINDOW_DAYS, (policy.market, hours)
    return sent_at + timedelta(hours=hours)


# --- refunds -----------------------------------------------------------------


def check_refund_reason(
    policy: MarketPolicy, reason: str, sent_at: datetime, requested_at: datetime
) -> None:
    if reason not in policy.refund.allowed_reasons:
        raise Rejection(
            errors.REFUND_NOT_ALLOWED,
            f"reason {reason!r} does not give a refund on {policy.market}",
        )
    min_days = policy.refund.min_age_days.get(reason, 0)
    if min_days and requested_at < sent_at + timedelta(days=min_days):
        raise Rejection(
            errors.REFUND_NOT_ALLOWED,
            f"reason {reason!r} gives a refund only {min_days} days or more after the purchase",
        )


# --- courtesy credits --------------------------------------------------------


def check_courtesy_approval(
    policy: MarketPolicy,
    amount: int,
    previous_credits: int,
    dispute_amount: int | None,
    approver_role: str | None,
) -> None:
    rules = policy.courtesy
    if amount > rules.max_amount:
        raise Rejection(
            errors.COURTESY_OVER_CEILING,
            f"amount {amount} is over {policy.market}'s ceiling of {rules.max_amount} "
            "for one courtesy credit, whoever approves",
        )
    approved = approver_role is not None and approver_role in rules.approver_roles
    if approved:
        return
    roles = " or ".join(sorted(rules.approver_roles))
    if previous_credits > 0:
        raise Rejection(
            errors.APPROVAL_REQUIRED,
            f"the wallet already had a courtesy credit: a second one needs approval by a {roles}",
        )
    if amount > rules.limit_without_approval:
        raise Rejection(
            errors.APPROVAL_REQUIRED,
            f"amount {amount} is over the {rules.limit_without_approval} a single person "
            f"may give: it needs approval by a {roles}",
        )
    if dispute_amount is not None and dispute_amount > rules.dispute_approval_threshold:
        raise Rejection(
            errors.APPROVAL_REQUIRED,
            f"disputes over {rules.dispute_approval_threshold} need approval by a {roles}",
        )
