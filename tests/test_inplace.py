"""A cdb or rules file changed in place (truncated, rewritten, grown) while it is in use.

``os.truncate``, ``> file``, ``cp new.cdb live.cdb``, an in-place ``cdbmake X X`` or an
rsync without ``--delay-updates`` change the file under a reader instead of renaming a new
one over it.  A mapped file cut short kills the process that touches the lost pages with
SIGBUS.  cdbrules reads the file into memory instead (see README, "Files changed in
place"), so:

* a ``Reader`` keeps answering from the file as it was when opened, whatever happens to it;
* a new ``Reader`` gives the file's answers at that moment, or a clean ``CdbFormatError``;
* a ``Rules`` keeps the last good rules until the file is whole again, then loads it: every
  answer is the old file's or the new file's, never one of a half-written file.

The lookups run in a child process, so that a signal fails the test (the exit status says
which) instead of killing pytest.  The parent changes the file through a sequence of
states (empty, cut in half, rewritten chunk by chunk with a different file, grown with
garbage, shorter than a header), giving the child time to look up in each.

Size knob: ``CDBRULES_INPLACE_ROUNDS`` rounds of that sequence (default 4).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from cdbrules import Writer, compile as compile_rules

ROUNDS = int(os.environ.get("CDBRULES_INPLACE_ROUNDS", "4"))
KEYS = 3000
PAUSE = 0.02  # seconds the child gets in each state of the file

# The child: lookups until the parent writes a line to its stdin (or 60 s pass).
READER_CHILD = r"""
import json, os, select, sys, time
from cdbrules import CdbFormatError, Reader
path, a_path, b_path = sys.argv[1:4]
with Reader(a_path) as a, Reader(b_path) as b:
    keys = [k for k in a] + [k for k in b if k not in a]
    old = {k: a.get(k) for k in keys}
    new = {k: b.get(k) for k in keys}
held = Reader(path)  # opened on file A, kept open throughout
seen = {"held": 0, "fresh": 0, "format_error": 0}
print("ready", flush=True)
end = time.monotonic() + 60
i = 0
while time.monotonic() < end and not select.select([sys.stdin], [], [], 0)[0]:
    for _ in range(50):
        k = keys[i % len(keys)]
        i += 7
        got = held.get(k)
        if got != old[k]:
            sys.exit(f"held Reader: {k!r} gave {got!r}, the file it opened has {old[k]!r}")
        seen["held"] += 1
    try:
        with Reader(path) as fresh:
            for k in keys[i % len(keys):][:20]:
                got = fresh.get(k)
                if got not in (old[k], new[k], None):
                    sys.exit(f"fresh Reader: {k!r} gave {got!r}, in neither file")
            seen["fresh"] += 1
    except CdbFormatError:
        seen["format_error"] += 1
print(json.dumps(seen), flush=True)
"""

RULES_CHILD = r"""
import json, os, select, sys, time
from cdbrules import Rules
path, a_path, b_path = sys.argv[1:4]
ips = json.loads(sys.argv[4])
with Rules(a_path) as a, Rules(b_path) as b:
    old = [a.check(ip) for ip in ips]
    new = [b.check(ip) for ip in ips]
rules = Rules(path, reload_interval=0)
seen = {"old": 0, "new": 0, "reload_errors": 0}
print("ready", flush=True)
end = time.monotonic() + 60
i = 0
while time.monotonic() < end and not select.select([sys.stdin], [], [], 0)[0]:
    for _ in range(20):
        j = i % len(ips)
        i += 1
        d = rules.check(ips[j])
        if d == old[j] and d == new[j]:
            continue
        if d == old[j]:
            seen["old"] += 1
        elif d == new[j]:
            seen["new"] += 1
        else:
            sys.exit(f"{ips[j]}: {d} is neither file's answer ({old[j]} / {new[j]})")
    if rules.reload_error is not None:
        seen["reload_errors"] += 1
rules.reload()  # the file is B, whole, by now
final = [rules.check(ip) for ip in ips]
if final != new:
    sys.exit(f"after the last change the rules are not the new file's: {rules.reload_error!r}")
