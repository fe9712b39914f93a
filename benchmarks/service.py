"""Service benchmark: `leadledger serve` under a real HTTP load, beside raw
PostgreSQL durable commits measured in the same run.

    python benchmarks/service.py                      # PostgreSQL, ~6k timed singles per level
    python benchmarks/service.py --singles 20000 --pros 4000
    python benchmarks/service.py --profile /tmp/serve.svg   # py-spy the server and its writer, 64 clients
    python benchmarks/service.py --profile /tmp/serve.txt   # the same as collapsed stacks (text)

What it prints (one table):

- 1, 8 and 64 concurrent clients, each sending one submission per request
  (keep-alive HTTP/1.1 from a load generator in its own process: asyncio over
  raw sockets, ~30 us of client CPU per request): submissions/s, p50 and p99
  latency. The submissions are the realistic workload (benchmarks/workload.py)
  after its wallets were opened: quotes, reads, calls, refunds.
  Floor: one INSERT + COMMIT of an event-sized row per transaction, by as many
  concurrent connections, on the same server, durable (synchronous_commit on).
- the server's own figures for the singles (from /metrics): submissions per
  group commit, and the writer's time to judge and commit one group.
- one client sending the whole workload as NDJSON batches of 1,000, against
  ``Ledger.append`` (what ``leadledger append`` runs) of the same lines on an
  empty store of its own.

The machine is shared and has 2 cores that the server, the load generator and
PostgreSQL share: read the ratios, not one absolute figure. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from workload import submissions  # noqa: E402

from leadledger import Ledger  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
LEVELS = (1, 8, 64)
BATCH = 1000
ROW_BYTES = 400  # about a stored QuoteSent's state


# --- stores and server ---------------------------------------------------------


def fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with Ledger.from_url(url) as ledger:
        ledger.init()
    return url


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str) -> tuple[subprocess.Popen, int]:
    import httpx

    port = free_port()
    leadledger = str(Path(sys.executable).parent / "leadledger")
    process = subprocess.Popen([leadledger, "--db", url, "serve", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("leadledger serve did not start")


def group_commits(port: int) -> tuple[float, float, float]:
    """The server's group commits so far: count, submissions in them, seconds (from /metrics)."""
    import httpx

    wanted = {"leadledger_group_commit_submissions_count": 0.0, "leadledger_group_commit_submissions_sum": 0.0,
              "leadledger_commit_seconds_sum": 0.0}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            wanted[name] = float(value)
    return tuple(wanted.values())  # type: ignore[return-value]


# --- the load generator (its own process) ----------------------------------------


