"""Deterministic benchmark data, shared by bench/conftest.py and bench/decompose.py.

Everything here is a pure function of its arguments and a fixed seed, so every peer in a
run, and every run on every machine, sees the same bytes.  Nothing is timed here.

* key/value records: keys ``b'key%d'`` (0 <= i < n), values 16-64 bytes of [A-Za-z0-9],
  the usual shape of cdb key/value benchmarks (bench/README.md, "Method");
* lookup keys: hits are fresh bytes objects (not the ones a writer or a dict holds), misses
  are ``b'key%d'`` with i in [n, 10n): the same shape, never present;
* rules: a 1k-rule tcp.smtp-like file, a block list of distinct /24 prefixes, and big mixed
  rule files for compile benchmarks, written streaming;
* probe addresses for rules lookups, as separate str objects.
"""

from __future__ import annotations

import os
import random
from typing import BinaryIO, Iterator, List, Sequence, Tuple

Pair = Tuple[bytes, bytes]

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# byte -> an alphanumeric byte (a little bias towards the first letters; irrelevant here)
_TO_ALNUM = bytes(_ALNUM[i % len(_ALNUM)] for i in range(256))


def size_label(n: int) -> str:
    """1000000 -> '1M', 10000 -> '10k', 1500 -> '1500'."""
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


# -- key/value records ---------------------------------------------------------------


def records(n: int, seed: int = 1) -> List[Pair]:
    """n records (b'key%d', 16-64 alphanumeric bytes), in key order."""
    rng = random.Random(seed)
    lengths = [rng.randint(16, 64) for _ in range(n)]
    pool = rng.randbytes(sum(lengths)).translate(_TO_ALNUM)
    out: List[Pair] = []
    pos = 0
    for i, ln in enumerate(lengths):
        out.append((b"key%d" % i, pool[pos:pos + ln]))
        pos += ln
    return out


def cdbmake_input(pairs: Sequence[Pair]) -> bytes:
    """The records in cdbmake's input format (``+klen,dlen:key->data``, then a blank line)."""
    parts = [b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in pairs]
    parts.append(b"\n")
    return b"".join(parts)


def hit_keys(n: int, count: int, seed: int = 2) -> List[bytes]:
    """count keys present in an n-record file, random order, each a new bytes object.

    count <= n draws without repetition; more repeats the shuffled set.
    """
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    return [b"key%d" % order[i % n] for i in range(count)]


def miss_keys(n: int, count: int, seed: int = 3) -> List[bytes]:
    """count keys of the same shape that an n-record file does not hold."""
    rng = random.Random(seed)
    return [b"key%d" % rng.randrange(n, 10 * n) for _ in range(count)]


# -- rules ----------------------------------------------------------------------------


def _ip(x: int) -> str:
    return f"{x >> 24 & 255}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"


def _net24(x: int) -> str:
    return f"{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}."


_DEFAULT_LINE = (
    ':allow,BADMIMETYPE="",BADLOADERTYPE="M",CHKUSER_RCPTLIMIT="15",CHKUSER_WRONGRCPTLIMIT="3",'
    'DKVERIFY="DEGIJKfh",QMAILQUEUE="/var/qmail/bin/simscan",DKQUEUE="/var/qmail/bin/qmail-queue.orig",'
    'DKSIGN="/var/qmail/control/domainkeys/%/private"'
)


