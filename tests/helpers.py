"""What the test modules share: test modules import from here (and from refs.py and
conftest.py), never from one another.

* paths of the repository the tests read (examples/, fuzz/);
* the platform: what only Linux has (``linux_only``, ``lacking``), ``maxrss_kib``,
  ``char_device``;
* ``run_cli``: ``cdbrules ARGV`` run in this process, and ``cdb_input`` (cdbmake's input);
* ``bucket_keys``: keys that land in one cdb hash bucket;
* the fuzz corpora the suite replays (``fuzz_units``, ``cdbget_keys``, ``lookup_unit``)
  and what the replay compares with the reference programs (``replay_counts``: the
  README's figures, by fuzz/report.py);
* the model of docs/format.md ("The separator") that predicts where each tcprules build
  splits a line (``split_lines``, ``kind`` ...), and the differential oracle built on it
  that runs an input through ``cdbrules.compile`` and both reference builds (``Checker``,
  ``check_all``; the ``checker`` fixture is in conftest.py).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import io
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple, Union

import pytest

import cdbrules
from cdbrules import RulesSyntaxError
from cdbrules._bindings import cdb_hash
from cdbrules.cli import main
from refs import truthy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FUZZ = ROOT / "fuzz"


def load_script(path: Path) -> ModuleType:
    """A script of the repository (examples/gen_blocklist.py, bench/report.py, ...) loaded
    as a module, without running its main."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------
# the platform: the suite runs on Linux (glibc and musl) and macOS; a few tests need what
# only Linux has.  On Linux under CI nothing may skip for want of a tool: CI installs it.


def on_linux() -> bool:
    return sys.platform.startswith("linux")


def under_ci() -> bool:
    return truthy(os.environ.get("CI"))


def under_asan() -> bool:
    """Whether this is the sanitizer run (.ci/asan preloads the ASan runtime).  ASan keeps
    freed memory in quarantine, so a process's resident size keeps growing there: memory
    bounds are for the ordinary run."""
    return "libasan" in os.environ.get("LD_PRELOAD", "")


def linux_only(what: str) -> "pytest.MarkDecorator":
    """Mark a test that needs what only Linux has (procfs, /dev/full, tmpfs mounts,
    RLIMIT_AS that malloc obeys): it skips elsewhere, saying what it needs."""
    return pytest.mark.skipif(not on_linux(), reason=f"Linux only: needs {what}")


def lacking(what: str) -> NoReturn:
    """This system lacks WHAT, which the test needs.  Under CI on Linux that is a failure
    (CI must provide it: .ci/run and the wheel workflow install it); elsewhere the test
    skips, saying what is missing."""
    if on_linux() and under_ci():
        pytest.fail(f"CI on Linux must provide {what}", pytrace=False)
    pytest.skip(f"{what}: not on this system" if on_linux() else f"{what}: Linux only ({sys.platform} here)")


def system_env(**extra: str) -> Dict[str, str]:
    """The environment for a system program (git, groff, Postfix): without the sanitizer
    runtime that .ci/asan preloads for our extension, which reports bugs of those
    programs, not ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


def maxrss_kib(ru_maxrss: int) -> int:
    """getrusage()'s ru_maxrss in KiB: Linux counts it in KiB, macOS in bytes."""
    return ru_maxrss // 1024 if sys.platform == "darwin" else ru_maxrss


def tmpfs(d: Path, size: str, instead: str) -> Iterator[Path]:
    """Mount a tmpfs of SIZE at d for one test; skip, saying why and what covers the case
    INSTEAD, where that is impossible (not root, a container without CAP_SYS_ADMIN, or not
    Linux).  .ci/run runs as root on Linux, where it always works."""
    if not on_linux():
        pytest.skip(f"Linux only: needs mount -t tmpfs ({instead})")
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()} ({instead})")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=True)


