"""How cost grows with the log: one command, the whole curve, written to RESULTS.md.

    python benchmarks/scaling.py                         # SQLite, 50k / 300k / 1M events
    python benchmarks/scaling.py --store postgres
    python benchmarks/scaling.py --sizes 50000,300000 --write benchmarks/RESULTS.md

For each size it builds a fresh store of that many events (the workload of
benchmarks/workload.py, through ``Ledger.append_iter``, every rule enforced),
then, each in a cold ``leadledger`` process as a user runs it, measures:

- ``append`` of the same next ~50k submissions (the workload's following
  rounds): the flatness goal compares it with the same append onto a store
  holding only the wallets ("empty");
- ``rebuild``, ``balances`` (all, one pro, as of a past instant), ``refunds``
  (``explain``) of one contact, ``trial-balance --as-of``: wall seconds and peak RSS;
- the same reads inside the API (benchmarks/reads.py), in milliseconds.

Prints a Markdown table and, with ``--write``, appends it to a results file with
the machine and the date. Figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import PostgresStore, SQLiteStore  # noqa: E402
from reads import measure as measure_reads  # noqa: E402
from run import run_command  # noqa: E402
from workload import submissions  # noqa: E402

from leadledger import Ledger  # noqa: E402

PROS = 2000
EVENTS_PER_ROUND = 5300  # measured: a round of 2000 pros records ~5,300 events
EXTRA_ROUNDS = 25  # ~50k submissions appended onto each store


def _lines(pros: int, first_round: int, last_round: int) -> list[str]:
    """The workload's rounds [first_round, last_round), without its wallets."""
    stream = submissions(pros, last_round)
    skip = sum(1 for _ in submissions(pros, first_round))  # the wallets, then earlier rounds
    return list(itertools.islice(stream, skip, None))


def measure(store, events: int, pros: int) -> dict[str, tuple[float, float]]:
    rounds = max(0, round(events / EVENTS_PER_ROUND))
    store.fresh()
    base = list(submissions(pros, 0)) if rounds == 0 else None
    start = time.perf_counter()
    with Ledger.from_url(store.url) as ledger:
        count = 0
        for _ in ledger.append_iter(base if base is not None else submissions(pros, rounds)):
            count += 1
        size = ledger.log_size()
    build_s = time.perf_counter() - start
    out: dict[str, tuple[float, float]] = {"build (submissions/s)": (count / build_s, 0.0)}
    extra = _lines(pros, rounds, rounds + EXTRA_ROUNDS)
    with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as handle:
        handle.write("\n".join(extra) + "\n")
    try:
        # exit 1: some submissions were rejected by the rules, as the workload means
        seconds, mib = run_command(store.url, "append", handle.name, ok_codes=(0, 1))
    finally:
        os.unlink(handle.name)
    out["append +50k, cold (submissions/s)"] = (len(extra) / seconds, mib)
    mid = "2025-02-15T00:00:00Z"
    for label, args in (
        ("rebuild (s)", ["rebuild"]),
        ("balances --as-of, all (s)", ["balances", "--as-of", mid, "-f", "json"]),
        ("balances --pro --as-of (s)", ["balances", "--pro", "pro-7", "--as-of", mid, "-f", "json"]),
        ("explain one contact (s)", ["explain", "ct-0-7", "-f", "json"]),
        ("trial-balance --as-of (s)", ["trial-balance", "--as-of", mid, "-f", "json"]),
    ):
        out[label] = run_command(store.url, *args)
    # The same reads inside the API (an open Ledger, as the service would call them):
    # the read goals are in milliseconds there, not in a cold process.
    for label, (ms, _) in measure_reads(store.url).items():
        if label != "events in the store":
            out[f"in the API, ms: {label}"] = (ms, 0.0)
    out["events in the store"] = (float(size), 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sizes", default="0,50000,300000,1000000",
                        help="events in the store before the measured append (0: wallets only)")
    parser.add_argument("--pros", type=int, default=PROS)
    parser.add_argument("--write", help="append the table to this Markdown file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    store = SQLiteStore() if args.store == "sqlite" else PostgresStore("leadledger_scaling_bench")
    results = {}
    for size in sizes:
        print(f"building {size:,} events on {args.store}...", file=sys.stderr, flush=True)
        results[size] = measure(store, size, args.pros)
    names = list(results[sizes[0]])
    header = "| measure (store size before the +50k append) | " + " | ".join(
        f"{int(results[s]['events in the store'][0]):,} events" for s in sizes) + " |"
    lines = [header, "| --- |" + " ---: |" * len(sizes)]
    for name in names:
        if name == "events in the store":
            continue
        cells = []
        for size in sizes:
            value, mib = results[size][name]
            text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
            cells.append(text + (f" ({mib:.0f} MiB)" if mib else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    flat = [results[s]["append +50k, cold (submissions/s)"][0] for s in sizes]
    summary = (f"append +50k onto the largest store: {flat[-1] / flat[0]:.2f} of the rate onto "
               f"the smallest (flatness goal: >= 0.8)")
    table = "\n".join(lines)
    print(table)
    print(summary)
    if args.write:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        with open(args.write, "a") as results_file:
            results_file.write(f"\n## Scaling, {args.store}, {stamp}\n\nMachine: {machine} (shared, noisy)."
                               f" Command: `python benchmarks/scaling.py --store {args.store} --sizes {args.sizes}`."
                               f" Seconds and peak RSS of one cold `leadledger` process each; rebuild and"
                               f" reads run after the +50k append.\n\n{table}\n\n{summary}\n")


if __name__ == "__main__":
    main()
