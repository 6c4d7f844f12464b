"""``cdbrules explain``: on random rule sets and connections, the decision is
``Rules.check``'s on the compiled file, the line named is the first line that wrote the
matched key, the keys listed are tcpserver's lookup order (docs/lookup.md, "The lookup
order", written out here again as a model), and the lines that lose are exactly the other lines that wrote
the matched key or a key tried later.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import cdbrules
from cdbrules import Rules, RulesSyntaxError
from cdbrules.explainer import explain
from helpers import EXAMPLES, run_cli

N_CASES = int(os.environ.get("CDBRULES_EXPLAIN_N", "2000"))


def model_probes(ip: str, host: Optional[str], info: Optional[str]) -> List[str]:
    out = []
    if info is not None:
        out.append(f"{info}@{ip}")
        if host is not None:
            out.append(f"{info}@={host}")
    out.append(ip)
    if host is not None:
        out.append(f"={host}")
    out += [ip[:n] for n in range(len(ip), 0, -1) if ip[n - 1] in ".:"]
    if host is not None:
        out += [f"={host[i:]}" for i, c in enumerate(host) if c == "."] + ["="]
    out.append("")
    return out


IPS = ["10.0.0.1", "10.0.0.2", "10.0.1.7", "10.1.2.3", "192.0.2.1", "2001:db8::1", "2001:db8:1::5", "::1"]
HOSTS = [None, "a.example.com", "b.example.com", "example.org", ""]
INFOS = [None, "joe", ""]


def random_rules(rng: random.Random) -> Tuple[bytes, Dict[str, List[int]]]:
    """Rules text, and for each key the lines (from 1) that write it, in order."""
    keys_pool = (["10.0.0.1", "10.0.0.", "10.0.", "10.", "", "=", "=a.example.com", "=.example.com", "=.com",
                  "joe@10.0.0.1", "joe@=a.example.com", "@10.0.0.2", "2001:db8::1", "2001:db8:", "2001:",
                  ":", "::", "::1", "192.0.2.1", "=example.org"])
    lines: List[bytes] = []
    writes: Dict[str, List[int]] = {}
    for n in range(1, rng.randint(1, 14) + 1):
        if rng.random() < 0.1:
            lines.append(b"# a comment")
            continue
        instr = rng.choice(["allow", "deny", 'allow,RELAYCLIENT=""', 'deny,X="1"', 'allow,A="%d"' % n])
        if rng.random() < 0.15:
            lo = rng.randint(0, 3)
            hi = rng.randint(max(lo - 1, 0), 3)
            text = f"10.0.0.{lo}-{hi}"
            keys = [f"10.0.0.{v}" for v in range(lo, hi + 1)]
        else:
            text = rng.choice(keys_pool)
            keys = [text]
        lines.append(f"{text}:{instr}".encode())  # (2001:db8: is written 2001:db8::allow)
        for k in keys:
            writes.setdefault(k, []).append(n)
    return b"".join(x + b"\n" for x in lines), writes


def test_property_against_compiled_file(tmp_path: Path) -> None:
    rng = random.Random(9)
    matched = unmatched = lost = 0
    for case in range(N_CASES):
        if case % 10 == 0:
            text, writes = random_rules(rng)
            cdbrules.compile(io.BytesIO(text), tmp_path / "r.cdb", tmp_path / "r.tmp")
            rules = Rules(tmp_path / "r.cdb", reload_interval=None)
        ip, host, info = rng.choice(IPS), rng.choice(HOSTS), rng.choice(INFOS)
        x = explain(text, ip, host, info)
        assert x.decision == rules.check(ip, host, info, exact=True)  # explain uses the text as given
        tried = model_probes(ip, host, info)
        hit = next((i for i, k in enumerate(tried) if k in writes), None)
        if hit is None:
            assert x.line is None and x.decision.rule is None
            assert [p.key.decode() for p in x.probes] == tried
            assert x.lost == []
            unmatched += 1
            continue
        key = tried[hit]
        assert x.decision.rule == key
        assert [p.key.decode() for p in x.probes] == tried[:hit + 1]
        assert x.line is not None and x.line.line == writes[key][0] and x.line.path == "-"
        assert x.line.text == text.split(b"\n")[x.line.line - 1]
        for p in x.probes:
            assert [o.line for o in p.lines] == writes.get(p.key.decode(), [])
        expect_lost = [(n, key, "shadowed") for n in writes[key][1:]]
        expect_lost += [(n, k, "later") for k in tried[hit + 1:] if k in writes for n in writes[k]]
        assert [(o.line, k.decode(), why) for o, k, why in x.lost] == expect_lost
        matched += 1
        lost += bool(x.lost)
    assert matched > N_CASES // 3 and unmatched > N_CASES // 50 and lost > N_CASES // 10


def test_names_the_file_and_several_sources(tmp_path: Path) -> None:
    a, b = tmp_path / "a.rules", tmp_path / "b.rules"
    a.write_bytes(b"# first\n1.2.3.:deny\n")
    b.write_bytes(b"1.2.3.4:allow\n1.2.3.:allow")  # no final newline: the next source still starts a line
    x = explain([a, b], "1.2.3.4")
    assert (x.line.path, x.line.line) == (str(b), 1)  # type: ignore[union-attr]
    assert [(o.path, o.line, why) for o, _, why in x.lost] == [(str(a), 2, "later"), (str(b), 2, "later")]
    b.write_bytes(b"# x\n1.2.3.4:bogus\n")
    with pytest.raises(RulesSyntaxError) as info:
        explain([a, b], "1.2.3.4")
    assert (info.value.source, info.value.lineno) == (str(b), 2)


def test_cidr_and_lists(tmp_path: Path) -> None:
    rules, drop = tmp_path / "rules", tmp_path / "drop.txt"
    rules.write_bytes(b"10.0.0.0/8:deny\n10.1.0.0/16:allow,RELAYCLIENT=\"\"\n:allow\n")
    drop.write_bytes(b"# blocked\n10.1.2.0/24\n")
    for ip, line, lost in [("10.1.9.9", (str(rules), 2), [(str(rules), 1), (str(rules), 3)]),
                           ("10.9.9.9", (str(rules), 1), [(str(rules), 3)]),
                           ("10.1.2.3", (str(drop), 2), [(str(rules), 2), (str(rules), 1), (str(rules), 3)])]:
        x = explain(rules, ip, cidr=True, lists=[(drop, "deny")])
        cdbrules.compile(rules, tmp_path / "c.cdb", cidr=True, lists=[(drop, "deny")])
        with Rules(tmp_path / "c.cdb", reload_interval=None) as r:
            assert x.decision == r.check(ip)
        assert x.line is not None and (x.line.path, x.line.line) == line, ip
        assert [(o.path, o.line) for o, _, _ in x.lost] == lost, ip
    rc, out, err = run_cli(["explain", "--cidr", "--list", str(drop), "deny", str(rules), "--", "10.1.2.3"])
    assert (rc, err) == (0, "") and out.startswith(f"deny\ndecided by {drop}:2: 10.1.2.0/24\nkey: 10.1.2.\n".encode())


def test_cli(tmp_path: Path) -> None:
    smtp = str(EXAMPLES / "tcp6.smtp")
    rc, out, err = run_cli(["explain", smtp, "--", "2001:db8::5", "a.dyn.example.net"])
    assert (rc, err) == (0, "")
    text = out.decode()
    assert text.startswith(f"deny\ndecided by {smtp}:13: 2001:db8:::deny\nkey: 2001:db8::\n")
    assert "  2001:db8::5  " in text and f"{smtp}:19: =.dyn.example.net:deny" in text
    rc, out, err = run_cli(["explain", "--json", str(EXAMPLES / "tcp.smtp"), "127.0.0.1"])
    obj = json.loads(out)
    assert rc == 0 and obj["line"]["line"] == 1 and obj["env"]["RELAYCLIENT"] == ""
    assert [p["key"] for p in obj["probes"]] == ["127.0.0.1", "127.0.0.", "127.0.", "127."]
    rc, out, err = run_cli(["explain", smtp])
    assert rc == 100 and "expected RULES... -- IP" in err
    bad = tmp_path / "bad"
    bad.write_bytes(b"1.2.3.4:bogus\n")
    rc, out, err = run_cli(["explain", str(bad), "--", "1.2.3.4"])
    assert rc == 100 and f"{bad}:1:" in err
    rc, out, err = run_cli(["explain", str(tmp_path / "none"), "--", "1.2.3.4"])
    assert rc == 111 and "file does not exist" in err
