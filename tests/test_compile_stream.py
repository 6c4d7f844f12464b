"""The parser streams: text is parsed as it is read, and memory follows the number of
records, not the size of the text."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cdbrules
from cdbrules import RulesSyntaxError


class Endless(io.RawIOBase):
    """A first chunk of text, then comment lines for ever; counts the bytes handed out."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: "memoryview") -> int:  # type: ignore[override]
        if self.given == 0:
            n = len(self.first)
            b[:n] = self.first
        else:
            n = len(b) - len(b) % 8
            b[:n] = b"#x:deny\n" * (n // 8)
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
    r = subprocess.run([sys.executable, "-c", RSS, str(lines), str(tmp_path / "x.cdb")], capture_output=True,
                       timeout=300, check=True)
    got, kb = map(int, r.stdout.split())
    assert got == lines
    return kb


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
