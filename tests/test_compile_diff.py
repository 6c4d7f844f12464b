"""``cdbrules.compile`` against tcprules of both Debian builds, byte for byte.

What is expected (docs/compatibility.md, "Parsing"): the separator is the first ':' followed by ``deny`` or
``allow``, as in the v6 build; a line with no ':' at all is skipped, as the v4 build does
(the v6 build hangs there); a line with a ':' but no such separator is an error, as the v4
build says (the v6 build hangs there too).  So, line by line, cdbrules does what the v6
build does wherever that build terminates, and what the v4 build does where it hangs.

How each input is checked, without feeding the v6 build thousands of inputs it hangs on:

* v6 oracle.  The lines the v6 build would hang on are predicted from docs/format.md ("The
  separator"): a line with no ':' (which the v4 build skips: so do we) is taken out, and
  the text is cut just before the first line that has a ':' but no separator.  The v6 build runs on what is left
  (under a timeout it must not reach).  If it fails, we must fail on the same line; if it
  succeeds and nothing was cut, our cdb must be its cdb, byte for byte; if it succeeds but
  the text was cut, we must fail on the line where it was cut.
* v4 oracle, on the whole input.  The v4 build splits at the first ':'; a line whose
  separator is a later ':' (an IPv6 address) is an error there and nowhere else.  So the
  v4 build must fail on the first such line that comes before (or is) the line where we
  stop, and otherwise give exactly our result: the same bytes, or an error on the same line.
* The hang prediction itself is checked on a sample: the v6 build runs on the whole input
  and must hang (spin without exiting) exactly when predicted, and otherwise end as we do.

The line model and this oracle live in helpers.py (test_fuzz_regressions and
test_compile_examples use them too).  A hang is recognised by CPU time, not wall time: a
tcprules that has burnt ``HANG_CPU`` seconds on a few hundred bytes of input is in the
loop (docs/format.md), however loaded the machine is.

Size knobs (environment): ``CDBRULES_DIFF_N`` random files (default 5000),
``CDBRULES_DIFF_SEED`` (default fixed), ``CDBRULES_DIFF_HANGS`` hang predictions
verified on the v6 build (default 10), ``CDBRULES_HYPOTHESIS_N`` hypothesis examples
(default 300).
"""

from __future__ import annotations

import os
import random
from typing import Dict, List

import pytest

from helpers import BAD, NOCOLON, Checker, check_all, plan, predicted_hang, run_ours, run_tcprules, verify_hangs

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DIFF_N = int(os.environ.get("CDBRULES_DIFF_N", "5000"))
DIFF_SEED = int(os.environ.get("CDBRULES_DIFF_SEED", "3071988"))
DIFF_HANGS = int(os.environ.get("CDBRULES_DIFF_HANGS", "10"))
HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))


# --------------------------------------------------------------------------------------
# the examples of docs/format.md, by name

