"""Journal, statements, replay, rebuild, verify, Beancount export (SPEC 5-8), both stores."""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadledger.cli.main import cli
from leadledger import Ledger
from leadledger.eventlog import to_line, iter_events
from tests.helpers import at, buy, card, cquote, courtesy, ok, quote, sub, wallet, when

ROOT = Path(__file__).resolve().parent.parent
DEMO = (ROOT / "cli" / "demo.ndjson").read_text().splitlines()


def busy(ledger):
    ok(ledger.append([
        wallet("p1"), buy("p1", 10000), card("p1"), quote("c1", "p1", commission=1500),
        quote("g1", "p1", at(1, 1), pricing="guaranteed_reply", commission=2500),
        sub("CallMinutesBilled", at(2), contact_id="g1", call_id="k1", duration_seconds=400),
        sub("RefundRequested", at(2, 1), contact_id="c1", reason="price_check"),
        courtesy("p1", 700, at(3)),
        wallet("p2", "cronoshare"), buy("p2", 40), cquote("k1", "p2", commission=100),
        buy("p2", 300, at(4)),
    ]))


def test_trial_balance_is_zero_per_unit_and_balances_match_the_journal(ledger):
    busy(ledger)
    rows = ledger.trial_balance()
    for unit in {r["unit"] for r in rows}:
        assert sum(r["balance"] for r in rows if r["unit"] == unit) == 0
    journal = {(r["account"], r["unit"]): r["balance"] for r in rows}
    for b in ledger.balances():
        assert b["balance"] == -journal.get((f"pro:{b['pro_id']}:wallet", b["unit"]), 0)
        assert b["advance_outstanding"] == journal.get((f"pro:{b['pro_id']}:advance", b["unit"]), 0)
        assert b["card_charged"] == journal.get((f"pro:{b['pro_id']}:card", "USD"), 0)


def test_postings_follow_spec_section_6(ledger):
    busy(ledger)
    tb = {(r["account"], r["unit"]): (r["debit"], r["credit"]) for r in ledger.trial_balance()}
    assert tb[("platform:cash", "USD")] == (10000, 0)
    assert tb[("platform:cash", "CRONO")] == (340, 0)
    assert tb[("platform:revenue:commission", "USD")] == (0, 1500 + 2500)
    assert tb[("platform:refunds", "USD")] == (1500, 0)
    assert tb[("platform:revenue:call_minutes", "USD")] == (0, 4 * 500)  # 220 s beyond 180: 4 minutes
    assert tb[("pro:p1:card", "USD")] == (2000, 0)
    assert tb[("platform:expense:courtesy", "USD")] == (700, 0)
    assert tb[("platform:revenue:management_fee", "CRONO")] == (0, 20)
    assert tb[("pro:p2:advance", "CRONO")] == (80, 80)  # advanced 80, repaid by the purchase


def test_verify_passes_on_a_sound_store(ledger):
    busy(ledger)
    ok(ledger.append(DEMO[:-1]))  # the demo minus its refused West Virginia credit
    checks = ledger.verify()
    assert [c.number for c in checks] == [0, 1, 2, 3, 4, 6]
    assert all(c.ok for c in checks), [c.to_json() for c in checks]


@pytest.mark.parametrize("corruption, invariant", [
    ("UPDATE ll_postings SET credit = credit + 1 WHERE account = 'pro:p1:wallet'", 1),
    ("DELETE FROM ll_postings WHERE event_type = 'CourtesyCreditIssued'", 2),
    ("UPDATE ll_contact_facts SET amount = amount * 10 WHERE kind = 'refund'", 4),
    ("INSERT INTO ll_contact_facts VALUES (999999, 0, 'c1', 'confirm', '2026-01-01T00:00:00.000000Z', 0, 0)", 6),
])
def test_verify_catches_a_corrupted_read_model(store_url, corruption, invariant):
    with Ledger.from_url(store_url) as ledger:
        busy(ledger)
        ledger.catch_up()
        with ledger._view.datastore.transaction(commit=True) as curs:
            curs.execute(corruption)
        failed = {c.number for c in ledger.verify() if not c.ok}
        assert invariant in failed
    result = CliRunner().invoke(cli, ["--db", store_url, "verify"], obj={})
    assert result.exit_code == 1 and "FAIL" in result.output
    fixed = CliRunner().invoke(cli, ["--db", store_url, "rebuild"], obj={})
    assert fixed.exit_code == 0
    assert CliRunner().invoke(cli, ["--db", store_url, "verify"], obj={}).exit_code == 0


