"""kill -9 of ``cdbrules compile`` at random moments never harms the installed CDB.

A large compile (examples/blocklist.smtp several times over: some millions of records,
over 40 MB) runs in a subprocess and is killed several times.  CDB must be the old file,
byte for byte and readable, or (when the kill came after the rename) the whole new file;
never anything in between.  The TMP a killed run leaves behind, and the lock it held on
it, must not stop the next run.

Rounds alternate between two ways of choosing the moment:

- *mid-write*: the compile is stopped (SIGSTOP) once TMP holds a random part of the new
  file, CDB is checked to be still the old one, and the kill lands there.  So every run
  has kills in the middle of writing however fast or slow the machine is (the sanitizer
  build is several times slower than a plain one, and wall-clock guesses were not enough);
- *any time*: a random delay after TMP appears, scaled by a timed full run, which also
  lands in the final fsync, around the rename and after it.

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
from helpers import EXAMPLES

KILLS = int(os.environ.get("CDBRULES_KILL_N", "8"))
SEED = int(os.environ.get("CDBRULES_KILL_SEED", "9"))


def _start(d: Path, rules: Path) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp", str(rules)], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _tmp_size(tmp: Path) -> int:
    try:
        return tmp.stat().st_size
    except FileNotFoundError:
        return -1


def _wait_for_tmp(tmp: Path, p: "subprocess.Popen[bytes]", size: int = 0) -> float:
    """Wait until TMP holds SIZE bytes or more (0: exists); the time then."""
    while _tmp_size(tmp) < size and p.poll() is None:
        time.sleep(0.0002)
    return time.monotonic()


def test_kill_9_leaves_cdb_intact(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cdb, tmp = tmp_path / "x.cdb", tmp_path / "x.tmp"
    rules = tmp_path / "big.smtp"
    rules.write_bytes((EXAMPLES / "blocklist.smtp").read_bytes() * 4)
    cdbrules.compile(EXAMPLES / "tcp.smtp", cdb, tmp)
    old = cdb.read_bytes()
    with cdbrules.Reader(cdb) as r:
        old_items = list(r.items())
    assert len(old_items) == 2
    cdbrules.compile(rules, tmp_path / "new.cdb")
    new = (tmp_path / "new.cdb").read_bytes()
    assert len(new) > 40_000_000

    # a full run, timed: how long until TMP appears, and until the end
    started = time.monotonic()
    p = _start(tmp_path, rules)
    opened = _wait_for_tmp(tmp, p) - started
    assert p.wait(timeout=300) == 0
    full = time.monotonic() - started
    assert cdb.read_bytes() == new

    outcomes = {"stopped mid-write": 0, "old": 0, "new": 0, "partial TMP left": 0}
    for round_ in range(KILLS):
        cdb.write_bytes(old)
        old_ino = cdb.stat().st_ino
        p = _start(tmp_path, rules)
        if round_ % 2 == 0:
            at = int(len(new) * rng.uniform(0.05, 0.8))
            _wait_for_tmp(tmp, p, at)
            os.killpg(p.pid, signal.SIGSTOP)
            assert p.poll() is None, f"the compile ended before TMP reached {at} bytes"
            assert _tmp_size(tmp) >= at
            assert (cdb.stat().st_ino, cdb.read_bytes()) == (old_ino, old)
            outcomes["stopped mid-write"] += 1
        else:
            _wait_for_tmp(tmp, p)  # the compile has begun: now kill it somewhere in it
            time.sleep(rng.uniform(0, (full - opened) * 1.1))
        os.killpg(p.pid, signal.SIGKILL)
        assert p.wait(timeout=60) in (-signal.SIGKILL, 0)
        assert p.stderr is not None
        p.stderr.close()
        got = cdb.read_bytes()
        assert got in (old, new), f"CDB is neither the old nor the new file ({len(got)} bytes)"
        outcomes["old" if got == old else "new"] += 1
        if got == old:
            assert cdb.stat().st_ino == old_ino  # nothing was renamed over it either
            with cdbrules.Reader(cdb) as r:
                assert list(r.items()) == old_items and r.get(b"127.") == old_items[0][1]
        if _tmp_size(tmp) > 2048:
            outcomes["partial TMP left"] += 1
            assert tmp.stat().st_ino != cdb.stat().st_ino
    print(f"\nfull run {full:.2f} s (TMP open after {opened:.2f} s), {KILLS} kills: {outcomes}")
    mid = outcomes["stopped mid-write"]
    assert mid == (KILLS + 1) // 2 and outcomes["old"] >= mid and outcomes["partial TMP left"] >= mid, outcomes

    # what a killed run left behind (a partial TMP, its 2048-byte hole first, and the
    # lock it held on it) is no obstacle
    p = _start(tmp_path, EXAMPLES / "tcp.smtp")
    assert p.wait(timeout=60) == 0
    assert p.stderr is not None
    p.stderr.close()
    assert cdb.read_bytes() == old and not tmp.exists()
