"""``cdbrules diff [--json] [--ip IP...] OLD NEW``: what changes between two rule sets."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from ..decompiler import rule_text
from ..rules import Decision
from ..rulesdiff import IpChange, KeyChange, RulesDiff, diff, variable_changes
from . import COMMANDS
from ._common import EXIT_OK, failed, print_text

EXIT_DIFFERENT = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help=COMMANDS["diff"].help,
        description=(
            "Compare two rule sets, each a compiled rules file or rules text: the keys whose "
            "rule is added ('+'), removed ('-') or changed ('~': allow/deny, each variable), "
            "removed and changed ones in the old file's order, then added ones in the new "
            "file's. A key's rule is its first record, the one tcpserver uses. With --ip, "
            "say instead which of those clients get another decision."
        ),
        epilog="Exit codes: 0 no difference, 1 differences, 100 a bad rules line (or bad usage), 111 a file cannot be read.",
    )
    p.add_argument("old", metavar="OLD", help="the old rules (a cdb file or rules text)")
    p.add_argument("new", metavar="NEW", help="the new rules (a cdb file or rules text)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cidr", action="store_true", help="compile rules text as compile --cidr does")
    p.add_argument("--ip", metavar="IP", nargs="+", default=[],
                   help="client addresses (as tcpserver writes them) whose decision to compare")
    p.set_defaults(run=run)


def _q(s: Optional[str]) -> str:
    return "unset" if s is None else json.dumps(s)


def _rule(d: Decision) -> str:
    assert d.key is not None
    try:
        return rule_text(d.key, d.data).decode("utf-8", "surrogateescape")
    except ValueError:
        return f"{d.key!r} {d.data!r}"


def _change_line(c: KeyChange) -> str:
    if c.new is None:
        assert c.old is not None
        return f"- {_rule(c.old)}"
    if c.old is None:
        return f"+ {_rule(c.new)}"
    parts: List[str] = []
    if c.old.allowed != c.new.allowed:
        parts.append("allow -> deny" if c.old.allowed else "deny -> allow")
    if c.new.allowed:
        parts += [f"{name} {_q(a)} -> {_q(b)}" for name, a, b in variable_changes(c.old, c.new)]
    key = c.key.decode("utf-8", "surrogateescape")
    return f"~ {key}: {'; '.join(parts)}"


def _ip_line(c: IpChange) -> str:
    def say_(d: Decision) -> str:
        rule = "no rule" if d.rule is None else f"rule {json.dumps(d.rule)}"
        env = "".join(f",{k}={json.dumps(v)}" for k, v in d.env.items())
        return f"{'allow' if d.allowed else 'deny'}{env} ({rule})"
    return f"{c.ip}: {say_(c.old)} -> {say_(c.new)}"


def _decision(d: Optional[Decision]) -> Optional[Dict[str, Any]]:
    if d is None:
        return None
    return {"rule": d.rule, "allowed": d.allowed, "env": dict(d.env)}


def _json(r: RulesDiff, ns: argparse.Namespace) -> str:
    obj: Dict[str, Any] = {
        "old": ns.old,
        "new": ns.new,
        "changes": [{"key": c.key.decode("utf-8", "surrogateescape"), "kind": c.kind,
                     "old": _decision(c.old), "new": _decision(c.new)} for c in r.changes],
    }
    if ns.ip:
        obj["ips"] = [{"ip": c.ip, "changed": c.changed, "old": _decision(c.old), "new": _decision(c.new)}
                      for c in r.ips]
    return json.dumps(obj) + "\n"


def run(ns: argparse.Namespace) -> int:
    try:
        r = diff(ns.old, ns.new, ips=ns.ip, cidr=ns.cidr)
    except (OSError, ValueError) as e:  # (ValueError: a bad rules line, a damaged cdb, an IP with a NUL)
        return failed(e, "diff")
    if ns.json:
        out = _json(r, ns)
        different = r.different if ns.ip else bool(r.changes)
    elif ns.ip:
        lines = [_ip_line(c) for c in r.ips if c.changed]
        out = "".join(f"{x}\n" for x in lines)
        different = bool(lines)
    else:
        out = "".join(f"{_change_line(c)}\n" for c in r.changes)
        if out:
            out = f"--- {ns.old}\n+++ {ns.new}\n{out}"
        different = bool(r.changes)
    return print_text(out, EXIT_DIFFERENT if different else EXIT_OK)
