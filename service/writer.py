"""One writer per process, with group commit.

Requests are queued in arrival order. The writer thread takes the first one
and everything that queued behind it while the previous commit was in flight
(up to ``MAX_GROUP_SUBMISSIONS``), judges them in that order against the wallet
and contact state its Ledger keeps warm, and records them in one transaction.
Each request's future is resolved only after that transaction committed, so
every answer the service gives is durable.

An atomic request is committed alone: its all-or-nothing outcome must not
change how the requests behind it are judged.

A second writer (another process, a CLI append) is handled by the store, as
for any Ledger: the chain head and the aggregates' versions make one of two
concurrent commits fail, and the loser judges its group again against fresh
state (Ledger._commit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from leadledger.application import MAX_GROUP_SUBMISSIONS, AppendResult, Judged, Ledger
from leadledger.errors import LedgerError

log = logging.getLogger("leadledger.service")

SWEEP_RECORDED_BY = "serve:sweep"


@dataclass
class Request:
    items: list[Judged]
    atomic: bool
    future: asyncio.Future[list[AppendResult]]


class GroupWriter:
    def __init__(self, url: str, *, on_commit: Callable[[list[AppendResult], float, int], None],
                 sweep_every: timedelta | None = None):
        self._url = url
        self._on_commit = on_commit  # (results, commit seconds, requests in the group)
        self._sweep_every = sweep_every.total_seconds() if sweep_every else None
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._held: collections.deque[Request] = collections.deque()  # taken out of turn: next
        self._thread = threading.Thread(target=self._run, name="leadledger-writer", daemon=True)
        self.last_sweep: dict[str, Any] | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where submit() was called: futures live there

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, items: list[Judged], *, atomic: bool) -> asyncio.Future[list[AppendResult]]:
        """Queue a request (from the event loop); its future is settled on the loop
        once its group committed (or failed)."""
        assert len(items) <= MAX_GROUP_SUBMISSIONS, "the service bounds a request below a group"
        loop = asyncio.get_running_loop()
        self._loop = loop
        request = Request(items, atomic, loop.create_future())
        if not self._thread.is_alive():
            request.future.set_exception(LedgerError("store_unavailable", "the writer has stopped"))
            return request.future
        self._queue.put(request)
        return request.future

    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    # --- the writer thread ---------------------------------------------------

    def _run(self) -> None:
        ledger = Ledger.from_url(self._url)
        next_sweep = time.monotonic() + self._sweep_every if self._sweep_every else None
        try:
            while True:
                first = self._next(next_sweep)
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
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._stopping = True
                        break
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

    def _next(self, next_sweep: float | None) -> Request | None:
        if self._held:
            return self._held.popleft()
        if self._stopping:  # the stop mark was read: take what is left, never wait
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                return None
        timeout = max(0.0, next_sweep - time.monotonic()) if next_sweep is not None else None
        try:
            request = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if request is None:
            self._stopping = True
        return request

    def _commit(self, ledger: Ledger, group: list[Request], *, atomic: bool) -> None:
        started = time.perf_counter()
        try:
            if atomic:
                answers = [ledger.append_judged(group[0].items, atomic=True)]
            else:
                answers = ledger.append_group([request.items for request in group])
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the failure
            if not isinstance(exc, LedgerError):
                log.exception("the writer failed on a group of %d requests", len(group))
            self._settle([(request.future, exc) for request in group])
            return
        seconds = time.perf_counter() - started
        # One wake-up of the event loop per group, not one per request.
        self._settle([(request.future, results) for request, results in zip(group, answers)])
        self._on_commit([r for results in answers for r in results], seconds, len(group))

    def _settle(self, answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
        def settle() -> None:
            for future, answer in answers:
                if future.done():  # the request was cancelled (its client left): the outcome stands
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

        if self._loop is not None and answers:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(settle)

    def _sweep(self, ledger: Ledger) -> None:
        try:
            recorded = ledger.sweep(recorded_by=SWEEP_RECORDED_BY)
        except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next turn
            log.warning("scheduled sweep failed: %s", exc)
            return
        self.last_sweep = {"at": time.time(), "recorded": len(recorded)}
        if recorded:
            self._on_commit(recorded, 0.0, 0)
