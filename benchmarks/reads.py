"""Read latency inside the API on an existing store (issue 9's read goals).

    python benchmarks/reads.py --db sqlite:///big.db [--repeat 7]

Opens the store once (the view caught up first), then times each read the way
a service would call it: one wallet's and all wallets' balances as of an
instant, the trial balance as of it, one contact's refund row. Beside them, in
the same run, the floor: one primary-key row read through the same view.
Medians of ``--repeat`` calls, in milliseconds. Figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadledger import Ledger  # noqa: E402
from leadledger.projections import queries  # noqa: E402

# The workload (benchmarks/workload.py) starts 2025-01-06; a mid-log instant:
AS_OF = datetime(2025, 2, 15, tzinfo=timezone.utc)
GOALS_MS = {"balances, one wallet": 5, "balances, all wallets": 100, "trial-balance": 100,
            "refunds, one contact": 5}


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm: first-call caches, the OS page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(url: str, repeat: int = 7, pro_id: str = "pro-7", contact_id: str = "ct-0-7",
            as_of: datetime = AS_OF) -> dict[str, tuple[float, float | None]]:
    """Each read: (ms, ms of the same read summing the postings themselves, the
    path a position-bounded report takes, i.e. the read without checkpoints)."""
    with Ledger.from_url(url) as ledger:
        ledger.catch_up()
        view = ledger._view

        def both(read: Callable[[dict[str, Any]], Any]) -> tuple[float, float | None]:
            return _median_ms(lambda: read({}), repeat), _median_ms(lambda: read({"max_position": 2**62}), repeat)

        return {
            "floor: one row by primary key": (_median_ms(
                lambda: view.query("SELECT unit FROM ll_wallets WHERE pro_id = ?", [pro_id]), repeat), None),
            "balances, one wallet": both(lambda kw: queries.balances(view, pro_id=pro_id, as_of=as_of, **kw)),
            "balances, all wallets": both(lambda kw: queries.balances(view, as_of=as_of, **kw)),
            "trial-balance": both(lambda kw: queries.trial_balance(view, as_of, **kw)),
            "refunds, one contact": both(
                lambda kw: list(queries.iter_refunds(view, as_of, contact_id=contact_id, **kw))),
            "events in the store": (float(ledger.log_size()), None),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    figures = measure(args.db, args.repeat)
    print(f"store: {int(figures.pop('events in the store')[0]):,} events; as of {AS_OF.isoformat()}")
    print("| read | ms (median) | summing the postings instead, ms | goal |\n| --- | ---: | ---: | ---: |")
    for name, (ms, postings_ms) in figures.items():
        goal = GOALS_MS.get(name)
        slow = f"{postings_ms:.2f}" if postings_ms is not None else "-"
        print(f"| {name} | {ms:.2f} | {slow} | {'< ' + str(goal) if goal else '-'} |")


if __name__ == "__main__":
    main()
