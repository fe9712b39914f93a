"""The invariants of SPEC section 7, checked on a store.

Each check returns a list of problems (empty when it holds). Balances are
computed three independent ways: the read model (SQL over postings), the
aggregates (rebuilt from their own events) and a fold over the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable
from uuid import UUID

from leadledger import events as ev
from leadledger.commands import UNREAD_REFUND_REASON, sweep_event_id
from leadledger.markets import policy as market_policy
from leadledger.projections.stored import EVENT_TYPES
from leadledger.projections.tables import POSITIONED_TABLES
from leadledger.recorders import RECEIPTS_TABLE
from leadledger.store import EVENTS_TABLE, SQLITE_EVENTS_TABLE

MAX_PROBLEMS = 20  # a report lists the first ones, not thousands
LOG_CHECK = ("the log is whole and unaltered: every aggregate's versions run 1..n, the hash chain "
             "holds, every acknowledged submission's events are in it and every submission's events "
             "have its receipt")
REPLAY_CHECK = (6, "replaying the log into an empty store gives identical read models")  # --quick skips it


@dataclass
class Check:
    number: int
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.number, "name": self.name, "ok": self.ok,
                "problems": self.problems[:MAX_PROBLEMS]}


def log_is_whole(view: Any, events_table: str, top: int, *, sqlite: bool) -> list[str]:
    """Every aggregate's events are numbered 1..n with none missing (an event
    deleted from the middle of the log shows here, instead of crashing a replay)."""
    position = "rowid" if sqlite else "notification_id"
    rows = view.query(
        f"SELECT originator_id, COUNT(*) AS n, MIN(originator_version) AS low,"
        f" MAX(originator_version) AS high FROM {events_table} WHERE {position} <= ?"
        " GROUP BY originator_id HAVING COUNT(*) <> MAX(originator_version)"
        " OR MIN(originator_version) <> 1 ORDER BY originator_id LIMIT 20", [top])
    return [f"aggregate {r['originator_id']}: {int(r['n'])} events but versions "
            f"{int(r['low'])}..{int(r['high'])}: an event is missing" for r in rows]


RECEIPT_PAGE = 1000  # uncovered events read per query (the sweep's are passed over in Python)


def events_without_receipts(view: Any, top: int, *, sqlite: bool, after: int = 0) -> list[str]:
    """Every submission's events after ``after`` (the log a replay recorded, which
    has none) lie in the span its receipt names (receipts_problems checks the other
    way). A receipts table emptied, or dropped and made again, by hand shows here:
    without it a resent submission would be recorded twice. The sweep's refunds
    have no receipt (their event_id is derived from the contact)."""
    topics = list(EVENT_TYPES)
    marks = ", ".join("?" * len(topics))
    if sqlite:
        event_id = "json_extract(e.state, '$.event_id._data_')"
        select = (f"SELECT e.rowid AS position, e.topic, {event_id} AS event_id,"
                  " json_extract(e.state, '$.contact_id') AS contact_id, json_extract(e.state, '$.reason') AS reason"
                  f" FROM {SQLITE_EVENTS_TABLE} e WHERE e.rowid > ? AND e.rowid <= ? AND e.topic IN ({marks})"
                  f" AND NOT EXISTS (SELECT 1 FROM {RECEIPTS_TABLE} r WHERE r.event_id = {event_id} AND"
                  " (r.position IS NULL OR (e.rowid >= r.position AND e.rowid < r.position"
                  " + json_array_length(r.recorded)))) ORDER BY e.rowid LIMIT ?")
    else:
        select = ("SELECT e.notification_id AS position, e.topic, s.j->'event_id'->>'_data_' AS event_id,"
                  " s.j->>'contact_id' AS contact_id, s.j->>'reason' AS reason"
                  f" FROM {EVENTS_TABLE} e CROSS JOIN LATERAL (SELECT convert_from(e.state, 'UTF8')::jsonb AS j) s"
                  f" WHERE e.notification_id > ? AND e.notification_id <= ? AND e.topic IN ({marks})"
                  f" AND NOT EXISTS (SELECT 1 FROM {RECEIPTS_TABLE} r WHERE r.event_id ="
                  " (s.j->'event_id'->>'_data_')::uuid AND (r.position IS NULL OR (e.notification_id >="
                  " r.position AND e.notification_id < r.position + json_array_length(r.recorded::json))))"
                  " ORDER BY e.notification_id LIMIT ?")
    problems: list[str] = []
    while len(problems) < MAX_PROBLEMS:
        rows = view.query(select, [after, top, *topics, RECEIPT_PAGE])
        for row in rows:
            if not _swept(row):
                problems.append(f"position {int(row['position'])}: no receipt covers this event of submission "
                                f"{row['event_id']} (the receipts were emptied or made again by hand: a "
                                "resent submission would be recorded twice)")
        if len(rows) < RECEIPT_PAGE:
            break
        after = int(rows[-1]["position"])
    return problems[:MAX_PROBLEMS]


def _swept(row: dict[str, Any]) -> bool:
    if EVENT_TYPES.get(row["topic"]) != "QuoteFeeRefunded" or row["reason"] != UNREAD_REFUND_REASON:
        return False
    try:
        return UUID(row["event_id"]) == sweep_event_id(str(row["contact_id"]))
    except (TypeError, ValueError):
        return False


def rows_beyond_tracking(view: Any, tracking: Any) -> list[str]:
    """Read-model rows from log positions the views never reached. Rows and the
    tracking position commit together, so rows read before the position is read
    again can never legitimately be beyond it."""
    highest = {table: view.query(f"SELECT MAX(position) AS top FROM {table}")[0]["top"]
               for table in POSITIONED_TABLES}
    reached = tracking() or 0
    return [f"{table} holds rows from position {int(top)}, beyond the {reached} projected"
            for table, top in highest.items() if top is not None and int(top) > reached]


def trial_balance_zero(view: Any, top: int) -> list[str]:
    problems = [
        f"unit {r['unit']}: debits - credits = {int(r['diff'])}"
        for r in view.query("SELECT unit, CAST(SUM(debit) - SUM(credit) AS BIGINT) AS diff"
                            " FROM ll_postings WHERE position <= ? GROUP BY unit ORDER BY unit", [top])
        if int(r["diff"]) != 0
    ]
    problems += [
        f"event at position {r['position']} ({r['unit']}) is unbalanced by {int(r['diff'])}"
        for r in view.query("SELECT position, unit, CAST(SUM(debit) - SUM(credit) AS BIGINT) AS diff"
                            " FROM ll_postings WHERE position <= ? GROUP BY position, unit"
                            " HAVING SUM(debit) <> SUM(credit) ORDER BY position LIMIT 20", [top])
    ]
    return problems


def fold_balances(events: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Balances straight from the log, without the journal or the aggregates."""
    pros: dict[str, dict[str, int]] = {}

    def pro(pro_id: str) -> dict[str, int]:
        return pros.setdefault(pro_id, {"balance": 0, "advance_outstanding": 0, "card_charged": 0})

    for e in events:
        if isinstance(e, ev.WalletOpened):
            pro(e.pro_id)
        elif isinstance(e, (ev.CreditsPurchased, ev.QuoteFeeRefunded, ev.CourtesyCreditIssued)):
            pro(e.pro_id)["balance"] += e.amount
        elif isinstance(e, ev.CronosAdvanced):
            pro(e.pro_id)["balance"] += e.amount
            pro(e.pro_id)["advance_outstanding"] += e.amount
        elif isinstance(e, ev.AdvanceRepaid):
            pro(e.pro_id)["balance"] -= e.amount
            pro(e.pro_id)["advance_outstanding"] -= e.amount
        elif isinstance(e, ev.ContactFeeCharged):
            key = "balance" if e.paid_from == "wallet" else "card_charged"
            sign = -1 if key == "balance" else 1
            pro(e.pro_id)[key] += sign * (e.commission + e.management_fee)
        elif isinstance(e, ev.CallMinutesBilled):
            pro(e.pro_id)["card_charged"] += e.amount
    return pros


