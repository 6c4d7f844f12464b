"""``cdbrules compile CDB TMP [RULES]``: a drop-in for ``tcprules CDB TMP < RULES``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._output import SameFileError
from ..compiler import compile as compile_rules
from ..errors import RulesSyntaxError
from ._common import EXIT_OK, EXIT_PERM, os_failure, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compile",
        help="compile tcprules text into a cdb file (drop-in for tcprules)",
        description=(
            "Read rules in the tcprules format from RULES (standard input when absent) and "
            "write them to TMP, then rename TMP over CDB: the same file tcprules writes, "
            "byte for byte. On any error CDB is left as it was."
        ),
        epilog="Exit codes: 0 done, 100 a bad rules line or bad usage, 111 a system error.",
    )
    p.add_argument("cdb", metavar="CDB", help="the rules file tcpserver reads (e.g. /etc/tcp.smtp.cdb)")
    p.add_argument("tmp", metavar="TMP", help="temporary file in the same directory (e.g. /etc/tcp.smtp.tmp)")
    p.add_argument("rules", metavar="RULES", nargs="?", help="rules text (default: standard input)")
    p.add_argument("-v", "--verbose", action="store_true", help="report lines, rules and keys on stderr")
    p.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    try:
        if ns.rules is None or ns.rules == "-":
            stats = compile_rules(sys.stdin.buffer, ns.cdb, ns.tmp)
        else:
            stats = compile_rules(ns.rules, ns.cdb, ns.tmp)
    except RulesSyntaxError as e:
        where = e.source if e.source not in (None, "<stdin>") else "line"
        sep = ":" if where != "line" else " "
        say(f"{where}{sep}{e.lineno}: {e.reason}")
        return EXIT_PERM
    except SameFileError as e:
        say(str(e))
        return EXIT_PERM
    except OSError as e:
        return os_failure(e)
    if ns.verbose:
        say(f"{stats.lines} lines, {stats.rules} rules, {stats.keys} keys written to {ns.cdb}")
    return EXIT_OK