print(json.dumps(seen), flush=True)
"""


def _mutate(path: Path, a: bytes, b: bytes, rounds: int) -> None:
    """Change path in place, from A, through broken states, to B (and back), rounds times."""
    def rewrite(data: bytes, chunk: int) -> None:  # as cp or cdbmake X X: truncate, then write
        with open(path, "r+b") as f:
            f.truncate(0)
            for i in range(0, len(data), chunk):
                f.write(data[i:i + chunk])
                f.flush()
                time.sleep(PAUSE / 4)

    for r in range(rounds):
        os.truncate(path, 0)
        time.sleep(PAUSE)
        path.write_bytes(a)  # open(O_TRUNC) + write: the same inode
        time.sleep(PAUSE)
        os.truncate(path, len(a) // 2)
        time.sleep(PAUSE)
        rewrite(b, 16384)
        time.sleep(PAUSE)
        with open(path, "ab") as f:  # grown: garbage after the last table
            f.write(os.urandom(65536))
        time.sleep(PAUSE)
        os.truncate(path, 2047)
        time.sleep(PAUSE)
        rewrite(a if r + 1 < rounds else b, 65536)
        time.sleep(PAUSE)


def _run_child(code: str, args: List[str], path: Path, a: bytes, b: bytes) -> Dict[str, int]:
    path.write_bytes(a)
    p = subprocess.Popen([sys.executable, "-c", code, str(path), *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        line = p.stdout.readline()
        assert line == b"ready\n", (line, p.stderr.read() if p.stderr else b"")
        _mutate(path, a, b, ROUNDS)
        try:
            p.stdin.write(b"stop\n")
            p.stdin.close()
        except BrokenPipeError:  # the child is gone already: its status says why
            pass
        assert p.stderr is not None
        out, err = p.stdout.read(), p.stderr.read()  # it writes little: no pipe fills up
        p.wait(120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode < 0:
        pytest.fail(f"the child was killed by {signal.Signals(-p.returncode).name}: {err.decode(errors='replace')}")
    assert p.returncode == 0, err.decode(errors="replace")
    seen: Dict[str, int] = json.loads(out)
    return seen


def _cdb(path: Path, tag: bytes, n: int) -> bytes:
    with Writer(path) as w:
        for i in range(n):
            w.add(b"k%d" % i, (tag + b"-%d" % i) * (1 + i % 5))
    return path.read_bytes()


def test_reader_survives_changes_in_place(tmp_path: Path) -> None:
    a = _cdb(tmp_path / "a.cdb", b"a", KEYS)
    b = _cdb(tmp_path / "b.cdb", b"b", KEYS + KEYS // 2)
    assert len(b) > len(a) > 3 * 4096  # cut in half loses pages a map would fault on
    seen = _run_child(READER_CHILD, [str(tmp_path / "a.cdb"), str(tmp_path / "b.cdb")], tmp_path / "live.cdb", a, b)
    assert seen["held"] > 0 and seen["fresh"] > 0, seen
    assert seen["format_error"] > 0, f"no broken state was ever seen: the test did not test: {seen}"


def _rules_text(tag: str, n: int) -> bytes:
    lines = [f"10.{i >> 8}.{i & 255}.:{'deny' if i % 3 == 0 else 'allow'},T=\"{tag}{i}\"\n" for i in range(n)]
    return ("".join(lines) + f":deny,T=\"{tag}-default\"\n").encode()


def test_rules_survive_changes_in_place(tmp_path: Path) -> None:
    for name, text in (("a", _rules_text("a", 2000)), ("b", _rules_text("b", 3000))):
        compile_rules(io.BytesIO(text), tmp_path / f"{name}.cdb")
    a, b = (tmp_path / "a.cdb").read_bytes(), (tmp_path / "b.cdb").read_bytes()
    ips = [f"10.{i >> 8}.{i & 255}.9" for i in range(0, 3000, 37)] + ["192.0.2.1"]
    seen = _run_child(RULES_CHILD, [str(tmp_path / "a.cdb"), str(tmp_path / "b.cdb"), json.dumps(ips)],
                      tmp_path / "live.cdb", a, b)
    assert seen["old"] > 0 and seen["new"] > 0, f"both files must have been in force: {seen}"
    assert seen["reload_errors"] > 0, f"no broken state was ever seen: the test did not test: {seen}"


def _in_child(code: str, *args: str) -> None:
    """Run code in a child Python; fail on its signal or its non-zero exit."""
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=120)
    if p.returncode < 0:
        pytest.fail(f"the child was killed by {signal.Signals(-p.returncode).name}")
    assert p.returncode == 0, p.stderr.decode(errors="replace")


SNAPSHOT_CHILD = r"""
import os, sys
from cdbrules import CdbFormatError, Reader
p = sys.argv[1]
a = open(p, "rb").read()
want = sorted((b"k%d" % i, b"a-%d" % i * (1 + i % 5)) for i in range(500))
with Reader(p) as r:
    os.truncate(p, 0)
    assert r[b"k499"] == b"a-499" * 5 and len(r) == 500
    try:
        Reader(p)
        sys.exit("an empty file opened")
    except CdbFormatError as e:
        assert "too short" in str(e), e
    open(p, "wb").write(a[:len(a) // 2])
    assert sorted(r.items()) == want
"""


def test_reader_is_a_snapshot(tmp_path: Path) -> None:
    """A Reader keeps the bytes it opened; the file's later states are a new Reader's business."""
    p = tmp_path / "r.cdb"
    _cdb(p, b"a", 500)
    _in_child(SNAPSHOT_CHILD, str(p))


LAST_GOOD_CHILD = r"""
import sys
from cdbrules import CdbFormatError, Rules
p, b_path = sys.argv[1:3]
a, b = open(p, "rb").read(), open(b_path, "rb").read()
with Rules(p, reload_interval=None) as r:
    assert r.check("10.0.1.9").env["T"] == "a1"
    states = {
        "empty": b"",
        "half": a[:len(a) // 2],
        "header only": b[:2048],
        "new file cut short": b[:-8],
        "grown": a + bytes(4096),
        "header not yet written": bytes(2048) + b[2048:],
    }
    for what, data in states.items():
        with open(p, "r+b") as f:
            f.truncate(0)
            f.write(data)
        assert r.reload() is False, what
        assert r.check("10.0.1.9").env["T"] == "a1", what
        assert isinstance(r.reload_error, CdbFormatError), (what, r.reload_error)
    with open(p, "r+b") as f:
        f.truncate(0)
        f.write(b)
    assert r.reload() is True and r.reload_error is None
    assert r.check("10.0.1.9").env["T"] == "b1"
"""


def test_rules_keep_the_last_good_rules(tmp_path: Path) -> None:
    """Each broken state of an in-place change keeps the rules loaded, with reload_error
    saying why; the whole new file is then loaded."""
    p = tmp_path / "r.cdb"
    compile_rules(io.BytesIO(_rules_text("a", 300)), p)
    compile_rules(io.BytesIO(_rules_text("b", 400)), tmp_path / "b.cdb")
    _in_child(LAST_GOOD_CHILD, str(p), str(tmp_path / "b.cdb"))


# -- the file system clock's granularity ----------------------------------------------------
# A file rewritten in place within one tick of the file system's clock keeps its mtime.  A
# file read less than reader.SETTLE_NS after its last change is therefore read once more when
# it has settled, and only settled files are kept for reuse (read_cdb(keep=True)).  The tests
# move SETTLE_NS instead of waiting.

def _settle(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    import cdbrules.reader as reader_mod
    import cdbrules.rules as rules_mod
    monkeypatch.setattr(reader_mod, "SETTLE_NS", ns)
    monkeypatch.setattr(rules_mod, "SETTLE_NS", ns)


def _same_size_rewrite(p: Path, data: bytes) -> None:
    """Rewrite p in place with data (same size), its mtime put back: the same (device,
    inode, size, mtime), as a rewrite within one clock tick leaves it."""
    st = p.stat()
    assert len(data) == st.st_size
    with open(p, "r+b") as f:
        f.write(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_rewrite_within_one_tick_is_seen_once_settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdbrules import Rules
    p = tmp_path / "r.cdb"
    compile_rules(io.BytesIO(b"1.2.3.4:allow,V=\"a\"\n:deny\n"), p)
    compile_rules(io.BytesIO(b"1.2.3.4:allow,V=\"b\"\n:deny\n"), tmp_path / "b.cdb")
    b = (tmp_path / "b.cdb").read_bytes()
    _settle(monkeypatch, 10 ** 12)  # nothing has settled
    with Rules(p, reload_interval=0) as r:
        assert r.check("1.2.3.4").env["V"] == "a"
        _same_size_rewrite(p, b)
        assert r.check("1.2.3.4").env["V"] == "a"  # the same sig, not settled yet: not read
        _settle(monkeypatch, 0)
        assert r.check("1.2.3.4").env["V"] == "b"  # settled: read again, and it differs
        assert r.reload() is False  # settled and unchanged: nothing more to read


def test_an_unchanged_file_read_again_keeps_its_decisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdbrules import Rules
    p = tmp_path / "r.cdb"
    compile_rules(io.BytesIO(b"1.2.3.4:allow,V=\"a\"\n:deny\n"), p)
    _settle(monkeypatch, 10 ** 12)
    with Rules(p, reload_interval=0) as r:
        d = r.check("1.2.3.4")
        _settle(monkeypatch, 0)
        assert r.reload() is False and r.check("1.2.3.4") is d  # read again: the same bytes


def test_settled_files_are_kept_for_the_next_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules() per connection (tcpserver's way) reads a settled, unchanged file only once;
    any change to it (even one that keeps size and mtime) is read."""
    from cdbrules import Rules
    p = tmp_path / "r.cdb"
    compile_rules(io.BytesIO(b"1.2.3.4:allow,V=\"a\"\n:deny\n"), p)
    compile_rules(io.BytesIO(b"1.2.3.4:allow,V=\"b\"\n:deny\n"), tmp_path / "b.cdb")
    _settle(monkeypatch, 10 ** 12)
    with Rules(p) as r1, Rules(p) as r2:
        assert r1._state.mm is not r2._state.mm  # not settled: read each time
    _settle(monkeypatch, 0)
    with Rules(p) as r1, Rules(p) as r2:
        assert r1._state.mm is r2._state.mm  # settled: read once
    _same_size_rewrite(p, (tmp_path / "b.cdb").read_bytes())  # the ctime moves
    with Rules(p) as r3:
        assert r3._state.mm is not r1._state.mm and r3.check("1.2.3.4").env["V"] == "b"
