"""Session data for the benchmarks: built once, shared by every peer (bench/README.md).

Run with ``pytest bench`` (plain ``pytest`` only collects tests/).  Knobs (environment):

* ``CDBRULES_BENCH_BIG``: records in the big key file, prefixes in the block list, records
  for the build benchmarks and lines of the big compile file (default 1000000);
* ``CDBRULES_BENCH_HUGE``: lines of the huge compile file (default 10000000; 0 skips it);
* ``CDBRULES_BENCH_ROUNDS``: rounds of the process benchmarks (default 5; the huge compile
  uses at most 3);
* ``CDBRULES_BENCH_DIR``: where the data goes (default: a fresh folder in /dev/shm when it
  exists, so fsync costs nothing and builds measure work, not the disk; else pytest's tmp).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import _data  # noqa: E402
import refs as _refs  # noqa: E402

BATCH = 10_000  # lookups per benchmark round: per-call time = median / BATCH
SMALL = 10_000
BIG = int(os.environ.get("CDBRULES_BENCH_BIG", "1000000"))
HUGE = int(os.environ.get("CDBRULES_BENCH_HUGE", "10000000"))
ROUNDS = int(os.environ.get("CDBRULES_BENCH_ROUNDS", "5"))
RULES_N = 1000


# -- the data folder ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    chosen = os.environ.get("CDBRULES_BENCH_DIR")
    if chosen:
        d = Path(tempfile.mkdtemp(prefix="cdbrules-bench-", dir=chosen))
    elif os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="cdbrules-bench-", dir="/dev/shm"))
    else:
        yield tmp_path_factory.mktemp("bench")
        return
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def refs() -> "_refs.Refs":
    return _refs.refs_or_skip()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- processes: wall time measured by pytest-benchmark, CPU by wait4, peak RSS by time(1) ---------


@dataclass
class ProcStats:
    """What one command costs beyond wall time: peak RSS (one measured run), CPU per timed run."""

    rss_kb: Optional[int] = None
    rss_how: str = ""
    cpu_s: List[float] = field(default_factory=list)

    def info(self) -> Dict[str, object]:
        cpu = sorted(self.cpu_s)
        return {
            "peak_rss_kb": self.rss_kb,
            "peak_rss_by": self.rss_how,
            "cpu_s": cpu[len(cpu) // 2] if cpu else None,
        }


def run_proc(
    argv: Sequence[str],
    *,
    stdin: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None,
    stats: Optional[ProcStats] = None,
    stdout: Optional[Path] = None,
) -> None:
    """Run argv to completion, stdin from a file; raise with its stderr if it fails.

    The child is reaped with os.wait4; its user+system CPU time goes to stats.cpu_s.
    """
    with tempfile.TemporaryFile() as err, open(stdin or os.devnull, "rb") as inp, open(
        stdout or os.devnull, "wb"
    ) as out:
        p = subprocess.Popen(list(argv), stdin=inp, stdout=out, stderr=err, env=env, close_fds=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {err.read()[-2000:]!r}")
    if stats is not None:
        stats.cpu_s.append(ru.ru_utime + ru.ru_stime)


# A child's ru_maxrss counts the memory of the process that forked it (Linux keeps the
# high-water mark across exec), so peak RSS is measured under a small C parent: time(1).
_RSS_WRAPPER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure_rss(
    argv: Sequence[str], stats: ProcStats, *, stdin: Optional[Path] = None, env: Optional[Dict[str, str]] = None
) -> None:
    """Run argv once (untimed) and record its peak RSS in KiB.

    With /usr/bin/time (Debian package ``time``) the figure is the command's own; the
    fallback, a fresh ``python -S`` parent, puts a floor of that interpreter's size
    (about 10 MiB) under small figures.
    """
    with tempfile.NamedTemporaryFile(suffix=".rss") as f:
        if os.access("/usr/bin/time", os.X_OK):
            wrapped = ["/usr/bin/time", "-f", "%M", "-o", f.name, *argv]
            how = "time(1)"
        else:
            wrapped = [sys.executable, "-S", "-c", _RSS_WRAPPER, f.name, *argv]
            how = "python -S wrapper"
        run_proc(wrapped, stdin=stdin, env=env)
        text = Path(f.name).read_text().split()
    stats.rss_kb = int(text[-1])
    stats.rss_how = how


def cdbrules_cli() -> List[str]:
    """The installed ``cdbrules`` command (what a user runs), or ``python -m cdbrules``."""
    exe = Path(sys.executable).with_name("cdbrules")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cdbrules"]


def cdbrules_has_command(name: str) -> bool:
    from cdbrules.commands import COMMANDS

    return name in COMMANDS


# -- key/value files -------------------------------------------------------------------------


class Batches:
    """Hands out the next BATCH keys on each call, cycling through a big list.

    On the big file, consecutive rounds touch different records, so the timed lookups do
    not find the file warmed up in the cache by the previous round.
    """

    def __init__(self, items: Sequence[object], size: int = BATCH) -> None:
        self.slices = [list(items[i:i + size]) for i in range(0, len(items), size)]
        self.i = 0

    def __call__(self) -> list:
        s = self.slices[self.i]
        self.i = (self.i + 1) % len(self.slices)
        return s

    def fresh(self) -> "Batches":
        """The same slices, from the first one again (each peer starts at the same place)."""
        b = Batches([])
        b.slices = self.slices
        return b


@dataclass
class KeyFile:
    n: int
    label: str
    path: Path
    pairs: List[Tuple[bytes, bytes]]
    hits: Batches
    misses: Batches
    all_hits: List[bytes]
    all_misses: List[bytes]
    _dict: Optional[Dict[bytes, bytes]] = None

    def as_dict(self) -> Dict[bytes, bytes]:
        """The same records in a dict (first value of a key wins, as in cdb)."""
        if self._dict is None:
            d: Dict[bytes, bytes] = {}
            for k, v in self.pairs:
                d.setdefault(k, v)
            self._dict = d
        return self._dict


_keyfiles: Dict[int, KeyFile] = {}


def keyfile(n: int, base: Path) -> KeyFile:
    """The n-record cdb file (written by cdbrules.Writer) and its lookup keys, once per session."""
    if n not in _keyfiles:
        from cdbrules import Writer

        pairs = _data.records(n)
        path = base / f"keys-{_data.size_label(n)}.cdb"
        with Writer(path) as w:
            for k, v in pairs:
                w.add(k, v)
        hits = _data.hit_keys(n, n)
        misses = _data.miss_keys(n, n)
        _keyfiles[n] = KeyFile(n, _data.size_label(n), path, pairs, Batches(hits), Batches(misses), hits, misses)
    return _keyfiles[n]


@pytest.fixture(scope="session", params=sorted({SMALL, BIG}), ids=_data.size_label)
def keys(request: pytest.FixtureRequest, bench_dir: Path) -> KeyFile:
    return keyfile(request.param, bench_dir)


@pytest.fixture(scope="session")
def keys_small(bench_dir: Path) -> KeyFile:
    return keyfile(SMALL, bench_dir)


@pytest.fixture(scope="session")
def cdbmake_input(bench_dir: Path, refs: "_refs.Refs") -> Tuple[Path, Path, int]:
    """(cdbmake input file, the cdb freecdb cdbmake makes of it, records) for BIG records."""
    pairs = keyfile(BIG, bench_dir).pairs if BIG in _keyfiles else _data.records(BIG)
    src = bench_dir / f"make-{_data.size_label(BIG)}.txt"
    src.write_bytes(_data.cdbmake_input(pairs))
    ref = bench_dir / "make-ref.cdb"
    run_proc([refs.cdbmake, str(ref), str(ref) + ".tmp"], stdin=src, env=refs.env)
    return src, ref, len(pairs)


# -- rules files -----------------------------------------------------------------------------


@dataclass
class RulesFile:
    label: str
    text_path: Path
    path: Path  # compiled by the real tcprules (v4 build)
    probes: Batches
    all_probes: List[str]


def _compile_with_tcprules(refs: "_refs.Refs", text_path: Path, out: Path) -> None:
    run_proc([refs.tcprules_v4, str(out), str(out) + ".tmp"], stdin=text_path, env=refs.env)
    # cdbrules must write the same file; a difference is a bug to report, not to time.
    import cdbrules

    mine = out.with_suffix(".cdbrules.cdb")
    cdbrules.compile(text_path, mine)
    assert sha256(mine) == sha256(out), f"cdbrules.compile({text_path}) differs from tcprules' file"
    mine.unlink()


@pytest.fixture(scope="session")
def rules_1k(bench_dir: Path, refs: "_refs.Refs") -> RulesFile:
    text, named = _data.smtp_rules(RULES_N)
    src = bench_dir / "tcp.smtp"
    src.write_bytes(text)
    out = bench_dir / "tcp.smtp.cdb"
    _compile_with_tcprules(refs, src, out)
    probes = _data.smtp_probes(named, BATCH)
    return RulesFile("1k", src, out, Batches(probes), probes)


@pytest.fixture(scope="session")
def rules_block(bench_dir: Path, refs: "_refs.Refs") -> RulesFile:
    text, nets = _data.blocklist(BIG)
    src = bench_dir / "block.rules"
    src.write_bytes(text)
    out = bench_dir / "block.cdb"
    _compile_with_tcprules(refs, src, out)
    probes = _data.blocklist_probes(nets, max(BATCH, min(BIG, 200_000)))
    return RulesFile(_data.size_label(BIG), src, out, Batches(probes), probes)


@pytest.fixture(scope="session", params=["1k", "block"], ids=lambda p: p)
def rules(request: pytest.FixtureRequest) -> RulesFile:
    name = "rules_1k" if request.param == "1k" else "rules_block"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def tcpserver_way(bench_dir: Path) -> Path:
    """bench/tcpserver_way.c compiled with cdbrules' C core (gcc -O2, as the extension)."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        pytest.skip("no C compiler (gcc) to build bench/tcpserver_way.c")
    exe = bench_dir / "tcpserver_way"
    argv = [
        cc, "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall", "-Wextra",
        "-ffunction-sections", "-Wl,--gc-sections", f"-I{ROOT / 'csrc'}", "-o", str(exe),
        str(HERE / "tcpserver_way.c"), *sorted(str(p) for p in (ROOT / "csrc").glob("*.c")),
    ]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building tcpserver_way failed: {r.stderr[-2000:]}")
    return exe


