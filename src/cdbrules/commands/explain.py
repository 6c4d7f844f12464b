"""``cdbrules explain RULES... -- IP [HOST [INFO]]``: the line of the rules that decides."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List, Optional

from ..explainer import Explanation, Origin, explain
from ..rules import Decision
from . import COMMANDS
from .compile import add_network_options
from ._common import failed, open_stdin, print_text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help=COMMANDS["explain"].help,
        usage="cdbrules explain [-h] [--json] [--cidr] [--list FILE INSTRUCTION]... RULES... -- IP [HOST [INFO]]",
        description=(
            "Show how tcpserver decides a connection with the rules text RULES (several "
            "files are read as one text): the decision, the file:line that decided and the "
            "key it wrote, every key tcpserver tries in order, and the lines that also "
            "match but lose (a repeated key, a shorter prefix, a host suffix, the default "
            "rule). The text is compiled (with --cidr and --list as compile does) and the "
            "connection looked up in the result, so the decision is always the one of the "
            "compiled file. Options come before RULES. With a single RULES file the '--' may be "
            "left out."
        ),
        epilog=("Example: cdbrules explain /etc/tcp.smtp -- 192.0.2.7 mail.example.org. "
                "Exit codes: 0 done (allowed or denied), 100 a bad rules line or bad usage, "
                "111 a file cannot be read."),
    )
    p.intermixed = False  # everything after RULES is the connection
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_network_options(p)
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="RULES...",
                   help="the rules files, then '--' and the connection as tcpserver sees it: IP [HOST [INFO]]")
    p.set_defaults(run=run, parser=p)


def _env(d: Decision) -> str:
    return "".join(f",{k}={json.dumps(v)}" for k, v in d.env.items())


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _key(k: bytes) -> str:
    return '"" (the default rule)' if k == b"" else _text(k)


def _where(o: Origin) -> Dict[str, Any]:
    return {"path": o.path, "line": o.line, "text": _text(o.text)}


def _plain(x: Explanation) -> str:
    d = x.decision
    out: List[str] = []
    if x.line is None:
        out.append("allow: no key matched, and tcpserver allows such a connection")
    else:
        out.append(f"{'allow' if d.allowed else 'deny'}{_env(d) if d.allowed else ''}")
        out.append(f"decided by {x.line}: {_text(x.line.text)}")
        out.append(f"key: {_key(x.probes[-1].key)}")
    out.append("keys tried, in tcpserver's order:")
    width = max(len(_key(p.key)) for p in x.probes)
    for p in x.probes:
        what = f"{p.lines[0]}  <- match" if p.lines else "no rule"
        out.append(f"  {_key(p.key):<{width}}  {what}")
    if x.lost:
        out.append("also match, but lose:")
        for o, k, why in x.lost:
            because = "the same key, and the first line wins" if why == "shadowed" else f"tcpserver tries {_key(k)} later"
            out.append(f"  {o}: {_text(o.text)}  ({because})")
    return "".join(f"{line}\n" for line in out)


def _json(x: Explanation, ip: str, host: Optional[str], info: Optional[str]) -> str:
    d = x.decision
    return json.dumps({
        "ip": ip, "host": host, "info": info,
        "allowed": d.allowed, "rule": d.rule, "env": dict(d.env),
        "line": None if x.line is None else _where(x.line),
        "probes": [{"key": _text(p.key), "lines": [_where(o) for o in p.lines]} for p in x.probes],
        "lost": [dict(_where(o), key=_text(k), why=why) for o, k, why in x.lost],
    }) + "\n"


def _stdin() -> bytes:
    with open_stdin() as f:
        return f.read()


def run(ns: argparse.Namespace) -> int:
    words: List[str] = ns.words
    if "--" in words:
        i = words.index("--")
        rules, conn = words[:i], words[i + 1:]
    else:
        rules, conn = words[:1], words[1:]
    if not rules or not 1 <= len(conn) <= 3:
        ns.parser.error("expected RULES... -- IP [HOST [INFO]]")
    ip = conn[0]
    host: Optional[str] = conn[1] if len(conn) > 1 else None
    info: Optional[str] = conn[2] if len(conn) > 2 else None
    try:
        x = explain([r if r != "-" else _stdin() for r in rules],
                    os.fsencode(ip), None if host is None else os.fsencode(host),
                    None if info is None else os.fsencode(info), cidr=ns.cidr, lists=[(f, i) for f, i in ns.list])
    except (OSError, ValueError) as e:  # (ValueError: a bad rules line, a NUL in the connection)
        return failed(e, "explain")
    return print_text(_json(x, ip, host, info) if ns.json else _plain(x))
