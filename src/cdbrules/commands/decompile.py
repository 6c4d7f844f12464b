"""``cdbrules decompile CDB``: rules text that compiles back into the same file."""

from __future__ import annotations

import argparse
from typing import Any

from ..decompiler import DecompileError, decompile
from . import COMMANDS
from ._common import EXIT_PERM, failed, print_text, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "decompile",
        help=COMMANDS["decompile"].help,
        description=(
            "Print rules text for a compiled rules file (written by tcprules or cdbrules "
            "compile): one line per record, in file order, consecutive addresses with one "
            "rule as a range. Compiling the text gives the same file, byte for byte. A "
            "record no rules line can produce (a key containing ':allow', a newline, or "
            "starting with '#') is an error naming it, and nothing is printed."
        ),
        epilog="Exit codes: 0 done, 100 a record no rules line can produce (or bad usage), 111 the file cannot be read.",
    )
    p.add_argument("cdb", metavar="CDB", help="the compiled rules file (e.g. /etc/tcp.smtp.cdb)")
    p.add_argument("--no-header", action="store_true", help="leave out the first comment line")
    p.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    try:
        text = decompile(ns.cdb, header=not ns.no_header)
    except DecompileError as e:
        for bad in e.problems:
            say(f"{ns.cdb}: record {bad.record + 1}, key {bad.key!r}: {bad.reason}")
        return EXIT_PERM
    except (OSError, ValueError) as e:  # (ValueError: a damaged cdb file)
        return failed(e, "decompile")
    return print_text(text.decode("utf-8", "surrogateescape"))
