"""Connections per second through aiosmtpd: its plain ``SMTP`` beside ``RulesSMTP`` (issue #11:
RulesSMTP may cost at most 3% more per connection).

The servers run in one process, each in its own aiosmtpd Controller thread on 127.0.0.1,
with the same handler (none of the hooks) and the same names.  A round is SMTP_N
connections made one after the other by a plain socket client: connect, read the
greeting, EHLO, QUIT, read to the end.  RulesSMTP obeys examples/tcp.smtp (the stock
QmailToaster file; the client at 127.0.0.1 gets the ``127.`` rule with RELAYCLIENT), with
the rules path read the way the server reads it in production: stat per connection.

Two measurements: a pytest-benchmark row per server (SMTP_N connections a round), and
``test_smtp_paired``: CDBRULES_BENCH_SMTP_PAIRS (400) rounds, each a block of 10
connections through every server in a random order, the servers dealt out anew to three
Controllers (threads and ports) each round, all bound to one CPU; each block timed in CPU
time (this process: servers and client), in CPU time of the serving thread, and in wall
time.  Each ratio is the median of the ratios within a round, blocks run side by side,
so that a busy machine's drift falls on all alike, with its 95% confidence interval.  A
third server, RulesSMTP with object's dir() (bench/smtp_profile.py), shows RulesSMTP's
own work alone, without what its ``__dir__`` saves aiosmtpd.  bench/report.py shows the
paired ratio as a target.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import random
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, Iterator, List, Tuple, TypeVar

import pytest

import cdbrules

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import SMTP  # noqa: E402
from cdbrules.aiosmtpd import RulesController, RulesSMTP  # noqa: E402
from smtp_profile import PlainDirRulesSMTP, paired_median  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMTP_N = int(os.environ.get("CDBRULES_BENCH_SMTP_N", "200"))
ROUNDS = int(os.environ.get("CDBRULES_BENCH_SMTP_ROUNDS", "15"))
PAIRS = int(os.environ.get("CDBRULES_BENCH_SMTP_PAIRS", "400"))  # rounds of test_smtp_paired
BLOCK = 10  # connections per block of test_smtp_paired
PLAIN, RULES, OWN = "aiosmtpd SMTP", "cdbrules RulesSMTP", "RulesSMTP, plain dir()"
T = TypeVar("T")


class NoHooks:
    """A handler without hooks: aiosmtpd's defaults answer."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_session(port: int) -> bytes:
    """connect, greeting, EHLO, QUIT; the whole reply stream."""
    with socket.create_connection(("127.0.0.1", port), 10.0, source_address=("127.0.0.1", 0)) as s:
        f = s.makefile("rb")
        out = [f.readline()]
        s.sendall(b"EHLO bench.test\r\n")
        while True:
            line = f.readline()
            out.append(line)
            if line[3:4] != b"-":
                break
        s.sendall(b"QUIT\r\n")
        out.append(f.read())
        f.close()
    return b"".join(out)


@pytest.fixture(scope="module")
def cdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smtp") / "tcp.smtp.cdb"
    cdbrules.compile(str(ROOT / "examples" / "tcp.smtp"), str(out))
    return out


COMMON: Dict[str, Any] = dict(hostname="127.0.0.1", server_hostname="mx.bench.test", ident="ESMTP")


@pytest.fixture(scope="module")
def servers(cdb: Path) -> Iterator[Dict[str, Tuple[Any, int]]]:
    plain = aiosmtpd_controller.Controller(NoHooks(), port=_free_port(), **COMMON)
    rules = RulesController(NoHooks(), rules=str(cdb), port=_free_port(), local_name="mx.bench.test", **COMMON)
    made = {PLAIN: plain, RULES: rules}
    for ctrl in made.values():
        ctrl.start()
    try:
        yield {name: (ctrl, ctrl.port) for name, ctrl in made.items()}
    finally:
        for ctrl in made.values():
            ctrl.stop()


class Switch(aiosmtpd_controller.Controller):  # type: ignore[misc]
    """A Controller whose servers come from ``make``, which may change between connections."""

    make: Callable[[], Any]

    def factory(self) -> Any:
        return self.make()


