"""Racing compiles onto one CDB and TMP, and readers while the file is replaced.

Racing compiles (two ``qmailctl cdb`` at once).  cdbrules serialises runs that share TMP
with an exclusive ``flock`` on TMP, taken *before* TMP is truncated; a run that waited
re-opens TMP if the file it locked was meanwhile renamed to CDB (see _output.py).  The
alternative, a unique temporary name per run, is atomic too, but TMP is a name the admin
chose (its mode and owner become CDB's, scripts clean it up), so it is kept.  Checked:

* deterministically, with each run's input held back on a pipe: runs queue on the lock;
  the one holding it installs exactly its own file (the inode it locked, its bytes), and
  the installed file is not touched while the next run truncates and fills TMP;
* free-running pairs of processes (and threads of one process): every file a watcher
  sees at CDB is a whole result, the final one is a result of a run that succeeded, and a
  run that failed never installs anything.

Readers under replacement: threads open, search and walk CDB (``Reader``; and ``Rules``
with reload on every lookup) while another process compiles hundreds of replacements.
Every file's records all carry its generation: an answer mixing two files, an error or a
crash fails the test.

Size knobs: ``CDBRULES_RACE_N`` (free-running rounds, default 30), ``CDBRULES_REPLACE_N``
(replacements, default 300).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import cdbrules
from cdbrules import Reader
from helpers import linux_only

RACE_N = int(os.environ.get("CDBRULES_RACE_N", "30"))
REPLACE_N = int(os.environ.get("CDBRULES_REPLACE_N", "300"))


def rules_text(tag: int, lines: int) -> bytes:
    """Rules whose every record names tag (so two results never share a record)."""
    return b"".join(b'10.%d.%d.%d:allow,TAG="%d"\n' % (tag, i >> 8 & 255, i & 255, tag) for i in range(lines))


def compiled(tmp_path: Path, text: bytes) -> bytes:
    """The file compiling text gives, alone."""
    out = tmp_path / f"alone-{hashlib.sha1(text).hexdigest()}.cdb"
    cdbrules.compile(io.BytesIO(text), out)
    return out.read_bytes()


def flocks() -> List[Tuple[bool, int, int]]:
    """(waiting, pid, inode) for every flock in the system."""
    out = []
    with open("/proc/locks") as f:
        for line in f:
            t = line.split()
            waiting = t[1] == "->"
            if waiting:
                t = t[1:]
            if t[1] != "FLOCK":
                continue
            out.append((waiting, int(t[4]), int(t[5].rsplit(":", 1)[1])))
    return out


def wait_for(cond: Callable[[], object], what: str, timeout: float = 60,
             extra: Optional[Callable[[], object]] = None) -> object:
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}" + (f" ({extra()})" if extra else ""))
        time.sleep(0.005)


def start(cdb: Path, tmp: Path, src: Optional[Path] = None) -> "subprocess.Popen[bytes]":
    argv = [sys.executable, "-m", "cdbrules", "compile", str(cdb), str(tmp)]
    if src is not None:
        argv.append(str(src))
    return subprocess.Popen(argv, stdin=subprocess.PIPE if src is None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# -- racing compiles ------------------------------------------------------------------


@linux_only("/proc/locks, which shows who holds and who waits for each flock")
def test_queued_runs_each_install_their_own_file(tmp_path: Path) -> None:
    """Four runs start at once; their input is held back, so they queue on TMP's lock.

    The run holding the lock is fed; it must exit 0 having installed the very inode it
    locked, holding its own bytes, and that file must stay intact while the next run
    empties and fills TMP.  This is the interleaving that breaks without the lock (or
    with a lock taken after truncating): the next run would truncate the file just
    renamed to CDB."""
    cdb, tmp = tmp_path / "rules.cdb", tmp_path / "rules.tmp"
    texts = {i: rules_text(i, 500 + 700 * i) for i in range(4)}
    runs = {start(cdb, tmp): i for i in range(4)}
    pids = {p.pid: p for p in runs}
    installed: Optional[Tuple[int, bytes]] = None  # (inode, bytes) of the last install
    try:
        while pids:
            def queue() -> Optional[Tuple[int, int]]:
                for q in pids.values():
                    assert q.poll() is None, f"a run ended before it was fed: {q.stderr.read()!r}"  # type: ignore[union-attr]
                ls = [lk for lk in flocks() if lk[1] in pids]
                holders = [lk for lk in ls if not lk[0]]
                if len(holders) == 1 and {lk[1] for lk in ls} == set(pids):
                    return holders[0][1], holders[0][2]
                return None

            got = wait_for(queue, f"one run of {sorted(pids)} to hold TMP's lock and the others to wait",
                           extra=flocks)
            assert isinstance(got, tuple)
            pid, ino = got
            # the holder has TMP open: the file now at TMP, not one renamed away
            assert tmp.exists() and ino == tmp.stat().st_ino, "the run holding the lock is not writing TMP"
            if installed is not None:
                assert ino != installed[0]
                assert (cdb.stat().st_ino, cdb.read_bytes()) == installed
            p = pids.pop(pid)
            out, err = p.communicate(texts[runs[p]], timeout=60)
            assert p.returncode == 0, err
            want = compiled(tmp_path, texts[runs[p]])
            installed = (cdb.stat().st_ino, cdb.read_bytes())
            assert installed == (ino, want)  # it installed its own file
    finally:
        for p in runs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert not tmp.exists()


class Watcher(threading.Thread):
    """Reads CDB whole, over and over; records every content that is not an allowed one."""

    def __init__(self, cdb: Path) -> None:
        super().__init__(daemon=True)
        self.cdb = cdb
        self.allowed: Set[str] = set()
        self.seen: Dict[str, int] = {}
        self.bad: List[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with open(self.cdb, "rb") as f:
                    h = hashlib.sha1(f.read()).hexdigest()
            except FileNotFoundError:
                continue
            self.seen[h] = self.seen.get(h, 0) + 1
            if h not in self.allowed:
                self.bad.append(h)


def test_free_running_pairs(tmp_path: Path) -> None:
    """Pairs of ``cdbrules compile`` onto one CDB and TMP at once, RACE_N rounds."""
    cdb, tmp = tmp_path / "rules.cdb", tmp_path / "rules.tmp"
    rng = random.Random(1)
    w = Watcher(cdb)
    w.start()
    rounds = {"both ok": 0, "one fails": 0}
    try:
        for rnd in range(RACE_N):
            a_text = rules_text(2 * rnd % 250, rng.randrange(100, 6000))
            b_text = rules_text((2 * rnd + 1) % 250, rng.randrange(100, 6000))
            fails = rnd % 3 == 2  # every third round, B has a bad last line
            if fails:
                b_text += b"1.2.3.4:allow,BROKEN\n"
            (tmp_path / "a").write_bytes(a_text)
            (tmp_path / "b").write_bytes(b_text)
            a_want = compiled(tmp_path, a_text)
            old = cdb.read_bytes() if cdb.exists() else None
            w.allowed = {hashlib.sha1(x).hexdigest() for x in (old, a_want) if x is not None}
            if not fails:
                b_want = compiled(tmp_path, b_text)
                w.allowed.add(hashlib.sha1(b_want).hexdigest())
            pa, pb = start(cdb, tmp, tmp_path / "a"), start(cdb, tmp, tmp_path / "b")
            _, ea = pa.communicate(timeout=60)
            _, eb = pb.communicate(timeout=60)
            assert pa.returncode == 0, ea
            final = cdb.read_bytes()
            if fails:
                assert pb.returncode == 100 and b"BROKEN" in eb, eb
                assert final == a_want
                rounds["one fails"] += 1
            else:
                assert pb.returncode == 0, eb
                assert final in (a_want, b_want)
                rounds["both ok"] += 1
            assert not tmp.exists()
            assert not w.bad, "CDB was seen holding a file that is neither input's result"
    finally:
        w.halt.set()
        w.join()
    assert sum(w.seen.values()) > RACE_N  # the watcher did look


def test_threads_of_one_process(tmp_path: Path) -> None:
    """compile() from four threads onto one CDB and TMP: flock holds between threads too
    (each open() is its own open file description)."""
    cdb, tmp = tmp_path / "rules.cdb", tmp_path / "rules.tmp"
    texts = [rules_text(t, 300 + 500 * t) for t in range(4)]
    wants = {hashlib.sha1(compiled(tmp_path, t)).hexdigest() for t in texts}
    w = Watcher(cdb)
    w.allowed = wants
    errors: List[BaseException] = []

    def work(t: int) -> None:
        try:
            for _ in range(max(3, RACE_N // 3)):
                cdbrules.compile(io.BytesIO(texts[t]), cdb, tmp)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    w.start()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    w.halt.set()
    w.join()
    assert not errors
    assert not w.bad
    assert hashlib.sha1(cdb.read_bytes()).hexdigest() in wants
    assert not tmp.exists()


# -- readers under replacement ------------------------------------------------------------

KEYS = 200

REPLACER = r"""
import io, sys, cdbrules
cdb, n, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for g in range(1, n + 1):
    text = b"".join(b'10.0.%d.%d:allow,G="%06d"\n' % (i >> 8, i & 255, g) for i in range(keys))
    text += b':deny,G="%06d"\n' % g
    cdbrules.compile(io.BytesIO(text), cdb, cdb + ".tmp")
