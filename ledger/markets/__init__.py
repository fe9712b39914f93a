"""Market rule packs: versioned policy files shipped with the package.

A wallet is opened under a market; the version in force at that moment is
recorded in its ``WalletOpened`` event and every later decision for that wallet
reads that same version, so shipping a new file never changes history.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Mapping

_FILE_NAME = re.compile(r"^(?P<market>[a-z0-9_]+)-v(?P<version>\d+)\.toml$")


@dataclass(frozen=True)
class RefundRules:
    returns: str  # "whole_fee" or "commission"
    window_kind: str  # "calendar_days_from_job_date" or "working_days_from_purchase"
    window_days: int
    unread_refund_hours: int  # 0: no automatic refund
    allowed_reasons: frozenset[str]
    terminating_reasons: frozenset[str]
    postpone_allowed: bool
    min_age_days: Mapping[str, int]
    working_days_calendar: str = ""


@dataclass(frozen=True)
class CallRules:
    offered: bool
    free_seconds: int
    rate_per_started_minute: int
    max_failed_attempts: int


@dataclass(frozen=True)
class CourtesyRules:
    limit_without_approval: int
    dispute_approval_threshold: int
    blocked_regions: frozenset[str]
    approver_roles: frozenset[str]
    max_amount: int  # hard ceiling on one credit, whoever approves


@dataclass(frozen=True)
class MarketPolicy:
    market: str
    version: int
    wallet_unit: str
    card_currency: str  # "" where the market charges no card
    timezone: str
    pricing_methods: frozenset[str]
    guaranteed_reply_categories: frozenset[str]
    management_fee: int
    advance_limit: int
    refund: RefundRules
    calls: CallRules
    courtesy: CourtesyRules
    max_lateness_days: int | None = None  # None: late arrivals are never refused

    def offers_guaranteed_reply_for(self, category: str) -> bool:
        return "guaranteed_reply" in self.pricing_methods and (
            "*" in self.guaranteed_reply_categories
            or category in self.guaranteed_reply_categories
        )


def _parse(data: dict) -> MarketPolicy:
    refund, calls, courtesy = data["refund"], data["calls"], data["courtesy"]
    policy = MarketPolicy(
        market=data["market"],
        version=int(data["version"]),
        wallet_unit=data["wallet_unit"],
        card_currency=data["card_currency"],
        timezone=data["timezone"],
        pricing_methods=frozenset(data["pricing_methods"]),
        guaranteed_reply_categories=frozenset(data["guaranteed_reply_categories"]),
        management_fee=int(data["management_fee"]),
        advance_limit=int(data["advance_limit"]),
        refund=RefundRules(
            returns=refund["returns"],
            window_kind=refund["window_kind"],
            window_days=int(refund["window_days"]),
            unread_refund_hours=int(refund["unread_refund_hours"]),
            allowed_reasons=frozenset(refund["allowed_reasons"]),
            terminating_reasons=frozenset(refund["terminating_reasons"]),
            postpone_allowed=bool(refund["postpone_allowed"]),
            min_age_days=dict(refund.get("min_age_days", {})),
            working_days_calendar=refund.get("working_days_calendar", ""),
        ),
        calls=CallRules(**{k: calls[k] for k in CallRules.__dataclass_fields__}),
        courtesy=CourtesyRules(
            limit_without_approval=int(courtesy["limit_without_approval"]),
            dispute_approval_threshold=int(courtesy["dispute_approval_threshold"]),
            blocked_regions=frozenset(courtesy["blocked_regions"]),
            approver_roles=frozenset(courtesy["approver_roles"]),
            max_amount=int(courtesy["max_amount"]),
        ),
        max_lateness_days=(int(data["max_lateness_days"]) if "max_lateness_days" in data else None),
    )
    assert policy.refund.returns in ("whole_fee", "commission"), policy.refund.returns
    assert policy.refund.window_kind in (
        "calendar_days_from_job_date",
        "working_days_from_purchase",
    ), policy.refund.window_kind
    assert policy.management_fee >= 0 and policy.advance_limit >= 0
    assert policy.courtesy.max_amount >= policy.courtesy.limit_without_approval
    assert policy.max_lateness_days is None or policy.max_lateness_days > 0
    return policy


@functools.cache
def all_policies() -> Mapping[tuple[str, int], MarketPolicy]:
    found: dict[tuple[str, int], MarketPolicy] = {}
    for entry in resources.files(__package__).iterdir():
        match = _FILE_NAME.match(entry.name)
        if not match:
            continue
        policy = _parse(tomllib.loads(entry.read_text(encoding="utf-8")))
        assert (policy.market, policy.version) == (
            match["market"],
            int(match["version"]),
        ), f"{entry.name} does not match its own market/version"
        found[(policy.market, policy.version)] = policy
    return found


@functools.cache
def market_names() -> tuple[str, ...]:
    """The markets of the shipped packs, sorted (the command line's --market
    choices, and what a read's market filter may name)."""
    return tuple(sorted({market for market, _ in all_policies()}))


def current_policy(market: str) -> MarketPolicy | None:
    """The newest version shipped for ``market``, or None if the market is unknown."""
    versions = [p for (m, _), p in all_policies().items() if m == market]
    return max(versions, key=lambda p: p.version) if versions else None


def policy(market: str, version: int) -> MarketPolicy:
    return all_policies()[(market, version)]
