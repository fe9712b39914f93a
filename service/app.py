"""The HTTP API (``leadledger serve``): FastAPI routes over the Ledger, and
``POST /v1/submissions`` as a plain ASGI endpoint in front of them (LedgerService).

Writes go through one GroupWriter (service/writer.py: a writer process); reads through a small
pool of Ledgers, one per request at a time (a Ledger is not thread-safe). Every
route but the probes, ``/metrics`` and the documentation needs an API key
(ledger/keys.py). Errors are JSON, ``{"error": {"code", "message"}}``, with the
codes the CLI prints; a secret never appears in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import time
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Callable

import orjson
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from leadledger import keys, reports
from leadledger.application import Ledger, is_full, store_error_code
from leadledger.errors import LOG_DAMAGED, PROJECTION_FAILED, STORE_STATEMENT_FAILED, LedgerError, Rejection
from leadledger.periods import Period, as_instant
from leadledger.projections.status import STATUSES, status_named
from leadledger.service import bodies, models, paths, query
from leadledger.service.metrics import Metrics
from leadledger.service.writer import GroupWriter
from leadledger.timefmt import format_utc

log = logging.getLogger("leadledger.service")

READERS = 4  # Ledgers for reads, each used by one request at a time
KEY_CACHE_SECONDS = 2.0  # a revocation reaches every server process within this
MAX_FEED_LIMIT = 1000
MAX_WAIT_SECONDS = 30  # the longest long-poll of /v1/events (serve --max-wait)
FEED_POLL_SECONDS = 0.25  # long-poll: how often the store is asked for another writer's events
RETRY_AFTER_SECONDS = 5
SUBMISSIONS_PATH = "/v1/submissions"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": models.ErrorBody, "description": description} for status, description in (
        (400, "Bad request: a body or parameter that cannot be read"),
        (401, "No key, an unknown key or a revoked key"),
        (403, "The key's scope does not allow this"),
        (500, "A fault a retry cannot mend: a statement the store refused, a log damaged by hand, or a bug"),
        (503, "The store is unavailable (Retry-After)"),
    )
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": " ".join(message.split())[:500]}}, status, headers)


# LedgerError codes and the HTTP status they are answered with (others: 503, with
# Retry-After). A statement the store refuses, a log damaged by hand, or events the
# read models refuse, fails the same way when retried: 500.
_LEDGER_STATUS = {"bad_head": 400, "invalid_log": 400, "not_supported": 400, "bad_parameter": 400,
                  STORE_STATEMENT_FAILED: 500, LOG_DAMAGED: 500, PROJECTION_FAILED: 500}


def _store_failed(exc: BaseException) -> Response:
    """A store error no Ledger call classified: 503, retry later."""
    return _error(503, store_error_code(exc), f"the store failed: {exc}", {"Retry-After": str(RETRY_AFTER_SECONDS)})


class Readers:
    """A fixed pool of Ledgers for reads (each opens its store on first use)."""

    def __init__(self, url: str, size: int):
        self._free: queue.SimpleQueue[Ledger] = queue.SimpleQueue()
        self._all = [Ledger.from_url(url) for _ in range(size)]
        for ledger in self._all:
            ledger.warn = log.warning  # a read's catch-up whose mapping worker could not run
            self._free.put(ledger)

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(ledger, *args, **kwargs)`` on a free Ledger. A read is safe to
        repeat: one that met a dead connection (the store restarted or failed over
        since this Ledger last read: every pooled connection died with it) runs once
        more on fresh ones, so a failover costs no request after the store is back."""
        ledger = self._free.get()
        try:
            try:
                return _closed_on_failure(ledger, function, *args, **kwargs)
            except (PersistenceError, sqlite3.Error, LedgerError) as exc:
                if not _connection_lost(exc):
                    raise
            return _closed_on_failure(ledger, function, *args, **kwargs)
        finally:
            self._free.put(ledger)

    def close(self) -> None:
        for ledger in self._all:
            ledger.close()


