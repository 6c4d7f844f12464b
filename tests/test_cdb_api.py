"""The Python API for cdb files: Reader, Writer, make().

What is written is the oracle here: a Reader must give back exactly the records a
Writer added, in order, duplicates included.  (Byte-identity with cdbmake and tinycdb is
tested in test_cdb_differential.py; damaged files in test_cdb_hostile.py.)
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdbrules import CdbFormatError, Reader, Writer
from cdbrules import MakeInputError, SizeLimitError, make
from helpers import maxrss_kib

RECS: List[Tuple[bytes, bytes]] = [
    (b"a", b"1"),
    (b"", b""),
    (b"b", b"\x00\xff\n"),
    (b"a", b"2"),
    ("ключ".encode(), "значение".encode()),
    (b"a", b""),
]


def write(path: Path, recs: List[Tuple[bytes, bytes]]) -> None:
    with Writer(path) as w:
        for k, v in recs:
            w.add(k, v)


def size_of(recs: List[Tuple[bytes, bytes]]) -> int:
    """The file size the format prescribes (docs/format.md, "Layout")."""
    return 2048 + sum(8 + len(k) + len(v) for k, v in recs) + 16 * len(recs)


# -- Reader --------------------------------------------------------------------------------


def test_lookups(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, RECS)
    with Reader(path) as r:
        assert r[b"a"] == b"1" and r.get(b"a") == b"1"
        assert r.get_all(b"a") == [b"1", b"2", b""]
        assert r[b""] == b"" and b"" in r
        assert r["ключ"] == "значение".encode()  # str keys are UTF-8
        assert "ключ" in r and r.get_all("ключ") == ["значение".encode()]
        assert r.get(b"zz") is None and r.get(b"zz", b"dflt") == b"dflt" and r.get_all(b"zz") == []
        assert b"zz" not in r
        with pytest.raises(KeyError):
            r[b"zz"]
        assert r[bytearray(b"b")] == r[memoryview(b"b")] == b"\x00\xff\n"
        with pytest.raises(TypeError):
            r.get(5)  # type: ignore[arg-type]


def test_iteration_is_file_order_with_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, RECS)
    with Reader(path) as r:
        assert len(r) == len(RECS)
        assert list(r.items()) == RECS
        assert list(r.keys()) == [k for k, _ in RECS] == list(r)
        assert list(r.values()) == [v for _, v in RECS]


def test_empty_cdb(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, [])
    assert path.stat().st_size == 2048
    with Reader(path) as r:
        assert len(r) == 0 and list(r.items()) == [] and r.get(b"") is None


def test_values_outlive_close(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, RECS)
    r = Reader(path)
    v, allv, items = r[b"b"], r.get_all(b"a"), list(r.items())
    r.close()
    r.close()  # twice is fine
    assert r.closed
    assert v == b"\x00\xff\n" and allv == [b"1", b"2", b""] and items == RECS
    for op in (lambda: r[b"a"], lambda: r.get(b"a"), lambda: b"a" in r, lambda: r.get_all(b"a"),
               lambda: len(r), lambda: list(r.items()), lambda: list(r.keys()), lambda: list(r.values())):
        with pytest.raises(ValueError, match="closed"):
            op()
    assert "closed" in repr(r)


def test_with_closes(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, RECS)
    with Reader(path) as r:
        assert not r.closed
    assert r.closed


def test_open_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.cdb"
    with pytest.raises(FileNotFoundError) as ei:
        Reader(missing)
    assert ei.value.filename == str(missing)
    with pytest.raises(IsADirectoryError) as ei2:
        Reader(tmp_path)
    assert ei2.value.filename == str(tmp_path)
    short = tmp_path / "short.cdb"
    short.write_bytes(b"\0" * 2047)
    with pytest.raises(CdbFormatError) as ei3:
        Reader(short)
    assert isinstance(ei3.value, ValueError)
    assert ei3.value.path == str(short) and str(short) in str(ei3.value)


def test_corrupt_file_raises_cdb_format_error(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    write(path, RECS)
    data = bytearray(path.read_bytes())
    data[2048:2052] = b"\xff\xff\xff\xff"  # the first record's key length
    path.write_bytes(bytes(data))
    with Reader(path) as r:
        with pytest.raises(CdbFormatError) as ei:
            list(r.items())
        assert ei.value.path == str(path)
        with pytest.raises(CdbFormatError):
            len(r)


@settings(max_examples=int(os.environ.get("CDBRULES_DIFF_N", "60")), deadline=None,
          derandomize=bool(os.environ.get("CI")))
@given(recs=st.lists(st.tuples(st.binary(max_size=6), st.binary(max_size=30)), max_size=50))
def test_roundtrip(tmp_path_factory: pytest.TempPathFactory, recs: List[Tuple[bytes, bytes]]) -> None:
    path = tmp_path_factory.mktemp("rt") / "x.cdb"
    write(path, recs)
    assert path.stat().st_size == size_of(recs)
    with Reader(path) as r:
        assert list(r.items()) == recs and len(r) == len(recs)
        for k in {k for k, _ in recs}:
            want = [v for kk, v in recs if kk == k]
            assert r.get_all(k) == want and r[k] == want[0]


# -- Writer --------------------------------------------------------------------------------


def test_writer_installs_only_on_clean_exit(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    path.write_bytes(b"old")
    with Writer(path) as w:
        w.add(b"k", b"v")
        assert path.read_bytes() == b"old"  # not yet
        assert (tmp_path / "x.cdb.tmp").exists()
    assert not (tmp_path / "x.cdb.tmp").exists()
    with Reader(path) as r:
        assert r[b"k"] == b"v"
    assert "closed" in repr(w)


def test_writer_exception_leaves_path_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with Writer(path, tmp_path / "my.tmp") as w:
            w.add(b"k", b"v")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cdb"]


def test_writer_add_after_close(tmp_path: Path) -> None:
    w = Writer(tmp_path / "x.cdb")
    w.add("str key", "str value")
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add(b"k", b"v")
    w2 = Writer(tmp_path / "y.cdb")
    w2.abort()
    with pytest.raises(ValueError, match="closed"):
        w2.add(b"k", b"v")
    assert not (tmp_path / "y.cdb").exists() and not (tmp_path / "y.cdb.tmp").exists()
    with Reader(tmp_path / "x.cdb") as r:
        assert r["str key"] == b"str value"


def test_writer_path_types(tmp_path: Path) -> None:
    for p in (str(tmp_path / "s.cdb"), os.fsencode(tmp_path / "b.cdb"), tmp_path / "p.cdb"):
        with Writer(p) as w:  # type: ignore[arg-type]
            w.add(b"k", b"v")
        with Reader(p) as r:  # type: ignore[arg-type]
            assert r[b"k"] == b"v"


def test_writer_os_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        Writer(tmp_path / "nodir" / "x.cdb")
    assert ei.value.filename == str(tmp_path / "nodir" / "x.cdb.tmp")
    w = Writer(tmp_path / "nodir2" / "x.cdb", tmp_path / "x.tmp")
    w.add(b"k", b"v")
    with pytest.raises(FileNotFoundError) as ei:
        w.close()
    assert ei.value.filename == str(tmp_path / "x.tmp")
    assert not (tmp_path / "x.tmp").exists()


def test_writer_threads(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    with Writer(path) as w:
        def work(t: int) -> None:
            for i in range(2000):
                w.add(b"%d" % t, b"%d" % i)
        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    with Reader(path) as r:
        assert len(r) == 8000
        for t in range(4):
            assert r.get_all(b"%d" % t) == [b"%d" % i for i in range(2000)]


@pytest.mark.parametrize("slack", [0, -1])
def test_writer_limit(tmp_path: Path, slack: int) -> None:
    """Past the size limit (4 GiB, lowered here): a clean OSError, never a corrupt file."""
    recs = [(b"key%d" % i, b"v" * 100) for i in range(50)]
    path = tmp_path / "x.cdb"
    path.write_bytes(b"old")
    w = Writer(path, _limit=size_of(recs) + slack)
    if slack == 0:
        for k, v in recs:
            w.add(k, v)
        w.close()
        assert path.stat().st_size == size_of(recs)
        with Reader(path) as r:
            assert list(r.items()) == recs
        return
    with pytest.raises(OSError) as ei:
        for k, v in recs:
            w.add(k, v)
    assert ei.value.errno == errno.EFBIG and isinstance(ei.value, SizeLimitError)
    assert ei.value.filename == str(tmp_path / "x.cdb.tmp")
    assert "4 GiB" in str(ei.value)
    assert w.closed
    with pytest.raises(ValueError):
        w.add(b"k", b"v")
    assert path.read_bytes() == b"old"
    assert not (tmp_path / "x.cdb.tmp").exists()


# -- make() --------------------------------------------------------------------------------


def _input(recs: List[Tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in recs) + b"\n"


def test_make_sources(tmp_path: Path) -> None:
    data = _input(RECS)
    (tmp_path / "in").write_bytes(data)
    assert make(tmp_path / "in", tmp_path / "a.cdb") == len(RECS)
    assert make(io.BytesIO(data), tmp_path / "b.cdb", tmp_path / "b.tmp") == len(RECS)
    fd = os.open(tmp_path / "in", os.O_RDONLY)
    try:
        assert make(fd, tmp_path / "c.cdb") == len(RECS)
    finally:
        os.close(fd)
    a = (tmp_path / "a.cdb").read_bytes()
    assert a == (tmp_path / "b.cdb").read_bytes() == (tmp_path / "c.cdb").read_bytes()
    with Reader(tmp_path / "a.cdb") as r:
        assert list(r.items()) == RECS


def test_make_chunk_boundaries(tmp_path: Path) -> None:
    """Input arriving a byte at a time parses as it does in one piece."""
    data = _input(RECS * 5)

    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            if self.pos >= len(data):
                return 0
            b[0] = data[self.pos]
            self.pos += 1
            return 1

    assert make(Trickle(), tmp_path / "t.cdb") == len(RECS) * 5  # type: ignore[arg-type]
    make(io.BytesIO(data), tmp_path / "w.cdb")
    assert (tmp_path / "t.cdb").read_bytes() == (tmp_path / "w.cdb").read_bytes()


def test_make_input_error(tmp_path: Path) -> None:
    (tmp_path / "x.cdb").write_bytes(b"old")
    with pytest.raises(MakeInputError) as ei:
        make(io.BytesIO(b"+1,1:a->b\n+1,1:a->bc\n\n"), tmp_path / "x.cdb")
    e = ei.value
    assert isinstance(e, ValueError)
    assert (e.entry, e.offset, e.byte) == (2, 19, ord("c"))
    assert "newline expected" in e.reason
    assert (tmp_path / "x.cdb").read_bytes() == b"old"
    assert not (tmp_path / "x.cdb.tmp").exists()
    with pytest.raises(MakeInputError) as ei:
        make(io.BytesIO(b"+1,1:a->b\n"), tmp_path / "x.cdb")
    assert (ei.value.entry, ei.value.offset, ei.value.byte) == (2, 10, None)


def test_make_limit(tmp_path: Path) -> None:
    recs = [(b"k%d" % i, b"v" * 10) for i in range(20)]
    with pytest.raises(OSError) as ei:
        make(io.BytesIO(_input(recs)), tmp_path / "x.cdb", _limit=size_of(recs) - 1)
    assert isinstance(ei.value, SizeLimitError) and "entry 20" in str(ei.value)
    assert not (tmp_path / "x.cdb").exists() and not (tmp_path / "x.cdb.tmp").exists()
    assert make(io.BytesIO(_input(recs)), tmp_path / "x.cdb", _limit=size_of(recs)) == 20


# -- memory grows with the number of records, not their size --------------------------------

_MAXRSS = """
import os, resource, subprocess, sys
"""


def _child_maxrss_kib(script: str) -> int:
    """What script prints last, a figure from ru_maxrss, in KiB."""
    r = subprocess.run([sys.executable, "-c", _MAXRSS + script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return maxrss_kib(int(r.stdout.split()[-1]))


def test_make_streams_big_records(tmp_path: Path) -> None:
    """`cdbrules make` holds neither a 64 MiB value nor a 32 MiB key in memory."""
    out = tmp_path / "x.cdb"

    def run(klen: int, dlen: int) -> int:
        feeder = (
            "import sys\n"
            "w = sys.stdout.buffer\n"
            "chunk = memoryview(b'x' * (1 << 20))\n"
            "def blob(n):\n"
            "    while n:\n"
            "        c = min(n, 1 << 20); w.write(chunk[:c]); n -= c\n"
            f"w.write(b'+{klen},{dlen}:'); blob({klen}); w.write(b'->'); blob({dlen}); w.write(b'\\n\\n')\n"
        )
        script = (
            f"f = subprocess.Popen([sys.executable, '-c', {feeder!r}], stdout=subprocess.PIPE)\n"
            f"m = subprocess.Popen([sys.executable, '-m', 'cdbrules', 'make', {str(out)!r}, {str(out) + '.tmp'!r}],"
            " stdin=f.stdout)\n"
            "f.stdout.close()\n"
            "_, status, usage = os.wait4(m.pid, 0)\n"  # the make process's own peak, not the feeder's
            "assert status == 0 and f.wait() == 0\n"
            "print(usage.ru_maxrss)\n"
        )
        return _child_maxrss_kib(script)

    base = run(1, 1)
    big = run(32 << 20, 64 << 20)
    assert out.stat().st_size == size_of([(b"x" * (32 << 20), b"x" * (64 << 20))])
    assert big < base + 24 * 1024, (base, big)  # KiB: a buffered record would add 96 MiB


def test_writer_memory_does_not_grow_with_value_size(tmp_path: Path) -> None:
    out = tmp_path / "x.cdb"
    script = (
        "from cdbrules import Writer\n"
        "v = b'x' * (8 << 20)\n"
        "def usage(n):\n"
        f"    with Writer({str(out)!r}) as w:\n"
        "        for i in range(n): w.add(b'k%d' % i, v)\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "a = usage(1); b = usage(16)\n"
        "print(b - a)\n"
    )
    grown = _child_maxrss_kib(script)
    assert grown < 24 * 1024, grown  # KiB: keeping the values would add 120 MiB
