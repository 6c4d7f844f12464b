"""``cdbrules policyd`` beside the protocol floor: the same server answering DUNNO to
everything without a lookup (bench/policyd_server.py), both in the same run.

The requests are the ones Postfix 3.7 sends (tests/data), for a mix of clients of the
stock-like 1k-rule file (bench/_data.py, compiled by tcprules): denied, listed by
RBLSMTPD, relaying, counted by chkuser, and falling to the default rule.  Two groups:

* ``policyd-pipelined``: one connection, PIPE requests written at once, the replies read
  back; the server's cost per request with the least I/O around it (the stricter ratio);
* ``policyd-roundtrip``: one request, one reply, as Postfix's smtpd asks (the client's
  and the kernel's share of the time is in both rows).

Every reply of both servers is checked against what it must be, outside the timing.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from conftest import HERE, ROUNDS, RulesFile

from policyd_helpers import encode, request

PIPE = 5000
TRIPS = 2000


def _requests(rules_file: RulesFile, n: int) -> Tuple[List[bytes], List[bytes]]:
    """n requests and the replies cdbrules policyd must give (the rules' answers).

    Each request's client_port is ``@PORT@``, replaced by a number not used before in
    every round (:func:`_fresh`): a new SMTP connection for chkuser's count each time, so
    that the answers stay the same round after round."""
    from cdbrules import Rules
    from cdbrules.policyd import RulesPolicy

    states = ["RCPT", "RCPT", "MAIL", "END-OF-MESSAGE", "EHLO", "CONNECT"]
    reqs, want = [], []
    with Rules(rules_file.path) as rules:
        policy = RulesPolicy(rules)
        for i in range(n):
            ip = rules_file.all_probes[i % len(rules_file.all_probes)]
            ctx = "relay" if i % 5 == 0 else ""
            r = request(states[i % len(states)], ctx, client_address=ip, client_port=str(i))
            reqs.append(encode(dict(r, client_port="@PORT@")))
            want.append(b"action=%s\n\n" % policy({k.encode(): v.encode() for k, v in r.items()}).encode())
    return reqs, want


_round = [0]


def _fresh(reqs: List[bytes]) -> List[bytes]:
    """reqs with client ports never used before (setup of a round, untimed)."""
    _round[0] += 1
    base = _round[0] * len(reqs)
    return [r.replace(b"@PORT@", b"%d" % (base + i)) for i, r in enumerate(reqs)]


class Server:
    def __init__(self, cdb: Path, floor: bool) -> None:
        self.floor = floor
        argv = [sys.executable, str(HERE / "policyd_server.py"), str(cdb)] + (["--floor"] if floor else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            buf += chunk
        return bytes(buf)

    def cpu(self) -> float:
        """The server's CPU time so far (user + system, seconds)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.sock.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def traffic(rules_1k: RulesFile) -> Tuple[Path, List[bytes], List[bytes]]:
    reqs, want = _requests(rules_1k, PIPE)
    return rules_1k.path, reqs, want


def _timed(benchmark, s: Server, other: Server, fn, other_round, setup, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """benchmark.pedantic, and the CPU time per round of both servers.

    Before each timed round of ``s``, the other server gets the same round, untimed
    (``other_round``): the two servers' rounds alternate, so a change of load on a busy
    machine touches both, and ``cpu_paired`` (policyd's CPU time over the floor's, both
    measured over the same stretch) is fair where the two rows, run one after the other,
    may not be.  ``wall_paired`` is the same for the wall time: the median, over the
    rounds, of policyd's round over the floor's round run just before or after it.  The
    report prints both beside the wall-time and row-to-row CPU ratios."""
    before, other_before = s.cpu(), other.cpu()
    mine: List[float] = []
    theirs: List[float] = []

    def both():  # type: ignore[no-untyped-def]
        args, kwargs = setup()
        t = time.perf_counter()
        other_round(*args)
        theirs.append(time.perf_counter() - t)
        return args, kwargs

    def timed(*args):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        fn(*args)
        mine.append(time.perf_counter() - t)

    benchmark.pedantic(timed, setup=both, rounds=rounds, iterations=1, warmup_rounds=1)
    cpu_mine, cpu_theirs = s.cpu() - before, other.cpu() - other_before
    benchmark.extra_info["cpu_s"] = cpu_mine / (rounds + 1)
    if cpu_mine > 0 and cpu_theirs > 0:
        benchmark.extra_info["cpu_paired"] = cpu_theirs / cpu_mine if s.floor else cpu_mine / cpu_theirs
    pairs = list(zip(mine, theirs))[1:]  # after the warm-up round (none when not timing)
    if pairs:
        benchmark.extra_info["wall_paired"] = statistics.median([b / a if s.floor else a / b for a, b in pairs])


ROWS = [("cdbrules policyd", False), ("floor: same server, DUNNO, no lookup", True)]


@pytest.fixture(scope="module")
def servers(traffic: Tuple[Path, List[bytes], List[bytes]]) -> Iterator[Dict[bool, Server]]:
    """Both servers, for the whole module: each row times one and runs the other between."""
    out: Dict[bool, Server] = {}
    try:
        for _, floor in ROWS:
            out[floor] = Server(traffic[0], floor)
        yield out
    finally:
        for srv in out.values():
            srv.close()


@pytest.fixture(params=ROWS, ids=["policyd", "floor"])
def server(request: pytest.FixtureRequest, servers: Dict[bool, Server]) -> Tuple[str, bool, Server, Server]:
    label, floor = request.param
    return label, floor, servers[floor], servers[not floor]


def _expected(floor: bool, want: List[bytes]) -> List[bytes]:
    return [b"action=DUNNO\n\n"] * len(want) if floor else want


def test_pipelined(benchmark, server, traffic) -> None:  # type: ignore[no-untyped-def]
    label, floor, s, other = server
    _, reqs, want = traffic
    expect = {srv: b"".join(_expected(srv.floor, want)) for srv in (s, other)}
    got: List[Tuple[Server, bytes]] = []

    def setup() -> Tuple[Tuple[bytes], dict]:  # type: ignore[type-arg]
        return (b"".join(_fresh(reqs)),), {}

    def send(srv: Server, data: bytes) -> None:
        srv.sock.sendall(data)
        got.append((srv, srv.read(len(expect[srv]))))

    benchmark.group = "policyd-pipelined"
    benchmark.extra_info.update(lib=label, what=f"{PIPE} requests written at once", per=PIPE, baseline=floor)
    _timed(benchmark, s, other, lambda data: send(s, data), lambda data: send(other, data), setup, ROUNDS * 4)
    assert got and all(g == expect[srv] for srv, g in got)


def test_roundtrip(benchmark, server, traffic) -> None:  # type: ignore[no-untyped-def]
    label, floor, s, other = server
    _, reqs, want = traffic
    reqs, want = reqs[:TRIPS], want[:TRIPS]
    expect = {srv: _expected(srv.floor, want) for srv in (s, other)}
    rounds: List[Tuple[Server, List[bytes]]] = []

    def setup() -> Tuple[Tuple[List[bytes]], dict]:  # type: ignore[type-arg]
        return (_fresh(reqs),), {}

    def trips(srv: Server, batch: List[bytes]) -> None:
        out = []
        send, recv = srv.sock.sendall, srv.sock.recv
        for r in batch:
            send(r)
            got = recv(4096)
            while not got.endswith(b"\n\n"):
                got += recv(4096)
            out.append(got)
        rounds.append((srv, out))

    benchmark.group = "policyd-roundtrip"
    benchmark.extra_info.update(lib=label, what="one request, one reply", per=TRIPS, baseline=floor)
    _timed(benchmark, s, other, lambda batch: trips(s, batch), lambda batch: trips(other, batch), setup, ROUNDS * 2)
    assert rounds and all(r == expect[srv] for srv, r in rounds)
