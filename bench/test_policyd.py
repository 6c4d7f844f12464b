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
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest
from conftest import HERE, ROUNDS, RulesFile

from policyd_helpers import encode, request

PIPE = 5000
TRIPS = 2000


#: What Postfix asks about one SMTP session (client restrictions at CONNECT; each recipient
#: in the relay check and in the recipient restrictions; the end of the message), as the
#: main.cf lines of docs/policyd.md set it up: every request of a session names its client.
SESSION = [("CONNECT", ""), ("RCPT", "relay"), ("RCPT", ""), ("RCPT", "relay"), ("RCPT", ""),
           ("END-OF-MESSAGE", "")]


class Traffic:
    """Rounds of requests as Postfix sends them: SMTP sessions, each from a client never seen
    before in the run, the requests of a session one after the other, and the replies
    cdbrules policyd must give (the rules' answers).

    A client address is one of the 1k-rule file's probe addresses (bench/_data.py: about
    45 % under a named rule, 5 % local, the rest falling to the default rule) with a new
    last octet: what policyd remembers about a client therefore helps only within a session,
    as it would for a real Postfix, and never across rounds.  Each session gets a client port
    of its own, a new SMTP connection for chkuser's counting.  Made in each round's setup,
    outside the timing."""

    def __init__(self, rules_file: RulesFile) -> None:
        from cdbrules import Rules
        from cdbrules.policyd import RulesPolicy

        self.path = rules_file.path
        self.bases = [ip.rsplit(".", 1)[0] for ip in rules_file.all_probes if ip.count(".") == 3]
        self.rules = Rules(self.path)
        self.policy = RulesPolicy(self.rules)
        self.rng = random.Random(12)
        self.used: Set[str] = set()
        self.sessions = 0

    def _client(self) -> str:
        while True:
            ip = f"{self.rng.choice(self.bases)}.{self.rng.randrange(1, 255)}"
            if ip not in self.used:
                self.used.add(ip)
                return ip

    def round(self, n: int) -> Tuple[List[bytes], List[bytes]]:
        """n requests of new sessions, and the replies policyd must give them."""
        reqs: List[bytes] = []
        want: List[bytes] = []
        while len(reqs) < n:
            ip, self.sessions = self._client(), self.sessions + 1
            for state, ctx in SESSION[:n - len(reqs)]:
                r = request(state, ctx, client_address=ip, client_port=str(self.sessions))
                reqs.append(encode(r))
                want.append(b"action=%s\n\n" % self.policy({k.encode(): v.encode() for k, v in r.items()}).encode())
        return reqs, want

    def close(self) -> None:
        self.rules.close()


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
def traffic(rules_1k: RulesFile) -> Iterator[Traffic]:
    t = Traffic(rules_1k)
    try:
        yield t
    finally:
        t.close()


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
        ratios = [b / a if s.floor else a / b for a, b in pairs]
        benchmark.extra_info["wall_paired"] = statistics.median(ratios)
        benchmark.extra_info["wall_pair_ratios"] = ratios  # report.py's verdict: both rows' pairs


ROWS = [("cdbrules policyd", False), ("floor: same server, DUNNO, no lookup", True)]


@pytest.fixture(scope="module")
def servers(traffic: Traffic) -> Iterator[Dict[bool, Server]]:
    """Both servers, for the whole module: each row times one and runs the other between."""
    out: Dict[bool, Server] = {}
    # The client and both servers on one CPU: with two CPUs the scheduler places the three
    # processes differently from round to round, which moves a round's time by more than
    # the lookup costs (on one CPU the rounds run as a server busy with many clients would)
    pin = hasattr(os, "sched_setaffinity")
    had = os.sched_getaffinity(0) if pin else set()
    try:
        for _, floor in ROWS:
            out[floor] = Server(traffic.path, floor)
        if pin:
            one = {min(had)}
            for srv in out.values():
                os.sched_setaffinity(srv.proc.pid, one)
            os.sched_setaffinity(0, one)
        yield out
    finally:
        if pin:
            os.sched_setaffinity(0, had)
        for srv in out.values():
            srv.close()


@pytest.fixture(params=ROWS, ids=["policyd", "floor"])
def server(request: pytest.FixtureRequest, servers: Dict[bool, Server]) -> Tuple[str, bool, Server, Server]:
    label, floor = request.param
    return label, floor, servers[floor], servers[not floor]


def _expected(floor: bool, want: List[bytes]) -> List[bytes]:
    return [b"action=DUNNO\n\n"] * len(want) if floor else want


def test_pipelined(benchmark, server, traffic: Traffic) -> None:  # type: ignore[no-untyped-def]
    label, floor, s, other = server
    checked: List[bool] = []

    def setup() -> Tuple[Tuple[bytes, List[bytes]], dict]:  # type: ignore[type-arg]
        reqs, want = traffic.round(PIPE)
        return (b"".join(reqs), want), {}

    def send(srv: Server, data: bytes, want: List[bytes]) -> None:
        expect = b"".join(_expected(srv.floor, want))
        srv.sock.sendall(data)
        checked.append(srv.read(len(expect)) == expect)

    benchmark.group = "policyd-pipelined"
    benchmark.extra_info.update(lib=label, what=f"{PIPE} requests written at once", per=PIPE, baseline=floor)
    _timed(benchmark, s, other, lambda *a: send(s, *a), lambda *a: send(other, *a), setup, ROUNDS * 4)
    assert checked and all(checked)


def test_roundtrip(benchmark, server, traffic: Traffic) -> None:  # type: ignore[no-untyped-def]
    label, floor, s, other = server
    checked: List[bool] = []

    def setup() -> Tuple[Tuple[List[bytes], List[bytes]], dict]:  # type: ignore[type-arg]
        return traffic.round(TRIPS), {}

    def trips(srv: Server, batch: List[bytes], want: List[bytes]) -> None:
        out = []
        send, recv = srv.sock.sendall, srv.sock.recv
        for r in batch:
            send(r)
            got = recv(4096)
            while not got.endswith(b"\n\n"):
                got += recv(4096)
            out.append(got)
        checked.append(out == _expected(srv.floor, want))

    benchmark.group = "policyd-roundtrip"
    benchmark.extra_info.update(lib=label, what="one request, one reply", per=TRIPS, baseline=floor)
    _timed(benchmark, s, other, lambda *a: trips(s, *a), lambda *a: trips(other, *a), setup, ROUNDS * 2)
    assert checked and all(checked)
