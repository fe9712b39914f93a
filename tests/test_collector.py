"""A bulk append pauses Python's cyclic collector (ledger/collector.py) and still
frees the cycles its chunks make: young collections run between chunks, when
nothing of the chunk before is held."""

from __future__ import annotations

import gc
import weakref

import leadledger.application as application
from leadledger import Ledger
from leadledger.application import judged
from leadledger.errors import Rejection


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # freed only by the collector


def test_a_long_append_runs_paused_and_frees_each_chunks_cycles(tmp_path, monkeypatch):
    monkeypatch.setattr(application, "CHUNK_SIZE", 10)
    made: list[weakref.ref] = []

    def item(n: int) -> tuple[None, Rejection, str]:
        rejection = Rejection("invalid_submission", f"line {n}")
        rejection.cycle = _Cycle()  # held by the chunk while it is judged
        made.append(weakref.ref(rejection.cycle))
        return None, rejection, "test"

    def items():  # holds no item while suspended
        for n in range(60):
            yield item(n)

    assert gc.isenabled()
    with Ledger.from_url(f"sqlite:///{tmp_path}/gc.db") as ledger:
        seen = 0
        for result in ledger._append_items(items(), atomic=False):
            assert result.status == "rejected"
            assert not gc.isenabled()  # paused for the whole append, results included
            seen += 1
            if seen % 10 == 0 and seen >= 20:
                # Every chunk before the one just answered was collected young.
                assert all(ref() is None for ref in made[:seen - 10]), seen
        assert seen == 60
    assert gc.isenabled()


def test_a_submission_that_does_not_parse_leaves_no_cycle():
    """Its ValidationError is kept to word the message without its traceback (which
    holds the frame that holds the error)."""
    gc.collect()
    gc.disable()
    try:
        answers = list(judged(['{"type": "QuoteSent", "bad": 1}', '{"type": "Nope"}', "[1, 2"] * 20, None))
        assert all(isinstance(item, Rejection) for _, item, _ in answers)
        del answers
        assert gc.collect() == 0
    finally:
        gc.enable()


def _full_collections_during(run) -> int:
    """How many full (generation 2) collections ``run()`` started, with the automatic
    ones held off (as the service's writer does), so only those asked for count."""
    started: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            started.append(2)

    threshold = gc.get_threshold()
    gc.set_threshold(threshold[0], threshold[1], 2 ** 30)
    gc.callbacks.append(seen)
    try:
        run()
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
    return len(started)


def test_a_bulk_append_runs_the_full_collection_it_made_due_at_its_end(tmp_path, monkeypatch):
    """Its survivors would make the next call (a single append) walk them all;
    a short append, or a ledger told not to (the service's writer), runs none."""
    monkeypatch.setattr(application, "CHUNK_SIZE", 10)

    def rejected(count: int) -> list[tuple[None, Rejection, str]]:
        return [(None, Rejection("invalid_submission", f"line {n}"), "test") for n in range(count)]

    with Ledger.from_url(f"sqlite:///{tmp_path}/gc.db") as ledger:
        assert _full_collections_during(lambda: list(ledger._append_items(iter(rejected(25)), atomic=False))) == 1
        assert _full_collections_during(lambda: list(ledger._append_items(iter(rejected(10)), atomic=True))) == 1
        assert _full_collections_during(lambda: list(ledger._append_items(iter(rejected(9)), atomic=False))) == 0
        assert _full_collections_during(lambda: list(ledger._append_items(iter(rejected(9)), atomic=True))) == 0
        ledger.collect_after_bulk = False
        assert _full_collections_during(lambda: list(ledger._append_items(iter(rejected(25)), atomic=False))) == 0


def test_the_services_writer_leaves_full_collections_to_its_idle_turns(tmp_path, monkeypatch):
    from leadledger.service import writer

    monkeypatch.setattr(application, "CHUNK_SIZE", 10)
    with writer.writers_ledger(f"sqlite:///{tmp_path}/gc.db") as ledger:
        assert not ledger.auto_analyze
        assert _full_collections_during(lambda: list(ledger._append_items(
            iter([(None, Rejection("invalid_submission", "x"), "test")] * 25), atomic=False))) == 0
