#!/usr/bin/env python3
"""What RulesSMTP adds to an aiosmtpd connection, without the sockets and the client.

    python bench/smtp_profile.py                   # CPU µs per connection, SMTP vs RulesSMTP
    python bench/smtp_profile.py --blocks 600      # more interleaved blocks
    python bench/smtp_profile.py --profile         # and cProfile's difference per function

bench/test_smtp.py's dialogue (connect, 220, EHLO, its reply, QUIT, 221) with both servers
as the benchmark makes them (the same handler without hooks, the same names, RulesSMTP
over examples/tcp.smtp given as a path, so ``Rules`` stats it as in production), in one
process and one event loop.  A connection is a new protocol object from the server's
factory, handed a transport that keeps what is written and gives the peer and local
addresses, then the client's two command lines in one read; the loop runs until the
connection is closed and lost.  A block is ``--block`` connections of one server, timed
in this thread's CPU time; the blocks of the two servers alternate in a random order, so
a change of load on a busy machine touches both.  Every reply is checked.

What is left out costs both servers the same: the select, the socket calls, the client.
The connection's cost through loopback is in bench/test_smtp.py's rows; RulesSMTP's extra
here, over that cost, is its ratio there.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import multiprocessing
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
NAMES = ("SMTP", "RulesSMTP")
KWARGS: Dict[str, Any] = dict(hostname=HOST, ident="ESMTP", enable_SMTPUTF8=True)  # as Controller makes them


class NoHooks:
    """A handler without hooks: aiosmtpd's defaults answer."""


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
    return {
        "SMTP": lambda: SMTP(NoHooks(), loop=loop, **KWARGS),
        "RulesSMTP": RulesSMTP.factory(NoHooks(), rules=str(cdb), local_name=HOST, loop=loop, **KWARGS),
    }


def _server(name: str, cdb: Path, size: int, profile: bool, pipe: Any) -> None:
    """One server's process: runs the blocks the parent asks for, answers with their CPU time
    per connection (and, at the end, cProfile's table when asked)."""
    loop = asyncio.new_event_loop()
    made = servers(cdb, loop)
    want = loop.run_until_complete(connection(loop, made["SMTP"], 1024))
    assert want.startswith(b"220 " + HOST.encode()) and want.endswith(b"221 Bye\r\n"), want
    factory = made[name]
    if loop.run_until_complete(connection(loop, factory, 1024)) != want:
        raise SystemExit(f"{name}: wrong replies")
    prof = cProfile.Profile() if profile else None
    while True:
        k = pipe.recv()
        if k is None:
            break
        if prof is not None and k >= 0:
            prof.enable()
        t = loop.run_until_complete(block(loop, factory, size, 1024 + k % 50 * size, want))
        if prof is not None and k >= 0:
            prof.disable()
        pipe.send(t / size)
    loop.close()
    pipe.send(None if prof is None else {k: (v[1], v[2]) for k, v in pstats.Stats(prof).stats.items()})  # type: ignore[attr-defined]


def measure(cdb: Path, blocks: int, size: int, seed: int = 1,
            profile: bool = False) -> Tuple[Dict[str, List[float]], Dict[str, Any]]:
    """CPU seconds per connection of each server, block by block (the blocks alternate, in
    a random order), each server in a process of its own; and the profiles."""
    ctx = multiprocessing.get_context("fork")
    pipes, procs = {}, []
    for name in NAMES:
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_server, args=(name, cdb, size, profile, theirs))
        proc.start()
        pipes[name] = mine
        procs.append(proc)
    cpu: Dict[str, List[float]] = {name: [] for name in NAMES}
    rng = random.Random(seed)
    warm = max(blocks // 10, 5)
    for k in range(-warm, blocks):
        order = list(NAMES)
        rng.shuffle(order)
        for name in order:
            pipes[name].send(k)
            t = pipes[name].recv()
            if k >= 0:
                cpu[name].append(t)
    profs = {}
    for name in NAMES:
        pipes[name].send(None)
        profs[name] = pipes[name].recv()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"a server process failed ({proc.exitcode})")
    return cpu, profs


def summary(cpu: Dict[str, List[float]]) -> Tuple[float, float, float, float, float]:
    """Median µs per connection of SMTP and RulesSMTP, the median paired ratio and its quartiles."""
    a, b = statistics.median(cpu["SMTP"]), statistics.median(cpu["RulesSMTP"])
    paired = sorted(y / x for x, y in zip(cpu["SMTP"], cpu["RulesSMTP"]))
    q = len(paired) // 4
    return a * 1e6, b * 1e6, statistics.median(paired), paired[q], paired[-q - 1]


def _profile_difference(own: Dict[str, Dict[Tuple[str, int, str], Tuple[int, float]]], blocks: int, size: int,
                        top: int) -> None:
    """cProfile's own time per connection, RulesSMTP's minus SMTP's, function by function."""
    n = blocks * size
    keys = set(own["SMTP"]) | set(own["RulesSMTP"])
    rows = []
    for k in keys:
        ca, ta = own["SMTP"].get(k, (0, 0.0))
        cb, tb = own["RulesSMTP"].get(k, (0, 0.0))
        rows.append(((tb - ta) / n, (cb - ca) / n, k))
    rows.sort(key=lambda r: -abs(r[0]))
    total = sum(r[0] for r in rows)
    print(f"\ncProfile, RulesSMTP minus SMTP per connection (own time, calls): {total * 1e6:+.1f} µs in all")
    for dt, dc, (file, line, func) in rows[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"  {dt * 1e6:+7.2f} µs {dc:+6.2f} calls  {func} ({where})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=300, help="blocks per server (default 300)")
    p.add_argument("--block", type=int, default=20, help="connections per block (default 20)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile both servers and print the difference per function")
    p.add_argument("--top", type=int, default=25)
    ns = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cdb = Path(tmp) / "tcp.smtp.cdb"
        cdbrules.compile(str(ROOT / "examples" / "tcp.smtp"), str(cdb))
        gc.collect()
        cpu, _ = measure(cdb, ns.blocks, ns.block)
        a, b, r, lo, hi = summary(cpu)
        print(f"{ns.blocks} blocks of {ns.block} connections each, alternating; CPU time per connection:")
        print(f"  aiosmtpd SMTP {a:7.1f} µs")
        print(f"  RulesSMTP     {b:7.1f} µs   (+{b - a:.1f} µs)")
        print(f"  RulesSMTP / SMTP: {b / a:.3f}× (medians), {r:.3f}× (median of paired blocks; "
              f"quartiles {lo:.3f}–{hi:.3f}×)")
        if ns.profile:
            pb = max(ns.blocks // 5, 10)
            _, profs = measure(cdb, pb, ns.block, seed=2, profile=True)
            _profile_difference(profs, pb, ns.block, ns.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
