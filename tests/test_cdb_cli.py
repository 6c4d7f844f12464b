"""``cdbrules make|dump|get|stats``: command line, messages, exit codes, files.

Compared with freecdb's cdbmake/cdbdump/cdbget/cdbstats wherever the situation exists
for both (freecdb's readers take the file on standard input, ours as an argument).
``run_cli`` (helpers.py) runs the command in this process with real file descriptors 0 and 1 (the
commands read and write them directly); a few tests start the installed entry point.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from cdbrules import Writer
from helpers import PY, cdb_input, linux_only, run_cli

RECORDS = [(b"a", b"1"), (b"b", b"two"), (b"a", b"3"), (b"", b"empty key"), (b"k\0\n", b""), (b"e", b"")]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.cdb"
    with Writer(path) as w:
        for k, v in RECORDS:
            w.add(k, v)
    return path


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err


# -- help and usage ------------------------------------------------------------------------


def test_help_lists_every_subcommand() -> None:
    r = subprocess.run(PY + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ") and line.split()]
    for name in ("compile", "make", "dump", "get", "stats"):
        assert name in listed, r.stdout


@pytest.mark.parametrize("name", ["make", "dump", "get", "stats"])
def test_subcommand_help(name: str) -> None:
    r = subprocess.run(PY + [name, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: cdbrules {name} ")
    assert "Exit codes" in r.stdout


@pytest.mark.parametrize(
    "argv, ref",
    [
        (["make"], ["cdbmake"]),
        (["make", "x.cdb"], ["cdbmake", "x.cdb"]),
        (["make", "x.cdb", "x.tmp", "extra"], ["cdbmake", "x.cdb", "x.tmp", "extra"]),
        (["make", "", "x.tmp"], ["cdbmake", "", "x.tmp"]),
        (["make", "x.cdb", ""], ["cdbmake", "x.cdb", ""]),
        (["dump"], None),
        (["dump", "a.cdb", "b"], ["cdbdump", "b"]),
        (["stats"], None),
        (["stats", "a.cdb", "b"], ["cdbstats", "b"]),
        (["get", "a.cdb"], ["cdbget"]),
        (["get", "a.cdb", "k", "1", "2"], ["cdbget", "k", "1", "2"]),
        (["get", "a.cdb", "k", "-1"], ["cdbget", "k", "-1"]),
        (["get", "a.cdb", "k", "+1"], ["cdbget", "k", "+1"]),
        (["get", "a.cdb", "k", " 1"], ["cdbget", "k", " 1"]),
        (["get", "a.cdb", "k", "1x"], ["cdbget", "k", "1x"]),
        (["get", "a.cdb", "k", "\u0661"], ["cdbget", "k", "\u0661"]),  # a non-ASCII digit
        (["bogus"], None),
        ([], None),
    ],
)
def test_bad_usage_exits_100_with_a_usage_line(
    argv: List[str], ref: Optional[List[str]], refs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(argv)
    assert rc == 100
    assert out == b""
    assert "usage:" in err
    _no_traceback(err)
    assert not (tmp_path / "x.tmp").exists()
    if ref is not None:
        r = refs.run([getattr(refs, ref[0])] + ref[1:], cwd=tmp_path)
        assert r.returncode == 100, r
        assert b"usage:" in r.stderr


# -- make ----------------------------------------------------------------------------------


def test_make_writes_the_file_cdbmake_writes(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = cdb_input(RECORDS * 3)
    rc, out, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp_path / "o.tmp")], data)
    assert (rc, out, err) == (0, b"", "")
    r = refs.run([refs.cdbmake, "r.cdb", "r.tmp"], stdin=data, cwd=tmp_path)
    assert r.returncode == 0, r
    assert (tmp_path / "o.cdb").read_bytes() == (tmp_path / "r.cdb").read_bytes()
    assert not (tmp_path / "o.tmp").exists()


def test_make_entry_point(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The installed command, through a pipe, as a shell script runs it."""
    data = cdb_input(RECORDS)
    r = subprocess.run(PY + ["make", "o.cdb", "o.tmp"], input=data, capture_output=True, cwd=tmp_path, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    ref = refs.run([refs.cdbmake, "r.cdb", "r.tmp"], stdin=data, cwd=tmp_path)
    assert ref.returncode == 0
    assert (tmp_path / "o.cdb").read_bytes() == (tmp_path / "r.cdb").read_bytes()


@pytest.mark.parametrize(
    "data, where",
    [
        (b"", "entry 1 at offset 0"),
        (b"+1,1:a->b\n", "entry 2 at offset 10"),
        (b"+1,1:a->b\r\n\n", "entry 1 at offset 9"),
        (b"+1,1:a->b\n\r\n", "entry 2 at offset 10"),
        (b" +1,1:a->b\n\n", "entry 1 at offset 0"),
        (b"+1,1:a->b\n+1;1:a->b\n\n", "entry 2 at offset 12"),
        (b"+1,1;a->b\n\n", "entry 1 at offset 4"),
        (b"+2,1:a->b\n\n", "entry 1 at offset 7"),
        (b"+1,2:a->b\n\n", "entry 2 at offset 11"),
        (b"+1,1:a->bc\n\n", "entry 1 at offset 9"),
        (b"+4294967210,0:", "entry 1 at offset 10"),
        (b"+0,42949672100:->", "entry 1 at offset 12"),
    ],
)
def test_make_bad_input(data: bytes, where: str, refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """cdbmake's exit code and wording; our message says where; CDB untouched, TMP removed."""
    (tmp_path / "o.cdb").write_bytes(b"old")
    rc, out, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp_path / "o.tmp")], data)
    r = refs.run([refs.cdbmake, "r.cdb", "r.tmp"], stdin=data, cwd=tmp_path)
    assert rc == r.returncode == 111
    assert out == b""
    assert err.count("\n") == 1 and err.startswith("cdbrules: fatal: ")
    assert where in err
    ref_msg = r.stderr.decode().strip()
    if "unable to read input: " in ref_msg:
        # cdbmake's own words (with its "if" typo corrected) are in ours
        reason = ref_msg.split(": ", 4)[-1].replace("end if input", "end of input")
        assert reason in err, (reason, err)
        assert ref_msg.split(": ")[3] in err  # "entry N"
    else:  # a huge length: cdbmake says "out of memory"
        assert "out of memory" in ref_msg and "larger than a cdb file can hold" in err
    assert (tmp_path / "o.cdb").read_bytes() == b"old"
    assert not (tmp_path / "o.tmp").exists()