def _request(secret: str, body: bytes, ndjson: bool = False) -> bytes:
    kind = b"application/x-ndjson" if ndjson else b"application/json"
    return (b"POST /v1/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + secret.encode()
            + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _client(port: int, requests: list[bytes], next_index: list[int], latencies: list[float],
                  failures: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while next_index[0] < len(requests):
            request = requests[next_index[0]]
            next_index[0] += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                failures.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode(errors="replace"))
    finally:
        writer.close()


def _load(port: int, requests: list[bytes], clients: int, out: Any) -> None:
    async def run() -> tuple[float, list[float], list[str]]:
        latencies: list[float] = []
        failures: list[str] = []
        next_index = [0]
        started = time.perf_counter()
        await asyncio.gather(*(_client(port, requests, next_index, latencies, failures) for _ in range(clients)))
        return time.perf_counter() - started, latencies, failures

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.send(asyncio.run(run()))


def load(port: int, requests: list[bytes], clients: int) -> tuple[float, list[float], list[str]]:
    """Seconds, per-request latencies and failures of ``clients`` keep-alive connections."""
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_load, args=(port, requests, clients, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


# --- the raw floor ---------------------------------------------------------------


def raw_commits(url: str, connections: int, total: int, row_bytes: int) -> tuple[float, list[float]]:
    """INSERT + COMMIT of one row per transaction by ``connections`` concurrent
    connections: seconds for ``total`` commits, and their latencies."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, originator_id uuid, version bigint,"
                     " topic text, state bytea)")
    state = os.urandom(row_bytes // 2).hex().encode()[:row_bytes]
    latencies: list[float] = []
    counter = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(connections + 1)

    def worker() -> None:
        import uuid

        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            while True:
                with lock:
                    if counter[0] >= total:
                        return
                    counter[0] += 1
                started = time.perf_counter()
                conn.execute("INSERT INTO bench_raw (originator_id, version, topic, state) VALUES (%s, 1, %s, %s)",
                             (uuid.uuid4(), "ledger.events:QuoteSent", state))
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


# --- the run -----------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pros", type=int, default=2000)
    parser.add_argument("--singles", type=int, default=6000, help="timed single-submission requests per level")
    parser.add_argument("--batched", type=int, default=30_000, help="submissions sent in batches of 1,000")
    parser.add_argument("--profile", metavar="SVG", help="py-spy record the server during the 64-client run")
    args = parser.parse_args()

    lines = [line.encode() for line in submissions(args.pros, 40)]
    # The wallets (opened, funded, a card): sent first, not timed.
    setup = next(i for i, line in enumerate(lines) if b'"QuoteSent"' in line)
    rows: list[tuple[str, ...]] = []
    url = fresh_database("leadledger_bench_service")
    process = None
    try:
        with Ledger.from_url(url) as ledger:
            secret = ledger.create_key("bench", "admin")[1]
        floors = {n: raw_commits(url, n, max(2000, args.singles // 2), ROW_BYTES) for n in LEVELS}
        process, port = start_server(url)
        batches = [_request(secret, b"\n".join(lines[i:i + BATCH]), ndjson=True) for i in range(0, setup, BATCH)]
        load(port, batches, 1)  # the wallets, not timed
        offset = setup
        for clients in LEVELS:
            timed = lines[offset:offset + args.singles]
            offset += len(timed)
            profiler = None
            if args.profile and clients == LEVELS[-1]:
                spy = str(Path(sys.executable).parent / "py-spy")
                fmt = ["--format", "raw"] if args.profile.endswith(".txt") else []  # collapsed stacks
                profiler = subprocess.Popen([spy, "record", "-o", args.profile, "-p", str(process.pid),
                                             "--rate", "200", "--nonblocking", "--threads", "--subprocesses",
                                             *fmt],  # the writer runs in a process of its own
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = group_commits(port)
            seconds, latencies, failures = load(port, [_request(secret, line) for line in timed], clients)
            groups, submissions_in_groups, commit_seconds = (b - a for a, b in zip(before, group_commits(port)))
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait()
            raw_seconds, raw_latencies = floors[clients]
            raw_rate = len(raw_latencies) / raw_seconds
            rate = len(latencies) / seconds
            rows.append((f"{clients} client(s), 1 submission per request", f"{rate:,.0f}/s",
                         f"{percentile(latencies, 0.5) * 1000:.1f} / {percentile(latencies, 0.99) * 1000:.1f} ms",
                         f"{raw_rate:,.0f}/s", f"{percentile(raw_latencies, 0.5) * 1000:.1f} / "
                         f"{percentile(raw_latencies, 0.99) * 1000:.1f} ms", f"{rate / raw_rate:.2f}",
                         f"{submissions_in_groups / max(groups, 1):.1f} / {commit_seconds / max(groups, 1) * 1000:.1f} ms"))
            if failures:
                print(f"  {len(failures)} failed requests at {clients} clients, e.g. {failures[0]}")

        # Batches: the whole workload, one client, 1,000 per request, on a store of its own,
        # against Ledger.append of the same lines on another.
        stop(process)
        process = None
        batched = lines[:args.batched]
        url_http = fresh_database("leadledger_bench_service_b")
        with Ledger.from_url(url_http) as ledger:
            secret_b = ledger.create_key("bench", "admin")[1]
        process, port = start_server(url_http)
        seconds_http, latencies, failures = load(port, [_request(secret_b, b"\n".join(batched[i:i + BATCH]), True)
                                                        for i in range(0, len(batched), BATCH)], 1)
        stop(process)
        process = None
        url_api = fresh_database("leadledger_bench_service_c")
        with Ledger.from_url(url_api) as ledger:
            started = time.perf_counter()
            for _ in ledger.append_iter(batched):
                pass
            seconds_api = time.perf_counter() - started
        rows.append((f"1 client, batches of {BATCH:,} (NDJSON)", f"{len(batched) / seconds_http:,.0f}/s",
                     f"{percentile(latencies, 0.5) * 1000:.0f} / {percentile(latencies, 0.99) * 1000:.0f} ms per batch",
                     f"{len(batched) / seconds_api:,.0f}/s (Ledger.append)", "-",
                     f"{seconds_api / seconds_http:.2f}", "-"))
        if failures:
            print(f"  {len(failures)} failed batch requests, e.g. {failures[0]}")
    finally:
        if process is not None:
            stop(process)
        for name in ("leadledger_bench_service", "leadledger_bench_service_b", "leadledger_bench_service_c"):
            drop_database(name)

    print(f"\nleadledger serve on PostgreSQL, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    header = ("load", "leadledger", "p50 / p99", "raw floor, same run", "floor p50 / p99", "ratio",
              "group: size / judge+commit")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
