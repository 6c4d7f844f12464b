"""``cdbrules decompile``: rules text that compiles back into the same file.

Random rule files are compiled by the real tcprules (the IPv4 build where the file has no
IPv6 key, the IPv6 build always) and by cdbrules; each file is decompiled, and the text is
compiled again by all of them: every result must be the original file, byte for byte.
Records that no rules line can produce are errors naming them.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import cdbrules
from cdbrules.decompiler import DecompileError, decompile, rule_text
from helpers import EXAMPLES, run_cli

N_FILES = int(os.environ.get("CDBRULES_DECOMPILE_N", "120"))


def _value(rng: random.Random) -> bytes:
    alphabet = b"abcXYZ019 \"'/|%#!,:=-.\x00\x01\xff"
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _items(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        name = rng.choice([b"RELAYCLIENT", b"RBLSMTPD", b"A", b"", b"A B", b" X", b"A,B", b"Q\x01"])
        value = _value(rng)
        delims = list(b"\"'/|%x,=:#\r\x00")
        delim = next(d for d in rng.sample(delims, len(delims)) if d not in value)
        out.append(b"," + name + b"=" + bytes([delim]) + value + bytes([delim]))
    return b"".join(out)


def _key(rng: random.Random, v6: bool) -> bytes:
    o = lambda: str(rng.randint(0, 255)).encode()  # noqa: E731
    kinds = ["v4", "v4", "prefix", "range", "host", "info", "default", "odd", "dashed"]
    if v6:
        kinds += ["v6", "v6", "v6prefix"]
    kind = rng.choice(kinds)
    if kind == "v4":
        return b".".join(o() for _ in range(4))
    if kind == "prefix":
        return b".".join(o() for _ in range(rng.randint(1, 3))) + b"."
    if kind == "range":
        lo = rng.randint(0, 255)
        return b"10.%d.%d.%d-%d" % (rng.randint(0, 3), rng.randint(0, 3), lo, min(lo + rng.randint(-2, 9), 300))
    if kind == "host":
        return b"=" + rng.choice([b"", b".", b"a-1.example", b".Example.COM", b"mail.example.com."])
    if kind == "info":
        return rng.choice([b"joe", b"", b"x-y"]) + b"@" + rng.choice([b"1.2.3.4", b"=host.example", b"a-b"])
    if kind == "default":
        return b""
    if kind == "odd":
        return rng.choice([b" 1.2.3.4", b"1.2.3.4 ", b"\xef\xbb\xbf1.2.3.4", b"10.0.0.0/8", b"a b", b"x\x00y"])
    if kind == "dashed":
        return rng.choice([b"1.2.3.4-5.x-y", b"1.2-3.4-5", b"7-7.a-b"])
    if kind == "v6":
        return rng.choice([b"::1", b"2001:db8::25", b"fe80::1", b"::ffff:1.2.3.4", b"2001:db8:0:1::5"])
    return rng.choice([b"2001:db8:", b"2001:db8::", b"::", b":", b"2001:"])


def random_rules(rng: random.Random, v6: bool) -> bytes:
    lines: List[bytes] = []
    for _ in range(rng.randint(0, 25)):
        if rng.random() < 0.1:
            lines.append(rng.choice([b"# comment", b"", b"#x:allow"]))
            continue
        if lines and rng.random() < 0.15:
            lines.append(rng.choice([x for x in lines if x[:1] != b"#"] or [b""]))  # a repeated line
            continue
        lines.append(_key(rng, v6) + b":" + rng.choice([b"allow", b"deny"]) + _items(rng))
    return b"".join(line + b"\n" for line in lines)


def tcprules(refs, prog: str, text: bytes, work: Path) -> Optional[bytes]:  # type: ignore[no-untyped-def]
    cdb, tmp = work / "ref.cdb", work / "ref.tmp"
    r = refs.run([prog, str(cdb), str(tmp)], stdin=text, timeout=20)
    assert not r.timed_out, text
    return cdb.read_bytes() if r.returncode == 0 else None


def ours(text: bytes, work: Path) -> bytes:
    cdbrules.compile(io.BytesIO(text), work / "ours.cdb", work / "ours.tmp")
    return (work / "ours.cdb").read_bytes()


def test_round_trip_with_both_tcprules_builds(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261201)
    counts: Dict[str, int] = {"v4": 0, "v6": 0, "ours": 0}
    for n in range(N_FILES):
        v6 = n % 2 == 1
        text = random_rules(rng, v6)
        made = {"ours": ours(text, tmp_path), "v6": tcprules(refs, refs.tcprules_v6, text, tmp_path)}
        assert made["v6"] == made["ours"], text
        if not v6:
            made["v4"] = tcprules(refs, refs.tcprules_v4, text, tmp_path)
            assert made["v4"] == made["ours"], text
        for who, original in made.items():
            assert original is not None
            (tmp_path / "in.cdb").write_bytes(original)
            back = decompile(tmp_path / "in.cdb")
            assert ours(back, tmp_path) == original, (who, text, back)
            assert tcprules(refs, refs.tcprules_v6, back, tmp_path) == original, (who, text, back)
            if not v6:  # (the IPv4 build cannot read IPv6 keys)
                assert tcprules(refs, refs.tcprules_v4, back, tmp_path) == original, (who, text, back)
            counts[who] += 1
    assert counts["v4"] >= N_FILES // 2 - 1 and counts["v6"] == N_FILES


def random_cidr_rules(rng: random.Random, v6: bool) -> bytes:
    lines = []
    for _ in range(rng.randint(1, 12)):
        if v6 and rng.random() < 0.3:
            key = rng.choice(["2001:db8::/32", "2001:db8:5::/48", "2001:db8:5:7::/64", "2001:db8:5:4::/62",
                              "2001:db8:5:7:1:2:3:4/128"])
        else:
            n = rng.choice([8, 12, 16, 20, 24, 27, 30, 32])
            addr = rng.randrange(1 << 32) >> (32 - n) << (32 - n)
            key = f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}/{n}"
            if rng.random() < 0.2:
                key = rng.choice(["127.", "10.1.2.3", "=a.example", ""])
        instr = rng.choice(["allow", "deny", 'allow,RELAYCLIENT=""'])
        lines.append(f"{key}:{instr}".encode())
    return b"".join(x + b"\n" for x in lines)


def test_round_trip_of_cidr_output(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(33)
    for n in range(max(10, N_FILES // 4)):
        v6 = n % 2 == 1
        text = random_cidr_rules(rng, v6)
        cdbrules.compile(io.BytesIO(text), tmp_path / "in.cdb", tmp_path / "in.tmp", cidr=True)
        original = (tmp_path / "in.cdb").read_bytes()
        back = decompile(tmp_path / "in.cdb")
        assert ours(back, tmp_path) == original, text
        assert tcprules(refs, refs.tcprules_v6, back, tmp_path) == original, text
        if not v6:
            assert tcprules(refs, refs.tcprules_v4, back, tmp_path) == original, text


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.smtp")))
def test_examples_round_trip(name: str, tmp_path: Path) -> None:
    original = ours((EXAMPLES / name).read_bytes(), tmp_path)
    (tmp_path / "in.cdb").write_bytes(original)
    back = decompile(tmp_path / "in.cdb")
    assert ours(back, tmp_path) == original
    if name == "blocklist.smtp":  # ranges come back as ranges
        assert back.count(b"\n") < (EXAMPLES / name).read_bytes().count(b"\n")


def test_unwritable_records(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    with cdbrules.Writer(path) as w:
        w.add(b"1.2.3.4", b"")
        w.add(b"a:allow", b"")
        w.add(b"#x", b"D\x00")
        w.add(b"1.2.3.5", b"+A=1")  # no final NUL
        w.add(b"1.2.3.6", b"X\x00")
        w.add(b"a\nb", b"")
        w.add(b"a-b", b"")
    with pytest.raises(DecompileError) as info:
        decompile(path)
    assert [(p.record, p.key) for p in info.value.problems] == [
        (1, b"a:allow"), (2, b"#x"), (3, b"1.2.3.5"), (4, b"1.2.3.6"), (5, b"a\nb"), (6, b"a-b")]
    assert "':allow'" in info.value.problems[0].reason
    rc, out, err = run_cli(["decompile", str(path)])
    assert rc == 100 and out == b""
    assert f"{path}: record 2, key b'a:allow': the key contains ':allow'" in err
    assert err.count("\n") == 6


def test_rule_text_picks_a_free_delimiter() -> None:
    line = rule_text(b"1.2.3.4", b"D\x00+A=say \"hi\"\x00+B=a'b/c\"\x00")
    assert line.startswith(b"1.2.3.4:deny,A='say \"hi\"',B=")
    assert cdbrules.lint(line + b"\n") == []


def test_cli(tmp_path: Path) -> None:
    cdb = tmp_path / "x.cdb"
    cdbrules.compile(EXAMPLES / "tcp.smtp", cdb)
    rc, out, err = run_cli(["decompile", "--no-header", str(cdb)])
    assert (rc, err) == (0, "")
    assert out == (EXAMPLES / "tcp.smtp").read_bytes()
    rc, out, err = run_cli(["decompile", str(tmp_path / "none.cdb")])
    assert rc == 111 and "file does not exist" in err