def smtp_rules(n_rules: int = 1000, seed: int = 4) -> Tuple[bytes, List[str]]:
    """A tcp.smtp-like rules file of about n_rules rules, and the addresses it names.

    The shape of a busy mail server's file: the stock QmailToaster lines (127. relays, the
    default with its environment) around relay customers (single hosts, /24s, small ranges),
    blocked hosts and networks, and host-name rules.  Returns (text, addresses): the
    addresses are samples that hit the IP rules, for building probes.
    """
    rng = random.Random(seed)
    lines = [
        "# tcp.smtp: generated for the cdbrules benchmarks",
        '127.:allow,RELAYCLIENT="",DKSIGN="/var/qmail/control/domainkeys/%/private"',
    ]
    named: List[str] = []
    used = set()

    def fresh() -> int:
        while True:
            x = rng.randrange(1 << 24, 224 << 24)  # unicast, not 0.x
            if x >> 24 != 127 and x >> 8 not in used:
                used.add(x >> 8)
                return x

    per = max(1, n_rules // 100)
    for _ in range(30 * per):  # relay customers, one host each
        x = fresh()
        lines.append(f'{_ip(x)}:allow,RELAYCLIENT=""')
        named.append(_ip(x))
    for _ in range(15 * per):  # relay customers, a /24 each
        x = fresh()
        lines.append(f'{_net24(x >> 8)}:allow,RELAYCLIENT="",RBLSMTPD=""')
        named.append(_net24(x >> 8) + str(rng.randrange(256)))
    for _ in range(5 * per):  # relay customers, a small range each
        x = fresh() & ~255
        lo = rng.randrange(1, 240)
        hi = lo + rng.randrange(1, 15)
        lines.append(f'{_net24(x >> 8)}{lo}-{hi}:allow,RELAYCLIENT=""')
        named.append(_ip(x + rng.randint(lo, hi)))
    for _ in range(20 * per):  # blocked hosts
        x = fresh()
        lines.append(f"{_ip(x)}:deny")
        named.append(_ip(x))
    for _ in range(10 * per):  # blocked /24s, some with a message for rblsmtpd
        x = fresh()
        if rng.random() < 0.5:
            lines.append(f"{_net24(x >> 8)}:deny")
        else:
            lines.append(f'{_net24(x >> 8)}:allow,RBLSMTPD="-blocked: see https://example.net/rbl?{_ip(x)}"')
        named.append(_net24(x >> 8) + str(rng.randrange(256)))
    for _ in range(3 * per):  # blocked /16s
        x = fresh()
        lines.append(f"{x >> 24 & 255}.{x >> 16 & 255}.:deny")
        named.append(_ip(x ^ rng.randrange(1 << 16)))
    for i in range(8 * per):  # host names: spam domains and partner relays
        if i % 2:
            lines.append(f"=.spam{i}.example:deny")
        else:
            lines.append(f'=mx{i}.partner{i}.example:allow,RELAYCLIENT="",SMTPAUTH=""')
    for i in range(8 * per):  # customers with their own limits
        x = fresh()
        lines.append(
            f'{_net24(x >> 8)}:allow,CHKUSER_RCPTLIMIT="{50 + i}",CHKUSER_WRONGRCPTLIMIT="10",'
            'QMAILQUEUE="/var/qmail/bin/simscan"'
        )
        named.append(_net24(x >> 8) + str(rng.randrange(256)))
    lines.append(_DEFAULT_LINE)
    return ("\n".join(lines) + "\n").encode(), named


def smtp_probes(named: Sequence[str], count: int, seed: int = 5) -> List[str]:
    """count client addresses for a smtp_rules() file: about 45 % hit a named rule,
    5 % are local (127.), the rest are random and fall through to the default rule."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        u = rng.random()
        if u < 0.45:
            ip = named[rng.randrange(len(named))]
        elif u < 0.5:
            ip = f"127.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        else:
            ip = _ip(rng.randrange(1 << 24, 224 << 24))
        out.append("".join(ip))  # a new str object per probe
    return out


def blocklist(n_prefixes: int, seed: int = 6) -> Tuple[bytes, List[int]]:
    """A block list: n distinct /24 prefixes ``a.b.c.:deny``; returns (text, the /24 numbers)."""
    rng = random.Random(seed)
    nets = rng.sample(range(1 << 16, 224 << 16), n_prefixes)
    text = "".join(f"{_net24(x)}:deny\n" for x in nets).encode()
    return text, nets


def blocklist_probes(nets: Sequence[int], count: int, seed: int = 7) -> List[str]:
    """count addresses: half inside listed /24s, half random (mostly not listed)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            x = nets[rng.randrange(len(nets))] << 8 | rng.randrange(256)
        else:
            x = rng.randrange(1 << 24, 224 << 24)
        out.append(_ip(x))
    return out


def _compile_lines(n: int, seed: int) -> Iterator[str]:
    """The lines of a big mixed rules file (valid for both tcprules builds)."""
    rng = random.Random(seed)
    rnd = rng.random
    r24 = rng.getrandbits
    for i in range(n):
        u = rnd()
        x = r24(32)
        a, b, c, d = x >> 24, x >> 16 & 255, x >> 8 & 255, x & 255
        if u < 0.40:
            yield f"{a}.{b}.{c}.:deny\n"
        elif u < 0.60:
            yield f'{a}.{b}.{c}.{d}:allow,RELAYCLIENT=""\n'
        elif u < 0.70:
            yield f"{a}.{b}.{c}.{d}:deny\n"
        elif u < 0.80:
            yield f'=host{x}.example.com:allow,RELAYCLIENT="",RBLSMTPD=""\n'
        elif u < 0.90:
            yield f'{a}.{b}.{c}.{d & 252}-{(d & 252) + (x >> 30)}:allow,RELAYCLIENT=""\n'
        elif u < 0.95:
            yield f'{a}.{b}.{c}.:allow,CHKUSER_RCPTLIMIT="15",QMAILQUEUE="/var/qmail/bin/simscan"\n'
        elif u < 0.99:
            yield f'joe{d}@{a}.{b}.{c}.{d}:allow,RELAYCLIENT=""\n'
        else:
            yield f"# block {i}\n"


def write_compile_input(f: BinaryIO, n_lines: int, seed: int = 8) -> None:
    """Write an n_lines mixed rules file to f, streaming (the 10M-line file is ~380 MB)."""
    batch: List[str] = []
    for line in _compile_lines(n_lines, seed):
        batch.append(line)
        if len(batch) >= 100_000:
            f.write("".join(batch).encode())
            batch.clear()
    f.write("".join(batch).encode())


# -- what a rule decides, for checking that every peer gives the same answer ---------------


def decode_data(data: bytes) -> Tuple[bool, dict]:
    """(allowed, env) from a rule's cdb data, applied as tcpserver applies it
    (docs/lookup.md, "What a matched rule does")."""
    allowed = True
    env = {}
    for entry in data.split(b"\0")[:-1]:
        if entry[:1] == b"D":
            allowed = False
        elif entry[:1] == b"+" and b"=" in entry:
            name, _, value = entry[1:].partition(b"=")
            env[os.fsdecode(name)] = os.fsdecode(value)
    return allowed, env


# -- networks (compile --cidr) ---------------------------------------------------------------

#: IPv4 lengths weighted like a BGP table plus a block list (the notes' mix): /8 0.02 %,
#: /9-/15 0.98 %, /16 2 %, /17-/23 27 % (mostly /22-/23), /24 45 %, /25-/31 5 %, /32 20 %.
_V4_LENGTHS = ([8] * 2 + [9, 10, 11, 12, 13, 14, 15] * 14 + [16] * 200 + [17, 18, 19, 20, 21] * 100
               + [22] * 1000 + [23] * 1200 + [24] * 4500 + [25, 26, 27, 28, 29, 30, 31] * 71 + [32] * 2000)
#: IPv6 lengths: whole groups only (a partial last group costs up to 32,768 keys).
_V6_LENGTHS = [32] * 20 + [48] * 60 + [64] * 15 + [128] * 5


def cidr_rules(n: int, seed: int = 9, v6_share: float = 0.1) -> Tuple[bytes, List[Tuple[int, int]]]:
    """n random networks, one ``NET/LEN:deny`` (or allow with RBLSMTPD) line each: IPv4 in the
    BGP-like mix of lengths, a share of IPv6 networks whose groups before the last are not 0
    (the ones tcpserver keys can hold exactly).  Returns (text, the IPv4 networks as
    (address, length)) for probing."""
    rng = random.Random(seed)
    lines: List[str] = []
    nets4: List[Tuple[int, int]] = []
    for i in range(n):
        if rng.random() < v6_share:
            length = rng.choice(_V6_LENGTHS)
            k = (length + 15) // 16
            groups = [rng.randrange(1, 0x10000) for _ in range(k)] + [0] * (8 - k)
            if length < 128 and rng.random() < 0.3:
                groups[k - 1] = 0  # a last group of 0: two keys
            if length == 128:
                groups[7] = rng.randrange(1, 0x10000)
            addr = ":".join(f"{g:x}" for g in groups)
        else:
            length = rng.choice(_V4_LENGTHS)
            x = rng.randrange(1 << 24, 224 << 24) & (0xFFFFFFFF << (32 - length))
            nets4.append((x, length))
            addr = _ip(x)
        lines.append(f"{addr}/{length}:deny\n" if i % 4 else f'{addr}/{length}:allow,RBLSMTPD="-listed {i}"\n')
    return "".join(lines).encode(), nets4


def cidr_probes(nets4: Sequence[Tuple[int, int]], count: int, seed: int = 10) -> List[str]:
    """count IPv4 addresses: half inside listed networks, half random."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            x, length = nets4[rng.randrange(len(nets4))]
            x |= rng.getrandbits(32 - length) if length < 32 else 0
        else:
            x = rng.randrange(1 << 24, 224 << 24)
        out.append(_ip(x))
    return out
