#!/usr/bin/env python3
"""Where the time of one Reader.get goes: the cffi call, the C probe, building the bytes.

    python bench/decompose.py                  # 10k-key file, 200k lookups, 7 repeats
    python bench/decompose.py --big            # and the 1M-key file (73 MB, > L3)
    python bench/decompose.py --cpu            # thread CPU time instead of wall (busy machine)

Every row times the same loop, ``for k in keys: <call>``, over the same keys (fresh bytes
objects, random order), rows rotated within each repeat; the table shows the median ns per
lookup.  The rows that matter:

* ``bare cffi call``: ``lib.cdb_get(<closed cdb>, k, len(k))``, the same C function with the
  same arguments on a struct cdb whose map is NULL, so it returns at its first test: the price
  of crossing into C through cffi (argument conversion, the call, the result);
* ``C probe (cdb_get)``: ``lib.cdb_get(c, k, len(k))`` on the open file: the call plus the
  hash, the slot and the key comparison in C;
* ``Reader.get``: the full lookup: the method call and the bytes built from the map.

The decomposition below the table subtracts neighbouring rows: call = bare - loop,
probe = cdb_get - bare, Python + bytes = Reader.get - cdb_get.  cdbx rows (a CPython-API
extension) are there for scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402


def _build(n: int, folder: Path) -> Path:
    from cdbrules import Writer

    path = folder / f"keys-{_data.size_label(n)}.cdb"
    with Writer(path) as w:
        for k, v in _data.records(n):
            w.add(k, v)
    return path


def _rows(path: Path, keys: List[bytes]) -> Tuple[List[Tuple[str, str, Dict[str, object]]], Callable[[], None]]:
    """(name, loop statement, its globals) per row, and a function closing what was opened."""
    import cdbx
    from cdbrules import Reader
    from cdbrules._native import ffi, lib
    from cdbrules._bindings import release_cdb
    from cdbrules.reader import read_cdb

    r = Reader(path)
    db = cdbx.CDB(str(path))
    _, c, buf, _, _ = read_cdb(path)
    closed = ffi.new("struct cdb *")
    g: Dict[str, object] = dict(keys=keys, f=lib.cdb_get, c=c, closed=closed, rget=r.get, r=r,
                                xget=db.get, db=db)
    rows = [
        ("empty loop", "for k in keys: pass"),
        ("len(k) (cheapest C call)", "for k in keys: len(k)"),
        ("bare cffi call", "for k in keys: f(closed, k, len(k))"),
        ("C probe (cdb_get)", "for k in keys: f(c, k, len(k))"),
        ("Reader.get", "for k in keys: rget(k)"),
        ("Reader[k]", "for k in keys: r[k]"),
        ("k in Reader", "for k in keys: k in r"),
        ("cdbx get", "for k in keys: xget(k)"),
        ("cdbx db[k]", "for k in keys: db[k]"),
        ("k in cdbx", "for k in keys: k in db"),
    ]

    def close() -> None:
        r.close()
        db.close()
        release_cdb(buf)

    return [(name, stmt, g) for name, stmt in rows], close


def measure(path: Path, keys: List[bytes], repeat: int, timer: Callable[[], float]) -> Dict[str, float]:
    """Median ns per lookup of each row."""
    rows, close = _rows(path, keys)
    try:
        _check(rows[0][2], keys)  # the answers must agree before anything is timed
        timers = [(name, timeit.Timer(stmt, timer=timer, globals=g)) for name, stmt, g in rows]
        samples: Dict[str, List[float]] = {name: [] for name, _ in timers}
        for rep in range(repeat):
            k = rep % len(timers)
            for name, t in timers[k:] + timers[:k]:
                samples[name].append(t.timeit(number=1) / len(keys) * 1e9)
        return {name: statistics.median(v) for name, v in samples.items()}
    finally:
        close()


def _check(g: Dict[str, object], keys: List[bytes]) -> None:
    rget, xget, f, c = g["rget"], g["xget"], g["f"], g["c"]
    for k in keys:
        v = rget(k)  # type: ignore[operator]
        if v != xget(k) or (v is None) != (f(c, k, len(k)) == 0):  # type: ignore[operator]
            raise SystemExit(f"decompose: Reader.get, cdbx and cdb_get disagree on {k!r}")


def table(label: str, ns: Dict[str, float]) -> str:
    width = max(len(n) for n in ns)
    lines = [f"{label}: ns per lookup (median)", f"  {'row':<{width}}  {'ns':>8}  {'-loop':>8}"]
    loop = ns["empty loop"]
    for name, v in ns.items():
        lines.append(f"  {name:<{width}}  {v:8.1f}  {v - loop:8.1f}")
    call = ns["bare cffi call"] - loop
    probe = ns["C probe (cdb_get)"] - ns["bare cffi call"]
    py = ns["Reader.get"] - ns["C probe (cdb_get)"]
    total = ns["Reader.get"] - loop
    lines.append(f"  Reader.get = cffi call {call:.0f} + C probe {probe:.0f} + Python and bytes {py:.0f} "
                 f"= {total:.0f} ns; cdbx get {ns['cdbx get'] - loop:.0f} ns "
                 f"({total / max(ns['cdbx get'] - loop, 1e-9):.2f}x)")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/decompose.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--lookups", type=int, default=200_000, help="lookups per timed loop (default 200000)")
    p.add_argument("--repeat", type=int, default=7, help="timed loops per row (default 7)")
    p.add_argument("--big", action="store_true", help="also the 1M-key file")
    p.add_argument("--cpu", action="store_true", help="time with thread CPU time (time.thread_time)")
    ns = p.parse_args(argv)
    timer = time.thread_time if ns.cpu else time.perf_counter
    sizes = [10_000] + ([1_000_000] if ns.big else [])
    with tempfile.TemporaryDirectory(prefix="cdbrules-decompose-") as d:
        for n in sizes:
            path = _build(n, Path(d))
            keys = _data.hit_keys(n, ns.lookups)
            print(table(f"{_data.size_label(n)} keys, hits, {ns.lookups} lookups x {ns.repeat}",
                        measure(path, keys, ns.repeat, timer)))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
