"""``tcpserver_ip``: the TCPREMOTEIP text of the IPv6 build of tcpserver
(docs/lookup.md, "How tcpserver writes the client's address").

Checked three ways: every address the docs list; an independent model of the format written
from the docs' words, on random addresses (hypothesis); and the real v6 tcpserver, run in a
network namespace of its own where the addresses are bound on the loopback interface and used
as client sources.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdbrules import tcpserver_ip
from helpers import lacking

HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))  # examples per property

# (address, what tcpserver prints): the table of docs/lookup.md, observed live
DOC_TABLE = [
    ("2001:db8:0:1:1:1:1:1", "2001:db8::1:1:1:1:1"),
    ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"),
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
    ("::1", "::1"),
    ("::2", "::2"),
    ("fd00::2", "fd00::2"),
]


@pytest.mark.parametrize("address,text", DOC_TABLE)
def test_documented_table(address: str, text: str) -> None:
    assert tcpserver_ip(address) == text
    assert tcpserver_ip(address, forcev6=True) == text
    assert tcpserver_ip(ipaddress.IPv6Address(address)) == text
    assert tcpserver_ip((address, 25, 0, 0)) == text  # an AF_INET6 socket address
    assert tcpserver_ip(ipaddress.IPv6Address(address).packed) == text


def test_ipv4_and_mapped() -> None:
    assert tcpserver_ip("127.0.0.1") == "127.0.0.1"
    assert tcpserver_ip(("192.0.2.1", 4000)) == "192.0.2.1"
    assert tcpserver_ip("::ffff:127.0.0.1") == "127.0.0.1"  # a v4 client on a dual-stack socket
    assert tcpserver_ip(("::ffff:10.0.0.255", 25, 0, 0)) == "10.0.0.255"
    assert tcpserver_ip("::ffff:127.0.0.1", forcev6=True) == "::ffff:127.0.0.1"  # tcpserver -6
    assert tcpserver_ip("127.0.0.1", forcev6=True) == "::ffff:127.0.0.1"
    assert tcpserver_ip(ipaddress.IPv4Address("1.2.3.4")) == "1.2.3.4"
    assert tcpserver_ip(0x01020304) == "1.2.3.4"
    assert tcpserver_ip("::ffff:0.0.0.0", forcev6=True) == "::ffff:0.0.0.0"
    # only ::ffff:0:0/96 gets a dotted quad: the IPv4-compatible ::1.2.3.4 is plain hex
    assert tcpserver_ip("::1.2.3.4") == "::102:304"


def test_zone_and_edges() -> None:
    assert tcpserver_ip("fe80::1%lo") == "fe80::1"  # no zone in TCPREMOTEIP
    assert tcpserver_ip(("fe80::1%eth0", 25, 0, 2)) == "fe80::1"
    assert tcpserver_ip("::") == "::"
    assert tcpserver_ip("1::") == "1::"
    assert tcpserver_ip("0:1::") == "0:1::"  # the longer run wins
    assert tcpserver_ip("1:0:1:0:1:0:1:0") == "1::1:0:1:0:1:0"  # equal runs: the first
    assert tcpserver_ip("ABCD:EF01::") == "abcd:ef01::"
    assert tcpserver_ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


@pytest.mark.parametrize("bad", ["", "1.2.3", "2001:db8::1::2", "example.com", ()])
def test_bad_addresses(bad: object) -> None:
    with pytest.raises(ValueError):
        tcpserver_ip(bad)  # type: ignore[arg-type]


def model(packed: bytes, forcev6: bool = False) -> str:
    """The format as docs/lookup.md words it, written independently of the C formatter."""
    if packed[:12] == b"\0" * 10 + b"\xff\xff" and not forcev6:
        return ".".join(str(b) for b in packed[12:])
    mapped = packed[:12] == b"\0" * 10 + b"\xff\xff"
    groups = [packed[i] << 8 | packed[i + 1] for i in range(0, 12 if mapped else 16, 2)]
    best, best_len, i = -1, 0, 0
    while i < len(groups):
        j = i
        while j < len(groups) and groups[j] == 0:
            j += 1
        if j - i > best_len:
            best, best_len = i, j - i
        i = max(j, i + 1)
    hexes = [format(g, "x") for g in groups]
    if best >= 0:
        text = ":".join(hexes[:best]) + "::" + ":".join(hexes[best + best_len:])
    else:
        text = ":".join(hexes)
    if mapped:
        text += ("" if text.endswith(":") else ":") + ".".join(str(b) for b in packed[12:])
    return text


GROUP = st.sampled_from([0, 0, 0, 1, 0xdb8, 0xffff]) | st.integers(0, 0xFFFF)


@settings(max_examples=2 * HYPOTHESIS_N, deadline=None, derandomize=True)
@given(groups=st.lists(GROUP, min_size=8, max_size=8), forcev6=st.booleans())
def test_matches_the_model(groups: List[int], forcev6: bool) -> None:
    packed = b"".join(g.to_bytes(2, "big") for g in groups)
    text = tcpserver_ip(packed, forcev6=forcev6)
    assert text == model(packed, forcev6)
    assert ipaddress.ip_address(text) == (ipaddress.IPv6Address(packed) if ":" in text
                                          else ipaddress.IPv6Address(packed).ipv4_mapped)


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True)
@given(quad=st.binary(min_size=4, max_size=4), forcev6=st.booleans())
def test_mapped_matches_the_model(quad: bytes, forcev6: bool) -> None:
    packed = b"\0" * 10 + b"\xff\xff" + quad
    assert tcpserver_ip(packed, forcev6=forcev6) == model(packed, forcev6)
    assert tcpserver_ip(ipaddress.IPv4Address(quad), forcev6=forcev6) == model(packed, forcev6)


# -- live: the real v6 tcpserver, in a network namespace of our own -------------------------
HELPER = r'''
import json, os, socket, subprocess, sys, time
tcpserver, addrs = sys.argv[1], json.loads(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
for a in addrs:
    subprocess.run(["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"], check=True)
prog = ["/bin/sh", "-c", 'printf "%s %s" "$TCPREMOTEIP" "$PROTO"']
servers = [subprocess.Popen([tcpserver, "-H", "-R", "-l0", "0", "7001"] + prog),
           subprocess.Popen([tcpserver, "-H", "-R", "-l0", "-6", "0", "7002"] + prog)]
def ask(family, dst, src, port):
    for _ in range(100):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(10)
            s.bind((src, 0))
            s.connect((dst, port))
            break
        except OSError:
            s.close()
            time.sleep(0.05)
    out = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
    s.close()
    return out.decode()
res = {a: ask(socket.AF_INET6, "::1", a, 7001) for a in addrs}
res["v4"] = ask(socket.AF_INET, "127.0.0.1", "127.0.0.1", 7001)
res["v4-forcev6"] = ask(socket.AF_INET, "127.0.0.1", "127.0.0.1", 7002)
for p in servers:
    p.kill()
print(json.dumps(res))
'''


def test_live_v6_tcpserver(refs, tmp_path: Path) -> None:
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    # root gets a network namespace of its own; anyone else, one in a user namespace of
    # their own (where the kernel allows those: Ubuntu's AppArmor needs
    # kernel.apparmor_restrict_unprivileged_userns=0)
    netns = [unshare or "unshare", "-n"] if os.geteuid() == 0 else [unshare or "unshare", "-r", "-n"]
    probe = subprocess.run(netns + ["true"], capture_output=True) if unshare else None
    if not unshare or not os.path.exists(ip) or probe is None or probe.returncode != 0:
        lacking("unshare -n (root, or -r -n where user namespaces are allowed) and iproute2's ip, "
                "to bind test addresses in a private network namespace")
    import random
    rng = random.Random(3)
    addrs = [a for a, _ in DOC_TABLE if a != "::1"]
    for _ in range(24):  # 2001:db8::/32 with zero runs of every length and place
        g = [0x2001, 0xdb8] + [rng.choice([0, 0, 1, rng.randrange(1 << 16)]) for _ in range(6)]
        addrs.append(str(ipaddress.IPv6Address(b"".join(x.to_bytes(2, "big") for x in g))))
    addrs = sorted(set(addrs) - {"2001:db8::"})
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)
    tcpserver = str(Path(refs.tcprules_v6).parent / "tcpserver")
    env = {"PATH": f"{os.path.dirname(ip)}:/usr/bin:/bin"}
    r = subprocess.run(netns + [sys.executable, str(helper), tcpserver, json.dumps(addrs)],
                       capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    seen = json.loads(r.stdout)
    for a in addrs:
        assert seen[a] == f"{tcpserver_ip(a)} TCP6", (a, seen[a])
    assert seen["v4"] == f"{tcpserver_ip(('::ffff:127.0.0.1', 0, 0, 0))} TCP"
    assert seen["v4-forcev6"] == f"{tcpserver_ip('::ffff:127.0.0.1', forcev6=True)} TCP6"
    # the single-zero-group case really differs from Python's own text, and was checked live
    assert any(tcpserver_ip(a) != ipaddress.IPv6Address(a).compressed for a in addrs)
