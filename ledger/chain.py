"""The hash chain over the recorded log: what makes an altered log show.

Each stored event carries ``chain_sha256 = SHA-256(previous event's chain_sha256
|| the event's canonical bytes)``; the first event chains from 32 zero bytes.
The canonical bytes are the stored row itself (aggregate id, version, topic,
state), length-prefixed so no two rows share them. Positions are not hashed:
they are the order the chain is read in, and a row moved to another position
breaks the links around it.

The writer computes the links of a whole batch in memory while it holds the
chain head (``leadledger_chain_head``, one row: the last position and its
hash), which serialises writers: two cannot chain onto the same head, so the
chain cannot fork. This module is pure: rows in, links and findings out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence
from uuid import UUID

GENESIS = bytes(32)  # what the first event chains from


def canonical(originator_id: bytes, originator_version: int, topic: str, state: bytes) -> bytes:
    """The row's bytes as the chain hashes them; ``originator_id``: the UUID's 16 bytes."""
    topic_bytes = topic.encode("utf-8")
    return b"".join((
        originator_id,
        originator_version.to_bytes(8, "big", signed=True),
        len(topic_bytes).to_bytes(4, "big"), topic_bytes,
        len(state).to_bytes(8, "big"), state,
    ))


def link(previous: bytes, originator_id: bytes, originator_version: int, topic: str, state: bytes) -> bytes:
    return hashlib.sha256(previous + canonical(originator_id, originator_version, topic, state)).digest()


def extend(head_sha256: bytes, stored_events: Sequence[Any]) -> list[bytes]:
    """The links of ``stored_events`` (eventsourcing StoredEvents, or Rows) appended after the head."""
    links, previous = [], head_sha256
    for s in stored_events:
        previous = link(previous, _id_bytes(s.originator_id), s.originator_version, s.topic, s.state)
        links.append(previous)
    return links


def as_bytes(value: Any) -> bytes:
    """A stored bytes column as bytes, whatever a hand edit left in it."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (int, float)):
        return str(value).encode()
    return bytes(value) if value is not None else b""


def _id_bytes(value: Any) -> bytes:
    """A UUID (PostgreSQL) or its hex text (SQLite) as 16 bytes; a hand-edited
    id that is neither hashes as its text (and so breaks the chain)."""
    if isinstance(value, UUID):
        return value.bytes
    if isinstance(value, bytes) and len(value) == 16:  # a Row's, already
        return value
    try:
        return UUID(value).bytes if len(value) != 32 else bytes.fromhex(value)
    except (TypeError, ValueError, AttributeError):
        return as_bytes(value)


class Row(NamedTuple):
    """One stored event as the chain sees it (a NamedTuple: a walk builds one per event)."""

    position: int
    originator_id: bytes
    originator_version: int
    topic: str
    state: bytes
    chain_sha256: bytes | None

    @classmethod
    def of(cls, row: Any) -> "Row":
        """From a stored row, whatever a hand edit left in it (SQLite keeps the
        type of the value written: text where bytes were, a number for a topic)."""
        sha, state, topic = row["chain_sha256"], row["state"], row["topic"]
        return cls(int(row["position"]), _id_bytes(row["originator_id"]), int(row["originator_version"]),
                   topic if type(topic) is str else str(topic),
                   state if type(state) is bytes else as_bytes(state),
                   None if sha is None else sha if type(sha) is bytes else as_bytes(sha))

    @classmethod
    def typed(cls, position: int, originator_id: UUID, originator_version: int, topic: str | None,
              state: bytes | None, chain_sha256: bytes | None) -> "Row":
        """From PostgreSQL's typed columns (bigint, uuid, bigint, text, bytea, bytea),
        as a tuple: a hand edit changes values there, never their type, so only a
        NULL needs reading as ``of`` reads it. (``of`` on dict rows was ~0.5 s of a
        430k-event rebuild, py-spy.)"""
        return cls(position, originator_id.bytes, originator_version, str(topic) if topic is None else topic,
                   as_bytes(state) if state is None else state, chain_sha256)

    def follows(self, previous: bytes) -> bool:
        return self.chain_sha256 == link(previous, self.originator_id, self.originator_version,
                                         self.topic, self.state)


@dataclass(frozen=True)
class Head:
    position: int
    sha256: bytes

    def text(self) -> str:
        """``POSITION:HASH``, what finance publishes and ``verify --expect-head`` takes."""
        return f"{self.position}:{self.sha256.hex()}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        position, sep, digest = text.strip().partition(":")
        try:
            if not sep or not position.isdigit() or len(digest) != 64:
                raise ValueError
            return cls(int(position), bytes.fromhex(digest))
        except ValueError:
            raise ValueError(f"{text!r} is not POSITION:SHA256 (a position, a colon and 64 hex "
                             "digits, as `leadledger verify --head` prints it)") from None


