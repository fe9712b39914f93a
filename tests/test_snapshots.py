"""Wallet snapshots (issue 9): a cold process loads a wallet from its latest
snapshot plus the events after it, and decides exactly as a full replay would."""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadledger import Ledger, snapshots
from leadledger.aggregates import WalletPosition, wallet_id
from leadledger.loader import load_many
from leadledger.snapshots import SNAPSHOT_EVERY
from leadledger.store import SNAPSHOTS_TABLE

from tests.helpers import at, bare_wallet, buy, ok, quote, sub, wallet


def _history(pro: str, count: int) -> list[dict]:
    """A wallet with ``count`` charged quotes (one event each on the wallet)."""
    subs = [wallet(pro), buy(pro, 10**9, t=at(0, 1))]
    subs += [quote(f"{pro}-c{i}", pro, at(1, minutes=i), commission=100 + i) for i in range(count)]
    return subs


def _snapshot_rows(ledger: Ledger) -> dict[str, int]:
    app, _ = ledger._open()
    with app.factory.datastore.transaction(commit=False) as curs:
        curs.execute(f"SELECT originator_id, originator_version FROM {SNAPSHOTS_TABLE}")
        return {str(row["originator_id"]).replace("-", ""): row["originator_version"] for row in curs.fetchall()}


def _full_replay(ledger: Ledger, pro: str):
    app, _ = ledger._open()
    return app.repository.get(wallet_id(pro))  # eventsourcing's own: every event, no snapshot


def test_a_snapshot_is_written_then_used_and_equals_a_full_replay(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append(_history("p1", SNAPSHOT_EVERY + 5)))
        rows = _snapshot_rows(ledger)
        assert rows.get(wallet_id("p1").hex) == SNAPSHOT_EVERY + 7  # opened, bought, the charges
    with Ledger.from_url(store_url) as ledger:  # a cold process
        ok(ledger.append([quote("p1-late", "p1", at(2), commission=5)]))
        # The append itself loaded p1 from its snapshot (as of that version)
        assert ledger._snapshot_versions[wallet_id("p1")] == SNAPSHOT_EVERY + 7
        app, _ = ledger._open()
        stats: dict[str, int] = {}
        loaded = load_many(app, [wallet_id("p1")], stats=stats)[wallet_id("p1")]
        assert stats == {"snapshots": 1, "events": 1}  # the snapshot and the one charge after it
        assert vars(loaded) == vars(_full_replay(ledger, "p1"))


def test_a_late_event_after_the_snapshot_is_judged_as_a_replay_would(store_url):
    """The snapshot holds the timeline up to its version; an event recorded later
    with an earlier occurred_at (a late refund, a late charge) changes what the
    past looks like, and the next decision must see it."""
    with Ledger.from_url(store_url) as ledger:
        subs = [wallet("p1"), buy("p1", 100 * (SNAPSHOT_EVERY + 2), t=at(0, 1))]
        subs += [quote(f"c{i}", "p1", at(1, minutes=i), commission=100) for i in range(SNAPSHOT_EVERY)]
        ok(ledger.append(subs))
        assert _snapshot_rows(ledger)  # written at the end of the call
    with Ledger.from_url(store_url) as ledger:
        # Late: occurred before most of the charges, recorded after the snapshot.
        ok(ledger.append([quote("late", "p1", at(0, 2), commission=100)]))
    with Ledger.from_url(store_url) as ledger:
        # 3,400 bought, 32 charges and the late one: 100 left, not 200. A wallet
        # read from the snapshot alone would accept this charge of 200.
        results = ledger.append([quote("over", "p1", at(0, 3), commission=200)])
        assert results[0].status == "rejected" and results[0].code == "insufficient_funds", results
        app, _ = ledger._open()
        stats: dict[str, int] = {}
        loaded = load_many(app, [wallet_id("p1")], stats=stats)[wallet_id("p1")]
        assert stats["snapshots"] == 1
        assert vars(loaded) == vars(_full_replay(ledger, "p1"))
        assert loaded.balance == 100


def test_a_snapshot_that_outlived_its_log_is_ignored(store_url, tmp_path):
    """A snapshot whose last event is not the stored one (a store reset by hand
    and refilled, events restored without their snapshots...) is never trusted:
    here a snapshot of the same wallet, same version, from another store."""
    with Ledger.from_url(f"sqlite:///{tmp_path}/other.db") as other:
        ok(other.append(_history("p1", SNAPSHOT_EVERY)))
        app, _ = other._open()
        with app.factory.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT state FROM {SNAPSHOTS_TABLE}")
            foreign = bytes(curs.fetchall()[0]["state"])
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append(_history("p1", SNAPSHOT_EVERY)))
        app, _ = ledger._open()
        mark = "?" if store_url.startswith("sqlite") else "%s"
        with app.factory.datastore.transaction(commit=True) as curs:
            curs.execute(f"UPDATE {SNAPSHOTS_TABLE} SET state = {mark}", (foreign,))
        stats: dict[str, int] = {}
        loaded = load_many(app, [wallet_id("p1")], stats=stats)[wallet_id("p1")]
        assert stats["snapshots"] == 0
        assert vars(loaded) == vars(_full_replay(ledger, "p1"))