def other_file_system(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on another file system than tmp_path: in /dev/shm where that is
    one, else on a tmpfs of its own."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        d = Path(os.path.realpath(shm)) / f"cdbrules-test-{os.getpid()}-{random.getrandbits(32):08x}"
        d.mkdir()
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return
    yield from tmpfs(tmp_path / "otherfs", "1m", "no second file system to put TMP on")


def char_device() -> Path:
    """A character device every system has, for tests of a device given as a file:
    /dev/full where there is one (Linux: writes fail with ENOSPC), else /dev/null."""
    full = Path("/dev/full")
    return full if full.exists() else Path("/dev/null")


# --------------------------------------------------------------------------------------
# the command line, in process


PY = [sys.executable, "-m", "cdbrules"]


def run_cli(argv: List[str], stdin: Union[bytes, int, None] = b"") -> Tuple[int, bytes, str]:
    """Run ``cdbrules ARGV`` in this process: (exit code, stdout bytes, stderr text).

    stdin: bytes become file descriptor 0 (a regular file); an int is a descriptor put
    there instead; None leaves descriptor 0 closed.
    """
    saved_in, saved_out = os.dup(0), os.dup(1)
    old_err = sys.stderr
    err = io.StringIO()
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout:
        if isinstance(stdin, bytes):
            fin.write(stdin)
            fin.seek(0)
            os.dup2(fin.fileno(), 0)
        elif isinstance(stdin, int):
            os.dup2(stdin, 0)
        else:
            os.close(0)
        os.dup2(fout.fileno(), 1)
        sys.stderr = err
        try:
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stderr = old_err
            os.dup2(saved_in, 0)
            os.dup2(saved_out, 1)
            os.close(saved_in)
            os.close(saved_out)
        fout.seek(0)
        out = fout.read()
    return rc, out, err.getvalue()


def cdb_input(records: List[Tuple[bytes, bytes]]) -> bytes:
    """cdbmake's input for records."""
    return b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records) + b"\n"


# --------------------------------------------------------------------------------------
# cdb


def bucket_keys(bucket: int, n: int, prefix: bytes = b"k") -> List[bytes]:
    """The first n keys PREFIX0, PREFIX1, ... whose hash falls in header bucket ``bucket``."""
    out: List[bytes] = []
    i = 0
    while len(out) < n:
        k = prefix + b"%d" % i
        if cdb_hash(k) & 255 == bucket:
            out.append(k)
        i += 1
    return out


# --------------------------------------------------------------------------------------
# compiling rules against the reference tcprules

HANG_CPU = 0.3  # seconds of CPU after which a tcprules on a small input is in the v6 loop
WALL_LIMIT = 30.0  # seconds: nothing here may take that long, hang or not
BATCH = 200  # files per batch: written, run through both references two at a time, compared

PARSE_ERROR = b"tcprules: fatal: unable to parse this line: "


# --------------------------------------------------------------------------------------
# the model of docs/format.md ("Trailing blanks", "The separator") that predicts where each
# build splits a line (no parsing)


def split_lines(text: bytes) -> List[bytes]:
    """The lines of text, each with its '\\n' (the last may have none); only '\\n' ends a line."""
    parts = text.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def trimmed(line: bytes) -> bytes:
    """The line as tcprules prints it: trailing '\\n', space and tab removed."""
    return line.rstrip(b" \t\n")


def separator(t: bytes) -> Optional[int]:
    """Index of the first ':' followed by 'deny' or 'allow' in the trimmed line t."""
    i = t.find(b":")
    while i >= 0:
        if t[i + 1:i + 5] == b"deny" or t[i + 1:i + 6] == b"allow":
            return i
        i = t.find(b":", i + 1)
    return None


SKIP, NOCOLON, BAD, RULE, RULE6 = "skip", "nocolon", "bad", "rule", "rule6"


