"""Issue 7: nothing a sender submits may poison, hang or corrupt the ledger.

Each test here failed on the code before the fix; all run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from leadledger.cli.main import cli
from leadledger import Ledger
from leadledger.aggregates import wallet_id
from leadledger.commands import UnreadRefundDue
from tests.helpers import at, balance, buy, courtesy, ok, one, quote, sub, wallet, when


def run(url, *args, input=None):
    return CliRunner().invoke(cli, ["--db", url, *args], input=input, obj={}, catch_exceptions=False)


def reads_all_work(url):
    for args in (("balances", "--format", "json"), ("refunds", "--format", "json"),
                 ("verify", "--quick"), ("rebuild",)):
        result = run(url, *args)
        assert result.exit_code == 0, (args, result.output)


# --- 1. identifiers --------------------------------------------------------------

@pytest.mark.parametrize("bad", ["pro\u0000x", "pro\u200bx", "pro\u202ex", "pro\nx", " pro", "pro\u00a0x",
                                 "p" * 129, "\u2028"])
def test_unprintable_identifiers_are_refused_and_reads_keep_working(store_url, bad):
    with Ledger.from_url(store_url) as ledger:
        result = one(ledger, wallet(bad))
        assert (result.status, result.code) == ("rejected", "invalid_submission"), result
        assert "pro_id" in result.message
        ok(ledger.append([wallet("p1"), buy("p1", 100), quote("c\u00e9", "p1", commission=50)]))
        result = one(ledger, sub("QuoteRead", at(2), contact_id="c1\u0000"))
        assert result.code == "invalid_submission"
        assert ledger.balances() == [balance(ledger, "p1")]
    reads_all_work(store_url)  # on PostgreSQL a NUL used to break every read, forever


def test_identifiers_are_nfc_normalised_and_case_sensitive(ledger):
    decomposed, composed = "jose\u0301", "jos\u00e9"
    ok(ledger.append([wallet(decomposed), wallet("Ana")]))
    assert one(ledger, wallet(composed)).code == "wallet_exists"  # one id, two spellings
    ok(ledger.append([wallet("ana")]))  # ids are case-sensitive: another pro
    assert {r["pro_id"] for r in ledger.balances()} == {composed, "Ana", "ana"}


# --- 4. sender ids never name internal records --------------------------------------

def test_an_event_id_equal_to_a_wallet_id_locks_nobody_out(ledger):
    attack = wallet("pro-attacker")
    attack["event_id"] = str(wallet_id("pro-victim"))
    ok(ledger.append([attack]))
    ok(ledger.append([wallet("pro-victim"), buy("pro-victim", 700)]))
    assert balance(ledger, "pro-victim")["balance"] == 700


def test_an_event_id_equal_to_the_sweep_id_does_not_stop_the_unread_refund(ledger):
    ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("ct-9", "p1", at(1), commission=1000)]))
    squatter = sub("QuoteRead", at(4), contact_id="ct-9")  # read after the 48 h: no effect
    squatter["event_id"] = str(UnreadRefundDue("ct-9", when(at(3))).event_id)
    ok(ledger.append([squatter]))
    recorded = ledger.sweep(when(at(5)))
    assert [r.recorded for r in recorded] == [("QuoteFeeRefunded",)]
    assert balance(ledger, "p1")["balance"] == 5000
    # The sweep's refund has no receipt, and the squatter's receipt covers its own
    # event only: neither is a finding.
    assert ledger.verify(replay=False)[0].problems == []


# --- 5. one bad line never takes its neighbours ----------------------------------------

def test_bad_lines_are_rejected_alone(store_url):
    good = [wallet(f"g{i}") for i in range(4)]
    bad_time = wallet("b1")
    bad_time["occurred_at"] = "0001-01-01T00:00:00+01:00"
    late_year = wallet("b2")
    late_year["occurred_at"] = "9999-12-31T23:59:59-01:00"
    lines = [
        json.dumps(good[0]).encode(),
        b'{"type": "WalletOpened", "pro_id": "\xff\xfe"}',
        b"[" * 60_000,  # under the line limit: the parser's own nesting limit
        json.dumps(bad_time).encode(),
        json.dumps(good[1]).encode(),
        json.dumps(late_year).encode(),
        json.dumps(good[2])[:-1].encode() + b', "n": ' + b"9" * 5001 + b"}",
        b"x" * 300_000,  # over the 64 KiB line limit, without reading it all
        b"",
        json.dumps(good[3]).encode(),
    ]
    result = CliRunner().invoke(cli, ["--db", store_url, "append", "-"], input=b"\n".join(lines) + b"\n",
                                obj={}, catch_exceptions=False)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["line"], r["status"]) for r in out] == [
        (1, "recorded"), (2, "rejected"), (3, "rejected"), (4, "rejected"), (5, "recorded"),
        (6, "rejected"), (7, "rejected"), (8, "rejected"), (10, "recorded")]
    assert {r["code"] for r in out if r["status"] == "rejected"} == {"invalid_submission"}
    assert result.exit_code == 1
    with Ledger.from_url(store_url) as ledger:
        assert [r["pro_id"] for r in ledger.balances()] == ["g0", "g1", "g3"]


def test_a_utf16_file_is_refused_naming_the_line(store_url, tmp_path):
    path = tmp_path / "subs.ndjson"
    path.write_text(json.dumps(wallet("p1")) + "\n", encoding="utf-16")
    result = run(store_url, "append", str(path))
    assert result.exit_code == 2
    assert "line 1" in result.output and "UTF-16" in result.output


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_as_of_out_of_range_is_a_usage_error(store_url, value):
    result = run(store_url, "balances", "--as-of", value)
    assert result.exit_code == 2 and "Invalid value for '--as-of'" in result.output
    assert "Traceback" not in result.output


# --- 6. times ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1769767200", "0", 1769767200, "2026-01-05 09:00:00Z", "2026-01-05T09:00:00"])
def test_only_rfc3339_with_offset(ledger, value):
    submission = wallet("p1")
    submission["occurred_at"] = value
    result = one(ledger, submission)
    assert (result.status, result.code) == ("rejected", "invalid_submission")
    assert result.message.startswith("occurred_at:")


def test_the_future_is_refused_beyond_the_skew(store_url):
    now = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    with Ledger.from_url(store_url, clock=lambda: now) as ledger:
        soon, far = wallet("p1"), wallet("p2")
        soon["occurred_at"] = (now + timedelta(minutes=4)).isoformat()
        far["occurred_at"] = "2099-01-01T00:00:00Z"
        ok([one(ledger, soon)])
        result = one(ledger, far)
        assert (result.status, result.code) == ("rejected", "occurred_in_future")
        assert [r["pro_id"] for r in ledger.balances()] == ["p1"]


def test_late_arrivals_are_judged_at_their_time_and_reported(store_url):
    ok_late = [wallet("p1"), buy("p1", 5000), quote("c1", "p1", commission=1000, job_date="2026-01-20")]
    with Ledger.from_url(store_url) as ledger:  # recorded now, months after they occurred
        ok(ledger.append(ok_late))
        refund = sub("RefundRequested", at(2), contact_id="c1", reason="wrong_contact_info")
        ok(ledger.append([refund]))  # inside the window at its own occurred_at
        late = list(ledger.late_events(timedelta(days=7)))
    assert {r["event_type"] for r in late} >= {"WalletOpened", "QuoteFeeRefunded"}
    assert all(r["lag_seconds"] >= 7 * 86400 for r in late)
    result = run(store_url, "late", "--min-lag", "7d", "--format", "csv")
    assert result.exit_code == 0 and result.output.startswith("event_type,event_id,occurred_at,recorded_at")


def test_a_market_pack_may_bound_lateness(ledger, monkeypatch):
    import dataclasses

    from leadledger import markets

    original = markets.all_policies()
    bounded = {key: dataclasses.replace(p, max_lateness_days=30) if key[0] == "pro360" else p
               for key, p in original.items()}
    monkeypatch.setattr(markets, "all_policies", lambda: bounded)
    result = one(ledger, wallet("p1"))  # dated January, recorded in November
    assert (result.status, result.code) == ("rejected", "too_late")


# --- 7. approvals ------------------------------------------------------------------

def test_an_issuer_cannot_approve_their_own_credit(ledger):
    ok(ledger.append([wallet("p1")]))
    credit = courtesy("p1", 10_000, approver="supervisor")
    credit["issued_by"] = {"id": "Agent-7", "role": "agent"}
    credit["approved_by"] = {"id": "agent-7", "role": "supervisor"}
    result = one(ledger, credit)
    assert (result.status, result.code) == ("rejected", "invalid_submission")
    assert "approver" in result.message


@pytest.mark.parametrize("amount", [100_001, 10**12])
def test_no_courtesy_credit_above_the_ceiling_whoever_approves(ledger, amount):
    ok(ledger.append([wallet("p1")]))
    result = one(ledger, courtesy("p1", amount, approver="supervisor"))
    assert (result.status, result.code) == ("rejected", "courtesy_over_ceiling")
    ok([one(ledger, courtesy("p1", 100_000, approver="supervisor"))])
