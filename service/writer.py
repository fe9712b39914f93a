"""One writer per server, in a process of its own, with group commit.

The writer process takes requests in arrival order: the first one and
everything that queued behind it while the previous commit was in flight (up
to ``MAX_GROUP_SUBMISSIONS``) are parsed, judged in that order against the
wallet and contact state its Ledger keeps warm, and recorded in one transaction.
The answers of a group go back as one message once that transaction committed,
so every answer the service gives is durable.

Why a process: at 64 clients the server process sat at ~90% of one core, the
HTTP side and the writer taking turns on one GIL (each ~half of the samples),
while the machine's other core was mostly idle. Apart, each has a GIL of its
own. The request carries the body's submissions as the client sent them (bytes),
and the writer parses them: pickling parsed models would cost more than parsing.

An atomic request is committed alone: its all-or-nothing outcome must not
change how the requests behind it are judged.

A second writer (another server, a CLI append) is handled by the store, as for
any Ledger: a write made on warm state fails when the chain head moved, and the
group is judged again against fresh state (Ledger._commit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import multiprocessing
import queue
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from leadledger.application import MAX_GROUP_SUBMISSIONS, AppendResult, Judged, Ledger, judged
from leadledger.errors import LOG_DAMAGED, STORE_FULL, STORE_STATEMENT_FAILED, LedgerError

log = logging.getLogger("leadledger.service")

SWEEP_RECORDED_BY = "serve:sweep"
# Housekeeping (ANALYZE, Python's full garbage collection) stalls the writer for
# 0.1-0.2 s each, and every request waiting behind it: the two were the whole p99
# at 64 clients (groups take 3 ms). It runs once no request has come for
# IDLE_SECONDS, or, under load that never pauses, once it has been due for
# HOUSEKEEPING_OVERDUE_SECONDS. A full collection falls due after CPython's own
# count of young collections, and at most once per FULL_COLLECTION_EVERY_SECONDS
# (CPython's own rule ran one whenever the old generation grew by a quarter);
# only cycles wait for it: everything else is freed when its last reference goes.
IDLE_SECONDS = 0.1
HOUSEKEEPING_OVERDUE_SECONDS = 60.0
FULL_COLLECTION_AFTER = gc.get_threshold()[2]
FULL_COLLECTION_EVERY_SECONDS = 30.0


def _stopped() -> LedgerError:  # a new one per future: an exception carries its own traceback
    return LedgerError("store_unavailable", "the writer has stopped")


class GroupWriter:
    """The server's side: requests go to the writer process, answers come back
    on a reader thread and settle the requests' futures on the event loop."""

    def __init__(self, url: str, *, on_commit: Callable[[list[AppendResult], float, int], None],
                 sweep_every: timedelta | None = None):
        context = multiprocessing.get_context("spawn")  # the server has threads: never fork it
        requests_in, self._requests_out = context.Pipe(duplex=False)  # (receiving end, sending end)
        self._answers_in, answers_out = context.Pipe(duplex=False)
        self._ends = (requests_in, answers_out)  # the child's: closed here once it has them
        self._process = context.Process(
            target=_writer_process, name="leadledger-writer", daemon=True,
            args=(url, sweep_every.total_seconds() if sweep_every else None, requests_in, answers_out))
        self._on_commit = on_commit  # (results, commit seconds, requests in the group)
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._pending: dict[int, asyncio.Future[list[AppendResult]]] = {}
        self._ids = iter(range(1, 2 ** 62))
        self._loop: asyncio.AbstractEventLoop | None = None  # where submit() was called: futures live there
        self._alive = False
        self._ready = False
        self.last_sweep: dict[str, Any] | None = None
        # The writer's Ledger.wallets_loaded_whole and wallets_compacted, as of its last group.
        self.wallet_counts: tuple[int, int] = (0, 0)

    def start(self) -> None:
        self._process.start()
        for end in self._ends:
            end.close()
        self._alive = True
        # Sending is a thread's job: a full pipe must never block the event loop.
        threading.Thread(target=self._send, name="leadledger-writer-send", daemon=True).start()
        self._reader = threading.Thread(target=self._receive, name="leadledger-writer-answers", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        self._outbox.put(None)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
        self._reader.join(5)

    def submit(self, submissions: list[Any], recorded_by: str | None, *,
               atomic: bool) -> asyncio.Future[list[AppendResult]]:
        """Queue a request (from the event loop): the body's submissions as sent,
        or Rejections for the parts that were not submissions at all."""
        assert len(submissions) <= MAX_GROUP_SUBMISSIONS, "the service bounds a request below a group"
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[list[AppendResult]] = loop.create_future()
        if not self._alive:
            future.set_exception(_stopped())
            return future
        request_id = next(self._ids)
        self._pending[request_id] = future
        self._outbox.put((request_id, submissions, recorded_by, atomic))
        return future

    @property
    def alive(self) -> bool:
        """Started (its store opened, its code loaded: ready for requests) and running."""
        return self._ready and self._alive and self._process.is_alive()

    def depth(self) -> int:
        """Requests sent to the writer and not answered yet."""
        return len(self._pending)

    def _send(self) -> None:
        while True:
            message = self._outbox.get()
            try:
                self._requests_out.send(message)
            except (OSError, ValueError):  # the writer is gone: its reader fails what waits
                return
            if message is None:
                self._requests_out.close()
                return

    def _receive(self) -> None:
        try:
            while True:
                kind, *body = self._answers_in.recv()
                if kind == "group":
                    answers, seconds, requests, self.wallet_counts = body
                    self._settle(answers)
                    results = [r for _, answer in answers if isinstance(answer, list) for r in answer]
                    if results:
                        self._on_commit(results, seconds, requests)
                elif kind == "ready":
                    self._ready = True
                elif kind == "sweep":
                    recorded, self.last_sweep = body
                    if recorded:
                        self._on_commit(recorded, 0.0, 0)
        except (EOFError, OSError):
            pass
        finally:  # the writer exited (stopped, or died): nothing more will be answered
            self._alive = False
            if self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._fail_pending)

    def _settle(self, answers: list[tuple[int, Any]]) -> None:
        """One wake-up of the event loop per group, not one per request."""

        def settle() -> None:
            for request_id, answer in answers:
                future = self._pending.pop(request_id, None)
                if future is None or future.done():  # cancelled (its client left): the outcome stands
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

        if self._loop is not None and answers:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(settle)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_stopped())