@dataclass
class Scan:
    """What walking the chain found: the last good link, and the first break."""

    head: Head  # the last event that chains correctly (position 0 and GENESIS for none)
    problem: str | None = None
    hashes_at: dict[int, bytes] = field(default_factory=dict)  # stored hashes at the positions asked for


def walk(rows: Iterable[Row], *, rescan: Callable[[int], Iterator[Row]],
         watch: Iterable[int] = ()) -> Scan:
    """Recompute the chain over ``rows`` (in position order) and name the first
    position that does not follow. ``rescan(position)`` reads the rows from a
    position again (only when a break needs explaining); ``watch`` lists positions
    whose stored hash the caller wants back (a published head)."""
    watched = set(watch)
    hashes_at: dict[int, bytes] = {}
    previous_position, previous = 0, GENESIS
    pending: Row | None = None
    following: Row | None = None
    for row in rows:
        if row.position in watched:
            hashes_at[row.position] = row.chain_sha256 or b""
        if pending is not None:
            following = row  # the break is explained with the row after it
            break
        if row.follows(previous):
            previous_position, previous = row.position, row.chain_sha256  # type: ignore[assignment]
        else:
            pending = row
    problem = None if pending is None else _explain(pending, following, previous_position, previous, rescan)
    return Scan(Head(previous_position, previous), problem, hashes_at)


def _explain(row: Row, following: Row | None, previous_position: int, previous: bytes,
             rescan: Callable[[int], Iterator[Row]]) -> str:
    """Why ``row`` does not follow ``previous``: the kinds of tampering leave
    different traces in the links around it."""
    where = f"position {row.position}"
    gap = row.position > previous_position + 1
    if row.chain_sha256 is None:
        return f"{where}: an event without a chain hash (inserted outside leadledger)"
    if following is not None:
        if following.follows(previous) and row.follows(following.chain_sha256 or b""):
            return f"{where}: reordered (the events at {row.position} and {following.position} were swapped)"
        if following.follows(previous):
            return f"{where}: inserted (the chain goes from {previous_position or 'its start'} " \
                   f"straight to {following.position})"
        if following.follows(row.chain_sha256):
            if gap:
                return _deleted(previous_position, row.position)
            return f"{where}: edited (its content no longer gives its recorded hash)"
    elif gap:
        return _deleted(previous_position, row.position)
    else:
        return f"{where}: edited (its content no longer gives its recorded hash)"
    for later in rescan(row.position + 1):
        if later.follows(previous):
            return (f"{where}: reordered (the event recorded after "
                    f"{previous_position or 'the start'} now sits at position {later.position})")
    if gap:
        return _deleted(previous_position, row.position)
    return f"{where}: edited, forged or moved (it does not follow position {previous_position})"


def _deleted(previous_position: int, position: int) -> str:
    missing = (f"position {previous_position + 1}" if position == previous_position + 2
               else f"positions {previous_position + 1}..{position - 1}")
    return f"position {position}: deleted ({missing} missing: the chain does not link across the gap)"


def head_problems(recorded: Head | None, last_position: int, scan: Scan) -> list[str]:
    """The head row against the log, both read in one snapshot (a writer moves the
    head in the transaction that appends): a cut tail shows here, as does a row
    added past the head by hand."""
    if recorded is None:
        return ["the chain head is missing: run `leadledger init` (as the owner)"]
    if recorded.position > last_position:
        return [f"the chain head is at position {recorded.position} but the log ends at "
                f"{last_position}: events were deleted from its end"]
    if recorded.position < last_position:
        return [f"positions {recorded.position + 1}..{last_position} lie past the chain head: "
                "inserted outside leadledger"]
    # A whole walk ends on the head's position: its stored hash must be the head's.
    if scan.problem is None and scan.head != recorded:
        return [f"position {recorded.position}: its hash differs from the chain head's: edited"]
    return []


def expected_problems(expected: Head, scan: Scan, last_position: int) -> list[str]:
    """A published head against the log: nothing up to it may have changed."""
    if expected.position == 0:
        return [] if expected.sha256 == GENESIS else ["position 0 chains from 32 zero bytes only"]
    if expected.position > last_position:
        return [f"the published head is at position {expected.position} but the log ends at "
                f"{last_position}: events up to it were deleted"]
    if scan.problem is not None and scan.head.position < expected.position:
        return [f"the chain breaks before the published head at {expected.position}: see above"]
    at = scan.hashes_at.get(expected.position)
    if at != expected.sha256:
        return [f"position {expected.position}: hash {at.hex() if at else 'none'} where "
                f"{expected.sha256.hex()} was published: the log up to it was changed"]
    return []