def kind(line: bytes) -> str:
    """skip: comment or blank; nocolon: v4 skips it, v6 hangs; bad: a ':' but no separator
    (v4 error, v6 hangs); rule: both builds split at the same ':'; rule6: the separator is
    not the first ':' (v6 splits there, v4 fails)."""
    if line[:1] == b"#" or line == b"\n":
        return SKIP
    t = trimmed(line)
    if b":" not in t:
        return NOCOLON
    sep = separator(t)
    if sep is None:
        return BAD
    return RULE if sep == t.index(b":") else RULE6


# --------------------------------------------------------------------------------------
# outcomes: ("ok", cdb bytes) or ("error", the printed line, cut at its first NUL)

Outcome = Tuple[str, bytes]


def printed(line: bytes) -> bytes:
    """What tcprules prints for a bad line: trimmed, then cut at the first NUL (a C string)."""
    return trimmed(line).split(b"\0", 1)[0]


def ref_outcome(rc: Optional[int], stderr: bytes, cdb: Path, what: str) -> Outcome:
    if rc == 0:
        return ("ok", cdb.read_bytes())
    if rc == 100 and stderr.startswith(PARSE_ERROR) and stderr.endswith(b"\n") and stderr.count(b"\n") == 1:
        return ("error", stderr[len(PARSE_ERROR):-1])
    raise AssertionError(f"{what}: unexpected exit {rc}, stderr {stderr!r}")


def records_in(cdb: bytes) -> int:
    """The number of records of a cdb file (each owns two slots)."""
    return sum(struct.unpack_from("<512I", cdb)[1::2]) // 2


class Pieces(io.RawIOBase):
    """A binary stream that hands the text out in small pieces of random size, so lines
    span the parser's input pieces in every way."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.data, self.pos, self.rng = data, 0, rng

    def readable(self) -> bool:
        return True

    def readinto(self, b: "memoryview") -> int:  # type: ignore[override]
        n = min(len(b), len(self.data) - self.pos, self.rng.randint(1, 17))
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@dataclass
class Ours:
    outcome: Outcome
    lineno: int  # the line we stopped at (1-based), or 0 when the compile succeeded
    stats: Optional[cdbrules.CompileStats]


def run_ours(data: bytes, work: Path, rng: Optional[random.Random] = None) -> Ours:
    cdb, tmp = work / "ours.cdb", work / "ours.tmp"
    src = Pieces(data, rng) if rng is not None else io.BytesIO(data)
    try:
        stats = cdbrules.compile(src, cdb, tmp)
    except RulesSyntaxError as e:
        assert not tmp.exists(), "a failed compile left TMP behind"
        return Ours(("error", e.line.split(b"\0", 1)[0]), e.lineno, None)
    assert not tmp.exists()
    out = cdb.read_bytes()
    cdb.unlink()
    return Ours(("ok", out), 0, stats)


# --------------------------------------------------------------------------------------
# running the references


@dataclass
class Run:
    rc: Optional[int]  # None: hung (killed)
    stderr: bytes
    cdb: Path


def run_tcprules(prog: str, env: Dict[str, str], data: bytes, work: Path, tag: str) -> Run:
    """tcprules CDB TMP < data in work; a hang (CPU time past HANG_CPU) is killed."""
    inp, cdb, tmp = work / f"{tag}.in", work / f"{tag}.cdb", work / f"{tag}.tmp"
    inp.write_bytes(data)
    cpu_limit = HANG_CPU + len(data) * 1e-7  # 10 MB/s of CPU is far below tcprules' speed
    for f in (cdb, tmp):
        if f.exists():
            f.unlink()
    with open(inp, "rb") as stdin:
        proc = subprocess.Popen(
            [prog, str(cdb), str(tmp)], stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, cwd=work, start_new_session=True,
        )
    start = time.monotonic()
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.05)
                return Run(proc.returncode, err, cdb)
            except subprocess.TimeoutExpired:
                pass
            if _cpu_seconds(proc.pid) >= cpu_limit or time.monotonic() - start > WALL_LIMIT:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
                return Run(None, err, cdb)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------
# the oracle


@dataclass
class Plan:
    lines: List[bytes]
    kinds: List[str]
    v6_input: bytes  # the text the v6 build can run on without hanging
    cut: Optional[int]  # index into lines of the line v6_input was cut before (a "bad" line)
    dropped: bool  # lines with no ':' were taken out


def plan(data: bytes) -> Plan:
    lines = split_lines(data)
    kinds = [kind(x) for x in lines]
    keep: List[bytes] = []
    cut = None
    for i, (x, k) in enumerate(zip(lines, kinds)):
        if k == BAD:
            cut = i
            break
        if k != NOCOLON:
            keep.append(x)
    return Plan(lines, kinds, b"".join(keep), cut, NOCOLON in kinds[: cut if cut is not None else len(kinds)])


def expected_v6(p: Plan, v6: Run) -> Outcome:
    """What we must give, from the v6 build's run on p.v6_input."""
    assert v6.rc is not None, f"the v6 build hung although no line was predicted to hang: {p.v6_input!r}"
    got = ref_outcome(v6.rc, v6.stderr, v6.cdb, "v6 tcprules")
    if got[0] == "ok" and p.cut is not None:
        return ("error", printed(p.lines[p.cut]))
    return got