def balances_agree(projected: list[dict[str, Any]], folded: dict[str, dict[str, int]],
                   aggregates: dict[str, tuple[int, int]]) -> list[str]:
    problems = []
    by_pro = {r["pro_id"]: r for r in projected}
    for pro_id in sorted(set(by_pro) | set(folded)):
        row, fold = by_pro.get(pro_id), folded.get(pro_id)
        if row is None or fold is None:
            problems.append(f"{pro_id}: in the {'log' if row is None else 'read model'} only")
            continue
        for key in ("balance", "advance_outstanding", "card_charged"):
            if row[key] != fold[key]:
                problems.append(f"{pro_id}: {key} read model {row[key]} != log {fold[key]}")
        if pro_id in aggregates and aggregates[pro_id] != (fold["balance"], fold["advance_outstanding"]):
            problems.append(f"{pro_id}: aggregate (balance, advance) {aggregates[pro_id]} != log "
                            f"{(fold['balance'], fold['advance_outstanding'])}")
    return problems


def wallets_within_limits(view: Any, top: int) -> list[str]:
    """At every instant: wallet >= 0 and 0 <= advance <= the market's limit."""
    problems = []
    rows = view.query(
        "SELECT account, kind, MIN(running) AS lowest, MAX(running) AS highest FROM ("
        " SELECT account, kind, SUM(delta) OVER (PARTITION BY account ORDER BY occurred_at"
        "  ROWS UNBOUNDED PRECEDING) AS running FROM ("
        "  SELECT account, kind, occurred_at, SUM(CASE WHEN kind = 'wallet' THEN credit - debit"
        "   ELSE debit - credit END) AS delta FROM ll_postings"
        "   WHERE kind IN ('wallet', 'advance') AND position <= ? GROUP BY account, kind, occurred_at) d) r"
        " GROUP BY account, kind ORDER BY account", [top]
    )
    limits = {
        r["pro_id"]: market_policy(r["market"], int(r["policy_version"])).advance_limit
        for r in view.query("SELECT pro_id, market, policy_version FROM ll_wallets")
    }
    for r in rows:
        lowest, highest = int(r["lowest"]), int(r["highest"])
        if lowest < 0:
            problems.append(f"{r['account']} goes down to {lowest}")
        if r["kind"] == "advance":
            pro_id = r["account"][len("pro:"):-len(":advance")]
            limit = limits.get(pro_id)
            if limit is not None and highest > limit:
                problems.append(f"{r['account']} reaches {highest}, over the limit {limit}")
    return problems


def refunds_within_charges(view: Any, top: int) -> list[str]:
    rows = view.query(
        "SELECT c.contact_id, c.management_fee,"
        " CAST(COALESCE(SUM(CASE WHEN f.kind = 'charge' THEN f.amount END), 0) AS BIGINT) AS charged,"
        " CAST(COALESCE(SUM(CASE WHEN f.kind = 'refund' THEN f.amount END), 0) AS BIGINT) AS refunded"
        " FROM ll_contacts c JOIN ll_contact_facts f ON f.contact_id = c.contact_id AND f.position <= ?"
        " GROUP BY c.contact_id, c.management_fee"
        " HAVING SUM(CASE WHEN f.kind = 'refund' THEN f.amount ELSE 0 END) >"
        "  SUM(CASE WHEN f.kind = 'charge' THEN f.amount ELSE 0 END) - c.management_fee"
        " ORDER BY c.contact_id LIMIT 20", [top]
    )
    return [f"{r['contact_id']}: refunded {int(r['refunded'])} > charged {int(r['charged'])} "
            f"less management fee {int(r['management_fee'])}" for r in rows]
