"""The service's writer runs its housekeeping (ANALYZE, Python's full garbage
collection) only when no request waits on it, or once it is long overdue: each
stalls the writer 0.1-0.2 s, and was the whole p99 at 64 clients."""

from __future__ import annotations

import gc
import json
import multiprocessing
import threading
import time
from typing import Any, Iterator

import pytest

from leadledger import Ledger
from leadledger.application import ANALYZE_AFTER_EVENTS
from leadledger.service import writer
from tests.helpers import wallet


@pytest.fixture
def housekeeper(tmp_path) -> Iterator[tuple[Any, Ledger, Any, list[str]]]:
    """A writer (the process's object, run here) over a real SQLite ledger whose
    ANALYZE is due; ``done`` lists the housekeeping it ran."""
    requests_in, requests_out = multiprocessing.Pipe(duplex=False)
    answers_in, answers_out = multiprocessing.Pipe(duplex=False)
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.init()
    done: list[str] = []
    analyze = ledger.analyze

    def counted_analyze() -> None:
        analyze()
        done.append("analyze")

    ledger.analyze = counted_analyze  # type: ignore[method-assign]
    ledger._recorded_since_analyze = ANALYZE_AFTER_EVENTS
    the_writer = writer._Writer("unused", None, requests_in, answers_out)
    try:
        yield the_writer, ledger, requests_out, done
    finally:
        requests_out.send(None)
        ledger.close()
        for end in (requests_out, answers_in, answers_out):
            end.close()


def _message(request_id: int) -> tuple[Any, ...]:
    return (request_id, [json.dumps(wallet("pro-1")).encode()], None, False)


def test_a_waiting_request_goes_first_and_idleness_runs_the_housekeeping(housekeeper):
    the_writer, ledger, requests_out, done = housekeeper
    requests_out.send(_message(1))
    time.sleep(0.1)  # drained into the writer's queue
    request = the_writer._next(ledger, None)
    assert request is not None and request.request_id == 1
    assert done == [] and ledger.analyze_due  # a request waited: nothing ran before it

    # Nothing comes for IDLE_SECONDS: ANALYZE runs, then the writer waits for the next request.
    threading.Timer(0.3, requests_out.send, args=(_message(2),)).start()
    request = the_writer._next(ledger, None)
    assert request is not None and request.request_id == 2
    assert done == ["analyze"] and not ledger.analyze_due


def test_a_request_arriving_within_the_idle_time_is_not_held_up(housekeeper, monkeypatch):
    the_writer, ledger, requests_out, done = housekeeper
    monkeypatch.setattr(writer, "IDLE_SECONDS", 5.0)  # margins a busy machine keeps
    threading.Timer(0.2, requests_out.send, args=(_message(1),)).start()
    started = time.monotonic()
    request = the_writer._next(ledger, None)  # the queue is empty now, but not idle
    assert request is not None and request.request_id == 1
    assert done == [] and time.monotonic() - started < 5.0


def test_overdue_housekeeping_runs_even_with_a_request_waiting(housekeeper):
    the_writer, ledger, requests_out, done = housekeeper
    requests_out.send(_message(1))
    time.sleep(0.1)
    assert the_writer._housekeeping_due(ledger)
    the_writer._due_since = time.monotonic() - writer.HOUSEKEEPING_OVERDUE_SECONDS - 1
    request = the_writer._next(ledger, None)
    assert request is not None and request.request_id == 1
    assert done == ["analyze"]


def test_full_collections_run_only_when_the_writer_says():
    full: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(info["collected"])

    threshold = gc.get_threshold()
    try:
        writer._full_collections_when_told()
        gc.callbacks.append(seen)
        for _ in range(200_000):  # cycles, and many young collections: CPython alone would run gen 2
            cycle: list[Any] = []
            cycle.append(cycle)
        assert gc.get_count()[2] >= writer.FULL_COLLECTION_AFTER
        assert full == []

        class Idle:
            analyze_due = False

        the_writer = object.__new__(writer._Writer)
        the_writer._last_full_collection = time.monotonic()
        assert not the_writer._full_collection_due()  # not twice within FULL_COLLECTION_EVERY_SECONDS
        the_writer._housekeeping(Idle())  # type: ignore[arg-type]
        assert full == []
        the_writer._last_full_collection -= writer.FULL_COLLECTION_EVERY_SECONDS
        assert the_writer._full_collection_due()
        the_writer._housekeeping(Idle())  # type: ignore[arg-type]
        assert len(full) == 1 and full[0] > 0  # the cycles that reached the old generation
        assert not the_writer._full_collection_due()
    finally:
        if seen in gc.callbacks:
            gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
        gc.unfreeze()
