"""Lookups in a rules file larger than the caches.

On files past RULES_PREFETCH_SIZE (4 MiB) the C lookup lists an IP's keys first and
prefetches their hash slots (csrc/rules_lookup.c), and searches consult the bitmap of the
file's hashes first (csrc/cdb_seen.c); such a file is read into memory asked to be backed by
huge pages (reader.py).  Smaller files, which every other rules test uses, take none of
these paths.  Here a block list big enough for them is checked against the general path
(Rules.explain: one cdb_find per key) for every query, against the same lookups without the
bitmap, and against tcprulescheck of the IPv6 build, the real program, for a sample.
"""

from __future__ import annotations

import mmap
import os
import random
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import cdbrules
from cdbrules import _bindings as C
from cdbrules.commands.check import tcprulescheck_output
from cdbrules.reader import _read_all, read_cdb

N_NETS = int(os.environ.get("CDBRULES_LARGE_NETS", "160000"))
N_QUERIES = int(os.environ.get("CDBRULES_LARGE_QUERIES", "4000"))
N_REFERENCE = int(os.environ.get("CDBRULES_LARGE_REFERENCE", "150"))


def _rules_text(rng: random.Random) -> "tuple[bytes, list[tuple[int, int, int]]]":
    nets = set()
    while len(nets) < N_NETS:
        nets.add((rng.randrange(1, 224), rng.randrange(256), rng.randrange(256)))
    ordered = sorted(nets)
    lines = [b"127.:allow,RELAYCLIENT=\"\""]
    for i, (a, b, c) in enumerate(ordered):
        if i % 97 == 0:  # an exact address with its own environment, before its net
            lines.append(b'%d.%d.%d.%d:allow,RBLSMTPD="",N="%d"' % (a, b, c, i % 256, i))
        lines.append(b"%d.%d.%d.:deny" % (a, b, c))
    lines += [b"10.:allow,RELAYCLIENT=\"\"", b"2001:db8::deny", b':allow,CHKUSER_RCPTLIMIT="15"']
    return b"\n".join(lines) + b"\n", ordered


def _queries(rng: random.Random, nets: "list[tuple[int, int, int]]") -> "list[str]":
    out = []
    for i in range(N_QUERIES):
        kind = i % 4
        if kind < 2:  # inside a blocked net (some of them the exact allowed address)
            a, b, c = rng.choice(nets)
            out.append(f"{a}.{b}.{c}.{rng.randrange(256)}")
        elif kind == 2:  # anywhere
            out.append(".".join(str(rng.randrange(256)) for _ in range(4)))
        else:
            out.append(rng.choice(["127.0.0.1", "10.9.8.7", "2001:db8::25", "2001:db9::1", "::1", "", "1.", "0.0.0.0"]))
    return out


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Path, List[str]]]:
    """The compiled block list and the queries for it."""
    tmp = tmp_path_factory.mktemp("large")
    rng = random.Random(20261125)
    text, nets = _rules_text(rng)
    src = tmp / "block.smtp"
    src.write_bytes(text)
    cdb = tmp / "block.cdb"
    cdbrules.compile(src, cdb)
    assert cdb.stat().st_size > 4 << 20, "the file must be large enough for the prefetching path"
    yield cdb, _queries(rng, nets)


def test_large_file_lookups_agree(refs, large: Tuple[Path, List[str]]) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261201)
    cdb, ips = large
    with cdbrules.Rules(cdb) as rules:
        many = rules.check_many(ips, exact=True)  # tcprulescheck's view: "" and "1." too
        kinds = set()
        for ip, d in zip(ips, many):
            single = rules.check(ip, exact=True)
            probes = rules.explain(ip, exact=True)  # the general path: one cdb_find per key
            matched = probes[-1][0] if probes and probes[-1][1] else None
            assert single.key == matched == d.key, ip
            assert single is d  # the same record gives the same (cached) decision
            kinds.add((d.rule or "").count(".") if d.rule is not None else -1)
        assert {0, 1, 3} <= kinds, kinds  # default rule, 10. / 127., a.b.c. nets all seen
        for ip in rng.sample(ips, min(N_REFERENCE, len(ips))):
            env = {"TCPREMOTEIP": ip}
            r = refs.run([refs.tcprulescheck_v6, str(cdb)], env=env)
            assert r.returncode == 0 and not r.timed_out, (ip, r)
            assert r.stdout == tcprulescheck_output(rules.check(ip, exact=True)), ip


