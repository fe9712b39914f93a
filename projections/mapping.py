"""Stored events to read-model statements: the mapping, here or in a second process.

``EventMapper`` turns events into read-model rows (projections/journal.py)
while it keeps what it learnt of each wallet (unit, card currency, market, card
in force) as the log stood at the event; ``statements_for`` pairs them with the
view's statements (pure: the view only runs them). ``MapHere`` and
``MapInWorker`` take pages of stored events, raw, and give back each page's
statements in the order they were submitted.

Why a second process: in a rebuild (SQLite, 217k events, py-spy) decoding the
states and mapping them to rows and parameters was 35% of the time, reading
the log and walking its chain 17% and running the statements 22% (plus the
indexes and checkpoints at the end). The mapping needs only the events and
what came before them, so a worker process maps page N while this process
walks page N+1's chain and writes page N-1's rows. The worker sees exactly
the rows this process read (they are sent to it, not read again), so the chain
walk vouches for what is mapped, and a page's failure in the worker (a money
event before its WalletOpened, a state that is not JSON) is raised here, with
its type, when that page's statements are taken.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import zlib
from collections import deque
from typing import Any, Iterable, Sequence

from leadledger.errors import LedgerError
from leadledger.projections.copytext import CopyText, as_copy_text
from leadledger.projections.journal import Batch, Fields, Lookup, WalletFacts, Wallets, map_event
from leadledger.projections.stored import EVENT_TYPES, loads

# An event the read models are given: its log position, type name and fields.
Stored = tuple[int, str, Fields]
# An event as the log stores it: position, topic, state (JSON bytes).
Raw = tuple[int, str, bytes]
# What a page becomes: each statement with the parameters of all its rows (from a
# worker asked for COPY text, a COPY target's rows may come as CopyText instead).
Statements = list[tuple[str, list[tuple[Any, ...]] | CopyText]]


def _insert(target: str, columns: int) -> str:
    return f"INSERT INTO {target} VALUES ({', '.join('?' * columns)})"


# Each insert's target once: the statement (executemany) and PostgreSQL's COPY
# (postgres_view.py) are both made from it.
_WALLET_TARGET = "ll_wallets (pro_id, market, unit, card_currency, region, policy_version, opened_at, position)"
_CONTACT_TARGET = ("ll_contacts (contact_id, pro_id, market, pricing, management_fee, sent_at,"
                   " refund_deadline, unread_refund_due, first_seen_at, position)")
INSERT_WALLET = _insert(_WALLET_TARGET, 8)
CARD_REF = "UPDATE ll_wallets SET card_ref = ? WHERE pro_id = ?"
INSERT_CONTACT = _insert(_CONTACT_TARGET, 10)
FIRST_SEEN_COLUMN = 8  # in INSERT_CONTACT's rows
FIRST_SEEN = (
    "UPDATE ll_contacts SET first_seen_at = ? WHERE contact_id = ?"
    " AND (first_seen_at IS NULL OR first_seen_at > ?)"
)
# A rebuild stages the first-seen times of contacts sent in an earlier page (an
# insert each) and sets them in one statement at its end, keeping the earliest:
# an UPDATE per QuoteRead was 6% of a PostgreSQL rebuild. A contact's reads always
# follow its QuoteSent in the log (its aggregate's versions), so the result is the UPDATEs'.
FIRST_SEEN_STAGE = "CREATE TEMPORARY TABLE ll_first_seen_stage (contact_id TEXT NOT NULL, at TEXT NOT NULL)"
STAGE_FIRST_SEEN = _insert("ll_first_seen_stage", 2)
FIRST_SEEN_STAGED = (
    "UPDATE ll_contacts SET first_seen_at = s.at FROM (SELECT contact_id, MIN(at) AS at"
    " FROM ll_first_seen_stage GROUP BY contact_id) AS s WHERE ll_contacts.contact_id = s.contact_id"
    " AND (ll_contacts.first_seen_at IS NULL OR ll_contacts.first_seen_at > s.at)"
)
INSERT_FACT = _insert("ll_contact_facts", 7)
INSERT_POSTING = _insert("ll_postings", 15)
COPY_TARGETS = {
    INSERT_WALLET: _WALLET_TARGET,
    INSERT_CONTACT: _CONTACT_TARGET,
    INSERT_FACT: "ll_contact_facts",
    INSERT_POSTING: "ll_postings",
    STAGE_FIRST_SEEN: "ll_first_seen_stage",
}

# --- when a worker maps ------------------------------------------------------------

WORKER_FROM_EVENTS = 50_000  # below this, spawning the worker (~0.2 s) costs more than it saves
WORKER_SETTING = "LEADLEDGER_MAPPING_WORKER"  # auto (the default), on, off


def worker_wanted(events: int) -> bool:
    """Whether a pass over ``events`` events maps them in a worker process:
    ``$LEADLEDGER_MAPPING_WORKER`` is ``on``, ``off`` or ``auto`` (a worker from
    WORKER_FROM_EVENTS events on, when this process may use two CPUs)."""
    setting = os.environ.get(WORKER_SETTING, "auto")
    if setting not in ("auto", "on", "off"):
        raise LedgerError("bad_config", f"{WORKER_SETTING}={setting[:40]!r} must be auto, on or off")
    if setting != "auto":
        return setting == "on"
    return events >= WORKER_FROM_EVENTS and _cpus() >= 2


def _cpus() -> int:
    """The CPUs this process may run on (its affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# --- the mapping itself --------------------------------------------------------------

class EventMapper:
    """Maps events to the statements' rows, keeping what it learns of each wallet.
    ``lookup(pro_id)`` answers for a wallet it has not seen opened (None: there is
    none: the log was altered)."""

    def __init__(self, lookup: Lookup, wallets: dict[str, WalletFacts] | None = None):
        self.wallets = Wallets(lookup, wallets)

    def batch(self, events: Iterable[Stored]) -> Batch:
        """The rows of decoded events."""
        out, wallets = Batch(), self.wallets
        for position, event_type, fields in events:
            map_event(out, position, event_type, fields, wallets)
        return out

    def statements(self, page: Sequence[Raw], *, rebuilding: bool) -> Statements:
        """A page of stored domain events as statements (both readers leave out the
        receipts stored as events before 0.2: they feed nothing)."""
        out, wallets = Batch(), self.wallets
        for position, topic, state in page:
            map_event(out, position, EVENT_TYPES[topic], loads(state), wallets)
        return statements_for(out, rebuilding=rebuilding)


def no_lookup(pro_id: str) -> None:
    """A rebuild's lookup: it projects every WalletOpened before its wallet's money
    events, so a wallet it has not seen opened does not exist."""
    return None


def statements_for(batch: Batch, *, rebuilding: bool) -> Statements:
    """The statements that write a batch's rows, in the order they must run. While
    ``rebuilding``, first-seen times are staged (FIRST_SEEN_STAGED sets them at the end).

    A contact sent in the batch gets its earliest first-seen time of the batch in its
    own insert: an UPDATE of a row just copied in writes a second version of it and of
    each of its index entries (the first-seen updates were 14% of a PostgreSQL catch-up
    of 430k events, py-spy); only contacts sent in an earlier batch are updated."""
    seen = _earliest(batch.first_seen)
    contacts = batch.contacts
    if seen and contacts:
        contacts = [row if (at := seen.pop(row[0], None)) is None
                    else (*row[:FIRST_SEEN_COLUMN], at, *row[FIRST_SEEN_COLUMN + 1:]) for row in contacts]
    return [(statement, params) for statement, params in (
        (INSERT_WALLET, batch.wallets),
        (CARD_REF, batch.card_refs),
        (INSERT_CONTACT, contacts),
        (STAGE_FIRST_SEEN, list(seen.items())) if rebuilding
        else (FIRST_SEEN, [(at, contact_id, at) for contact_id, at in seen.items()]),
        (INSERT_FACT, batch.facts),
        (INSERT_POSTING, batch.postings),
    ) if params]


def _earliest(seen: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each contact's earliest time of a batch: one update per contact (FIRST_SEEN
    keeps the earliest, so the others would change nothing)."""
    earliest: dict[str, str] = {}
    for contact_id, at in seen:
        known = earliest.get(contact_id)
        if known is None or at < known:
            earliest[contact_id] = at
    return earliest


# --- pages mapped here or in a worker ------------------------------------------------

class MapHere:
    """Maps each submitted page at once, in this process."""

    def __init__(self, wallets: dict[str, WalletFacts] | None = None, *, rebuilding: bool):
        self._mapper = EventMapper(no_lookup, wallets)
        self._rebuilding = rebuilding
        self._done: deque[Statements] = deque()

    def submit(self, page: Sequence[Raw]) -> None:
        self._done.append(self._mapper.statements(page, rebuilding=self._rebuilding))

    def take(self) -> Statements:
        """The statements of the oldest page not yet taken."""
        return self._done.popleft()

    @property
    def pending(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._done.clear()

    def __enter__(self) -> "MapHere":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class WorkerGone(Exception):
    """The mapping worker stopped without answering (killed, out of memory, could
    not start): the caller maps in this process instead."""


class MapInWorker:
    """Maps pages in a child Python process, in the order submitted; ``take`` waits
    for the oldest. The worker knows the ``wallets`` given (a catch-up's: the
    view's, as of its tracking position) and those it sees opened; any other is
    an altered log. At most MAX_PENDING pages are in flight, so memory stays a
    few pages whatever the log's size.

    A plain child process (``python -c``), not multiprocessing: its spawn runs
    the caller's main script again in the child, which a script without an
    ``if __name__ == "__main__"`` guard does not survive. Messages are pickles
    with their length and CRC-32 in front, over the child's stdin and stdout
    (raw files, see _write_message); a thread here
    reads the answers as they come, so neither side blocks on a full pipe."""

    MAX_PENDING = 2

    def __init__(self, wallets: dict[str, WalletFacts] | None = None, *, rebuilding: bool,
                 copy_text: bool = False):
        import subprocess
        import tempfile
        import threading
        from queue import SimpleQueue

        self._stderr = tempfile.TemporaryFile()  # read only if the worker dies: a pipe could fill
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from leadledger.projections.mapping import serve; serve()"],
                # Unbuffered: raw files, read and written in loops (see _write_message).
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0)
        except OSError as exc:
            self._stderr.close()
            raise WorkerGone(f"the mapping worker could not start ({exc})") from None
        _widen_pipes(self._process.stdin, self._process.stdout)
        self._answers: SimpleQueue[bytearray | None] = SimpleQueue()
        self._trouble: str | None = None  # why the answers stopped being read, if they did
        # Pages go out through a thread too: the pipe holds 1 MiB at most and a page
        # is megabytes, so writing one here would wait for the worker to finish the last.
        self._outbox: SimpleQueue[bytes | None] = SimpleQueue()
        self._threads = [threading.Thread(target=target, name=f"leadledger-mapping-{name}", daemon=True)
                         for name, target in (("answers", self._read_answers), ("pages", self._write_pages))]
        for thread in self._threads:
            thread.start()
        self._pending = 0
        # copy_text (PostgreSQL): the COPY targets' rows come back as COPY text (copytext.py).
        self._send((dict(wallets or {}), rebuilding, copy_text))

    def submit(self, page: Sequence[Raw]) -> None:
        assert self._pending < self.MAX_PENDING, "take a page's statements before submitting more"
        self._send(list(page))
        self._pending += 1

    def take(self) -> Statements:
        assert self._pending > 0
        answer = self._answers.get()
        self._pending -= 1
        if answer is None:
            raise self._gone()
        try:
            kind, value = pickle.loads(answer)
        except Exception as exc:  # noqa: BLE001 - e.g. the worker's error, of a class that unpickles
            # only with other arguments: the page is mapped here again, raising it as itself.
            self._process.kill()
            raise WorkerGone(f"the mapping worker stopped: an answer could not be read ({type(exc).__name__})"
                             ) from None
        if kind == "error":
            raise value
        return value

    @property
    def pending(self) -> int:
        return self._pending

    def _send(self, message: Any) -> None:
        self._outbox.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _write_pages(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            while (data := self._outbox.get()) is not None:
                _write_message(stdin, data)
            stdin.close()  # the worker ends at the end of its input
        except OSError:
            pass  # a broken pipe: the worker is gone, and take() says so

    def _read_answers(self) -> None:
        """Hands each answer to ``take``, then None: at the stream's end, and when
        it cannot be read (a damaged message, the pipe failing), never a silent
        death of this thread that would leave ``take`` waiting for ever."""
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while (answer := _read_message(stdout)) is not None:
                self._answers.put(answer)
        except Exception as exc:  # noqa: BLE001 - said by take(), through _gone()
            self._trouble = f"its answers could not be read ({exc})"
            self._process.kill()  # nothing it sends after a damaged message can be trusted
        self._answers.put(None)

    def _gone(self) -> WorkerGone:
        try:
            code = self._process.wait(timeout=5)
        except Exception:
            code = None
        self._stderr.seek(0)
        said = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        if self._trouble is not None:
            return WorkerGone(f"the mapping worker stopped: {self._trouble}")
        return WorkerGone(f"the mapping worker stopped (exit status {code})"
                          + (f": {said[-1][:300]}" if said else ""))

    def close(self) -> None:
        self._outbox.put(None)
        try:
            self._process.wait(timeout=10)
        except Exception:
            self._process.kill()
            self._process.wait()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "MapInWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


def _widen_pipes(*streams: Any) -> None:
    """Pipes of PIPE_BYTES instead of Linux's 64 KiB: a rebuild of 430k events
    sends ~200 MB each way, and every pipeful is a switch between the processes
    (240 MiB each way through a child: 0.44-0.55 s and ~0.2 s of CPU a side at
    64 KiB, 0.21-0.23 s and ~0.12 s at 1 MiB). Elsewhere, the system's size stays."""
    try:
        import fcntl

        set_size = fcntl.F_SETPIPE_SZ  # type: ignore[attr-defined]  # Linux only
    except (ImportError, AttributeError):
        return
    for stream in streams:
        try:
            fcntl.fcntl(stream.fileno(), set_size, PIPE_BYTES)
        except OSError:  # over /proc/sys/fs/pipe-max-size: the size it was
            pass


# A page's rows are megabytes: a length past this is a damaged stream, not a message
# (read as one, it would be allocated first).
MAX_MESSAGE_BYTES = 1 << 31
_HEAD_BYTES = 12  # the length (8 bytes) and the CRC-32 (4), big-endian


class DamagedMessage(Exception):
    """A message that does not check out: the stream is out of step or its bytes
    changed on the way, and nothing after it can be trusted."""


def _write_message(stream: Any, data: bytes) -> None:
    """One message, its length and CRC-32 in front (``_read_message`` checks both),
    on a raw (unbuffered) file, written in a loop until every byte is taken.

    Why raw: with Python's buffered files on both ends, a sampling profiler that
    stopped and resumed both processes (py-spy --subprocesses) damaged a message
    in 5 runs of 7 (a 6th hung): its bytes arrived changed, and the answers
    stopped unpickling or announced a length no page has. Through loops of raw
    writes and reads (multiprocessing's own way) the messages came intact in 6
    runs of 6, as through multiprocessing's pipes. The CRC-32 is kept all the same:
    no page of rows is ever taken from a pipe on trust. A catch-up of 164k events
    sends 85 MB and gets 27 MB back: zlib's CRC-32 of all of it took 28 ms, on
    each side, on the pipe threads (it lets go of the GIL)."""
    for part in (len(data).to_bytes(8, "big") + zlib.crc32(data).to_bytes(4, "big"), data):
        view = memoryview(part)
        while view:
            written = stream.write(view)
            assert written is not None, "the pipes are blocking"
            view = view[written:]


def _read_exactly(stream: Any, size: int) -> bytearray | None:
    """``size`` bytes from a raw file, read straight into their buffer; None if the
    stream ends first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = stream.readinto(view[got:])
        if not count:
            return None
        got += count
    return buffer


def _read_message(stream: Any) -> bytearray | None:
    """One message from a raw file; None at the end of the stream (or a cut one).
    Raises DamagedMessage for a length past MAX_MESSAGE_BYTES (refused before it
    is allocated) or a CRC-32 that does not match."""
    head = _read_exactly(stream, _HEAD_BYTES)
    if head is None:
        return None
    size = int.from_bytes(head[:8], "big")
    if size > MAX_MESSAGE_BYTES:
        raise DamagedMessage(f"a message of {size:,} bytes announced")
    body = _read_exactly(stream, size)
    if body is None:
        return None
    if zlib.crc32(body) != int.from_bytes(head[8:], "big"):
        raise DamagedMessage(f"a message of {size:,} bytes whose CRC-32 does not match")
    return body


def serve() -> None:
    """The worker's main loop: wallets and the pass's kind first, then a page per
    message, each answered with ("ok", statements) or ("error", the exception)."""
    # Raw files on the pipes' descriptors (see _write_message).
    source = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    sink = open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)
    sys.stdout = sys.stderr  # nothing but answers may reach the parent's pipe
    gc.disable()  # the mapping makes no cycles, only short-lived rows (see ledger/collector.py)
    try:
        _serve(source, sink)
    except DamagedMessage as exc:  # the parent reads this line from its stderr file
        print(f"its pages could not be read ({exc})", file=sys.stderr)
        raise SystemExit(1) from None


def _serve(source: Any, sink: Any) -> None:
    first = _read_message(source)
    if first is None:
        return
    wallets, rebuilding, copy_text = pickle.loads(first)
    mapper = EventMapper(no_lookup, wallets)
    while (message := _read_message(source)) is not None:
        try:
            statements: list[tuple[str, Any]] = mapper.statements(pickle.loads(message), rebuilding=rebuilding)
            if copy_text:
                statements = as_copy_text(statements, COPY_TARGETS, INSERT_POSTING, rebuilding=rebuilding)
            answer = pickle.dumps(("ok", statements), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the parent raises it, with its type, where it takes this page
            try:
                answer = pickle.dumps(("error", exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                answer = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        _write_message(sink, answer)
