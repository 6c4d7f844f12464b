"""An independent model of ``compile --cidr``, in plain :mod:`ipaddress`, and random rule sets.

The model knows nothing of keys: a rule is a set of addresses (an IPv4 or IPv6 network, a
classic IPv4 key as the network it names) or, for a classic IPv6 key, the textual prefix
test tcpserver applies to the printed address.  The winner for a client is the rule with
the longest network holding it, then the first line; the default rule ``:`` only when no
other rule holds it.  Every rule sets ``R`` to its index, so a decision names its rule.
"""

from __future__ import annotations

import ipaddress
import random
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from cdbrules import tcpserver_ip

Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Addr = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class Entry(NamedTuple):
    index: int
    net: Optional[Net]   # the addresses it holds (None: a textual IPv6 key, or the default)
    text: Optional[str]  # a classic IPv6 key, matched as tcpserver does
    rank: int            # its length
    deny: bool


def v6_groups_nonzero_net(rng: random.Random, base: ipaddress.IPv6Network, length: int) -> Optional[ipaddress.IPv6Network]:
    """A random network of `length` inside base whose groups before the last group of its
    prefix are non-zero (the exact ones); None if base forces a zero there."""
    k = (length + 15) // 16
    v = int(base.network_address) | rng.getrandbits(128 - base.prefixlen) if base.prefixlen < 128 else int(base.network_address)
    groups = [(v >> (112 - 16 * g)) & 0xFFFF for g in range(8)]
    for g in range(k - 1):
        if groups[g] == 0:
            if 16 * (g + 1) <= base.prefixlen:
                return None
            groups[g] = rng.randint(1, 0xFFFF) if 16 * g >= base.prefixlen else groups[g] | 1
    # zero groups in the host part, so the printed '::' moves about
    for g in range(k, 8):
        if rng.random() < 0.5:
            groups[g] = 0
    v = 0
    for g in groups:
        v = v << 16 | g
    net = ipaddress.IPv6Network((v, length), strict=False)
    if not net.subnet_of(base):
        return None
    if length > 112:
        last = ipaddress.IPv6Address(int(net.network_address) & ~0xFFFF)
        if tcpserver_ip(last).endswith("::") and (int(net.network_address) & 0xFFFF) == 0:
            return None  # inexact: the printed address ends in '::'
    return net


