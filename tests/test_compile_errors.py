"""Rules errors: what ``cdbrules.compile`` raises and what ``cdbrules compile`` prints.

Every message names the line (file and number), says what is wrong and quotes the text it
is about; the CLI prints it as one line on stderr and exits 100, like tcprules.  That each
case is an error at all, and on which line, is asked of tcprules itself (both builds
print the same line for these inputs).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest

import cdbrules
from cdbrules import RulesSyntaxError
from helpers import PARSE_ERROR, trimmed

class Case(NamedTuple):
    name: str
    text: bytes
    lineno: int
    column: int
    says: List[str]  # fragments the reason must contain


OK = b'# tcp.smtp\n127.:allow,RELAYCLIENT=""\n\n'  # two good lines before each bad one

CASES = [
    Case("no-keyword", OK + b"1.2.3.4:ALLOW\n", 4, 7, ["no ':allow' or ':deny' in '1.2.3.4:ALLOW'", "lower case"]),
    Case("no-keyword-space", OK + b"1.2.3.4: allow\n", 4, 7, ["'1.2.3.4: allow'", "no space may follow the ':'"]),
    Case("no-keyword-plain", OK + b"1.2.3.4:permit\n", 4, 7, ["no ':allow' or ':deny' in '1.2.3.4:permit'"]),
    Case("after-keyword", OK + b'1.2.3.4:allow RELAYCLIENT=""\n', 4, 13,
         ["expected ',' or the end of the line after 'allow'", "found ' RELAYCLIENT=\"\"'", "no spaces"]),
    Case("after-keyword-word", OK + b"1.2.3.4:denyall\n", 4, 12, ["after 'deny'", "found 'all'"]),
    Case("after-keyword-cr", OK + b"1.2.3.4:allow\r\n", 4, 13, ["after 'allow'", "found '\\x0d'", "DOS line ends"]),
    Case("no-equals", OK + b"1.2.3.4:allow,RELAYCLIENT\n", 4, 13,
         ["expected NAME=\"value\" after ','", "found 'RELAYCLIENT' with no '='"]),
    Case("trailing-comma", OK + b'1.2.3.4:allow,A="1",\n', 4, 19, ["nothing follows the last ','", "'1.2.3.4:allow,A=\"1\",'"]),
    Case("no-value", OK + b"1.2.3.4:deny,RBLSMTPD=\n", 4, 21, ["no value after 'RBLSMTPD='", 'RBLSMTPD=""']),
    Case("unterminated", OK + b'1.2.3.4:allow,QMAILQUEUE="/var/qmail/bin/x\n', 4, 25,
         ["the value of 'QMAILQUEUE' is not closed", "no second '\"'", "'\"/var/qmail/bin/x'"]),
    Case("after-value", OK + b'127.:allow,RELAYCLIENT="" QMAILQUEUE="x"\n', 4, 25,
         ["after the value of 'RELAYCLIENT'", "found ' QMAILQUEUE=\"x\"'", "no spaces"]),
    Case("after-value-cr", OK + b'1.2.3.4:allow,A="1"\r\n', 4, 19, ["after the value of 'A'", "DOS line ends"]),
    Case("range-host", OK + b"mail-1.example.com:deny\n", 4, 0,
         ["'mail-1.example.com' has a '-'", "'mail' is not a number", "1.2.3.10-20", "'=' in front"]),
    Case("range-top", OK + b"1.2.3.1-x:deny\n", 4, 8, ["'1.2.3.1-x' has a '-'", "'x' is not a number: a range is written like 1.2.3.10-20"]),
    Case("range-host-digits", OK + b"host1-3.example:deny\n", 4, 0, ["'host1' is not a number", "=mail-1.example.com"]),
    Case("range-v6", OK + b"2001:db8::1-3:allow\n", 4, 0, ["'2001:db8::1-3' has a '-'", "'2001:db8::1' is not a number", "IPv6"]),
    Case("nul-byte", OK + b'1.2.3.4:allow,A\x00B="x\n', 4, 18, ["the value of 'A\\x00B' is not closed"]),
    Case("first-error-wins", OK + b"1.2.3.4:allowx\n5.6.7.8:bogus\n", 4, 13, ["after 'allow'"]),
    Case("last-line-no-newline", OK + b"1.2.3.4:allow,", 4, 13, ["nothing follows the last ','"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_api(case: Case, tmp_path: Path, refs: object) -> None:
    cdb, tmp = tmp_path / "x.cdb", tmp_path / "x.tmp"
    cdb.write_bytes(b"the old cdb")
    with pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(io.BytesIO(case.text), cdb, tmp)
    e = info.value
    bad = case.text.split(b"\n")[case.lineno - 1]
    assert (e.lineno, e.column, e.line) == (case.lineno, case.column, trimmed(bad))
    for fragment in case.says:
        assert fragment in e.reason, e.reason
    assert str(e) == f"line {case.lineno}: {e.reason}"
    assert isinstance(e, ValueError)
    assert cdb.read_bytes() == b"the old cdb" and not tmp.exists()
    # it is an error for tcprules too, on that line (printed up to its first NUL); a line
    # with no ':allow' or ':deny' hangs the v6 build (docs/format.md, "The separator"), so
    # only v4 is asked there
    progs = [refs.tcprules_v4]  # type: ignore[attr-defined]
    if not case.name.startswith("no-keyword"):
        progs.append(refs.tcprules_v6)  # type: ignore[attr-defined]
    for prog in progs:
        r = refs.run([prog, tmp_path / "r.cdb", tmp_path / "r.tmp"], stdin=case.text, timeout=10)  # type: ignore[attr-defined]
        assert (r.returncode, r.stderr) == (100, PARSE_ERROR + e.line.split(b"\0")[0] + b"\n")


def test_error_names_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "tcp.smtp"
    rules.write_bytes(CASES[3].text)
    with pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(rules, tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert info.value.source == str(rules)
    assert str(info.value) == f"{rules}:4: {info.value.reason}"
    with open(rules, "rb") as f, pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(f, tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert str(info.value).startswith(f"{rules}:4: ")


def cli(args: List[str], stdin: Optional[bytes] = None, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cdbrules", *args], input=stdin if stdin is not None else b"",
                          capture_output=True, cwd=cwd, timeout=60)


def one_line(stderr: bytes) -> str:
    assert stderr.count(b"\n") == 1 and stderr.endswith(b"\n"), stderr
    assert b"Traceback" not in stderr
    text = stderr.decode("ascii")  # escaped: no raw NUL, CR or other byte outside ASCII
    assert text.isprintable() or text[:-1].isprintable()
    return text[:-1]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_cli_file(case: Case, tmp_path: Path) -> None:
    (tmp_path / "tcp.smtp").write_bytes(case.text)
    (tmp_path / "tcp.smtp.cdb").write_bytes(b"the old cdb")
    r = cli(["compile", "tcp.smtp.cdb", "tcp.smtp.tmp", "tcp.smtp"], cwd=tmp_path)
    assert r.returncode == 100 and r.stdout == b""
    line = one_line(r.stderr)
    assert line.startswith(f"cdbrules: tcp.smtp:{case.lineno}: "), line
    for fragment in case.says:
        assert fragment in line
    assert (tmp_path / "tcp.smtp.cdb").read_bytes() == b"the old cdb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tcp.smtp", "tcp.smtp.cdb"]


def test_error_cli_stdin(tmp_path: Path) -> None:
    r = cli(["compile", "x.cdb", "x.tmp"], stdin=CASES[9].text, cwd=tmp_path)
    assert r.returncode == 100
    line = one_line(r.stderr)
    assert line.startswith("cdbrules: line 4: the value of 'QMAILQUEUE' is not closed"), line
    assert list(tmp_path.iterdir()) == []
    r = cli(["compile", "x.cdb", "x.tmp", "-"], stdin=CASES[9].text, cwd=tmp_path)
    assert r.returncode == 100 and one_line(r.stderr).startswith("cdbrules: line 4: ")


def test_error_very_long_line(tmp_path: Path) -> None:
    """A bad line of megabytes is quoted in a few dozen bytes."""
    text = b"1.2.3.4:allow,A=\"" + b"x" * 2_000_000 + b"\" B=\"" + b"y" * 2_000_000 + b"\"\n"
    with pytest.raises(RulesSyntaxError) as info:
        cdbrules.compile(io.BytesIO(text), tmp_path / "x.cdb", tmp_path / "x.tmp")
    assert len(info.value.line) == len(text) - 1 and info.value.column == 2_000_018
    r = cli(["compile", "x.cdb", "x.tmp"], stdin=text, cwd=tmp_path)
    assert r.returncode == 100
    line = one_line(r.stderr)
    assert len(line) < 300 and "after the value of 'A'" in line and "found ' B=\"yyy" in line and "...'" in line


def test_error_nul_bytes(tmp_path: Path) -> None:
    """NUL and other control bytes are shown escaped, never written raw to the terminal."""
    text = b"\x001.2.3.4\x1b[31m:allow\x00\n"
    r = cli(["compile", "x.cdb", "x.tmp"], stdin=text, cwd=tmp_path)
    assert r.returncode == 100
    line = one_line(r.stderr)
    assert "found '\\x00'" in line and "\x1b" not in line


def test_syntax_error_attributes() -> None:
    e = RulesSyntaxError(12, b"1.2.3.4:allow x", 13, "what is wrong", "tcp.smtp")
    assert (e.lineno, e.line, e.column, e.reason, e.source) == (12, b"1.2.3.4:allow x", 13, "what is wrong", "tcp.smtp")
    assert str(e) == "tcp.smtp:12: what is wrong"


def test_usage(tmp_path: Path) -> None:
    # (several RULES are allowed: "a b c d" reads c, then d)
    for args in (["compile"], ["compile", "x.cdb"], ["compile", "--list", "x", "a", "b"], ["expand", "--list", "x"]):
        r = cli(args, cwd=tmp_path)
        assert r.returncode == 100, args
        assert b"usage:" in r.stderr and b"Traceback" not in r.stderr
        assert list(tmp_path.iterdir()) == []
    r = cli(["compile", "--help"])
    assert r.returncode == 0 and b"CDB" in r.stdout and b"TMP" in r.stdout and b"RULES" in r.stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_stdin_terminal_refused(tmp_path: Path) -> None:
    """No RULES and a terminal for input: a slip (cdbrules compile x.cdb rules), refused."""
    master, slave = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "cdbrules", "compile", "x.cdb", "x.tmp"], stdin=slave,
                           capture_output=True, cwd=tmp_path, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 100 and b"standard input is a terminal" in r.stderr
    assert list(tmp_path.iterdir()) == []