DOC_CASES: Dict[str, bytes] = {
    # Comments and blank lines; Trailing blanks
    "comment": b"#\n#x:allow\n#c\r\n1.2.3.4:allow\n",
    "comment-not-col0": b" # x\n1.2.3.4:allow\n",
    "comment-not-col0-colon": b" # x:y\n",
    "blank-lines": b"\n\n1.2.3.4:deny\n\n",
    "crlf-rule": b"1.2.3.4:allow\r\n",
    "crlf-comment": b"#c\r\n\r\n",
    "blank-only-spaces": b"   \n\t\n1.2.3.4:allow\n",
    "only-cr": b"\r\n1.2.3.4:allow\n",
    "trailing-blanks": b"1.2.3.4:allow \t \n5.6.7.8:deny\t\n",
    # The separator (v4 build)
    "no-colon-hello": b"hello world\n1.2.3.4:allow\n",
    "no-colon-allow": b"1.2.3.4 allow\n",
    "space-before-colon": b"1.2.3.4 :allow\n",
    "space-before-address": b" 1.2.3.4:allow\n",
    # The separator (v6 build)
    "v6-loopback": b"::1:allow\n",
    "v6-address-deny": b"2001:db8::1:deny\n",
    "v6-a-b": b"a:b:allow\n",
    "v6-mapped": b"::ffff:1.2.3.4:deny\n",
    "v6-trap-two-colons": b"2001:db8::allow\n",
    "v6-three-colons": b"2001:db8:::allow\n",
    "v6-three-colons-only": b":::allow\n",
    "v6-two-colons-only": b"::allow\n",
    "allow-colon-deny": b"1.2.3.4:allow:deny\n",
    "colon-in-value-picked": b'1.2.3.4 allow,A=":allow"\n',
    "hang-spaces": b"   \n",
    "hang-tab": b"\t\n",
    "hang-cr": b"\r\n",
    "hang-space-comment": b" # comment\n",
    "hang-hello": b"hello world\n",
    "hang-space-allow": b"1.2.3.4 allow\n",
    "hang-colon-space-allow": b"1.2.3.4: allow\n",
    "hang-upper": b"1.2.3.4:ALLOW\n",
    "hang-allo": b"1.2.3.4:allo\n",
    "hang-empty-instruction": b"1.2.3.4:\n",
    "hang-colon": b":\n",
    "hang-v6-bogus": b"::1:bogus\n",
    "hang-last-line-bogus": b"1.2.3.4:allow\n1.2.3.4:bogus",
    "stale-buffer-deny": b"1.2.3.4:deny\n1.2.3.4:de",
    "stale-buffer-allow": b"1.2.3.4:allow\n1.2.3.4:allo",
    "hang-then-v6": b"hello\n::1:allow\n",
    "error-before-hang": b"1.2.3.4:allowx\nhello\n",
    # allow and deny
    "allowx": b"1.2.3.4:allowx\n",
    "denyfoo": b"1.2.3.4:denyfoo\n",
    "allowdeny": b"1.2.3.4:allowdeny\n",
    "denyallow": b"1.2.3.4:denyallow\n",
    "space-comma": b'1.2.3.4:allow ,A="x"\n',
    "semicolon": b'1.2.3.4:allow;A="x"\n',
    "allow-comment": b"1.2.3.4:allow # comment\n",
    "Deny": b"1.2.3.4:Deny\n",
    # Environment items
    "items-run-together": b'1.2.3.4:allow,A="x"B="y"\n',
    "lone-comma": b"1.2.3.4:allow,\n",
    "no-equals": b"1.2.3.4:allow,FOO\n",
    "name-with-comma": b'1.2.3.4:allow,A,B="x"\n',
    "name-leading-comma": b'1.2.3.4:allow,,A="x"\n',
    "name-space-quote": b'1.2.3.4:allow,A B"="x"\n',
    "name-empty": b'1.2.3.4:allow,="x"\n',
    "no-value": b"1.2.3.4:allow,FOO=\n",
    "delimiters": b'1:allow,A="1",B=/2/,C=x3x,D=,4,,E==5=,F= 6 ,G=#7#,H=\r8\r,I=\x009\x00\n',
    "unterminated": b'1.2.3.4:allow,FOO="bar\n',
    "unterminated-quote": b"1.2.3.4:allow,A='it''\n",
    "equals-delimiter": b"1.2.3.4:allow,FOO==a=\n",
    "comma-delimiter": b"1.2.3.4:allow,FOO=,a,\n",
    "cr-delimiter": b"1.2.3.4:allow,A=\rx\r\n",
    "equals-in-value": b'1.2.3.4:allow,FOO="a=b"\n',
    "colon-deny-in-value": b'1.2.3.4:allow,A="x:deny"\n',
    "space-delimiter-trimmed": b"1.2.3.4:allow,A= x \n",
    "space-in-quotes-kept": b'1.2.3.4:allow,A="x "   \n',
    "nul-in-value": b'1.2.3.4:allow,A="x\x00y"\n',
    "same-name-twice": b'1.2.3.4:allow,R="1",R="2"\n',
    "trailing-comma": b'1.2.3.4:allow,A="1",\n',
    "deny-with-items": b'1.2.3.4:deny,X="y"\n',
    "qmail-relay": b'127.:allow,RELAYCLIENT=""\n:allow\n',
    # Ranges
    "range-37-40": b"1.2.3.37-40:allow\n",
    "range-middle": b"10.2-3.:allow\n",
    "range-first-prefix": b"1-3.:allow\n",
    "range-bare": b"1-3:allow\n",
    "range-reversed": b"1.2.3.9-5:allow\n",
    "range-top-clamped": b"1.2.3.250-300:allow\n",
    "range-both-over": b"1.2.3.300-400:allow\n",
    "range-empty-bottom": b"1.2.3.-5:allow\n",
    "range-empty-top": b"1.2.3.5-:allow\n",
    "range-zero-empty-top": b"1.2.3.0-:allow\n",
    "range-dash": b"-:allow\n",
    "range-dash-5": b"-5:allow\n",
    "range-dot-dash-dot": b"1.-.2:allow\n",
    "range-dots": b".-.:allow\n",
    "range-five-parts": b"1.2.3.4.-2:allow\n",
    "range-leading-zeros": b"1.2.3.007-009:allow\n",
    "range-first-dash-only": b"1.2-3.4-5:allow\n",
    "range-tail-kept": b"1.2.3.4-5.x-y:allow\n",
    "range-wrap-bottom": b"1.2.3.18446744073709551617-3:allow\n",
    "range-wrap-top": b"1.2.3.1-18446744073709551618:allow\n",
    "range-nul": b"1.2.3.4\x00zz-5:allow\n",
    "range-v6-mapped": b"::ffff:1.2.3.1-3:allow\n",
    "range-bad-bottom": b"1.2.3.a-5:allow\n",
    "range-bad-top": b"1.2.3.1-b:allow\n",
    "range-plus": b"1.2.3.+1-2:allow\n",
    "range-two-dashes": b"1-2-3:allow\n",
    "range-three-bounds": b"1.2.3.4-5-6:allow\n",
    "range-space": b"1.2.3. 4-5:allow\n",
    "range-space-after": b"1.2.3.4-5 :deny\n",
    "range-hostname": b"a-b.example.com:deny\n",
    "range-hostname-digits": b"host1-3.example:deny\n",
    "range-v6": b"2001:db8::1-3:allow\n",
    "range-literal-host": b"=a-b.example.com:deny\n",
    "range-literal-info": b"joe@1.2.3.1-3:deny\n",
    "range-literal-info-host": b"x@a-b:deny\n",
    "range-literal-equals": b"1-2=:deny\n",
    "range-with-items": b'1.2.3.1-3:deny,A="1"\n',
    # Keys are bytes; What a rule stores; Duplicate keys
    "cidr-and-odd-keys": b"10.0.0.0/8:deny\n2001:db8::/32:deny\n[1.2.3.4]:deny\nfe80::1%eth0:deny\n"
                         b"\xef\xbb\xbf1.2.3.4:deny\n1.2\x003.4:deny\n2001:DB8::1:deny\n",
    "empty-input": b"",
    "only-comments": b"# nothing\n\n",
    "duplicates": b'1.2.3.4:allow,A="1"\n1.2.3.4:deny\n',
    "range-then-duplicate": b"1.2.3.1-2:deny\n1.2.3.2:allow\n",
    "data-encoding": b':allow,A="1",B=/2/\n:deny,X="y"\n5.6.7.10:allow,="noname",C=""\n',
    "no-final-newline": b"1.2.3.4:allow\n5.6.7.8:deny",
    "no-final-newline-blank": b"1.2.3.4:allow\n5.6.7.8:deny  ",
    "hosts-and-info": b"=a.b.example.com:deny\n=:allow\njoe@1.2.3.4:allow\njoe@=host:deny\n:deny\n",
    "high-bytes": b"\xff\xfe:allow,\xff=\xfe\xfd\xfe\n",
    "long-line": b"1.2.3.4:allow,BIG=\"" + b"v" * 3_000_000 + b"\"\n" + b"k" * 400_000 + b":deny\n",
}


