"""Compacted wallets (issue 9: a writer's memory follows recent activity, not the
log's length). A warm wallet drops the balance changes and contacts' money from
before its horizon; a submission that needs them has the wallet read again whole
from the log first, so every decision is the one a wallet holding its whole
history takes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadledger import Ledger
from leadledger.errors import LedgerError
from leadledger.aggregates import ContactMoney, wallet_id
from leadledger.store import SNAPSHOTS_TABLE

from tests.helpers import at, bare_wallet, buy, card, ok, quote, sub, wallet

BASE = datetime(2025, 1, 1, tzinfo=timezone.utc)


class _Sent:
    def __init__(self, contact_id: str, sent_at: datetime):
        self.contact_id, self.sent_at = contact_id, sent_at


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-50, 100), st.integers(-20, 20)), max_size=60),
       st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6)), max_size=20),
       st.integers(0, 45), st.lists(st.integers(-1, 41), min_size=1, max_size=6))
def test_a_compacted_wallet_answers_as_the_whole_one_from_its_horizon_on(moves, charges, keep_days, instants):
    whole, compacted = bare_wallet(), bare_wallet()
    for sequence, (day, balance_delta, advance_delta) in enumerate(moves):
        if whole.balance + balance_delta < 0 or whole.advance_outstanding + advance_delta < 0:
            continue  # the rules never record these
        moment = BASE + timedelta(days=day, microseconds=sequence % 3)
        for w in (whole, compacted):
            w._move(moment, balance_delta, advance_delta)
    sent = {}
    for number, (day, span) in enumerate(charges):
        contact_id = f"c{number}"
        sent[contact_id] = BASE + timedelta(days=day)
        packed = ContactMoney(((sent[contact_id] + timedelta(days=span), 10, 5),)).pack()
        whole.contacts[contact_id] = compacted.contacts[contact_id] = packed
    dropped = compacted.compact(timedelta(days=keep_days))
    assert dropped == (compacted.horizon_us is not None)
    assert (compacted.balance, compacted.advance_outstanding) == (whole.balance, whole.advance_outstanding)
    for day in instants:
        moment = BASE + timedelta(days=day, hours=1)
        if compacted.covers(moment):
            assert compacted.position_at(moment) == whole.position_at(moment)
        else:
            with pytest.raises(AssertionError, match="load it whole"):
                compacted.position_at(moment)
    for contact_id, sent_at in sent.items():
        contact = _Sent(contact_id, sent_at)
        if compacted.covers(sent_at):
            assert compacted.money(contact) == whole.money(contact)
        else:
            with pytest.raises(AssertionError, match="load it whole"):
                compacted.money(contact)
    if compacted.horizon_us is not None:  # compacting again from the same facts drops nothing more
        assert not compacted.compact(timedelta(days=keep_days))


def _script() -> list[dict]:
    """A month of one pro's quotes, then submissions that reach back before a
    two-day horizon: late charges (one that would overdraw a later balance),
    replies to guaranteed quotes of the first days, refunds of old contacts."""
    subs = [wallet("p1"), card("p1", at(0, 0, 1)), buy("p1", 100_000, at(0, 1))]
    subs += [quote(f"c{d}", "p1", at(d, 2), commission=1000) for d in range(30)]
    subs += [quote(f"g{d}", "p1", at(d, 3), pricing="guaranteed_reply", commission=700) for d in range(10)]
    subs += [
        quote("late-over", "p1", at(3, 5), commission=75_000),  # below a later balance: refused
        quote("late-fits", "p1", at(3, 6), commission=5_000),
        buy("p1", 1_000, at(2, 7)),
        sub("CustomerReplied", at(30, 1), contact_id="g1", channel="message"),
        sub("CustomerReplied", at(30, 2), contact_id="g1", channel="message"),  # charged once
        sub("RefundRequested", at(15, 1), contact_id="c2", reason="wrong_contact_info"),
        sub("RefundRequested", at(16, 1), contact_id="c2", reason="wrong_contact_info"),  # already refunded
        sub("ServiceConfirmed", at(17, 1), contact_id="c4"),
        sub("RefundRequested", at(18, 1), contact_id="c4", reason="wrong_contact_info"),  # confirmed
        sub("RefundRectified", at(19, 1), contact_id="c2"),
        quote("c-new", "p1", at(31), commission=1000),
        sub("RefundRequested", at(31, 1), contact_id="c-new", reason="wrong_contact_info"),
    ]
    return subs


def test_decisions_on_compacted_wallets_are_those_of_whole_ones(store_url, tmp_path):
    subs = _script()
    with Ledger.from_url(f"sqlite:///{tmp_path}/whole.db", wallet_horizon=None) as whole:
        expected = [r.to_json() for r in whole.append(subs)]
        expected_events = list(whole.events())
        expected_balances = whole.balances()
    assert {r["code"] for r in expected} >= {None, "insufficient_funds", "already_refunded", "service_confirmed"}

    got, compacted, loaded_whole, snapshot_horizons = [], 0, 0, []
    for start in range(0, len(subs), 9):  # a cold process every 9 submissions: snapshots used
        with Ledger.from_url(store_url, wallet_horizon=timedelta(days=2)) as ledger:
            ledger.compact_every = 1
            for small in range(start, min(start + 9, len(subs)), 3):  # warm between calls
                got += [r.to_json() for r in ledger.append(subs[small:small + 3])]
            compacted += ledger.wallets_compacted
            loaded_whole += ledger.wallets_loaded_whole
            app, _ = ledger._open()
            with app.factory.datastore.transaction(commit=False) as curs:
                curs.execute(f"SELECT state FROM {SNAPSHOTS_TABLE}")
                snapshot_horizons += [orjson.loads(bytes(row["state"]))["horizon_us"] for row in curs.fetchall()]
    assert got == expected
    with Ledger.from_url(store_url) as ledger:
        assert list(ledger.events()) == expected_events
        assert ledger.balances() == expected_balances
        assert all(c.ok for c in ledger.verify())
    assert compacted and loaded_whole  # the mechanism ran, both ways
    assert any(h is not None for h in snapshot_horizons)  # and a compacted wallet was snapshotted


def test_a_long_lived_wallet_keeps_only_its_recent_history_in_memory(tmp_path):
    days = 400
    subs = [wallet("p1"), buy("p1", 10**9, at(0, 1))]
    subs += [quote(f"c{d}", "p1", at(d, 2), commission=100) for d in range(days)]
    held = {}
    for horizon in (None, timedelta(days=30)):
        with Ledger.from_url(f"sqlite:///{tmp_path}/{horizon is None}.db", wallet_horizon=horizon,
                             clock=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc)) as ledger:
            for start in range(0, len(subs), 50):
                ok(ledger.append(subs[start:start + 50]))
            w = ledger._warm[wallet_id("p1")]
            held[horizon] = (len(w.contacts), len(w._times_us))
            assert ledger.balances()[0]["balance"] == 10**9 - 100 * days == w.balance
    assert held[None] == (days, days + 1)
    contacts, changes = held[timedelta(days=30)]
    # 30 days of one quote a day, plus at most the events gained between compactions
    assert 30 <= contacts <= 31 + 64 and 30 <= changes <= 31 + 64


def test_a_snapshot_of_layout_2_is_read_as_a_whole_wallet(tmp_path):
    with Ledger.from_url(f"sqlite:///{tmp_path}/l.db") as ledger:
        ok(ledger.append([wallet("p1"), buy("p1", 5_000, at(0, 1)), quote("c1", "p1", at(1))]))
        app, _ = ledger._open()
        from leadledger import snapshots
        from leadledger.loader import load_many

        whole = load_many(app, [wallet_id("p1")])[wallet_id("p1")]
        state = orjson.loads(snapshots.encode(whole))
        state["layout"] = 2
        del state["horizon_us"]
        decoded = snapshots.decode(json.dumps(state).encode())
        assert decoded is not None and decoded.horizon_us is None
        assert vars(decoded) == vars(whole)


def test_the_horizon_comes_from_the_environment_or_is_refused_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from leadledger.application import WALLET_HORIZON
    from leadledger.cli.main import cli

    url = f"sqlite:///{tmp_path}/h.db"
    assert Ledger.from_url(url).wallet_horizon == WALLET_HORIZON == timedelta(days=120)
    for text, horizon in (("30", timedelta(days=30)), ("0", timedelta(0)), ("none", None)):
        monkeypatch.setenv("LEADLEDGER_WALLET_HORIZON_DAYS", text)
        assert Ledger.from_url(url).wallet_horizon == horizon
    assert Ledger.from_url(url, wallet_horizon=timedelta(days=3)).wallet_horizon == timedelta(days=3)
    for bad in (30, timedelta(days=-1), "30"):
        with pytest.raises(TypeError, match="wallet_horizon must be a timedelta"):
            Ledger.from_url(url, wallet_horizon=bad)
    for hostile in ("²", "9" * 5000, "36601", " 1e3", "30.5"):
        monkeypatch.setenv("LEADLEDGER_WALLET_HORIZON_DAYS", hostile)
        with pytest.raises(LedgerError, match="bad_config|must be a whole number"):
            Ledger.from_url(url)
    monkeypatch.setenv("LEADLEDGER_WALLET_HORIZON_DAYS", " 45 ")
    assert Ledger.from_url(url).wallet_horizon == timedelta(days=45)
    monkeypatch.setenv("LEADLEDGER_WALLET_HORIZON_DAYS", "-5")
    result = CliRunner().invoke(cli, ["--db", url, "append", "-"], input=json.dumps(wallet("p1")) + "\n")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "leadledger: error[bad_config]: LEADLEDGER_WALLET_HORIZON_DAYS='-5' must be a whole number "
        "of days 0..36600, or none"]
    monkeypatch.delenv("LEADLEDGER_WALLET_HORIZON_DAYS")
    with Ledger.from_url(url) as ledger:
        assert ledger.balances() == []  # nothing was recorded
