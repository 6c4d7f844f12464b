"""Differential tests: our cdb writer and tools against freecdb and tinycdb.

The same records go through ``Writer``, ``cdbrules.make``, ``cdbrules make``,
freecdb's ``cdbmake`` and tinycdb's ``cdb -c``: every file must be byte-identical.  Our
``dump``/``stats``/``get`` then read the file the *real* tool wrote and must print what
``cdbdump``/``cdbstats``/``cdbget`` print, with the same exit code.  Files written by
tcprules are read the same way.

Size knob: ``CDBRULES_DIFF_N`` (hypothesis examples per test, default 60); the big case
has ``CDBRULES_DIFF_BIG`` records (default 250,000).  Under ``CI`` the examples are
derandomized.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdbrules import Reader, Writer
from cdbrules import make
from helpers import PY, bucket_keys, cdb_input, run_cli

N = int(os.environ.get("CDBRULES_DIFF_N", "60"))
BIG = int(os.environ.get("CDBRULES_DIFF_BIG", "250000"))

SETTINGS = settings(
    max_examples=N,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

Records = List[Tuple[bytes, bytes]]

# Bytes that matter to the format: separators, newlines, NUL, high bytes.
_tricky = st.sampled_from([b"", b"\n", b"\n\n", b"->", b"+", b"+1,1:", b":", b",", b"\0", b"\xff", b"\r\n"])
_blob = st.one_of(_tricky, st.binary(max_size=24), st.binary(min_size=200, max_size=3000))


@st.composite
def records(draw: st.DrawFn) -> Records:
    """Record lists with empty keys and values, binary bytes and heavy duplicates."""
    pool = draw(st.lists(st.one_of(_tricky, st.binary(max_size=8)), min_size=1, max_size=6))
    key = st.one_of(st.sampled_from(pool), st.binary(max_size=16), _tricky)
    return draw(st.lists(st.tuples(key, _blob), max_size=120))


def ref_read(refs, tool: str, path: Path, *args: str):  # type: ignore[no-untyped-def]
    """Run a freecdb reader with the file on standard input (a regular file, as it needs)."""
    with open(path, "rb") as f:
        return refs.run([getattr(refs, tool), *args], stdin=f, timeout=60)


def ours(*argv: str) -> Tuple[int, bytes, str]:
    return run_cli(list(argv))


def compare_readers(refs, path: Path, keys: Sequence[bytes], skips: Sequence[Optional[str]] = (None,)) -> None:  # type: ignore[no-untyped-def]
    """dump, stats and get (for keys, with each SKIP) print what freecdb prints."""
    rc, out, err = ours("dump", str(path))
    r = ref_read(refs, "cdbdump", path)
    assert (rc, out) == (r.returncode, r.stdout), (path, err, r.stderr)
    rc, out, err = ours("stats", str(path))
    r = ref_read(refs, "cdbstats", path)
    assert (rc, out) == (r.returncode, r.stdout), (path, err, r.stderr)
    for k in keys:
        if not k or b"\0" in k:
            continue  # cdbget cannot be given these (an empty KEY is a usage error for it)
        ks = os.fsdecode(k)
        for skip in skips:
            extra = [skip] if skip is not None else []
            rc, out, err = ours("get", "--", str(path), ks, *extra)
            r = ref_read(refs, "cdbget", path, ks, *extra)
            assert (rc, out) == (r.returncode, r.stdout), (path, k, skip, err, r.stderr)
            assert (err == "") == (r.stderr == b"")


def build_all(refs, tmp: Path, recs: Records) -> Dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The file each writer makes from recs."""
    data = cdb_input(recs)
    (tmp / "in").write_bytes(data)
    with Writer(tmp / "writer.cdb") as w:
        for k, v in recs:
            w.add(k, v)
    assert make(tmp / "in", tmp / "api.cdb") == len(recs)
    rc, out, err = run_cli(["make", str(tmp / "cli.cdb"), str(tmp / "cli.tmp")], data)
    assert (rc, out, err) == (0, b"", "")
    r = refs.run([refs.cdbmake, "cdbmake.cdb", "cdbmake.tmp"], stdin=data, cwd=tmp, timeout=60)
    assert r.returncode == 0, r
    r = refs.run([refs.tinycdb, "-c", "-t", "tiny.tmp", "tiny.cdb"], stdin=data, cwd=tmp, timeout=60)
    assert r.returncode == 0, r
    return {name: (tmp / f"{name}.cdb").read_bytes() for name in ("writer", "api", "cli", "cdbmake", "tiny")}


def check_api(path: Path, recs: Records) -> None:
    """The Reader sees exactly the records that were written (the input is the oracle)."""
    with Reader(path) as r:
        assert len(r) == len(recs)
        assert list(r.items()) == recs
        assert list(r.keys()) == [k for k, _ in recs]
        assert list(r.values()) == [v for _, v in recs]
        for k in {k for k, _ in recs}:
            want = [v for kk, v in recs if kk == k]
            assert r.get_all(k) == want
            assert r[k] == want[0] and r.get(k) == want[0] and k in r