@pytest.mark.parametrize("name", sorted(DOC_CASES))
def test_documented_example(checker: Checker, name: str) -> None:
    data = DOC_CASES[name]
    failures = check_all(checker, [data])
    p = plan(data)
    if NOCOLON in p.kinds or BAD in p.kinds:
        failures += verify_hangs(checker, [data])
    assert not failures, "\n".join(failures)


def test_line_by_line_not_file_by_file(checker: Checker) -> None:
    """cdbrules decides per line (docs/compatibility.md, "Parsing").  Here the v6 build
    hangs on line 1 (no ':') and the v4 build fails on line 2 (an IPv6 address); we skip
    line 1 as v4 does and read line 2 as v6 does: our cdb is the v6 build's for the text
    without line 1, which neither reference produces for the whole text."""
    data = b"hello\n::1:allow\n"
    d = checker.work
    v6_all = run_tcprules(checker.refs.tcprules_v6, checker.env, data, d, "v6all")  # type: ignore[attr-defined]
    v4_all = run_tcprules(checker.refs.tcprules_v4, checker.env, data, d, "v4all")  # type: ignore[attr-defined]
    v6_rest = run_tcprules(checker.refs.tcprules_v6, checker.env, data[6:], d, "v6rest")  # type: ignore[attr-defined]
    assert (v6_all.rc, v4_all.rc, v6_rest.rc) == (None, 100, 0)
    assert run_ours(data, d).outcome == ("ok", v6_rest.cdb.read_bytes())


