"""The README's examples are real output: each `<!-- output: leadledger ARGS -->`
block is what that command prints on a store holding the README's submissions
(`cli/demo.ndjson`), byte for byte, on both stores.

`pytest tests/test_readme.py -k sqlite --update-goldens` rewrites the blocks from
the current code (then review the diff)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from leadledger.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- output: leadledger (?P<args>.*?) -->\n```(?P<lang>\w*)\n)(?P<body>.*?)(```)", re.S)


def run(url: str, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["--db", url, *args], input=input, obj={}, catch_exceptions=False)


def test_the_examples_block_is_the_demo_file():
    block = re.search(r"<!-- examples:start -->\n```json\n(.*?)```", README.read_text(), re.S).group(1)
    assert block == (ROOT / "cli" / "demo.ndjson").read_text()


def test_readme_outputs_are_real(store_url, request):
    text = README.read_text()
    result = run(store_url, "append", "-", input=(ROOT / "cli" / "demo.ndjson").read_text())
    assert result.stderr == "25 read: 24 recorded, 0 duplicate, 1 rejected\n"  # the West Virginia credit
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= 8
    update = request.config.getoption("--update-goldens")
    replaced = text
    for match in blocks:
        args = shlex.split(match["args"])
        got = run(store_url, *args)
        assert got.exit_code in (0, 1), (args, got.output)
        if update:
            replaced = replaced.replace(match.group(0), match.group(1) + got.stdout + "```", 1)
        else:
            assert got.stdout == match["body"], f"README block for `leadledger {match['args']}` is stale"
    if update and replaced != text:
        README.write_text(replaced)


def test_the_python_api_example_runs(tmp_path):
    import subprocess
    import sys

    code = re.search(r"<!-- python-example:start -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert '"status": "recorded"' in lines[0].replace("'", '"')
    assert "'balance': 5000" in lines[1] and "'account': 'platform:cash'" in lines[2]


def test_the_shipped_json_schema_is_the_generated_one():
    import json
    from importlib import resources

    from leadledger.submissions import json_schema

    shipped = resources.files("leadledger").joinpath("submission.schema.json").read_text(encoding="utf-8")
    assert json.loads(shipped) == json_schema()
    printed = CliRunner().invoke(cli, ["schema"], obj={})
    assert printed.exit_code == 0 and json.loads(printed.stdout) == json_schema()
    assert set(json_schema()["discriminator"]["mapping"]) >= {"WalletOpened", "CourtesyCreditIssued"}