# -- compile inputs: big (BIG lines) and huge (HUGE lines, deleted after the session) --------------


@pytest.fixture(scope="session", params=[BIG, HUGE], ids=lambda n: _data.size_label(n) if n else "huge-off")
def compile_input(request: pytest.FixtureRequest, bench_dir: Path) -> Iterator[Tuple[Path, int]]:
    n = request.param
    if not n:
        pytest.skip("CDBRULES_BENCH_HUGE=0: the huge compile file is off")
    path = bench_dir / f"compile-{_data.size_label(n)}.rules"
    with open(path, "wb") as f:
        _data.write_compile_input(f, n)
    try:
        yield path, n
    finally:
        path.unlink(missing_ok=True)


# -- what the report needs to know about the machine ------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("cdbrules", "cdbx", "pure-cdb", "pytricia", "cffi", "pytest-benchmark"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    cdbrules_info = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "versions": _versions(),
        "batch": BATCH,
        "big": BIG,
        "huge": HUGE,
        "rounds": ROUNDS,
        "data_dir": os.environ.get("CDBRULES_BENCH_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "tmp"),
    }
    try:
        cdbrules_info["refs"] = _refs.get_refs().versions
    except RuntimeError as e:
        cdbrules_info["refs"] = str(e)
    machine_info["cdbrules"] = cdbrules_info
