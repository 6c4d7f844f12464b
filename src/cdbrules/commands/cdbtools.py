"""``cdbrules make|dump|get|stats``: djb's cdb tools, as freecdb ships them.

* ``make CDB TMP < INPUT``: ``cdbmake``; INPUT is ``+KLEN,DLEN:KEY->DATA`` lines and an
  empty line; the same file cdbmake writes, byte for byte.
* ``dump CDB``: ``cdbdump < CDB``; prints every record in that format.
* ``get CDB KEY [SKIP]``: ``cdbget KEY [SKIP] < CDB``; prints the value, no newline.
* ``stats CDB``: ``cdbstats < CDB``; the record count and the distance histogram.

Standard output and exit codes are the classic tools' (0, 100 for bad usage or a key
that is absent, 111 for anything else), also on damaged files.  Messages keep the
classic wording, name the file, and say where the problem is.  The per-record work
(parsing, formatting, probing) is C; this module decodes and reports.
"""

from __future__ import annotations

import argparse
import os
from types import ModuleType
from typing import Any, Callable, NoReturn, Optional, Tuple

from .._bindings import DumpError, Failed, StatsError, cdb_dump, cdb_find_all, cdb_stats
from ..cdbmake import make as make_cdb
from ..errors import CdbFormatError, MakeInputError, SameFileError
from ..reader import read_cdb
from . import COMMANDS
from ._common import EXIT_OK, EXIT_PERM, EXIT_TEMP, errstr as _errstr, say, system_error, write_out as _write_out

__all__ = ["dump", "get", "make", "stats"]

_OUTBUF = 1 << 20
_SKIP_MOD = 1 << 64


def _usage(ns: argparse.Namespace, message: str) -> NoReturn:
    """A usage error found after parsing: the parser's usage line and message, exit 100."""
    parser: argparse.ArgumentParser = ns.parser  # cli.Parser: error() exits 100
    parser.error(message)


def _open(path: str, short: str) -> Tuple[Any, Any, Optional[int]]:
    """Read the cdb at path: (its bytes, struct cdb, None), or (None, None, exit code) after a message.

    short is what the classic tool says of a file too short to hold a header.
    """
    try:
        mm, c, _buf, _, _ = read_cdb(path)
    except CdbFormatError as e:
        # too short for a header: what the classic tool says of that, and why
        word = short if "too short" in e.detail else "not a cdb file"
        say(f"fatal: unable to read {path}: {word} ({e.detail})")
        return None, None, EXIT_TEMP
    except OSError as e:
        say(f"fatal: unable to read {path}: {_errstr(e)}")
        return None, None, EXIT_TEMP
    return (mm, _buf), c, None


# -- make ----------------------------------------------------------------------------------


def _run_make(ns: argparse.Namespace) -> int:
    if not ns.cdb or not ns.tmp:
        _usage(ns, "CDB and TMP must not be empty")
    try:
        make_cdb(0, ns.cdb, ns.tmp)
    except MakeInputError as e:
        say(f"fatal: unable to read input: entry {e.entry} at offset {e.offset}: {e.reason}")
        return EXIT_TEMP  # cdbmake's code for bad input
    except SameFileError as e:
        say(str(e))
        return EXIT_PERM
    except OSError as e:
        say(f"fatal: {system_error(e, ns.tmp)}")
        return EXIT_TEMP
    return EXIT_OK


# -- dump ----------------------------------------------------------------------------------


def _run_dump(ns: argparse.Namespace) -> int:
    keep, c, rc = _open(ns.cdb, "truncated file")
    if rc is not None:
        return rc
    try:
        for piece in cdb_dump(c, _OUTBUF):
            rc = _write_out(piece)
            if rc is not None:
                return rc
    except DumpError as e:
        say(f"fatal: unable to read {ns.cdb}: truncated file (entry {e.records}, "
            f"at offset {e.pos}, runs past the end of the file)")
        return EXIT_TEMP
    del keep
    return EXIT_OK


# -- get -----------------------------------------------------------------------------------


