"""A request's query parameters held to the ones its endpoint takes.

Starlette hands a route every parameter of the query and FastAPI reads the ones it
declares, ignoring the rest, and the last of a repeated one. For a ledger's reads
that turned a typo into a wrong answer, not an error: ``/v1/wallets?pro_id=P`` (the
rows' own field name; the filter is ``pro``) answered every pro's wallets,
``/v1/trial-balance?to=2026-01-31`` a trial balance as of now, and
``POST /v1/submissions?atomc=true`` recorded half of a batch meant to be all or
nothing. So a parameter the endpoint does not take, or one given twice, is a 400
``bad_parameter`` naming it, as a body's unknown field is ``invalid_submission``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

SHOWN_NAME_CHARS = 40  # a hostile name is quoted this far, no further


class BadQuery(ValueError):
    """The query names a parameter the endpoint does not take, or one twice."""


def check_query(query_string: bytes, takes: frozenset[str], path: str) -> dict[str, str]:
    """The parameters of ``query_string`` by name; BadQuery unless each is one of
    ``takes``, given once. Read as Starlette reads them (latin-1, then percent-decoded
    as UTF-8)."""
    given: dict[str, str] = {}
    if not query_string:
        return given
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in takes:
            offered = ", ".join(sorted(takes)) or "none"
            raise BadQuery(f"unknown query parameter {name[:SHOWN_NAME_CHARS]!r}: {path} takes {offered}")
        if name in given:
            raise BadQuery(f"query parameter {name!r} is given twice: give it once")
        given[name] = value
    return given


_TAKES: dict[str, frozenset[str]] = {}  # APIRoute.unique_id (routes are not hashable) -> names


def route_takes(route: Any) -> frozenset[str]:
    """The query parameters a FastAPI route declares (its dependencies' too), by the
    name a client sends (``from``, not ``from_``); worked out once per route."""
    takes = _TAKES.get(route.unique_id)
    if takes is None:
        takes = _TAKES[route.unique_id] = _declared(route)
    return takes


def _declared(route: Any) -> frozenset[str]:
    names: set[str] = set()
    dependants = [route.dependant]
    while dependants:  # FastAPI's own flattening is private and has changed between releases
        dependant = dependants.pop()
        names.update(param.alias for param in dependant.query_params)
        dependants.extend(dependant.dependencies)
    return frozenset(names)
