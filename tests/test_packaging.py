"""Installing leadledger adds one import name, and stores written under the old
import name (`ledger`, before 0.3) still read."""

from __future__ import annotations

import json
import site
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from leadledger import Ledger
from leadledger.store import sqlite_drop_trigger_ddl
from tests.helpers import buy, ok, quote, wallet

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("leadledger-*.whl"))


def test_the_wheel_holds_one_top_level_name(wheel):
    names = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {n for n in names if not n.endswith(".dist-info")} == {"leadledger"}
    members = set(zipfile.ZipFile(wheel).namelist())
    # the data the package reads at run time travels with it
    assert "leadledger/cli/demo.ndjson" in members
    assert any(m.startswith("leadledger/markets/") and m.endswith(".toml") for m in members)


def test_a_fresh_venv_imports_leadledger_and_not_cli(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    with zipfile.ZipFile(wheel) as archive:  # what pip install does for a pure wheel
        archive.extractall(target)
    # The dependencies come from the test environment's site-packages; a plain
    # path entry (not a site dir), so its editable-install hooks do not run.
    Path(target, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                              timeout=120)

    for name in ("cli", "ledger", "projections"):
        result = run(f"import {name}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, (name, result.stderr)
    result = run("import leadledger, leadledger.cli.main as m, leadledger.projections.view;"
                 "print(leadledger.__file__.startswith(%r), leadledger.__version__)" % target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", leadledger_version()]
    demo = subprocess.run([python, "-m", "leadledger.cli.main", "--db", f"sqlite:///{tmp_path / 'd.db'}",
                           "demo"], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "submissions:" in demo.stdout


def leadledger_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_a_store_written_under_the_old_import_name_still_reads(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Ledger.from_url(url) as ledger:
        ledger.init()
        ok(ledger.append([wallet("p1"), buy("p1", 5000), quote("c1", "p1")]))
        expected = ledger.read_models()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # what a 0.2 store holds: no chain either
        for statement in sqlite_drop_trigger_ddl():
            conn.execute(statement)
        conn.execute("ALTER TABLE stored_events DROP COLUMN chain_sha256")
        conn.execute("ALTER TABLE leadledger_receipts DROP COLUMN position")
        conn.execute("DROP TABLE leadledger_chain_head")
        conn.execute("UPDATE stored_events SET topic = replace(topic, 'leadledger.', 'ledger.')")
        conn.execute("UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT),"
                     " 'leadledger.aggregates', 'ledger.aggregates') AS BLOB)")
        assert conn.execute("SELECT count(*) FROM stored_events"
                            " WHERE CAST(state AS TEXT) LIKE '%\"ledger.aggregates:%'").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM stored_events WHERE topic LIKE 'ledger.%'").fetchone()[0] == 4
    with Ledger.from_url(url) as ledger:  # opening it chains the log as it stands
        ledger.rebuild()
        assert json.dumps(ledger.read_models()) == json.dumps(expected)
        assert ledger.chain_problems()[1].position == 4
        assert ledger.balances(pro_id="p1")[0]["balance"] == 4000
        ok(ledger.append([quote("c2", "p1")]))  # the aggregates load from the old topics
        assert ledger.balances(pro_id="p1")[0]["balance"] == 3000
        assert all(c.ok for c in ledger.verify())
