"""Lookups in a rules file larger than the caches.

On files past RULES_PREFETCH_SIZE (4 MiB) the C lookup lists an IP's keys first and
prefetches their hash slots (csrc/rules_lookup.c); smaller files, which every other rules
test uses, take the general path.  Here a block list big enough for the prefetching path is
checked against the general path (Rules.explain: one cdb_find per key) for every query, and
against tcprulescheck of the IPv6 build, the real program, for a sample.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cdbrules
from cdbrules.commands.check import tcprulescheck_output

N_NETS = int(os.environ.get("CDBRULES_LARGE_NETS", "160000"))
N_QUERIES = int(os.environ.get("CDBRULES_LARGE_QUERIES", "4000"))
N_REFERENCE = int(os.environ.get("CDBRULES_LARGE_REFERENCE", "150"))


def _rules_text(rng: random.Random) -> "tuple[bytes, list[tuple[int, int, int]]]":
    nets = set()
    while len(nets) < N_NETS:
        nets.add((rng.randrange(1, 224), rng.randrange(256), rng.randrange(256)))
    ordered = sorted(nets)
    lines = [b"127.:allow,RELAYCLIENT=\"\""]
    for i, (a, b, c) in enumerate(ordered):
        if i % 97 == 0:  # an exact address with its own environment, before its net
            lines.append(b'%d.%d.%d.%d:allow,RBLSMTPD="",N="%d"' % (a, b, c, i % 256, i))
        lines.append(b"%d.%d.%d.:deny" % (a, b, c))
    lines += [b"10.:allow,RELAYCLIENT=\"\"", b"2001:db8::deny", b':allow,CHKUSER_RCPTLIMIT="15"']
    return b"\n".join(lines) + b"\n", ordered


def _queries(rng: random.Random, nets: "list[tuple[int, int, int]]") -> "list[str]":
    out = []
    for i in range(N_QUERIES):
        kind = i % 4
        if kind < 2:  # inside a blocked net (some of them the exact allowed address)
            a, b, c = rng.choice(nets)
            out.append(f"{a}.{b}.{c}.{rng.randrange(256)}")
        elif kind == 2:  # anywhere
            out.append(".".join(str(rng.randrange(256)) for _ in range(4)))
        else:
            out.append(rng.choice(["127.0.0.1", "10.9.8.7", "2001:db8::25", "2001:db9::1", "::1", "", "1.", "0.0.0.0"]))
    return out


def test_large_file_lookups_agree(refs, tmp_path: Path) -> None:
    rng = random.Random(20261125)
    text, nets = _rules_text(rng)
    src = tmp_path / "block.smtp"
    src.write_bytes(text)
    cdb = tmp_path / "block.cdb"
    cdbrules.compile(src, cdb)
    assert cdb.stat().st_size > 4 << 20, "the file must be large enough for the prefetching path"
    ips = _queries(rng, nets)
    with cdbrules.Rules(cdb) as rules:
        many = rules.check_many(ips, exact=True)  # tcprulescheck's view: "" and "1." too
        kinds = set()
        for ip, d in zip(ips, many):
            single = rules.check(ip, exact=True)
            probes = rules.explain(ip, exact=True)  # the general path: one cdb_find per key
            matched = probes[-1][0] if probes and probes[-1][1] else None
            assert single.key == matched == d.key, ip
            assert single is d  # the same record gives the same (cached) decision
            kinds.add((d.rule or "").count(".") if d.rule is not None else -1)
        assert {0, 1, 3} <= kinds, kinds  # default rule, 10. / 127., a.b.c. nets all seen
        for ip in rng.sample(ips, min(N_REFERENCE, len(ips))):
            env = {"TCPREMOTEIP": ip}
            r = refs.run([refs.tcprulescheck_v6, str(cdb)], env=env)
            assert r.returncode == 0 and not r.timed_out, (ip, r)
            assert r.stdout == tcprulescheck_output(rules.check(ip, exact=True)), ip