def test_make_stops_reading_at_the_empty_line(tmp_path: Path) -> None:
    rc, _, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp_path / "o.tmp")], b"+1,1:a->b\n\n+garbage")
    assert (rc, err) == (0, "")
    rc, out, _ = run_cli(["dump", str(tmp_path / "o.cdb")])
    assert (rc, out) == (0, b"+1,1:a->b\n\n")


def test_make_from_a_directory_or_closed_stdin(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        rc, out, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp_path / "o.tmp")], fd)
        r = refs.run([refs.cdbmake, "r.cdb", "r.tmp"], stdin=fd, cwd=tmp_path)
    finally:
        os.close(fd)
    assert rc == r.returncode == 111
    assert err == "cdbrules: fatal: unable to read input: is a directory\n"
    assert not (tmp_path / "o.tmp").exists() and not (tmp_path / "o.cdb").exists()
    rc, out, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp_path / "o.tmp")], None)
    assert rc == 111
    assert err == "cdbrules: fatal: unable to read input: file descriptor not open\n"
    assert not (tmp_path / "o.tmp").exists()


def test_make_system_errors_name_the_file(refs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data = cdb_input(RECORDS)
    monkeypatch.chdir(tmp_path)
    cases = [
        (["nodir/o.cdb", "o.tmp"], "unable to move o.tmp to nodir/o.cdb: file does not exist"),
        (["o.cdb", "nodir/o.tmp"], "nodir/o.tmp: file does not exist"),
        (["o.cdb", "/dev/full"], "/dev/full"),
    ]
    (tmp_path / "d").mkdir()
    cases.append((["o.cdb", "d"], "d: is a directory"))
    for args, text in cases:
        rc, out, err = run_cli(["make"] + args, data)
        assert err.startswith("cdbrules: fatal: ") and text in err, (args, err)
        assert err.count("\n") == 1
        assert not (tmp_path / "o.cdb").exists()
        assert not (tmp_path / "o.tmp").exists()  # ours removes it (cdbmake leaves it)
        r = refs.run([refs.cdbmake] + args, stdin=data, cwd=tmp_path)
        assert rc == r.returncode == 111, (args, err, r)
        if (tmp_path / "o.tmp").exists():
            (tmp_path / "o.tmp").unlink()


def test_make_refuses_tmp_equal_to_cdb(tmp_path: Path, small: Path) -> None:
    before = small.read_bytes()
    rc, out, err = run_cli(["make", str(small), str(small)], cdb_input(RECORDS))
    assert rc == 100
    assert "same file" in err
    assert small.read_bytes() == before


def test_make_keeps_an_existing_tmp_mode(tmp_path: Path) -> None:
    tmp = tmp_path / "o.tmp"
    tmp.write_bytes(b"junk")
    tmp.chmod(0o640)
    rc, _, err = run_cli(["make", str(tmp_path / "o.cdb"), str(tmp)], cdb_input(RECORDS))
    assert (rc, err) == (0, "")
    assert stat.S_IMODE((tmp_path / "o.cdb").stat().st_mode) == 0o640


# -- dump / get / stats: files that cannot be read -------------------------------------------


@pytest.mark.parametrize("cmd", [["dump"], ["stats"], ["get", "k"]])
def test_missing_file_or_directory(cmd: List[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.cdb")
    rc, out, err = run_cli([cmd[0], missing] + cmd[1:])
    assert (rc, out) == (111, b"")
    assert err == f"cdbrules: fatal: unable to read {missing}: file does not exist\n"
    rc, out, err = run_cli([cmd[0], str(tmp_path)] + cmd[1:])
    assert (rc, out) == (111, b"")
    assert err == f"cdbrules: fatal: unable to read {tmp_path}: is a directory\n"


@pytest.mark.parametrize("cmd", [["dump"], ["stats"], ["get", "k"]])
def test_path_through_a_file(cmd: List[str], small: Path) -> None:
    bad = f"{small}/x"
    rc, out, err = run_cli([cmd[0], bad] + cmd[1:])
    assert (rc, out) == (111, b"")
    assert err == f"cdbrules: fatal: unable to read {bad}: not a directory\n"


@pytest.mark.parametrize("cmd, ref", [(["dump"], "cdbdump"), (["stats"], "cdbstats"), (["get", "k"], "cdbget")])
def test_empty_file(cmd: List[str], ref: str, refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.cdb"
    empty.write_bytes(b"")
    rc, out, err = run_cli([cmd[0], str(empty)] + cmd[1:])
    with open(empty, "rb") as f:
        r = refs.run([getattr(refs, ref)] + cmd[1:], stdin=f)
    assert (rc, out) == (r.returncode, r.stdout) == (111, b"")
    reason = r.stderr.decode().rsplit(": ", 1)[1].strip()  # truncated file / protocol error
    assert err.startswith(f"cdbrules: fatal: unable to read {empty}: {reason} (")


# -- dump / get / stats: output errors --------------------------------------------------------


def _to_dev_full(argv: List[str]) -> Tuple[int, str]:
    r = subprocess.run(PY + argv, stdout=open("/dev/full", "wb"), stderr=subprocess.PIPE, text=True, timeout=60)
    return r.returncode, r.stderr


@linux_only("/dev/full (writes to it fail with ENOSPC)")
def test_output_errors(refs, small: Path) -> None:  # type: ignore[no-untyped-def]
    for argv, ref in ((["dump", str(small)], [refs.cdbdump]), (["stats", str(small)], [refs.cdbstats]),
                      (["get", str(small), "b"], [refs.cdbget, "b"])):
        rc, err = _to_dev_full(argv)
        with open(small, "rb") as f, open("/dev/full", "wb") as full:
            r = subprocess.run(ref, stdin=f, stdout=full, stderr=subprocess.PIPE, env=refs.env, timeout=60)
        assert rc == r.returncode == 111, (argv, err, r)
        assert err == "cdbrules: fatal: unable to write output: out of disk space\n"
    # nothing to write: nothing fails (cdbget too)
    rc, err = _to_dev_full(["get", str(small), "e"])
    assert (rc, err) == (0, "")


def test_dump_into_a_closed_pipe(tmp_path: Path) -> None:
    big = tmp_path / "big.cdb"
    with Writer(big) as w:
        for i in range(20000):
            w.add(b"key%d" % i, b"v" * 100)
    p = subprocess.Popen(PY + ["dump", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode != 0
    assert b"Traceback" not in err


# -- get -----------------------------------------------------------------------------------


def test_get_skip_and_exit_codes(refs, small: Path) -> None:  # type: ignore[no-untyped-def]
    for key, skip in [("a", None), ("a", "0"), ("a", "1"), ("a", "2"), ("a", ""), ("a", "007"), ("b", None),
                      ("zz", None), ("a", "18446744073709551617"), ("a", "4294967296")]:
        argv = ["get", str(small), key] + ([skip] if skip is not None else [])
        rc, out, err = run_cli(argv)
        with open(small, "rb") as f:
            r = refs.run([refs.cdbget, key] + ([skip] if skip is not None else []), stdin=f)
        assert (rc, out, err) == (r.returncode, r.stdout, r.stderr.decode()), (key, skip)


def test_get_empty_key(small: Path) -> None:
    """cdbget cannot look up the empty key (usage error); we can: it is the default rule's key."""
    rc, out, err = run_cli(["get", str(small), ""])
    assert (rc, out, err) == (0, b"empty key", "")


def test_get_binary_key_from_argv(tmp_path: Path) -> None:
    path = tmp_path / "bin.cdb"
    with Writer(path) as w:
        w.add(b"\xff\xfe", b"raw")
        w.add("é", "utf8")
    assert run_cli(["get", str(path), os.fsdecode(b"\xff\xfe")])[:2] == (0, b"raw")
    assert run_cli(["get", str(path), "é"])[:2] == (0, b"utf8")


def test_get_key_with_a_dash_after_double_dash(tmp_path: Path) -> None:
    """A key that looks like an option is given after "--", wherever "--" stands; the
    options of a subcommand may otherwise stand between its arguments."""
    path = tmp_path / "dash.cdb"
    with Writer(path) as w:
        w.add(b"-x", b"dash")
        w.add(b"--", b"two dashes")
    for argv in (["get", "--", str(path), "-x"], ["get", str(path), "--", "-x"]):
        assert run_cli(argv)[:2] == (0, b"dash"), argv
    assert run_cli(["get", str(path), "--", "--"])[:2] == (0, b"two dashes")
    rc, out, err = run_cli(["get", str(path), "-x"])
    assert (rc, out) == (100, b"") and err.startswith("cdbrules get: usage: cdbrules get ")


def test_get_skip_all_ones_is_a_real_skip(refs, small: Path) -> None:  # type: ignore[no-untyped-def]
    """cdbget runs its lookup (SKIP + 1) mod 2^64 times, so SKIP = 2^64 - 1 looks nothing
    up and exits 0 with no output, even for a missing key or a broken file.  Ours skips
    that many records: there are never so many, so the answer is 'absent' (100)."""
    skip = str((1 << 64) - 1)
    with open(small, "rb") as f:
        r = refs.run([refs.cdbget, "missing", skip], stdin=f)
    assert (r.returncode, r.stdout) == (0, b"")  # the quirk we do not copy
    for key in ("a", "missing"):
        assert run_cli(["get", str(small), key, skip]) == (100, b"", "")
