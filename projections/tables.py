"""Read-model tables. Portable DDL: the same text runs on SQLite and PostgreSQL.

Times are fixed-width UTC text (``2026-01-02T03:04:05.000000Z``), so lexical
order is time order on both stores and ``--as-of`` filters use the indexes.
"""

from leadledger.projections.checkpoints import CHECKPOINT_DDL, CHECKPOINT_TABLES

# Every row of these carries the log position of the event that made it, so a
# report can judge exactly the log prefix up to a position while appends go on
# (verify). A store whose tables lack it predates this layout: its read models
# are dropped and projected again (they are derived data; the log is untouched).
# Checkpoints sum many events, so they carry no position (see checkpoints.py).
POSITIONED_TABLES = ("ll_wallets", "ll_contacts", "ll_contact_facts", "ll_postings")
READ_MODEL_TABLES = (*POSITIONED_TABLES, *CHECKPOINT_TABLES)
LAYOUT_MARKER = ("ll_postings", "ref")  # 0.3: market, reason, ref on postings

READ_MODEL_DDL = (
    "CREATE TABLE IF NOT EXISTS ll_wallets ("
    " pro_id TEXT PRIMARY KEY, market TEXT NOT NULL, unit TEXT NOT NULL,"
    " card_currency TEXT NOT NULL, region TEXT NOT NULL, policy_version INTEGER NOT NULL,"
    " opened_at TEXT NOT NULL, position BIGINT NOT NULL, card_ref TEXT)",
    "CREATE TABLE IF NOT EXISTS ll_contacts ("
    " contact_id TEXT PRIMARY KEY, pro_id TEXT NOT NULL, market TEXT NOT NULL,"
    " pricing TEXT NOT NULL, management_fee BIGINT NOT NULL, sent_at TEXT NOT NULL,"
    " refund_deadline TEXT NOT NULL, unread_refund_due TEXT, first_seen_at TEXT,"
    " position BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ll_contacts_pro ON ll_contacts (pro_id, contact_id)",
    "CREATE INDEX IF NOT EXISTS ll_contacts_unread ON ll_contacts (unread_refund_due)",
    "CREATE TABLE IF NOT EXISTS ll_contact_facts ("
    " position BIGINT NOT NULL, seq INTEGER NOT NULL, contact_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, occurred_at TEXT NOT NULL, amount BIGINT NOT NULL,"
    " refundable BIGINT NOT NULL, PRIMARY KEY (position, seq))",
    "CREATE INDEX IF NOT EXISTS ll_contact_facts_contact"
    " ON ll_contact_facts (contact_id, occurred_at)",
    "CREATE TABLE IF NOT EXISTS ll_postings ("
    " position BIGINT NOT NULL, seq INTEGER NOT NULL, occurred_at TEXT NOT NULL,"
    " event_type TEXT NOT NULL, event_id TEXT NOT NULL, pro_id TEXT, contact_id TEXT,"
    " kind TEXT NOT NULL, account TEXT NOT NULL, unit TEXT NOT NULL,"
    " debit BIGINT NOT NULL, credit BIGINT NOT NULL, market TEXT, reason TEXT, ref TEXT,"
    " PRIMARY KEY (position, seq))",
    "CREATE INDEX IF NOT EXISTS ll_postings_pro ON ll_postings (pro_id, occurred_at)",
    "CREATE INDEX IF NOT EXISTS ll_postings_account ON ll_postings (account, unit, occurred_at)",
    "CREATE INDEX IF NOT EXISTS ll_postings_time ON ll_postings (occurred_at)",
    *CHECKPOINT_DDL,
)

# PostgreSQL compares and sorts text by the database's collation, SQLite byte by
# byte (BINARY). Under a linguistic collation (en_US.UTF-8, ICU) "alpha" sorts
# before "Bravo" and "pro_1" before "pro-1" on PostgreSQL and after them on SQLite,
# so reports would list pros, contacts and accounts in another order, and
# occurred_at ranges would rest on the locale's rules. Every read-model text
# column is "C" there: byte order on both stores, whatever the server's locale
# (and memcmp instead of strcoll for the indexes' upkeep). SQLite has no
# collation named "C": its DDL stays as written.
BYTE_ORDER_MARKER = ("ll_postings", "occurred_at")  # 0.6.2: text in byte order on PostgreSQL


def in_byte_order(statement: str) -> str:
    """A read-model statement for PostgreSQL: its TEXT columns collated "C"."""
    return statement.replace(" TEXT", ' TEXT COLLATE "C"')


POSTGRES_READ_MODEL_DDL = tuple(in_byte_order(statement) for statement in READ_MODEL_DDL)


def read_model_ddl(kind: str) -> tuple[str, ...]:
    return READ_MODEL_DDL if kind == "sqlite" else POSTGRES_READ_MODEL_DDL


# Secondary indexes: a rebuild drops them, fills the tables, and creates them
# again (one sort each instead of a B-tree insert per row).
SECONDARY_INDEXES = tuple((statement.split()[5], statement) for statement in READ_MODEL_DDL
                          if statement.startswith("CREATE INDEX"))

# The secondary indexes a first catch-up of a backlog drops while it fills empty read
# models, and creates again at its end (projections/view.py, SQLite): every one but
# those its own queries read (checkpoints.record reads the postings by time in every
# batch: without that index each batch would scan them all).
READ_BY_A_CATCH_UP = frozenset({"ll_postings_time"})
DROPPED_FOR_A_FIRST_BACKLOG = tuple((name, create) for name, create in SECONDARY_INDEXES
                                    if name not in READ_BY_A_CATCH_UP)
