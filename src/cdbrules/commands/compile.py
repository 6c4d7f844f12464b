"""``cdbrules compile CDB TMP [RULES]``: a drop-in for ``tcprules CDB TMP < RULES``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from ..compiler import compile as compile_rules
from ..errors import RulesSyntaxError, UnsafeTmpError
from . import COMMANDS
from ._warnings import Watch
from ._common import EXIT_OK, EXIT_PERM, EXIT_TEMP, say, system_error


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compile",
        help=COMMANDS["compile"].help,
        description=(
            "Read rules in the tcprules format from RULES (standard input when absent) and "
            "write them to TMP, then rename TMP over CDB: the same file tcprules writes, "
            "byte for byte. IPv6 addresses work as in ucspi-tcp-ipv6 (the rule's ':' is the "
            "one before allow or deny). On any error CDB is left as it was and the message "
            "names the line and what is wrong with it."
        ),
        epilog=(
            "Example: cdbrules compile /etc/tcp.smtp.cdb /etc/tcp.smtp.tmp /etc/tcp.smtp. "
            "Exit codes: 0 done, 100 a bad rules line or bad usage, 111 a system error."
        ),
    )
    p.add_argument("cdb", metavar="CDB", help="the rules file tcpserver reads (e.g. /etc/tcp.smtp.cdb)")
    p.add_argument("tmp", metavar="TMP", help="temporary file in the same directory (e.g. /etc/tcp.smtp.tmp)")
    p.add_argument("rules", metavar="RULES", nargs="?", help="rules text (default: standard input)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also name every skipped line and every line that repeats a key, and count lines, "
                        "rules, records and distinct keys")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print no warnings about rules that silently do nothing, or something else than they seem "
                        "to (docs/lint.md lists them)")
    p.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    stdin = ns.rules is None or ns.rules == "-"
    watch: Optional[Watch] = None
    try:
        if stdin:
            if sys.stdin is None:
                say("fatal: unable to read standard input: it is closed")
                return EXIT_TEMP
            if sys.stdin.isatty():
                say("compile: no RULES given and standard input is a terminal: "
                    "name the rules file (cdbrules compile CDB TMP RULES) or redirect standard input")
                return EXIT_PERM
            watch = None if ns.quiet else Watch(sys.stdin.buffer, "<stdin>", ns.verbose)
            stats = compile_rules(watch.source() if watch is not None else sys.stdin.buffer, ns.cdb, ns.tmp)
        elif ns.quiet:
            stats = compile_rules(ns.rules, ns.cdb, ns.tmp)
        else:
            with open(ns.rules, "rb", buffering=0) as f:
                watch = Watch(f, ns.rules, ns.verbose)
                stats = compile_rules(watch.source(), ns.cdb, ns.tmp)
    except RulesSyntaxError as e:
        say(str(e))  # "tcp.smtp:12: what is wrong", or "line 12: ..." for standard input
        return EXIT_PERM
    except UnsafeTmpError as e:  # TMP is CDB, the rules, or another file worth keeping
        say(str(e))
        return EXIT_PERM
    except OSError as e:
        say(f"fatal: {system_error(e, ns.tmp)}")
        return EXIT_TEMP
    if watch is not None:
        for line in watch.report(stdin):
            say(line)
    if ns.verbose:
        summary = watch.summary(stats) if watch is not None else None
        say(f"{summary or f'{stats.lines} lines, {stats.rules} rules, {stats.keys} keys'} written to {ns.cdb}")
    return EXIT_OK

