"""Reading NDJSON input safely: bounded lines, bytes decoded line by line
(`leadledger append` and the service's ``POST /v1/submissions`` alike).

A file is read as bytes, one line at a time and never more than
``MAX_LINE_BYTES + 1`` bytes of a line: a 200 MB line without a newline costs
64 KiB of memory, and becomes one rejected submission. A line that is not
UTF-8 is rejected alone; its neighbours are judged as usual.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

from leadledger.errors import INVALID_SUBMISSION, Rejection
from leadledger.limits import MAX_LINE_BYTES

_SKIP_CHUNK = 1 << 16
_UTF8_BOM = b"\xef\xbb\xbf"


class NotNDJSON(ValueError):
    """The input as a whole is not UTF-8 NDJSON (UTF-16, binary)."""


def read_lines(stream: BinaryIO, name: str = "-") -> Iterator[tuple[int, bytes | Rejection]]:
    """(1-based line number, line bytes or a Rejection) for every non-blank line."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if number == 1:
            _check_encoding(line, name)
            if line.startswith(_UTF8_BOM):
                line = line[len(_UTF8_BOM):]
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # drop the rest of the line without holding it
                rest = stream.readline(_SKIP_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, Rejection(INVALID_SUBMISSION, f"line {number}: over {MAX_LINE_BYTES:,} bytes")
            continue
        if line.strip():
            yield number, line.rstrip(b"\r\n")


def _check_encoding(first_line: bytes, name: str) -> None:
    if first_line.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in first_line:
        raise NotNDJSON(f"{name}: line 1 looks like UTF-16 or binary data; "
                        "submissions are UTF-8 NDJSON, one JSON object per line")
