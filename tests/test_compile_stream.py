"""The parser streams: text is parsed as it is read, and memory follows the number of
records, not the size of the text.  A line has a limit (RULES_MAX_LINE), so an endless one
is an error, not all of memory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Tuple

import pytest

import cdbrules
from cdbrules import RulesSyntaxError
from cdbrules._native import ffi, lib
from helpers import maxrss_kib


class Endless(io.RawIOBase):
    """A first chunk of text, then the filler for ever (comment lines unless told);
    counts the bytes handed out."""

    def __init__(self, first: bytes, filler: bytes = b"#x:deny\n") -> None:
        self.first = first
        self.filler = filler
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: "memoryview") -> int:  # type: ignore[override]
        if self.given == 0:
            n = len(self.first)
            b[:n] = self.first
        else:
            n = len(b) - len(b) % len(self.filler)
            b[:n] = self.filler * (n // len(self.filler))
        self.given += n
        return n


def test_error_before_the_end_of_the_input(tmp_path: Path) -> None:
    """A bad line stops the compile at once: the rest of the input is never read."""
    src = Endless(b"1.2.3.4:allow\n1.2.3.5:allow,\n")
    with pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(src, tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert info.value.lineno == 2
    assert src.given < 100
    assert list(tmp_path.iterdir()) == []


RSS = textwrap.dedent("""
    import io, resource, sys
    import cdbrules

    LINE = b"# a comment line, about as long as a rule: 1.2.3.4:deny\\n"

    class Stream(io.RawIOBase):
        def __init__(self, lines):
            self.left = lines * len(LINE)
            self.block = LINE * 20000
        def readable(self):
            return True
        def readinto(self, b):
            n = min(len(b), len(self.block), self.left)
            n -= n % len(LINE)
            b[:n] = self.block[:n]
            self.left -= n
            return n

    st = cdbrules.compile(Stream(int(sys.argv[1])), sys.argv[2])
    print(st.lines, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _rss(tmp_path: Path, lines: int) -> int:
    """Peak RSS in KiB of a process that compiles LINES comment lines."""
    r = subprocess.run([sys.executable, "-c", RSS, str(lines), str(tmp_path / "x.cdb")], capture_output=True,
                       timeout=300, check=True)
    got, maxrss = map(int, r.stdout.split())
    assert got == lines
    return maxrss_kib(maxrss)


def test_memory_does_not_follow_the_text(tmp_path: Path) -> None:
    """Some 280 MB of text that makes no record needs no more memory than 1 MB does."""
    small = _rss(tmp_path, 20_000)
    big = _rss(tmp_path, 5_000_000)
    assert big - small < 8 * 1024, (small, big)


def test_stats(tmp_path: Path) -> None:
    text = b"# comment\n\n1.2.3.1-3:deny\n1.2.3.9-5:allow\nno colon here\n5.6.7.8:allow,A=\"1\"\n1.2.3.1-3:deny"
    st = cdbrules.compile(io.BytesIO(text), tmp_path / "x.cdb")
    assert (st.lines, st.rules, st.keys) == (7, 4, 7)
    with cdbrules.Reader(tmp_path / "x.cdb") as r:
        assert len(list(r.keys())) == st.keys  # (keys() lists every record, duplicates too)


# -- the line limit ---------------------------------------------------------------------


def test_endless_line_is_an_error_not_all_of_memory(tmp_path: Path) -> None:
    """A line longer than RULES_MAX_LINE (64 MiB) stops the compile: the wrong input, such as
    /dev/zero, fails on its first line instead of taking memory until the system kills it."""
    cdb = tmp_path / "x.cdb"
    cdb.write_bytes(b"the old cdb")
    src = Endless(b"\0", filler=b"\0")  # /dev/zero
    with pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(src, cdb, tmp_path / "x.tmp")
    e = info.value
    limit = int(lib.RULES_MAX_LINE)
    assert limit == 64 << 20
    assert (e.lineno, e.column, e.line) == (1, limit, bytes(limit))
    assert "longer than 64 MiB" in e.reason and "is this the rules text?" in e.reason
    assert limit < src.given <= limit + (2 << 20)  # it stopped reading at once
    assert cdb.read_bytes() == b"the old cdb" and not (tmp_path / "x.tmp").exists()


def test_endless_input_from_the_command_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp", "/dev/zero"],
                       capture_output=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 100 and r.stdout == b""
    err = r.stderr.decode("ascii")
    assert err.count("\n") == 1 and err.startswith("cdbrules: /dev/zero:1: the line is longer than 64 MiB, starting '\\x00")
    assert len(err) < 300
    assert list(tmp_path.iterdir()) == []


def _feed(text: bytes, maxline: int, pieces: int) -> Tuple[int, object]:
    """Parse text with the line limit lowered to maxline, fed in pieces of that size:
    (the return of the last call, the parser)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    m = ffi.new("struct cdb_make *")
    p = ffi.new("struct rules_parser *")
    try:
        assert lib.cdb_make_start(m, fd) == 0
        assert lib.rules_parser_init(p, m) == 0 and p.maxline == lib.RULES_MAX_LINE
        p.maxline = maxline
        for at in range(0, len(text), pieces):
            rc = lib.rules_feed(p, text[at:at + pieces], len(text[at:at + pieces]))
            if rc < 0:
                return rc, (int(p.err.code), int(p.err.lineno), int(p.err.column),
                            bytes(ffi.buffer(p.err.line, p.err.linelen)), int(p.keys))
        rc = lib.rules_finish(p)
        return rc, (int(p.err.code), int(p.lineno), int(p.keys))
    finally:
        lib.rules_parser_free(p)
        lib.cdb_make_free(m)
        os.close(fd)


@pytest.mark.parametrize("pieces", [1, 3, 7, 1000])
def test_line_limit_boundary(pieces: int) -> None:
    """A line of exactly maxline bytes (its newline not counted) is parsed; one byte more is
    refused, wherever the pieces of the text fall; comment lines may be of any length."""
    ok = b"1.2.3.4:allow,A=\"" + b"x" * 14 + b"\""  # 32 bytes
    assert len(ok) == 32
    for tail in (b"\n", b""):
        assert _feed(b"#" + b"c" * 500 + b"\n" + ok + tail, 32, pieces) == (0, (0, 2, 1))
    long = b"1.2.3.4:allow,A=\"" + b"x" * 15 + b"\""
    for tail in (b"\n", b""):
        rc, (code, lineno, column, line, keys) = _feed(b"5.6.7.8:deny\n\n" + long + tail + b"9:deny\n", 32, pieces)
        assert (rc, code, lineno, column, line, keys) == (-1, lib.RULES_E_LONGLINE, 3, 32, long[:32], 1)