def random_rules(rng: random.Random, n: int, v6: bool = True) -> Tuple[bytes, List[Entry]]:
    """Rules text of n rules mixing networks, classic keys, ranges, IPv6 and ::ffff: (with
    v6 False: IPv4 only, networks written ::ffff:a.b.c.d/LEN included)."""
    bases4 = [ipaddress.IPv4Network((rng.getrandbits(32), rng.choice([8, 12, 16, 20])), strict=False)
              for _ in range(rng.randint(1, 3))]
    bases6 = []
    while len(bases6) < rng.randint(1, 2):
        b = v6_groups_nonzero_net(rng, ipaddress.IPv6Network("2000::/3"), rng.choice([16, 24, 32, 40, 48]))
        if b is not None:
            bases6.append(b)
    lines: List[bytes] = []
    entries: List[Entry] = []
    for i in range(n):
        deny = rng.random() < 0.3
        kind = rng.random()
        if not v6 and 0.5 <= kind < 0.8 or not v6 and 0.88 <= kind < 0.96:
            kind = rng.random() * 0.5
        key: str
        if kind < 0.35:  # an IPv4 network
            base = rng.choice(bases4)
            length = rng.randint(base.prefixlen, 32)
            net: Net = ipaddress.IPv4Network((int(base.network_address) | rng.getrandbits(32 - base.prefixlen), length),
                                             strict=False)
            key = f"{net.network_address}/{length}" if rng.random() < 0.9 or length != 32 else str(net.network_address)
            if length == 32 and "/" not in key:
                pass  # a classic address
            entries.append(Entry(i, net, None, length, deny))
        elif kind < 0.5:  # a classic IPv4 key: a.b.c., a.b., a., an address, or a range
            base = rng.choice(bases4)
            a = ipaddress.IPv4Address(int(base.network_address) | rng.getrandbits(32 - base.prefixlen))
            o = str(a).split(".")
            c = rng.choice([1, 2, 3, 4, 4])
            if rng.random() < 0.3:  # a range in the last octet written
                lo = rng.randint(0, 255)
                hi = min(255, lo + rng.randint(0, 6))
                head = o[:c - 1]
                key = ".".join(head + [f"{lo}-{hi}"]) + ("." if c < 4 else "")
                for v in range(lo, hi + 1):
                    net = ipaddress.IPv4Network((".".join(head + [str(v)] + ["0"] * (4 - c)), 8 * c))
                    entries.append(Entry(i, net, None, 8 * c, deny))
            else:
                key = ".".join(o[:c]) + ("." if c < 4 else "")
                net = ipaddress.IPv4Network((".".join(o[:c] + ["0"] * (4 - c)), 8 * c))
                entries.append(Entry(i, net, None, 8 * c, deny))
        elif kind < 0.8:  # an IPv6 network, in any spelling
            base6 = rng.choice(bases6)
            if rng.random() < 0.5:
                length = 16 * rng.randint(max(1, (base6.prefixlen + 15) // 16), 8)
            else:
                length = rng.randint(base6.prefixlen, 128)
                if length % 16 and 16 - length % 16 > 6:  # keep key counts small: 2^(16 - LEN mod 16)
                    length = 16 * ((length + 15) // 16)
            n6 = v6_groups_nonzero_net(rng, base6, length)
            if n6 is None:
                continue
            addr = n6.network_address
            spelled = rng.choice([addr.compressed, addr.exploded, addr.exploded.upper(), tcpserver_ip(addr)])
            key = f"{spelled}/{length}"
            entries.append(Entry(i, n6, None, length, deny))
        elif kind < 0.88:  # an IPv4 network written ::ffff:a.b.c.d/LEN
            base = rng.choice(bases4)
            length = rng.randint(base.prefixlen, 32)
            net = ipaddress.IPv4Network((int(base.network_address) | rng.getrandbits(32 - base.prefixlen), length),
                                        strict=False)
            key = f"::ffff:{net.network_address}/{96 + length}"
            entries.append(Entry(i, net, None, length, deny))
        elif kind < 0.96:  # a classic IPv6 prefix key, as tcpserver prints: "g0:g1:" or "g0:g1::"
            base6 = rng.choice(bases6)
            n6 = v6_groups_nonzero_net(rng, base6, 16 * rng.randint(1, 4))
            if n6 is None:
                continue
            groups = [f"{(int(n6.network_address) >> (112 - 16 * g)) & 0xFFFF:x}" for g in range(n6.prefixlen // 16)]
            if groups[-1] == "0" and rng.random() < 0.5:
                key = ":".join(groups[:-1]) + "::"
            else:
                key = ":".join(groups) + ":"
            entries.append(Entry(i, None, key, n6.prefixlen, deny))
        else:
            key = ""
            entries.append(Entry(i, None, None, -1, deny))
        lines.append(f"{key}:{'deny' if deny else 'allow'},R=\"{i}\"".encode())
    return b"\n".join(lines) + b"\n", entries


def winner(entries: Sequence[Entry], addr: Addr) -> Optional[int]:
    """The index of the rule tcpserver applies to a client at addr, by the model."""
    text = tcpserver_ip(addr)
    best: Optional[Tuple[int, int]] = None
    for e in entries:
        if e.rank < 0:
            hit = True
        elif e.net is not None:
            hit = e.net.version == addr.version and addr in e.net
        else:
            assert e.text is not None
            hit = addr.version == 6 and (text == e.text or (e.text.endswith(":") and text.startswith(e.text)))
        if hit and (best is None or (e.rank, -e.index) > best):
            best = (e.rank, -e.index)
    return None if best is None else -best[1]


def probes(rng: random.Random, entries: Sequence[Entry], extra: int = 10) -> List[Addr]:
    """Addresses in and near every network: its ends, just outside them, and random ones."""
    out: List[Addr] = []
    for e in entries:
        net = e.net
        if net is None and e.text is not None:
            head = e.text.rstrip(":").split(":")
            groups = [int(g, 16) for g in head if g] + [0] * (8 - len([g for g in head if g]))
            v = 0
            for g in groups[:8]:
                v = v << 16 | g
            net = ipaddress.IPv6Network((v, 16 * len([g for g in head if g]) or 16), strict=False)
        if net is None:
            continue
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        vals = [first, last, rng.randint(first, last)]
        if first > 0:
            vals.append(first - 1)
        if last < top:
            vals.append(last + 1)
        cls = type(net.network_address)
        for v in vals:
            if net.version == 6 and rng.random() < 0.5:  # zero groups in the host part
                for g in range(8):
                    if 16 * (8 - g) <= 128 - net.prefixlen and rng.random() < 0.5:
                        v &= ~(0xFFFF << (16 * (7 - g)))
                v = max(v, first) if first <= v <= last else v
            out.append(cls(v))
    for _ in range(extra):
        out.append(ipaddress.IPv4Address(rng.getrandbits(32)))
    return [a for a in out if not (a.version == 6 and a.ipv4_mapped is not None)]
