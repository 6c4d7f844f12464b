"""kill -9 of ``cdbrules compile`` at random moments never harms the installed CDB.

A large compile (examples/blocklist.smtp several times over: some millions of records)
runs in a subprocess and is killed after a random delay, several times.  CDB must be the
old file, byte for byte and readable, or (when the kill came after the rename) the whole
new file; never anything in between.  The TMP a killed run leaves behind must not stop the
next run.

Knobs: ``CDBRULES_KILL_N`` kills (default 8), ``CDBRULES_KILL_SEED``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cdbrules

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KILLS = int(os.environ.get("CDBRULES_KILL_N", "8"))
SEED = int(os.environ.get("CDBRULES_KILL_SEED", "9"))


def _start(d: Path, rules: Path) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp", str(rules)], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_tmp(tmp: Path, p: "subprocess.Popen[bytes]") -> float:
    while not tmp.exists() and p.poll() is None:
        time.sleep(0.001)
    return time.monotonic()


def test_kill_9_leaves_cdb_intact(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    rules = tmp_path / "big.smtp"
    rules.write_bytes((EXAMPLES / "blocklist.smtp").read_bytes() * 4)
    cdbrules.compile(EXAMPLES / "tcp.smtp", tmp_path / "x.cdb", tmp_path / "x.tmp")
    old = (tmp_path / "x.cdb").read_bytes()
    with cdbrules.Reader(tmp_path / "x.cdb") as r:
        old_items = list(r.items())
    assert len(old_items) == 2
    cdbrules.compile(rules, tmp_path / "new.cdb")
    new = (tmp_path / "new.cdb").read_bytes()
    assert len(new) > 40_000_000

    # a full run, timed: how long until TMP appears, and until the end
    started = time.monotonic()
    p = _start(tmp_path, rules)
    opened = _wait_for_tmp(tmp_path / "x.tmp", p) - started
    assert p.wait(timeout=300) == 0
    full = time.monotonic() - started
    assert (tmp_path / "x.cdb").read_bytes() == new

    outcomes = {"old": 0, "new": 0, "partial TMP left": 0}
    for _ in range(KILLS):
        (tmp_path / "x.cdb").write_bytes(old)
        p = _start(tmp_path, rules)
        _wait_for_tmp(tmp_path / "x.tmp", p)  # the compile has begun: now kill it somewhere in it
        time.sleep(rng.uniform(0, (full - opened) * 1.1))
        os.killpg(p.pid, signal.SIGKILL)
        assert p.wait(timeout=60) in (-signal.SIGKILL, 0)
        assert p.stderr is not None
        p.stderr.close()
        got = (tmp_path / "x.cdb").read_bytes()
        assert got in (old, new), f"CDB is neither the old nor the new file ({len(got)} bytes)"
        outcomes["old" if got == old else "new"] += 1
        if got == old:
            with cdbrules.Reader(tmp_path / "x.cdb") as r:
                assert list(r.items()) == old_items and r.get(b"127.") == old_items[0][1]
        if (tmp_path / "x.tmp").exists() and (tmp_path / "x.tmp").stat().st_size > 2048:
            outcomes["partial TMP left"] += 1
    print(f"\nfull run {full:.2f} s (TMP open after {opened:.2f} s), {KILLS} kills: {outcomes}")
    assert outcomes["old"] >= KILLS // 2, outcomes  # most kills came before the rename
    assert outcomes["partial TMP left"] >= 1, outcomes  # some came in the middle of writing

    # what a killed run left behind (a partial TMP, its 2048-byte hole first) is no obstacle
    p = _start(tmp_path, EXAMPLES / "tcp.smtp")
    assert p.wait(timeout=60) == 0
    assert p.stderr is not None
    p.stderr.close()
    assert (tmp_path / "x.cdb").read_bytes() == old and not (tmp_path / "x.tmp").exists()