@pytest.fixture(scope="module")
def switches(cdb: Path) -> Iterator[Tuple[List[Any], Dict[str, Callable[[], Any]]]]:
    """As many Switch controllers as servers to compare, and the servers' factories (made
    as RulesController and Controller make them)."""
    made = [Switch(NoHooks(), port=_free_port(), **COMMON) for _ in range(3)]
    kw = made[0].SMTP_kwargs
    factories: Dict[str, Callable[[], Any]] = {
        PLAIN: lambda: SMTP(NoHooks(), **kw),
        RULES: RulesSMTP.factory(NoHooks(), rules=str(cdb), local_name="mx.bench.test", **kw),
        OWN: PlainDirRulesSMTP.factory(NoHooks(), rules=str(cdb), local_name="mx.bench.test", **kw),
    }
    for ctrl in made:
        ctrl.make = factories[PLAIN]
        ctrl.start()
    try:
        yield made, factories
    finally:
        for ctrl in made:
            ctrl.stop()


@pytest.mark.parametrize("row", ["aiosmtpd SMTP", "cdbrules RulesSMTP"])
def test_smtp_connections(benchmark, servers, row: str) -> None:  # type: ignore[no-untyped-def]
    ctrl, port = servers[row]
    # the answers first: the same dialogue from both, and the rules applied by RulesSMTP
    reply = one_session(port)
    assert reply.startswith(b"220 mx.bench.test ESMTP\r\n250-mx.bench.test\r\n") and reply.endswith(b"221 Bye\r\n")
    assert reply == one_session(servers["aiosmtpd SMTP"][1])
    if row != "aiosmtpd SMTP":
        env = ctrl.smtpd.tcp_env
        assert env["TCPREMOTEIP"] == "127.0.0.1" and env["RELAYCLIENT"] == "" and ctrl.smtpd.decision.rule == "127."

    def batch() -> None:
        for _ in range(SMTP_N):
            one_session(port)

    benchmark.group = f"smtp-{SMTP_N}"
    benchmark.extra_info.update(lib=row.split()[0], what=row.split()[1] + ": connect, EHLO, QUIT", per=SMTP_N,
                                baseline=row == "aiosmtpd SMTP")
    benchmark.pedantic(batch, rounds=ROUNDS, warmup_rounds=1)


def _in_server_thread(ctrl: Any, fn: Callable[[], T]) -> T:
    """fn() called in the thread that runs ctrl's server (its event loop's)."""
    got: "concurrent.futures.Future[T]" = concurrent.futures.Future()
    ctrl.loop.call_soon_threadsafe(lambda: got.set_result(fn()))
    return got.result(10)


def _server_clock(ctrl: Any) -> int:
    """The CPU clock of the thread that runs ctrl's server."""
    return _in_server_thread(ctrl, lambda: time.pthread_getcpuclockid(threading.get_ident()))


def _pin(cpus: AbstractSet[int]) -> AbstractSet[int]:
    """Bind the calling thread to cpus; the set it had (Linux: affinity is per thread)."""
    had = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    return had