def expected_v4(p: Plan, ours: Ours) -> Optional[bytes]:
    """The line the v4 build must fail on instead of giving our result (None: ours)."""
    stop = ours.lineno if ours.lineno else len(p.lines)
    for i in range(stop):
        if p.kinds[i] == RULE6:
            return printed(p.lines[i])
    return None


def predicted_hang(p: Plan, ours: Ours) -> Tuple[bool, bool]:
    """(hangs, may instead fail) for the v6 build on the whole input.

    It hangs at the first line with no separator (no ':' at all included) that it reaches;
    it reaches a line if we did not stop before it.  The stale-buffer quirk (end of docs/format.md) can
    turn a hang on a last line without a newline into a parse error of that line."""
    stop = ours.lineno if ours.lineno else len(p.lines)
    for i in range(stop):
        if p.kinds[i] in (NOCOLON, BAD):
            stale = p.kinds[i] == BAD and i == len(p.lines) - 1 and not p.lines[i].endswith(b"\n")
            return True, stale
    return False, False


def describe(data: bytes) -> str:
    r = repr(data)
    return r if len(r) < 600 else r[:600] + "..."


class Checker:
    """Runs one input through ours and both references and says what differs."""

    def __init__(self, refs: object, work: Path) -> None:
        self.refs = refs
        self.work = work
        self.env = dict(refs.env)  # type: ignore[attr-defined]
        self.counts: Dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def references(self, data: bytes, slot: str) -> Tuple[Plan, Run, Run]:
        """Both reference runs for data (thread-safe: its own files per slot)."""
        d = self.work / slot
        d.mkdir(exist_ok=True)
        p = plan(data)
        v6 = run_tcprules(self.refs.tcprules_v6, self.env, p.v6_input, d, "v6")  # type: ignore[attr-defined]
        v4 = run_tcprules(self.refs.tcprules_v4, self.env, data, d, "v4")  # type: ignore[attr-defined]
        return p, v6, v4

    def compare(self, data: bytes, p: Plan, v6: Run, v4: Run, rng: Optional[random.Random] = None) -> List[str]:
        """Problems found (empty: all agree).  Must run before the slot is reused."""
        problems: List[str] = []
        d = self.work / "ours"
        d.mkdir(exist_ok=True)
        ours = run_ours(data, d, rng)
        want = expected_v6(p, v6)
        if ours.outcome != want:
            problems.append(f"v6: expected {_short(want)}, got {_short(ours.outcome)}")
        if ours.outcome[0] == "error" and not (1 <= ours.lineno <= len(p.lines)
                                               and printed(p.lines[ours.lineno - 1]) == ours.outcome[1]):
            problems.append(f"error reported on line {ours.lineno}, which is not the line {ours.outcome[1]!r}")
        if ours.stats is not None:
            if ours.stats.lines != len(p.lines):
                problems.append(f"stats.lines {ours.stats.lines} != {len(p.lines)}")
            if ours.stats.keys != records_in(ours.outcome[1]):
                problems.append(f"stats.keys {ours.stats.keys} != {records_in(ours.outcome[1])} records")
        v4_line = expected_v4(p, ours)
        assert v4.rc is not None, "the v4 build hung"
        got4 = ref_outcome(v4.rc, v4.stderr, v4.cdb, "v4 tcprules")
        want4 = ("error", v4_line) if v4_line is not None else ours.outcome
        if got4 != want4:
            problems.append(f"v4: expected {_short(want4)}, v4 gave {_short(got4)}")
        self.count(f"ours {ours.outcome[0]}")
        self.count("v4 differs (IPv6 separator)" if v4_line is not None else "v4 same as ours")
        if p.cut is not None or p.dropped:
            self.count("v6 would hang on the whole input")
        return problems

    def verify_hang(self, data: bytes, slot: str) -> List[str]:
        """Run the v6 build on the whole input: it must hang exactly when predicted."""
        d = self.work / slot
        d.mkdir(exist_ok=True)
        p = plan(data)
        ours = run_ours(data, d)
        hangs, may_fail = predicted_hang(p, ours)
        v6 = run_tcprules(self.refs.tcprules_v6, self.env, data, d, "v6all")  # type: ignore[attr-defined]
        if hangs:
            if v6.rc is None:
                self.count("v6 hang predicted and seen")
                return []
            if may_fail and v6.rc == 100 and v6.stderr == PARSE_ERROR + ours.outcome[1] + b"\n":
                self.count("v6 stale-buffer parse error instead of a hang")
                return []
            return [f"predicted a v6 hang, but it exited {v6.rc} {v6.stderr!r}"]
        if v6.rc is None:
            return ["the v6 build hung where no hang was predicted"]
        got = ref_outcome(v6.rc, v6.stderr, v6.cdb, "v6 tcprules")
        self.count("v6 termination predicted and seen")
        return [] if got == ours.outcome else [f"v6 on the whole input gave {_short(got)}, ours {_short(ours.outcome)}"]