def _plain(data: object) -> Tuple[object, object]:
    """A struct cdb over data without the bitmap (cdb_init alone), and its buffer."""
    buf = C.ffi.from_buffer(data)
    c = C.ffi.new("struct cdb *")
    assert C.lib.cdb_init(c, buf, len(buf)) == 0
    return c, buf


def test_seen_bitmap_changes_no_answer(large: Tuple[Path, List[str]]) -> None:
    """Every lookup answers the same with the bitmap of the file's hashes as without it,
    and the bitmap does leave most hashes out (it would answer nothing otherwise)."""
    cdb, ips = large
    data = cdb.read_bytes()
    seen_c, held = C.open_cdb(data)
    plain_c, _buf = _plain(data)
    assert isinstance(held, tuple), "a file past 4 MiB gets the bitmap"
    bitmap = bytes(C.ffi.buffer(held[1]))
    assert len(bitmap) == C.lib.cdb_seen_size(seen_c) and len(bitmap) & (len(bitmap) - 1) == 0
    ones = sum(bin(b).count("1") for b in bitmap)
    assert 0 < ones < len(bitmap) * 8 // 4, (ones, len(bitmap))
    hosts = [None, b"mail.example.com", b"x.invalid"]
    for i, ip in enumerate(ips):
        b = ip.encode()
        assert C.lib.rules_check_ip(seen_c, b) == C.lib.rules_check_ip(plain_c, b), ip
        host = hosts[i % 3]
        assert (C.lib.rules_check(seen_c, b, host or C.NULL, C.NULL)
                == C.lib.rules_check(plain_c, b, host or C.NULL, C.NULL)), (ip, host)
    # every key of the file is found, at the same record; absent keys stay absent
    rng = random.Random(7)
    with cdbrules.Reader(cdb) as reader:
        keys = [k for k, _ in reader.items()]
    probes = keys + [k + b"x" for k in rng.sample(keys, 2000)] + [b"%d.%d." % (rng.randrange(256), rng.randrange(256))
                                                                  for _ in range(2000)]
    absent = 0
    for k in probes:
        got = C.lib.cdb_get(seen_c, k, len(k))
        assert got == C.lib.cdb_get(plain_c, k, len(k)), k
        absent += got == 0
    assert absent > 2000


def test_seen_bitmap_needs_every_table_inside(large: Tuple[Path, List[str]], tmp_path: Path) -> None:
    """A big file with a hash table outside it gets no bitmap: its searches read the tables
    and meet the damage (CdbFormatError) exactly where they did before."""
    cdb, _ = large
    data = bytearray(cdb.read_bytes())
    with cdbrules.Reader(cdb) as reader:
        key = next(k for k, _ in reader.items() if C.lib.cdb_hash(k, len(k)) & 255 == 7)
    data[7 * 8:7 * 8 + 8] = (len(data) - 8).to_bytes(4, "little") + (3).to_bytes(4, "little")
    c, held = C.open_cdb(bytes(data))
    assert not isinstance(held, tuple) and C.lib.cdb_seen_size(c) == 0
    bad = tmp_path / "bad.cdb"
    bad.write_bytes(bytes(data))
    with cdbrules.Reader(bad) as reader:
        with pytest.raises(cdbrules.CdbFormatError):
            reader.get(key)
        other = next(k for k, _ in reader.items() if C.lib.cdb_hash(k, len(k)) & 255 == 8)
        assert reader.get(other) is not None


@pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE"), reason="no MADV_HUGEPAGE on " + sys.platform)
def test_big_file_read_whole_into_its_own_memory(large: Tuple[Path, List[str]], tmp_path: Path) -> None:
    """A file past 4 MiB is read into an anonymous mapping (huge pages asked for): a copy,
    which a later change to the file does not reach; a file shorter than its size said
    gives the bytes there are (read_cdb then refuses it as changed while read)."""
    cdb, _ = large
    mm, c, _held, st, _ = read_cdb(cdb)
    assert isinstance(mm, mmap.mmap) and len(mm) == st.st_size
    want = cdb.read_bytes()
    assert mm[:] == want
    copy = tmp_path / "copy.cdb"
    copy.write_bytes(want)
    mm2, _, _, _, _ = read_cdb(copy)
    with open(copy, "r+b") as f:  # written in place after the read: the copy in memory stays
        f.write(b"\xff" * 4096)
    assert mm2[:] == want
    fd = os.open(cdb, os.O_RDONLY)
    try:
        short = _read_all(fd, len(want) + 4096)
    finally:
        os.close(fd)
    assert len(short) == len(want) and short[:] == want
