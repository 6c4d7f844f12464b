"""TMP and CDB in every situation of docs/compatibility.md, "Output files", that applies to cdbrules.

Each situation is set up twice, once for ``tcprules`` (v4 build) and once for
``cdbrules compile``.  The exit codes must agree, except where cdbrules refuses on purpose
(TMP naming CDB, the rules or a text file: 100 before anything is written).  Where both
succeed, CDB must end up the same (regular file or symlink, mode, bytes); where they fail,
cdbrules must leave CDB as it was and no TMP of its own behind (docs/compatibility.md), and say what
failed on which file in one line.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest

import cdbrules
from cdbrules import SameFileError, UnsafeTmpError

RULES = b'127.:allow,RELAYCLIENT=""\n1.2.3.4:deny\n:allow\n'
OLD = b"the old cdb, which must survive any failure"


class Result(NamedTuple):
    rc: int
    stderr: bytes


def ours(d: Path, cdb: str, tmp: str, rules: Optional[str] = None, umask: Optional[int] = None) -> Result:
    args = [sys.executable, "-m", "cdbrules", "compile", cdb, tmp] + ([rules] if rules else [])
    stdin = None if rules else RULES
    r = subprocess.run(args, input=stdin if stdin is not None else b"", capture_output=True, cwd=d, timeout=60,
                       preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)  # type: ignore[misc]
    assert r.stdout == b""
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == (0 if r.returncode == 0 else 1), r.stderr
    return Result(r.returncode, r.stderr)


def theirs(refs: object, d: Path, cdb: str, tmp: str, umask: Optional[int] = None) -> Result:
    r = subprocess.run([refs.tcprules_v4, cdb, tmp], input=RULES, capture_output=True, cwd=d,  # type: ignore[attr-defined]
                       timeout=60, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    return Result(r.returncode, r.stderr)


def state(p: Path) -> object:
    """What a path is: absent, a symlink (to where), a directory, or a file (mode, bytes)."""
    if p.is_symlink():
        return ("symlink", os.readlink(p))
    if not p.exists():
        return "absent"
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        return ("dir", sorted(x.name for x in p.iterdir()))
    if stat.S_ISFIFO(st.st_mode):
        return "fifo"
    return ("file", stat.S_IMODE(st.st_mode), p.read_bytes())


def snapshot(d: Path) -> Dict[str, object]:
    return {p.name: state(p) for p in sorted(d.iterdir())}


class Situation(NamedTuple):
    name: str
    setup: Callable[[Path], None]
    cdb: str
    tmp: str
    rc: int  # what tcprules and cdbrules exit with
    says: str  # what cdbrules' message must contain ("" on success)


def _old_cdb(d: Path) -> None:
    (d / "x.cdb").write_bytes(OLD)


def _dirs(d: Path) -> None:
    _old_cdb(d)
    (d / "dtmp").mkdir()
    (d / "dcdb").mkdir()


def _tmp_mode(mode: int) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        _old_cdb(d)
        (d / "x.tmp").write_bytes(b"")
        os.chmod(d / "x.tmp", mode)
    return setup


def _cdb_symlink(d: Path) -> None:
    (d / "target").write_bytes(OLD)
    os.symlink("target", d / "x.cdb")


def _tmp_symlink(d: Path) -> None:
    _old_cdb(d)
    os.symlink("written", d / "x.tmp")


def _fifo(d: Path) -> None:
    _old_cdb(d)
    os.mkfifo(d / "x.tmp")


def _leftover_tmp(d: Path) -> None:
    _old_cdb(d)
    (d / "x.tmp").write_bytes(bytes(2048) + b"records of a killed run")


def _cdb_mode(d: Path) -> None:
    _old_cdb(d)
    os.chmod(d / "x.cdb", 0o600)


SITUATIONS = [
    Situation("new-cdb", lambda d: None, "x.cdb", "x.tmp", 0, ""),
    Situation("replace-cdb", _old_cdb, "x.cdb", "x.tmp", 0, ""),
    Situation("cdb-mode-not-kept", _cdb_mode, "x.cdb", "x.tmp", 0, ""),
    Situation("existing-tmp-600", _tmp_mode(0o600), "x.cdb", "x.tmp", 0, ""),
    Situation("existing-tmp-755", _tmp_mode(0o755), "x.cdb", "x.tmp", 0, ""),
    Situation("leftover-tmp", _leftover_tmp, "x.cdb", "x.tmp", 0, ""),
    Situation("cdb-symlink-replaced", _cdb_symlink, "x.cdb", "x.tmp", 0, ""),
    Situation("tmp-symlink", _tmp_symlink, "x.cdb", "x.tmp", 0, ""),
    Situation("tmp-in-other-dir", _dirs, "x.cdb", "dtmp/x.tmp", 0, ""),
    Situation("tmp-dir-missing", _old_cdb, "x.cdb", "nodir/x.tmp", 111,
              "fatal: unable to create nodir/x.tmp: file does not exist"),
    Situation("cdb-dir-missing", lambda d: None, "nodir/x.cdb", "x.tmp", 111,
              "fatal: unable to move x.tmp to nodir/x.cdb: file does not exist"),
    Situation("tmp-is-dir", _dirs, "x.cdb", "dtmp", 111, "fatal: unable to create dtmp: is a directory"),
    Situation("cdb-is-dir", _dirs, "dcdb", "x.tmp", 111, "fatal: unable to move x.tmp to dcdb: is a directory"),
    Situation("tmp-is-fifo", _fifo, "x.cdb", "x.tmp", 111, "fatal: unable to create x.tmp: device not configured"),
]


@pytest.mark.parametrize("s", SITUATIONS, ids=[s.name for s in SITUATIONS])
def test_situation(s: Situation, tmp_path: Path, refs: object) -> None:
    mine, ref = tmp_path / "ours", tmp_path / "tcprules"
    mine.mkdir()
    ref.mkdir()
    s.setup(mine)
    s.setup(ref)
    before = snapshot(mine)
    got = ours(mine, s.cdb, s.tmp)
    want = theirs(refs, ref, s.cdb, s.tmp)
    assert (got.rc, want.rc) == (s.rc, s.rc), (got, want)
    if s.rc == 0:
        assert snapshot(mine) == snapshot(ref)  # CDB, TMP and every other file alike
        assert got.stderr == b""
    else:
        assert snapshot(mine) == before, "a failed run changed something"
        assert got.stderr.decode().rstrip("\n") == f"cdbrules: {s.says}"
        # in tcprules' own words (where tcprules fails for the same reason)
        assert got.stderr == want.stderr.replace(b"tcprules: ", b"cdbrules: ", 1), (got, want)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_tmp_mode_follows_umask(umask: int, tmp_path: Path, refs: object) -> None:
    mine, ref = tmp_path / "ours", tmp_path / "tcprules"
    mine.mkdir()
    ref.mkdir()
    assert ours(mine, "x.cdb", "x.tmp", umask=umask).rc == 0
    assert theirs(refs, ref, "x.cdb", "x.tmp", umask=umask).rc == 0
    assert snapshot(mine) == snapshot(ref)


def test_cross_device_tmp(tmp_path: Path, other_fs: Path) -> None:
    _old_cdb(tmp_path)
    r = ours(tmp_path, "x.cdb", f"{other_fs}/x.tmp")
    assert r.rc == 111
    assert b"unable to move" in r.stderr and b"cross-device link" in r.stderr  # djb's text, on any system
    assert b"same file system" in r.stderr
    assert os.listdir(other_fs) == []
    assert (tmp_path / "x.cdb").read_bytes() == OLD


# -- refusals: TMP that would destroy something ------------------------------------------


def _refused(d: Path, cdb: str, tmp: str, rules: Optional[str], says: str) -> None:
    before = snapshot(d)
    r = ours(d, cdb, tmp, rules)
    assert r.rc == 100 and says in r.stderr.decode(), r
    assert snapshot(d) == before


def test_tmp_same_as_cdb_refused(tmp_path: Path) -> None:
    _old_cdb(tmp_path)
    (tmp_path / "sub").mkdir()
    os.link(tmp_path / "x.cdb", tmp_path / "hard.tmp")
    os.symlink("x.cdb", tmp_path / "sym.tmp")
    os.symlink(".", tmp_path / "here")
    for tmp in ("x.cdb", "./x.cdb", "sub/../x.cdb", "hard.tmp", "sym.tmp", "here/x.cdb", str(tmp_path / "x.cdb")):
        _refused(tmp_path, "x.cdb", tmp, None, "are the same file")


def test_tmp_same_as_new_cdb_refused(tmp_path: Path) -> None:
    """CDB absent, spelt another way: found once TMP is open, and TMP (new) removed."""
    os.symlink(".", tmp_path / "here")
    _refused(tmp_path, "here/x.cdb", "x.cdb", None, "are the same file")


def test_tmp_is_rules_refused(tmp_path: Path) -> None:
    (tmp_path / "tcp.smtp").write_bytes(RULES)
    _refused(tmp_path, "x.cdb", "tcp.smtp", "tcp.smtp", "the rules are read from tcp.smtp")
    # forgetting TMP: "cdbrules compile x.cdb tcp.smtp < something" must not eat the rules
    _refused(tmp_path, "x.cdb", "tcp.smtp", None, "tcp.smtp exists and holds text")


def test_tmp_is_rules_on_stdin_refused(tmp_path: Path) -> None:
    (tmp_path / "r.tmp").write_bytes(bytes(2048) + RULES)  # not text, but it is the input
    with open(tmp_path / "r.tmp", "rb") as f:
        r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "r.tmp"], stdin=f,
                           capture_output=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 100 and b"the rules are read from r.tmp" in r.stderr
    assert (tmp_path / "r.tmp").read_bytes() == bytes(2048) + RULES


def test_api_refusals(tmp_path: Path) -> None:
    _old_cdb(tmp_path)
    with pytest.raises(SameFileError):
        cdbrules.compile(io.BytesIO(RULES), tmp_path / "x.cdb", tmp_path / "x.cdb")
    (tmp_path / "notes.txt").write_bytes(b"keep me\n")
    with pytest.raises(UnsafeTmpError):
        cdbrules.compile(io.BytesIO(RULES), tmp_path / "x.cdb", tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_bytes() == b"keep me\n"
    assert (tmp_path / "x.cdb").read_bytes() == OLD


# -- the input ------------------------------------------------------------------------


def test_input_is_directory(tmp_path: Path) -> None:
    _old_cdb(tmp_path)
    (tmp_path / "rules.d").mkdir()
    before = snapshot(tmp_path)
    r = ours(tmp_path, "x.cdb", "x.tmp", "rules.d")
    assert r.rc == 111 and r.stderr == b"cdbrules: fatal: unable to read rules.d: is a directory\n"
    assert snapshot(tmp_path) == before


def test_input_missing(tmp_path: Path) -> None:
    _old_cdb(tmp_path)
    before = snapshot(tmp_path)
    r = ours(tmp_path, "x.cdb", "x.tmp", "nofile")
    assert r.rc == 111 and r.stderr == b"cdbrules: fatal: unable to read nofile: file does not exist\n"
    assert snapshot(tmp_path) == before


class FailingReader(io.RawIOBase):
    """Rules that fail to read after the first piece (an I/O error mid-file)."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: "memoryview") -> int:  # type: ignore[override]
        self.calls += 1
        if self.calls > 1:
            raise OSError(5, "Input/output error")
        b[:len(RULES)] = RULES
        return len(RULES)


