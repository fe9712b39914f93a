"""Ids in URL paths: an id may hold a slash.

SPEC 3 forbids no character an id may print, so `ct/7` is a contact id. Sent as
`/v1/contacts/ct%2F7/refund` it is one path segment, but the ASGI server decodes the
path before routes are matched: the request reached no route (404 `not_found`, as
if the contact was never sent), and `/v1/wallets/P%2Fstatement` reached P's
statement instead of the wallet of pro `P/statement`. ``keep_encoded_slashes``
decodes such a path again with each `%2F` as ENCODED_SLASH, a character no id may
hold (private use, refused by ``submissions.check_identifier``), and ``path_id``
turns it back into `/` in the routes that take an id.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

ENCODED_SLASH = "\ue000"
NAMES_NOTHING = "\ue001"  # what a literal ENCODED_SLASH in a path becomes: no id holds it either
_ENCODED_SLASH_RAW = re.compile(rb"%2[fF]")


def keep_encoded_slashes(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` with its path decoded segment by segment when its raw path holds an
    encoded slash (or its decoded path the stand-in); else ``scope`` itself."""
    raw = scope.get("raw_path")
    if not raw or (_ENCODED_SLASH_RAW.search(raw) is None and ENCODED_SLASH not in scope["path"]):
        return scope
    parts = [unquote_to_bytes(part).decode("utf-8", "replace").replace(ENCODED_SLASH, NAMES_NOTHING)
             for part in _ENCODED_SLASH_RAW.split(raw)]
    return {**scope, "path": ENCODED_SLASH.join(parts)}


def path_id(value: str) -> str:
    """An id as a route received it: its encoded slashes back as `/`."""
    return value.replace(ENCODED_SLASH, "/")
