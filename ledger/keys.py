"""API keys of the HTTP service: names, scopes, secrets, and what the store keeps.

A key is a name, a scope and a secret. ``leadledger keys create`` shows the
secret once; the store keeps only its SHA-256, in ``leadledger_api_keys``, so
every server process sees a new key or a revocation. Secrets are 256 random
bits, not passwords: there is nothing to guess, so a fast hash is enough and
requests are looked up by it.

Names are what the log records (``recorded_by`` = ``key:NAME``): lower-case
letters, digits, ``.``, ``_`` and ``-``, and never reused, a revoked name
included, so that a name in the log always means the same key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from leadledger.errors import LedgerError

KEYS_TABLE = "leadledger_api_keys"
SECRET_PREFIX = "llk_"  # recognisable in a leaked config file, like Stripe's sk_
SECRET_BYTES = 32
MAX_SECRET_CHARS = 200  # a bearer token longer than this is not ours: refused unhashed
SCOPES = ("append", "read", "admin")
# What each scope may do. append: record submissions and read their own
# outcome (a retry needs it); read: the read models and the log's feed;
# admin: both.
GRANTS: dict[str, frozenset[str]] = {
    "append": frozenset({"append"}),
    "read": frozenset({"read"}),
    "admin": frozenset({"append", "read"}),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

KEYS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} ("
    " name text PRIMARY KEY, scope text NOT NULL, secret_sha256 text NOT NULL UNIQUE,"
    " created_at text NOT NULL, revoked_at text)"
)


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: str
    created_at: str  # RFC 3339 UTC
    revoked_at: str | None = None

    @property
    def recorded_by(self) -> str:
        return f"key:{self.name}"

    def allows(self, action: str) -> bool:
        assert action in GRANTS["admin"], action
        return self.revoked_at is None and action in GRANTS[self.scope]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "status": "revoked" if self.revoked_at else "active"}

    @classmethod
    def from_row(cls, row: Any) -> "ApiKey":
        return cls(row["name"], row["scope"], row["created_at"], row["revoked_at"])


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise LedgerError("bad_key_name", f"{name[:80]!r} is not a key name: 1 to 63 of a-z, 0-9, '.', '_', '-', "
                          "starting with a letter or a digit")
    return name


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise LedgerError("bad_key_scope", f"{scope[:40]!r} is not a scope: one of {', '.join(SCOPES)}")
    return scope


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def plausible_secret(secret: str) -> bool:
    """Worth a lookup: ours start with the prefix and are short; anything else
    (a huge header, another service's token) is refused without touching the store."""
    return secret.startswith(SECRET_PREFIX) and len(secret) <= MAX_SECRET_CHARS