def test_smtp_paired(benchmark, switches) -> None:  # type: ignore[no-untyped-def]
    """Rounds of one short block of connections through every server, in a random order;
    each block timed in CPU time of this process (servers and client), in CPU time of the
    server's own thread, and in wall time.  A ratio within a round compares blocks run
    side by side, so a busy machine's drift falls on all; the median of the ratios, with
    its confidence interval, is RulesSMTP's cost.  Each round also deals the servers out
    to the controllers (threads, ports) anew, so that none keeps a luckier thread."""
    ctrls, factories = switches
    names = (PLAIN, RULES, OWN)
    clock = [_server_clock(ctrl) for ctrl in ctrls]
    want = one_session(ctrls[0].port)
    for name in names:
        ctrls[0].make = factories[name]
        assert one_session(ctrls[0].port) == want
        if name != PLAIN:  # the rule applied
            env = ctrls[0].smtpd.tcp_env
            assert env["TCPREMOTEIP"] == "127.0.0.1" and env["RELAYCLIENT"] == ""
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    srv: Dict[str, List[float]] = {name: [] for name in names}
    wall: Dict[str, List[float]] = {name: [] for name in names}
    rng = random.Random(11)
    pairs = 10 if benchmark.disabled else PAIRS  # (a smoke run: a few rounds)

    def run() -> None:
        # The garbage collector runs once after each block, timed with it: the block's own
        # garbage, collected in this thread (left to itself, it would run in whichever
        # thread happened to cross its threshold, and charge one server's thread for the
        # others' garbage).  Untimed, a full collection every round.
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for k in range(-pairs // 10, pairs):  # the first tenth warms up, untimed
                dealt = rng.sample(range(len(ctrls)), len(names))
                for i, name in zip(dealt, names):
                    ctrls[i].make = factories[name]
                for i, name in rng.sample(list(zip(dealt, names)), len(names)):
                    p, clk = ctrls[i].port, clock[i]
                    s0, c0, w0 = time.clock_gettime(clk), time.process_time(), time.perf_counter()
                    for _ in range(BLOCK):
                        one_session(p)
                    gc.collect(1)
                    w, c, s = time.perf_counter() - w0, time.process_time() - c0, time.clock_gettime(clk) - s0
                    if k >= 0:
                        cpu[name].append(c / BLOCK)
                        srv[name].append(s / BLOCK)
                        wall[name].append(w / BLOCK)
                gc.collect()
        finally:
            if gc_was:
                gc.enable()

    # The client and every server on one CPU: a server whose thread the scheduler kept on
    # the client's CPU would otherwise run warmer than one kept on the other, for a whole
    # run.  The dialogue is one request and one reply at a time, so nothing runs in
    # parallel anyway.
    pin = hasattr(os, "sched_setaffinity")
    if pin:
        cpu_one = {min(os.sched_getaffinity(0))}
        had = [_in_server_thread(ctrl, lambda: _pin(cpu_one)) for ctrl in ctrls]
        had_client = _pin(cpu_one)
    gc.collect()
    benchmark.group = "smtp-paired"
    try:
        benchmark.pedantic(run, rounds=1)
    finally:
        if pin:
            _pin(had_client)
            for ctrl, cpus in zip(ctrls, had):
                _in_server_thread(ctrl, lambda cpus=cpus: _pin(cpus))  # type: ignore[misc]
    ratio, lo, hi = paired_median(cpu[PLAIN], cpu[RULES])
    sratio, slo, shi = paired_median(srv[PLAIN], srv[RULES])
    wratio = paired_median(wall[PLAIN], wall[RULES])[0]
    oratio, olo, ohi = paired_median(srv[PLAIN], srv[OWN])

    def extra(name: str) -> float:  # µs per connection in the server's thread, over SMTP's
        return statistics.median(y - x for x, y in zip(srv[PLAIN], srv[name])) * 1e6

    per = {name: statistics.median(cpu[name]) for name in names}
    benchmark.extra_info.update(
        lib="paired", what=f"{pairs} rounds of a block of {BLOCK} per server, in a random order and on a controller "
        f"dealt anew, on one CPU",
        per=pairs * len(names) * BLOCK,
        paired_cpu_ratio=ratio, paired_cpu_ci=[lo, hi], paired_wall_ratio=wratio,
        server_cpu_ratio=sratio, server_cpu_ci=[slo, shi], server_extra_us=extra(RULES),
        own_server_cpu_ratio=oratio, own_server_cpu_ci=[olo, ohi], own_server_extra_us=extra(OWN),
        cpu_per_connection={"plain": per[PLAIN], "rules": per[RULES]},
        server_cpu_per_connection={"plain": statistics.median(srv[PLAIN]), "rules": statistics.median(srv[RULES])})
    print(f"\nRulesSMTP / aiosmtpd SMTP per connection, median of {pairs} rounds: "
          f"CPU {ratio:.3f}x (95% CI {lo:.3f}-{hi:.3f}), wall {wratio:.3f}x; "
          f"server thread {sratio:.3f}x (95% CI {slo:.3f}-{shi:.3f}), {extra(RULES):+.1f} us; "
          f"its own work (plain dir()): server thread {oratio:.3f}x (95% CI {olo:.3f}-{ohi:.3f}), "
          f"{extra(OWN):+.1f} us; CPU per connection {per[PLAIN] * 1e6:.0f} vs {per[RULES] * 1e6:.0f} us")
