"""``cdbrules lint [--cidr] [--format text|json] [--strict] [RULES...]``: every problem of a rules file."""

from __future__ import annotations

import argparse
import json
from typing import Any, List

from ..linter import Finding, lint
from . import COMMANDS
from ._common import EXIT_OK, EXIT_PERM, failed, open_stdin, print_text, say

EXIT_WARNINGS = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lint",
        help=COMMANDS["lint"].help,
        description=(
            "Read rules in the tcprules format and report every problem, one per line as "
            "FILE:LINE:COLUMN: CODE message: the errors compile would stop at, lines tcprules "
            "skips without a word, keys tcpserver never looks up, variable names no program "
            "reads, repeated keys, relaying opened too wide, Windows line ends and other "
            "encoding traps. Every code is explained in docs/lint.md. A comment line "
            "'# cdbrules: ignore CODE...' silences those codes on the next rule."
        ),
        epilog="Exit codes: 0 no finding, 1 warnings only, 100 errors (or bad usage), 111 a file cannot be read.",
    )
    p.add_argument("rules", metavar="RULES", nargs="*", help="rules files (default: standard input)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: one finding per line (default); json: one JSON array of findings")
    p.add_argument("--cidr", action="store_true",
                   help="the rules are for compile --cidr: a key NET/LEN is a network (E110 when it cannot be one)")
    p.add_argument("--strict", action="store_true",
                   help="also report lines that repeat an earlier rule word for word (W501)")
    p.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    findings: List[Finding] = []
    sources = ns.rules or ["-"]
    for src in sources:
        try:
            if src == "-":
                with open_stdin() as f:
                    if f.isatty():
                        say("lint: no RULES given and standard input is a terminal: name the rules file")
                        return EXIT_PERM
                    findings += lint(f, path="-", strict=ns.strict, cidr=ns.cidr)
            else:
                findings += lint(src, strict=ns.strict, cidr=ns.cidr)
        except OSError as e:
            if e.filename is None and src != "-":
                e.filename = src
            return failed(e, "lint")
    if ns.format == "json":
        out = json.dumps([f.as_dict() for f in findings]) + "\n"
    else:
        out = "".join(f"{f}\n" for f in findings)
    if any(f.severity == "error" for f in findings):
        return print_text(out, EXIT_PERM)
    return print_text(out, EXIT_WARNINGS if findings else EXIT_OK)
