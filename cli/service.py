"""`leadledger serve` and `leadledger keys`: the HTTP service and its API keys.
Thin: the app is leadledger.service.app, the keys live in the store (ledger/keys.py)."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from leadledger.cli.app import FORMAT, cli, guarded, open_ledger
from leadledger.cli.output import render
from leadledger.cli.params import Duration, FiniteFloatRange

KEY_COLUMNS = ("name", "scope", "status", "created_at", "revoked_at")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port (0: any free one).")
@click.option("--sweep-every", type=Duration(positive=True), default=None,
              help="Also run `sweep` inside the service this often (e.g. 60s); default: never (a CLI job).")
@click.option("--max-wait", type=FiniteFloatRange(0, 300), default=30, show_default=True,
              help="The longest long-poll, in seconds, a client may ask of GET /v1/events?wait=.")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request line (never a key: keys travel in a header).")
@click.pass_context
@guarded
def serve(ctx: click.Context, host: str, port: int, sweep_every: timedelta | None, max_wait: float,
          access_log: bool) -> None:
    """Run the HTTP API (FastAPI on uvicorn) over the store.

    POST /v1/submissions (JSON object, JSON array or NDJSON), GET /v1/wallets,
    /v1/refunds, /v1/trial-balance, /v1/events (feed), /healthz, /readyz,
    /metrics; the OpenAPI document at /openapi.json, interactive docs at /docs.
    Requests carry an API key: Authorization: Bearer SECRET (`leadledger keys`).

    \b
    Example:
      leadledger keys create billing --scope append
      leadledger --db postgresql://leadledger_writer@127.0.0.1/leadledger serve --port 8080
    """
    import uvicorn

    from leadledger.service.app import create_app

    open_ledger(ctx).log_size()  # a store that is down or not initialised: say so now, exit 3
    # Bound here, before anything starts: a port in use or an unknown host is one
    # error line (uvicorn printed its own log lines and a "serving" banner first),
    # and the banner names the port --port 0 was given.
    listening = _listen(host, port)
    app = create_app(ctx.obj["db"], sweep_every=sweep_every, max_wait_seconds=max_wait)
    bound = listening.getsockname()[1]
    click.echo(f"leadledger: serving {_safe(ctx.obj['db'])} on http://{_url_host(host)}:{bound} "
               f"(OpenAPI at /openapi.json, docs at /docs)", err=True)
    # proxy_headers off: client addresses are only logged, and a forwarded one is
    # not trusted from whoever connects (the middleware also cost every request).
    config = uvicorn.Config(app, host=host, port=bound, access_log=access_log, log_level="info",
                            timeout_graceful_shutdown=30, server_header=False, proxy_headers=False)
    server = uvicorn.Server(config)
    server.run(sockets=[listening])
    if not server.started:  # the application's start-up failed (uvicorn logged why)
        sys.exit(3)


def _listen(host: str, port: int) -> Any:
    """A listening socket on ``host``:``port`` (as uvicorn binds one), or
    LedgerError(cannot_listen) saying why."""
    import socket

    from leadledger.errors import LedgerError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        listening = socket.socket(family, kind, proto)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(address)
            listening.listen(2048)
        except OSError:
            listening.close()
            raise
    except OSError as exc:  # socket.gaierror included: an unknown host
        raise LedgerError("cannot_listen", f"cannot listen on {_url_host(host)}:{port}: "
                          f"{exc.strerror or exc}") from None
    return listening


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _safe(url: str) -> str:
    """The store URL without its password, for the log."""
    from leadledger.store import redacted

    return redacted(url)


@cli.group()
def keys() -> None:
    """API keys of the HTTP service: create, list, revoke.

    A key has a name (recorded with every event it appends, as key:NAME), a
    scope (append: POST submissions; read: reports and the event feed; admin:
    both) and a secret, printed once: the store keeps only its SHA-256. On
    PostgreSQL keys are managed with the owner's URL.

    \b
    Example:
      leadledger keys create billing --scope append
      leadledger keys list
      leadledger keys revoke billing
    """


@keys.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["append", "read", "admin"]), required=True,
              help="append: record submissions; read: reports and the feed; admin: both.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
@guarded
def keys_create(ctx: click.Context, name: str, scope: str, fmt: str) -> None:
    """Create a key and print its secret (once: it cannot be shown again).

    \b
    Example:
      leadledger keys create billing --scope append
    """
    key, secret = open_ledger(ctx).create_key(name, scope)
    if fmt == "json":
        import json

        click.echo(json.dumps({**key.to_json(), "secret": secret}))
    else:
        click.echo(secret)
        click.echo(f"created key {key.name!r} with scope {key.scope}: the secret above is shown this once",
                   err=True)


@keys.command("list")
@FORMAT
@click.pass_context
@guarded
def keys_list(ctx: click.Context, fmt: str) -> None:
    """List the keys (never their secrets), revoked ones included.

    \b
    Example:
      leadledger keys list --format json
    """
    rows = [k.to_json() for k in open_ledger(ctx).list_keys()]
    sys.stdout.write(render(rows, KEY_COLUMNS, fmt))


@keys.command("revoke")
@click.argument("name")
@click.pass_context
@guarded
def keys_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a key: its requests get 401 within 2 seconds on every server. Idempotent;
    exit 1 if there is no such key.

    \b
    Example:
      leadledger keys revoke billing
    """
    key = open_ledger(ctx).revoke_key(name)
    click.echo(f"key {key.name!r} revoked at {key.revoked_at}", err=True)