# --- the writer process --------------------------------------------------------------


@dataclass
class Request:
    request_id: int
    items: list[Judged]
    atomic: bool


def _writer_process(url: str, sweep_seconds: float | None, requests: Any, answers: Any) -> None:
    # Ctrl-C reaches the whole process group: the server decides when the writer
    # stops (it sends the stop mark once its requests are in).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    _Writer(url, sweep_seconds, requests, answers).run()


class _Writer:
    def __init__(self, url: str, sweep_seconds: float | None, requests: Any, answers: Any):
        self._url = url
        self._sweep_every = sweep_seconds
        self._answers = answers
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._held: collections.deque[Request] = collections.deque()  # taken out of turn: next
        self._stopping = False
        self._due_since: float | None = None  # when housekeeping fell due
        self._last_full_collection = time.monotonic()
        # The pipe is drained into the queue as requests come: the server never
        # waits on a full pipe while a commit is in flight.
        threading.Thread(target=self._drain, args=(requests,), name="requests", daemon=True).start()

    def _drain(self, requests: Any) -> None:
        try:
            while True:
                message = requests.recv()
                self._queue.put(message)
                if message is None:
                    return
        except (EOFError, OSError):  # the server is gone: finish what came, then stop
            self._queue.put(None)

    def run(self) -> None:
        ledger = writers_ledger(self._url)
        with contextlib.suppress(Exception):  # opened now, not by the first request (a store down: later)
            ledger.log_size()
        _full_collections_when_told()
        self._answers.send(("ready",))
        next_sweep = time.monotonic() + self._sweep_every if self._sweep_every else None
        try:
            while True:
                first = self._next(ledger, next_sweep)
                if next_sweep is not None and time.monotonic() >= next_sweep:
                    self._sweep(ledger)
                    next_sweep = time.monotonic() + (self._sweep_every or 0)
                if first is None:
                    if self._stopping:
                        return
                    continue
                if first.atomic:
                    self._commit(ledger, [first], atomic=True)
                    continue
                group, count = [first], len(first.items)
                while count < MAX_GROUP_SUBMISSIONS:
                    try:
                        message = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if message is None:
                        self._stopping = True
                        break
                    more = _request(message)
                    if more.atomic or count + len(more.items) > MAX_GROUP_SUBMISSIONS:
                        self._held.append(more)  # first in the next turn: arrival order holds
                        break
                    group.append(more)
                    count += len(more.items)
                self._commit(ledger, group, atomic=False)
                if self._stopping and not self._held and self._queue.empty():
                    return
        finally:
            ledger.close()
            self._answers.close()

    def _next(self, ledger: Ledger, next_sweep: float | None) -> Request | None:
        if self._held:
            return self._held.popleft()
        if self._housekeeping_due(ledger) and not self._stopping:
            if time.monotonic() - (self._due_since or 0.0) < HOUSEKEEPING_OVERDUE_SECONDS:
                with contextlib.suppress(queue.Empty):  # a request came first: it goes first
                    return self._take(IDLE_SECONDS)
            self._housekeeping(ledger)  # idle (nobody waits on it), or overdue
        if self._stopping:  # the stop mark was read: take what is left, never wait
            with contextlib.suppress(queue.Empty):
                return self._take(0.0)
            return None
        timeout = max(0.0, next_sweep - time.monotonic()) if next_sweep is not None else None
        with contextlib.suppress(queue.Empty):
            return self._take(timeout)
        return None

    def _take(self, timeout: float | None) -> Request | None:
        """The next request (waiting up to ``timeout``; 0: not at all), or None at
        the stop mark. Raises queue.Empty when none came."""
        message = self._queue.get(block=timeout != 0.0, timeout=timeout or None)
        if message is None:
            self._stopping = True
            return None
        return _request(message)

    def _full_collection_due(self) -> bool:
        return (gc.get_count()[2] >= FULL_COLLECTION_AFTER
                and time.monotonic() - self._last_full_collection >= FULL_COLLECTION_EVERY_SECONDS)

    def _housekeeping_due(self, ledger: Ledger) -> bool:
        due = ledger.analyze_due or self._full_collection_due()
        if not due:
            self._due_since = None
        elif self._due_since is None:
            self._due_since = time.monotonic()
        return due

    def _housekeeping(self, ledger: Ledger) -> None:
        self._due_since = None
        if ledger.analyze_due:  # the planner's statistics
            try:
                ledger.analyze()
            except Exception as exc:  # noqa: BLE001 - statistics are a cache: retried when next due
                log.warning("ANALYZE failed: %s", exc)
        if self._full_collection_due():
            gc.collect()
            self._last_full_collection = time.monotonic()

    def _commit(self, ledger: Ledger, group: list[Request], *, atomic: bool) -> None:
        started = time.perf_counter()
        try:
            if atomic:
                results = [ledger.append_judged(group[0].items, atomic=True)]
            else:
                results = ledger.append_group([request.items for request in group])
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the failure
            if not isinstance(exc, LedgerError):
                log.exception("the writer failed on a group of %d requests", len(group))
                exc = LedgerError("store_unavailable", f"the writer failed ({type(exc).__name__}; see the server's log)")
            elif exc.code in (STORE_STATEMENT_FAILED, LOG_DAMAGED, STORE_FULL):  # the operator must look
                log.error("the store refused a group of %d requests: %s", len(group), exc.message)
            self._answers.send(("group", [(request.request_id, exc) for request in group], 0.0, len(group),
                                _wallet_counts(ledger)))
            return
        seconds = time.perf_counter() - started
        self._answers.send(("group", [(r.request_id, answer) for r, answer in zip(group, results)],
                            seconds, len(group), _wallet_counts(ledger)))

    def _sweep(self, ledger: Ledger) -> None:
        try:
            recorded = ledger.sweep(recorded_by=SWEEP_RECORDED_BY)
        except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next turn
            log.warning("scheduled sweep failed: %s", exc)
            return
        self._answers.send(("sweep", recorded, {"at": time.time(), "recorded": len(recorded)}))


def writers_ledger(url: str) -> Ledger:
    """The writer's Ledger: ANALYZE and full collections are its housekeeping's,
    run when no request waits (_housekeeping), never inside an append."""
    ledger = Ledger.from_url(url)
    ledger.auto_analyze = False
    ledger.collect_after_bulk = False
    ledger.warn = log.warning
    return ledger


def _wallet_counts(ledger: Ledger) -> tuple[int, int]:
    return ledger.wallets_loaded_whole, ledger.wallets_compacted


def _full_collections_when_told() -> None:
    """The start-up's objects (modules, the store's mappers) are never garbage:
    frozen, no collection scans them again. Full collections are the writer's
    to run (_housekeeping); the young generations stay automatic."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 2 ** 30)


def _request(message: tuple[Any, ...]) -> Request:
    request_id, submissions, recorded_by, atomic = message
    return Request(request_id, list(judged(submissions, recorded_by)), atomic)
