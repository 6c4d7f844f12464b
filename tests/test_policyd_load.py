"""``cdbrules policyd`` under load: 500 policy connections at once (Postfix keeps one per
smtpd process), 100,000 requests in all, every answer checked, the server's memory flat.

Sizes: ``CDBRULES_POLICYD_LOAD_N`` requests (default 100,000) over
``CDBRULES_POLICYD_LOAD_CONNS`` connections (default 500); the sanitizer run makes fewer.
The requests are Postfix's own (tests/data), for clients the rules deny, defer, let relay,
count recipients for (chkuser, with the session table kept small so that it keeps
forgetting), or hold to DATABYTES.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import List, Tuple

from helpers import linux_only, under_asan
from policyd_helpers import Policyd, compile_rules, encode, request, rss_kib

N = int(os.environ.get("CDBRULES_POLICYD_LOAD_N", "100000"))
CONNS = int(os.environ.get("CDBRULES_POLICYD_LOAD_CONNS", "500"))

RULES = """\
10.0.0.1:deny
10.0.0.3:allow,RBLSMTPD="come back later"
10.0.0.5:allow,RELAYCLIENT=""
10.0.0.7:allow,CHKUSER_RCPTLIMIT="3"
10.0.0.9:allow,DATABYTES="2000"
10.1.:allow,RBLSMTPD="-listed"
:allow
"""

CHKUSER = [b"DUNNO", b"DUNNO",
           b"550 5.5.3 sorry, reached maximum number of recipients allowed in one session (chkuser)",
           b"550 5.7.1 sorry, you are violating our security policies (chkuser)"]


def plan(conn: int, j: int) -> Tuple[bytes, bytes]:
    """Request j of connection conn and the reply it must get."""
    block, k = divmod(j, 8)
    if k < 4:  # an SMTP session of 4 recipients from a client with a limit of 3
        req = request("RCPT", client_address="10.0.0.7", client_port=f"{conn}{block:05d}",
                      recipient=f"r{k}@local.test")
        return encode(req), b"action=" + CHKUSER[k] + b"\n\n"
    n = conn * 7 + j
    kind = n % 6
    if kind == 0:
        return encode(request("RCPT", client_address="10.0.0.1")), b"action=REJECT Access denied\n\n"
    if kind == 1:
        return encode(request("EHLO", client_address="10.0.0.3")), b"action=DEFER come back later\n\n"
    if kind == 2:
        return encode(request("RCPT", "relay", client_address="10.0.0.5")), b"action=OK\n\n"
    if kind == 3:
        return (encode(request("END-OF-MESSAGE", client_address="10.0.0.9", size=str(1990 + n % 20))),
                b"action=552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)\n\n"
                if 1990 + n % 20 > 2000 else b"action=DUNNO\n\n")
    if kind == 4:
        return encode(request("MAIL", client_address=f"10.1.{n % 256}.{n // 256 % 256}")), b"action=REJECT listed\n\n"
    return encode(request("RCPT", client_address=f"192.0.2.{n % 256}")), b"action=DUNNO\n\n"


async def _client(port: int, conn: int, per: int, start: asyncio.Event, done: List[int], wrong: List[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done[1] += 1
    await start.wait()  # all connections open before the first request
    try:
        for j in range(per):
            req, want = plan(conn, j)
            writer.write(req)
            got = await reader.readuntil(b"\n\n")
            if got != want and len(wrong) < 10:
                wrong.append(f"connection {conn} request {j}: {got!r}, wanted {want!r}")
            done[0] += 1
    finally:
        writer.close()


async def _load(pd: Policyd) -> Tuple[List[str], List[int]]:
    per = N // CONNS
    start = asyncio.Event()
    done = [0, 0]  # requests answered, connections open
    wrong: List[str] = []
    tasks = [asyncio.ensure_future(_client(pd.port, c, per, start, done, wrong)) for c in range(CONNS)]
    deadline = asyncio.get_running_loop().time() + 60
    while done[1] < CONNS and not any(t.done() for t in tasks):
        assert asyncio.get_running_loop().time() < deadline, f"only {done[1]} connections open"
        await asyncio.sleep(0.01)
    start.set()
    rss: List[int] = []
    marks = [N * q // 8 for q in range(2, 8)]
    while not all(t.done() for t in tasks):
        if marks and done[0] >= marks[0]:
            marks.pop(0)
            rss.append(rss_kib(pd.proc.pid))
        await asyncio.sleep(0.01)
    for t in tasks:
        t.result()
    rss.append(rss_kib(pd.proc.pid))
    assert done[0] == per * CONNS
    return wrong, rss


@linux_only("procfs (the server's resident memory)")
def test_500_connections_100k_requests(tmp_path: Path) -> None:
    cdb = tmp_path / "r.cdb"
    compile_rules(RULES, cdb)
    with Policyd(cdb, "--sessions", "1000", log=tmp_path / "log") as pd:
        wrong, rss = asyncio.run(_load(pd))
        assert not wrong, "\n".join(wrong)
        # memory flat: from a quarter of the run on (every connection open, the session
        # table full) the server grows by less than 4 MiB (64 MiB under the sanitizer run,
        # where ASan keeps freed memory in quarantine)
        limit = 65536 if under_asan() else 4096
        assert max(rss) - rss[0] < limit, f"RSS in KiB at 1/4, 3/8, ... 7/8 and the end: {rss}"
        assert pd.proc.poll() is None
        assert pd.stop() == 0
    assert "warning" not in pd.log_text(), pd.log_text()