def _closed_on_failure(ledger: Ledger, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return function(ledger, *args, **kwargs)
    except (PersistenceError, sqlite3.Error, LedgerError):
        ledger.close()  # the store failed: its connections may be dead, reopened on next use
        raise


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, LedgerError):
        return exc.code == "store_unavailable"
    return isinstance(exc, (OperationalError, InterfaceError, sqlite3.OperationalError)) and not is_full(exc)


class Keyring:
    """Keys looked up by their secret's hash, remembered for KEY_CACHE_SECONDS."""

    def __init__(self, readers: Readers):
        self._readers = readers
        self._cache: dict[str, tuple[float, keys.ApiKey]] = {}

    def cached(self, secret: str) -> keys.ApiKey | None:
        hit = self._cache.get(keys.secret_sha256(secret))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < KEY_CACHE_SECONDS else None

    def lookup(self, secret: str) -> keys.ApiKey | None:
        key = self._readers.run(Ledger.key_by_secret, secret)
        if key is not None:  # unknown secrets are not remembered: a new key works at once
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[keys.secret_sha256(secret)] = (time.monotonic(), key)
        return key


class Service:
    def __init__(self, url: str, *, sweep_every: timedelta | None = None, readers: int = READERS):
        self.url = url
        self.metrics = Metrics()
        self.readers = Readers(url, readers)
        self.keyring = Keyring(self.readers)
        self.writer = GroupWriter(url, on_commit=self._committed, sweep_every=sweep_every)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.commits: asyncio.Event | None = None  # set after each commit: wakes long-polls

    def _committed(self, results: list[Any], seconds: float, requests: int) -> None:
        self.metrics.committed(results, seconds, requests)
        if self.loop is not None and self.commits is not None and any(r.status == "recorded" for r in results):
            self.loop.call_soon_threadsafe(self.commits.set)

    async def wait_for_commit(self, timeout: float) -> None:
        assert self.commits is not None
        self.commits.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.commits.wait(), timeout)

    def read(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return self.readers.run(function, *args, **kwargs)

    async def key_for(self, secret: str | None, actions: tuple[str, ...]) -> keys.ApiKey:
        """The request's key, if it is active and allows one of ``actions``."""
        if not secret:
            raise ApiError(401, "missing_key", "send the key as Authorization: Bearer <secret>",
                           {"WWW-Authenticate": "Bearer"})
        key = self.keyring.cached(secret) or await run_in_threadpool(self.keyring.lookup, secret)
        if key is None:
            raise ApiError(401, "invalid_key", "no such key", {"WWW-Authenticate": "Bearer"})
        if key.revoked_at is not None:
            raise ApiError(401, "key_revoked", f"key {key.name!r} was revoked at {key.revoked_at}",
                           {"WWW-Authenticate": "Bearer"})
        if not any(key.allows(action) for action in actions):
            raise ApiError(403, "wrong_scope", f"key {key.name!r} has scope {key.scope!r}, which may not "
                           f"{' or '.join(actions)}")
        return key


_bearer = HTTPBearer(auto_error=False, description="An API key's secret (`leadledger keys create`)")


def authorize(*actions: str) -> Any:
    """A dependency: the request's key, if it is active and allows one of ``actions``."""

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> keys.ApiKey:
        service: Service = request.app.state.service
        key = await service.key_for(credentials.credentials if credentials else None, actions)
        route = request.scope.get("route")
        if route is not None:  # every /v1 route has this dependency: its query is checked here
            _check_query(request.scope.get("query_string", b""), query.route_takes(route), route.path)
        return key

    return dependency


def _shown(at: datetime | None) -> str:
    """An instant a read was asked about, as the reports print one (None: now)."""
    return format_utc(at) if at is not None else "now"


def _bearer_secret(authorization: bytes | None) -> str | None:
    """The secret of an ``Authorization: Bearer SECRET`` header, as HTTPBearer reads it."""
    if not authorization:
        return None
    scheme, _, secret = authorization.decode("latin-1").partition(" ")
    return secret if scheme.lower() == "bearer" and secret else None


def _instant(value: str | None, name: str, *, end: bool = True) -> Any:
    try:
        return as_instant(value, name, end=end)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "bad_parameter", f"{name}: {exc}") from None


