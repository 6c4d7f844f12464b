#!/usr/bin/env python3
"""What RulesSMTP adds to an aiosmtpd connection, without the sockets and the client.

    python bench/smtp_profile.py                   # CPU µs per connection, SMTP vs RulesSMTP
    python bench/smtp_profile.py --blocks 1000     # more interleaved blocks
    python bench/smtp_profile.py --profile         # and cProfile's difference per function

bench/test_smtp.py's dialogue (connect, 220, EHLO, its reply, QUIT, 221) through three
servers made as the benchmark makes them (the same handler without hooks, the same
names, RulesSMTP over examples/tcp.smtp given as a path, so ``Rules`` stats it as in
production):

* ``SMTP``: aiosmtpd's plain server;
* ``RulesSMTP``;
* ``RulesSMTP, plain dir()``: RulesSMTP without its ``__dir__``, which saves aiosmtpd part
  of the attribute scan it makes for every new server; its extra over SMTP is the work
  RulesSMTP itself does per connection.

All three run in this process, in one event loop.  A connection is a new protocol object
from the server's factory, handed a transport that keeps what is written and gives the
peer and local addresses, then the client's two command lines in one read; the loop runs
until the connection is closed and lost.  A block is ``--block`` connections of one
server, timed in this thread's CPU time; each round runs one block of every server, in a
random order, so a change of load on a busy machine touches all of them.  Every reply is
checked.  The ratios are medians of the ratios within a round, with their 95% confidence
interval.

What is left out costs every server the same: the select, the socket calls, the client.
The cost of a whole connection through loopback is in bench/test_smtp.py's rows: the
extra µs here over that cost is RulesSMTP's ratio there.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import math
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]

import cdbrules  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402
from cdbrules.aiosmtpd import RulesSMTP  # noqa: E402

HOST = "mx.bench.test"
DIALOGUE = b"EHLO bench.test\r\nQUIT\r\n"
KWARGS: Dict[str, Any] = dict(hostname=HOST, ident="ESMTP", enable_SMTPUTF8=True)  # as Controller makes them
PLAIN, RULES, OWN = "SMTP", "RulesSMTP", "RulesSMTP, plain dir()"


class NoHooks:
    """A handler without hooks: aiosmtpd's defaults answer."""


class PlainDirRulesSMTP(RulesSMTP):
    """RulesSMTP with object's dir(): aiosmtpd scans it as it scans a plain SMTP."""

    __dir__ = object.__dir__


class Wire(asyncio.Transport):
    """A connected transport that keeps what the server writes; close() loses the
    connection on the next turn of the loop, as a socket transport does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, port: int) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._closing = False
        self._extra = {"peername": ("127.0.0.1", port), "sockname": ("127.0.0.1", 25), "socket": None}
        self.out: List[bytes] = []
        self.write = self.out.append  # type: ignore[method-assign]
        self.lost = loop.create_future()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._lose)

    def _lose(self) -> None:
        self._protocol.connection_lost(None)
        self.lost.set_result(None)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def connection(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], port: int) -> bytes:
    """One client through factory's server: the reply stream."""
    proto = factory()
    wire = Wire(loop, proto, port)
    proto.connection_made(wire)
    proto.data_received(DIALOGUE)
    await wire.lost
    await asyncio.sleep(0)  # the cancelled handler task ends
    return b"".join(wire.out)


async def block(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], n: int, port: int,
                want: bytes) -> float:
    """n connections, one after the other; their CPU time (this thread)."""
    t = time.thread_time()
    for i in range(n):
        if await connection(loop, factory, port + i) != want:
            raise SystemExit("wrong replies")
    return time.thread_time() - t


def servers(cdb: Path, loop: asyncio.AbstractEventLoop) -> Dict[str, Callable[[], Any]]:
    rules = dict(rules=str(cdb), local_name=HOST, loop=loop, **KWARGS)
    return {
        PLAIN: lambda: SMTP(NoHooks(), loop=loop, **KWARGS),
        RULES: RulesSMTP.factory(NoHooks(), **rules),
        OWN: PlainDirRulesSMTP.factory(NoHooks(), **rules),
    }