def _short(o: Outcome) -> str:
    if o[0] == "ok":
        return f"a cdb of {len(o[1])} bytes ({records_in(o[1])} records)"
    return f"a parse error on {o[1][:200]!r}"


def scratch_dir() -> Path:
    """A scratch folder, on tmpfs when there is one: every run fsyncs its files."""
    for base in (os.environ.get("CDBRULES_DIFF_DIR"), "/dev/shm", None):
        if base is None or os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="cdbrules-diff-", dir=base))
    raise AssertionError("unreachable")


def check_all(checker: Checker, inputs: Sequence[bytes], rng: Optional[random.Random] = None) -> List[str]:
    """Check inputs, the reference runs two at a time; return the failures, described."""
    failures: List[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(inputs), BATCH):
            batch = inputs[start:start + BATCH]
            futures = [pool.submit(checker.references, data, f"s{i}") for i, data in enumerate(batch)]
            for data, fut in zip(batch, futures):
                p, v6, v4 = fut.result()
                piecewise = rng if rng is not None and rng.random() < 0.3 else None
                for problem in checker.compare(data, p, v6, v4, piecewise):
                    failures.append(f"{describe(data)}: {problem}")
    return failures


def verify_hangs(checker: Checker, inputs: Sequence[bytes]) -> List[str]:
    failures: List[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(data, pool.submit(checker.verify_hang, data, f"h{i}")) for i, data in enumerate(inputs)]
        for data, fut in futures:
            failures += [f"{describe(data)}: {problem}" for problem in fut.result()]
    return failures


# --------------------------------------------------------------------------------------
# the fuzz corpora, replayed by test_fuzz_regressions (and counted for the README)

CDB_HEADER = 2048


