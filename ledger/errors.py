"""Stable rejection codes. A code is a contract: other services branch on it."""

from __future__ import annotations

from typing import Any


class Rejection(Exception):
    """A submission broke a rule: nothing of it is recorded."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # pickled between the server and its writer process
        return (type(self), (self.code, self.message))


class LedgerError(Exception):
    """An operational failure that is not the submitter's fault (store, config)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # pickled between the server and its writer process
        return (type(self), (self.code, self.message))


# Codes named by SPEC.md.
INVALID_SUBMISSION = "invalid_submission"
EVENT_ID_CONFLICT = "event_id_conflict"
CUSTOMER_TERMINATED = "customer_terminated"
PRICING_NOT_OFFERED = "pricing_not_offered"
INVALID_FEE = "invalid_fee"
INSUFFICIENT_FUNDS = "insufficient_funds"
CARD_REQUIRED = "card_required"
CALLS_NOT_OFFERED = "calls_not_offered"
CALLS_STOPPED = "calls_stopped"
ALREADY_REFUNDED = "already_refunded"
SERVICE_CONFIRMED = "service_confirmed"
NOTHING_TO_REFUND = "nothing_to_refund"
REFUND_WINDOW_CLOSED = "refund_window_closed"
REFUND_NOT_ALLOWED = "refund_not_allowed"
COURTESY_BLOCKED_REGION = "courtesy_blocked_region"
APPROVAL_REQUIRED = "approval_required"
FEE_NOT_ASSESSED = "fee_not_assessed"

# Codes the spec leaves open (documented in README, "Rejection codes").
UNKNOWN_MARKET = "unknown_market"
WALLET_EXISTS = "wallet_exists"
WALLET_NOT_FOUND = "wallet_not_found"
CONTACT_EXISTS = "contact_exists"
CONTACT_NOT_FOUND = "contact_not_found"
CALL_EXISTS = "call_exists"
NOT_REFUNDED = "not_refunded"
ALREADY_RECTIFIED = "already_rectified"
BATCH_REJECTED = "batch_rejected"
COURTESY_OVER_CEILING = "courtesy_over_ceiling"  # over the pack's max_amount, whoever approves
LOG_DAMAGED = "log_damaged"  # the submission's receipt points at events the log no longer holds
OCCURRED_IN_FUTURE = "occurred_in_future"  # occurred_at beyond the clock + allowed skew
TOO_LATE = "too_late"  # the market pack's max_lateness_days has passed
STORE_STATEMENT_FAILED = "store_statement_failed"  # the store refused a write's statement: not retried
PROJECTION_FAILED = "projection_failed"  # the read models' keys refuse logged events no one else projected
STORE_FULL = "store_full"  # the store's disk (or quota) is full: not retried, nothing of the batch recorded
