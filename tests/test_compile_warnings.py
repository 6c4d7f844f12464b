"""``cdbrules compile`` warns about rules that silently change meaning, and changes nothing
else: the file is tcprules' byte for byte, the exit code tcprules'; ``-q`` silences the
warnings; ``-v`` also names repeated lines and counts lines, records and distinct keys.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cdbrules.commands._warnings import LIMIT
from helpers import EXAMPLES, run_cli

TEXT = (b'127.:allow, RELAYCLIENT=""\n'  # 1: W301
        b"1.2.3.4 allow\n"  # 2: W201
        b"1.2.3.4:allow\n"
        b"1.2.3.4:deny\n"  # 4: E503
        b"1.2.3.4:allow\n"  # 5: W501 (named with -v only)
        b"=.Example.com:deny\n"  # 6: W402
        b"10.0.0.0/8:deny\n"  # 7: W401
        b"1.2.3.5:allow,A=\"1\"\n1.2.3.5:allow,A=\"2\"\n"  # 9: W502
        b":allow\n")


def test_warnings_name_file_and_line(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "tcp.smtp"
    rules.write_bytes(TEXT)
    r = refs.run([refs.tcprules_v4, "ref.cdb", "ref.tmp"], stdin=TEXT, cwd=tmp_path)
    assert r.returncode == 0
    rc, out, err = run_cli(["compile", str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), str(rules)])
    assert (rc, out) == (0, b"")
    assert (tmp_path / "x.cdb").read_bytes() == (tmp_path / "ref.cdb").read_bytes()
    got = [(line.split(": warning: ")[0], line.split(": warning: ")[1][:4]) for line in err.splitlines()]
    where = f"cdbrules: {rules}"
    assert got == [(f"{where}:1", "W301"), (f"{where}:2", "W201"), (f"{where}:4", "E503"), (f"{where}:6", "W402"),
                   (f"{where}:9", "W502"), (f"{where}:7", "'10.")]  # the last: the compiler's network warning
    assert "'10.0.0.0/8' looks like a network" in err.splitlines()[-1]


def test_quiet_and_verbose(tmp_path: Path) -> None:
    cdb, tmp, rules = str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), tmp_path / "r"
    rules.write_bytes(TEXT)
    assert run_cli(["compile", "-q", cdb, tmp, str(rules)]) == (0, b"", "")
    rc, _, err = run_cli(["compile", "-v", cdb, tmp, str(rules)])
    lines = err.splitlines()
    assert rc == 0 and f"cdbrules: {rules}:5: warning: W501 " in err and f"cdbrules: {rules}:4: warning: E503 " in err
    assert lines[-2:] == [f"cdbrules: {rules}: 10 lines (1 skipped), 9 records, 6 distinct keys "
                          "(3 lines repeat an earlier key)", f"cdbrules: 10 lines, 9 rules, 9 records written to {cdb}"]
    rc, _, err = run_cli(["compile", cdb, tmp, str(rules)])
    assert rc == 0 and "W501" not in err and err.count("\n") == 6
    rc, _, err = run_cli(["compile", "--cidr", cdb, tmp, str(rules)])  # 10.0.0.0/8 is a network here
    assert rc == 0 and "10.0.0.0/8" not in err and err.count("\n") == 5


def test_standard_input_names_lines(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp"], input=TEXT,
                       capture_output=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout == b""
    assert r.stderr.splitlines()[0].startswith(b"cdbrules: line 1: warning: W301 ")


def test_clean_file_says_nothing(tmp_path: Path) -> None:
    for name in ("tcp.smtp", "tcp6.smtp"):
        rc, out, err = run_cli(["compile", str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), str(EXAMPLES / name)])
        assert (rc, out, err) == (0, b"", "")


def test_errors_unchanged(tmp_path: Path) -> None:
    rules = tmp_path / "r"
    rules.write_bytes(b"1.2.3.4 allow\n1.2.3.4:bogus\n")
    rc, _, err = run_cli(["compile", str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), str(rules)])
    assert rc == 100 and err == f"cdbrules: {rules}:2: no ':allow' or ':deny' in '1.2.3.4:bogus'\n"


def test_large_text_is_not_checked(tmp_path: Path) -> None:
    big = tmp_path / "big.smtp"
    data = b"1.2.3.4 allow\n" + b"# padding comment line\n" * (LIMIT // 20)
    big.write_bytes(data)
    rc, _, err = run_cli(["compile", str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), str(big)])
    assert (rc, err) == (0, "")
    rc, _, err = run_cli(["compile", "-v", str(tmp_path / "x.cdb"), str(tmp_path / "x.tmp"), str(big)])
    assert rc == 0 and f"{big}:1: warning: W201" in err
