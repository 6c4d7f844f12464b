"""The rules files in examples/ compile to the same bytes as tcprules (both builds, as
docs/compatibility.md, "Parsing", says), through the API and through the command line; the
large generated block list is what its generator makes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from helpers import EXAMPLES, Checker, check_all, load_script, plan, run_tcprules

RULE_FILES = sorted(p.name for p in EXAMPLES.glob("*.smtp"))


def test_examples_present() -> None:
    assert {"tcp.smtp", "tcp6.smtp", "blocklist.smtp"} <= set(RULE_FILES)


@pytest.mark.parametrize("name", RULE_FILES)
def test_example_matches_tcprules(checker: Checker, name: str) -> None:
    data = (EXAMPLES / name).read_bytes()
    failures = check_all(checker, [data])
    assert not failures, "\n".join(failures)
    assert checker.counts.get("ours ok") == 1, checker.counts  # an example must compile


def test_blocklist_cli_matches_v6(checker: Checker, tmp_path: Path) -> None:
    """The command line, from a file and from standard input, as qmailctl would run it."""
    src = EXAMPLES / "blocklist.smtp"
    data = src.read_bytes()
    assert len(data.split(b"\n")) > 100_000
    ref = run_tcprules(checker.refs.tcprules_v6, checker.env, data, checker.work, "v6")  # type: ignore[attr-defined]
    assert ref.rc == 0
    want = ref.cdb.read_bytes()
    r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "-v", "x.cdb", "x.tmp", str(src)],
                       cwd=tmp_path, capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout == b"", r.stderr
    # -v names the lines that repeat an earlier key (the list has some) and counts apart
    assert r.stderr.splitlines()[-1].startswith(b"cdbrules: 120000 lines, 118948 rules, ")
    assert (tmp_path / "x.cdb").read_bytes() == want
    with open(src, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "y.cdb", "y.tmp"], stdin=f,
                           cwd=tmp_path, capture_output=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert (tmp_path / "y.cdb").read_bytes() == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cdb", "y.cdb"]


def test_blocklist_is_generated() -> None:
    """examples/blocklist.smtp is exactly what examples/gen_blocklist.py writes."""
    gen = load_script(EXAMPLES / "gen_blocklist.py")
    made: bytes = gen.generate()
    have = (EXAMPLES / "blocklist.smtp").read_bytes()
    assert hashlib.sha256(made).hexdigest() == hashlib.sha256(have).hexdigest()
    assert len(have) < 5_000_000
    kinds: List[str] = [k for k in plan(have).kinds]
    assert kinds.count("rule") > 100_000 and "bad" not in kinds and "nocolon" not in kinds
