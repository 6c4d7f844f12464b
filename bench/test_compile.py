"""Compiling rules text: ``cdbrules compile`` (the CLI, whole process) beside tcprules.

Group ``compile-<N>`` for N = BIG (1M) and HUGE (10M) lines of mixed rules (single hosts,
/24s, host names, small ranges, info@ rules, rules with environment, a few comments; valid
for both tcprules builds).  Each row is one whole process, ``PROG CDB TMP < rules``, wall
time, ROUNDS rounds (at most 3 for the huge file); peak RSS comes from one untimed run under
time(1), CPU time from wait4 of the timed runs.

* ``cdbrules compile``: the installed ``cdbrules`` command;
* ``tcprules v4`` (baseline): ucspi-tcp 0.88 as Debian builds it;
* ``tcprules v6``: the IPv6-patched build (same output for these files).

Every output is compared byte for byte with tcprules v4's once, outside the timing.  The huge
file (~310 MB) is generated streaming into the data folder and deleted afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import _data
import pytest
from conftest import ROUNDS, ProcStats, cdbrules_cli, measure_rss, run_proc, sha256

ROWS = ["cdbrules compile", "tcprules v4", "tcprules v6"]

_reference: Dict[Path, str] = {}  # input path -> sha256 of tcprules v4's output


@pytest.mark.parametrize("row", ROWS)
def test_compile(benchmark, row: str, compile_input: Tuple[Path, int], refs, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    src, n = compile_input
    out = bench_dir / f"compile-{row.replace(' ', '_')}.cdb"
    tmp = Path(str(out) + ".tmp")
    stats = ProcStats()
    if row == "cdbrules compile":
        argv: List[str] = [*cdbrules_cli(), "compile", str(out), str(tmp)]
        env = None
    else:
        prog = refs.tcprules_v4 if row.endswith("v4") else refs.tcprules_v6
        argv, env = [prog, str(out), str(tmp)], refs.env

    def fn() -> None:
        run_proc(argv, stdin=src, env=env, stats=stats)

    try:
        if src not in _reference:
            ref = bench_dir / "compile-reference.cdb"
            run_proc([refs.tcprules_v4, str(ref), str(ref) + ".tmp"], stdin=src, env=refs.env)
            _reference[src] = sha256(ref)
            ref.unlink()
        measure_rss(argv, stats, stdin=src, env=env)  # once untimed: peak RSS, and the output
        assert sha256(out) == _reference[src], f"{row} wrote a different file than tcprules v4 for {src.name}"
        lib, _, what = row.partition(" ")
        benchmark.group = f"compile-{_data.size_label(n)}"
        benchmark.extra_info.update(
            lib=lib, what=what, per=1, floor=False, subtract=None, baseline=row == "tcprules v4", lines=n
        )
        rounds = ROUNDS if n <= 1_000_000 else min(ROUNDS, 3)
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        benchmark.extra_info.update(stats.info())
    finally:
        out.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