@SETTINGS
@given(recs=records())
def test_writers_agree_and_readers_agree(refs, tmp_path_factory: pytest.TempPathFactory, recs: Records) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("diff")
    files = build_all(refs, tmp, recs)
    assert len(set(files.values())) == 1, {k: len(v) for k, v in files.items()}
    check_api(tmp / "cdbmake.cdb", recs)
    keys = sorted({k for k, _ in recs})[:4] + [b"absent-key"]
    compare_readers(refs, tmp / "cdbmake.cdb", keys, skips=(None, "1", "2"))


def _rules_text(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.4:
            addr = ".".join(str(rng.randint(0, 255)) for _ in range(rng.randint(1, 4)))
        elif kind < 0.55:
            addr = f"{rng.randint(0, 255)}.{rng.randint(0, 5)}-{rng.randint(5, 9)}"
        elif kind < 0.7:
            addr = f"=host{rng.randint(0, 9)}.example.com"
        elif kind < 0.8:
            addr = f"user{rng.randint(0, 3)}@{rng.randint(0, 255)}.{rng.randint(0, 255)}."
        else:
            addr = ""
        action = rng.choice(["allow", "deny"])
        env = "".join(f',V{i}="{rng.randint(0, 10**rng.randint(0, 6))}"' for i in range(rng.randint(0, 3)))
        lines.append(f"{addr}:{action}{env}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("seed", range(12))
def test_files_tcprules_wrote(refs, tmp_path: Path, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Our readers on tcprules' own files; and dump | make gives tcprules' file back."""
    rng = random.Random(seed)
    text = _rules_text(rng)
    r = refs.run([refs.tcprules_v4, "t.cdb", "t.tmp"], stdin=text, cwd=tmp_path)
    assert r.returncode == 0, r
    path = tmp_path / "t.cdb"
    with Reader(path) as rd:
        keys = list(dict.fromkeys(rd.keys()))
    compare_readers(refs, path, keys[:6] + [b"10.0.0.1"])
    rc, dumped, _ = run_cli(["dump", str(path)])
    assert rc == 0
    rc, _, err = run_cli(["make", str(tmp_path / "again.cdb"), str(tmp_path / "again.tmp")], dumped)
    assert (rc, err) == (0, "")
    assert (tmp_path / "again.cdb").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "shape",
    ["one key 300 times", "500 keys in one bucket", "mixed", "keys around 1024 bytes"],
)
def test_stats_with_collisions(refs, tmp_path: Path, shape: str) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(shape)
    if shape == "one key 300 times":
        recs = [(b"same", b"%d" % i) for i in range(300)]
    elif shape == "500 keys in one bucket":
        recs = [(k, b"v") for k in bucket_keys(7, 500)]
    elif shape == "mixed":
        ks = bucket_keys(200, 60) + [b"x%d" % i for i in range(200)]
        recs = [(rng.choice(ks), b"%d" % i) for i in range(1500)]
    else:  # cdbstats passes over (does not count) keys longer than 1024 bytes
        ks = [bytes([65 + n % 3]) * n for n in (1023, 1024, 1025, 1026, 3000)] + [b"k"]
        recs = [(rng.choice(ks), b"%d" % i) for i in range(60)] + [(b"k", b"%d" % i) for i in range(20)]
    files = build_all(refs, tmp_path, recs)
    assert len(set(files.values())) == 1
    path = tmp_path / "cdbmake.cdb"
    rc, out, _ = run_cli(["stats", str(path)])
    r = ref_read(refs, "cdbstats", path)
    assert (rc, out) == (r.returncode, r.stdout)
    far = int(out.splitlines()[-1].split()[1])
    assert far > 0  # the case really has records more than 9 slots from their start
    compare_readers(refs, path, sorted({k for k, _ in recs})[:5], skips=(None, "5", "299", "300"))


def test_big(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """BIG records (many duplicates) through the real entry point and both reference makers."""
    import subprocess

    rng = random.Random(2)
    distinct = max(BIG // 5, 1)
    lines = []
    for i in range(BIG):
        k = b"%d.%d" % (i % distinct, i % 7)
        v = bytes(rng.getrandbits(8) for _ in range(i % 13))
        lines.append(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v))
    data = b"".join(lines) + b"\n"
    r = subprocess.run(PY + ["make", "ours.cdb", "ours.tmp"], input=data, cwd=tmp_path, capture_output=True, timeout=300)
    assert (r.returncode, r.stderr) == (0, b"")
    r = refs.run([refs.cdbmake, "cdbmake.cdb", "cdbmake.tmp"], stdin=data, cwd=tmp_path, timeout=300)
    assert r.returncode == 0
    r = refs.run([refs.tinycdb, "-c", "-t", "tiny.tmp", "tiny.cdb"], stdin=data, cwd=tmp_path, timeout=300)
    assert r.returncode == 0
    ours_bytes = (tmp_path / "ours.cdb").read_bytes()
    assert ours_bytes == (tmp_path / "cdbmake.cdb").read_bytes() == (tmp_path / "tiny.cdb").read_bytes()
    path = tmp_path / "cdbmake.cdb"
    rc, out, _ = run_cli(["dump", str(path)])
    assert rc == 0 and out == ref_read(refs, "cdbdump", path).stdout == data
    compare_readers(refs, path, [b"0.0", b"%d.%d" % (distinct - 1, (distinct - 1) % 7), b"nope"], skips=(None, "4", "5"))
    with Reader(path) as rd:
        assert len(rd) == BIG