def _run_get(ns: argparse.Namespace) -> int:
    skip_text = ns.skip if ns.skip is not None else ""
    if not all("0" <= ch <= "9" for ch in skip_text):
        _usage(ns, f"SKIP must be a number of records, not {skip_text!r}")
    skip = int(skip_text or "0") % _SKIP_MOD  # cdbget counts modulo 2^64
    key = os.fsencode(ns.key)
    keep, c, rc = _open(ns.cdb, "protocol error")
    if rc is not None:
        return rc
    try:
        for dpos, dlen in cdb_find_all(c, key):
            if not skip:
                rc = _write_out(keep[0][dpos:dpos + dlen])
                return EXIT_OK if rc is None else rc
            skip -= 1
    except Failed:
        say(f"fatal: unable to read {ns.cdb}: protocol error (an offset or length points outside the file)")
        return EXIT_TEMP
    return EXIT_PERM  # absent, or fewer than SKIP + 1 records: nothing printed


# -- stats ---------------------------------------------------------------------------------

_LABELS = ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", ">9"]


def _run_stats(ns: argparse.Namespace) -> int:
    keep, c, rc = _open(ns.cdb, "truncated file")
    if rc is not None:
        return rc
    try:
        records, dist = cdb_stats(c)
    except StatsError as e:
        if e.truncated:
            why = "truncated file"
            detail = "runs past the end of the file or is missing from its hash table"
        else:
            why = "protocol error"
            detail = "its hash table points outside the file"
        say(f"fatal: unable to read {ns.cdb}: {why} (the record at offset {e.pos} {detail})")
        return EXIT_TEMP
    del keep
    lines = [f"{'records':<8}{records:>10}\n"]
    lines += [f"{label:<8}{n:>10}\n" for label, n in zip(_LABELS, dist)]
    rc = _write_out("".join(lines).encode("ascii"))
    return EXIT_OK if rc is None else rc


# -- registration --------------------------------------------------------------------------

_EXITS = "Exit codes: 0 done, 100 bad usage{}, 111 a bad file or a system error."


def _register_make(sub: Any) -> None:
    p = sub.add_parser(
        "make",
        help=COMMANDS["make"].help,
        description=(
            "Read records '+KLEN,DLEN:KEY->DATA' (one a line, then an empty line) from standard "
            "input, write them to TMP, then rename TMP over CDB: the same file cdbmake writes, "
            "byte for byte, duplicates kept. On any error CDB is left as it was and TMP removed."
        ),
        epilog=_EXITS.format(""),
    )
    p.add_argument("cdb", metavar="CDB", help="the cdb file to create or replace")
    p.add_argument("tmp", metavar="TMP", help="temporary file in the same directory")
    p.set_defaults(run=_run_make, parser=p)


def _register_dump(sub: Any) -> None:
    p = sub.add_parser(
        "dump",
        help=COMMANDS["dump"].help,
        description=(
            "Print every record of CDB in file order as '+KLEN,DLEN:KEY->DATA', then an empty "
            "line: exactly what cdbdump prints, and what 'cdbrules make' reads."
        ),
        epilog=_EXITS.format(""),
    )
    p.add_argument("cdb", metavar="CDB", help="the cdb file")
    p.set_defaults(run=_run_dump, parser=p)


def _register_get(sub: Any) -> None:
    p = sub.add_parser(
        "get",
        help=COMMANDS["get"].help,
        description=(
            "Print the value of the first record with KEY in CDB, as is (no newline added). "
            "With SKIP, skip that many records with KEY first. Prints nothing and exits 100 "
            "when there is no such record."
        ),
        epilog=_EXITS.format(" or no such record"),
    )
    p.add_argument("cdb", metavar="CDB", help="the cdb file")
    p.add_argument("key", metavar="KEY", help="the key (may be empty: '')")
    p.add_argument("skip", metavar="SKIP", nargs="?", help="records with KEY to skip (default 0)")
    p.set_defaults(run=_run_get, parser=p)


def _register_stats(sub: Any) -> None:
    p = sub.add_parser(
        "stats",
        help=COMMANDS["stats"].help,
        description=(
            "Print the number of records in CDB and how many of them sit 0, 1, ... 9 or more "
            "slots past the slot where their lookup starts: exactly what cdbstats prints."
        ),
        epilog=_EXITS.format(""),
    )
    p.add_argument("cdb", metavar="CDB", help="the cdb file")
    p.set_defaults(run=_run_stats, parser=p)


class _Command(ModuleType):
    """One subcommand, in the shape commands/__init__.py expects of a module: ``register(sub)``."""

    def __init__(self, name: str, register: Callable[[Any], None]) -> None:
        super().__init__(f"{__name__}.{name}")
        self.register = register


make = _Command("make", _register_make)
dump = _Command("dump", _register_dump)
get = _Command("get", _register_get)
stats = _Command("stats", _register_stats)