"""


def generation(text: bytes) -> int:
    return int(text.split(b"=", 1)[1][:6]) if text.startswith(b"+G=") else int(text[2:].split(b"=", 1)[1][:6])


def replacing(tmp_path: Path, readers: Sequence[Callable[[Path, threading.Event], None]],
              setup: Optional[Callable[[Path], None]] = None) -> None:
    """Run the reader functions in threads while another process replaces CDB REPLACE_N times."""
    cdb = tmp_path / "rules.cdb"
    subprocess.run([sys.executable, "-c", REPLACER, str(cdb), "1", str(KEYS)], check=True)
    if setup is not None:
        setup(cdb)
    done = threading.Event()
    errors: List[str] = []

    def guard(fn: Callable[[Path, threading.Event], None]) -> None:
        try:
            fn(cdb, done)
        except BaseException as e:
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=guard, args=(fn,)) for fn in readers]
    for th in threads:
        th.start()
    try:
        subprocess.run([sys.executable, "-c", REPLACER, str(cdb), str(REPLACE_N), str(KEYS)],
                       check=True, timeout=300)
    finally:
        done.set()
        for th in threads:
            th.join()
    assert not errors, errors[:5]
    with Reader(cdb) as r:
        assert generation(r[b""]) == REPLACE_N


def test_readers_under_replacement(tmp_path: Path) -> None:
    """Reader: a fresh one per check (as tcpserver opens per connection) and a long-lived
    one, in five threads, while the file is replaced REPLACE_N times."""
    seen: List[Set[int]] = []

    def fresh(cdb: Path, done: threading.Event) -> None:
        rng = random.Random(threading.get_ident())
        gens: Set[int] = set()
        seen.append(gens)
        n = 0
        while not done.is_set() or n == 0:
            with Reader(cdb) as r:
                g = generation(r[b""])
                for i in rng.sample(range(KEYS), 8):
                    assert generation(r[b"10.0.%d.%d" % (i >> 8, i & 255)]) == g
                if n % 10 == 0:
                    assert len(r) == KEYS + 1
                    assert {generation(v) for v in r.values()} == {g}
                gens.add(g)
            n += 1

    def long_lived(cdb: Path, done: threading.Event) -> None:
        with Reader(cdb) as r:
            g = generation(r[b""])
            while not done.is_set():
                assert {generation(v) for v in r.values()} == {g}
                assert generation(r[b"10.0.0.7"]) == g
                time.sleep(0.001)

    replacing(tmp_path, [fresh, fresh, fresh, fresh, long_lived])
    every = set().union(*seen)
    assert len(every) > 2, "the readers hardly saw the file being replaced"


def test_rules_under_replacement(tmp_path: Path) -> None:
    """Rules: one object shared by four threads, reloading before every lookup, and a new
    one per check.  check_many answers from one file; a thread never goes back in time."""
    Rules = cdbrules.Rules
    box: List[object] = []
    seen: List[int] = []

    def gen_of(d: object) -> int:
        return int(d.env["G"])  # type: ignore[attr-defined]

    def shared(cdb: Path, done: threading.Event) -> None:
        rules = box[0]
        rng = random.Random(threading.get_ident())
        last = 0
        while not done.is_set():
            i = rng.randrange(KEYS)
            ip = "10.0.%d.%d" % (i >> 8, i & 255)
            d = rules.check(ip)  # type: ignore[attr-defined]
            assert d.allowed and d.rule == ip
            g = gen_of(d)
            assert g >= last
            ds = rules.check_many([ip, "10.9.9.9", "10.0.0.1"])  # type: ignore[attr-defined]
            assert [x.allowed for x in ds] == [True, False, True]
            assert {gen_of(x) for x in ds} == {gen_of(ds[0])} and gen_of(ds[0]) >= g
            last = gen_of(ds[0])
            seen.append(last)

    def fresh(cdb: Path, done: threading.Event) -> None:
        while not done.is_set():
            with Rules(cdb, reload_interval=None) as rules:
                d = rules.check("192.0.2.1", "x.example", "joe")
                assert not d.allowed and d.rule == ""
                assert gen_of(rules.check("10.0.0.3")) == gen_of(d)

    replacing(tmp_path, [shared, shared, shared, shared, fresh],
              setup=lambda cdb: box.append(Rules(cdb, reload_interval=0)))
    assert len(set(seen)) > 2
    assert box[0].reload_error is None  # type: ignore[attr-defined]
