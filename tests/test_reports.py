"""What finance meets first (issue 8): units, instants, periods, filters, totals,
statement sections, income, reconciliation, explain, exit codes, and the CLI's
small courtesies. On both stores, against the demo submissions."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadledger import Ledger
from leadledger.errors import Rejection
from leadledger.cli.main import cli
from tests.helpers import buy, card, ok, quote, sub, wallet

ROOT = Path(__file__).resolve().parent.parent
DEMO = (ROOT / "cli" / "demo.ndjson").read_text()


def run(url, *args, input=None):
    return CliRunner().invoke(cli, ["--db", url, *args], input=input, obj={}, catch_exceptions=False)


@pytest.fixture
def demo_url(store_url):
    assert run(store_url, "append", "-", input=DEMO).exit_code == 1  # one rule-refused credit
    return store_url


def rows_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- units and instants ---------------------------------------------------------------------

def test_tables_show_major_units_and_name_the_unit(demo_url):
    table = run(demo_url, "refunds", "--as-of", "2026-02-01").stdout
    line = next(x for x in table.splitlines() if x.startswith("ct-1001"))
    assert re.search(r"\bUSD\s+15\.00\b", line), line  # was "1,500" in cents
    assert "major units" in table.splitlines()[1]
    bruno = next(x for x in table.splitlines() if x.startswith("ct-2001"))
    assert re.search(r"\bCRONO\s+80\s", bruno)
    rows = rows_of(run(demo_url, "refunds", "--as-of", "2026-02-01", "-f", "json"))
    assert rows[0]["charged"] == 1500 and rows[0]["unit"] == "USD"  # JSON stays in cents
    assert list(rows[0]) == ["contact_id", "pro_id", "market", "status", "charged", "refunded", "refundable",
                             "deadline", "unit", "as_of"]  # SPEC 8's fields first, in its order


@pytest.mark.parametrize("args", [["balances"], ["refunds"], ["trial-balance"], ["statement", "pro-ana"],
                                  ["income"], ["reconcile"]])
def test_every_report_names_its_instant(demo_url, args):
    table = run(demo_url, *args).stdout
    assert re.match(r"^.* as of now = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table), table[:200]
    given = run(demo_url, *args, *(["--to"] if args[0] in ("statement", "income", "reconcile") else ["--as-of"]),
                "2026-01-31").stdout
    assert "as of 2026-01-31T23:59:59.999999Z" in given.splitlines()[0]
    for fmt in ("json", "csv"):
        out = run(demo_url, *args, "--as-of" if args[0] in ("balances", "refunds", "trial-balance") else "--to",
                  "2026-02-01T00:00:00Z", "-f", fmt).stdout
        rows = json.loads(out) if fmt == "json" else list(csv.DictReader(io.StringIO(out)))
        assert rows and {r["as_of"] for r in rows} == {"2026-02-01T00:00:00Z"}, (args, fmt)


def test_demo_and_replay_say_when_they_judged(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert "as of 2026-03-01T00:00:00Z" in run(url, "demo").stdout
    log = tmp_path / "log.ndjson"
    log.write_text(run(url, "events").stdout)
    replayed = run(url, "replay", str(log), "--as-of", "2026-02-01")
    assert "judged at 2026-02-01T23:59:59.999999Z (--as-of)" in replayed.stderr


# --- exit codes -----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["statement", "nobody"], ["balances", "--pro", "nobody"],
                                  ["refunds", "--pro", "nobody"], ["trial-balance", "--pro", "nobody"]])
def test_a_missing_pro_is_exit_1_everywhere(demo_url, args):
    result = run(demo_url, *args)
    assert result.exit_code == 1
    assert result.stderr == "leadledger: error[wallet_not_found]: pro 'nobody' has no wallet\n"


def test_explain_of_an_unknown_contact_is_exit_1(demo_url):
    result = run(demo_url, "explain", "ct-none")
    assert result.exit_code == 1 and "error[contact_not_found]" in result.stderr


@pytest.mark.parametrize("args", [["statement", "pro-ana", "--period", "2026-13"],
                                  ["trial-balance", "--period", "2026-01", "--from", "2026-01-01"],
                                  ["income", "--from", "2026-02-01", "--to", "2026-01-01"],
                                  ["balances", "--market", "nowhere"], ["refunds", "--status", "Done"]])
def test_bad_periods_and_options_are_usage_errors(demo_url, args):
    result = run(demo_url, *args)
    assert result.exit_code == 2, result.output


def test_append_piped_into_head_keeps_the_rejection_exit_code(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    lines = [json.dumps(wallet("p1"))] + [json.dumps(buy("p1", 100 + i)) for i in range(3000)]
    lines.append(json.dumps(buy("ghost", 1)))  # the last line is rejected
    feed = tmp_path / "in.ndjson"
    feed.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"{sys.executable} -m leadledger.cli.main --db {url} append {feed} | head -n 1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert "3,002 read: 3,001 recorded, 0 duplicate, 1 rejected" in done.stderr
    with Ledger.from_url(url) as ledger:  # head stopping did not stop the recording
        assert ledger.balances(pro_id="p1")[0]["balance"] == sum(100 + i for i in range(3000))


# --- input ----------------------------------------------------------------------------------

def test_a_duplicated_key_is_rejected_never_last_wins(store_url):
    first = sub("WalletOpened", "2026-01-05T09:00:00Z", pro_id="p1", market="pro360", region="US-CA")
    body = json.dumps(first)[:-1] + ', "pro_id": "p2"}'
    result = run(store_url, "append", "-", input=body + "\n")
    out = json.loads(result.stdout)
    assert (out["status"], out["code"], out["message"]) == ("rejected", "invalid_submission",
                                                             'duplicate key "pro_id"')
    money = json.dumps(buy("p1", 100))[:-1] + ', "amount": 1000000}'
    assert json.loads(run(store_url, "append", "-", input=money + "\n").stdout)["message"] == \
        'duplicate key "amount"'
    assert rows_of(run(store_url, "balances", "-f", "json")) == []


def test_malformed_json_names_the_right_column(store_url):
    line = '{"type": "WalletOpened", "pro_id": "pé\u00f1a" "market": "pro360"}'
    out = json.loads(run(store_url, "append", "-", input=line + "\n").stdout)
    column = line.index('"market"') + 1  # 1-based, in characters (the é and ñ count once)
    assert out["message"] == f"not JSON: Expecting ',' delimiter at column {column}"


def test_the_python_api_takes_datetimes_and_text_and_names_a_wrong_type(ledger):
    opened = {**wallet("p1"), "occurred_at": datetime(2026, 1, 5, 9, tzinfo=timezone.utc)}
    ok(ledger.append([opened, buy("p1", 700)]))
    naive = {**buy("p1", 5), "occurred_at": datetime(2026, 1, 6)}
    rejected = ledger.append([naive])[0]
    assert (rejected.status, rejected.code) == ("rejected", "invalid_submission")
    at_text = ledger.balances(as_of="2026-01-31")
    at_time = ledger.balances(as_of=datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=timezone.utc))
    assert at_text == at_time and at_text[0]["balance"] == 700
    assert ledger.balances(as_of="2026-01-05T08:00:00+00:00") == []
    with pytest.raises(TypeError, match="^as_of must be a datetime with a timezone or an RFC 3339 string, not int$"):
        ledger.balances(as_of=20260131)
    with pytest.raises(TypeError, match="^start must be"):
        ledger.trial_balance(start=3.5)
    with pytest.raises(ValueError, match="as_of: a naive datetime"):
        ledger.refunds(as_of=datetime(2026, 1, 31))


# --- periods, filters, totals ---------------------------------------------------------------

def test_trial_balance_for_a_period_opens_moves_and_closes(demo_url):
    everything = {(r["account"], r["unit"]): r for r in rows_of(run(demo_url, "trial-balance", "-f", "json"))}
    january = rows_of(run(demo_url, "trial-balance", "--period", "2026-01", "-f", "json"))
    upto_9 = {(r["account"], r["unit"]): r for r in rows_of(
        run(demo_url, "trial-balance", "--as-of", "2026-01-08", "-f", "json"))}
    later = rows_of(run(demo_url, "trial-balance", "--from", "2026-01-09", "--to", "2026-01-31", "-f", "json"))
    for row in later:
        key = (row["account"], row["unit"])
        assert row["opening"] == (upto_9[key]["balance"] if key in upto_9 else 0), key
        assert row["balance"] == row["opening"] + row["debit"] - row["credit"]  # the closing balance
    assert {(r["account"], r["unit"]): r["balance"] for r in january} == {
        k: r["balance"] for k, r in everything.items()}  # the demo happens in January
    # SPEC 8's fields first, in its order, then what a period adds
    assert list(january[0]) == ["account", "unit", "debit", "credit", "balance", "opening", "as_of"]
    for unit in ("USD", "CRONO"):
        assert sum(r["balance"] for r in later if r["unit"] == unit) == 0


def test_trial_balance_filters(demo_url):
    pro = rows_of(run(demo_url, "trial-balance", "--pro", "pro-bruno", "-f", "json"))
    assert {r["unit"] for r in pro} == {"CRONO"} and sum(r["balance"] for r in pro) == 0
    assert all(not r["account"].startswith("pro:") or r["account"].startswith("pro:pro-bruno:") for r in pro)
    revenue = rows_of(run(demo_url, "trial-balance", "--account", "platform:revenue", "-f", "json"))
    assert {r["account"] for r in revenue} == {"platform:revenue:commission", "platform:revenue:management_fee",
                                               "platform:revenue:call_minutes"}
    # Not a node of the chart (a prefix only at ':' boundaries): a typo, said as such.
    typo = run(demo_url, "trial-balance", "--account", "platform:rev", "-f", "json")
    assert (typo.exit_code, typo.stderr.startswith("leadledger: error[unknown_account]")) == (1, True), typo.output
    usd = rows_of(run(demo_url, "trial-balance", "--market", "pro360", "-f", "json"))
    assert {r["unit"] for r in usd} == {"USD"}


def test_market_filters_and_totals_rows(demo_url):
    assert [r["pro_id"] for r in rows_of(run(demo_url, "balances", "--market", "cronoshare", "-f", "json"))] == \
        ["pro-bruno"]
    assert {r["market"] for r in rows_of(run(demo_url, "refunds", "--market", "pro360", "-f", "json"))} == \
        {"pro360"}
    table = run(demo_url, "balances", "--as-of", "2026-01-31").stdout
    assert re.search(r"^TOTAL\s+USD\s+73\.00\s+0\.00\s+15\.00$", table, re.M), table
    assert re.search(r"^TOTAL\s+CRONO\s+105\s+0\s+0$", table, re.M), table
    refunds = run(demo_url, "refunds", "--as-of", "2026-02-01").stdout
    assert re.search(r"^TOTAL\s+USD\s+62\.00\s+10\.00\s+37\.00", refunds, re.M), refunds
    assert "TOTAL" not in run(demo_url, "balances", "-f", "csv").stdout  # totals are for people


def test_status_without_accents(demo_url):
    for spelling in ("Gérer", "Gerer", "gerer", "GERER", "Ge\u0301rer"):
        rows = rows_of(run(demo_url, "refunds", "--status", spelling, "--as-of", "2026-02-01", "-f", "json"))
        assert [r["contact_id"] for r in rows] == ["ct-1002", "ct-1003", "ct-2001"], spelling
    assert rows_of(run(demo_url, "refunds", "--status", "non permis", "--as-of", "2026-02-01", "-f", "json")) == []


# --- statement, income, reconciliation, Beancount ---------------------------------------------

def test_statement_sections_refs_and_period_lines(demo_url):
    rows = rows_of(run(demo_url, "statement", "pro-ana", "--from", "2026-01-07", "--to", "2026-01-31", "-f", "json"))
    wallet_rows = [r for r in rows if r["account"] == "pro:pro-ana:wallet"]
    card_rows = [r for r in rows if r["account"] == "pro:pro-ana:card"]
    assert rows == wallet_rows + card_rows  # sections, never one mixed running balance
    assert wallet_rows[0] == {**wallet_rows[0], "line": "opening", "running_balance": 8500,
                              "occurred_at": "2026-01-07T00:00:00Z"}
    assert wallet_rows[-1]["line"] == "closing" and wallet_rows[-1]["running_balance"] == 7300
    # the fields a statement row always had come first, in their order
    assert list(wallet_rows[1])[:9] == ["occurred_at", "event_type", "event_id", "contact_id", "account", "unit",
                                        "debit", "credit", "running_balance"]
    assert wallet_rows[-1]["debit"] == sum(r["debit"] for r in wallet_rows[1:-1])
    assert card_rows[1]["card_ref"] == "card_visa_4242" and card_rows[1]["contact_id"] == "ct-1003"
    everything = rows_of(run(demo_url, "statement", "pro-ana", "-f", "json"))
    purchase = next(r for r in everything if r["event_type"] == "CreditsPurchased")
    assert (purchase["payment_ref"], purchase["reason"]) == ("stripe_ch_001", "purchase")
    refund = next(r for r in everything if r["event_type"] == "QuoteFeeRefunded")
    assert (refund["reason"], refund["contact_id"]) == ("suspected_recruitment", "ct-1004")
    csv_text = run(demo_url, "statement", "pro-ana", "-f", "csv").stdout
    assert "stripe_ch_001" in csv_text
    assert csv_text.splitlines()[0].startswith("occurred_at,event_type,event_id,contact_id,account,unit,debit,credit,running_balance,line,")
    only_card = rows_of(run(demo_url, "statement", "pro-ana", "--account", "card", "-f", "json"))
    assert {r["account"] for r in only_card} == {"pro:pro-ana:card"}


def test_income_by_market(demo_url):
    rows = rows_of(run(demo_url, "income", "--period", "2026-01", "-f", "json"))
    pro360 = next(r for r in rows if r["market"] == "pro360")
    assert {k: pro360[k] for k in ("commission", "call_minutes", "revenue", "refunds", "courtesy", "net")} == {
        "commission": 6200, "call_minutes": 1500, "revenue": 7700, "refunds": 1000, "courtesy": 2500,
        "net": 4200}
    crono = next(r for r in rows if r["market"] == "cronoshare")
    assert (crono["unit"], crono["management_fee"], crono["refunds"]) == ("CRONO", 40, 45)
    assert rows_of(run(demo_url, "income", "--period", "2025", "-f", "json")) == []
    assert [r["market"] for r in rows_of(run(demo_url, "income", "--market", "cronoshare", "-f", "json"))] == \
        ["cronoshare"]


def test_reconcile_lists_every_boundary_crossing(demo_url):
    rows = list(csv.DictReader(io.StringIO(run(demo_url, "reconcile", "--period", "2026-01", "-f", "csv").stdout)))
    assert [(r["movement"], r["payment_ref"] or r["card_ref"], r["amount"]) for r in rows] == [
        ("credit_purchase", "tpv-8812", "100"), ("credit_purchase", "stripe_ch_001", "10000"),
        ("card_charge", "card_visa_4242", "1500"), ("credit_purchase", "tpv-8850", "150")]
    table = run(demo_url, "reconcile", "--period", "2026-01", "--market", "pro360").stdout
    assert re.search(r"^TOTAL\s+pro360\s+card_charge\s+USD\s+15\.00$", table, re.M), table
    assert "cronoshare" not in table


def test_a_card_charge_names_the_card_in_force(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet("p1"), card("p1"),
                          quote("c1", "p1", pricing="guaranteed_reply", commission=900),
                          sub("CustomerReplied", "2026-01-06T10:00:00Z", contact_id="c1", channel="message"),
                          sub("CardRegistered", "2026-01-06T12:00:00Z", pro_id="p1", card_ref="card-2"),
                          quote("c2", "p1", "2026-01-06T13:00:00Z", pricing="guaranteed_reply", commission=800),
                          sub("CustomerReplied", "2026-01-07T10:00:00Z", contact_id="c2", channel="message")]))
    rows = rows_of(run(store_url, "reconcile", "-f", "json"))
    assert [(r["contact_id"], r["card_ref"], r["amount"]) for r in rows] == [("c1", "card-1", 900),
                                                                            ("c2", "card-2", 800)]
    with Ledger.from_url(store_url) as ledger:  # a rebuild gives the same answer
        ledger.rebuild()
    # as_of is the clock at each run: a slow machine crosses a second between them
    assert ([{**r, "as_of": None} for r in rows_of(run(store_url, "reconcile", "-f", "json"))]
            == [{**r, "as_of": None} for r in rows])


def test_beancount_has_readable_narration_and_refs(demo_url):
    text = run(demo_url, "export").stdout
    assert '2026-01-05 * "pro-ana" "Credits purchased, payment stripe_ch_001"' in text
    assert '  payment_ref: "stripe_ch_001"' in text
    assert '"Fee refunded for contact ct-1004 (suspected_recruitment)"' in text
    assert '  card_ref: "card_visa_4242"' in text


# --- explain ------------------------------------------------------------------------------------

def test_explain_shows_the_deadline_computation_with_holidays(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet("b", "cronoshare", t="2025-11-28T09:00:00Z"), buy("b", 500, "2025-11-28T10:00:00Z"),
                          quote("ct-es", "b", "2025-12-01T10:00:00Z", commission=60, management_fee=20,
                                job_date="2025-12-20")]))
    found = json.loads(run(store_url, "explain", "ct-es", "--as-of", "2025-12-02", "-f", "json").stdout)
    deadline = found["deadline"]
    assert deadline["rule"].startswith("60 working days from the purchase")
    # 2025-12-01 + 60 working days: 24 weekend days and 4 national holidays skipped
    assert deadline["counted_from"] == "2025-12-01" and deadline["last_day"] == "2026-02-27"
    assert deadline["skipped_weekend_days"] == 24
    assert [h["date"] for h in deadline["skipped_holidays"]] == ["2025-12-08", "2025-12-25", "2026-01-01",
                                                                 "2026-01-06"]
    assert deadline["closes_at"] == "2026-02-27T23:00:00Z" and deadline["matches_recorded"] is True
    assert (found["status"], found["charged"], found["refundable"]) == ("Gérer", 80, 60)
    assert [f["event_type"] for f in found["facts"]] == ["QuoteSent", "ContactFeeCharged"]
    table = run(store_url, "explain", "ct-es", "--as-of", "2026-02-28").stdout
    assert "status: Expiré" in table and "2025-12-25 Christmas Day" in table


def test_explain_judges_at_its_as_of(demo_url):
    before = json.loads(run(demo_url, "explain", "ct-1004", "--as-of", "2026-01-11", "-f", "json").stdout)
    after = json.loads(run(demo_url, "explain", "ct-1004", "--as-of", "2026-02-01", "-f", "json").stdout)
    assert (before["status"], after["status"]) == ("Gérer", "Rectifier")
    assert "QuoteFeeRefunded" not in [f["event_type"] for f in before["facts"]]
    refund = next(f for f in after["facts"] if f["event_type"] == "QuoteFeeRefunded")
    assert "suspected_recruitment" in refund["detail"] and "whole fee" in refund["detail"]


# --- the CLI's courtesies ------------------------------------------------------------------------

def test_version_short_format_and_db_after_the_command(demo_url, tmp_path):
    from importlib.metadata import version

    assert CliRunner().invoke(cli, ["--version"], obj={}).stdout == f"leadledger {version('leadledger')}\n"
    after = CliRunner().invoke(cli, ["balances", "--db", demo_url, "-f", "json", "--as-of", "2026-01-31"], obj={})
    before = CliRunner().invoke(cli, ["--db", demo_url, "balances", "--format", "json", "--as-of", "2026-01-31"],
                                obj={})
    assert after.exit_code == 0 and after.stdout == before.stdout and "pro-ana" in after.stdout
    for name, command in cli.commands.items():
        assert "--db" in CliRunner().invoke(cli, [name, "--help"], obj={}).stdout, name


def _with_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; what the terminal showed."""
    main_fd, child_fd = pty.openpty()
    # A new pty has 0 columns; a real terminal has some (tqdm fits its bar to them).
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "leadledger.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=child_fd, cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    os.close(child_fd)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    return proc.wait(timeout=300), seen.decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_in_a_pipe(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Ledger.from_url(url) as ledger:
        lines = [wallet("p1")] + [buy("p1", 1) for _ in range(30_000)]
        ledger.append(lines)
    code, shown = _with_a_terminal(["--db", url, "rebuild"])
    assert code == 0
    assert "rebuild" in shown and re.search(r"\d+(\.\d+)?k? events", shown), shown[-500:]
    code, shown = _with_a_terminal(["--db", url, "events"])
    assert code == 0 and "events:" in shown and "events/s" in shown, shown[-500:]
    piped = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "--db", url, "rebuild"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert piped.returncode == 0 and piped.stderr == "rebuilt the read models from 30,001 events\n"


