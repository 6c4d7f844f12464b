"""``cdbrules lint`` and ``cdbrules.lint()``.

* one row per finding code: a bad text gives that code at that line and column, and the
  fixed text gives nothing at all;
* the stock QmailToaster file and every file of examples/ give nothing;
* property: a file that a model of good rules says is fine, and that compile accepts,
  gives nothing;
* the linter agrees with compile about errors: on the rules fuzzer's corpus and on random
  bytes it ends, and compile fails on a line exactly when lint has a syntax error there
  (the first of them);
* the command line: text and JSON, exit 0/1/100/111, standard input.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest

import cdbrules
from cdbrules import Finding, RulesSyntaxError
from cdbrules.linter import CODES, Linter
from helpers import EXAMPLES, FUZZ, run_cli

HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))
RANDOM_N = int(os.environ.get("CDBRULES_LINT_RANDOM_N", "1500"))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class Row(NamedTuple):
    code: str
    bad: bytes
    line: int
    column: int
    fixed: bytes
    strict: bool = False
    cidr: bool = False


ROWS = [
    Row("E101", b"1.2.3.4:ALLOW\n", 1, 8, b"1.2.3.4:allow\n"),
    Row("E102", b'1.2.3.4:allow RELAYCLIENT=""\n', 1, 14, b'1.2.3.4:allow,RELAYCLIENT=""\n'),
    Row("E103", b"1.2.3.4:allow,QMAILQUEUE\n", 1, 14, b'1.2.3.4:allow,QMAILQUEUE="/bin/q"\n'),
    Row("E104", b'# x\n1.2.3.4:allow,A="1",\n', 2, 20, b'# x\n1.2.3.4:allow,A="1"\n'),
    Row("E105", b"1.2.3.4:deny,RBLSMTPD=\n", 1, 22, b'1.2.3.4:deny,RBLSMTPD=""\n'),
    Row("E106", b'1.2.3.4:allow,A="x\n', 1, 17, b'1.2.3.4:allow,A="x"\n'),
    Row("E107", b'1.2.3.4:allow,A="1" B="2"\n', 1, 20, b'1.2.3.4:allow,A="1",B="2"\n'),
    Row("E108", b"mail-1.example.com:deny\n", 1, 1, b"=mail-1.example.com:deny\n"),
    Row("E110", b"10.0.0.1/8:deny\n", 1, 1, b"10.0.0.0/8:deny\n", cidr=True),
    Row("E110", b"2001:db8:0:1::/64:deny\n", 1, 1, b"2001:db8:1::/48:deny\n", cidr=True),
    Row("W201", b"1.2.3.4 allow\n", 1, 1, b"1.2.3.4:allow\n"),
    Row("W201", b"1.2.3.4:deny\n \t\n", 2, 1, b"1.2.3.4:deny\n\n"),
    Row("W201", b"  # a comment\n", 1, 3, b"# a comment\n"),
    Row("W202", b"=a:b:allow\n", 1, 3, b"=a.b:allow\n"),
    Row("W301", b'127.:allow, RELAYCLIENT=""\n', 1, 12, b'127.:allow,RELAYCLIENT=""\n'),
    Row("W301", b'127.:allow,RELAYCLIENT,A="1"\n', 1, 12, b'127.:allow,RELAYCLIENT="",A="1"\n'),
    Row("W301", b'1.2.3.4:allow,="x"\n', 1, 15, b'1.2.3.4:allow,X="x"\n'),
    Row("W302", b'1.2.3.4:allow,A="1",A="2"\n', 1, 21, b'1.2.3.4:allow,A="2"\n'),
    Row("W401", b"10.0.0.0/8:deny\n", 1, 1, b"10.:deny\n"),
    Row("W401", b"2001:db8::/32:deny\n", 1, 1, b"2001:db8::deny\n"),
    Row("W402", b"=.Example.COM:deny\n", 1, 1, b"=.example.com:deny\n"),
    Row("W403", b"=mail.example.com.:deny\n", 1, 1, b"=mail.example.com:deny\n"),
    Row("W404", b"=*.example.com:deny\n", 1, 1, b"=.example.com:deny\n"),
    Row("W405", b"::ffff:1.2.3.4:deny\n", 1, 1, b"1.2.3.4:deny\n"),
    Row("W406", b"2001:db8:0:1::deny\n", 1, 1, b"2001:db8:1::deny\n"),
    Row("W406", b"2001:db8:0:1:1:1:1:1:deny\n", 1, 1, b"2001:db8::1:1:1:1:1:deny\n"),
    Row("W406", b"2001:DB8::1:deny\n", 1, 1, b"2001:db8::1:deny\n"),
    Row("W406", b"2001:0db8::deny\n", 1, 1, b"2001:db8::deny\n"),
    Row("W407", b"2001:db8:1:::deny\n", 1, 1, b"2001:db8:1::1:deny\n"),
    Row("W408", b"1.2.3.007:deny\n", 1, 1, b"1.2.3.7:deny\n"),
    Row("W408", b"1.2.3.4.:deny\n", 1, 1, b"1.2.3.:deny\n"),
    Row("W409", b"mail.example.com:deny\n", 1, 1, b"=mail.example.com:deny\n"),
    Row("W409", b"1.2.3.4 :deny\n", 1, 1, b"1.2.3.4:deny\n"),
    Row("W410", b"joe@1.2.3.:deny\n", 1, 1, b"joe@1.2.3.4:deny\n"),
    Row("W411", b"1.2.3.9-5:deny\n", 1, 7, b"1.2.3.5-9:deny\n"),
    Row("W412", b"1.2.3.250-300:deny\n", 1, 11, b"1.2.3.250-255:deny\n"),
    Row("W501", b"1.2.3.4:deny\n1.2.3.4:deny\n", 2, 1, b"1.2.3.4:deny\n", strict=True),
    Row("W502", b'1.2.3.4:allow,A="1"\n1.2.3.4:allow,A="2"\n', 2, 1, b'1.2.3.4:allow,A="1"\n'),
    Row("E503", b"1.2.3.1-9:allow\n1.2.3.4:deny\n", 2, 1, b"1.2.3.1-3:allow\n1.2.3.4:deny\n"),
    Row("E601", b':allow,RELAYCLIENT=""\n', 1, 8, b":allow\n"),
    Row("W602", b'=:allow,RELAYCLIENT=""\n', 1, 9, b"=:allow\n"),
    Row("W602", b'=.com:allow,RELAYCLIENT=""\n', 1, 13, b'=.example.com:allow,RELAYCLIENT=""\n'),
    Row("W603", b'10.:allow,RELAYCLIENT=""\n', 1, 11, b'10.1.2.:allow,RELAYCLIENT=""\n'),
    Row("W603", b'2001::allow,RELAYCLIENT=""\n', 1, 13, b'2001:db8:5::allow,RELAYCLIENT=""\n'),
    Row("E701", b"# x\r\n1.2.3.4:allow\r\n", 2, 14, b"# x\n1.2.3.4:allow\n"),
    Row("W702", b"\xef\xbb\xbf# tcp.smtp\n1.2.3.4:allow\n", 1, 1, b"# tcp.smtp\n1.2.3.4:allow\n"),
    Row("W703", b"=caf\xe9.example:deny\n", 1, 5, b"=cafe.example:deny\n"),
    Row("W704", b"1.2.3.4:allow", 1, 14, b"1.2.3.4:allow\n"),
]


def ids(rows: List[Row]) -> List[str]:
    seen: dict = {}
    out = []
    for r in rows:
        seen[r.code] = seen.get(r.code, 0) + 1
        out.append(f"{r.code}-{seen[r.code]}")
    return out


@pytest.mark.parametrize("row", ROWS, ids=ids(ROWS))
def test_code_table(row: Row) -> None:
    found = cdbrules.lint(row.bad, strict=row.strict, cidr=row.cidr)
    assert (row.line, row.column, row.code) in [(f.line, f.column, f.code) for f in found], found
    assert cdbrules.lint(row.fixed, strict=True, cidr=row.cidr) == []


def test_every_code_has_a_row_and_a_doc() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "lint.md").read_text()
    assert {r.code for r in ROWS} | {"E109"} == set(CODES)
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    for code, c in CODES.items():
        assert code in rows, code
        # the last column says whether compile warns: as the table in linter.py says
        assert rows[code].rstrip(" |").endswith("yes") == c.compile_warns, code


def test_cidr_networks_are_keys() -> None:
    text = b'10.0.0.0/8:deny\n10.1.0.0/16:allow,RELAYCLIENT=""\n192.0.2.0/24:deny\n'
    assert [f.code for f in cdbrules.lint(text)] == ["W401", "W401", "W401"]
    assert cdbrules.lint(text, cidr=True) == []
    rc, out, _ = run_cli(["lint", "--cidr", "-"], stdin=text)
    assert (rc, out) == (0, b"")


def agree_cidr(text: bytes, work: Path) -> None:
    found = cdbrules.lint(text, cidr=True)
    bad = sorted(f.line for f in found if f.code in SYNTAX | {"E110"})
    try:
        cdbrules.compile(io.BytesIO(text), work / "x.cdb", work / "x.tmp", cidr=True)
        line = None
    except RulesSyntaxError as e:
        line = e.lineno
    assert line == (bad[0] if bad else None), found


def test_cidr_agrees_with_compile(tmp_path: Path) -> None:
    rng = random.Random(5)
    nets = [b"10.0.0.0/8", b"10.0.0.1/8", b"10.0.0.0/33", b"2001:db8::/32", b"2001:db8:0:1::/64", b"1.2.3.4/32",
            b"0.0.0.0/0", b"x/8", b"=a/b", b"joe@1.2.3.0/24", b"1.2.3.4-5", b"1.2.3.4"]
    for _ in range(300):
        lines = [rng.choice(nets) + b":" + rng.choice([b"allow", b"deny"]) for _ in range(rng.randint(1, 6))]
        agree_cidr(b"".join(x + b"\n" for x in lines), tmp_path)


def test_long_line() -> None:
    lt = Linter("x", maxline=16)
    lt.feed(b"1.2.3.4:allow\n# a comment longer than sixteen bytes\n")
    lt.feed(b"1.2.3.4:allow,A=\"a value")
    lt.feed(b" far too long\"\n5.6.7.8:deny\n")
    found = lt.finish()
    assert [(f.line, f.column, f.code) for f in found] == [(3, 17, "E109")]


def test_every_problem_reported() -> None:
    text = b'1.2.3.4:bogus\n1.2.3.4 allow\n5.6.7.8:allow,A="\n=X:deny\n'
    assert [(f.line, f.code) for f in cdbrules.lint(text)] == [(1, "E101"), (2, "W201"), (3, "E106"), (4, "W402")]


def test_ignore_comment() -> None:
    text = b"# cdbrules: ignore W405\n::ffff:1.2.3.4:deny\n::ffff:1.2.3.5:deny\n"
    assert [(f.line, f.code) for f in cdbrules.lint(text)] == [(3, "W405")]


def test_finding_text_and_json() -> None:
    f = cdbrules.lint(b"1.2.3.4 allow\n", path="tcp.smtp")[0]
    assert isinstance(f, Finding)
    assert str(f).startswith("tcp.smtp:1:1: W201 no ':' in '1.2.3.4 allow'")
    assert f.as_dict()["severity"] == "warning"


# -- what must give nothing -------------------------------------------------------------


# the examples written for compile --cidr (their comments say so)
CIDR_EXAMPLES = {"drop.smtp"}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.smtp")))
def test_examples_are_clean(name: str) -> None:
    assert b"--cidr" in (EXAMPLES / name).read_bytes() or name not in CIDR_EXAMPLES
    assert cdbrules.lint(EXAMPLES / name, cidr=name in CIDR_EXAMPLES) == []


def test_stock_qmailtoaster_file_is_clean() -> None:
    stock = (
        b'127.:allow,RELAYCLIENT="",DKSIGN="/var/qmail/control/domainkeys/%/private"\n'
        b':allow,BADMIMETYPE="",BADLOADERTYPE="M",CHKUSER_RCPTLIMIT="15",CHKUSER_WRONGRCPTLIMIT="3",'
        b'DKVERIFY="DEGIJKfh",QMAILQUEUE="/var/qmail/bin/simscan",DKQUEUE="/var/qmail/bin/qmail-queue.orig",'
        b'DKSIGN="/var/qmail/control/domainkeys/%/private"\n'
    )
    assert (EXAMPLES / "tcp.smtp").read_bytes() == stock
    assert cdbrules.lint(stock, strict=True) == []


# -- the property: good rules give nothing ----------------------------------------------

NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,11}", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)


@st.composite
def good_key(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["v4", "v4prefix", "v6", "v6prefix", "host", "suffix", "info"]))
    octet = st.integers(0, 255)
    if kind == "v4":
        return ".".join(str(draw(octet)) for _ in range(4)).encode()
    if kind == "v4prefix":
        n = draw(st.integers(2, 3))
        return (".".join(str(draw(octet)) for _ in range(n)) + ".").encode()
    if kind == "v6":
        addr = ipaddress.IPv6Address(draw(st.integers(1 << 112, (1 << 128) - 1)))
        text = cdbrules.tcpserver_ip(addr)
        if text.endswith("::"):
            text += "1"  # such an address's key is also a prefix (W407): another address
        return text.encode()
    if kind == "v6prefix":
        groups = draw(st.lists(st.integers(1, 0xFFFF), min_size=2, max_size=7))
        return (":".join(f"{g:x}" for g in groups) + ":").encode()
    if kind == "host":
        return b"=" + ".".join(draw(st.lists(LABEL, min_size=1, max_size=4))).encode()
    if kind == "suffix":
        return b"=." + ".".join(draw(st.lists(LABEL, min_size=2, max_size=3))).encode()
    info = draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
    return f"{info}@{'.'.join(str(draw(octet)) for _ in range(4))}".encode()


@st.composite
def good_file(draw: st.DrawFn) -> bytes:
    keys = draw(st.lists(good_key(), min_size=1, max_size=12, unique=True))
    lines = []
    for k in keys:
        if draw(st.booleans()):
            lines.append(b"# " + draw(st.from_regex(r"[ -~]{0,30}", fullmatch=True)).encode())
        if draw(st.integers(0, 5)) == 0:
            lines.append(b"")
        deny = draw(st.booleans())
        items = []
        for name in draw(st.lists(NAMES, max_size=3, unique=True)):
            delim = draw(st.sampled_from([b'"', b"'", b"/"]))
            value = draw(st.from_regex(r"[ -~]{0,20}", fullmatch=True)).encode().replace(delim, b"")
            items.append(b"," + name.encode() + b"=" + delim + value + delim)
        lines.append(k + b":" + (b"deny" if deny else b"allow") + b"".join(items))
    return b"\n".join(lines) + b"\n"


@settings(max_examples=HYPOTHESIS_N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(good_file())
def test_good_rules_give_nothing(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    d = tmp_path_factory.mktemp("good")
    cdbrules.compile(io.BytesIO(text), d / "x.cdb", d / "x.tmp")  # compile accepts it
    assert cdbrules.lint(text, strict=True) == []


# -- lint and compile agree; lint ends on any bytes -------------------------------------

SYNTAX = {c for c in CODES if c.startswith("E1")} | {"E701"}


def compile_error_line(text: bytes, work: Path) -> Optional[int]:
    try:
        cdbrules.compile(io.BytesIO(text), work / "x.cdb", work / "x.tmp")
    except RulesSyntaxError as e:
        return e.lineno
    return None


def agree(text: bytes, work: Path) -> None:
    found = cdbrules.lint(text)
    bad = sorted(f.line for f in found if f.code in SYNTAX)
    assert compile_error_line(text, work) == (bad[0] if bad else None), found
    assert all(f.line >= 1 and f.column >= 1 and f.code in CODES for f in found)


CORPUS = sorted((FUZZ / "corpus" / "rules").iterdir())


def test_fuzz_corpus(tmp_path: Path) -> None:
    assert len(CORPUS) > 100
    for p in CORPUS:
        agree(p.read_bytes(), tmp_path)


def test_random_bytes(tmp_path: Path) -> None:
    rng = random.Random(10)
    alphabet = b"0123456789.:-=@,\"/ \t\r\n#allowdenyABCxyz\xef\xbb\xbf\xff\x00"
    for _ in range(RANDOM_N):
        n = rng.randint(0, 200)
        if rng.random() < 0.3:
            text = bytes(rng.getrandbits(8) for _ in range(n))
        else:
            text = bytes(rng.choice(alphabet) for _ in range(n))
        agree(text, tmp_path)


PATHOLOGICAL = [
    b":" * 200_000 + b"x:allow\n",  # a regular expression that backtracks would take hours here
    b"# cdbrules: ignore W1" + b" " * 200_000 + b"!\n",
    b"1.2.3.4:allow,A=" + b"x" * 200_000 + b"\n",
    b"=" + b"a" * 200_000 + b".:deny\n",
    b"a " * 100_000 + b"allow\n",
    b"1." * 100_000 + b"-3:deny\n",
    b"1.2.3.4:allow" + b',A=""' * 20_000 + b"\n",
    b"2001:" + b"0:" * 100_000 + b":deny\n",
]


def test_pathological_lines_end(tmp_path: Path) -> None:
    """Long lines built to make a careless linter quadratic: each is linted in a child
    process, and the timeout is only there to catch a hang."""
    for n, text in enumerate(PATHOLOGICAL):
        (tmp_path / f"p{n}").write_bytes(text)
    r = subprocess.run([sys.executable, "-m", "cdbrules", "lint", *(str(tmp_path / f"p{n}") for n in
                                                                  range(len(PATHOLOGICAL)))],
                       capture_output=True, timeout=300)
    assert r.returncode in (1, 100) and r.stderr == b""
    assert {line.split(b":")[0] for line in r.stdout.splitlines()} == {
        str(tmp_path / f"p{n}").encode() for n in range(len(PATHOLOGICAL)) if n != 1}  # (1 is a comment)


def test_pieces_give_the_same_findings() -> None:
    rng = random.Random(11)
    for p in CORPUS[:120]:
        text = p.read_bytes()
        lt = Linter("-")
        at = 0
        while at < len(text):
            step = rng.randint(1, 7)
            lt.feed(text[at:at + step])
            at += step
        assert lt.finish() == cdbrules.lint(text), p.name


# -- the command line -------------------------------------------------------------------


def test_cli_exit_codes(tmp_path: Path) -> None:
    clean, warn, bad = tmp_path / "clean", tmp_path / "warn", tmp_path / "bad"
    clean.write_bytes(b"1.2.3.4:allow\n")
    warn.write_bytes(b"1.2.3.4 allow\n")
    bad.write_bytes(b"1.2.3.4:allow\n1.2.3.4:deny\n")
    assert run_cli(["lint", str(clean)]) == (0, b"", "")
    rc, out, _ = run_cli(["lint", str(clean), str(warn)])
    assert rc == 1 and out.decode().startswith(f"{warn}:1:1: W201 ")
    rc, out, _ = run_cli(["lint", str(warn), str(bad)])
    assert rc == 100 and out.count(b"\n") == 2 and f"{bad}:2:1: E503 ".encode() in out
    rc, out, err = run_cli(["lint", str(tmp_path / "missing")])
    assert rc == 111 and out == b"" and "file does not exist" in err


def test_cli_json_and_stdin() -> None:
    rc, out, _ = run_cli(["lint", "--format", "json"], stdin=b'1.2.3.4:allow\n:allow,RELAYCLIENT=""\n')
    assert rc == 100
    (f,) = json.loads(out)
    assert (f["path"], f["line"], f["column"], f["code"], f["severity"]) == ("-", 2, 8, "E601", "error")
