"""Wallet snapshots: a cold process loads a wallet in one row, not its whole history.

A wallet is the one long-lived aggregate: every purchase, charge and refund of a
pro is one of its events. Replaying them all on every cold start made an
append's cost grow with the log (issue 9: 960 submissions/s onto a 50k-event
store, 178/s onto 1M, 87% of it replaying wallets).

The snapshot is the wallet's state after its version ``v``, written by the
process that committed that version. A reader takes the snapshot and applies
only the events after ``v``: a late event (an older ``occurred_at`` recorded
later) is one of those, applied as any replay would, so a snapshot is never
"invalidated" by time, only superseded by a newer one. Events are immutable,
so the state at version ``v`` is a pure function of the log; snapshots are a
cache of it, one row per wallet (the latest), rebuilt by anyone at any time.

Own format, not eventsourcing's Snapshot: its snapshot is the aggregate's
``__dict__`` through the transcoder: its arrays and tuples would
come back as lists, and its datetimes as text.
"""

from __future__ import annotations

from array import array
from datetime import datetime
from typing import Any, Iterable
from uuid import UUID

import orjson

from leadledger.aggregates import Wallet

LAYOUT = 3  # bump when Wallet's state changes shape: older snapshots are ignored
# Layout 2 had no horizon (a whole wallet): still read. A writer of 0.6 ignores
# layout 3, which may hold a compacted wallet it would take for a whole one.
READ_LAYOUTS = (2, 3)
SNAPSHOT_EVERY = 32  # events a wallet gains before it is snapshotted again
# Snapshots read and written per statement: a long-lived wallet's is tens of KB of JSON, and
# all 2,000 of a bulk append's at once added 28 MiB to its peak (951k events, 120-day horizon).
PAGE_WALLETS = 100


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def encode(wallet: Wallet) -> bytes:
    """The wallet's whole state (no pending events) as compact JSON."""
    assert not wallet.pending_events, "only committed state is snapshotted"
    return orjson.dumps({
        "layout": LAYOUT,
        "id": wallet.id.hex,
        "version": wallet.version,
        "created_on": _iso(wallet.created_on),
        "modified_on": _iso(wallet.modified_on),
        "pro_id": wallet.pro_id,
        "market": wallet.market,
        "region": wallet.region,
        "policy_version": wallet.policy_version,
        "opened_at": _iso(wallet.opened_at),
        "unit": wallet.unit,
        "card_registered_at": _iso(wallet.card_registered_at),
        "courtesy_credits": wallet.courtesy_credits,
        "contacts": {contact_id: packed.hex() for contact_id, packed in wallet.contacts.items()},
        "times_us": wallet._times_us.tolist(),
        "balance_deltas": wallet._balance_deltas.tolist(),
        "advance_deltas": wallet._advance_deltas.tolist(),
        "balance": wallet.balance,
        "advance_outstanding": wallet.advance_outstanding,
        "horizon_us": wallet.horizon_us,
    })


def decode(data: bytes) -> Wallet | None:
    """The wallet a snapshot holds, or None for a layout this code does not know."""
    state = orjson.loads(data)
    if state.get("layout") not in READ_LAYOUTS:
        return None
    wallet = Wallet.__new__(Wallet)
    wallet.__base_init__(UUID(state["id"]), state["version"], _at(state["created_on"]))
    wallet._modified_on = _at(state["modified_on"])
    wallet.pro_id = state["pro_id"]
    wallet.market = state["market"]
    wallet.region = state["region"]
    wallet.policy_version = state["policy_version"]
    wallet.opened_at = _at(state["opened_at"])
    wallet.unit = state["unit"]
    wallet.card_registered_at = _at(state["card_registered_at"])
    wallet.courtesy_credits = state["courtesy_credits"]
    wallet.contacts = {contact_id: bytes.fromhex(packed) for contact_id, packed in state["contacts"].items()}
    wallet._times_us = array("q", state["times_us"])
    wallet._balance_deltas = array("q", state["balance_deltas"])
    wallet._advance_deltas = array("q", state["advance_deltas"])
    wallet.balance = state["balance"]
    wallet.advance_outstanding = state["advance_outstanding"]
    wallet.horizon_us = state.get("horizon_us")
    return wallet


def due(wallets: Iterable[Any], snapshot_versions: dict[UUID, int]) -> list[Wallet]:
    """Wallets that gained SNAPSHOT_EVERY events since their last snapshot."""
    return [w for w in wallets if isinstance(w, Wallet) and not w.pending_events
            and w.version - snapshot_versions.get(w.id, 0) >= SNAPSHOT_EVERY]


def rows(wallets: Iterable[Wallet], *, as_text: bool) -> list[tuple[Any, int, bytes]]:
    return [(w.id.hex if as_text else w.id, w.version, encode(w)) for w in wallets]
