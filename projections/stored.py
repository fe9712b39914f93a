"""Stored event states as the read models read them: decoded once, no event objects.

eventsourcing's JSON (ledger/codec.py writes the same bytes) tags a datetime as
``{"_type_": "datetime_iso", "_data_": ISO text}`` and a UUID as ``{"_type_":
"uuid_hex", "_data_": 32 hex digits}``. The catch-up and the rebuild read the
few tagged values a read model needs straight from that shape; building each
event through eventsourcing's mapper (objects, a UUID and a datetime per field,
then text again) was a quarter of a rebuild (py-spy, 536k events, SQLite).
The helpers also take a live event's values (a datetime, a UUID): the
follower's path.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

from leadledger.events import DOMAIN_EVENT_CLASSES, LEGACY_MODULE
from leadledger.timefmt import sortable_utc

# Each domain event's topic (and its name before 0.3) -> its type name. Receipts
# stored as events before 0.2 (SubmissionAccepted) are not here: they feed nothing.
EVENT_TYPES: dict[str, str] = {
    **{get_topic(cls): name for name, cls in DOMAIN_EVENT_CLASSES.items()},
    **{f"{LEGACY_MODULE}:{name}": name for name in DOMAIN_EVENT_CLASSES},
}

_UTC = "+00:00"


def loads(state: bytes) -> dict[str, Any]:
    """An event's stored state, tagged values left as they are."""
    try:
        fields = orjson.loads(state)
    except orjson.JSONDecodeError:
        # What orjson refuses and the json module wrote (an integer past 64 bits,
        # a lone surrogate): read it the way eventsourcing would.
        fields = json.loads(state)
    if type(fields) is not dict:
        raise ValueError(f"a stored event state is a JSON object, not {type(fields).__name__}")
    return fields


def sortable(value: Any) -> str:
    """A time as the read models' fixed-width UTC text (timefmt.sortable_utc)."""
    if type(value) is dict:
        text = value["_data_"]
        # eventsourcing wrote datetime.isoformat(): in UTC, the text already is
        # the sortable one but for its suffix (and the microseconds it omits at 0).
        if text.endswith(_UTC) and text[10:11] == "T":
            if len(text) == 32:
                return text[:26] + "Z"
            if len(text) == 25:
                return text[:19] + ".000000Z"
        return sortable_utc(datetime.fromisoformat(text))
    return sortable_utc(value)


def uuid_text(value: Any) -> str:
    """An id as its canonical text (8-4-4-4-12 hex digits)."""
    if type(value) is dict:
        value = UUID(value["_data_"])
    return str(value)
