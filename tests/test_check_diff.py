"""Differential tests: ``Rules.check`` and ``cdbrules check``'s output against the real tcprulescheck.

Random rule sets are compiled by the real (v6) ``tcprules``; random connections near their
keys (IPv4, IPv6, hosts, ident info, empty and absent values) are looked up by both Debian
builds of ``tcprulescheck`` and by cdbrules, and the standard output must be identical.

Which build is compared where (docs/lookup.md, "Prefix boundaries"): the two builds differ
only in step 5 of the lookup, v4 ending IP prefixes at '.' and v6 at '.' or ':'.  cdbrules follows v6, so

* the **v6** tcprulescheck is compared on every query;
* the **v4** tcprulescheck is compared on every query whose answer cannot depend on the
  boundary rule: the IP has no ':' (then both builds try the same keys), or no proper prefix
  of the IP ending in ':' is a key of the file (then the extra v6 probes all miss).
  The queries left out are counted, and the test asserts some of each kind ran.

Hand-made files (written by freecdb's cdbmake, not by cdbrules) cover the data tcprules never
writes but tcprulescheck prints in its own way (``+NAME`` without '=', ``D`` after env
entries, unknown entries, bytes after the last NUL); damaged files (truncated, bytes
overwritten) must give the same output, or the same failure (exit 111), as tcprulescheck.

Size: ``CDBRULES_DIFF_N`` queries per build for the random rule sets (default 2400, about
half a minute on the CI machine; never fewer than 480, so that every kind of outcome the
test asserts on comes up); a tenth of that for the hand-made and damaged files.
``CDBRULES_DIFF_SEED`` picks another random series.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from cdbrules import CdbFormatError, Decision, Reader, Rules, tcpserver_ip
from cdbrules.commands.check import tcprulescheck_output

N = int(os.environ.get("CDBRULES_DIFF_N", "2400"))
SEED = int(os.environ.get("CDBRULES_DIFF_SEED", "4"))

Query = Tuple[bytes, Optional[bytes], Optional[bytes]]  # ip (b"\x00" = unset), host, info
UNSET = b"\x00"  # TCPREMOTEIP not in the environment: tcprulescheck uses 0.0.0.0

# -- building blocks -------------------------------------------------------------------
V4_A = ["1", "10", "127", "192"]
V4_B = ["0", "1", "2", "168"]
V4_C = ["0", "1", "3", "200"]
V4_D = ["0", "1", "2", "4", "255"]
V6_ADDRS = [
    "2001:db8::1", "2001:db8::2", "2001:db8:0:1::5", "2001:db8:1::1", "2001:db9::1", "::1", "::2",
    "fe80::1", "::ffff:1.2.3.4", "::ffff:127.0.0.1", "2001:db8::1:0:0:1", "2001:db8:0:0:1::",
    "2001:0:0:1::1", "fd00::2", "::", "2001:db8::",
]
HOSTS = [b"a.b.example.com", b"b.example.com", b"example.com", b"mail.example.org", b"host.", b".",
         b"", b"a..c.d", b"Mixed.Case.Example.COM", b"mixed.case.example.com", b"x", b"\xc3\xbc.example.com",
         b"\xff.bad", b"weird\\040name.ex\\056ample.com"]
INFOS = [b"joe", b"", b"root", b"j@e", b"\xe2\x82\xac"]
NAMES = [b"A", b"B", b"RELAYCLIENT", b"TCPREMOTEIP", b"X_Y", b"A"]


def v4(rng: random.Random) -> str:
    return ".".join((rng.choice(V4_A), rng.choice(V4_B), rng.choice(V4_C), rng.choice(V4_D)))


def v6(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(V6_ADDRS)
    groups = [rng.choice([0, 0, 0, 1, 0xdb8, 0x2001, 0xffff, rng.randrange(1 << 16)]) for _ in range(8)]
    return tcpserver_ip(bytes(b for g in groups for b in g.to_bytes(2, "big")), forcev6=True)


def prefixes(ip: str, boundaries: str = ".:") -> List[str]:
    return [ip[:i + 1] for i, ch in enumerate(ip) if ch in boundaries]


def rule_key(rng: random.Random) -> bytes:
    k = rng.random()
    if k < 0.25:
        return v4(rng).encode()
    if k < 0.45:
        return rng.choice(prefixes(v4(rng), ".")).encode()
    if k < 0.50:  # a range, expanded by tcprules
        a, b = sorted(rng.sample(range(0, 6), 2))
        return f"{rng.choice(V4_A)}.{rng.choice(V4_B)}.{rng.choice(V4_C)}.{a}-{b}".encode()
    if k < 0.62:
        ip = v6(rng)
        return (ip if rng.random() < 0.4 or not prefixes(ip) else rng.choice(prefixes(ip))).encode()
    if k < 0.80:
        host = rng.choice(HOSTS)
        cut = [i for i, c in enumerate(host) if c == 0x2E]
        if cut and rng.random() < 0.5:
            host = host[rng.choice(cut):]
        return b"=" + host
    if k < 0.92:
        who = rng.choice([v4(rng), v6(rng)]).encode() if rng.random() < 0.6 else b"=" + rng.choice(HOSTS)
        return rng.choice(INFOS) + b"@" + who
    return rng.choice([b"", b"="])


def rule_line(rng: random.Random, key: bytes) -> bytes:
    words = [rng.choice([b"allow", b"allow", b"deny"])]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        value = bytes(rng.choice(b"xyz=01 -.") for _ in range(rng.randrange(0, 5)))
        delim = rng.choice([b'"', b"/"])
        words.append(rng.choice(NAMES) + b"=" + delim + value.replace(delim, b"") + delim)
    return key + b":" + b",".join(words) + b"\n"


def rules_text(rng: random.Random, n: int) -> bytes:
    keys = [rule_key(rng) for _ in range(n)]
    keys += rng.sample(keys, k=min(len(keys), n // 5))  # the same key again: the first one wins
    rng.shuffle(keys)
    return b"".join(rule_line(rng, k) for k in keys)


def queries_for(rng: random.Random, keys: Sequence[bytes], n: int) -> List[Query]:
    out: List[Query] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35 and keys:  # an address some key is a prefix of (or equals)
            k = rng.choice(keys).split(b"@")[-1]
            if k.startswith(b"=") or b"-" in k:
                ip = v4(rng).encode()
            else:
                ip = k if rng.random() < 0.3 else k + rng.choice([b"1", b"7", b"0.1", b"1:2", b":1", b"5"])
        elif r < 0.65:
            ip = v4(rng).encode()
        elif r < 0.90:
            ip = v6(rng).encode()
        else:
            ip = rng.choice([UNSET, b"", b"0.0.0.0", b"1.2.3.4.", b"::", b":", b"1.2.3", b"2001:DB8::1"])
        host = rng.choice(HOSTS) if rng.random() < 0.5 else None
        info = rng.choice(INFOS) if rng.random() < 0.3 else None
        out.append((ip, host, info))
    return out


# -- running the references in batches ------------------------------------------------------
def _sq(b: bytes) -> bytes:
    return b"'" + b.replace(b"'", b"'\\''") + b"'"


def reference_outputs(refs, prog: str, cdb: Path, queries: Sequence[Query], tmp: Path) -> List[Tuple[bytes, int]]:
    """Run ``prog cdb`` once per query from one shell script: [(stdout, exit code)]."""
    lines = [b"#!/bin/sh"]
    for ip, host, info in queries:
        env = [b"env", b"-i"]
        if ip != UNSET:
            env.append(_sq(b"TCPREMOTEIP=" + ip))
        if host is not None:
            env.append(_sq(b"TCPREMOTEHOST=" + host))
        if info is not None:
            env.append(_sq(b"TCPREMOTEINFO=" + info))
        lines.append(b" ".join(env + [_sq(os.fsencode(prog)), _sq(os.fsencode(cdb))]) + b" 2>/dev/null")
        lines.append(b"printf '\\001%d\\001\\n' $?")
    script = tmp / "batch.sh"
    script.write_bytes(b"\n".join(lines) + b"\n")
    r = refs.run(["/bin/sh", str(script)], timeout=60 + len(queries) * 0.05)
    assert not r.timed_out and r.returncode == 0, r
    parts = re.split(rb"\x01(\d+)\x01\n", r.stdout)
    assert len(parts) == 2 * len(queries) + 1 and parts[-1] == b"", "batch output out of step"
    return [(parts[2 * i], int(parts[2 * i + 1])) for i in range(len(queries))]


def ours(path: Path, queries: Sequence[Query]) -> List[Tuple[bytes, int]]:
    """cdbrules' answers, as `cdbrules check` prints them (stdout, exit code)."""
    out: List[Tuple[bytes, int]] = []
    try:
        rules = Rules(path, reload_interval=None)
    except (CdbFormatError, IsADirectoryError):
        return [(b"", 111)] * len(queries)
    with rules:
        for ip, host, info in queries:
            try:
                d = rules.check(b"0.0.0.0" if ip == UNSET else ip, host, info, exact=True)
            except CdbFormatError:
                out.append((b"", 111))
                continue
            out.append((tcprulescheck_output(d), 0))
    return out


