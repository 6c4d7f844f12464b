"""``cdbrules compile [--cidr] [--list FILE INSTRUCTION]... CDB TMP [RULES...]``: a drop-in for
``tcprules CDB TMP < RULES``, plus networks; ``cdbrules expand``: the same as tcprules text."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any, List, Optional, Sequence

from ..compiler import CompileStats, expand
from ..compiler import compile as compile_rules
from ..errors import RulesSyntaxError, UnsafeTmpError
from . import COMMANDS
from ._common import EXIT_OK, EXIT_PERM, EXIT_TEMP, errstr, say, system_error
from ._warnings import Watch, watch_all


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
    p.add_argument("rules", metavar="RULES", nargs="*",
                   help="rules text, read in order as one text (default: standard input; '-': standard input)")
    add_network_options(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="report lines, rules, networks, records and distinct keys on stderr, and name every "
                        "skipped line and every line that repeats a key")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print no warnings about rules that silently do nothing, or something else than they seem "
                        "to (docs/lint.md lists them)")
    p.set_defaults(run=run)


def add_network_options(p: Any, expand: bool = False) -> None:
    if not expand:
        p.add_argument("--cidr", action="store_true",
                       help="a key NET/LEN (such as 10.0.0.0/8 or 2001:db8::/32) means that network "
                            "(docs/networks.md): it is written as the keys tcpserver looks up, and the longest "
                            "network holding a client wins, then the first line")
    p.add_argument("--list", nargs=2, action="append", default=[], metavar=("FILE", "INSTRUCTION"),
                   help="a list of addresses and networks, one a line ('#' or ';' starts a comment), each "
                        "getting INSTRUCTION, such as deny or 'allow,RBLSMTPD=\"-blocked\"' (implies --cidr; "
                        "may be given more than once)")


def register_expand(sub: Any) -> None:
    p = sub.add_parser(
        "expand",
        help=COMMANDS["expand"].help,
        description=(
            "Print the rules as classic tcprules text: networks become the keys "
            "'compile --cidr' writes, one KEY:INSTRUCTION line a record, in its order, so that "
            "'cdbrules expand RULES | tcprules CDB TMP' writes the same file as "
            "'cdbrules compile --cidr CDB TMP RULES' (IPv6 keys need the IPv6 build of tcprules)."
        ),
        epilog="Exit codes: 0 done, 100 a bad rules line or bad usage, 111 a system error.",
    )
    p.add_argument("rules", metavar="RULES", nargs="*", help="rules text (default: standard input)")
    add_network_options(p, expand=True)
    p.add_argument("-v", "--verbose", action="store_true", help="report networks and keys on stderr")
    p.set_defaults(run=run_expand)


def _sources(ns: argparse.Namespace, verb: str) -> Optional[List[Any]]:
    """The RULES arguments, '-' (or none) being standard input; None after saying why not."""
    names = ns.rules or ([] if ns.list else ["-"])
    if names.count("-") > 1:
        say(f"{verb}: standard input ('-') given twice")
        return None
    out: List[Any] = []
    for n in names:
        if n != "-":
            out.append(n)
            continue
        if sys.stdin is None:
            say("fatal: unable to read standard input: it is closed")
            return None
        if sys.stdin.isatty():
            say(f"{verb}: no RULES given and standard input is a terminal: "
                f"name the rules file (cdbrules {verb} ... RULES) or redirect standard input")
            return None
        out.append(sys.stdin.buffer)
    return out


def _report(stats: CompileStats, ns: argparse.Namespace, cidr: bool, watches: Sequence[Watch] = ()) -> None:
    if getattr(ns, "quiet", False):
        return
    for watch in watches:
        for line in watch.report():
            say(line)
    for w in stats.warnings:  # the compiler's own: network keys (lint's W401)
        say(w)
    if not ns.verbose:
        return
    for n in stats.notes:
        say(n)
    for watch in watches:
        summary = watch.summary()
        if summary:
            say(summary)
    if cidr:
        say(f"{stats.networks:,} networks \N{RIGHTWARDS ARROW} {stats.keys:,} keys "
            f"({stats.lines:,} lines, {stats.rules:,} rules and list entries)")
    else:
        say(f"{stats.lines} lines, {stats.rules} rules, {stats.keys} records written to {getattr(ns, 'cdb', '-')}")


def run(ns: argparse.Namespace) -> int:
    sources = _sources(ns, "compile")
    if sources is None:
        return EXIT_TEMP if sys.stdin is None else EXIT_PERM
    lists = [(f, i) for f, i in ns.list]
    try:
        with ExitStack() as opened:
            watches = [] if ns.quiet else watch_all(opened, sources, ns.verbose, ns.cidr or bool(lists))
            stats = compile_rules([w.source() for w in watches] or sources, ns.cdb, ns.tmp, cidr=ns.cidr, lists=lists)
    except RulesSyntaxError as e:
        say(str(e))  # "tcp.smtp:12: what is wrong", or "line 12: ..." for standard input
        return EXIT_PERM
    except UnsafeTmpError as e:  # TMP is CDB, the rules, or another file worth keeping
        say(str(e))
        return EXIT_PERM
    except OSError as e:
        say(f"fatal: {system_error(e, ns.tmp)}")
        return EXIT_TEMP
    _report(stats, ns, ns.cidr or bool(lists), watches)
    return EXIT_OK


def run_expand(ns: argparse.Namespace) -> int:
    sources = _sources(ns, "expand")
    if sources is None:
        return EXIT_TEMP if sys.stdin is None else EXIT_PERM
    try:
        stats = expand(sources, sys.stdout.buffer, lists=[(f, i) for f, i in ns.list])
    except RulesSyntaxError as e:
        say(str(e))
        return EXIT_PERM
    except ValueError as e:
        say(f"expand: {e}")
        return EXIT_PERM
    except OSError as e:
        if e.filename in (None, "<stdout>"):  # writing the text, not reading the rules
            say(f"fatal: unable to write standard output: {errstr(e)}")
        else:
            say(f"fatal: {system_error(e)}")
        return EXIT_TEMP
    _report(stats, ns, True)
    return EXIT_OK


class ExpandCommand:
    """``cdbrules expand``: registered from this module (see commands.COMMANDS)."""

    register = staticmethod(register_expand)
