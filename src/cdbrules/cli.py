"""The ``cdbrules`` command: one subcommand per module in :mod:`cdbrules.commands`.

Exit codes follow djb's tools: 0 success, 100 for a permanent error (bad usage, a bad
rules line, a bad cdb file where the classic tool says so), 111 for a temporary or
system error.  Messages are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, NoReturn, Optional, Sequence, Tuple

from . import __version__
from .commands import COMMANDS, register
from .commands._common import EXIT_TEMP, EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 100 with one usage line, as djb's tools do.

    A subcommand's options may come anywhere among its arguments (``check CDB --json
    IP``): its parser reads them intermixed, unless ``--`` is given.  The top parser,
    which holds the subcommands, cannot (argparse refuses intermixed parsing there) and
    need not.
    """

    intermixed = True
    _mixing = False

    def parse_known_args(self, args: Optional[Sequence[str]] = None,  # type: ignore[override]
                         namespace: Optional[argparse.Namespace] = None) -> Tuple[argparse.Namespace, List[str]]:
        if not self.intermixed or self._mixing:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls back into parse_known_args on some Pythons
        self._mixing = True
        try:
            if args is not None and "--" in args:
                # after "--" everything is an argument (get CDB -- -KEY); intermixed
                # parsing would drop the "--" and read -KEY as an option again
                ns, extra = super().parse_known_args(args, namespace)
            else:
                ns, extra = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False
        if extra:  # said here, with this subcommand's usage line, not the top parser's
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        for a in self._actions:
            # argparse before 3.13 turns a literal "--" after "--" into [] (get CDB -- --)
            if not a.option_strings and a.nargs in (None, "?") and getattr(ns, a.dest, None) == []:
                setattr(ns, a.dest, "--")
        return ns, extra

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: usage: {self.format_usage().strip().removeprefix('usage: ')}\n")
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser(args: Sequence[str] = ()) -> Parser:
    """The parser; only the command named in args (if any) is loaded in full."""
    chosen = next((a for a in args if not a.startswith("-")), None)
    p = Parser(
        prog="cdbrules",
        description="Compile and check tcpserver access rules (the tcprules format) and cdb files.",
        epilog="Exit codes: 0 success, 100 permanent error (usage, bad rules), 111 system error.",
    )
    p.intermixed = False
    p.add_argument("--version", action="version", version=f"cdbrules {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, cmd in COMMANDS.items():
        if name == chosen:
            register(name, sub)
        else:
            sub.add_parser(name, help=cmd.help, add_help=False)
    return p


def fatal(prog: str, message: str, code: int = EXIT_TEMP) -> int:
    sys.stderr.write(f"{prog}: fatal: {message}\n")
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args)
    ns = parser.parse_args(args)
    if not ns.command:  # a bare "cdbrules": what there is to run, as --help says it
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc: int = ns.run(ns)
    except KeyboardInterrupt:
        return fatal("cdbrules", "interrupted")
    except MemoryError as e:
        return fatal("cdbrules", str(e) or "out of memory")
    except BrokenPipeError:
        # the reader of our output went away (cdbrules dump | head): not our error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_TEMP
    return rc
