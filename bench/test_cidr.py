"""Networks (``compile --cidr``) and how cost grows with size.

Group ``compile-cidr-<N>`` (N = BIG, 1M networks in a BGP-like mix of lengths, 10 % IPv6;
see bench/README.md): whole processes, wall time.

* ``cdbrules compile --cidr``: the networks, expanded to tcpserver keys, ordered and
  written (``cdbrules compile --cidr CDB TMP < rules``);
* ``tcprules v6`` (baseline): the real tcprules (IPv6 build) compiling the
  ``cdbrules expand`` text of the same rules, that is only the writing, without the
  expansion; both files are checked equal byte for byte once, outside the timing;
* ``cdbrules expand``: writing that text.

Group ``rules-check-cidr-<N>``: ``Rules.check`` per connection on the file compiled with
``--cidr`` (IPv4 clients, half inside a listed network), beside the bare loop; the answers
are checked against tcpserver's probe order over cdbx once.

Groups ``scale-compile-<n>`` (n = 1k, 10k, 100k lines of the mixed file of
bench/test_compile.py; 1M and 10M are its own groups) and ``scale-check-<n>`` (n = 1k, 10k,
100k /24 prefixes of the block list of bench/test_rules.py; 1M is its own group): the points
of the scaling chart ``bench/report.py`` draws (docs/scaling.png), not tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import _data
import pytest
from conftest import BATCH, BIG, ROUNDS, Batches, ProcStats, RulesFile, cdbrules_cli, measure_rss, run_proc, sha256
from test_rules import _decision, _empty, _expect, _loop, _normal, pytricia_tree, python_probes

SCALE = [1_000, 10_000, 100_000]


@pytest.fixture(scope="session")
def cidr_input(bench_dir: Path, refs) -> Iterator[Tuple[Path, Path, List[Tuple[int, int]]]]:  # type: ignore[no-untyped-def]
    """(rules, their expand text, the IPv4 networks) for BIG networks."""
    text, nets4 = _data.cidr_rules(BIG)
    src = bench_dir / "cidr.rules"
    src.write_bytes(text)
    expanded = bench_dir / "cidr.expanded"
    run_proc([*cdbrules_cli(), "expand"], stdin=src, stdout=expanded)
    try:
        yield src, expanded, nets4
    finally:
        expanded.unlink(missing_ok=True)


_cidr_ref: Dict[str, str] = {}


@pytest.mark.parametrize("row", ["cdbrules compile --cidr", "tcprules v6", "cdbrules expand"])
def test_compile_cidr(benchmark, row: str, cidr_input, refs, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    src, expanded, _ = cidr_input
    out = bench_dir / f"cidr-{row.split()[0]}-{row.split()[-1].lstrip('-')}.cdb"
    tmp = Path(str(out) + ".tmp")
    stats = ProcStats()
    stdin, stdout = src, None
    if row == "cdbrules compile --cidr":
        argv, env = [*cdbrules_cli(), "compile", "--cidr", str(out), str(tmp)], None
    elif row == "tcprules v6":
        argv, env, stdin = [refs.tcprules_v6, str(out), str(tmp)], refs.env, expanded
    else:
        argv, env, stdout = [*cdbrules_cli(), "expand"], None, out

    def fn() -> None:
        run_proc(argv, stdin=stdin, env=env, stats=stats, stdout=stdout)

    try:
        if "tcprules" not in _cidr_ref:
            ref = bench_dir / "cidr-reference.cdb"
            run_proc([refs.tcprules_v6, str(ref), str(ref) + ".tmp"], stdin=expanded, env=refs.env)
            _cidr_ref["tcprules"] = sha256(ref)
            ref.unlink()
        if stdout is None:
            measure_rss(argv, stats, stdin=stdin, env=env)
            assert sha256(out) == _cidr_ref["tcprules"], f"{row}: not the file tcprules makes of the expand text"
        lib, _, what = row.partition(" ")
        benchmark.group = f"compile-cidr-{_data.size_label(BIG)}"
        benchmark.extra_info.update(lib=lib, what=what, per=1, floor=False, subtract=None,
                                    baseline=row == "tcprules v6", lines=BIG)
        benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        benchmark.extra_info.update(stats.info())
    finally:
        out.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def rules_cidr(bench_dir: Path, cidr_input) -> RulesFile:  # type: ignore[no-untyped-def]
    import cdbrules

    src, _, nets4 = cidr_input
    out = bench_dir / "cidr.cdb"
    cdbrules.compile(src, out, cidr=True)
    probes = _data.cidr_probes(nets4, max(BATCH, 200_000))
    return RulesFile(f"cidr-{_data.size_label(BIG)}", src, out, Batches(probes), probes)


@pytest.mark.parametrize("row", ["floor empty loop", "cdbrules Rules.check"])
def test_rules_check_cidr(benchmark, rules_cidr: RulesFile, row: str) -> None:  # type: ignore[no-untyped-def]
    _time_check(benchmark, rules_cidr, row, f"rules-check-{rules_cidr.label}")


# -- scaling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SCALE, ids=_data.size_label)
@pytest.mark.parametrize("row", ["cdbrules compile", "tcprules v4"])
def test_scale_compile(benchmark, row: str, n: int, refs, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    src = bench_dir / f"scale-{n}.rules"
    if not src.exists():
        with open(src, "wb") as f:
            _data.write_compile_input(f, n)
    out = bench_dir / f"scale-{row.split()[0]}-{n}.cdb"
    stats = ProcStats()
    if row == "cdbrules compile":
        argv, env = [*cdbrules_cli(), "compile", str(out), str(out) + ".tmp"], None
    else:
        argv, env = [refs.tcprules_v4, str(out), str(out) + ".tmp"], refs.env
    try:
        lib, _, what = row.partition(" ")
        benchmark.group = f"scale-compile-{_data.size_label(n)}"
        benchmark.extra_info.update(lib=lib, what=what, per=1, floor=False, subtract=None,
                                    baseline=row == "tcprules v4", lines=n)
        benchmark.pedantic(lambda: run_proc(argv, stdin=src, env=env, stats=stats), rounds=ROUNDS, iterations=1)
        benchmark.extra_info.update(stats.info())
    finally:
        out.unlink(missing_ok=True)


_scale_files: Dict[int, RulesFile] = {}


def _scale_rules(n: int, bench_dir: Path) -> RulesFile:
    if n not in _scale_files:
        import cdbrules

        text, nets = _data.blocklist(n)
        src = bench_dir / f"block-{n}.rules"
        src.write_bytes(text)
        out = bench_dir / f"block-{n}.cdb"
        cdbrules.compile(src, out)
        probes = _data.blocklist_probes(nets, max(BATCH, min(n, 200_000)))
        _scale_files[n] = RulesFile(_data.size_label(n), src, out, Batches(probes), probes)
    return _scale_files[n]


@pytest.mark.parametrize("n", SCALE, ids=_data.size_label)
@pytest.mark.parametrize("row", ["floor empty loop", "cdbrules Rules.check", "python+cdbx probes", "pytricia get"])
def test_scale_check(benchmark, row: str, n: int, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    rf = _scale_rules(n, bench_dir)
    _time_check(benchmark, rf, row, f"scale-check-{rf.label}")


def _time_check(benchmark, rf: RulesFile, row: str, group: str) -> None:  # type: ignore[no-untyped-def]
    """Time one row of per-connection lookups over rf, its answers checked first."""
    batches = rf.probes.fresh()
    closers: List[Callable[[], None]] = []
    try:
        if row == "floor empty loop":
            run = _empty(batches)
        elif row == "cdbrules Rules.check":
            from cdbrules import Rules

            r = Rules(rf.path)
            closers.append(r.close)
            _expect(rf, rf.all_probes, [_decision(r.check(ip)) for ip in rf.all_probes], row)
            run = _loop(r.check, batches)
        elif row == "python+cdbx probes":
            import cdbx

            db = cdbx.CDB(str(rf.path))
            closers.append(db.close)
            check = python_probes(db.get)
            run = _loop(check, batches)
        elif row == "pytricia get":
            get = pytricia_tree(rf.path).get
            _expect(rf, rf.all_probes, [_normal(get(ip)) for ip in rf.all_probes], row)
            run = _loop(get, batches)
        else:
            raise AssertionError(row)
        lib_name, what = row.split(" ", 1)
        benchmark.group = group
        benchmark.extra_info.update(lib=lib_name, what=what, per=BATCH, floor=lib_name == "floor",
                                    subtract="floor empty loop" if row != "floor empty loop" else None,
                                    baseline=row == "python+cdbx probes")
        benchmark(run)
    finally:
        for close in closers:
            close()
