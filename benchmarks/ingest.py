"""Write-path benchmark: leadledger beside the raw database floor, same run.

    python benchmarks/ingest.py                          # both stores, 2000 pros x 15 rounds (~55k submissions)
    python benchmarks/ingest.py --store postgres --rounds 80   # ~300k submissions
    python benchmarks/ingest.py --repeat 3               # medians of 3

For each store it measures, then prints one table (leadledger, raw floor, ratio):

- append: the workload (benchmarks/workload.py) through ``Ledger.append_iter``,
  every rule enforced, durable commits. Floor: the rows leadledger stored for it
  (events and receipts, byte for byte) written again into empty copies of the
  same tables with the same indexes, by the fastest bulk path the database has
  (PostgreSQL ``COPY``; SQLite one ``executemany`` per table), one transaction,
  durable. Both are given in submissions/s.
- append ceiling: the same count over the time to parse every line with the
  submission contract (pydantic's ``validate_json``, the duplicate-key check) and
  digest it for idempotency, plus the floor's write: the rate an append would
  reach if judging, encoding and chaining cost nothing. Beside it, what the
  append spends on those now and what the 30,000/s goal leaves them.
- single: one submission per ``Ledger.append([one])`` on a reused Ledger (the
  service's path) against one INSERT of an event row of the same size, committed
  on its own (autocommit: the database's fastest durable single write) on a
  connection kept open, into a table of the same database (SQLite: the same
  file, so the same write-ahead log). The two alternate in three blocks, so
  both meet the same machine and the same server (still flushing what the bulk
  append wrote).
- single ceiling: the same calls over the time to parse and digest each one
  plus writing each call's own rows (its events and its receipt, byte for byte)
  again as one durable transaction into empty copies of the tables in the same
  database (alternated in the same blocks): the rate a single call would reach
  if judging, chaining and the checks of its guesses cost nothing. Beside it,
  what a call spends on those now and what 0.6 of the floor leaves them.
- first catch-up: the read models brought level with the whole appended log
  (``Ledger.catch_up``, what the first read after a bulk load does), and
- rebuild: ``Ledger.rebuild``, both against reading every stored event row.

The machine is shared: read the ratios, not one absolute figure. Prints figures
and, beside each, issue 9's goal and whether this run met it; asserts nothing
(speed lives here, not in timed tests).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from workload import submissions  # noqa: E402

from leadledger import Ledger  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SINGLES = 300  # single-submission appends timed per repeat
SINGLE_BLOCKS = 3  # ... in this many blocks, each followed by as many floor INSERTs


# --- stores ----------------------------------------------------------------


Call = tuple[list[tuple[Any, ...]], tuple[Any, ...]]  # one call's event rows, its receipt row


class TimedWrites:
    """Durable writes on a connection kept open, timed in blocks that alternate
    with leadledger's single calls, so both meet the same machine (and, on
    PostgreSQL, the same server still flushing the bulk append). Its tables are
    dropped at ``close``."""

    def __init__(self, conn: Any, write: Callable[[Any, Any], None], drop: Sequence[str] = ()) -> None:
        self.conn, self.write, self.drop = conn, write, drop

    def run(self, items: Sequence[Any]) -> float:
        start = time.perf_counter()
        for item in items:
            self.write(self.conn, item)
        return time.perf_counter() - start

    def close(self) -> None:
        for statement in self.drop:
            self.conn.execute(statement)
        self.conn.close()


class Store:
    """A fresh store for leadledger and raw access to the same database."""

    kind: str
    url: str

    def fresh(self) -> None: ...
    def stored_rows(self) -> dict[str, list[tuple[Any, ...]]]: ...
    def bulk_write(self, rows: dict[str, list[tuple[Any, ...]]]) -> float: ...
    def sample_event(self) -> tuple[Any, ...]: ...
    def new_id(self) -> Any: ...  # a fresh originator id, as the store keeps one
    def single_floor(self) -> TimedWrites: ...  # writes one row per item: its params
    def calls_since(self, position: int) -> list[Call]: ...
    def call_writer(self) -> TimedWrites: ...  # writes one call per item
    def read_events(self) -> tuple[int, float]: ...


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="leadledger-ingest-")
        self.path = os.path.join(self.dir, "bench.db")
        self.url = f"sqlite:///{self.path}"

    def _connect(self, path: str) -> sqlite3.Connection:
        # As eventsourcing opens it: WAL, synchronous FULL (the default), so a
        # commit is durable on both sides.
        from leadledger.sqlite_factory import WAL_AUTOCHECKPOINT_PAGES

        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # The ledger's own cadence: in the store's file, whichever connection's
        # commit crosses the mark copies the log back, for all of them.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def fresh(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)

    def stored_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with self._connect(self.path) as conn:
            return {
                "stored_events": conn.execute("SELECT * FROM stored_events").fetchall(),
                "leadledger_receipts": conn.execute("SELECT * FROM leadledger_receipts").fetchall(),
            }

    def _schema(self) -> list[str]:
        with self._connect(self.path) as conn:
            return [sql for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name IN ('stored_events', 'leadledger_receipts')"
                " AND sql IS NOT NULL")]

    def bulk_write(self, rows: dict[str, list[tuple[Any, ...]]]) -> float:
        path = os.path.join(self.dir, "floor.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        schema = self._schema()
        conn = self._connect(path)
        for sql in schema:
            conn.execute(sql)
        start = time.perf_counter()
        conn.execute("BEGIN")
        for table, table_rows in rows.items():
            marks = ",".join("?" * len(table_rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", table_rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    def new_id(self) -> str:
        return uuid.uuid4().hex  # eventsourcing's SQLite tables keep hex text

    def sample_event(self) -> tuple[Any, ...]:
        """(originator_id, originator_version, topic, state) of the middle event."""
        with self._connect(self.path) as conn:
            return conn.execute("SELECT originator_id, originator_version, topic, state FROM stored_events"
                                " ORDER BY rowid LIMIT 1 OFFSET (SELECT count(*) / 2 FROM stored_events)").fetchone()

    def single_floor(self) -> TimedWrites:
        # In the store's own file: the same write-ahead log, grown as far, synced
        # by the same calls (a fresh file's log grows at each commit, dearer).
        conn = self._connect(self.path)
        conn.execute("CREATE TABLE floor_single (originator_id TEXT, originator_version INTEGER,"
                     " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))")
        # Outside a transaction a statement commits on its own: one INSERT is the
        # whole durable write, as leadledger's own single call is one transaction.
        return TimedWrites(conn, lambda conn, row: conn.execute("INSERT INTO floor_single VALUES (?, ?, ?, ?)", row),
                           drop=["DROP TABLE floor_single"])

    def calls_since(self, position: int) -> list[Call]:
        with self._connect(self.path) as conn:
            events = conn.execute("SELECT rowid, * FROM stored_events WHERE rowid > ? ORDER BY rowid",
                                  (position,)).fetchall()
            receipts = conn.execute("SELECT * FROM leadledger_receipts WHERE position > ? ORDER BY position",
                                    (position,)).fetchall()
        return _split_calls(events, receipts, position_of_receipt=lambda r: r[-1])

    def call_writer(self) -> TimedWrites:
        conn = self._connect(self.path)  # the store's own file, as the floor
        for sql in self._schema():
            if sql.startswith("CREATE TABLE"):
                conn.execute(sql.replace("CREATE TABLE ", "CREATE TABLE calls_", 1))

        columns = [row[1] for row in conn.execute("PRAGMA table_info(stored_events)")]

        def write(conn: Any, call: Call) -> None:
            events, receipt = call
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO calls_stored_events (rowid, {', '.join(columns)})"
                             f" VALUES ({','.join('?' * len(events[0]))})", events)
            conn.execute(f"INSERT INTO calls_leadledger_receipts VALUES ({','.join('?' * len(receipt))})", receipt)
            conn.execute("COMMIT")

        return TimedWrites(conn, write, drop=["DROP TABLE calls_stored_events", "DROP TABLE calls_leadledger_receipts"])

    def read_events(self) -> tuple[int, float]:
        conn = self._connect(self.path)
        start = time.perf_counter()
        count = 0
        for _ in conn.execute("SELECT rowid, * FROM stored_events ORDER BY rowid"):
            count += 1
        elapsed = time.perf_counter() - start
        conn.close()
        return count, elapsed


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self, dbname: str = "leadledger_ingest_bench") -> None:
        self.dbname = dbname
        self.url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"

    def _connect(self, dbname: str | None = None, autocommit: bool = False) -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=5432, user="postgres",
                               dbname=dbname or self.dbname, autocommit=autocommit)

    def fresh(self) -> None:
        with self._connect("postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {self.dbname}")
        with Ledger.from_url(self.url) as ledger:
            ledger.init()

    def stored_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with self._connect() as conn:
            return {
                "leadledger_events": conn.execute(
                    "SELECT originator_id, originator_version, topic, state FROM leadledger_events"
                    " ORDER BY notification_id").fetchall(),
                "leadledger_receipts": conn.execute("SELECT * FROM leadledger_receipts").fetchall(),
            }

    def bulk_write(self, rows: dict[str, list[tuple[Any, ...]]]) -> float:
        columns = {"leadledger_events": "(originator_id, originator_version, topic, state)",
                   "leadledger_receipts": ""}
        with self._connect(autocommit=True) as conn:
            for table in rows:
                conn.execute(f"DROP TABLE IF EXISTS floor_{table}")
                conn.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
            if "leadledger_events" in rows:  # bigserial: its own sequence, as the real one
                conn.execute("ALTER TABLE floor_leadledger_events ALTER notification_id DROP DEFAULT")
                conn.execute("CREATE SEQUENCE IF NOT EXISTS floor_seq")
                conn.execute("ALTER TABLE floor_leadledger_events"
                             " ALTER notification_id SET DEFAULT nextval('floor_seq')")
        with self._connect() as conn:
            start = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                for table, table_rows in rows.items():
                    with cur.copy(f"COPY floor_{table} {columns[table]} FROM STDIN") as copy:
                        for row in table_rows:
                            copy.write_row(row)
            elapsed = time.perf_counter() - start
        with self._connect(autocommit=True) as conn:
            for table in rows:
                conn.execute(f"DROP TABLE floor_{table}")
        return elapsed

    def new_id(self) -> uuid.UUID:
        return uuid.uuid4()

    def sample_event(self) -> tuple[Any, ...]:
        """(originator_id, originator_version, topic, state) of the middle event."""
        with self._connect() as conn:
            return conn.execute("SELECT originator_id, originator_version, topic, state FROM leadledger_events"
                                " ORDER BY notification_id LIMIT 1"
                                " OFFSET (SELECT count(*) / 2 FROM leadledger_events)").fetchone()

    def single_floor(self) -> TimedWrites:
        conn = self._connect(autocommit=True)
        conn.execute("DROP TABLE IF EXISTS floor_single")
        conn.execute("CREATE TABLE floor_single (LIKE leadledger_events INCLUDING ALL)")
        # Autocommit: one round trip, the server commits the INSERT on its own, as
        # leadledger's single call is one statement committed on its own.
        return TimedWrites(conn, lambda conn, row: conn.execute(
            "INSERT INTO floor_single (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)", row),
            drop=["DROP TABLE floor_single"])

    def calls_since(self, position: int) -> list[Call]:
        with self._connect() as conn:
            events = conn.execute("SELECT originator_id, originator_version, topic, state, notification_id,"
                                  " chain_sha256 FROM leadledger_events WHERE notification_id > %s"
                                  " ORDER BY notification_id", (position,)).fetchall()
            receipts = conn.execute("SELECT * FROM leadledger_receipts WHERE position > %s ORDER BY position",
                                    (position,)).fetchall()
        return _split_calls(events, receipts, position_of_receipt=lambda r: r[-1], position_of_event=4)

    def call_writer(self) -> TimedWrites:
        conn = self._connect(autocommit=True)
        for table in ("leadledger_events", "leadledger_receipts"):
            conn.execute(f"DROP TABLE IF EXISTS calls_{table}")
            conn.execute(f"CREATE TABLE calls_{table} (LIKE {table} INCLUDING ALL EXCLUDING DEFAULTS)")

        def write(conn: Any, call: Call) -> None:
            # One statement committed on its own, as leadledger's single call is.
            events, receipt = call
            rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(events))
            conn.execute("WITH receipt AS (INSERT INTO calls_leadledger_receipts VALUES (%s, %s, %s, %s, %s, %s))"
                         " INSERT INTO calls_leadledger_events (originator_id, originator_version, topic, state,"
                         f" notification_id, chain_sha256) VALUES {rows}",
                         [*receipt, *(value for event in events for value in event)])

        return TimedWrites(conn, write, drop=["DROP TABLE calls_leadledger_events",
                                              "DROP TABLE calls_leadledger_receipts"])

    def read_events(self) -> tuple[int, float]:
        with self._connect() as conn:
            start = time.perf_counter()
            count = 0
            with conn.cursor(name="read_all") as cur:
                cur.itersize = 10_000
                cur.execute("SELECT notification_id, originator_id, originator_version, topic, state"
                            " FROM leadledger_events ORDER BY notification_id")
                for _ in cur:
                    count += 1
            return count, time.perf_counter() - start


def _split_calls(events: list[tuple[Any, ...]], receipts: list[tuple[Any, ...]],
                 position_of_receipt: Callable[[tuple[Any, ...]], int], position_of_event: int = 0) -> list[Call]:
    """Each single call's events (from its receipt's first position to the next
    receipt's) with its receipt: one submission, one receipt a call."""
    starts = [position_of_receipt(receipt) for receipt in receipts] + [float("inf")]
    calls: list[Call] = []
    for receipt, start, stop in zip(receipts, starts, starts[1:]):
        rows = [event for event in events if start <= event[position_of_event] < stop]
        assert rows, f"a receipt at position {start} with no events"
        calls.append((rows, receipt))
    return calls


