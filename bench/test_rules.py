"""Rules lookups: cdbrules.Rules beside the ways a user could answer the same question.

Two rules files, both compiled by the real tcprules (v4 build): ``1k``, a tcp.smtp-like file
of about 1000 rules (relay customers, blocked hosts and networks, host-name rules, the stock
default line), probed with 10k client addresses (45 % hit a named rule, 5 % local, the rest
fall through to the default); and ``1M``, a block list of 1M distinct /24 prefixes
(``a.b.c.:deny``), probed with addresses half inside listed /24s, half random.

Groups ``rules-check-<file>`` (an open handle; one benchmark call = BATCH connections):

* ``cdbrules Rules.check``: one ``check(ip)`` per address;
* ``cdbrules Rules.check_many``: one call for the whole batch;
* ``cffi rules_check_ip``: the bare C lookup through cffi (``ip.encode()``, no Decision);
* ``python+cdbx probes`` (baseline): tcpserver's probe order written in Python over cdbx
  ``get`` (the address, then its prefixes at '.' or ':', then ""), what a user without
  cdbrules would write;
* ``pytricia get``: a longest-prefix-match tree built from the same file's IP keys
  (a.b.c. -> /24, exact -> /32, "" -> /0, first record of a key wins);
* ``floor empty loop``: the Python loop alone, subtracted by the report.

Groups ``rules-reopen-<file>`` (tcpserver's own way: the file is opened per connection):

* ``tcpserver (C) open+mmap+lookup+close``: bench/tcpserver_way.c, one process doing
  open, fstat, mmap, the lookup (cdbrules' C), munmap, close per address, as tcpserver's
  child does; the ``floor (C) process start, no lookups`` row is subtracted;
* ``cdbrules Rules() + check + close`` and ``python+cdbx CDB() + probes + close``: the same
  per connection from Python.

Every row's answers are checked against the others once, outside the timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from _data import decode_data
from conftest import BATCH, ROUNDS, Batches, RulesFile, run_proc

REOPEN = 1000  # connections per round for the per-connection Python rows
REOPEN_C = 10_000  # connections per run of tcpserver_way

Answer = Tuple[Optional[str], bool, dict]  # (rule key, allowed, env)
Found = Optional[Tuple[bytes, bytes]]  # (key, data) or no rule


def _rules_class():  # type: ignore[no-untyped-def]
    import cdbrules

    cls = getattr(cdbrules, "Rules", None)
    if cls is None:
        pytest.skip("cdbrules.Rules is not in the package yet (issue #4): no cdbrules row to time")
    return cls


def _normal(found: Found) -> Answer:
    if found is None:
        return (None, True, {})
    key, data = found
    allowed, env = decode_data(data)
    return (key.decode("utf-8", "surrogateescape"), allowed, env)


def _decision(d) -> Answer:  # type: ignore[no-untyped-def]
    return (d.rule, bool(d.allowed), dict(d.env))


def python_probes(get: Callable[[bytes], Optional[bytes]]) -> Callable[[str], Found]:
    """tcpserver's probe order for an address alone (docs/lookup.md), in Python over get()."""

    def check(ip: str) -> Found:
        b = ip.encode()
        v = get(b)
        if v is not None:
            return b, v
        j = len(b)
        while j > 0:
            j = max(b.rfind(b".", 0, j), b.rfind(b":", 0, j))
            if j < 0:
                break
            key = b[:j + 1]
            v = get(key)
            if v is not None:
                return key, v
        v = get(b"")
        if v is not None:
            return b"", v
        return None

    return check


def _cidr(key: bytes) -> Optional[str]:
    """The IPv4 prefix a rules key stands for when only an address is looked up, or None."""
    if key == b"":
        return "0.0.0.0/0"
    parts = key.split(b".")
    prefix = parts[-1] == b""
    octets = parts[:-1] if prefix else parts
    if not (1 <= len(octets) <= 3 if prefix else len(octets) == 4):
        return None
    for o in octets:
        if not o.isdigit() or int(o) > 255 or o != b"%d" % int(o):
            return None
    text = ".".join([o.decode() for o in octets] + ["0"] * (4 - len(octets)))
    return f"{text}/{8 * len(octets)}"


_trees: Dict[Path, object] = {}


def pytricia_tree(path: Path):  # type: ignore[no-untyped-def]
    """A pytricia tree of the file's IP rules, values (key, data); built once per file."""
    if path not in _trees:
        import pytricia
        from cdbrules import Reader

        first: Dict[bytes, bytes] = {}
        with Reader(path) as r:
            for k, v in r.items():
                first.setdefault(k, v)
        t = pytricia.PyTricia(32)
        for k, v in first.items():
            c = _cidr(k)
            if c is not None:
                t[c] = (k, v)
        _trees[path] = t
    return _trees[path]


def _loop(f: Callable[[str], object], batches: Batches) -> Callable[[], None]:
    def run() -> None:
        for ip in batches():
            f(ip)

    return run


def _empty(batches: Batches) -> Callable[[], None]:
    def run() -> None:
        for ip in batches():
            pass

    return run


def _reference(rf: RulesFile, probes: List[str]) -> List[Answer]:
    """The answers of the python+cdbx probes, which every other row must give too."""
    import cdbx

    db = cdbx.CDB(str(rf.path))
    try:
        check = python_probes(db.get)
        return [_normal(check(ip)) for ip in probes]
    finally:
        db.close()


_refs_cache: Dict[Path, List[Answer]] = {}


