"""Building a cdb of BIG (1M) records: cdbrules beside cdbx's maker, tinycdb and freecdb.

Group ``build-<N>``; each row is one whole build, wall time, ROUNDS rounds (pedantic):

* ``cdbrules Writer``: ``Writer(path)``, ``add()`` for every record, close (fsync, rename,
  directory fsync), records already in memory as (bytes, bytes) pairs;
* ``cdbrules make``: the CLI, whole process: ``cdbrules make CDB TMP < input``;
* ``cdbx make``: ``CDB.make(path)``, ``add()`` per record, ``commit()``;
* ``tinycdb cdb -c`` (baseline): ``cdb -c -t TMP CDB input``, whole process (no fsync);
* ``freecdb cdbmake``: ``cdbmake CDB TMP < input``, whole process (fsync);
* ``floor empty loop``: ``for k, v in pairs: pass``, for scale (not subtracted: a builder
  from Python needs that loop).

Input for the processes: the cdbmake format (``+klen,dlen:key->data``), 58 MB for 1M
records.  The data folder is a tmpfs by default, so fsync is free and the rows measure work,
not the disk.  Every output is compared byte for byte with freecdb cdbmake's once, outside
the timing.  The process rows also record peak RSS (one untimed run under time(1)) and the
CPU time of the timed runs (wait4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Tuple

import _data
import pytest
from conftest import ROUNDS, ProcStats, cdbrules_cli, cdbrules_has_command, measure_rss, run_proc, sha256

ROWS = [
    "floor empty loop",
    "cdbrules Writer",
    "cdbrules make",
    "cdbx make",
    "tinycdb cdb -c",
    "freecdb cdbmake",
]


@pytest.mark.parametrize("row", ROWS)
def test_build(benchmark, row: str, cdbmake_input: Tuple[Path, Path, int], refs, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    src, ref, n = cdbmake_input
    out = bench_dir / f"build-{row.replace(' ', '_')}.cdb"
    tmp = Path(str(out) + ".tmp")
    stats = ProcStats()
    fn: Callable[[], None]
    if row in ("floor empty loop", "cdbrules Writer", "cdbx make"):
        pairs: List[Tuple[bytes, bytes]] = _data.records(n)
        if row == "floor empty loop":

            def fn() -> None:
                for k, v in pairs:
                    pass

        elif row == "cdbrules Writer":
            from cdbrules import Writer

            def fn() -> None:
                with Writer(out, tmp) as w:
                    add = w.add
                    for k, v in pairs:
                        add(k, v)

        else:
            import cdbx

            def fn() -> None:
                m = cdbx.CDB.make(str(out))
                add = m.add
                for k, v in pairs:
                    add(k, v)
                m.commit().close()

        fn()  # once untimed, for the check below
    else:
        if row == "cdbrules make":
            if not cdbrules_has_command("make"):
                pytest.skip("`cdbrules make` is not in the package yet (issue #2)")
            argv, stdin, env = [*cdbrules_cli(), "make", str(out), str(tmp)], src, None
        elif row == "tinycdb cdb -c":
            argv, stdin, env = [refs.tinycdb, "-c", "-t", str(tmp), str(out), str(src)], None, refs.env
        else:
            argv, stdin, env = [refs.cdbmake, str(out), str(tmp)], src, refs.env

        def fn() -> None:
            run_proc(argv, stdin=stdin, env=env, stats=stats)

        measure_rss(argv, stats, stdin=stdin, env=env)  # once untimed: peak RSS, and the check below
    # the output must be cdbmake's, byte for byte
    if row != "floor empty loop":
        assert sha256(out) == sha256(ref), f"{row} wrote a different file than freecdb cdbmake"
    stats.cpu_s.clear()
    lib, what = row.split(" ", 1)
    benchmark.group = f"build-{_data.size_label(n)}"
    benchmark.extra_info.update(
        lib=lib, what=what, per=1, floor=lib == "floor", subtract=None, baseline=row == "tinycdb cdb -c", records=n
    )
    try:
        benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        if stats.rss_kb is not None:
            benchmark.extra_info.update(stats.info())
    finally:
        out.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)

