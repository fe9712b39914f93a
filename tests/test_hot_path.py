"""The hot path's shortcuts say exactly what the slow paths they replace said.

Each fast path (issue 9) is checked against the code it stands in for, on
generated input: stored event bytes, idempotency digests, identifier checks,
time formatting; and the CLI's start-up is checked for what it must not load.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from leadledger.application import DateAsISO
from leadledger.codec import FastJSONTranscoder
from leadledger.submissions import check_identifier, parse_submission
from leadledger import submissions
from leadledger.timefmt import format_utc

AWARE = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2998, 12, 31),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5)),
                                                timezone(timedelta(hours=5, minutes=30))]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(), AWARE,
                    st.floats(allow_nan=False), st.integers(),
                    st.dates(), st.uuids())
STATES = st.dictionaries(st.text(), st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.text(), inner, max_size=3)), max_leaves=8),
    max_size=12)


def _transcoders() -> tuple[JSONTranscoder, FastJSONTranscoder]:
    slow, fast = JSONTranscoder(), FastJSONTranscoder()
    for transcoder in (slow, fast):
        for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr(), DateAsISO()):
            transcoder.register(transcoding)
    return slow, fast


@settings(max_examples=300, deadline=None)
@given(STATES)
def test_stored_event_bytes_are_eventsourcings_own(state):
    slow, fast = _transcoders()
    try:
        expected = slow.encode(state)
    except UnicodeEncodeError:  # lone surrogates: neither may store them
        return
    assert fast.encode(state) == expected
    assert fast.decode(expected) == slow.decode(expected)


def test_the_fast_transcoder_falls_back_where_orjson_cannot():
    slow, fast = _transcoders()
    state = {"amount": 10**30, "when": datetime(2026, 1, 5, tzinfo=timezone.utc)}
    assert fast.encode(state) == slow.encode(state)
    assert fast.decode(fast.encode(state)) == state


def _old_canonical(model) -> str:
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


IDENTIFIER = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(IDENTIFIER, IDENTIFIER, st.integers(1, 10**12))
def test_idempotency_digests_match_the_stored_ones(pro_id, ref, amount):
    line = json.dumps({"type": "CreditsPurchased", "event_id": "7e0d4b4e-8c39-4c6e-9a34-0d4f5f6a7b8c",
                       "occurred_at": "2026-01-05T09:00:00Z", "pro_id": pro_id, "amount": amount,
                       "payment_ref": ref})
    try:
        model = parse_submission(line)
    except Exception:  # noqa: BLE001 - refused ids have no digest
        return
    assert submissions.canonical_content(model) == _old_canonical(model)


def _old_check_identifier(value: str) -> str:
    import unicodedata

    value = unicodedata.normalize("NFC", value)
    if len(value) > submissions.MAX_IDENTIFIER_CHARS:
        raise ValueError("long")
    if value != value.strip():
        raise ValueError("space")
    for char in value:
        category = unicodedata.category(char)
        if category in submissions._FORBIDDEN_CATEGORIES or (category == "Zs" and char != " "):
            raise ValueError("char")
    return value


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(st.characters(max_codepoint=127), min_size=1, max_size=140), IDENTIFIER))
def test_the_ascii_identifier_shortcut_decides_as_the_full_check(value):
    try:
        expected = _old_check_identifier(value)
    except ValueError:
        expected = None
    try:
        got = check_identifier(value)
    except ValueError:
        got = None
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(AWARE)
def test_format_utc_is_the_strftime_text(moment):
    utc = moment.astimezone(timezone.utc)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    assert format_utc(moment) == utc.strftime(pattern)


@settings(max_examples=300, deadline=None)
@given(AWARE)
def test_sortable_utc_is_the_strftime_text(moment):
    from leadledger.timefmt import sortable_utc

    assert sortable_utc(moment) == moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=300, deadline=None)
@given(AWARE, st.uuids())
def test_stored_times_and_ids_read_as_the_event_objects_give_them(moment, event_id):
    """The catch-up and the rebuild read tagged values from the stored JSON
    (projections/stored.py) where eventsourcing's mapper built a datetime and a
    UUID: the same read-model text, whatever the offset the time was stored with."""
    from leadledger.projections.stored import loads, sortable, uuid_text
    from leadledger.timefmt import sortable_utc

    slow, _ = _transcoders()
    stored = slow.encode({"occurred_at": moment, "utc": moment.astimezone(timezone.utc), "event_id": event_id})
    fields = loads(stored)
    assert sortable(fields["occurred_at"]) == sortable(fields["utc"]) == sortable_utc(moment) == sortable(moment)
    assert uuid_text(fields["event_id"]) == str(event_id) == uuid_text(event_id)


def test_help_starts_without_the_store_or_the_models():
    code = ("import sys\nfrom leadledger.cli.main import cli\n"
            "heavy = [m for m in ('psycopg', 'eventsourcing', 'pydantic', 'holidays', 'leadledger.application')"
            " if m in sys.modules]\nprint(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_sqlite_store_never_imports_psycopg(tmp_path):
    code = ("import sys\nfrom leadledger import Ledger\n"
            f"with Ledger.from_url('sqlite:///{tmp_path}/s.db') as ledger:\n"
            "    ledger.append([])\n    ledger.balances()\n"
            "print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_short_append_never_imports_the_progress_bar(tmp_path):
    """tqdm costs ~20 ms to import and set up: only work lasting past the bar's
    delay pays it (a pipe never does)."""
    line = json.dumps({"type": "WalletOpened", "event_id": "6f0e7a1e-33b4-4b0e-9d7e-0a5e0b6b7c01",
                       "occurred_at": "2026-01-01T00:00:00Z", "pro_id": "p1", "market": "pro360",
                       "region": "US-CA"})
    (tmp_path / "one.ndjson").write_text(line + "\n")
    code = ("import sys\nfrom leadledger.cli import app\nfrom leadledger.cli.main import cli\n"
            "sys.stderr.isatty = lambda: True\n"  # as on a terminal: the bar would be allowed
            f"try:\n    cli.main(['--db', 'sqlite:///{tmp_path}/s.db', 'append', '{tmp_path}/one.ndjson'])\n"
            "finally:\n    print('tqdm' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "False", out.stderr
    assert '"status": "recorded"' in out.stdout


def test_a_created_aggregate_is_the_one_eventsourcing_would_build():
    from eventsourcing.domain import Aggregate

    from leadledger.aggregates import Contact

    at = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    contact = Contact.send(UUID(int=7), at, contact_id="c1", pro_id="p1", request_id="r", customer_id="cu",
                           category="plumbing", job_date=date(2026, 1, 9), pricing="manual", commission=100,
                           management_fee=0, market="pro360", refund_deadline=at, unread_refund_due=None)
    event = contact.collect_events()[0]
    slow = Aggregate.Created.mutate(event, None)  # eventsourcing's generic path
    assert vars(slow) == {**vars(contact), "_pending_events": []}


@given(st.lists(st.one_of(st.sampled_from(["QuoteSent", "ContactFeeCharged", "CustomerTerminated"]),
                          st.text(max_size=12)), max_size=4))
def test_a_receipts_event_names_are_written_as_json_dumps_writes_them(names):
    from leadledger.recorders import _names_json

    assert _names_json(tuple(names)) == json.dumps(names)


def test_sqlite_connections_keep_their_prepared_statements(tmp_path):
    """eventsourcing opens SQLite connections with ``cached_statements=True``, a cache
    of one statement: each of a single append's eight statements was prepared again
    (ledger/sqlite_factory.py). SQLite asks the authorizer while it prepares a
    statement, not when it runs a prepared one again."""
    from leadledger import Ledger

    statements = (("SELECT position FROM leadledger_chain_head WHERE id = 1", ()),
                  ("SELECT count(*) FROM leadledger_receipts WHERE event_id = ?", ("x",)))
    with Ledger.from_url(f"sqlite:///{tmp_path}/cache.db") as ledger:
        app, _ = ledger._open()
        with app.factory.datastore.get_connection(commit=False) as conn:
            sqlite_conn = conn._sqlite_conn
            prepared: list[int] = []

            def count_prepares(action: int, *args: object) -> int:
                prepared.append(action)
                return 0  # SQLITE_OK

            sqlite_conn.set_authorizer(count_prepares)
            try:
                for round_ in range(4):  # alternating, as an append's statements do
                    if round_ == 3:
                        once = len(prepared)
                    for sql, parameters in statements:
                        sqlite_conn.execute(sql, parameters).fetchall()
            finally:
                sqlite_conn.set_authorizer(None)
    assert once > 0 and len(prepared) == once  # the last round prepared nothing


def test_sqlite_connections_checkpoint_the_log_every_10000_pages_and_bound_analyze(tmp_path):
    from leadledger import Ledger
    from leadledger.sqlite_factory import WAL_AUTOCHECKPOINT_PAGES

    assert WAL_AUTOCHECKPOINT_PAGES == 10_000
    with Ledger.from_url(f"sqlite:///{tmp_path}/wal.db") as ledger:
        app, _ = ledger._open()
        for commit in (False, True):  # readers and the writer alike
            with app.factory.datastore.get_connection(commit=commit) as conn:
                assert conn._sqlite_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
                assert conn._sqlite_conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                # ANALYZE reads at most 1,000 rows per index: its cost does not grow with the log.
                assert conn._sqlite_conn.execute("PRAGMA analysis_limit").fetchone()[0] == 1000


def test_a_postgresql_writer_keeps_to_the_connection_it_used_last():
    """psycopg_pool hands out the connection idle the longest: a writer's single
    calls took turns over every connection of the pool, each server process cold
    in turn (ledger/postgres_recorder.py, _MostRecentFirst). Now one call after
    another writes on one connection while the others stay idle in the pool."""
    from tests.conftest import PG_URL, require_postgres, reset_postgres
    from tests.helpers import buy, ok, quote, wallet

    from leadledger import Ledger

    require_postgres()
    reset_postgres()
    with Ledger.from_url(PG_URL) as ledger:
        app, _ = ledger._open()
        pool = app.factory.datastore.pool
        # The pool's connections opened and used, as a service's readers leave them.
        held = [pool.getconn() for _ in range(3)]
        for conn in held:
            pool.putconn(conn)
        ok(ledger.append([wallet("p"), buy("p", 100_000)]))
        used = []
        real = app.recorder.datastore.get_connection

        @contextlib.contextmanager
        def spy(*args, **kwargs):
            with real(*args, **kwargs) as conn:
                used.append(conn)
                yield conn

        app.recorder.datastore.get_connection = spy
        try:
            for n in range(12):
                ok(ledger.append([quote(f"c{n}", "p")]))
        finally:
            del app.recorder.datastore.get_connection
        assert len(used) >= 12
        assert len({id(conn) for conn in used}) == 1
        assert len(pool._pool) >= 3  # the others still there, idle


# Values for an event's fields by annotation: every class is built with them.
_TEXT = st.text(max_size=12)
_FIELD_VALUES = {
    "str": _TEXT, "str | None": st.none() | _TEXT,
    "int": st.integers(-2**70, 2**70), "int | None": st.none() | st.integers(-2**63, 2**63 - 1),
    "datetime": AWARE, "datetime | None": st.none() | AWARE, "date": st.dates(), "UUID": st.uuids(),
    "dict[str, str]": st.dictionaries(_TEXT, _TEXT, max_size=3),
    "dict[str, str] | None": st.none() | st.dictionaries(_TEXT, _TEXT, max_size=3),
    "list[str]": st.lists(_TEXT, max_size=3),
}
_GIVEN_BY_THE_AGGREGATE = {"originator_id", "originator_version", "timestamp"}


def _event_fields(event_class):
    import dataclasses

    return st.fixed_dictionaries({
        f.name: _FIELD_VALUES[f.type] for f in dataclasses.fields(event_class)
        if f.name not in _GIVEN_BY_THE_AGGREGATE and f.name != "originator_topic"
    })


@st.composite
def _events(draw):
    from leadledger.events import DOMAIN_EVENT_CLASSES, LedgerCreated, build

    event_class = draw(st.sampled_from(sorted(DOMAIN_EVENT_CLASSES.values(), key=lambda c: c.__name__)))
    fields = draw(_event_fields(event_class))
    if issubclass(event_class, LedgerCreated):
        fields["originator_topic"] = "leadledger.aggregates:Contact"
    originator_id, version = draw(st.uuids()), draw(st.integers(1, 2**40))
    return event_class, originator_id, version, fields, build(event_class, originator_id, version, dict(fields))


@settings(max_examples=400, deadline=None)
@given(_events())
def test_a_lean_built_event_is_the_one_its_dataclass_builds(drawn):
    event_class, originator_id, version, fields, lean = drawn
    slow = event_class(originator_id=originator_id, originator_version=version, timestamp=lean.timestamp, **fields)
    assert type(lean) is event_class
    assert list(vars(lean).items()) == list(vars(slow).items())  # the key order is the stored state's
    assert lean == slow
    assert lean.timestamp.tzinfo is not None


def test_a_lean_built_event_refuses_what_its_dataclass_refuses():
    import pytest

    from leadledger.events import QuoteRead, build

    with pytest.raises(TypeError, match="contact_id"):
        build(QuoteRead, UUID(int=1), 1, {"event_id": UUID(int=2), "occurred_at": datetime.now(timezone.utc)})
    with pytest.raises(TypeError):
        build(QuoteRead, "not-a-uuid", 1, {"event_id": UUID(int=2), "occurred_at": datetime.now(timezone.utc),
                                           "contact_id": "c"})


@settings(max_examples=400, deadline=None)
@given(_events())
def test_the_ledger_mapper_writes_the_bytes_eventsourcings_mapper_writes(drawn):
    from eventsourcing.persistence import Mapper

    from leadledger.codec import LedgerMapper

    slow, fast = _transcoders()
    event = drawn[-1]
    try:
        expected = Mapper(transcoder=slow).to_stored_event(event)
    except UnicodeEncodeError:  # lone surrogates: neither may store them
        return
    stored = LedgerMapper(transcoder=fast).to_stored_event(event)
    assert stored == expected
    assert type(stored.state) is bytes


def test_the_ledger_mapper_leaves_compressed_stores_to_eventsourcing():
    from eventsourcing.compressor import ZlibCompressor
    from eventsourcing.persistence import Mapper

    from leadledger.codec import LedgerMapper
    from leadledger.events import QuoteRead, build

    _, fast = _transcoders()
    event = build(QuoteRead, UUID(int=1), 3, {"event_id": UUID(int=2), "contact_id": "c",
                                              "occurred_at": datetime(2026, 1, 5, tzinfo=timezone.utc)})
    mapper = LedgerMapper(transcoder=fast, compressor=ZlibCompressor())
    assert not mapper._topics
    assert mapper.to_stored_event(event) == Mapper(transcoder=fast, compressor=ZlibCompressor()).to_stored_event(event)


def test_recorded_events_are_the_ones_eventsourcings_trigger_event_makes():
    from eventsourcing.domain import Aggregate

    from leadledger import events as ev
    from leadledger.aggregates import Wallet

    at = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    opening = dict(pro_id="p1", market="pro360", region="US-CA", policy_version=1, unit="USD_cents",
                   card_currency="USD")
    lean = Wallet.open(UUID(int=1), at, **opening)
    slow = Aggregate._create.__func__(Wallet, ev.WalletOpened, id=lean.id, event_id=UUID(int=1),
                                      occurred_at=at, **opening)
    for wallet in (lean, slow):
        record = (wallet.record if wallet is lean else
                  lambda cls, eid, when, **f: Aggregate.trigger_event(wallet, cls, event_id=eid, occurred_at=when,
                                                                      pro_id="p1", **f))
        record(ev.CreditsPurchased, UUID(int=2), at, amount=500, payment_ref="pay-1")
        record(ev.ContactFeeCharged, UUID(int=3), at + timedelta(minutes=1), contact_id="c1", commission=120,
               management_fee=0, paid_from="wallet", refundable=120)

    def without_times(wallet):
        state = {k: v for k, v in vars(wallet).items() if k not in ("_created_on", "_modified_on", "_pending_events")}
        events = [{k: v for k, v in vars(e).items() if k != "timestamp"} for e in wallet.pending_events]
        return state, events

    assert without_times(lean) == without_times(slow)
    assert lean.version == 3 and lean.modified_on == lean.pending_events[-1].timestamp


def test_the_ledger_mapper_hands_what_orjson_cannot_write_to_eventsourcing():
    from eventsourcing.persistence import Mapper

    from leadledger.codec import LedgerMapper, encode_event
    from leadledger.events import CreditsPurchased, build

    slow, fast = _transcoders()
    at = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for amount in (2**80, 1.5):  # past 64 bits; a float (events hold none): the transcoder's words
        event = build(CreditsPurchased, UUID(int=1), 2, {"event_id": UUID(int=2), "occurred_at": at,
                                                         "pro_id": "p", "amount": amount, "payment_ref": "r"})
        assert encode_event(vars(event), fast) is None
        assert LedgerMapper(transcoder=fast).to_stored_event(event) == Mapper(transcoder=slow).to_stored_event(event)