# --- measurements ----------------------------------------------------------


def measure(store: Store, lines: list[str], singles: list[str]) -> dict[str, tuple[float, float, str]]:
    """name -> (leadledger figure, floor figure, unit); higher is better."""
    store.fresh()
    with Ledger.from_url(store.url) as ledger:
        start = time.perf_counter()
        count = 0
        for _ in ledger.append_iter(lines):
            count += 1
        append_s = time.perf_counter() - start
        assert count == len(lines)
        # One submission per call on the same Ledger: what a service does. The full
        # collection the bulk append's survivors made due (~230k tracked objects, ~0.2 s
        # to walk) ran at its end (ledger/collector.py), not inside these calls.
        floor, calls = store.single_floor(), store.call_writer()
        sample = store.sample_event()  # a stored event row: the floor writes rows of its size
        single_s = single_floor_s = calls_s = 0.0
        per_block = -(-len(singles) // SINGLE_BLOCKS)
        try:
            for block in range(0, len(singles), per_block):
                lines_of_block = singles[block:block + per_block]
                before = ledger.log_size()
                start = time.perf_counter()
                for line in lines_of_block:
                    ledger.append([line])
                single_s += time.perf_counter() - start
                single_floor_s += floor.run([(store.new_id(), 1, sample[2], sample[3]) for _ in lines_of_block])
                written = store.calls_since(before)
                assert len(written) == len(lines_of_block)
                calls_s += calls.run(written)
        finally:
            floor.close()
            calls.close()
        events = ledger.log_size()
        # Appends leave the read models behind: the first read catches them up.
        start = time.perf_counter()
        caught_up = ledger.catch_up()
        catch_up_s = time.perf_counter() - start
        start = time.perf_counter()
        ledger.rebuild()
        rebuild_s = time.perf_counter() - start
    rows = store.stored_rows()
    floor_s = store.bulk_write(rows)
    read_count, read_s = store.read_events()
    contract_s = contract_cost(lines)
    single_contract_s = contract_cost(singles)
    return {
        "append (submissions/s)": (count / append_s, count / floor_s, "bulk write of the same rows"),
        # What no design behind the contract avoids: pydantic's parse, the
        # idempotency digest and writing the rows. The append cannot beat this.
        CEILING: (count / (contract_s + floor_s), count / floor_s, "parse + digest + bulk write; judging free"),
        "single append (calls/s)": (len(singles) / single_s, len(singles) / single_floor_s,
                                    "one-row INSERT committed on its own, alternated"),
        # The same for one call: parse, digest, and each call's own rows written
        # as one durable transaction. A single call cannot beat this.
        SINGLE_CEILING: (len(singles) / (single_contract_s + calls_s), len(singles) / single_floor_s,
                         "parse + digest + each call's rows in one transaction; judging free"),
        "first catch-up (events/s)": (caught_up / catch_up_s, read_count / read_s, "read every event row"),
        "rebuild (events/s)": (events / rebuild_s, read_count / read_s, "read every event row"),
    }


def contract_cost(lines: list[str]) -> float:
    """Seconds to parse every line with the submission contract (pydantic's
    ``validate_json`` and the duplicate-key check) and digest it for idempotency
    (the receipt's content_sha256): the part of an append owed to the contract."""
    from leadledger.submissions import content_sha256, parse_submission

    start = time.perf_counter()
    for line in lines:
        content_sha256(parse_submission(line))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pros", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=1, help="runs per store; medians are printed")
    args = parser.parse_args()

    # Submissions past the workload's end, for the single appends: fresh contacts.
    all_lines = list(submissions(args.pros, args.rounds + 1))
    workload = list(submissions(args.pros, args.rounds))
    singles = [line for line in all_lines[len(workload):] if '"QuoteSent"' in line][:SINGLES]
    stores: list[Callable[[], Store]] = []
    if args.store in ("sqlite", "both"):
        stores.append(SQLiteStore)
    if args.store in ("postgres", "both"):
        stores.append(PostgresStore)
    print(f"workload: {len(workload):,} submissions ({args.pros} pros x {args.rounds} rounds); "
          f"{len(singles)} single appends; {args.repeat} run(s) per store, medians", flush=True)
    print("\n| store | what | leadledger | raw floor, same run | ratio | issue 9's goal |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for make in stores:
        store = make()
        runs = [measure(store, workload, singles) for _ in range(args.repeat)]
        for name in runs[0]:
            ours = statistics.median(run[name][0] for run in runs)
            floor = statistics.median(run[name][1] for run in runs)
            if name in CEILINGS:
                bounded = statistics.median(run[CEILINGS[name][0]][0] for run in runs)
                verdict = budget(name, ours, bounded, floor)
            else:
                verdict = goal(name, ours, floor)
            print(f"| {store.kind} | {name} | {ours:,.0f} | {floor:,.0f} ({runs[0][name][2]}) | "
                  f"{ours / floor:.2f} | {verdict} |", flush=True)


# Issue 9's goals for what this benchmark measures: at least this figure, or this
# ratio to the same run's floor (None: that side is not part of the goal).
GOALS: dict[str, tuple[float | None, float | None]] = {
    "append (submissions/s)": (30_000, 0.4),
    "single append (calls/s)": (None, 0.6),
    "first catch-up (events/s)": (50_000, None),
    "rebuild (events/s)": (50_000, None),
}


CEILING = "append ceiling (submissions/s)"
SINGLE_CEILING = "single ceiling (calls/s)"


# Each ceiling row: the row it bounds, and what that row spends beyond the ceiling's parts.
CEILINGS: dict[str, tuple[str, str]] = {
    CEILING: ("append (submissions/s)", "the rest of the append (judging, encoding, chaining) takes {} us a submission"),
    SINGLE_CEILING: ("single append (calls/s)", "the rest of a call (judging, chaining, checks) takes {} us"),
}


def budget(name: str, ceiling: float, ours: float, floor: float) -> str:
    """What the bounded row spends beyond the ceiling's parts, against what its
    goal (every part of it: the figure and the ratio to the floor) leaves them."""
    at_least, ratio = GOALS[CEILINGS[name][0]]
    target = max(at_least or 0.0, (ratio or 0.0) * floor)
    allowed_us = 1e6 / target - 1e6 / ceiling
    spent_us = 1e6 / ours - 1e6 / ceiling
    return (CEILINGS[name][1].format(f"{spent_us:.0f}") + "; "
            + (f"{target:,.0f}/s leaves it {allowed_us:.1f} us" if allowed_us > 0
               else f"{target:,.0f}/s is out of reach even with it free"))


def goal(name: str, ours: float, floor: float) -> str:
    """The goal and whether this run met it (every part of it)."""
    at_least, ratio = GOALS[name]
    parts = ([f">= {at_least:,.0f}"] if at_least is not None else []) + \
        ([f">= {ratio} of the floor"] if ratio is not None else [])
    met = (at_least is None or ours >= at_least) and (ratio is None or ours / floor >= ratio)
    return f"{' and '.join(parts)}: {'met' if met else 'not met'}"


if __name__ == "__main__":
    main()