def test_an_account_filter_takes_its_text_literally(store_url):
    """``--account pro:a_b`` is that account and those under it, byte for byte: case
    counts (SQLite's LIKE, which the filter used, is blind to ASCII case: ``pro:Alpha``
    took in ``pro:alpha``'s and ``pro:ALPHA``'s postings on SQLite only), and LIKE's
    wildcards and escape characters match only themselves."""
    pros = ["a_b", "axb", "a%b", "a!b", "a!!b", "a\\b", "a", "Alpha", "alpha", "ALPHA", "a;b"]
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([s for pro in pros for s in (wallet(pro), buy(pro, 100 + len(pro), ref=f"pay-{pro}"))]))
        for pro in pros:
            rows = ledger.trial_balance(account=f"pro:{pro}")
            assert rows, pro
            assert {row["account"].split(":")[1] for row in rows} == {pro}, (pro, rows)
        assert ledger.trial_balance(account="pro:a_") == []


def test_a_pros_account_filter_is_that_pro_whatever_colons_other_ids_hold(store_url):
    """A pro id may hold ':' (SPEC 3 forbids none), so pro ``a:wallet``'s accounts are named
    ``pro:a:wallet:...``: under ``pro:a`` and under ``pro:a:wallet`` as text. The filter took
    every account under its text, so ``--account pro:a`` (pro a's accounts) and ``--account
    pro:a:wallet`` (pro a's wallet) summed pro ``a:wallet``'s wallet in too. A pro's node
    now names its three accounts and an account name that account, exactly."""
    pros = {"a": 100, "a:wallet": 999, "a:advance": 50}
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([s for pro, amount in pros.items() for s in (wallet(pro), buy(pro, amount))]))
        accounts = lambda rows: {row["account"]: row["balance"] for row in rows}  # noqa: E731
        for as_of in (None, "2030-01-01T00:00:00Z"):  # checkpointed and summed paths
            assert accounts(ledger.trial_balance(as_of, account="pro:a")) == {"pro:a:wallet": -100}
            assert accounts(ledger.trial_balance(as_of, account="pro:a:wallet")) == {"pro:a:wallet": -100}
            assert accounts(ledger.trial_balance(as_of, account="pro:a:wallet:wallet")) == {
                "pro:a:wallet:wallet": -999}
            assert accounts(ledger.trial_balance(as_of, account="pro")) == {
                "pro:a:wallet": -100, "pro:a:wallet:wallet": -999, "pro:a:advance:wallet": -50}
        assert ledger.trial_balance(start="2020-01-01", account="pro:a")[0]["account"] == "pro:a:wallet"
        assert len(ledger.trial_balance(start="2020-01-01", account="pro:a")) == 1
        for pro, amount in pros.items():
            for account in (None, "pro", f"pro:{pro}", "wallet", f"pro:{pro}:wallet"):
                lines = ledger.statement(pro, account=account)
                assert {line["account"] for line in lines} == {f"pro:{pro}:wallet"}, (pro, account, lines)
                assert lines[-1]["running_balance"] == amount, (pro, account)
        with pytest.raises(Rejection):
            ledger.statement("a", account="pro:a:wallet:wallet")  # another pro's account
    result = CliRunner().invoke(cli, ["--db", store_url, "trial-balance", "--account", "pro:a", "--format", "csv"])
    assert result.exit_code == 0 and "a:wallet:wallet" not in result.stdout, result.output


