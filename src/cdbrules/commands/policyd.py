"""``cdbrules policyd [--listen SPEC]... [options] CDB``: the Postfix policy server.

With ``--listen`` it accepts Postfix's connections itself (``inet:HOST:PORT``,
``unix:PATH``, or ``systemd`` for sockets a socket unit passes); without, it serves the
one client on standard input/output, as Postfix's ``spawn(8)`` runs it.  The mapping from
rules to actions is :class:`cdbrules.policyd.RulesPolicy`'s (docs/policyd.md, "What Postfix is told").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import sys
from typing import Any, List

from ..errors import CdbFormatError
from . import COMMANDS
from ._common import EXIT_OK, EXIT_PERM, EXIT_TEMP, errstr, say


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return v


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _mode(text: str) -> int:
    try:
        v = int(text, 8)
    except ValueError:
        v = -1
    if not 0 <= v <= 0o777:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r}")
    return v


def register(sub: Any) -> None:
    p = sub.add_parser(
        "policyd",
        help=COMMANDS["policyd"].help,
        usage="%(prog)s [--listen SPEC]... [options] CDB",
        description=(
            "Answer Postfix's check_policy_service requests from a compiled rules file: the "
            "rule for client_address decides, as tcpserver would decide for qmail "
            "(deny: REJECT; RBLSMTPD: REJECT or DEFER; RELAYCLIENT: OK in the relay check; "
            "CHKUSER_RCPTLIMIT, CHKUSER_WRONGRCPTLIMIT: chkuser's replies; DATABYTES: 552). "
            "Without --listen, serve the client on standard input/output (Postfix spawn(8)). "
            "The rules file is reloaded when it is replaced and on SIGHUP; SIGTERM stops."
        ),
        epilog=(
            "Exit codes: 0 stopped by SIGTERM/SIGINT or the client closed, 100 bad usage, "
            "111 the rules file cannot be read or a socket cannot be made. "
            "The mapping and the Postfix configuration: docs/policyd.md, \"What Postfix is told\", "
            "\"Postfix configuration\"."
        ),
    )
    p.add_argument("cdb", metavar="CDB", help="the compiled rules file (e.g. /etc/tcp.smtp.cdb)")
    p.add_argument("--listen", metavar="SPEC", action="append", default=[],
                   help="inet:HOST:PORT, inet:[IPV6]:PORT, unix:PATH, or systemd (socket activation); repeatable")
    p.add_argument("--reject-text", metavar="TEXT", default="Access denied",
                   help="the text of the REJECT for a client the rules deny (default: %(default)s)")
    p.add_argument("--relay-context", metavar="NAME", default="relay",
                   help="the policy_context of the relay check, where RELAYCLIENT gives OK (default: %(default)s)")
    p.add_argument("--valid-context", metavar="NAME", default=None,
                   help="the policy_context of a call placed after Postfix's recipient checks; "
                        "enables CHKUSER_WRONGRCPTLIMIT (default: off)")
    p.add_argument("--sessions", metavar="N", type=_count, default=10000,
                   help="SMTP connections whose recipient counters are kept (default: %(default)s)")
    p.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=10.0,
                   help="longest time a request may take to arrive; 0: no limit (default: %(default)s)")
    p.add_argument("--idle-timeout", metavar="SECONDS", type=_seconds, default=1000.0,
                   help="longest wait for the next request on a connection; 0: no limit (default: %(default)s)")
    p.add_argument("--reload-interval", metavar="SECONDS", type=_seconds, default=1.0,
                   help="how often at most the rules file is checked for a replacement; 0: before "
                        "every request, as tcpserver reopens it for every connection (default: %(default)s)")
    p.add_argument("--socket-mode", metavar="MODE", type=_mode, default=0o666,
                   help="permissions of a unix: socket, octal (default: 666)")
    p.add_argument("-X", "--missing-ok", action="store_true",
                   help="a missing rules file means no rules, like tcpserver -X")
    p.add_argument("--log", metavar="DEST", default=None,
                   help="stderr, syslog, or a file (default: stderr with --listen, syslog without, "
                        "since spawn(8) connects standard error to Postfix)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every answer")
    p.set_defaults(run=run)


def _setup_log(dest: str) -> None:
    handler: logging.Handler
    if dest == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("cdbrules: %(message)s"))
    elif dest == "syslog":
        address: Any = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(address, facility=logging.handlers.SysLogHandler.LOG_MAIL)
        handler.setFormatter(logging.Formatter(f"cdbrules[{os.getpid()}]: %(message)s"))
    else:
        handler = logging.FileHandler(dest)
        handler.setFormatter(logging.Formatter("%(asctime)s cdbrules[%(process)d]: %(message)s"))
    root = logging.getLogger("cdbrules")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def run(ns: argparse.Namespace) -> int:
    from ..policyd import PolicyServer, RulesPolicy, parse_listen, run as serve
    from ..rules import Rules

    try:
        specs = [parse_listen(s) for s in ns.listen]
    except ValueError as e:
        say(f"policyd: --listen: {e}")
        return EXIT_PERM
    dest = ns.log or ("stderr" if specs else "syslog")
    try:
        _setup_log(dest)
    except OSError as e:
        say(f"fatal: unable to open the log {dest}: {errstr(e)}")
        return EXIT_TEMP
    try:
        rules = Rules(ns.cdb, missing_ok=ns.missing_ok, reload_interval=ns.reload_interval)
    except CdbFormatError as e:
        say(f"fatal: {e}")
        return EXIT_TEMP
    except OSError as e:
        say(f"fatal: unable to read {ns.cdb}: {errstr(e)}")
        return EXIT_TEMP
    try:
        policy = RulesPolicy(rules, reject_text=ns.reject_text, relay_context=ns.relay_context,
                             valid_context=ns.valid_context, sessions=ns.sessions)
    except ValueError as e:
        say(f"policyd: {e}")
        return EXIT_PERM
    server = PolicyServer(policy, timeout=ns.timeout or None, idle_timeout=ns.idle_timeout or None,
                          verbose=ns.verbose)
    log = logging.getLogger("cdbrules.policyd")

    def ready(names: List[str]) -> None:
        for n in names:
            log.info("policyd: listening on %s, rules %s", n, rules.path)

    try:
        with rules:
            asyncio.run(serve(server, rules, specs, ns.socket_mode, ready))
    except OSError as e:
        if e.filename is None and specs:
            say(f"fatal: unable to listen on {' '.join(ns.listen)}: {errstr(e)}")
        else:
            say(f"fatal: {'' if e.filename is None else os.fsdecode(e.filename) + ': '}{errstr(e)}")
        return EXIT_TEMP
    return EXIT_OK
