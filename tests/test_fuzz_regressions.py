"""The fuzzers' inputs, replayed through the Python API and against the reference programs.

fuzz/corpus/ holds the seed corpora of the libFuzzer harnesses (fuzz/run), and
fuzz/regressions/ every input that once broke a property (none of the C core so far: see
the bottom of this file for what the fuzzers and the fault tests found).  Here each one:

* reader inputs are opened as cdb files with :class:`cdbrules.Reader` and searched for
  the keys they hold (and a few others); every answer (value, absent, or
  :class:`CdbFormatError`) must be the answer of freecdb's ``cdbget`` (value, exit 100,
  exit 111) on the same file, damaged files included;
* rules inputs are compiled, whole and read in 1..13-byte pieces: the same file or the
  same error, never another exception; and each goes through test_compile_diff's oracle
  (helpers.Checker): the IPv6 tcprules on the whole text where it ends, else on the part
  before the line it would hang on, and the IPv4 build on the whole text;
* lookup inputs (flags, ip, host, info, then rules text or a cdb image; see
  fuzz/fuzz_lookup.c) are checked with ``cdbrules check`` (in process) and the IPv6 build's
  ``tcprulescheck``: the same output and exit code.

The checks that need no reference program run everywhere; the comparisons skip where the
references cannot run (macOS), saying so.  How much is compared (helpers.replay_counts,
the README's figures) has a floor: test_replay_floors.  Finding-specific tests sit at the
end.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Tuple

import pytest

import cdbrules
from cdbrules import CdbFormatError, Reader, RulesSyntaxError
from cdbrules._native import lib
from cdbrules.cli import main as cli_main
from helpers import CDB_HEADER, Checker, cdbget_keys, check_all, fuzz_units, keys_to_try, lookup_unit, \
    replay_counts, v6_whole


def test_replay_floors() -> None:
    """The committed corpora keep the replay comparing this much with the real programs
    (the README quotes these counts: fuzz/report.py); no rules text goes unjudged."""
    c = replay_counts()
    assert c.reader_files >= 150 and c.reader_lookups >= 500, c  # lookups compared with cdbget
    assert c.rules_files >= 280 and c.rules_v6_whole >= 90, c  # every one compared with tcprules
    assert c.lookups >= 300, c  # connections compared with tcprulescheck


# -- reader ------------------------------------------------------------------------------


def ours(path: Path, key: bytes) -> Tuple[int, bytes]:
    """Reader's answer in cdbget's terms: (0, value), (100, b"") absent, (111, b"") damaged."""
    try:
        with Reader(path) as r:
            v = r.get(key)
    except CdbFormatError:
        return 111, b""
    return (100, b"") if v is None else (0, v)


@pytest.mark.parametrize("unit", fuzz_units("reader"), ids=lambda p: p.name[:12])
def test_reader_unit_matches_cdbget(unit: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = unit.read_bytes()
    path = tmp_path / "x.cdb"
    path.write_bytes(data)
    # whatever the file, iteration ends: records or a CdbFormatError, nothing else
    try:
        with Reader(path) as r:
            n = sum(1 for _ in r.items())
            assert n == len(r)
    except CdbFormatError:
        pass
    if len(data) < CDB_HEADER:  # no cdb: see test_file_shorter_than_its_header
        for key in keys_to_try(data):
            assert ours(path, key) == (111, b"")
        return
    refs = request.getfixturevalue("refs")
    for key in cdbget_keys(data):
        with open(path, "rb") as f:  # a file, not a pipe: cdbget seeks and maps
            ref = refs.run([refs.cdbget, key], stdin=f, timeout=10)
        assert not ref.timed_out
        assert ours(path, key) == (ref.returncode, ref.stdout if ref.returncode == 0 else b""), key


# -- rules -------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A file that returns 1..13 bytes a read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at, self.n = data, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray") -> int:  # type: ignore[override]
        self.n += 1
        k = min(len(b), 1 + self.n % 13, len(self.data) - self.at)
        b[:k] = self.data[self.at:self.at + k]
        self.at += k
        return k


def compile_outcome(src: object, tmp_path: Path, name: str) -> Tuple[str, object]:
    out = tmp_path / f"{name}.cdb"
    try:
        cdbrules.compile(src, out)  # type: ignore[arg-type]
    except RulesSyntaxError as e:
        return "error", (e.lineno, e.column, e.line, e.reason)
    return "ok", out.read_bytes()


@pytest.mark.parametrize("unit", fuzz_units("rules"), ids=lambda p: p.name[:12])
def test_rules_unit(unit: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Whole and trickled give the same; and what the reference tcprules builds give, read
    line by line (docs/compatibility.md, "Parsing"): the same file, or an error on the same
    line."""
    data = unit.read_bytes()
    whole = compile_outcome(io.BytesIO(data), tmp_path, "whole")
    assert compile_outcome(Trickle(data), tmp_path, "trickle") == whole
    if whole[0] == "ok":
        with Reader(tmp_path / "whole.cdb") as r:
            for k, v in r.items():
                assert r.get(k) is not None
                assert v == b"" or v.endswith(b"\0")
    checker: Checker = request.getfixturevalue("checker")
    failures = check_all(checker, [data])
    assert not failures, "\n".join(failures)
    c = checker.counts
    assert c.get("v4 same as ours", 0) + c.get("v4 differs (IPv6 separator)", 0) == 1, c  # IPv4 build: ran
    assert ("v6 would hang on the whole input" not in c) == v6_whole(data), c  # IPv6 build: on what


