"""``cdbrules diff``: on random pairs of rule sets every reported change is real and every
real change is reported.

What is real is found by probing both compiled files: every key of either file is looked
up (its first record, as tcpserver reads it) and the two decisions compared; and for
``--ip`` every client is asked of the real tcprulescheck (IPv6 build) on both files.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cdbrules
from cdbrules import Decision, Reader
from cdbrules.rulesdiff import diff, same
from helpers import run_cli

N_PAIRS = int(os.environ.get("CDBRULES_DIFF_PAIRS", "150"))

ENVS = [b"", b',RELAYCLIENT=""', b',RBLSMTPD="-no"', b',RELAYCLIENT="",QMAILQUEUE="/q"', b',A="1",A="2"', b',A="2"']


def _key(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b"10.0.%d.%d" % (rng.randrange(2), rng.randrange(4))
    if kind == 1:
        return b"10.0.%d." % rng.randrange(2)
    if kind == 2:
        return rng.choice([b"10.", b"10.0.", b""])
    if kind == 3:
        return rng.choice([b"=a.example", b"=.example", b"="])
    if kind == 4:
        return b"10.0.%d.%d-%d" % (rng.randrange(2), rng.randrange(3), rng.randrange(4))
    return rng.choice([b"2001:db8:", b"2001:db8::1"])


def _instr(rng: random.Random) -> bytes:
    return rng.choice([b"allow", b"deny"]) + rng.choice(ENVS)


def random_pair(rng: random.Random) -> Tuple[bytes, bytes]:
    old = [(_key(rng), _instr(rng)) for _ in range(rng.randint(0, 12))]
    new = list(old)
    for _ in range(rng.randint(0, 4)):
        op = rng.randrange(4)
        if op == 0 and new:
            del new[rng.randrange(len(new))]
        elif op == 1:
            new.insert(rng.randint(0, len(new)), (_key(rng), _instr(rng)))
        elif op == 2 and new:
            i = rng.randrange(len(new))
            new[i] = (new[i][0], _instr(rng))
        elif op == 3 and len(new) > 1:
            rng.shuffle(new)
    return tuple(b"".join(k + b":" + i + b"\n" for k, i in side) for side in (old, new))  # type: ignore[return-value]


def first_decision(cdb: Path, key: bytes) -> Optional[Decision]:
    with Reader(cdb) as r:
        data = r.get(key)
    return None if data is None else Decision.from_record(key, data)


def keys_of(cdb: Path) -> List[bytes]:
    with Reader(cdb) as r:
        return list(dict.fromkeys(r.keys()))


def compiled(text: bytes, path: Path) -> Path:
    cdbrules.compile(io.BytesIO(text), path, str(path) + ".tmp")
    return path


def test_random_pairs_by_probing(tmp_path: Path) -> None:
    rng = random.Random(4242)
    seen = {"added": 0, "removed": 0, "changed": 0, "same": 0}
    for n in range(N_PAIRS):
        old_text, new_text = random_pair(rng)
        a, b = compiled(old_text, tmp_path / "a.cdb"), compiled(new_text, tmp_path / "b.cdb")
        # each side given as a compiled file or as the text itself
        (tmp_path / "a.rules").write_bytes(old_text)
        (tmp_path / "b.rules").write_bytes(new_text)
        old_arg = a if n % 2 else tmp_path / "a.rules"
        new_arg = b if n % 3 else tmp_path / "b.rules"
        reported = {c.key: c for c in diff(old_arg, new_arg).changes}
        for key in dict.fromkeys(keys_of(a) + keys_of(b)):
            was, now = first_decision(a, key), first_decision(b, key)
            real = (was is None) != (now is None) or (was is not None and now is not None and not same(was, now))
            assert (key in reported) == real, (old_text, new_text, key)
            if real:
                c = reported[key]
                assert (c.old is None, c.new is None) == (was is None, now is None)
                seen[c.kind] += 1
            else:
                seen["same"] += 1
        assert set(reported) <= set(keys_of(a)) | set(keys_of(b))
    assert min(seen.values()) > N_PAIRS // 15, seen


def tcprulescheck_decision(refs, cdb: Path, ip: str) -> Tuple[bool, Dict[bytes, bytes]]:  # type: ignore[no-untyped-def]
    r = refs.run([refs.tcprulescheck_v6, str(cdb)], env={"TCPREMOTEIP": ip})
    assert r.returncode == 0, r
    env: Dict[bytes, bytes] = {}
    for line in r.stdout.splitlines():
        if line.startswith(b"set environment variable "):
            name, eq, value = line[len(b"set environment variable "):].partition(b"=")
            if eq:
                env[name] = value
    # tcprulescheck stops at a deny and does not print the variables after it; tcpserver
    # never runs the program then, so a denied client's variables do not matter
    allowed = not r.stdout.endswith(b"deny connection\n")
    return allowed, (env if allowed else {})


def test_ips_against_tcprulescheck(refs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(77)
    ips = ["10.0.0.0", "10.0.0.1", "10.0.1.2", "10.0.1.3", "10.9.9.9", "192.0.2.1", "2001:db8::1", "2001:db8::2"]
    changed = unchanged = 0
    for _ in range(max(10, N_PAIRS // 5)):
        old_text, new_text = random_pair(rng)
        a, b = compiled(old_text, tmp_path / "a.cdb"), compiled(new_text, tmp_path / "b.cdb")
        result = diff(a, b, ips=ips)
        for c in result.ips:
            before, after = tcprulescheck_decision(refs, a, c.ip), tcprulescheck_decision(refs, b, c.ip)
            expect = before != after
            assert c.changed == expect, (old_text, new_text, c.ip)
            changed += expect
            unchanged += not expect
    assert changed > 5 and unchanged > 5


def test_cli(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b'127.:allow,RELAYCLIENT=""\n1.2.3.4:deny\n5.6.7.8:allow\n')
    (tmp_path / "new").write_bytes(b'127.:allow,RELAYCLIENT="",QMAILQUEUE="/x"\n1.2.3.4:allow\n9.9.9.9:deny\n')
    compiled((tmp_path / "old").read_bytes(), tmp_path / "old.cdb")
    old, new, oldc = str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "old.cdb")
    rc, out, err = run_cli(["diff", oldc, new])
    assert (rc, err) == (1, "")
    assert out.decode() == (f"--- {oldc}\n+++ {new}\n~ 127.: QMAILQUEUE unset -> \"/x\"\n~ 1.2.3.4: deny -> allow\n"
                            "- 5.6.7.8:allow\n+ 9.9.9.9:deny\n")
    assert run_cli(["diff", oldc, old]) == (0, b"", "")
    rc, out, _ = run_cli(["diff", old, new, "--ip", "1.2.3.4", "5.6.7.8", "8.8.8.8"])
    assert rc == 1 and out == b'1.2.3.4: deny (rule "1.2.3.4") -> allow (rule "1.2.3.4")\n'
    rc, out, _ = run_cli(["diff", old, new, "--ip", "8.8.8.8"])
    assert (rc, out) == (0, b"")
    rc, out, _ = run_cli(["diff", "--json", old, new])
    obj = json.loads(out)
    assert rc == 1 and [c["kind"] for c in obj["changes"]] == ["changed", "changed", "removed", "added"]
    (tmp_path / "nets").write_bytes(b"1.2.3.0/24:deny\n")
    rc, out, _ = run_cli(["diff", "--cidr", old, str(tmp_path / "nets"), "--ip", "1.2.3.9", "1.2.3.4"])
    assert rc == 1 and out == b'1.2.3.9: allow (no rule) -> deny (rule "1.2.3.")\n'
    (tmp_path / "bad").write_bytes(b"1.2.3.4:bogus\n")
    rc, out, err = run_cli(["diff", old, str(tmp_path / "bad")])
    assert rc == 100 and "bad:1:" in err
