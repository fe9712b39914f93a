"""Request bodies of ``POST /v1/submissions``: one JSON object, a JSON array of
them, or NDJSON, within explicit limits.

What is not JSON (or NDJSON) at all is the request's fault (400). A single
element or line that is not a valid submission is that submission's rejection,
judged in its turn like the CLI's: it never takes its neighbours down.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from leadledger.lines import NotNDJSON, read_lines
from leadledger.errors import INVALID_SUBMISSION, Rejection

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_REQUEST_SUBMISSIONS = 10_000
JSON_TYPES = ("application/json", "")  # no Content-Type: read as JSON
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


class BadBody(ValueError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Body:
    submissions: list[bytes | str | Rejection]  # in order; each judged on its own
    lines: list[int]  # the 1-based line (NDJSON) or element (array) of each; 1 for one object


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse(body: bytes, content_type: str | None) -> Body:
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        return _ndjson(body)
    if kind in JSON_TYPES or kind.endswith("+json"):
        return _json(body)
    raise BadBody(415, "unsupported_media_type", f"send application/json (an object or an array of "
                  f"objects) or application/x-ndjson, not {kind[:60]!r}")


def _too_many() -> BadBody:
    return BadBody(413, "too_many_submissions", f"a request holds at most {MAX_REQUEST_SUBMISSIONS:,} "
                   "submissions: split the batch")


def _ndjson(body: bytes) -> Body:
    submissions: list[bytes | str | Rejection] = []
    lines: list[int] = []
    try:
        for number, line in read_lines(io.BytesIO(body), "body"):
            if len(submissions) == MAX_REQUEST_SUBMISSIONS:
                raise _too_many()
            submissions.append(line)
            lines.append(number)
    except NotNDJSON as exc:
        raise BadBody(400, "invalid_body", str(exc)) from None
    if not submissions:
        raise BadBody(400, "invalid_body", "the body holds no submission (NDJSON: one JSON object per line)")
    return Body(submissions, lines)


def _json(body: bytes) -> Body:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(400, "invalid_body", "the body is not UTF-8 JSON") from None
    start = _skip_space(text, 0)
    if start < len(text) and text[start] == "{":
        return Body([text], [1])  # parsed, and refused if it must be, as one submission
    if start >= len(text) or text[start] != "[":
        raise BadBody(400, "invalid_body", "the body is neither a JSON object nor a JSON array of objects")
    return _array(text, start)


_decoder = json.JSONDecoder()
_SPACE = " \t\r\n"


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _array(text: str, start: int) -> Body:
    """Each element's own text, so each is parsed (and its duplicate keys refused)
    exactly as a line of NDJSON is. A body that is not a JSON array is a 400."""
    submissions: list[bytes | str | Rejection] = []
    at = _skip_space(text, start + 1)
    if at < len(text) and text[at] == "]":
        raise BadBody(400, "invalid_body", "the array holds no submission")
    try:
        while True:
            _, end = _decoder.raw_decode(text, at)
            if len(submissions) == MAX_REQUEST_SUBMISSIONS:
                raise _too_many()
            element = text[at:end]
            submissions.append(element if element.startswith("{") else
                               Rejection(INVALID_SUBMISSION, "a submission is a JSON object"))
            at = _skip_space(text, end)
            if at < len(text) and text[at] == ",":
                at = _skip_space(text, at + 1)
                continue
            if at < len(text) and text[at] == "]" and _skip_space(text, at + 1) == len(text):
                break
            raise ValueError("expected ',' or ']'")
    except (ValueError, RecursionError) as exc:
        message = getattr(exc, "msg", None) or str(exc)
        raise BadBody(400, "invalid_body", f"the body is not a JSON array: {message[:100]} "
                      f"(element {len(submissions) + 1})") from None
    return Body(submissions, list(range(1, len(submissions) + 1)))

