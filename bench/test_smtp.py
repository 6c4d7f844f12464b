"""Connections per second through aiosmtpd: its plain ``SMTP`` beside ``RulesSMTP`` (issue #11:
RulesSMTP may cost at most 3% more per connection).

Both servers run in one process, each in its own aiosmtpd Controller thread on 127.0.0.1,
with the same handler (none of the hooks) and the same names.  A round is SMTP_N
connections made one after the other by a plain socket client: connect, read the
greeting, EHLO, QUIT, read to the end.  RulesSMTP obeys examples/tcp.smtp (the stock
QmailToaster file; the client at 127.0.0.1 gets the ``127.`` rule with RELAYCLIENT), with
the rules path read the way the server reads it in production: stat per connection.

Two measurements: a pytest-benchmark row per server (SMTP_N connections a round), and
``test_smtp_paired``, which alternates blocks of 20 connections between the two servers and
compares the medians of their CPU times (this process: servers and client), so that a busy
machine's drift falls on both alike.  bench/report.py shows the paired ratio as a target.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

import cdbrules

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from cdbrules.aiosmtpd import RulesController  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMTP_N = int(os.environ.get("CDBRULES_BENCH_SMTP_N", "200"))
ROUNDS = int(os.environ.get("CDBRULES_BENCH_SMTP_ROUNDS", "15"))


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
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Tuple[Any, int]]]:
    d = tmp_path_factory.mktemp("smtp")
    cdb = d / "tcp.smtp.cdb"
    cdbrules.compile(str(ROOT / "examples" / "tcp.smtp"), str(cdb))
    common = dict(hostname="127.0.0.1", server_hostname="mx.bench.test", ident="ESMTP")
    plain = aiosmtpd_controller.Controller(NoHooks(), port=_free_port(), **common)
    rules = RulesController(NoHooks(), rules=str(cdb), port=_free_port(), local_name="mx.bench.test", **common)
    plain.start()
    rules.start()
    try:
        yield {"aiosmtpd SMTP": (plain, plain.port), "cdbrules RulesSMTP": (rules, rules.port)}
    finally:
        plain.stop()
        rules.stop()


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


def test_smtp_paired(benchmark, servers) -> None:  # type: ignore[no-untyped-def]
    """The two servers in alternating blocks of connections, each block timed in CPU time
    (this process: the servers and the client) and wall time; the ratio of the medians is
    RulesSMTP's cost, with the drift of a busy machine shared by both."""
    plain, rules = servers["aiosmtpd SMTP"][1], servers["cdbrules RulesSMTP"][1]
    block = 20
    times: Dict[int, Tuple[list, list]] = {plain: ([], []), rules: ([], [])}

    def run() -> None:
        for k in range(ROUNDS * 10):
            for port in ((plain, rules) if k % 2 == 0 else (rules, plain)):
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(block):
                    one_session(port)
                times[port][0].append(time.process_time() - c0)
                times[port][1].append(time.perf_counter() - w0)

    benchmark.group = "smtp-paired"
    benchmark.pedantic(run, rounds=1)
    cpu = statistics.median(times[rules][0]) / statistics.median(times[plain][0])
    wall = statistics.median(times[rules][1]) / statistics.median(times[plain][1])
    per = {name: statistics.median(times[port][0]) / block for name, port in (("plain", plain), ("rules", rules))}
    benchmark.extra_info.update(lib="paired", what=f"blocks of {block}, alternating", per=ROUNDS * 10 * 2 * block,
                                paired_cpu_ratio=cpu, paired_wall_ratio=wall, cpu_per_connection=per)
    print(f"\nRulesSMTP / aiosmtpd SMTP per connection: CPU {cpu:.3f}x, wall {wall:.3f}x; "
          f"CPU per connection {per['plain'] * 1e6:.0f} vs {per['rules'] * 1e6:.0f} us")