def test_rebuild_gives_the_same_read_models(ledger):
    busy(ledger)
    before = ledger.read_models()
    assert ledger.rebuild() > 0
    assert ledger.read_models() == before


def test_rebuild_sets_first_seen_times_as_the_catch_up_does(ledger):
    """A rebuild stages the reads and sets each contact's first-seen time in one
    statement at its end; a catch-up updates it read by read. Same result: the
    earliest read, and none for a contact never read."""
    ok(ledger.append([
        wallet("p1"), buy("p1", 10000), card("p1"), quote("c1", "p1", commission=1500),
        quote("c2", "p1", commission=1500), quote("g1", "p1", at(1, 1), pricing="guaranteed_reply", commission=2500),
        sub("QuoteRead", at(1, 3), contact_id="c1"), sub("QuoteRead", at(1, 2), contact_id="c1"),
        sub("CustomerReplied", at(2), contact_id="g1", channel="message"),
        sub("QuoteRead", at(3), contact_id="g1"),
    ]))
    before = ledger.read_models()
    seen = {r["contact_id"]: r["first_seen_at"] for r in ledger._open()[1].query(
        "SELECT contact_id, first_seen_at FROM ll_contacts")}
    assert seen == {"c1": "2026-01-06T11:00:00.000000Z", "c2": None, "g1": "2026-01-07T09:00:00.000000Z"}, seen
    assert ledger.rebuild() > 0
    assert ledger.read_models() == before
    assert {r["contact_id"]: r["first_seen_at"] for r in ledger._open()[1].query(
        "SELECT contact_id, first_seen_at FROM ll_contacts")} == seen


def test_many_first_seen_times_in_one_batch_keep_the_earliest(ledger):
    """A catch-up batch sets each contact's first-seen time once, the earliest of
    the batch, and never later than one a batch before set (PostgreSQL: one UPDATE
    over arrays from 64 contacts on; below, and on SQLite, an UPDATE each)."""
    contacts = [f"c{i}" for i in range(70)]
    ok(ledger.append([wallet("p1"), buy("p1", 1_000_000), *[quote(c, "p1", at(1, 0, i), commission=100)
                                                            for i, c in enumerate(contacts)]]))
    ok(ledger.append([sub("QuoteRead", at(2, 5), contact_id="c0"), sub("QuoteRead", at(2), contact_id="c69")]))
    ledger.catch_up()  # c0 seen at day 2 + 5 h (then earlier), c69 at day 2 (then later)
    ok(ledger.append([sub("QuoteRead", at(3, 0, i), contact_id=c) for i, c in enumerate(contacts)]
                     + [sub("QuoteRead", at(2, 1, i), contact_id=c) for i, c in enumerate(contacts[:35])]))
    view = ledger._open()[1]

    def seen() -> dict[str, str]:
        ledger.catch_up()
        return {r["contact_id"]: r["first_seen_at"] for r in view.query("SELECT contact_id, first_seen_at FROM ll_contacts")}

    def text(t: str) -> str:
        return when(t).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    expected = {c: text(at(2, 1, i) if i < 35 else at(3, 0, i)) for i, c in enumerate(contacts)}
    expected["c69"] = text(at(2))
    assert seen() == expected
    ledger.rebuild()
    assert seen() == expected


def test_first_seen_stays_the_earliest_across_batches_and_rebuild_pages(ledger, monkeypatch):
    """A contact read in the batch (or rebuild page) that sends it carries its
    first-seen time in its own insert; a read in a later batch or page changes it
    only when it is earlier."""
    from leadledger import chain_store

    view = ledger._open()[1]

    def seen() -> dict[str, str]:
        return {r["contact_id"]: r["first_seen_at"] for r in view.query("SELECT contact_id, first_seen_at FROM ll_contacts")}

    def text(t: str) -> str:
        return when(t).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    ok(ledger.append([wallet("p1"), buy("p1", 1_000_000),
                      quote("a", "p1", at(1), commission=100), sub("QuoteRead", at(1, 5), contact_id="a"),
                      quote("b", "p1", at(1, 1), commission=100), sub("QuoteRead", at(1, 2), contact_id="b")]))
    ledger.catch_up()
    assert seen() == {"a": text(at(1, 5)), "b": text(at(1, 2))}  # from the inserts
    ok(ledger.append([sub("QuoteRead", at(1, 3), contact_id="a"), sub("QuoteRead", at(1, 4), contact_id="b")]))
    ledger.catch_up()
    expected = {"a": text(at(1, 3)), "b": text(at(1, 2))}
    assert seen() == expected
    for rows in (2, 3, 4, 1_000):  # the sends, the reads and the later reads in pages of every phase
        monkeypatch.setattr(chain_store, "PAGE", rows)
        ledger.rebuild()
        assert seen() == expected, rows


