"""The submission contract's explicit limits, importable without pydantic.

``ledger.submissions`` validates against them; the CLI's line reader and the
period parser use them too, and start without loading the models.
"""

from __future__ import annotations

from datetime import datetime, timezone

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


def within_range(moment: datetime) -> bool:
    """The instants the ledger knows: 1970 to 2999 (submissions and --as-of alike)."""
    return EARLIEST <= moment <= LATEST
