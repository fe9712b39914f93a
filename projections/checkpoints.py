"""Checkpointed account totals: balances and trial balances as of any instant
without summing every posting up to it.

A checkpoint at boundary ``B`` (an hour boundary, fixed-width UTC text) holds,
for every account, the debits and credits of all postings with
``occurred_at < B``. A report as of ``T`` reads the latest checkpoint at or
before ``T`` plus the postings in ``[B, T]``: a few thousand account rows and at
most about ``CHECKPOINT_POSTINGS`` postings, whatever the size of the log.

Checkpoints are derived data, written in the view's transaction with the
postings they cover:
- a new boundary is laid once ``CHECKPOINT_POSTINGS`` postings lie at or after
  the latest one (``pending``, kept on the latest mark, so no count per batch);
- a late posting (``occurred_at`` before the latest boundary) is added to every
  checkpoint after its instant, so each one stays exactly "everything before B"
  (submissions arrive late and out of order: SPEC 3);
- ``verify`` recomputes each checkpoint from the previous one and the postings
  between them (``problems``).

Which boundaries exist depends on how the log was batched; the totals a report
reads never do. A report bounded by a log position (``verify``) or filtered by
pro on the trial balance reads the postings instead (the pro index is quick).
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from typing import Any, Sequence

from leadledger.projections.copytext import CopyText

CHECKPOINT_POSTINGS = 20_000  # postings between two boundaries: bounds a report's scan
BEGINNING = ""  # the first mark: no checkpoint rows, every posting is after it

CHECKPOINT_DDL = (
    "CREATE TABLE IF NOT EXISTS ll_checkpoint_marks ("
    " checkpoint_at TEXT PRIMARY KEY, pending BIGINT NOT NULL)",
    # pro_id is set for a pro's accounts (wallet, advance, card) and NULL for the
    # platform's, which every pro's postings share.
    "CREATE TABLE IF NOT EXISTS ll_checkpoints ("
    " checkpoint_at TEXT NOT NULL, account TEXT NOT NULL, unit TEXT NOT NULL, market TEXT NOT NULL,"
    " kind TEXT NOT NULL, pro_id TEXT, debit BIGINT NOT NULL, credit BIGINT NOT NULL,"
    " PRIMARY KEY (checkpoint_at, account, unit, market))",
)
CHECKPOINT_TABLES = ("ll_checkpoint_marks", "ll_checkpoints")

# The same key and sums from either side: a checkpoint's rows or postings.
_CHECKPOINT_COLUMNS = "account, unit, market, kind, pro_id, debit, credit"
_POSTING_COLUMNS = ("account, unit, COALESCE(market, '') AS market, kind,"
                    " CASE WHEN kind = 'platform' THEN NULL ELSE pro_id END AS pro_id, debit, credit")
_GROUPED = ("SELECT account, unit, market, kind, pro_id, CAST(SUM(debit) AS BIGINT) AS debit,"
            " CAST(SUM(credit) AS BIGINT) AS credit FROM ({}) t GROUP BY account, unit, market, kind, pro_id")
_SINCE = (f"SELECT {_CHECKPOINT_COLUMNS} FROM ll_checkpoints WHERE checkpoint_at = ?"
          f" UNION ALL SELECT {_POSTING_COLUMNS} FROM ll_postings WHERE occurred_at >= ? AND occurred_at < ?")
# A checkpoint as its predecessor and the postings between them make it.
_EXPECTED = _GROUPED.format(_SINCE)
_LAY = ("INSERT INTO ll_checkpoints (checkpoint_at, account, unit, market, kind, pro_id, debit, credit)"
        f" SELECT CAST(? AS TEXT), g.* FROM ({_EXPECTED}) g")
_ADD_LATE = (
    "INSERT INTO ll_checkpoints (checkpoint_at, account, unit, market, kind, pro_id, debit, credit)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (checkpoint_at, account, unit, market) DO UPDATE"
    " SET debit = ll_checkpoints.debit + excluded.debit, credit = ll_checkpoints.credit + excluded.credit"
)


def hour_floor(sortable: str) -> str:
    """``2026-01-02T03:04:05.123456Z`` -> ``2026-01-02T03:00:00.000000Z``."""
    return sortable[:13] + ":00:00.000000Z"


def next_hour(boundary: str) -> str:
    at = datetime.strptime(boundary[:13], "%Y-%m-%dT%H") + timedelta(hours=1)
    return at.strftime("%Y-%m-%dT%H") + ":00:00.000000Z"


def _fetch(curs: Any, sql: Any, statement: str, params: Sequence[Any] = ()) -> list[Any]:
    curs.execute(sql(statement), tuple(params))
    return list(curs.fetchall())


def _marks(curs: Any, sql: Any) -> list[tuple[str, int]]:
    """(boundary, pending) in time order; the first call on empty views lays BEGINNING."""
    rows = _fetch(curs, sql, "SELECT checkpoint_at, pending FROM ll_checkpoint_marks ORDER BY checkpoint_at")
    if not rows:
        curs.execute(sql("INSERT INTO ll_checkpoint_marks VALUES (?, 0)"), (BEGINNING,))
        return [(BEGINNING, 0)]
    return [(r["checkpoint_at"], int(r["pending"])) for r in rows]


def record(curs: Any, sql: Any, postings: Sequence[tuple[Any, ...]] | CopyText) -> None:
    """Keep the checkpoints level with a batch of postings just inserted (rows as
    ``mapping.statements_for`` gives them: position, seq, occurred_at, event_type,
    event_id, pro_id, contact_id, kind, account, unit, debit, credit, market,
    ...), or as the mapping worker's CopyText. Runs in the view's write transaction."""
    if not postings:
        return
    marks = _marks(curs, sql)
    latest, pending = marks[-1]
    late: dict[tuple[str, str, str, str], list[Any]] = {}
    boundaries = [mark for mark, _ in marks[1:]]
    if isinstance(postings, CopyText):  # from the mapping worker: rows only if one is late
        assert postings.earliest is not None
        if postings.earliest >= latest:
            pending += postings.count
            postings = []
        else:
            postings = postings.rows()
    for posting in postings:
        occurred_at = posting[2]
        if occurred_at >= latest:
            pending += 1
            continue
        # every boundary after the posting's instant counts it
        _, _, _, _, _, pro_id, _, kind, account, unit, debit, credit, market, *_ = posting
        for boundary in boundaries[bisect.bisect_right(boundaries, occurred_at):]:
            key = (boundary, account, unit, market or "")
            total = late.setdefault(key, [kind, None if kind == "platform" else pro_id, 0, 0])
            total[2] += debit
            total[3] += credit
    if late:
        curs.executemany(sql(_ADD_LATE), [(*key, *total) for key, total in late.items()])
    curs.execute(sql("UPDATE ll_checkpoint_marks SET pending = ? WHERE checkpoint_at = ?"), (pending, latest))
    if pending >= CHECKPOINT_POSTINGS:
        lay_due(curs, sql)


def lay_due(curs: Any, sql: Any) -> int:
    """Lay every boundary the postings call for (after a rebuild's fill: all of
    them, each from the one before). Needs the postings' time index. Returns how
    many were laid."""
    marks = _marks(curs, sql)
    latest = marks[-1][0]
    laid = 0
    while True:
        # The next CHECKPOINT_POSTINGS postings from the latest mark: their count (all
        # of them when fewer: the pending ones) and the last one's time, in one scan.
        nth = _fetch(curs, sql, "SELECT COUNT(*) AS n, MAX(occurred_at) AS nth FROM (SELECT occurred_at"
                     " FROM ll_postings WHERE occurred_at >= ? ORDER BY occurred_at LIMIT ?) t",
                     (latest, CHECKPOINT_POSTINGS))[0]
        pending = int(nth["n"])
        if pending < CHECKPOINT_POSTINGS:
            break
        boundary = hour_floor(nth["nth"])
        if boundary <= latest:  # thousands of postings within one hour: close that hour
            boundary = next_hour(latest)
        curs.execute(sql(_LAY), (boundary, latest, latest, boundary))
        curs.execute(sql("INSERT INTO ll_checkpoint_marks VALUES (?, 0)"), (boundary,))
        latest = boundary
        laid += 1
    if laid:  # only the latest mark counts pending postings: a rebuild's and a catch-up's marks alike
        curs.execute(sql("UPDATE ll_checkpoint_marks SET pending = 0 WHERE checkpoint_at < ? AND pending <> 0"),
                     (latest,))
    curs.execute(sql("UPDATE ll_checkpoint_marks SET pending = ? WHERE checkpoint_at = ?"), (pending, latest))
    return laid


# --- reads -------------------------------------------------------------------


def base(view: Any, instant: str) -> str:
    """The latest boundary at or before ``instant`` (sortable UTC text)."""
    rows = view.query("SELECT MAX(checkpoint_at) AS b FROM ll_checkpoint_marks WHERE checkpoint_at <= ?",
                      [instant])
    return rows[0]["b"] if rows and rows[0]["b"] is not None else BEGINNING


def totals(view: Any, until: str, *, inclusive: bool, where: str = "", params: Sequence[Any] = (),
           checkpoint_where: str = "", checkpoint_params: Sequence[Any] = (),
           posting_where: str = "", posting_params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
    """A subquery of (account, unit, market, kind, pro_id, debit, credit) rows
    whose sums per account are the totals of every posting before ``until``
    (``inclusive``: at or before): the latest checkpoint at or before it, and the
    postings since. ``where`` filters both sides; the others one."""
    boundary = base(view, until)
    operator = "<=" if inclusive else "<"
    statement = (
        f"SELECT {_CHECKPOINT_COLUMNS} FROM ll_checkpoints WHERE checkpoint_at = ?{where}{checkpoint_where}"
        f" UNION ALL SELECT account, unit, market, kind, pro_id, debit, credit FROM ll_postings"
        f" WHERE occurred_at >= ? AND occurred_at {operator} ?{where}{posting_where}"
    )
    return statement, [boundary, *params, *checkpoint_params, boundary, until, *params, *posting_params]


# Rows of a checkpoint that its predecessor plus the postings between them does
# not give, both ways: (expected EXCEPT actual) + (actual EXCEPT expected).
_ACTUAL = f"SELECT {_CHECKPOINT_COLUMNS} FROM ll_checkpoints WHERE checkpoint_at = ?"
_DIFFERENCES = (
    f"SELECT (SELECT COUNT(*) FROM (SELECT * FROM ({_EXPECTED}) e EXCEPT SELECT * FROM ({_ACTUAL}) a) m)"
    f" + (SELECT COUNT(*) FROM (SELECT * FROM ({_ACTUAL}) a EXCEPT SELECT * FROM ({_EXPECTED}) e) x) AS n"
)


def problems(view: Any, limit: int = 20) -> list[str]:
    """Each checkpoint must equal the one before plus the postings between them.
    One statement per boundary: each sees one committed state, in which this
    holds, so appends running meanwhile never make it fail."""
    marks = [r["checkpoint_at"] for r in view.query(
        "SELECT checkpoint_at FROM ll_checkpoint_marks ORDER BY checkpoint_at")]
    found: list[str] = []
    for previous, boundary in zip(marks, marks[1:]):
        rows = view.query(_DIFFERENCES, [previous, previous, boundary, boundary, boundary, previous, previous, boundary])
        if int(rows[0]["n"]):
            found.append(f"checkpoint {boundary}: {int(rows[0]['n'])} account totals differ from the "
                         "checkpoint before it plus the postings between them")
            if len(found) >= limit:
                break
    return found