def test_a_long_backlog_is_caught_up_in_bigger_transactions(ledger, monkeypatch):
    from leadledger.projections import view as view_module

    monkeypatch.setenv("LEADLEDGER_MAPPING_WORKER", "off")  # this process's path (the worker's: test_mapping_worker)
    busy(ledger)
    expected = ledger.read_models()
    app, view = ledger._open()
    with view.datastore.transaction(commit=True) as curs:  # the read models fall behind the whole log
        view.clear_tables(curs)
        curs.execute("DELETE FROM " + view.tracking_table)
        curs.execute("INSERT INTO ll_checkpoint_marks VALUES ('', 0)")
    events = len(view.raw_after(0, 10_000))
    writes = []
    original = type(view).write_statements_tracked
    monkeypatch.setattr(type(view), "write_statements_tracked", lambda self, statements, tracking: (
        writes.append(tracking.notification_id), original(self, statements, tracking))[1])
    monkeypatch.setattr(view_module, "CATCH_UP_BATCH", 2)
    monkeypatch.setattr(view_module, "BACKLOG_EVENTS", 5)
    monkeypatch.setattr(view_module, "BACKLOG_BATCH", 4)
    assert ledger.catch_up() == events
    assert len(writes) == 1 + -(-(events - 2) // 4)  # 2 events, then 4 a transaction
    assert ledger.read_models() == expected


def test_catch_up_is_atomic_with_its_tracking_record(ledger, monkeypatch):
    busy(ledger)
    app, view = ledger._open()
    original = type(view)._insert_tracking

    def crash(self, curs, tracking):
        raise RuntimeError("power cut between the rows and the tracking record")

    monkeypatch.setattr(type(view), "_insert_tracking", crash)
    with pytest.raises(RuntimeError):
        ledger.catch_up()
    assert view.query("SELECT COUNT(*) AS n FROM ll_postings")[0]["n"] == 0  # rolled back
    monkeypatch.setattr(type(view), "_insert_tracking", original)
    assert ledger.catch_up() > 0
    assert all(c.ok for c in ledger.verify())


def test_replay_of_the_log_gives_byte_identical_read_models(ledger, tmp_path):
    busy(ledger)
    log = tmp_path / "log.ndjson"
    log.write_text("".join(to_line(e) + "\n" for e in iter_events(ledger._open()[0])))
    first = CliRunner().invoke(cli, ["replay", str(log)], obj={})
    second = CliRunner().invoke(cli, ["replay", str(log)], obj={})
    assert first.exit_code == 0 and first.stdout == second.stdout
    assert re.fullmatch(r"replayed \d+ events; judged at \S+Z \(the log's latest occurred_at\)\n", first.stderr)
    models = json.loads(first.stdout)
    assert models == json.loads(json.dumps(ledger.read_models()))


def test_event_log_is_the_same_on_both_stores(tmp_path):
    from tests.conftest import PG_URL, require_postgres, reset_postgres

    require_postgres()
    reset_postgres()
    logs = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", PG_URL):
        with Ledger.from_url(url) as ledger:
            ok(ledger.append(DEMO[:-1]))
            logs.append([json.dumps(e) for e in ledger.events()])
    assert logs[0] == logs[1] and len(logs[0]) == 36


def test_replay_rejects_a_bad_log(tmp_path):
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"type": "Nope"}\n')
    result = CliRunner().invoke(cli, ["replay", str(bad)], obj={})
    assert result.exit_code == 2 and result.stderr == (
        "leadledger: error[invalid_log]: line 1: not an event log line (no originator_id); did you mean "
        "append? (replay reads what `leadledger events` writes)\n")
    bad.write_text('\n{"type": "Nope"\n')
    result = CliRunner().invoke(cli, ["replay", str(bad)], obj={})
    assert result.exit_code == 2 and "line 2: not JSON" in result.stderr


@dataclasses.dataclass
class _Ran:
    exit_code: int
    stderr: str


