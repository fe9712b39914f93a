"""Read-model rows as PostgreSQL's COPY text, made where they are mapped.

When a PostgreSQL rebuild or catch-up maps its pages in the worker process
(mapping.MapInWorker), the worker sends each COPY target's rows of a page as one
block of COPY text instead of a list of tuples: this process hands the bytes to
``COPY ... FROM STDIN`` and makes no object per row. Measured (py-spy, 430k
events, PostgreSQL): psycopg's ``write_row`` was 9-13% of the main process's
time in a fresh process, and a catch-up plus a rebuild in the process that had
just appended that log spent 3.3 s in it (1.9 s fresh) and ~1 s more of CPU
besides: rows unpickled into its big heap cost more to make and to read.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Sequence

COPY_FROM_ROWS = 64  # below this, executemany's pipeline is as quick as COPY


@dataclass(frozen=True, slots=True)
class CopyText:
    """``count`` rows of one COPY target. For a catch-up's postings also their
    earliest ``occurred_at`` and the rows themselves, pickled: the checkpoints
    need the rows only when one is older than the latest checkpoint
    (checkpoints.record), which a catch-up rarely meets."""

    text: bytes
    count: int
    earliest: str | None = None
    packed: bytes | None = None

    def rows(self) -> list[tuple[Any, ...]]:
        assert self.packed is not None, "only a catch-up's postings carry their rows"
        return pickle.loads(self.packed)


def copy_text(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Rows (str, int or None values) in COPY's text format: a line per row, tabs
    between values, ``\\N`` for NULL, and a backslash before any backslash, tab,
    newline or carriage return in a value, so PostgreSQL reads each value back
    exactly. Values rarely hold one: the whole block is checked once (counting
    the separators and backslashes it should hold) and escaped only if it must be."""
    if not rows:
        return b""
    nulls = 0
    lines = []
    for row in rows:
        nulls += row.count(None)
        lines.append("\t".join(["\\N" if v is None else v if type(v) is str else str(v) for v in row]))
    text = "\n".join(lines)
    width = len(rows[0])
    if (text.count("\\") != nulls or text.count("\t") != len(rows) * (width - 1)
            or text.count("\n") != len(rows) - 1 or "\r" in text):
        text = "\n".join("\t".join(["\\N" if v is None else _escaped(v) if type(v) is str else str(v) for v in row])
                         for row in rows)
    return (text + "\n").encode("utf-8")


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def as_copy_text(statements: list[tuple[str, Any]], targets: dict[str, str], postings: str, *,
                 rebuilding: bool) -> list[tuple[str, Any]]:
    """A page's statements with each COPY target's rows (COPY_FROM_ROWS or more)
    as CopyText; ``postings`` (that statement) also carries what the checkpoints
    need, unless ``rebuilding`` (a rebuild lays them from the table)."""
    out: list[tuple[str, Any]] = []
    for statement, params in statements:
        if statement in targets and len(params) >= COPY_FROM_ROWS:
            keep = statement == postings and not rebuilding
            params = CopyText(copy_text(params), len(params),
                              earliest=min(row[2] for row in params) if keep else None,
                              packed=pickle.dumps(params, protocol=pickle.HIGHEST_PROTOCOL) if keep else None)
        out.append((statement, params))
    return out
