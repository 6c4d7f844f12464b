#!/usr/bin/env python3
"""Where policyd's time per request goes, without the sockets and the client.

    python bench/policyd_profile.py                  # CPU µs per request, policyd vs the floor
    python bench/policyd_profile.py --rounds 400     # more interleaved rounds
    python bench/policyd_profile.py --profile        # and cProfile of the policyd rounds
    python bench/policyd_profile.py --mode roundtrip # one request per read

The traffic is bench/test_policyd.py's (Postfix 3.7's requests for the probe addresses of
the 1k-rule file, a fifth of them in the relay context, every request with a client port
not used before).  Each server, the floor (``dunno``) and policyd (``RulesPolicy``), runs
in a process of its own, as in the benchmark, and has one connection object
(``PolicyServer.protocol()``) whose replies go to a transport that keeps them.  A round
hands it ``--chunk`` requests the way the event loop hands them over: all in one read
(``pipelined``) or one request per read (``roundtrip``), and measures the thread's CPU
time around that.  The rounds of the two servers alternate, in a random order, so a
change of load on a busy machine touches both; the table shows the medians, and the
median of the ratios of rounds run side by side.  Every reply is checked.

What is left out is the same for both servers: the event loop's select, the socket calls
and the client.  Their cost is in the floor of bench/test_policyd.py, which this
script's ratio therefore overstates.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import multiprocessing
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # policyd_helpers, for test_policyd
sys.path.insert(0, str(HERE))  # bench's conftest before tests'

import _data  # noqa: E402
from conftest import Batches, RulesFile  # noqa: E402

# bench/test_policyd.py, by its path (tests/ has a test_policyd too): its traffic, not a copy
_spec = importlib.util.spec_from_file_location("bench_test_policyd", HERE / "test_policyd.py")
_bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_bench)  # type: ignore[union-attr]
Traffic = _bench.Traffic

import cdbrules  # noqa: E402
from cdbrules.policyd import PolicyServer, RulesPolicy, dunno  # noqa: E402


class _Sink:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.out: List[bytes] = []
        self.write = self.out.append

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass


def traffic(src: Path, cdb: Path, n: int) -> Tuple[List[bytes], List[bytes]]:
    """n of bench/test_policyd.py's requests (sessions of clients never seen before) and
    policyd's replies: every round takes requests not sent before."""
    _, named = _data.smtp_rules(1000)
    probes = _data.smtp_probes(named, 10_000)
    t = Traffic(RulesFile("1k", src, cdb, Batches(probes), probes))
    try:
        return t.round(n)  # type: ignore[no-any-return]
    finally:
        t.close()


def _server(floor: bool, cdb: Path, reqs: List[bytes], want: List[bytes], chunk: int, mode: str,
            profile: bool, pipe: Any) -> None:
    """One server's process: runs the rounds the parent asks for, answers with their CPU time."""
    asyncio.run(_serve(floor, cdb, reqs, want, chunk, mode, profile, pipe))


async def _serve(floor: bool, cdb: Path, reqs: List[bytes], want: List[bytes], chunk: int, mode: str,
                 profile: bool, pipe: Any) -> None:
    n = len(reqs)
    gc_s = [0.0]
    started = [0.0]

    def gc_time(phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            gc_s[0] += time.thread_time() - started[0]

    gc.callbacks.append(gc_time)
    prof = cProfile.Profile() if profile and not floor else None
    with cdbrules.Rules(cdb) as rules:
        conn = PolicyServer(dunno if floor else RulesPolicy(rules)).protocol()
        sink = _Sink()
        conn.connection_made(sink)  # type: ignore[arg-type]
        feed = conn.data_received  # type: ignore[attr-defined]
        while True:
            rnd = pipe.recv()
            if rnd is None:
                break
            k = range(rnd * chunk, min(rnd * chunk + chunk, n))  # (the parent made enough)
            batch = [reqs[i] for i in k]
            reads = [b"".join(batch)] if mode == "pipelined" else batch
            expect = b"action=DUNNO\n\n" * len(k) if floor else b"".join(want[i] for i in k)
            sink.out.clear()
            if prof is not None:
                prof.enable()
            t = time.thread_time()
            for data in reads:
                feed(data)
            t = time.thread_time() - t
            if prof is not None:
                prof.disable()
            if b"".join(sink.out) != expect:
                raise SystemExit(f"{'floor' if floor else 'policyd'}: wrong replies in round {rnd}")
            pipe.send(t / len(k))
        pipe.send(gc_s[0])
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--chunk", type=int, default=500, help="requests per round (default 500)")
    p.add_argument("--mode", choices=("pipelined", "roundtrip"), default="pipelined")
    p.add_argument("--profile", action="store_true", help="cProfile policyd's rounds, print the top 30")
    ns = p.parse_args()
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        src, cdb = Path(tmp) / "tcp.smtp", Path(tmp) / "tcp.smtp.cdb"
        src.write_bytes(_data.smtp_rules(1000)[0])
        cdbrules.compile(src, cdb)
        reqs, want = traffic(src, cdb, (max(ns.rounds // 10, 2) + ns.rounds) * ns.chunk)
        names = ("floor", "policyd")
        pipes, procs = {}, []
        for name in names:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_server, args=(name == "floor", cdb, reqs, want, ns.chunk, ns.mode,
                                                     ns.profile, theirs))
            proc.start()
            pipes[name] = mine
            procs.append(proc)
        cpu: Dict[str, List[float]] = {name: [] for name in names}
        rng = random.Random(1)
        warm = max(ns.rounds // 10, 2)
        for rnd in range(warm + ns.rounds):
            order = list(names)
            rng.shuffle(order)
            for name in order:
                pipes[name].send(rnd)
                t = pipes[name].recv()
                if rnd >= warm:
                    cpu[name].append(t)
        gcs = {}
        for name in names:
            pipes[name].send(None)
            gcs[name] = pipes[name].recv()
        for proc in procs:
            proc.join()
    f, d = statistics.median(cpu["floor"]), statistics.median(cpu["policyd"])
    paired = sorted(b / a for a, b in zip(cpu["floor"], cpu["policyd"]))
    q = len(paired) // 4
    print(f"{ns.mode}, {ns.rounds} rounds of {ns.chunk} requests, CPU time per request:")
    print(f"  floor   {f * 1e6:6.2f} µs   (garbage collection {gcs['floor'] * 1e6:,.0f} µs in all)")
    print(f"  policyd {d * 1e6:6.2f} µs   (garbage collection {gcs['policyd'] * 1e6:,.0f} µs in all)")
    print(f"  policyd - floor {(d - f) * 1e6:.2f} µs; policyd / floor: {d / f:.3f}× (medians), "
          f"{statistics.median(paired):.3f}× (median of paired rounds; quartiles "
          f"{paired[q]:.3f}–{paired[-q - 1]:.3f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