def _replay(log: Path) -> _Ran:
    """`leadledger replay LOG` in a process of its own, bounded in time: on the code
    before, some of these logs made it spin forever, its memory growing."""
    proc = subprocess.run([sys.executable, "-m", "leadledger.cli.main", "replay", str(log)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return _Ran(proc.returncode, proc.stderr)


def _demo_log(tmp_path) -> list[dict]:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'demo.db'}") as ledger:
        ok(ledger.append(DEMO[:-1]))
        return list(ledger.events())


@pytest.mark.parametrize("field, value, said", [
    ("amount", "100", "line 2: amount: '100' is not a whole number 0..1000000000000"),
    ("amount", 1e308, "line 2: amount: 1e+308 is not a whole number 0..1000000000000"),
    ("amount", 10**30, "line 2: amount: 1000000000000000000000000000000 is not a whole number 0..1000000000000"),
    ("amount", -5, "line 2: amount: -5 is not a whole number 0..1000000000000"),
    ("amount", None, "line 2: amount: None is not a whole number 0..1000000000000"),
    ("pro_id", "a\x00b", "line 1: pro_id: 'a\\x00b' holds a control character or a lone surrogate"),
    ("pro_id", "a\ud800", "line 1: pro_id: 'a\\ud800' holds a control character or a lone surrogate"),
    ("pro_id", 5, "line 1: pro_id: 5 is not text of at most 1024 characters"),
    ("recorded_by", {"x": 1}, "line 1: recorded_by: {'x': 1} is not text of at most 1024 characters"),
    ("originator_version", "1", "line 1: originator_version: '1' is not a whole number 1..2**62"),
    ("occurred_at", "2026-01-05T17:00:00+00:00", None),  # any offset: the same instant
    ("occurred_at", "3026-01-05T17:00:00Z", "line 1: occurred_at: 3026-01-05T17:00:00Z is outside 1970..2999"),
])
def test_replay_refuses_values_no_ledger_records(tmp_path, field, value, said):
    """replay takes a log from outside, where each value is hostile: a string
    amount was an internal error (exit 4), a float or a 10^30 amount went into the
    read models, a negative one tripped an assertion, and a NUL in a pro id made
    the catch-up retry forever (10 GB in 10 minutes). Each is now its line's
    invalid_log (exit 2); a value a ledger records replays as before."""
    records = _demo_log(tmp_path)
    for record in records:
        if field in record and (field != "amount" or record["type"] == "CreditsPurchased"):
            record[field] = value
    log = tmp_path / "edited.ndjson"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _replay(log)
    if said is None:
        assert result.exit_code == 0, result.stderr
    else:
        assert (result.exit_code, result.stderr) == (2, f"leadledger: error[invalid_log]: {said}\n")


def test_decisions_that_fall_after_2999_replay_and_verify(store_url, tmp_path):
    """Submissions stop at 2999, what the rules decide from them need not: a pro360
    job dated 2999-12-31 closes its refund window 30 days later, a cronoshare quote
    sent at the end of 2999 60 working days later. Before 0.6.5 `replay` refused
    such a log (`invalid_log: refund_deadline ... is outside 1970..2999`) and
    `verify`, which replays the store's own log, failed with it: a store's audit
    broken by submissions it had accepted."""
    from datetime import datetime, timezone

    end = "2999-12-30T10:00:00Z"
    with Ledger.from_url(store_url, clock=lambda: datetime(2999, 12, 30, 12, tzinfo=timezone.utc)) as ledger:
        ok(ledger.append([wallet("us", t=end), wallet("es", "cronoshare", t=end), buy("us", 5000, end),
                          buy("es", 500, end), quote("late-job", "us", end, job_date="2999-12-31"),
                          cquote("late-sale", "es", end, job_date="2999-12-31")]))
        deadlines = {row["contact_id"]: row["deadline"] for row in ledger.read_models()["refunds"]}
        assert deadlines["late-job"] == "3000-01-31T00:00:00Z"
        assert deadlines["late-sale"] > "3000-03-"  # 60 Spanish working days after 2999-12-30
        assert all(check.ok for check in ledger.verify()), [c for c in ledger.verify() if not c.ok]
        log = tmp_path / "log.ndjson"
        log.write_text("".join(to_line(e) + "\n" for e in iter_events(ledger._open()[0])))
        result = CliRunner().invoke(cli, ["replay", str(log)], obj={})
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["refunds"] == json.loads(json.dumps(ledger.read_models()["refunds"]))
    for record in map(json.loads, log.read_text().splitlines()):  # the bound still holds past what rules decide
        if record.get("refund_deadline"):
            record["refund_deadline"] = "3099-01-01T00:00:00Z"
            edited = tmp_path / "edited.ndjson"
            edited.write_text(json.dumps(record) + "\n")
            result = _replay(edited)
            assert (result.exit_code, result.stderr) == (2, "leadledger: error[invalid_log]: line 1: refund_deadline: "
                                                         "3099-01-01T00:00:00Z is outside 1970..3020\n")
            break
    else:
        raise AssertionError("no QuoteSent in the log")


def test_replay_names_the_lines_the_read_models_refuse(tmp_path):
    """Values each fine, the log still not one a ledger records: a second wallet
    for the same pro (another aggregate). Said, not retried forever."""
    records = _demo_log(tmp_path)
    opened = next(r for r in records if r["type"] == "WalletOpened")
    records.append({**opened, "originator_id": "0b5e8a3c-6f1e-4a8e-9a51-3d1c0e5b7f21"})
    log = tmp_path / "edited.ndjson"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _replay(log)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"leadledger: error[invalid_log]: not a log the ledger records: the read "
                                    f"models cannot take the events at positions 1..{len(records)} (UNIQUE "
                                    "constraint failed: ll_wallets.pro_id) (positions: the file's event lines"), \
        result.stderr