def test_a_read_finds_an_id_in_either_spelling_of_its_accents(store_url):
    """Ids are recorded NFC-normalised (``submissions.check_identifier``: an accented id
    typed two ways is one id). Reads took the id as given: the very spelling a sender
    used (NFD, as a macOS keyboard types it) answered wallet_not_found, and
    ``--account pro:ID`` an empty book."""
    import unicodedata

    nfd, nfc = (unicodedata.normalize(form, "josé") for form in ("NFD", "NFC"))
    contact = unicodedata.normalize("NFD", "ct-café")
    assert nfd != nfc
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([wallet(nfd), buy(nfd, 5000), quote(contact, nfd, commission=1500)]))
        for pro in (nfd, nfc):
            assert [row["pro_id"] for row in ledger.balances(pro_id=pro)] == [nfc]
            assert [row["balance"] for row in ledger.balances(pro_id=pro)] == [3500]
            assert [row["contact_id"] for row in ledger.refunds(pro_id=pro, as_of="2026-01-25")] == [
                unicodedata.normalize("NFC", contact)]
            assert {row["account"] for row in ledger.trial_balance(pro_id=pro)} >= {f"pro:{nfc}:wallet"}
            assert [row["balance"] for row in ledger.trial_balance(account=f"pro:{pro}")] == [-3500]
            assert [row["balance"] for row in ledger.trial_balance(account=f"pro:{pro}:wallet")] == [-3500]
            assert ledger.statement(pro)[-1]["running_balance"] == 3500
            assert ledger.statement(pro, account=f"pro:{pro}:wallet")[-1]["running_balance"] == 3500
        for spelling in (contact, unicodedata.normalize("NFC", contact)):
            assert ledger.refunds(contact_id=spelling, as_of="2026-01-25")[0]["status"] == "Gérer"
            assert ledger.explain(spelling, as_of="2026-01-25")["status"] == "Gérer"
    result = CliRunner().invoke(cli, ["--db", store_url, "balances", "--pro", nfd, "--format", "csv"])
    assert result.exit_code == 0 and f"\n{nfc},pro360," in result.stdout, result.output