def test_hang_cases_do_hang(checker: Checker) -> None:
    """The prediction is not vacuous: the inputs docs/format.md lists as hangs hang the v6 build."""
    names = [n for n in DOC_CASES if n.startswith("hang-")]
    verify_hangs(checker, [DOC_CASES[n] for n in names])
    assert checker.counts.get("v6 hang predicted and seen", 0) == len(names), checker.counts


# --------------------------------------------------------------------------------------
# random rule files


class Gen:
    """Random tcprules text: mostly valid, with every quirk of docs/format.md and some breakage."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def pick(self, *options: object) -> object:
        return self.r.choice(options)

    def num(self) -> str:
        r = self.r.random()
        if r < 0.55:
            return str(self.r.randint(0, 255))
        if r < 0.65:
            return ""
        if r < 0.75:
            return "0" * self.r.randint(1, 3) + str(self.r.randint(0, 99))
        if r < 0.85:
            return str(self.r.randint(256, 999))
        if r < 0.92:
            return str(2**64 * self.r.randint(1, 3) + self.r.randint(0, 300))
        return str(self.pick("a", "+1", " 4", "1 ", "0x1f", "1:2", "-"))

    def ipv4(self, parts: int = 4) -> str:
        return ".".join(str(self.r.randint(0, 255)) for _ in range(parts))

    def ipv6(self) -> str:
        r = self.r.random()
        groups = [format(self.r.randint(0, 0xFFFF), "x") for _ in range(self.r.randint(1, 8))]
        if r < 0.3:
            return ":".join(groups)
        if r < 0.6:
            k = self.r.randint(0, len(groups))
            return ":".join(groups[:k]) + "::" + ":".join(groups[k:])
        if r < 0.75:
            return "::ffff:" + self.ipv4(self.r.randint(1, 4))
        if r < 0.9:
            return str(self.pick("::1", "::", ":", ":::", "fe80::1%eth0", "2001:db8:", "2001:db8::", "::ffff:1.2.3.1-3"))
        return ":".join(groups[:3]) + ":"

    def address(self) -> bytes:
        r = self.r.random()
        if r < 0.25:
            a = self.ipv4()
        elif r < 0.35:
            a = self.ipv4(self.r.randint(1, 3)) + "."
        elif r < 0.55:
            a = self.range()
        elif r < 0.65:
            a = self.ipv6()
        elif r < 0.75:
            host = ".".join(self.pick("a", "mail", "b-c", "x1", "example", "com", "", "MX") for _ in range(self.r.randint(1, 4)))
            a = str(self.pick("=", "=.", "", "joe@", "joe@=", "@")) + str(host)
        elif r < 0.8:
            a = str(self.pick("", "=", "0.0.0.0/8", "[1.2.3.4]", "10.0.0.0/8", " 1.2.3.4", "1.2.3.4 ", "\xef\xbb\xbf1.2.3.4"))
        else:
            return self.noise(self.r.randint(0, 12), b":=@-. 0123456789\x00\r#,\xff")
        return a.encode("latin-1")

    def range(self) -> str:
        shape = self.r.randint(0, 7)
        lo, hi = self.num(), self.num()
        if shape == 0:
            return f"{self.ipv4(3)}.{lo}-{hi}"
        if shape == 1:
            return f"{self.ipv4(2)}.{lo}-{hi}."
        if shape == 2:
            return f"{lo}-{hi}" + str(self.pick("", ".", ".1.2", "."))
        if shape == 3:
            return f"{self.ipv4(self.r.randint(1, 3))}.{lo}-{hi}.{self.ipv4(self.r.randint(1, 2))}"
        if shape == 4:
            return f"{self.ipv4(3)}.{lo}-{hi}.x-y"
        if shape == 5:
            return f"{self.ipv4(2)}.{lo}-{hi}.{self.num()}-{self.num()}"
        if shape == 6:
            return f"{self.ipv4(3)}.{lo}\0zz-{hi}"
        return str(self.pick("-", ".-.", "1.-.2", "-5", "1-", "1-2-3", "a-b.example", "1.2.3.4.-2"))

    def noise(self, n: int, alphabet: bytes) -> bytes:
        return bytes(self.r.choice(alphabet) for _ in range(n))

    def item(self) -> bytes:
        r = self.r.random()
        if r < 0.5:
            name = str(self.pick("RELAYCLIENT", "RBLSMTPD", "QMAILQUEUE", "A", "B", "SMTPAUTH", "CHKUSER_RCPTLIMIT"))
        elif r < 0.6:
            name = ""
        elif r < 0.7:
            name = str(self.pick("A,B", ",A", 'A B"', "x:allow", ":deny", "A-1", "\0", "\r"))
        else:
            name = self.noise(self.r.randint(1, 6), b"ABC_,:\x00 \"'\xff").decode("latin-1")
        d = str(self.pick('"', '"', '"', "/", "'", "x", ",", "=", " ", "#", "\r", "\0", ":", "\t", "\xff"))
        value = str(self.pick("", "", "1", "-blocked, see http://example.com/", "/var/qmail/bin/qmail-queue",
                              "a=b", "x:deny", ":allow", "x y", "\0", "15")) if self.r.random() < 0.8 else \
            self.noise(self.r.randint(0, 10), b"ab =,:\"/\x00\r\t#").decode("latin-1")
        value = value.replace(d, "") if self.r.random() < 0.95 else value
        return ("," + name + "=" + d + value + d).encode("latin-1")

    def instruction(self) -> bytes:
        kw = b"deny" if self.r.random() < 0.4 else b"allow"
        items = b"".join(self.item() for _ in range(self.r.choices([0, 1, 2, 3, 5], [45, 25, 15, 10, 5])[0]))
        return kw + items

    def breakage(self, line: bytes) -> bytes:
        """Damage a rule line the way people do."""
        how = self.r.randint(0, 11)
        if how == 0:
            return line.replace(b":", b": ", 1)
        if how == 1:
            return line.replace(b"allow", b"ALLOW").replace(b"deny", b"Deny")
        if how == 2:
            return line + b","
        if how == 3:
            return line + b",FOO"
        if how == 4:
            return line + b',A="unterminated'
        if how == 5:
            return line + b' ,B="x"'
        if how == 6:
            return line + b",C="
        if how == 7:
            return line + b":deny"
        if how == 8:
            return line[: self.r.randint(0, len(line))]
        if how == 9:
            return line + b"x"
        if how == 10:
            i = self.r.randint(0, len(line))
            return line[:i] + self.noise(1, b" \t\r\x00:,=\"") + line[i:]
        return line.replace(b":", b" ", 1)

    def line(self, previous: List[bytes]) -> bytes:
        r = self.r.random()
        if previous and r < 0.08:
            return self.r.choice(previous)  # a duplicate (the same bytes, end included)
        if r < 0.14:
            body = b"#" + self.noise(self.r.randint(0, 20), b"abc :allow,=\r")
        elif r < 0.18:
            body = b""
        elif r < 0.2:
            body = self.r.choice([b" ", b"\t", b"\r", b" # note", b"hello world", b"1.2.3.4 allow", b"  \t "])
        else:
            body = self.address() + b":" + self.instruction()
            if self.r.random() < 0.04:
                body = self.breakage(body)
        end = self.r.choices([b"\n", b"\r\n", b" \n", b"\t \n", b"  \t\n"], [85, 4, 5, 3, 3])[0]
        return body + end

    def file(self) -> bytes:
        n = self.r.choices([0, 1, 2, 3, 5, 8, 15, 30, 60], [2, 15, 15, 15, 15, 15, 12, 8, 3])[0]
        lines: List[bytes] = []
        for _ in range(n):
            lines.append(self.line(lines))
        text = b"".join(lines)
        if text and self.r.random() < 0.15:  # no newline at the end, maybe trailing blanks too
            text = text.rstrip(b"\n") if self.r.random() < 0.7 else text[:-1]
        return text


def test_random_files(checker: Checker) -> None:
    rng = random.Random(DIFF_SEED)
    gen = Gen(rng)
    inputs = [gen.file() for _ in range(DIFF_N)]
    failures = check_all(checker, inputs, rng)
    assert not failures, f"{len(failures)} of {len(inputs)} files differ:\n" + "\n".join(failures[:20])
    # the generator must reach every kind of outcome, or the comparison proves little
    c = checker.counts
    assert c.get("ours ok", 0) > DIFF_N // 4 and c.get("ours error", 0) > DIFF_N // 10, c
    assert c.get("v4 differs (IPv6 separator)", 0) > DIFF_N // 50, c
    assert c.get("v6 would hang on the whole input", 0) > DIFF_N // 50, c
    print(f"\n{len(inputs)} random files, seed {DIFF_SEED}: {c}")


def test_random_hang_predictions(checker: Checker) -> None:
    """The hang prediction holds on the v6 build itself, for a sample of random files."""
    rng = random.Random(DIFF_SEED + 1)
    gen = Gen(rng)
    hanging: List[bytes] = []
    ending: List[bytes] = []
    while len(hanging) < DIFF_HANGS or len(ending) < DIFF_HANGS:
        data = gen.file()
        p = plan(data)
        if NOCOLON in p.kinds or BAD in p.kinds:
            ours = run_ours(data, checker.work)
            (hanging if predicted_hang(p, ours)[0] else ending).append(data)
    failures = verify_hangs(checker, hanging[:DIFF_HANGS] + ending[:DIFF_HANGS])
    assert not failures, "\n".join(failures)
    seen = checker.counts.get("v6 hang predicted and seen", 0) + checker.counts.get(
        "v6 stale-buffer parse error instead of a hang", 0)
    assert seen == DIFF_HANGS, checker.counts


# --------------------------------------------------------------------------------------
# hypothesis: the same generator's building blocks, shrunk to a minimal failing file

_byte_line = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b""))
_atoms = st.sampled_from([
    b"1.2.3.4", b"1.2.3.", b"1.2.3.1-3", b"-", b"::1", b"2001:db8:", b"=", b"=a-b.c", b"joe@", b"",
    b":", b":allow", b":deny", b",", b"=", b'"', b"/", b"A", b"RELAYCLIENT", b" ", b"\t", b"\r", b"\0",
    b"#", b"-", b".", b"18446744073709551617", b"255", b"256", b"\xff", b"allow", b"deny",
])
_line = st.one_of(
    _byte_line,
    st.lists(_atoms, max_size=10).map(b"".join),
    st.tuples(st.lists(_atoms, max_size=4).map(b"".join), st.sampled_from([b":allow", b":deny"]),
              st.lists(st.tuples(_byte_line, st.sampled_from([b'"', b"/", b",", b"=", b"\0"]), _byte_line),
                       max_size=3)).map(lambda t: t[0] + t[1] + b"".join(
                           b"," + n.replace(b"=", b"") + b"=" + d + v.replace(d, b"") + d for n, d, v in t[2])),
)
_file = st.tuples(st.lists(_line, max_size=8), st.sampled_from([b"\n", b"\r\n", b" \n"]), st.booleans()).map(
    lambda t: b"".join(x + t[1] for x in t[0])[: -1 if t[2] and t[0] else None])


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=_file)
def test_hypothesis_files(checker: Checker, data: bytes) -> None:
    failures = check_all(checker, [data])
    assert not failures, "\n".join(failures)
