"""``cdbrules check CDB [IP [HOST [INFO]]]``: a drop-in for ``tcprulescheck CDB``.

Standard output and exit codes are tcprulescheck's, byte for byte (docs/lookup.md, "What
tcprulescheck prints"), which prints a rule's data the way tcprulescheck walks it: it stops
at the first ``D`` entry and shows ``+`` entries as they are, ``=`` or not.  ``--json``
prints the decision tcpserver makes instead (:class:`cdbrules.Decision`), and ``--explain``
every key tried, in order.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CdbFormatError, RulesTextError, djb_strerror
from ..rules import Decision, Rules, data_entries
from . import COMMANDS
from ._common import EXIT_OK, EXIT_TEMP, say


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help=COMMANDS["check"].help,
        description=(
            "Look a connection up in a compiled rules file as tcpserver does and print the "
            "result exactly as tcprulescheck prints it. Without IP, the connection is taken "
            "from the environment like tcprulescheck does: TCPREMOTEIP (0.0.0.0 when unset), "
            "TCPREMOTEHOST and TCPREMOTEINFO (absent when unset). With IP, HOST and INFO come "
            "from the command line (absent when not given; an empty argument is present)."
        ),
        epilog=(
            "Exit codes: 0 when the file could be read (whether the connection is allowed or "
            "denied), 100 bad usage, 111 the file cannot be read or is not a valid cdb."
        ),
    )
    p.add_argument("cdb", metavar="CDB", help="the compiled rules file (e.g. /etc/tcp.smtp.cdb)")
    p.add_argument("ip", metavar="IP", nargs="?", help="the client address as tcpserver writes it in TCPREMOTEIP")
    p.add_argument("host", metavar="HOST", nargs="?", help="the client's TCPREMOTEHOST")
    p.add_argument("info", metavar="INFO", nargs="?", help="the client's TCPREMOTEINFO (ident)")
    p.add_argument("--json", action="store_true",
                   help="print the decision tcpserver makes as one JSON object instead")
    p.add_argument("--explain", action="store_true",
                   help="list every key tried, in order, and the one that matched")
    p.set_defaults(run=run)


def tcprulescheck_output(d: Decision) -> bytes:
    """What tcprulescheck prints for decision d (its raw record), byte for byte."""
    if d.key is None:
        return b"default:\nallow connection\n"
    out = [b"rule ", d.key, b":\n"]
    for e in data_entries(d.data):
        if e[:1] == b"D":
            out.append(b"deny connection\n")
            return b"".join(out)
        if e[:1] == b"+":
            out += [b"set environment variable ", e[1:], b"\n"]
    out.append(b"allow connection\n")
    return b"".join(out)


def _connection(ns: argparse.Namespace) -> Tuple[bytes, Optional[bytes], Optional[bytes]]:
    """IP, HOST and INFO as bytes, from argv or from the environment like tcprulescheck."""
    if ns.ip is not None:
        host = None if ns.host is None else os.fsencode(ns.host)
        info = None if ns.info is None else os.fsencode(ns.info)
        return os.fsencode(ns.ip), host, info
    env = os.environb
    return env.get(b"TCPREMOTEIP", b"0.0.0.0"), env.get(b"TCPREMOTEHOST"), env.get(b"TCPREMOTEINFO")


def _text(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "surrogateescape")


def _explain_lines(probes: List[Tuple[bytes, bool]]) -> bytes:
    lines = [b"probe " + (k or b'"" (the default rule)') + (b": match\n" if hit else b": no rule\n")
             for k, hit in probes]
    if not probes or not probes[-1][1]:
        lines.append(b"no key matched: the default applies\n")
    return b"".join(lines)


def _json(d: Decision, ip: bytes, host: Optional[bytes], info: Optional[bytes],
          probes: Optional[List[Tuple[bytes, bool]]]) -> bytes:
    obj: Dict[str, Any] = {
        "ip": _text(ip),
        "host": _text(host),
        "info": _text(info),
        "rule": d.rule,
        "allowed": d.allowed,
        "env": dict(d.env),
    }
    if probes is not None:
        obj["probes"] = [{"key": _text(k), "matched": hit} for k, hit in probes]
    # ensure_ascii: bytes that are not UTF-8 come out as \\udcXX escapes, never as bad output
    return json.dumps(obj).encode("ascii") + b"\n"


def run(ns: argparse.Namespace) -> int:
    ip, host, info = _connection(ns)
    try:
        with Rules(ns.cdb, reload_interval=None) as rules:
            # exact: the text as given, byte for byte, as tcprulescheck uses it
            d = rules.check(ip, host, info, exact=True)
            probes = rules.explain(ip, host, info, exact=True) if ns.explain else None
    except RulesTextError as e:  # say what to do instead of "protocol error"
        say(f"fatal: unable to read {ns.cdb}: {e.detail}")
        return EXIT_TEMP
    except (CdbFormatError, IsADirectoryError):
        # tcprulescheck: EPROTO for a damaged file (it crashes on a directory; a clean
        # reimplementation says protocol error there too: docs/compatibility.md, "Checking and lookups")
        return _unreadable(ns.cdb, errno.EPROTO)
    except OSError as e:
        return _unreadable(ns.cdb, e.errno)
    if ns.json:
        out = _json(d, ip, host, info, probes)
    else:
        out = (_explain_lines(probes) if probes is not None else b"") + tcprulescheck_output(d)
    sys.stdout.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _unreadable(path: str, code: Optional[int]) -> int:
    say(f"fatal: unable to read {path}: {djb_strerror(code)}")
    return EXIT_TEMP
