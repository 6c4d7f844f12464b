"""A policy server for bench/test_policyd.py: ``python policyd_server.py CDB [--floor]``.

It serves ``cdbrules.policyd.PolicyServer`` on 127.0.0.1 (a free port, printed on the first
line of standard output) until standard input closes.  With ``--floor`` the server answers
DUNNO to everything without looking anything up (``cdbrules.policyd.dunno``): the same
process, event loop and request parsing, so the two differ by the rules alone.
"""

from __future__ import annotations

import asyncio
import sys

from cdbrules import Rules
from cdbrules.policyd import ListenSpec, PolicyServer, RulesPolicy, dunno


async def main(cdb: str, floor: bool) -> None:
    with Rules(cdb) as rules:
        server = PolicyServer(dunno if floor else RulesPolicy(rules))
        (name,) = await server.listen(ListenSpec("inet", host="127.0.0.1", port=0))
        print(name.rsplit(":", 1)[1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
        await server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--floor" in sys.argv[2:]))
