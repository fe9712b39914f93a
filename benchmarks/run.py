"""Benchmark: build a store of N events through the rules, then time the read
commands and the rebuild as a user runs them, and their peak memory.

    python benchmarks/run.py                       # 1,000,000 events on SQLite (a temp file)
    python benchmarks/run.py --events 100000 --db postgresql://postgres@127.0.0.1/leadledger_bench

Prints figures; asserts nothing (speed lives here, not in timed tests).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from leadledger import Ledger  # noqa: E402
from workload import submissions  # noqa: E402

EVENTS_PER_SUBMISSION = 1.6  # measured on this workload: a quote records 2-3 events


def _high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def run_command(url: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `leadledger` command.

    The peak is the process's own high-water mark (VmHWM, sampled until it exits):
    getrusage would report the parent's size, which a forked child inherits. A
    command with a worker process (a rebuild's or a catch-up's mapping, see
    projections/mapping.py) counts the worker's high-water mark too, added: an
    upper bound of what the two held at once.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "leadledger.cli.main", "--db", url, *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_kib = 0
    workers_kib: dict[int, int] = {}
    while proc.poll() is None:
        own = _high_water_kib(proc.pid)
        for child in _children(proc.pid):
            workers_kib[child] = max(workers_kib.get(child, 0), _high_water_kib(child))
        peak_kib = max(peak_kib, own + sum(workers_kib.values()))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        raise SystemExit(f"{args} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pros", type=int, default=2000)
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file in a temp dir)")
    parser.add_argument("--skip-build", action="store_true",
                        help="measure the commands on the store at --db as it is")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="leadledger-bench-")
    url = args.db or f"sqlite:///{tmp}/bench.db"
    rounds = max(1, round(args.events / (args.pros * EVENTS_PER_SUBMISSION)))
    if not args.skip_build:
        build(url, args.pros, rounds, args.events)
    measure(url)
    if not args.db:
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        print(f"\nstore size on disk: {size / 2**20:.0f} MiB ({tmp})")


def build(url: str, pros: int, rounds: int, events: int) -> None:
    print(f"store {url}; {pros} pros, {rounds} rounds (target {events:,} events)", flush=True)
    with Ledger.from_url(url) as ledger:
        if url.startswith("postgres"):
            ledger.init()
        start = time.perf_counter()
        count = recorded = rejected = 0
        for result in ledger.append_iter(submissions(pros, rounds)):
            count += 1
            recorded += len(result.recorded) if result.status == "recorded" else 0
            rejected += result.status == "rejected"
        append_s = time.perf_counter() - start
        print(f"append: {count:,} submissions, {recorded:,} events, {rejected:,} rejected by the rules, "
              f"{append_s:.1f} s = {count / append_s:,.0f} submissions/s, {recorded / append_s:,.0f} events/s",
              flush=True)
        start = time.perf_counter()
        projected = ledger.catch_up()
        print(f"first catch-up of the read models: {projected:,} events in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the appending process: {peak:.0f} MiB", flush=True)


def measure(url: str) -> None:
    mid = "2026-02-15T00:00:00Z"
    print(f"\n{'command':44} {'seconds':>8} {'peak MiB':>9}")
    for label, command in (
        ("balances --as-of (all wallets)", ["balances", "--as-of", mid, "--format", "json"]),
        ("balances --pro --as-of (one wallet)", ["balances", "--pro", "pro-7", "--as-of", mid, "--format", "json"]),
        ("refunds --as-of (every contact)", ["refunds", "--as-of", mid, "--format", "json"]),
        ("refunds --pro (one pro's contacts)", ["refunds", "--pro", "pro-7", "--format", "json"]),
        ("trial-balance", ["trial-balance", "--format", "json"]),
        ("statement (one pro)", ["statement", "pro-7", "--format", "json"]),
        ("rebuild", ["rebuild"]),
    ):
        seconds, mib = run_command(url, *command)
        print(f"{label:44} {seconds:8.2f} {mib:9.0f}", flush=True)


if __name__ == "__main__":
    main()