def test_read_error_midway(tmp_path: Path) -> None:
    _old_cdb(tmp_path)
    with pytest.raises(OSError) as info:
        cdbrules.compile(FailingReader(), tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert info.value.errno == 5 and info.value.filename == "<input>"
    assert snapshot(tmp_path) == {"x.cdb": ("file", 0o644 & ~_umask(), OLD)}


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_failed_run_keeps_existing_tmp(tmp_path: Path) -> None:
    """A TMP that was there (an admin's, with the mode CDB should get) is emptied, not removed."""
    _old_cdb(tmp_path)
    (tmp_path / "x.tmp").write_bytes(b"")
    os.chmod(tmp_path / "x.tmp", 0o640)
    ino = (tmp_path / "x.tmp").stat().st_ino
    with pytest.raises(cdbrules.RulesSyntaxError):
        cdbrules.compile(io.BytesIO(RULES + b"1.2.3.4:bogus\n"), tmp_path / "x.cdb", tmp_path / "x.tmp")
    st = (tmp_path / "x.tmp").stat()
    assert (st.st_ino, stat.S_IMODE(st.st_mode), st.st_size) == (ino, 0o640, 0)
    assert (tmp_path / "x.cdb").read_bytes() == OLD


def test_failed_run_removes_its_tmp(tmp_path: Path) -> None:
    big = RULES * 50_000 + b"1.2.3.4:bogus\n"  # records flushed to TMP before the error
    with pytest.raises(cdbrules.RulesSyntaxError) as info:
        cdbrules.compile(io.BytesIO(big), tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert info.value.lineno == 150_001
    assert list(tmp_path.iterdir()) == []


def test_source_kinds(tmp_path: Path) -> None:
    """A path (str, bytes, Path) or a binary file object; a text file object is refused."""
    (tmp_path / "r").write_bytes(RULES)
    outs: List[bytes] = []
    for src in (str(tmp_path / "r"), os.fsencode(tmp_path / "r"), tmp_path / "r"):
        st = cdbrules.compile(src, tmp_path / "x.cdb")  # type: ignore[arg-type]
        assert (st.lines, st.rules, st.keys) == (3, 3, 3)
        outs.append((tmp_path / "x.cdb").read_bytes())
    with open(tmp_path / "r", "rb") as f:
        cdbrules.compile(f, tmp_path / "x.cdb")
    outs.append((tmp_path / "x.cdb").read_bytes())
    assert len(set(outs)) == 1 and not (tmp_path / "x.cdb.tmp").exists()
    with open(tmp_path / "r", "r") as t, pytest.raises(TypeError):
        cdbrules.compile(t, tmp_path / "y.cdb")  # type: ignore[arg-type]
    assert not (tmp_path / "y.cdb").exists() and not (tmp_path / "y.cdb.tmp").exists()


def test_concurrent_runs_share_tmp(tmp_path: Path) -> None:
    """Several compiles with one TMP at once (two qmailctl cdb): each installs a whole file."""
    texts = [RULES + b"%d.%d.%d.%d:deny\n" % (i, i, i, i) * 20_000 for i in range(4)]
    results = set()
    for i, t in enumerate(texts):
        cdbrules.compile(io.BytesIO(t), tmp_path / f"want{i}.cdb")
        results.add((tmp_path / f"want{i}.cdb").read_bytes())
    procs = []
    for i, t in enumerate(texts):
        (tmp_path / f"r{i}").write_bytes(t)
        with open(tmp_path / f"r{i}", "rb") as f:  # (not a pipe: a run waiting for TMP reads nothing yet)
            procs.append(subprocess.Popen([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp"], stdin=f,
                                          stderr=subprocess.PIPE, cwd=tmp_path, start_new_session=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    assert (tmp_path / "x.cdb").read_bytes() in results
    assert not (tmp_path / "x.tmp").exists()
