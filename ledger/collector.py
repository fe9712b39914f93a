"""Pausing Python's cyclic garbage collector around a bulk pass.

A rebuild makes millions of short-lived, acyclic objects (a row, a decoded state,
its read-model tuples per event) and keeps a page of them alive at a time: each
automatic collection walks that page again, and they were a quarter of a
rebuild (536k events, SQLite: 27.4 s with collections, 20.9 s without).
Reference counting frees them all the same; the collector is only needed for
cycles, which the pass does not make.

The switch is process-wide: in the service, another thread's cyclic garbage waits
for the pass to end (a catch-up: one batch to a few seconds for a backlog). Nested
or concurrent pauses only turn it back on if it was on when they began.
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
