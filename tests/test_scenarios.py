"""Replay-based regression suite: the scenario library of tests/scenarios.

Each story folder holds ``submissions.ndjson`` (a ``{"$sweep": T}`` line runs the
sweep there) and ``meta.json`` (``as_of`` for the read models), and its goldens:
``results.ndjson`` (what append and sweep answered), ``events.ndjson`` (the
recorded log) and ``read_models.json`` (balances, refunds as of ``as_of``, trial
balance). Two replays per story and store:

- rules: the submissions through the rules must give the golden results, log
  and read models (a changed charging rule shows here);
- projections: the golden log loaded as it is must give the golden read models
  (a changed projection shows here).

Logs from the field (``leadledger events > log.ndjson``) go in
``tests/scenarios/field/NAME/events.ndjson`` and get the second replay only.
``pytest tests/test_scenarios.py --update-goldens`` rewrites the goldens on purpose.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from leadledger import Ledger
from leadledger.timefmt import parse_utc

HERE = Path(__file__).resolve().parent / "scenarios"
STORIES = sorted(p.parent.name for p in HERE.glob("*/submissions.ndjson"))
FIELD = sorted(p.parent.name for p in (HERE / "field").glob("*/events.ndjson"))


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


def _meta(folder: Path) -> dict:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _models(ledger: Ledger, meta: dict) -> str:
    as_of = meta.get("as_of")
    return _dump(ledger.read_models(as_of=parse_utc(as_of) if as_of else None))


def play(ledger: Ledger, folder: Path) -> tuple[str, str]:
    """Append the story's submissions (sweeping where it says); return results and log."""
    results: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        results.extend(json.dumps(r.to_json(), ensure_ascii=False) for r in ledger.append(pending))
        pending.clear()

    for line in (folder / "submissions.ndjson").read_text().splitlines():
        if line.startswith('{"$sweep"'):
            flush()
            when = json.loads(line)["$sweep"]
            swept = [r.to_json() for r in ledger.sweep(parse_utc(when))]
            results.append(json.dumps({"$sweep": when, "results": swept}, ensure_ascii=False))
        else:
            pending.append(line)
    flush()
    log = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in ledger.events())
    return "\n".join(results) + "\n", log


def check_golden(request: pytest.FixtureRequest, path: Path, actual: str) -> None:
    if request.config.getoption("--update-goldens"):
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run pytest {__file__} --update-goldens")
    expected = path.read_text()
    if expected != actual:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                              f"golden {path.relative_to(HERE)}", "now", lineterm="", n=2))
        pytest.fail(f"{path.relative_to(HERE)} changed:\n{diff}", pytrace=False)


# Who the stories' events are recorded by: fixed, so the goldens do not depend on
# the user running the tests (the CLI's and the service's stamps are tested apart).
STORY_RECORDER = "key:scenarios"


@pytest.mark.parametrize("story", STORIES)
def test_rules_reproduce_the_golden_log(story, store_url, request):
    folder = HERE / story
    with Ledger.from_url(store_url, recorded_by=STORY_RECORDER) as ledger:
        results, log = play(ledger, folder)
        check_golden(request, folder / "results.ndjson", results)
        check_golden(request, folder / "events.ndjson", log)
        check_golden(request, folder / "read_models.json", _models(ledger, _meta(folder)))
        assert all(c.ok for c in ledger.verify()), story


@pytest.mark.parametrize("name", [*STORIES, *(f"field/{n}" for n in FIELD)])
def test_projections_reproduce_the_golden_read_models(name, store_url, request):
    folder = HERE / name
    with Ledger.from_url(store_url) as ledger:
        ledger.load_log((folder / "events.ndjson").read_text().splitlines())
        check_golden(request, folder / "read_models.json", _models(ledger, _meta(folder)))


def test_the_library_covers_every_rejection_code_of_the_spec():
    spec_codes = {
        "invalid_submission", "event_id_conflict", "customer_terminated", "pricing_not_offered",
        "invalid_fee", "insufficient_funds", "card_required", "calls_not_offered", "calls_stopped",
        "already_refunded", "service_confirmed", "nothing_to_refund", "refund_window_closed",
        "refund_not_allowed", "courtesy_blocked_region", "approval_required", "fee_not_assessed",
    }
    seen = set()
    for story in STORIES:
        for line in (HERE / story / "results.ndjson").read_text().splitlines():
            seen.add(json.loads(line).get("code"))
    assert spec_codes <= seen, spec_codes - seen
    assert len(STORIES) >= 15