def test_statement_running_balance_and_period(ledger):
    busy(ledger)
    rows = ledger.statement("p1")
    wallet_rows = [r for r in rows if r["account"] == "pro:p1:wallet"]
    assert [r["line"] for r in wallet_rows] == ["opening", *["posting"] * 5, "closing"]
    assert [r["running_balance"] for r in wallet_rows] == [0, 10000, 8500, 6000, 7500, 8200, 8200]
    assert [r["account"] for r in rows] == sorted((r["account"] for r in rows), key=lambda a: (
        ("wallet", "advance", "card").index(a.rsplit(":", 1)[1]), a))  # sections: wallet first
    later = ledger.statement("p1", start=when(at(2)))
    later_wallet = [r for r in later if r["account"] == "pro:p1:wallet"]
    assert [r["running_balance"] for r in later_wallet] == [8500, 6000, 7500, 8200, 8200]  # opens at 85.00
    assert later_wallet[-1]["debit"] == sum(r["debit"] for r in later_wallet[1:-1])
    card = [r for r in later if r["account"] == "pro:p1:card"]
    assert [r["event_type"] for r in card] == [None, "CallMinutesBilled", None]
    early = ledger.statement("p1", end=when(at(0, 2)))
    assert [r["running_balance"] for r in early] == [0, 10000, 10000]


def test_an_account_filter_that_names_no_account_is_refused(ledger):
    """A typo in --account (platfrom:cash, platform:rev, walet, another pro's wallet
    in a statement) matched nothing and printed an empty book with exit 0: it is
    unknown_account now (exit 1, as a pro without a wallet). Every account and every
    node above accounts still filters (a pro id may hold ':', so pro:... is open)."""
    from leadledger.errors import Rejection

    busy(ledger)
    for account in ("nonsense", "platfrom:cash", "platform:rev", "platform:cash:", "pro:", "Platform"):
        with pytest.raises(Rejection) as refused:
            ledger.trial_balance(account=account)
        assert refused.value.code == "unknown_account", account
    for account, found in (("platform", True), ("platform:revenue", True), ("platform:cash", True),
                           ("pro", True), ("pro:p1", True), ("pro:p1:wallet", True), ("pro:nobody", False)):
        assert bool(ledger.trial_balance(account=account)) is found, account
    for account in ("walet", "pro:p2:wallet", "platform:cash", "pro:p1:cash", "pro:p"):
        with pytest.raises(Rejection) as refused:
            ledger.statement("p1", account=account)
        assert refused.value.code == "unknown_account", account
    for account in ("wallet", "card", "pro", "pro:p1", "pro:p1:advance"):
        ledger.statement("p1", account=account)
    result = CliRunner().invoke(cli, ["--db", ledger.config.url, "trial-balance", "--account", "platfrom:cash"],
                                obj={})
    assert (result.exit_code, result.stderr.startswith("leadledger: error[unknown_account]: account: "
                                                       "'platfrom:cash' is no account of the chart")) == (1, True)