def _period(start: str | None, end: str | None, end_name: str) -> Period:
    """``from`` and ``to`` (or ``as_of``) as the Ledger's Period, which refuses one
    that ends before it starts."""
    try:
        return Period(_instant(start, "from", end=False), _instant(end, end_name))
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"{end_name}: {exc}") from None


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    found = status_named(value)
    if found is None:
        raise ApiError(400, "bad_parameter", f"status: {value[:40]!r} is not one of {', '.join(STATUSES)}")
    return found


def create_app(url: str, *, sweep_every: timedelta | None = None, readers: int = READERS,
               max_wait_seconds: float = MAX_WAIT_SECONDS) -> "LedgerService":
    service = Service(url, sweep_every=sweep_every, readers=readers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.loop = asyncio.get_running_loop()
        service.commits = asyncio.Event()
        service.writer.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.writer.stop)
            service.readers.close()

    app = FastAPI(title="leadledger", version=_version(), lifespan=lifespan,
                  description="Event-sourced billing ledger for lead marketplaces. Submissions are judged by "
                  "the rules of SPEC 3-4 and recorded atomically; the event_id is the idempotency key. "
                  "A /v1 route takes only the query parameters it lists, each once (else 400 bad_parameter); "
                  "an id in a path is one percent-encoded segment (contact ct/7: /v1/contacts/ct%2F7/refund).")
    app.state.service = service
    _install_error_handlers(app, service)
    _routes(app, service, max_wait_seconds)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return LedgerService(app, SubmissionsEndpoint(service), service.metrics)


