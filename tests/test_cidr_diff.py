"""``compile --cidr`` checked by the real programs.

* Files compiled with ``--cidr`` from random rule sets (tests/cidr_model.py: overlapping
  IPv4 and IPv6 networks, classic keys, ranges, ``::ffff:`` networks) are queried with both
  Debian builds of ``tcprulescheck``: IPv4 clients in both, IPv6 clients in the IPv6 build,
  with ``TCPREMOTEIP`` as tcpserver prints it.  Output must equal ``cdbrules check``'s, and
  the rule it names must be the model's winner.
* ``cdbrules expand`` of the same rules, compiled by the real ``tcprules`` (the IPv6 build;
  the IPv4 build too when the rules hold no IPv6 key), gives the file ``compile --cidr``
  writes, byte for byte.

Size: ``CDBRULES_CIDR_DIFF_SETS`` rule sets (default 24) of about 60 queries each.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

from cdbrules import Rules, compile, tcpserver_ip
from cdbrules.commands.check import tcprulescheck_output
from cdbrules.compiler import expand

from cidr_model import probes, random_rules, winner
from test_check_diff import assert_same, reference_outputs

SETS = int(os.environ.get("CDBRULES_CIDR_DIFF_SETS", "24"))


def test_cidr_files_answer_the_same_in_tcprulescheck(refs, tmp_path: Path) -> None:
    rng = random.Random(31)
    counted = {"v4 queries": 0, "v6 queries": 0, "identical expand files": 0, "v4 build files": 0}
    for n in range(SETS):
        d = tmp_path / f"s{n}"
        d.mkdir()
        text, entries = random_rules(rng, rng.choice([5, 15, 40]), v6=n % 3 != 0)
        cdb = d / "cidr.cdb"
        compile(io.BytesIO(text), cdb, cidr=True)
        addrs = probes(rng, entries, 6)
        rng.shuffle(addrs)
        addrs = addrs[:60]
        qs = [(tcpserver_ip(a).encode(), None, None) for a in addrs]
        with Rules(cdb, reload_interval=None) as rules:
            got = []
            for a, q in zip(addrs, qs):
                dec = rules.check(q[0])
                want = winner(entries, a)
                assert dec.env.get("R") == (None if want is None else str(want)), (a, text)
                got.append((tcprulescheck_output(dec), 0))
        want6 = reference_outputs(refs, refs.tcprulescheck_v6, cdb, qs, d)
        assert_same(f"v6 tcprulescheck, set {n}:\n{text.decode()}", qs, want6, got)
        sel = [i for i, q in enumerate(qs) if b":" not in q[0]]
        want4 = reference_outputs(refs, refs.tcprulescheck_v4, cdb, [qs[i] for i in sel], d)
        assert_same(f"v4 tcprulescheck, set {n}:\n{text.decode()}", [qs[i] for i in sel], want4, [got[i] for i in sel])
        counted["v4 queries"] += len(sel) * 2
        counted["v6 queries"] += len(qs) - len(sel)
        # expand | tcprules: the same bytes
        out = io.BytesIO()
        expand(io.BytesIO(text), out)
        builds = [refs.tcprules_v6]
        if b":" not in out.getvalue().replace(b":allow", b"").replace(b":deny", b""):
            builds.append(refs.tcprules_v4)
            counted["v4 build files"] += 1
        for prog in builds:
            theirs = d / "tcprules.cdb"
            r = refs.run([prog, str(theirs), str(d / "tcprules.tmp")], stdin=out.getvalue(), timeout=30)
            assert not r.timed_out and r.returncode == 0, r
            assert theirs.read_bytes() == cdb.read_bytes(), f"{prog}: expand | tcprules differs, set {n}"
            counted["identical expand files"] += 1
    print(f"cidr differential: {counted}")
    assert counted["v6 queries"] > SETS * 5 and counted["v4 queries"] > SETS * 10
    assert counted["v4 build files"] >= SETS // 4


def test_drop_example_expand_through_tcprules(refs, tmp_path: Path) -> None:
    """The README's example: expand | the real tcprules (IPv6 build) = compile --cidr."""
    from test_cidr import DROP_INSTRUCTION, EXAMPLES

    lists = [(EXAMPLES / "drop.txt", DROP_INSTRUCTION)]
    st = compile(EXAMPLES / "drop.smtp", tmp_path / "c.cdb", lists=lists)
    out = io.BytesIO()
    expand(EXAMPLES / "drop.smtp", out, lists=lists)
    r = refs.run([refs.tcprules_v6, str(tmp_path / "t.cdb"), str(tmp_path / "t.tmp")], stdin=out.getvalue(), timeout=30)
    assert r.returncode == 0, r
    assert (tmp_path / "t.cdb").read_bytes() == (tmp_path / "c.cdb").read_bytes() and st.keys > 4000