def test_statement_of_unknown_pro_is_an_error(store_url):
    assert CliRunner().invoke(cli, ["--db", store_url, "init"], obj={}).exit_code == 0
    result = CliRunner().invoke(cli, ["--db", store_url, "statement", "nobody"], obj={})
    assert result.exit_code == 1 and result.stderr.startswith("leadledger: error[wallet_not_found]"), result.output


@pytest.mark.skipif(shutil.which("bean-check") is None and not Path(
    __import__("sys").executable).with_name("bean-check").exists(), reason="beancount not installed")
def test_beancount_export_passes_bean_check(ledger, tmp_path):
    import sys

    busy(ledger)
    ok(ledger.append(DEMO[:-1]))
    path = tmp_path / "ledger.beancount"
    path.write_text("".join(line + "\n" for line in ledger.export_beancount()))
    bean_check = str(Path(sys.executable).with_name("bean-check"))
    checked = subprocess.run([bean_check, str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check is not vacuous: an unbalanced transaction is refused.
    broken = path.read_text().replace("  Assets:Platform:Cash  100.00 USD", "  Assets:Platform:Cash  100.01 USD", 1)
    assert broken != path.read_text()
    path.write_text(broken)
    assert subprocess.run([bean_check, str(path)], capture_output=True).returncode != 0


def test_a_pro_id_mimicking_anothers_escaped_account_gets_accounts_of_its_own(ledger, tmp_path):
    """The export writes a pro id Beancount cannot take (`acme_es`) as its cleaned form plus
    a digest. A pro id spelled as that very component (`acme-es-` and the digest's first 8
    hex, before 0.6.6) was written as itself: both pros' postings went to one account, the
    accountants' books merging two pros. Every id now maps to a name of its own."""
    import hashlib

    from leadledger.projections.beancount import account_name

    victim = "acme_es"
    mimics = [f"acme-es-{hashlib.sha256(victim.encode()).hexdigest()[:n]}" for n in (8, 16)]
    ok(ledger.append([wallet(p) for p in (victim, *mimics)] + [buy(victim, 1000)]
                     + [buy(p, 7) for p in mimics]))
    names = {p: account_name(f"pro:{p}:wallet") for p in (victim, *mimics, "acme-es", "pro-ana")}
    assert len(set(names.values())) == len(names), names
    assert names["pro-ana"] == "Liabilities:Pro:P-pro-ana:Wallet"  # a clean id reads as itself
    text = "".join(line + "\n" for line in ledger.export_beancount())
    for pro in (victim, *mimics):
        assert text.count(f"open {names[pro]}\n") == 1, pro
    if (bean_check := Path(sys.executable).with_name("bean-check")).exists():
        path = tmp_path / "ledger.beancount"
        path.write_text(text)
        checked = subprocess.run([str(bean_check), str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_follower_keeps_the_view_up_to_date_without_catch_up(store_url):
    from leadledger.projections import queries

    from leadledger.errors import LedgerError

    with Ledger.from_url(store_url) as writer, Ledger.from_url(store_url) as reader:
        ok(writer.append([wallet("p1"), buy("p1", 100)]))
        if store_url.startswith("sqlite"):
            with pytest.raises(LedgerError, match="follow needs PostgreSQL"):
                reader.follower()
            return
        with reader.follower() as runner:
            ok(writer.append([buy("p1", 23, at(0, 2))]))
            app, view = writer._open()
            runner.wait(app.recorder.max_notification_id(), timeout=20)
            rows = queries.balances(reader._open()[1])  # straight from the view: no catch-up
        assert [r["balance"] for r in rows] == [123]


def test_concurrent_catch_ups_project_each_event_once(store_url):
    import threading

    with Ledger.from_url(store_url) as writer:
        busy(writer)
        ok(writer.append([buy("p1", 1, at(5, 0, i)) for i in range(300)]))
    readers = [Ledger.from_url(store_url) for _ in range(3)]
    errors: list[BaseException] = []

    def catch_up(ledger):
        try:
            ledger.catch_up()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=catch_up, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for reader in readers:
        reader.close()
    with Ledger.from_url(store_url) as ledger:
        assert all(c.ok for c in ledger.verify()), [c.to_json() for c in ledger.verify()]
        [row] = [b for b in ledger.balances() if b["pro_id"] == "p1"]
        assert row["balance"] == 8200 + 300
