"""Fuzz `append` with hostile lines and count the outcomes.

    python benchmarks/fuzz.py [--inputs 100000] [--db URL]

Lines come from the strategies of tests/hostile.py (raw bytes, near-valid JSON
with one field spoiled, deep nesting, huge numbers, long lines, non-UTF-8,
duplicated keys, internal-looking ids), appended 1,000 at a time through the
same reader and Ledger the CLI uses. Prints tried / recorded / rejected /
crashed; "crashed" counts batches that raised instead of answering per line.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from leadledger.lines import read_lines  # noqa: E402
from leadledger import Ledger  # noqa: E402
from tests.hostile import HOSTILE_LINE  # noqa: E402

BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='leadledger-fuzz-')}/fuzz.db"
    counts = {"tried": 0, "recorded": 0, "duplicate": 0, "rejected": 0, "crashed": 0}
    pending: list[bytes] = []
    started = time.perf_counter()

    with Ledger.from_url(url) as ledger:
        ledger.init()

        def flush() -> None:
            # A leading blank line: a file whose first line looks binary is refused
            # whole by design (exit 2); here every line is to be judged on its own.
            stream = io.BytesIO(b"\n" + b"\n".join(pending) + b"\n")
            try:
                for result in ledger.append_iter(line for _, line in read_lines(stream)):
                    counts[result.status] += 1
            except Exception as exc:  # noqa: BLE001 - that is what we count
                counts["crashed"] += 1
                print(f"crashed: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
            pending.clear()

        @settings(max_examples=args.inputs, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(line=HOSTILE_LINE)
        def collect(line: bytes) -> None:
            counts["tried"] += 1
            pending.append(line.replace(b"\n", b" "))
            if len(pending) >= BATCH:
                flush()

        collect()
        if pending:
            flush()
        problems = [c for c in ledger.verify(replay=False) if not c.ok]
    seconds = time.perf_counter() - started
    print(f"tried {counts['tried']:,}  recorded {counts['recorded']:,}  duplicate {counts['duplicate']:,}  "
          f"rejected {counts['rejected']:,}  crashed {counts['crashed']}  "
          f"invariants {'ok' if not problems else 'FAILED'}  ({seconds:.0f} s, {url})")
    sys.exit(1 if counts["crashed"] or problems else 0)


if __name__ == "__main__":
    main()