def paired_median(a: List[float], b: List[float]) -> Tuple[float, float, float]:
    """The median of the ratios b[i] / a[i] and its 95% confidence interval (the order
    statistics n/2 ± 0.98·√n, which hold whatever the distribution of the ratios)."""
    r = sorted(y / x for x, y in zip(a, b))
    n = len(r)
    half = 0.98 * math.sqrt(n)
    lo, hi = max(int(n / 2 - half), 0), min(int(math.ceil(n / 2 + half)), n - 1)
    return statistics.median(r), r[lo], r[hi]


def measure(cdb: Path, rounds: int, size: int, seed: int = 1,
            profile: Optional[Dict[str, cProfile.Profile]] = None) -> Dict[str, List[float]]:
    """CPU seconds per connection of each server, round by round."""
    loop = asyncio.new_event_loop()
    try:
        made = servers(cdb, loop)
        want = loop.run_until_complete(connection(loop, made[PLAIN], 1024))
        assert want.startswith(b"220 " + HOST.encode()) and want.endswith(b"221 Bye\r\n"), want
        for name, factory in made.items():
            if loop.run_until_complete(connection(loop, factory, 1024)) != want:
                raise SystemExit(f"{name}: wrong replies")
        cpu: Dict[str, List[float]] = {name: [] for name in made}
        rng = random.Random(seed)
        warm = max(rounds // 10, 5)
        for k in range(-warm, rounds):
            for name in rng.sample(list(made), len(made)):
                prof = profile.get(name) if profile is not None and k >= 0 else None
                if prof is not None:
                    prof.enable()
                t = loop.run_until_complete(block(loop, made[name], size, 1024 + k % 50 * size, want))
                if prof is not None:
                    prof.disable()
                if k >= 0:
                    cpu[name].append(t / size)
        return cpu
    finally:
        loop.close()


def _profile_difference(profs: Dict[str, cProfile.Profile], n: int, top: int) -> None:
    """cProfile's own time per connection, RulesSMTP's minus SMTP's, function by function."""
    own = {name: {k: (v[1], v[2]) for k, v in pstats.Stats(prof).stats.items()}  # type: ignore[attr-defined]
           for name, prof in profs.items()}
    rows = []
    for k in set(own[PLAIN]) | set(own[RULES]):
        ca, ta = own[PLAIN].get(k, (0, 0.0))
        cb, tb = own[RULES].get(k, (0, 0.0))
        rows.append(((tb - ta) / n, (cb - ca) / n, k))
    rows.sort(key=lambda r: -abs(r[0]))
    print(f"\ncProfile, RulesSMTP minus SMTP per connection (own CPU time, calls; the profiler "
          f"inflates times): {sum(r[0] for r in rows) * 1e6:+.1f} µs in all")
    for dt, dc, (file, line, func) in rows[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"  {dt * 1e6:+7.2f} µs {dc:+6.2f} calls  {func} ({where})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=400, help="rounds, each a block of every server (default 400)")
    p.add_argument("--block", type=int, default=10, help="connections per block (default 10)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile SMTP and RulesSMTP and print the difference per function")
    p.add_argument("--top", type=int, default=25)
    ns = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cdb = Path(tmp) / "tcp.smtp.cdb"
        cdbrules.compile(str(ROOT / "examples" / "tcp.smtp"), str(cdb))
        gc.collect()
        cpu = measure(cdb, ns.rounds, ns.block)
        base = statistics.median(cpu[PLAIN])
        print(f"{ns.rounds} rounds of a block of {ns.block} connections per server, in a random order; "
              f"CPU time per connection (medians):")
        print(f"  {PLAIN:24s} {base * 1e6:7.1f} µs")
        for name in (RULES, OWN):
            r, lo, hi = paired_median(cpu[PLAIN], cpu[name])
            extra = statistics.median(y - x for x, y in zip(cpu[PLAIN], cpu[name]))
            print(f"  {name:24s} {statistics.median(cpu[name]) * 1e6:7.1f} µs   {extra * 1e6:+6.1f} µs, "
                  f"{r:.3f}× (95% CI {lo:.3f}–{hi:.3f})")
        if ns.profile:
            profs = {PLAIN: cProfile.Profile(time.thread_time), RULES: cProfile.Profile(time.thread_time)}
            pr = max(ns.rounds // 5, 10)
            measure(cdb, pr, ns.block, seed=2, profile=profs)
            _profile_difference(profs, pr * ns.block, ns.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
