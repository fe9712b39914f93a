"""What a single SQLite call could reach with judging free, on the grown store.

    python benchmarks/single_call.py                 # 600 calls, 2000 pros x 5 rounds first
    python benchmarks/single_call.py --calls 1200 --rounds 10

``ingest.py``'s "single ceiling" writes each call's rows into EMPTY copies of the
tables and times the contract (pydantic's parse, the idempotency digest) in a tight
loop. Both flatter it. This probe, for one submission per ``Ledger.append`` call:

1. appends the workload, copies the store as it stands (twice), then makes the
   calls through the same Ledger (its wallets warm, as in ingest.py), recording every statement each call runs (the
   eventsourcing cursor's execute/executemany) and timing the call;
2. replays each call's statements with their parameters on the first copy
   (``BEGIN IMMEDIATE``,
   the head, the guesses' check, the inserts, the head's move, ``COMMIT``), with the
   call's own parse and digest just before it, as a call runs them (after the
   previous commit's wait: the code runs cold, ~2-3x its tight-loop time);
3. replays the writes alone (``BEGIN IMMEDIATE``, the inserts, the head's move,
   ``COMMIT``) on the second copy: what a design that reads nothing would still run;
4. times the floor (one row INSERT committed on its own, the file's own write-ahead
   log) in blocks alternated with 2 and 3.

Prints each beside the floor and what 0.6 of the floor (issue 9's goal) would leave
for judging, encoding and chaining. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import submissions  # noqa: E402

import eventsourcing.sqlite as es_sqlite  # noqa: E402

from leadledger import Ledger  # noqa: E402
from leadledger.submissions import content_sha256, parse_submission  # noqa: E402

BLOCKS = 6
STATE = b"x" * 700  # the floor's row: about a stored event's size


def record_calls(ledger: Ledger, lines: list[str]) -> tuple[list[list[tuple[str, Any]]], list[float]]:
    """Each call's statements (kind, args), and each call's seconds."""
    recording: list[tuple[str, Any]] | None = None
    execute, executemany = es_sqlite.SQLiteCursor.execute, es_sqlite.SQLiteCursor.executemany

    def traced_execute(self: Any, *args: Any, **kwargs: Any) -> None:
        if recording is not None:
            recording.append(("execute", args))
        execute(self, *args, **kwargs)

    def traced_executemany(self: Any, statement: str, rows: Any) -> None:
        rows = list(rows)
        if recording is not None:
            recording.append(("executemany", (statement, rows)))
        executemany(self, statement, rows)

    es_sqlite.SQLiteCursor.execute, es_sqlite.SQLiteCursor.executemany = traced_execute, traced_executemany
    calls, seconds = [], []
    try:
        for line in lines:
            recording = []
            start = time.perf_counter()
            ledger.append([line])
            seconds.append(time.perf_counter() - start)
            calls.append(recording)
            recording = None
    finally:
        es_sqlite.SQLiteCursor.execute, es_sqlite.SQLiteCursor.executemany = execute, executemany
    return calls, seconds


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=128)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=10000")  # ledger/sqlite_factory.py's
    return conn


def replay(conn: sqlite3.Connection, statements: list[tuple[str, Any]], *, writes_only: bool) -> None:
    if writes_only:
        conn.execute("BEGIN IMMEDIATE")
        for kind, args in statements:
            if args[0].startswith(("INSERT", "UPDATE")):
                (conn.execute if kind == "execute" else conn.executemany)(*args)
        conn.execute("COMMIT")
        return
    reading = False
    for kind, args in statements:
        if kind == "executemany":
            conn.executemany(*args)
            continue
        if args[0] in ("BEGIN", "BEGIN IMMEDIATE"):
            if reading:  # eventsourcing ends a read transaction with a rollback
                conn.execute("ROLLBACK")
            reading = args[0] == "BEGIN"
        conn.execute(*args).fetchall()
    conn.execute("COMMIT")


@dataclass
class Timings:
    """Seconds per call, by what was timed."""
    ledger: list[float] = field(default_factory=list)
    contract: list[float] = field(default_factory=list)
    statements: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)


def replay_block(lines: list[str], calls: list[list[tuple[str, Any]]], full: sqlite3.Connection,
                 writes: sqlite3.Connection, floor: sqlite3.Connection, timings: Timings) -> None:
    """One block of calls replayed both ways, then as many floor writes."""
    for line, statements in zip(lines, calls):
        began = time.perf_counter()
        content_sha256(parse_submission(line))
        parsed = time.perf_counter()
        replay(full, statements, writes_only=False)
        timings.contract.append(parsed - began)
        timings.statements.append(time.perf_counter() - parsed)
    for statements in calls:
        began = time.perf_counter()
        replay(writes, statements, writes_only=True)
        timings.writes.append(time.perf_counter() - began)
    for _ in calls:
        began = time.perf_counter()
        floor.execute("INSERT INTO floor_single VALUES (?, 1, 'floor', ?)", (uuid.uuid4().hex, STATE))
        timings.floor.append(time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--pros", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    workload = list(submissions(args.pros, args.rounds))
    later = list(submissions(args.pros, args.rounds + 1))[len(workload):]
    singles = [line for line in later if '"QuoteSent"' in line][:args.calls + 50]
    warm, lines = singles[:50], singles[50:]
    folder = Path(tempfile.mkdtemp())
    store, full_path, writes_path = (str(folder / name) for name in ("store.db", "full.db", "writes.db"))
    timings = Timings()
    statement_counts: list[int] = []
    # One Ledger for the append and the calls, as in ingest.py: its wallets are warm.
    with Ledger.from_url(f"sqlite:///{store}") as ledger:
        for _ in ledger.append_iter(workload):
            pass
        for line in warm:
            ledger.append([line])
        with sqlite3.connect(store) as conn:  # the store as it stands, in its main file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(store, full_path)
        shutil.copy(store, writes_path)
        full, writes, floor = connect(full_path), connect(writes_path), connect(full_path)
        floor.execute("CREATE TABLE floor_single (originator_id TEXT, originator_version INTEGER,"
                      " topic TEXT, state BLOB)")  # in the replay's file and log
        per_block = -(-len(lines) // BLOCKS)
        for start in range(0, len(lines), per_block):
            # The four alternate a block at a time: they meet the same machine. The copies
            # replay the calls in the ledger's order, so each stands where the ledger stood.
            block = lines[start:start + per_block]
            calls, seconds = record_calls(ledger, block)
            timings.ledger += seconds
            statement_counts += [len(c) for c in calls]
            replay_block(block, calls, full, writes, floor, timings)
    began = time.perf_counter()
    for line in lines:
        content_sha256(parse_submission(line))
    tight_us = (time.perf_counter() - began) / len(lines) * 1e6

    def us(values: list[float]) -> float:
        return statistics.mean(values) * 1e6

    floor_us, contract_us = us(timings.floor), us(timings.contract)
    print(f"{len(lines)} single calls (QuoteSent) onto a store of {len(workload):,} submissions; "
          f"statements a call (median): {statistics.median(statement_counts):.0f}")
    print("\n| what, a call | us | ratio to the floor | 0.6 of the floor leaves |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| floor: one-row INSERT committed on its own | {floor_us:,.0f} | 1.00 | - |")
    for name, cost in (("the ledger's call (Ledger.append of one)", us(timings.ledger)),
                       ("its statements replayed + the contract in the call", us(timings.statements) + contract_us),
                       ("its writes alone + the contract in the call", us(timings.writes) + contract_us)):
        print(f"| {name} | {cost:,.0f} | {floor_us / cost:.2f} | {floor_us / 0.6 - cost:,.0f} us |")
    print(f"\nthe contract (parse + digest): {contract_us:.0f} us in the call, {tight_us:.0f} us in a tight loop")


if __name__ == "__main__":
    main()
