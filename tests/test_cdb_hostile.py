"""Hostile cdb files: truncated, bytes flipped, pointers and lengths past the end, loops.

Every file must give a clean answer or a clean error, never a crash, a hang or an
exception other than :class:`CdbFormatError`/:class:`OSError` (both naming the file):

* the Python API (``Reader``: open, lookups, ``get_all``, ``len``, iteration);
* ``cdbrules dump/stats/get``, compared with freecdb's ``cdbdump``/``cdbstats``/``cdbget``
  fed the same file: same exit code and same standard output, and the same reason
  ("truncated file" / "protocol error") when both fail.

Where the real tool does not behave sanely the comparison is left out, and only
cleanliness is checked: it crashed or hung; or a hash table's end lies past 4 GiB, where
djb's 32-bit slot arithmetic wraps round and reads the header as slots (ours reports a
protocol error); or (cdbget only) the file is shorter than its 2048-byte header, where
cdbget answers from whatever header entries exist (ours: not a cdb file).

Size knobs: ``CDBRULES_HOSTILE_N`` random byte-flip cases per base file (default 60),
``CDBRULES_HOSTILE_CUTS`` truncation points per base file (default 120; every record
and 1024-byte piece boundary is always among them).
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest

from cdbrules import CdbFormatError, Reader, Writer
from cdbrules._native import lib
from helpers import bucket_keys, run_cli

HOSTILE_N = int(os.environ.get("CDBRULES_HOSTILE_N", "60"))
CUTS = int(os.environ.get("CDBRULES_HOSTILE_CUTS", "120"))
HEADER = 2048
U32 = 1 << 32

Records = List[Tuple[bytes, bytes]]


BASES: Dict[str, Records] = {
    "small": [(b"a", b"1"), (b"b", b"two"), (b"a", b"3"), (b"", b"empty key"), (b"key", b""), (b"a", b"5")],
    "collide": [(k, b"v%d" % i) for i, k in enumerate(bucket_keys(3, 12, b"c") * 2)],
    # cdbstats passes over keys longer than 1024 bytes; cdbdump copies in 1024-byte pieces
    "long": [(b"L" * 2500, b"D" * 3000), (b"s", b"short"), (b"K" * 1024, b"x" * 1500), (b"s", b"again")],
    "empty": [],
}


def _build(path: Path, recs: Records) -> bytes:
    with Writer(path) as w:
        for k, v in recs:
            w.add(k, v)
    return path.read_bytes()


def _keys(recs: Records) -> List[bytes]:
    return list(dict.fromkeys([k for k, _ in recs])) + [b"absent"]


def _wraps(data: bytes, key: Optional[bytes] = None) -> bool:
    """Does a hash table (key's, or any) end past 4 GiB, where djb's u32 arithmetic wraps?"""
    if len(data) < HEADER:
        return False
    buckets = range(256) if key is None else [lib.cdb_hash(key, len(key)) & 255]
    for b in buckets:
        pos, slots = struct.unpack_from("<II", data, 8 * b)
        if pos + 8 * slots > U32:
            return True
    return False


def check_api(path: Path, keys: Sequence[bytes]) -> None:
    """Every Reader operation returns or raises CdbFormatError naming the file."""
    try:
        r = Reader(path)
    except CdbFormatError as e:
        assert e.path == str(path)
        return
    except OSError as e:
        assert e.filename == str(path)
        return
    ops: List[Callable[[], object]] = [lambda: len(r), lambda: list(r.items()), lambda: list(r.keys()),
                                       lambda: list(r.values())]
    for k in keys:
        ops += [lambda k=k: r.get(k), lambda k=k: r.get_all(k), lambda k=k: k in r, lambda k=k: r.get(k.decode("latin-1"))]
    with r:
        for op in ops:
            try:
                op()
            except CdbFormatError as e:
                assert e.path == str(path)
        for k in keys:
            try:
                r[k]
            except KeyError:
                pass
            except CdbFormatError:
                pass


def _reason(stderr: str) -> str:
    for reason in ("truncated file", "protocol error"):
        if reason in stderr:
            return reason
    return stderr


def _sane(r) -> bool:  # type: ignore[no-untyped-def]
    return not r.timed_out and r.returncode is not None and r.returncode >= 0


def check_cli(refs, path: Path, keys: Sequence[bytes]) -> int:  # type: ignore[no-untyped-def]
    """dump/stats/get against freecdb; returns how many comparisons were made."""
    data = path.read_bytes()
    compared = 0

    def ref(tool: str, *args: str):  # type: ignore[no-untyped-def]
        with open(path, "rb") as f:
            return refs.run([getattr(refs, tool), *args], stdin=f, timeout=20)

    for cmd, tool in (("dump", "cdbdump"), ("stats", "cdbstats")):
        rc, out, err = run_cli([cmd, str(path)])
        assert rc in (0, 111) and "Traceback" not in err and err.count("\n") <= 1, (cmd, err)
        r = ref(tool)
        if _sane(r) and not (cmd == "stats" and _wraps(data)):
            assert (rc, out) == (r.returncode, r.stdout), (cmd, path.name, err, r.stderr)
            if rc:
                assert _reason(err) == _reason(r.stderr.decode()), (cmd, path.name, err, r.stderr)
            compared += 1
    for k in keys:
        rc, out, err = run_cli(["get", "--", str(path), os.fsdecode(k)])
        assert rc in (0, 100, 111) and "Traceback" not in err and err.count("\n") <= 1, (k, err)
        if not k or len(data) < HEADER or _wraps(data, k):
            continue
        r = ref("cdbget", os.fsdecode(k))
        if _sane(r):
            assert (rc, out) == (r.returncode, r.stdout), (path.name, k, err, r.stderr)
            if rc == 111:
                assert _reason(err) == _reason(r.stderr.decode())
            compared += 1
    return compared


def _truncation_points(data: bytes, most: int = CUTS) -> List[int]:
    """Cuts inside the header, at and around every record and table boundary, and more."""
    size = len(data)
    marks = {0, 1, 7, 8, 9, 100, 1000, 2039, 2040, 2047, HEADER, size - 1}
    eod = struct.unpack_from("<I", data, 0)[0] if size >= HEADER else 0
    pos = HEADER
    while pos + 8 <= min(eod, size):  # record boundaries: header, key, data
        klen, dlen = struct.unpack_from("<II", data, pos)
        for p in (pos, pos + 8, pos + 8 + klen, pos + 8 + klen + dlen):
            marks |= {p - 1, p, p + 1}
        pos += 8 + klen + dlen
    for piece in range(HEADER, size, 1024):  # cdbdump copies in 1024-byte pieces
        marks |= {piece - 1, piece, piece + 1}
    points = sorted(p for p in marks if 0 <= p < size)
    rest = [p for p in range(HEADER, size) if p not in marks]
    random.Random(size).shuffle(rest)
    return sorted(points + rest[: max(0, most - len(points))])


def _some(keys: Sequence[bytes], rng: random.Random, n: int = 3) -> List[bytes]:
    return rng.sample(list(keys), min(n, len(keys)))


@pytest.mark.parametrize("base", sorted(BASES))
def test_truncated(refs, tmp_path: Path, base: str) -> None:  # type: ignore[no-untyped-def]
    recs = BASES[base]
    data = _build(tmp_path / "base.cdb", recs)
    keys = _keys(recs)
    points = _truncation_points(data)
    rng = random.Random(f"cut-{base}")
    compared = 0
    for cut in points:
        path = tmp_path / f"cut{cut}.cdb"
        path.write_bytes(data[:cut])
        check_api(path, keys)
        compared += check_cli(refs, path, _some(keys, rng))
        path.unlink()
    assert compared > len(points)  # the comparisons really ran


@pytest.mark.parametrize("base", sorted(BASES))
def test_flipped_bytes(refs, tmp_path: Path, base: str) -> None:  # type: ignore[no-untyped-def]
    recs = BASES[base]
    data = _build(tmp_path / "base.cdb", recs)
    keys = _keys(recs)
    rng = random.Random(f"flip-{base}")
    used = sorted({lib.cdb_hash(k, len(k)) & 255 for k in keys} | {0})
    compared = 0
    for i in range(HOSTILE_N):
        b = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            where = rng.random()
            if where < 0.4:  # a header entry that lookups or the record walk use
                pos = 8 * rng.choice(used) + rng.randrange(8)
            else:
                pos = rng.randrange(HEADER, len(b)) if len(b) > HEADER else rng.randrange(len(b))
            b[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        path = tmp_path / f"flip{i}.cdb"
        path.write_bytes(bytes(b))
        check_api(path, keys)
        compared += check_cli(refs, path, _some(keys, rng))
        path.unlink()
    assert compared > HOSTILE_N


def _set(data: bytes, off: int, *vals: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<" + "I" * len(vals), b, off, *vals)
    return bytes(b)


def _crafted(data: bytes, recs: Records) -> Dict[str, bytes]:
    """Pointers and lengths set to values a corrupt or malicious file may hold."""
    h = lib.cdb_hash(b"a", 1)
    entry = 8 * (h & 255)
    tpos, slots = struct.unpack_from("<II", data, entry)
    eod = struct.unpack_from("<I", data, 0)[0]
    size = len(data)
    cases = {
        "eod past the end": _set(data, 0, 0xFFFFFFFF),
        "eod inside the header": _set(data, 0, 100),
        "eod zero": _set(data, 0, 0),
        "eod one past the records": _set(data, 0, eod + 1),
        "table past the end": _set(data, entry, size + 8, slots),
        "table at the last byte": _set(data, entry, size - 1, slots),
        "table in the header": _set(data, entry, 0, slots),
        "huge slot count": _set(data, entry, tpos, 0xFFFFFFFF),
        "slot count 2^29": _set(data, entry, tpos, 1 << 29),
        "table ends just past 4 GiB": _set(data, entry, 0xFFFFFFF8, 2),
        "first record: huge key length": _set(data, HEADER, 0xFFFFFFFF),
        "first record: huge data length": _set(data, HEADER + 4, 0xFFFFFFFF),
        "first record: data one past the end": _set(data, HEADER + 4, size - HEADER - 8 - 1 + 2),
        "first record: key runs into the tables": _set(data, HEADER, eod - HEADER - 8 + 1),
        "all zero": bytes(size),
        "all ones": b"\xff" * size,
        "header only": data[:HEADER],
        "2048 zero bytes": bytes(HEADER),
        "one byte short of a header": data[: HEADER - 1],
    }
    # every slot of the key's table points at the header, with a hash that never matches
    b = bytearray(data)
    for i in range(slots):
        struct.pack_into("<II", b, tpos + 8 * i, (h + 1) & 0xFFFFFFFF, 8)
    cases["full table, no match, no empty slot"] = bytes(b)
    # every slot matches the hash and points at a record past the end
    b = bytearray(data)
    for i in range(slots):
        struct.pack_into("<II", b, tpos + 8 * i, h, size - 4)
    cases["matching slots point past the end"] = bytes(b)
    # slots point into the middle of a record / at each other
    b = bytearray(data)
    for i in range(slots):
        struct.pack_into("<II", b, tpos + 8 * i, h, HEADER + 1 + i)
    cases["matching slots point into records"] = bytes(b)
    # a bucket whose table is the same as another's (overlapping tables)
    other = 8 * ((h + 1) & 255)
    cases["two buckets share a table"] = _set(data, other, tpos, slots)
    return cases


def test_crafted(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recs = BASES["small"]
    data = _build(tmp_path / "base.cdb", recs)
    keys = _keys(recs)
    compared = 0
    cases = _crafted(data, recs)
    for i, (name, content) in enumerate(cases.items()):
        path = tmp_path / f"crafted{i}.cdb"
        path.write_bytes(content)
        check_api(path, keys)
        compared += check_cli(refs, path, keys)
    assert compared > len(cases)


@pytest.mark.parametrize("what", ["directory", "empty file", "fifo"])
def test_not_a_file(refs, tmp_path: Path, what: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.cdb"
    if what == "directory":
        path.mkdir()
    elif what == "empty file":
        path.write_bytes(b"")
    else:
        os.mkfifo(path)  # no writer: a blocking open would hang
    with pytest.raises((CdbFormatError, OSError)) as ei:
        Reader(path)
    e = ei.value
    assert (e.path if isinstance(e, CdbFormatError) else e.filename) == str(path)
    for argv in (["dump", str(path)], ["stats", str(path)], ["get", str(path), "a"]):
        rc, out, err = run_cli(argv)
        assert (rc, out) == (111, b"")
        assert err.startswith(f"cdbrules: fatal: unable to read {path}: ") and err.count("\n") == 1
        if what == "fifo":
            assert err.endswith(": not a cdb file (not a regular file)\n")
    if what == "directory":
        # cdbdump and cdbstats fail cleanly (cdbget crashes): same code, same words
        for tool, cmd in (("cdbdump", "dump"), ("cdbstats", "stats")):
            fd = os.open(path, os.O_RDONLY)
            try:
                r = refs.run([getattr(refs, tool)], stdin=fd)
            finally:
                os.close(fd)
            rc, out, err = run_cli([cmd, str(path)])
            assert (rc, out) == (r.returncode, r.stdout) == (111, b"")
            assert err.endswith(": is a directory\n") and r.stderr.endswith(b": is a directory\n")
