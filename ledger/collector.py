"""Pausing Python's cyclic garbage collector around a bulk pass.

Appends: a long-lived writer holds tens of thousands of objects (warm wallets and
contacts, up to 65,536 cached ids per kind, each a tracked UUID), and each full
collection walked them all: 42 of them took 8.2-8.8 s of a 273k-submission append
(SQLite, ~42 s in all; ~1 us per tracked object here) and found 15 objects of
garbage. Paused for the append, with the young generations collected every 1,000
submissions (``collect_young``: what is left of cycles an append makes is young),
the same append ran at 8.2-8.4k submissions/s instead of 6.3-6.8k.

Rebuilds and catch-ups: a rebuild makes millions of short-lived, acyclic objects
(a row, a decoded state, its read-model tuples per event) and keeps a page of
them alive at a time: each automatic collection walks that page again, and they
were a quarter of a rebuild (536k events, SQLite: 27.4 s with collections, 20.9 s
without). Reference counting frees them all the same; the collector is only
needed for cycles, which the pass does not make.

After a bulk append (a full chunk or more): one full collection, at its end.
The survivors of the young collections (warm wallets and contacts, cached ids)
are promoted to the old generation, which makes a full collection due soon;
left to itself it ran in whatever call allocated next, typically the next
single append: one walk of ~230k objects, ~0.2 s, after a 273k-submission
append (1,000 calls right after it: 1,576/s with that walk inside, 2,318/s
without; SQLite). The bulk append, ~30 s, pays it instead. The service's writer
turns this off (``Ledger.collect_after_bulk``): it runs full collections when idle.

The switch is process-wide: in the service, another thread's cyclic garbage waits
for the pass to end (a catch-up: one batch to a few seconds for a backlog; an
append: the call, while its results are read too). Nested or concurrent pauses
only turn it back on if it was on when they began.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collect_after_bulk() -> None:
    """The full collection a bulk append's survivors made due (see above)."""
    gc.collect()


def collect_young() -> None:
    """Collect the two young generations (objects made since the last collection),
    not the old one: a paused pass's own cycles, at the cost of what it made."""
    gc.collect(1)
