"""Formatting rows for people (table) and programs (JSON, CSV)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import sys
import tempfile
from typing import Any, Iterable, Iterator, Sequence

from leadledger.units import major

AMOUNT_COLUMNS = {
    "balance", "advance_outstanding", "card_charged", "charged", "refunded", "refundable",
    "debit", "credit", "running_balance", "amount", "opening", "closing",
    "commission", "management_fee", "call_minutes", "revenue", "refunds", "courtesy", "net",
}


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    """One JSON array; rows arrive sorted by their natural key. Byte-stable."""
    return json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n"


def write_json(rows: Iterable[dict[str, Any]], out: Any) -> None:
    """Stream a JSON array: the same bytes as ``to_json``, one row in memory at a time."""
    first = True
    for row in rows:
        body = json.dumps(row, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        out.write(("[\n  " if first else ",\n  ") + body)
        first = False
    out.write("[]\n" if first else "\n]\n")


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: Any) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    write_csv(rows, columns, buffer)
    return buffer.getvalue()


def human_amount(value: int, unit: str | None) -> str:
    return major(value, unit or "", thousands=True)


def to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
             unit_column: str | None = "unit", footer: Sequence[dict[str, Any]] = ()) -> str:
    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if value is None:
            return ""
        if column in AMOUNT_COLUMNS and isinstance(value, int):
            return human_amount(value, row.get(unit_column) if unit_column else None)
        return str(value)

    body = [[cell(r, c) for c in columns] for r in rows]
    tail = [[cell(r, c) for c in columns] for r in footer]
    widths = [max([len(c), *(len(line[i]) for line in body + tail)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if columns[i] in AMOUNT_COLUMNS else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(values) for values in body]
    if tail:
        out.append(line(["-" * w for w in widths]))
        out += [line(values) for values in tail]
    if not rows:
        out.append("(no rows)")
    return "\n".join(out) + "\n"


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str,
           footer: Sequence[dict[str, Any]] = ()) -> str:
    if fmt == "json":
        return to_json(rows)
    if fmt == "csv":
        return to_csv(rows, columns)
    return to_table(rows, columns, footer=footer)


def heading(title: str, as_of: str, given: bool, extra: str = "") -> str:
    """The line above every table: what it is, the instant it describes, its units."""
    when = f"as of {as_of}" if given else f"as of now = {as_of}"
    return (f"{title} {when}{extra}\namounts in major units of the unit column "
            "(USD with cents, CRONO whole); JSON and CSV carry minor units (cents, cronos)\n\n")


def totals(rows: Sequence[dict[str, Any]], label_column: str, amount_columns: Sequence[str],
           unit_column: str = "unit", by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One TOTAL row per unit (and per ``by`` columns) summing ``amount_columns``."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (*(row.get(c) for c in by), row.get(unit_column) or "")
        total = out.setdefault(key, {label_column: "TOTAL", unit_column: row.get(unit_column),
                                     **{c: row.get(c) for c in by}, **{c: 0 for c in amount_columns}})
        for column in amount_columns:
            total[column] += row.get(column) or 0
    return [out[key] for key in sorted(out, key=lambda k: tuple(str(v) for v in k))]


@contextlib.contextmanager
def replaced_whole(path: str) -> Iterator[Any]:
    """A text file (UTF-8) that takes ``path``'s place only once written whole: written
    as a file of its own in the same folder, flushed to disk, then renamed over
    ``path`` (a symbolic link's target; an existing file's permissions kept). If
    anything fails first, that file is removed and ``path`` stays as it was: an
    export cut short by a lost store, a full disk or Ctrl-C left the previous one
    truncated, each of its transactions still balanced. ``-`` is standard output,
    and a path that is not a regular file (a device, a pipe) is written in place,
    as it goes: there is nothing to replace. Failing to write is
    ``cannot_write_output``, naming the path."""
    if path == "-":
        yield sys.stdout
        return
    target = os.path.realpath(path)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _unwritable(path, exc) from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        try:
            device = open(target, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise _unwritable(path, exc) from None
        try:
            output = _Output(device, path)
            yield output
            output.flush()
        finally:
            _close(device)
        return
    if existing is not None:
        mode = stat.S_IMODE(existing.st_mode)
    else:
        umask = os.umask(0o022)  # read it (there is no other way), then put it back
        os.umask(umask)
        mode = 0o666 & ~umask
    folder, name = os.path.split(target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        out = os.fdopen(handle, "w", encoding="utf-8", newline="\n")
        try:
            output = _Output(out, path)
            yield output
            output.flush(mode)
        finally:
            _close(out)
        try:
            os.replace(temporary, target)
        except OSError as exc:
            raise _unwritable(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class _Output:
    """A file's writes, its own failures (a full disk) said as ``cannot_write_output``
    naming the path: only these, so a store's error in the same loop keeps its own
    code. A closed pipe's EPIPE stays a BrokenPipeError (the CLI's ``| head``)."""

    def __init__(self, file: Any, path: str):
        self._file, self._path = file, path

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _unwritable(self._path, exc) from None

    def flush(self, mode: int | None = None) -> None:
        """Flushed to the device; a regular file also given ``mode`` and synced to disk."""
        try:
            self._file.flush()
            if mode is not None:
                os.fchmod(self._file.fileno(), mode)
                os.fsync(self._file.fileno())
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _unwritable(self._path, exc) from None


def _close(file: Any) -> None:
    """Close ``file`` whatever its unwritten buffer: on a failure the error already
    said is the one to say (a close flushing a full disk's buffer again would
    replace it with a bare OSError)."""
    with contextlib.suppress(OSError):
        file.close()


def _unwritable(path: str, exc: OSError) -> Exception:
    from leadledger.errors import LedgerError

    return LedgerError("cannot_write_output", f"cannot write {path}: {exc.strerror or exc} ({path} was left as "
                       "it was)")