def test_snapshots_do_not_change_what_is_recorded(tmp_path):
    """The same submissions in many small calls (snapshots written and read
    between them) and in one call record the same log."""
    subs = _history("p1", 3 * SNAPSHOT_EVERY) + [
        sub("RefundRequested", at(3), contact_id="p1-c5", reason="wrong_contact_info")]
    with Ledger.from_url(f"sqlite:///{tmp_path}/one.db") as one, \
            Ledger.from_url(f"sqlite:///{tmp_path}/many.db") as many:
        one_results = [r.to_json() for r in one.append(subs)]
        many_results = []
        for start in range(0, len(subs), 7):
            with Ledger.from_url(f"sqlite:///{tmp_path}/many.db") as cold:
                many_results += [r.to_json() for r in cold.append(subs[start:start + 7])]
        assert many_results == one_results
        assert list(many.events()) == list(one.events())
        assert many.balances() == one.balances()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-50, 100), st.integers(-20, 20)), max_size=60),
       st.lists(st.integers(-1, 41), min_size=1, max_size=5))
def test_the_wallet_timeline_answers_as_the_ordered_list_it_replaced(moves, instants):
    """The timeline is three arrays of integers (memory: issue 9); a position at
    any instant is what the list of (time, order recorded, deltas) tuples it
    replaced gave, equal times in the order recorded included."""
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    wallet = bare_wallet()
    reference: list[tuple[datetime, int, int, int]] = []
    for sequence, (minute, balance_delta, advance_delta) in enumerate(moves):
        if wallet.balance + balance_delta < 0 or wallet.advance_outstanding + advance_delta < 0:
            continue  # the rules never record these
        moment = base + timedelta(minutes=minute, microseconds=sequence % 3)
        wallet._move(moment, balance_delta, advance_delta)
        bisect.insort(reference, (moment, sequence, balance_delta, advance_delta))
    for minute in instants:
        moment = base + timedelta(minutes=minute, microseconds=1)
        later = [entry for entry in reference if entry[0] > moment]
        balance = wallet.balance - sum(e[2] for e in later)
        advance = wallet.advance_outstanding - sum(e[3] for e in later)
        running = [balance + sum(e[2] for e in later[:i + 1]) for i in range(len(later))]
        advances = [advance + sum(e[3] for e in later[:i + 1]) for i in range(len(later))]
        assert wallet.position_at(moment) == WalletPosition(
            balance, min([balance, *running]), advance, max([advance, *advances]), min([advance, *advances]))
    assert list(wallet._balance_deltas) == [e[2] for e in reference]


def test_a_snapshot_of_an_older_layout_is_replayed_instead(store_url):
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append(_history("p1", SNAPSHOT_EVERY + 5)))
        app, _ = ledger._open()
        wallet = load_many(app, [wallet_id("p1")])[wallet_id("p1")]
        older = orjson.loads(snapshots.encode(wallet))
        older["layout"] = 1  # before the oldest layout this code reads
        assert snapshots.decode(orjson.dumps(older)) is None
        assert vars(snapshots.decode(snapshots.encode(wallet))) == vars(_full_replay(ledger, "p1"))


def test_snapshots_are_written_and_read_a_page_at_a_time(store_url, monkeypatch):
    """Memory: a page of wallets is encoded (or decoded) per statement; every page
    is written and read, the last partial one included."""
    monkeypatch.setattr(snapshots, "PAGE_WALLETS", 2)
    pros = [f"p{i}" for i in range(5)]
    with Ledger.from_url(store_url) as ledger:
        ok(ledger.append([s for pro in pros for s in _history(pro, SNAPSHOT_EVERY)]))
        rows = _snapshot_rows(ledger)
        assert {wallet_id(pro).hex for pro in pros} <= set(rows)
        app, _ = ledger._open()
        stats: dict[str, int] = {}
        loaded = load_many(app, [wallet_id(pro) for pro in pros], stats=stats)
        assert stats == {"snapshots": 5, "events": 0}
        for pro in pros:
            assert vars(loaded[wallet_id(pro)]) == vars(_full_replay(ledger, pro))