# -- lookup -------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", fuzz_units("lookup"), ids=lambda p: p.name[:12])
def test_lookup_unit_matches_tcprulescheck(unit: Path, tmp_path: Path, refs: object,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    flags, ip, host, info, rest = lookup_unit(unit.read_bytes())
    cdb = tmp_path / "rules.cdb"
    if flags & 4:
        cdb.write_bytes(rest)
    else:
        try:
            cdbrules.compile(io.BytesIO(rest), cdb)
        except RulesSyntaxError as e:  # as the harness does: keep the lines before the bad one
            start = 0
            for _ in range(e.lineno - 1):
                start = rest.index(b"\n", start) + 1
            cdbrules.compile(io.BytesIO(rest[:start]), cdb)
    env = {"TCPREMOTEIP": os.fsdecode(ip),
           "TCPREMOTEHOST": os.fsdecode(host) if flags & 1 else None,
           "TCPREMOTEINFO": os.fsdecode(info) if flags & 2 else None}
    ref = refs.run([refs.tcprulescheck_v6, str(cdb)], env=env, timeout=10)  # type: ignore[attr-defined]
    for k, v in env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    capfdbinary.readouterr()
    rc = cli_main(["check", str(cdb)])
    out, err = capfdbinary.readouterr()
    assert (rc, out) == (ref.returncode, ref.stdout), err


# -- findings ------------------------------------------------------------------------------
#
# The fuzzers (fuzz/run; the last run's figures: fuzz/report.py) have found no crash,
# over-read, hang or broken property in the C core (fuzz/regressions/ would hold it).  The fault tests found one bug (a write refused by RLIMIT_FSIZE was reported as the
# cdb format's 4 GiB limit: test_faults.test_write_fails_half_way).  Comparing the replay
# with cdbget turned up two deliberate differences on damaged files, pinned here.


def test_huge_table_is_corrupt_where_djb_wraps(tmp_path: Path, refs: object) -> None:
    """A header entry claiming 2^31 slots, placed so that djb's 32-bit slot arithmetic
    wraps back onto the real table.  djb's reader (freecdb cdbget, tcprulescheck) computes
    slot positions modulo 2^32 and so reads a slot inside the file; cdbrules computes them
    exactly, finds the slot past the end and calls the file corrupt.  No writer makes such a
    table (its slots alone would need 16 GiB); for a forged one, an error is the safe answer
    (tcpserver drops the connection instead of maybe matching a later, broader rule)."""
    good = tmp_path / "good.cdb"
    with cdbrules.Writer(good) as w:
        w.add(b"a", b"b")
    data = bytearray(good.read_bytes())
    h = lib.cdb_hash(b"a", 1)
    tpos, slots = int.from_bytes(data[(h & 255) * 8:(h & 255) * 8 + 4], "little"), 1 << 31
    forged = (tpos - ((h >> 8) % slots) * 8) & 0xFFFFFFFF  # + start slot * 8 wraps to tpos
    data[(h & 255) * 8:(h & 255) * 8 + 8] = forged.to_bytes(4, "little") + slots.to_bytes(4, "little")
    bad = tmp_path / "bad.cdb"
    bad.write_bytes(bytes(data))
    with open(bad, "rb") as f:
        ref = refs.run([refs.cdbget, "a"], stdin=f, timeout=10)  # type: ignore[attr-defined]
    assert ref.returncode == 100  # djb: read the wrapped slot, found it empty: "not found"
    assert ours(bad, b"a") == (111, b"")
    with Reader(good) as r:
        assert r[b"a"] == b"b"


def test_file_shorter_than_its_header(tmp_path: Path, refs: object) -> None:
    """A file cut short inside its 2048-byte header: djb's reader answers from whatever
    header entries survive (cdbget: 'not found' for a key whose entry is there and says 0
    slots), cdbrules refuses the file as a whole, whatever the key (docs/compatibility.md,
    "Damaged cdb files")."""
    with cdbrules.Writer(tmp_path / "good.cdb") as w:
        w.add(b"a", b"b")
    cut = tmp_path / "cut.cdb"
    cut.write_bytes((tmp_path / "good.cdb").read_bytes()[:1900])
    def bucket(k: bytes) -> int:
        return int(lib.cdb_hash(k, len(k)) & 255)

    # a key whose header entry survives the cut and is an empty bucket
    key = next(k for k in (b"k%d" % i for i in range(1000)) if bucket(k) * 8 + 8 <= 1900 and bucket(k) != bucket(b"a"))
    with open(cut, "rb") as f:
        ref = refs.run([refs.cdbget, key], stdin=f, timeout=10)  # type: ignore[attr-defined]
    assert ref.returncode == 100
    assert ours(cut, key) == (111, b"")
    with pytest.raises(CdbFormatError, match="too short"):
        Reader(cut)