def _expect(rf: RulesFile, probes: List[str], answers: List[Answer], row: str) -> None:
    if rf.path not in _refs_cache:
        _refs_cache[rf.path] = _reference(rf, rf.all_probes)
    want = _refs_cache[rf.path]
    assert len(answers) == len(probes)
    for i, (ip, got) in enumerate(zip(probes, answers)):
        assert got == want[i], f"{row} answers {got!r} for {ip}; python+cdbx probes answer {want[i]!r}"


CHECK_ROWS = [
    "floor empty loop",
    "cffi rules_check_ip",
    "cdbrules Rules.check",
    "cdbrules Rules.check_many",
    "python+cdbx probes",
    "pytricia get",
]


@pytest.mark.parametrize("row", CHECK_ROWS)
def test_rules_check(benchmark, rules: RulesFile, row: str) -> None:  # type: ignore[no-untyped-def]
    batches = rules.probes.fresh()
    probes = rules.all_probes
    closers: List[Callable[[], None]] = []
    per_call = True
    try:
        if row == "floor empty loop":
            run = _empty(batches)
        elif row == "cffi rules_check_ip":
            from cdbrules._native import lib
            from cdbrules._bindings import release_cdb
            from cdbrules.reader import read_cdb

            _, c, held, _, _ = read_cdb(rules.path)
            closers.append(lambda: release_cdb(held))
            rci = lib.rules_check_ip
            for ip in probes:
                assert rci(c, ip.encode()) >= 0
            run = _loop(lambda ip: rci(c, ip.encode()), batches)
        elif row.startswith("cdbrules"):
            r = _rules_class()(rules.path)
            closers.append(r.close)
            if row.endswith("check_many"):
                _expect(rules, probes, [_decision(d) for d in r.check_many(probes)], row)
                check_many = r.check_many

                def run() -> None:
                    check_many(batches())

                per_call = False
            else:
                _expect(rules, probes, [_decision(r.check(ip)) for ip in probes], row)
                run = _loop(r.check, batches)
        elif row == "python+cdbx probes":
            import cdbx

            db = cdbx.CDB(str(rules.path))
            closers.append(db.close)
            check = python_probes(db.get)
            _expect(rules, probes, [_normal(check(ip)) for ip in probes], row)
            run = _loop(check, batches)
        elif row == "pytricia get":
            get = pytricia_tree(rules.path).get
            _expect(rules, probes, [_normal(get(ip)) for ip in probes], row)
            run = _loop(get, batches)
        else:
            raise AssertionError(row)
        lib_name, what = row.split(" ", 1)
        benchmark.group = f"rules-check-{rules.label}"
        benchmark.extra_info.update(
            lib=lib_name,
            what=what,
            per=BATCH,
            floor=lib_name == "floor",
            subtract="floor empty loop" if per_call and row != "floor empty loop" else None,
            baseline=row == "python+cdbx probes",
        )
        benchmark(run)
    finally:
        for close in closers:
            close()


REOPEN_ROWS = [
    "floor empty loop",
    "cdbrules Rules() + check + close",
    "python+cdbx CDB() + probes + close",
    "floor (C) process start, no lookups",
    "tcpserver (C) open+mmap+lookup+close",
]


@pytest.mark.parametrize("row", REOPEN_ROWS)
def test_rules_reopen(benchmark, rules: RulesFile, row: str, tcpserver_way: Path, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    probes = rules.all_probes[:REOPEN_C]
    batches = Batches(probes, REOPEN)
    path = rules.path
    lib_name, what = row.split(" ", 1)
    benchmark.group = f"rules-reopen-{rules.label}"
    benchmark.extra_info.update(lib=lib_name, what=what, floor=lib_name == "floor", baseline=row.startswith("tcpserver"))
    if "(C)" in row:
        ips = bench_dir / f"probes-{rules.label}.txt"
        ips.write_text("".join(ip + "\n" for ip in probes))
        mode = "none" if row.startswith("floor") else "lookup"
        if mode == "lookup":
            out = bench_dir / "tcpserver_way.out"
            run_proc([str(tcpserver_way), "print", str(path)], stdin=ips, stdout=out)
            found: List[Found] = []
            for line in out.read_bytes().split(b"\n")[:-1]:
                if line == b"-":
                    found.append(None)
                else:
                    k, _, hexdata = line.partition(b"\t")
                    found.append((k, bytes.fromhex(hexdata.decode())))
            _expect(rules, probes, [_normal(f) for f in found], row)
        benchmark.extra_info.update(per=len(probes), subtract="floor (C) process start, no lookups" if mode == "lookup" else None)
        argv = [str(tcpserver_way), mode, str(path)]
        benchmark.pedantic(lambda: run_proc(argv, stdin=ips), rounds=ROUNDS, iterations=1, warmup_rounds=1)
        return
    benchmark.extra_info.update(per=REOPEN, subtract=None if row.startswith("floor") else "floor empty loop")
    if row == "floor empty loop":
        benchmark(_empty(batches))
        return
    if row.startswith("cdbrules"):
        Rules = _rules_class()

        def connection(ip: str) -> object:
            with Rules(path) as r:
                return r.check(ip)

        _expect(rules, probes, [_decision(connection(ip)) for ip in probes], row)
        benchmark(_loop(connection, batches))
        return
    import cdbx

    def cdbx_connection(ip: str) -> Found:
        db = cdbx.CDB(str(path))
        try:
            return python_probes(db.get)(ip)
        finally:
            db.close()

    _expect(rules, probes, [_normal(cdbx_connection(ip)) for ip in probes], row)
    benchmark(_loop(cdbx_connection, batches))
