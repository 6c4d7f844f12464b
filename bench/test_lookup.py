"""Key lookups: cdbrules.Reader beside cdbx and pure-cdb, with floors for scale.

One benchmark call = BATCH lookups of distinct keys (fresh bytes objects, random order);
on the big file each call takes the next BATCH keys of a shuffled list of all keys, so no
round finds its records cached by the round before.  Per-lookup time = median / BATCH;
the report subtracts the ``empty loop`` row (the Python for loop itself).

Groups ``get-hit-<N>`` and ``get-miss-<N>``, N = 10k (a 0.7 MB file: cache-resident) and
1M (73 MB: larger than the L3 cache).  The baseline is cdbx ``get``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import pytest
from conftest import BATCH, Batches, KeyFile

Run = Callable[[], None]


def _call_loop(f: Callable[[bytes], object], batches: Batches) -> Run:
    def run() -> None:
        for k in batches():
            f(k)

    return run


def _item_loop(m: object, batches: Batches) -> Run:
    def run() -> None:
        for k in batches():
            m[k]  # type: ignore[index]

    return run


def _empty_loop(batches: Batches) -> Run:
    def run() -> None:
        for k in batches():
            pass

    return run


class Impl:
    """One row: how to time it (run) and what it answers for a key (answer), and cleanup."""

    def __init__(self, run: Run, answer: Optional[Callable[[bytes], object]], close: Callable[[], None] = lambda: None):
        self.run, self.answer, self.close = run, answer, close


def _cffi_rows(kf: KeyFile, batches: Batches, name: str) -> Impl:
    try:
        from cdbrules._native import ffi, lib
        from cdbrules._bindings import release_cdb
        from cdbrules.reader import read_cdb
    except ImportError as e:  # pragma: no cover - the package layout changed
        pytest.skip(f"cdbrules internals for the cffi rows are gone: {e}")
    cdb_get = lib.cdb_get
    if name == "bare":
        closed = ffi.new("struct cdb *")  # map NULL: cdb_get returns at once (EBADF)

        def run() -> None:
            for k in batches():
                cdb_get(closed, k, len(k))

        return Impl(run, None)
    _, c, buf, _, _ = read_cdb(kf.path)

    def run_probe() -> None:
        for k in batches():
            cdb_get(c, k, len(k))

    def answer(k: bytes) -> object:
        r = cdb_get(c, k, len(k))
        assert r != 1, "cdb_get failed"
        return r != 0

    def close() -> None:
        release_cdb(buf)

    return Impl(run_probe, answer, close)


def _impl(lib: str, what: str, kf: KeyFile, batches: Batches) -> Impl:
    if lib == "floor":
        if what == "empty loop":
            return Impl(_empty_loop(batches), None)
        d = kf.as_dict()
        if what == "dict.get":
            return Impl(_call_loop(d.get, batches), d.get)
        if what == "dict[k]":
            return Impl(_item_loop(d, batches), d.__getitem__)
        return _cffi_rows(kf, batches, "bare")
    if lib == "cffi":
        return _cffi_rows(kf, batches, "probe")
    if lib == "cdbrules":
        from cdbrules import Reader

        r = Reader(kf.path)
        if what == "Reader.get":
            return Impl(_call_loop(r.get, batches), r.get, r.close)
        return Impl(_item_loop(r, batches), r.__getitem__, r.close)
    if lib == "cdbx":
        import cdbx

        db = cdbx.CDB(str(kf.path))
        if what == "get":
            return Impl(_call_loop(db.get, batches), db.get, db.close)
        return Impl(_item_loop(db, batches), db.__getitem__, db.close)
    if lib == "pure-cdb":
        import cdblib

        rd = cdblib.Reader.from_file_path(str(kf.path))
        return Impl(_call_loop(rd.get, batches), rd.get, rd.close)
    raise AssertionError((lib, what))


# (lib, what): the rows of every get group; [k] rows only where the key is present.
ROWS = [
    ("floor", "empty loop"),
    ("floor", "dict.get"),
    ("floor", "dict[k]"),
    ("floor", "bare cffi call"),  # lib.cdb_get(<closed cdb>, k, len(k)): same arguments, returns at once
    ("cffi", "cdb_get probe only"),  # lib.cdb_get(c, k, len(k)): the C probe, no bytes built
    ("cdbrules", "Reader.get"),
    ("cdbrules", "Reader[k]"),
    ("cdbx", "get"),
    ("cdbx", "db[k]"),
    ("pure-cdb", "get"),
]
HIT_ROWS = [f"{lib} {what}" for lib, what in ROWS]
MISS_ROWS = [f"{lib} {what}" for lib, what in ROWS if "[k]" not in what]
BASELINE = "cdbx get"


def _check(lib: str, impl: Impl, keys: List[bytes], expected: Dict[bytes, bytes], hit: bool) -> None:
    """This row's answer for every key it may be timed on, against the records."""
    if impl.answer is None:
        return
    answer = impl.answer
    for k in keys:
        got = answer(k)
        want: object = hit if lib == "cffi" else (expected[k] if hit else None)
        assert got == want, f"{lib} gave {got!r} for {k!r}; the file holds {want!r}"


def _bench(benchmark, kf: KeyFile, row: str, hit: bool) -> None:  # type: ignore[no-untyped-def]
    lib, what = row.split(" ", 1)
    batches = (kf.hits if hit else kf.misses).fresh()
    impl = _impl(lib, what, kf, batches)
    try:
        _check(lib, impl, kf.all_hits if hit else kf.all_misses, kf.as_dict(), hit)
        benchmark.group = f"get-{'hit' if hit else 'miss'}-{kf.label}"
        benchmark.extra_info.update(
            lib=lib,
            what=what,
            per=BATCH,
            floor=lib == "floor",
            subtract=None if what == "empty loop" else "floor empty loop",
            baseline=row == BASELINE,
        )
        benchmark(impl.run)
    finally:
        impl.close()


@pytest.mark.parametrize("name", HIT_ROWS)
def test_get_hit(benchmark, keys: KeyFile, name: str) -> None:  # type: ignore[no-untyped-def]
    _bench(benchmark, keys, name, True)


@pytest.mark.parametrize("name", MISS_ROWS)
def test_get_miss(benchmark, keys: KeyFile, name: str) -> None:  # type: ignore[no-untyped-def]
    _bench(benchmark, keys, name, False)
