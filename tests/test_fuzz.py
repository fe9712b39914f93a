"""Issue 7: fuzzing through `append`. Hostile lines between good ones: no
traceback, no hang, nothing recorded for a bad line, the good lines around it
recorded, and the read side still working afterwards."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadledger.cli.main import cli
from leadledger import Ledger
from tests.hostile import HOSTILE_LINE
from tests.helpers import wallet


def _good(pro: str) -> bytes:
    return json.dumps(wallet(pro)).encode()


def _append_with_hostile_lines(url: str, hostile: list[bytes], before: int) -> None:
    pros = [f"good-{uuid.uuid4().hex[:8]}" for _ in range(len(hostile) + 1)]
    lines = [_good(pros[0])]
    for bad, pro in zip(hostile, pros[1:]):
        lines += [bad, _good(pro)]
    result = CliRunner().invoke(cli, ["--db", url, "append", "-"], input=b"\n".join(lines) + b"\n",
                                obj={}, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1), result.output
    out = [json.loads(x) for x in result.stdout.splitlines()]
    good_lines = {2 * i + 1 for i in range(len(pros))}
    assert {r["line"] for r in out if r["status"] == "recorded"} >= good_lines
    with Ledger.from_url(url) as ledger:
        opened = {r["pro_id"] for r in ledger.balances()}
        assert set(pros) <= opened
        # a hostile line recorded something only if it was a valid submission after all
        recorded_bad = [r for r in out if r["line"] not in good_lines and r["status"] == "recorded"]
        assert len(opened) <= before + len(pros) + len(recorded_bad)
        assert all(c.ok for c in ledger.verify(replay=False))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile=st.lists(HOSTILE_LINE, min_size=1, max_size=4))
def _fuzz_round(url: str, hostile: list[bytes]) -> None:
    with Ledger.from_url(url) as ledger:
        before = len(ledger.balances())
    _append_with_hostile_lines(url, hostile, before)


def test_hostile_lines_never_take_their_neighbours(store_url):
    _fuzz_round(store_url)
