"""The submission contract's explicit limits, importable without pydantic.

``ledger.submissions`` validates against them; the CLI's line reader and the
period parser use them too, and start without loading the models.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

# Explicit limits (TigerBeetle style): an amount beyond this is a typo, not a
# purchase, and sums of many of them still fit a signed 64-bit column.
MAX_AMOUNT = 10**12
MAX_DURATION_SECONDS = 7 * 24 * 3600
MAX_LINE_BYTES = 64 * 1024
MAX_IDENTIFIER_CHARS = 128
# Times and dates outside this range are typos (or attacks): they would
# overflow date arithmetic (deadlines, time zones) long before they mean money.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


# A market's refund window is at most this long (calendar or working days): a
# longer one is a broken policy file.
MAX_WINDOW_DAYS = 3660
# What the rules decide from in-range inputs may fall after LATEST: a refund
# window closes up to MAX_WINDOW_DAYS after a job dated 2999-12-31, or that many
# working days after a purchase (twice as many calendar days bounds it: a week
# holds at least 3.5 working days in any calendar the ledger uses); the unread
# refund falls at most MAX_WINDOW_DAYS after a quote. The log records those
# decisions, and replay and verify read them back.
LATEST_DECIDED = LATEST + timedelta(days=2 * MAX_WINDOW_DAYS + 1)


def within_range(moment: datetime) -> bool:
    """The instants the ledger knows: 1970 to 2999 (submissions and --as-of alike)."""
    return EARLIEST <= moment <= LATEST