def boundary_free(ip: bytes, keys: set) -> bool:
    """True when the v4 and v6 lookups try the same keys that exist in the file."""
    if ip == UNSET or b":" not in ip:
        return True
    return not any(ip[:i + 1] in keys for i in range(len(ip) - 1) if ip[i] == 0x3A)


def compile_with_tcprules(refs, text: bytes, cdb: Path) -> None:
    r = refs.run([refs.tcprules_v6, str(cdb), str(cdb) + ".tmp"], stdin=text, timeout=30)
    assert not r.timed_out and r.returncode == 0, r


def assert_same(label: str, queries: Sequence[Query], want: Sequence[Tuple[bytes, int]],
                got: Sequence[Tuple[bytes, int]]) -> None:
    bad = [(q, w, g) for q, w, g in zip(queries, want, got) if w != g]
    assert not bad, f"{label}: {len(bad)} of {len(queries)} differ; first: query {bad[0][0]!r}\n" \
                    f"  tcprulescheck: {bad[0][1]!r}\n  cdbrules:      {bad[0][2]!r}"


# -- the tests ------------------------------------------------------------------------------
def test_random_rule_sets_match_both_builds(refs, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    per_set = 60
    compared = {"v6": 0, "v4": 0, "v4_colon": 0, "skipped_v4": 0, "matched": 0, "denied": 0, "default": 0}
    for n_set in range(max(8, N // per_set)):  # 8 at least: every path below gets exercised
        d = tmp_path / f"s{n_set}"
        d.mkdir()
        text = rules_text(rng, rng.choice([3, 10, 40, 150]))
        cdb = d / "rules.cdb"
        compile_with_tcprules(refs, text, cdb)
        with Reader(cdb) as rd:
            keys = set(rd.keys())
        qs = queries_for(rng, sorted(keys), per_set)
        got = ours(cdb, qs)
        want6 = reference_outputs(refs, refs.tcprulescheck_v6, cdb, qs, d)
        assert_same(f"v6 tcprulescheck, rule set {n_set}:\n{text.decode('utf-8', 'replace')}", qs, want6, got)
        compared["v6"] += len(qs)
        sel = [i for i, q in enumerate(qs) if boundary_free(q[0], keys)]
        want4 = reference_outputs(refs, refs.tcprulescheck_v4, cdb, [qs[i] for i in sel], d)
        assert_same(f"v4 tcprulescheck, rule set {n_set}", [qs[i] for i in sel], want4, [got[i] for i in sel])
        compared["v4"] += len(sel)
        compared["v4_colon"] += sum(1 for i in sel if b":" in qs[i][0])
        compared["skipped_v4"] += len(qs) - len(sel)
        for out, _ in got:
            compared["default" if out.startswith(b"default:") else "matched"] += 1
            compared["denied"] += out.endswith(b"deny connection\n")
    print(f"tcprulescheck comparisons: {compared}")
    # the generator must really exercise every path, or the comparison proves little
    total = compared["v6"]
    assert compared["matched"] > total // 3 and compared["default"] > total // 50 and compared["denied"] > total // 20
    assert compared["v4_colon"] > 0 and compared["skipped_v4"] > 0


def test_decision_agrees_with_printed_rule(refs, tmp_path: Path) -> None:
    """For tcprules' own files, the Decision's rule and verdict are what tcprulescheck prints."""
    rng = random.Random(SEED + 1)
    text = rules_text(rng, 80)
    cdb = tmp_path / "r.cdb"
    compile_with_tcprules(refs, text, cdb)
    with Reader(cdb) as rd:
        keys = sorted(set(rd.keys()))
    qs = [q for q in queries_for(rng, keys, max(60, N // 20)) if q[0] != UNSET]
    want = reference_outputs(refs, refs.tcprulescheck_v6, cdb, qs, tmp_path)
    with Rules(cdb) as rules:
        for q, (out, rc) in zip(qs, want):
            d = rules.check(*q, exact=True)
            assert rc == 0
            first = out.split(b"\n", 1)[0]
            if d.rule is None:
                assert first == b"default:" and d.allowed and not d.env
            else:
                assert first == b"rule " + os.fsencode(d.rule) + b":"
                assert d.allowed == (not out.endswith(b"deny connection\n"))
            if d.allowed:  # tcprules writes only NAME=VALUE entries: the env is what it printed, last wins
                printed: Dict[str, str] = {}
                for line in out.split(b"\n"):
                    if line.startswith(b"set environment variable "):
                        name, _, value = line[len(b"set environment variable "):].partition(b"=")
                        printed[os.fsdecode(name)] = os.fsdecode(value)
                assert dict(d.env) == printed


HANDMADE_ENTRIES = [b"D", b"Dx", b"+A=1", b"+A=2", b"+B=", b"+FOO", b"+=noname", b"+C=x=y", b"-X=", b"X",
                    b"", b"+\xff=\xfe", b"+RELAYCLIENT="]


def _cdbmake(refs, records: Sequence[Tuple[bytes, bytes]], cdb: Path) -> None:
    text = b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records) + b"\n"
    r = refs.run([refs.cdbmake, str(cdb), str(cdb) + ".tmp"], stdin=text)
    assert r.returncode == 0, r


def test_handmade_data_printed_like_tcprulescheck(refs, tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    n_files = max(2, N // 600)
    total = 0
    for f in range(n_files):
        records = []
        for _ in range(30):
            data = b"".join(rng.choice(HANDMADE_ENTRIES) + b"\0" for _ in range(rng.randrange(0, 5)))
            if rng.random() < 0.2:
                data += rng.choice([b"+TAIL=1", b"D", b"junk"])  # no final NUL: ignored by tcprulescheck
            records.append((rule_key(rng), data))
        cdb = tmp_path / f"h{f}.cdb"
        _cdbmake(refs, records, cdb)
        qs = queries_for(rng, [k for k, _ in records], 40)
        got = ours(cdb, qs)
        for prog in (refs.tcprulescheck_v6, refs.tcprulescheck_v4):
            sel = qs if prog == refs.tcprulescheck_v6 else [q for q in qs if boundary_free(q[0], {k for k, _ in records})]
            want = reference_outputs(refs, prog, cdb, sel, tmp_path)
            assert_same(f"hand-made file {f}, {prog}", sel, want, [got[qs.index(q)] for q in sel])
        total += len(qs)
    assert total > 0


def test_handmade_decisions_follow_tcpserver() -> None:
    """The documented tcpserver reading of odd data (docs/lookup.md, "What a matched rule
    does"), on records with known data."""
    d = Decision.from_record(b"k", b"+A=1\0D\0+A=2\0+FOO\0+=x\0-B=\0X\0+C=a=b\0+T=1")
    assert not d.allowed and d.rule == "k"
    assert list(d.env.items()) == [("A", "2"), ("", "x"), ("C", "a=b")]
    assert Decision.from_record(b"", b"Dx\0").allowed is False
    assert Decision.from_record(b"", b"D").allowed is True  # no NUL: not an entry
    assert Decision.from_record(b"=", b"").rule == "=" and Decision.from_record(b"", b"").rule == ""


def test_damaged_files_fail_like_tcprulescheck(refs, tmp_path: Path) -> None:
    """Truncated or overwritten files: the same output where tcprulescheck answers, a failure
    (exit 111) where it fails, and never a crash."""
    rng = random.Random(SEED + 3)
    text = rules_text(rng, 60)
    good = tmp_path / "good.cdb"
    compile_with_tcprules(refs, text, good)
    raw = good.read_bytes()
    with Reader(good) as rd:
        keys = sorted(set(rd.keys()))
    outcomes = {"answered": 0, "failed": 0}
    for f in range(max(4, N // 200)):
        b = bytearray(raw)
        if f % 2:
            del b[rng.randrange(2048, len(b)):]
        else:
            for _ in range(rng.randrange(1, 8)):
                pos = rng.randrange(0, len(b) - 4)
                b[pos:pos + 4] = rng.randbytes(4) if hasattr(rng, "randbytes") else os.urandom(4)
        cdb = tmp_path / f"bad{f}.cdb"
        cdb.write_bytes(bytes(b))
        qs = [q for q in queries_for(rng, keys, 15) if q[0] != UNSET]
        want = reference_outputs(refs, refs.tcprulescheck_v6, cdb, qs, tmp_path)
        got = ours(cdb, qs)
        assert_same(f"damaged file {f}", qs, want, got)
        for _, rc in want:
            outcomes["answered" if rc == 0 else "failed"] += 1
    assert outcomes["answered"] and outcomes["failed"], outcomes