class LedgerService:
    """The ASGI app ``leadledger serve`` runs. ``POST /v1/submissions`` goes straight
    to its endpoint; everything else (and the lifespan) through FastAPI.

    Measured at 64 clients: FastAPI's middleware stack, its per-request
    dependency solving and Request objects were ~45% of the event loop's samples
    on the hot path."""

    def __init__(self, api: FastAPI, submissions: "SubmissionsEndpoint", metrics: Metrics):
        self.api, self.submissions, self.metrics = api, submissions, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == SUBMISSIONS_PATH:
            if scope["method"] == "POST":
                status = await self.submissions(scope, receive, send)
            else:
                status = 405
                await _error(405, "method_not_allowed", "Method Not Allowed", {"Allow": "POST"})(scope, receive, send)
            self.metrics.requests.labels(SUBMISSIONS_PATH, str(status)).inc()
            return
        if scope["type"] == "http":
            scope = paths.keep_encoded_slashes(scope)
        await self.api(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return self.api.openapi()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadledger")
    except PackageNotFoundError:
        return "0"


def _install_error_handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        return _error(400, "bad_parameter", f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Rejection)
    async def not_found(request: Request, exc: Rejection) -> Response:
        return _error(404 if exc.code.endswith("_not_found") else 400, exc.code, exc.message)

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> Response:
        status = _LEDGER_STATUS.get(exc.code, 503)
        if status == 500:  # not an outage, nor the client's doing: the operator must look
            log.error("%s %s: %s: %s", request.method, request.url.path, exc.code, exc.message)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return _error(status, exc.code, exc.message, headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client left before its body arrived: nothing was submitted, nobody reads this.
        return _error(400, "client_disconnected", "the client went away before its request was read")

    @app.exception_handler(PersistenceError)
    @app.exception_handler(sqlite3.Error)
    async def store_failed(request: Request, exc: Exception) -> Response:
        return _store_failed(exc)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal", f"{type(exc).__name__} (see the server's log)")

    app.add_middleware(CountRequests, metrics=service.metrics)


class CountRequests:
    """Requests by route template and status, as plain ASGI: Starlette's
    BaseHTTPMiddleware would add a task and a queue to every request."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status[0])).inc()


class SubmissionsEndpoint:
    """``POST /v1/submissions``, as a plain ASGI endpoint (see LedgerService): one
    pass over the headers, the key from the keyring, the body read within its
    limit, the writer, the answer. Its OpenAPI entry is written from the same
    models as FastAPI's routes (``_submissions_openapi``)."""

    def __init__(self, service: Service):
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> int:
        """Answer the request; returns the HTTP status sent (0: the client left)."""
        try:
            response = await self._handle(scope, receive)
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.message, exc.headers)
        except bodies.BadBody as exc:
            response = _error(exc.status, exc.code, exc.message)
        except LedgerError as exc:
            status = _LEDGER_STATUS.get(exc.code, 503)
            response = _error(status, exc.code, exc.message,
                              {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None)
        except (PersistenceError, sqlite3.Error) as exc:
            response = _store_failed(exc)
        except ClientDisconnect:
            return 0  # the client left before its body arrived: nothing was submitted, nobody reads this
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            log.exception("internal error on POST %s", SUBMISSIONS_PATH)
            response = _error(500, "internal", f"{type(exc).__name__} (see the server's log)")
        await response(scope, receive, send)
        return response.status_code

    async def _handle(self, scope: dict[str, Any], receive: Any) -> Response:
        authorization = content_type = declared = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        key = await self.service.key_for(_bearer_secret(authorization), ("append",))
        atomic = _atomic(_check_query(scope.get("query_string", b""), SUBMISSIONS_TAKES, SUBMISSIONS_PATH))
        body = bodies.parse(await _read_limited(receive, declared), content_type)
        # Parsed by the writer process (see service/writer.py), one result each, in order.
        results = await self.service.writer.submit(body.submissions, key.recorded_by, atomic=atomic)
        assert len(results) == len(body.lines)
        counts = {"recorded": 0, "duplicate": 0, "rejected": 0}
        rows = []
        for result, line in zip(results, body.lines):
            counts[result.status] += 1
            rows.append({**result.to_json(), "line": line})
        return _json({"results": rows, **counts})


_TRUE, _FALSE = ("1", "true", "yes", "on", "t", "y"), ("0", "false", "no", "off", "f", "n")


SUBMISSIONS_TAKES = frozenset({"atomic"})


def _check_query(query_string: bytes, takes: frozenset[str], path: str) -> dict[str, str]:
    try:
        return query.check_query(query_string, takes, path)
    except query.BadQuery as exc:
        raise ApiError(400, "bad_parameter", str(exc)) from None


def _atomic(params: dict[str, str]) -> bool:
    """``?atomic=`` (``_check_query``'s), read as pydantic reads a boolean."""
    value = params.get("atomic")
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ApiError(400, "bad_parameter", "atomic: Input should be a valid boolean, unable to interpret input")


async def _read_limited(receive: Any, declared: bytes | None) -> bytes:
    too_large = ApiError(413, "body_too_large", f"a request body holds at most {bodies.MAX_BODY_BYTES:,} bytes")
    if declared is not None and declared.isdigit() and int(declared) > bodies.MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > bodies.MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _routes(app: FastAPI, service: Service, max_wait_seconds: float) -> None:
    read_key = authorize("read")
    any_key = authorize("append", "read")

    @app.get("/healthz", response_model=models.Health, tags=["probes"])
    async def healthz() -> Response:
        """The process is up (no store access)."""
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=models.Ready, responses={503: ERRORS[503]}, tags=["probes"])
    def readyz() -> Response:
        """The store is reachable and initialised, and the writer process runs."""
        if not service.writer.alive:
            raise ApiError(503, "store_unavailable", "the writer is starting, or has stopped (see the server's log)",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        position = service.read(Ledger.log_size)
        kind = "sqlite" if service.url.startswith("sqlite") else "postgres"
        return _json({"status": "ready", "store": kind, "position": position})

    @app.get("/metrics", tags=["probes"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Response:
        """Submissions by status and code, group-commit sizes, commit latency, requests."""
        service.metrics.writer_queue.set(service.writer.depth())
        loaded_whole, compacted = service.writer.wallet_counts
        service.metrics.wallets_loaded_whole.set(loaded_whole)
        service.metrics.wallets_compacted.set(compacted)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/submissions/{event_id}", tags=["submissions"], response_model=models.SubmissionOutcome,
             responses={**ERRORS, 404: {"model": models.ErrorBody, "description": "Never recorded"}})
    def get_submission(event_id: str = Path(description="The submission's event_id (a UUID)"),
                       key: keys.ApiKey = Depends(any_key)) -> Response:
        """The stored outcome of one submission: what it was recorded as, where, by whom."""
        outcome = service.read(Ledger.submission, event_id)
        if outcome is None:
            raise ApiError(404, "not_found", "no submission with this event_id was recorded")
        return _json(outcome)

    reads = {"tags": ["reads"], "responses": {**ERRORS, 404: {"model": models.ErrorBody,
                                                             "description": "No such wallet or contact"}}}

    @app.get("/v1/wallets", response_model=list[models.BalanceRow], **reads)
    def wallets(pro: str | None = None, market: str | None = None, as_of: str | None = None,
                key: keys.ApiKey = Depends(read_key)) -> Response:
        """One row per wallet, as `leadledger balances --format json`."""
        at = _instant(as_of, "as_of")
        return _json(service.read(lambda ledger: list(reports.balances(
            ledger, pro_id=pro, market=market, as_of=at).stamped())))

    @app.get("/v1/wallets/{pro_id}", response_model=models.BalanceRow, **reads)
    def wallet(pro_id: str, as_of: str | None = None, key: keys.ApiKey = Depends(read_key)) -> Response:
        """One wallet, as its row of `leadledger balances --pro ID --format json`."""
        at, pro_id = _instant(as_of, "as_of"), paths.path_id(pro_id)
        rows = service.read(lambda ledger: list(reports.balances(ledger, pro_id=pro_id, as_of=at).stamped()))
        if not rows:  # the wallet is opened after the instant (an unknown pro is refused before)
            raise ApiError(404, "wallet_not_found", f"pro {pro_id[:80]!r} had no wallet yet as of {_shown(at)}")
        return _json(rows[0])

    @app.get("/v1/wallets/{pro_id}/statement", response_model=list[models.StatementRow], **reads)
    def statement(pro_id: str, from_: str | None = Query(None, alias="from"),
                  to: str | None = None, account: str | None = None,
                  key: keys.ApiKey = Depends(read_key)) -> Response:
        """The pro's postings with running balances, as `leadledger statement --format json`."""
        span, pro_id = _period(from_, to, "to"), paths.path_id(pro_id)
        return _json(service.read(lambda ledger: list(reports.statement(
            ledger, pro_id, start=span.start, end=span.end, account=account).stamped())))

    @app.get("/v1/refunds", response_model=list[models.RefundRow], **reads)
    def refunds(pro: str | None = None, market: str | None = None, status: str | None = None,
                as_of: str | None = None, key: keys.ApiKey = Depends(read_key)) -> Response:
        """The refund status of every contact, as `leadledger refunds --format json`."""
        at, wanted = _instant(as_of, "as_of"), _status(status)
        return _json(service.read(lambda ledger: list(reports.refunds(
            ledger, pro_id=pro, market=market, status=wanted, as_of=at).stamped())))

    @app.get("/v1/contacts/{contact_id}/refund", response_model=models.RefundRow, **reads)
    def contact_refund(contact_id: str, as_of: str | None = None,
                       key: keys.ApiKey = Depends(read_key)) -> Response:
        """One contact's refund status, as its row of `leadledger refunds --format json`."""
        at, contact_id = _instant(as_of, "as_of"), paths.path_id(contact_id)
        rows = service.read(lambda ledger: list(reports.refunds(ledger, contact_id=contact_id, as_of=at).stamped()))
        if not rows:
            raise ApiError(404, "contact_not_found", f"no contact {contact_id[:80]!r} as of {_shown(at)}")
        return _json(rows[0])

    @app.get("/v1/trial-balance", response_model=list[models.TrialBalanceRow], **reads)
    def trial_balance(as_of: str | None = None, from_: str | None = Query(None, alias="from"),
                      pro: str | None = None, market: str | None = None, account: str | None = None,
                      key: keys.ApiKey = Depends(read_key)) -> Response:
        """One row per account and unit, as `leadledger trial-balance --format json`."""
        span = _period(from_, as_of, "as_of")
        return _json(service.read(lambda ledger: list(reports.trial_balance(
            ledger, as_of=span.end, start=span.start, pro_id=pro, market=market, account=account).stamped())))

    @app.get("/v1/events", response_model=models.Feed, tags=["reads"], responses=ERRORS)
    async def events(after: int = Query(0, ge=0, le=2**62, description="Log position to read after"),
                     limit: int = Query(100, ge=1, le=MAX_FEED_LIMIT),
                     wait: float = Query(0, ge=0, le=max_wait_seconds,
                                         description="Seconds to wait for an event when there is none yet"),
                     key: keys.ApiKey = Depends(read_key)) -> Response:
        """The recorded log after a position, as `leadledger events` prints it plus
        each event's position: a cursor-paged feed (long-poll with `wait`)."""
        deadline = time.monotonic() + wait
        while True:
            records, last = await run_in_threadpool(service.read, Ledger.feed, after, limit)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return _json({"events": records, "next_after": last})
            # Woken at once by this process's commits; another writer's are found by polling.
            await service.wait_for_commit(min(FEED_POLL_SECONDS, remaining))


def _submissions_openapi() -> dict[str, Any]:
    """The OpenAPI operation of SubmissionsEndpoint (a plain ASGI route, which
    FastAPI does not describe), from the same models as FastAPI's routes."""

    def answer(description: str, model: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}

    errors = {str(status): answer(entry["description"], "ErrorBody") for status, entry in ERRORS.items()}
    return {
        "tags": ["submissions"],
        "summary": "Post Submissions",
        "description": (
            "Record one submission (a JSON object) or a batch (a JSON array, or NDJSON).\n\n"
            "200 once every submission was judged: rejections are results, not errors.\n"
            "Each result is what `leadledger append` prints, with its line. The event_id\n"
            "is the idempotency key: sending a submission again answers `duplicate`."),
        "operationId": "post_submissions_v1_submissions_post",
        "security": [{"HTTPBearer": []}],
        "parameters": [{
            "name": "atomic", "in": "query", "required": False,
            "description": "All or nothing: one rejection records nothing of the request",
            "schema": {"type": "boolean", "default": False, "title": "Atomic",
                       "description": "All or nothing: one rejection records nothing of the request"},
        }],
        "requestBody": _submissions_body(),
        "responses": {
            "200": answer("Every submission judged, one result each, in order", "SubmissionsResponse"),
            **errors,
            "413": answer("Body or batch too large", "ErrorBody"),
            "415": answer("Not JSON or NDJSON", "ErrorBody"),
        },
    }


def _submissions_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Submission"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Submission"},
                 "minItems": 1, "maxItems": bodies.MAX_REQUEST_SUBMISSIONS},
            ]}},
            "application/x-ndjson": {"schema": {"type": "string",
                                                "description": "One submission (JSON object) per line"}},
        },
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the submission's JSON Schema (from the pydantic
    models of ledger/submissions.py) as components/schemas/Submission."""
    if app.openapi_schema:
        return app.openapi_schema
    from leadledger.submissions import json_schema

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    submission = json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(submission.pop("$defs", {}))
    components["Submission"] = submission
    for model in (models.SubmissionsResponse, models.ErrorBody):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    schema["paths"].setdefault(SUBMISSIONS_PATH, {})["post"] = _submissions_openapi()
    app.openapi_schema = schema
    return schema