def fuzz_units(name: str) -> List[Path]:
    """The committed units of a harness, and those under $CDBRULES_FUZZ_CORPUS/NAME (to
    replay what a long fuzz/run learnt: CDBRULES_FUZZ_CORPUS=.cache/fuzz/corpus)."""
    out: List[Path] = []
    roots = [FUZZ / "corpus", FUZZ / "regressions"]
    if os.environ.get("CDBRULES_FUZZ_CORPUS"):
        roots.append(Path(os.environ["CDBRULES_FUZZ_CORPUS"]))
    for d in (r / name for r in roots):
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.is_file())
    return out


def keys_to_try(data: bytes) -> List[bytes]:
    """The keys of the first records (walked as djb's cdbdump would, stopping at damage),
    the empty key, a key that is in no file and a few slices of the file (which walk
    its hash tables, damaged or not)."""
    keys: List[bytes] = [b"", b"no such key"]
    bytes_ = data[CDB_HEADER:].replace(b"\0", b"")
    keys += [bytes_[at:at + 1 + i] for i, at in enumerate((0, 5, 17, 41, 97, 211)) if at < len(bytes_)]
    end = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
    if not CDB_HEADER <= end <= len(data):
        end = len(data)
    pos = CDB_HEADER
    while pos + 8 <= end and len(keys) < 16:
        kl = int.from_bytes(data[pos:pos + 4], "little")
        dl = int.from_bytes(data[pos + 4:pos + 8], "little")
        if pos + 8 + kl + dl > end:
            break
        keys.append(data[pos + 8:pos + 8 + kl])
        pos += 8 + kl + dl
    return keys


def cdbget_keys(data: bytes) -> List[bytes]:
    """The keys of keys_to_try that cdbget can be asked for (it takes the key as an
    argument: none empty, with a NUL or starting with '-').  A file shorter than its
    header is compared with nothing: cdbrules refuses it whole, where cdbget answers from
    what header is left (test_file_shorter_than_its_header)."""
    return [k for k in keys_to_try(data) if k and b"\0" not in k and not k.startswith(b"-")]


def lookup_unit(data: bytes) -> Tuple[int, bytes, bytes, bytes, bytes]:
    """A fuzz_lookup unit: (flags, ip, host, info, rules text or cdb image)."""
    flags, rest = data[0], data[1:]
    parts = rest.split(b"\0", 3)
    while len(parts) < 4:
        parts.append(b"")
    return flags, parts[0], parts[1], parts[2], parts[3]


def v6_whole(data: bytes) -> bool:
    """The IPv6 tcprules can run on the whole text (no line it would hang on), so the
    oracle compares with it byte for byte; otherwise with its run on the part before
    such a line, and with the IPv4 build on the whole text."""
    p = plan(data)
    return p.cut is None and not p.dropped


@dataclass
class ReplayCounts:
    """What test_fuzz_regressions compares with the reference programs."""

    reader_files: int  # cdb files
    reader_short: int  # of them, shorter than a header: refused, compared with nothing
    reader_lookups: int  # keys looked up by Reader and by freecdb's cdbget
    rules_files: int  # rules texts compiled and compared with tcprules
    rules_v6_whole: int  # of them, compared with the IPv6 build on the whole text
    lookups: int  # connections checked by `cdbrules check` and the IPv6 tcprulescheck


def replay_counts() -> ReplayCounts:
    reader = [u.read_bytes() for u in fuzz_units("reader")]
    full = [d for d in reader if len(d) >= CDB_HEADER]
    rules = [u.read_bytes() for u in fuzz_units("rules")]
    return ReplayCounts(
        reader_files=len(reader),
        reader_short=len(reader) - len(full),
        reader_lookups=sum(len(cdbget_keys(d)) for d in full),
        rules_files=len(rules),
        rules_v6_whole=sum(v6_whole(d) for d in rules),
        lookups=len(fuzz_units("lookup")),
    )
