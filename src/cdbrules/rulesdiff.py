"""``diff``: what changes between two rule sets, key by key, and for given clients.

Each side is a compiled rules file or rules text (compiled first, with the compiler).  A
key's rule is its first record, the one tcpserver uses; later records of the same key
change nothing and are not compared.  Two rules are the same when tcpserver does the same
with them: both allow or both deny, and they set the same variables to the same values
(the last setting of a name winning, entries without '=' ignored); the variables of a rule
that denies do not count, since tcpserver never runs the program then.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .compiler import compile as compile_rules
from .errors import CdbFormatError, PathLike
from ._bindings import rules_verify
from .reader import Reader, read_cdb
from .source import scratch_dir
from .rules import Decision, Rules

__all__ = ["IpChange", "KeyChange", "RulesDiff", "diff", "is_cdb"]


class KeyChange(NamedTuple):
    """A key whose rule differs: ``old`` None (added), ``new`` None (removed), or both."""

    key: bytes
    old: Optional[Decision]
    new: Optional[Decision]

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


class IpChange(NamedTuple):
    """What tcpserver decides for a client ``ip`` with the old and the new rules."""

    ip: str
    old: Decision
    new: Decision

    @property
    def changed(self) -> bool:
        return not same(self.old, self.new)


class RulesDiff(NamedTuple):
    changes: List[KeyChange]
    ips: List[IpChange]

    @property
    def different(self) -> bool:
        """True when a key changed or (with ips) a client's decision."""
        return bool(self.changes) or any(c.changed for c in self.ips)


def same(a: Decision, b: Decision) -> bool:
    """tcpserver does the same with both: both deny (the program never runs, whatever the
    variables), or both allow with the same variables (in any order)."""
    return a.allowed == b.allowed and (not a.allowed or dict(a.env) == dict(b.env))


def is_cdb(path: PathLike) -> bool:
    """Whether the file at path is a cdb file (else it is taken for rules text): one that
    reads as a cdb (not rules text, at least a header long) with every hash table and slot
    sound (the check a replacement file passes before :class:`cdbrules.Rules` loads it)."""
    try:
        _, c, _buf, _, _ = read_cdb(path)
    except CdbFormatError:
        return False
    return rules_verify(c)


@contextlib.contextmanager
def _as_cdb(path: PathLike, work: str, tag: str, cidr: bool) -> Iterator[str]:
    if is_cdb(path):
        yield os.fsdecode(path)
        return
    out = os.path.join(work, f"{tag}.cdb")
    compile_rules(path, out, out + ".tmp", cidr=cidr)
    yield out


def _first_records(cdb: str) -> Dict[bytes, bytes]:
    first: Dict[bytes, bytes] = {}
    with Reader(cdb) as r:
        for k, d in r.items():
            first.setdefault(k, d)
    return first


def diff(old: PathLike, new: PathLike, *, ips: Sequence[str] = (), cidr: bool = False) -> RulesDiff:
    """The keys whose rule differs between ``old`` and ``new`` (each a compiled file or rules
    text), removed and changed ones in the old file's order, then added ones in the new
    file's; and for each of ``ips`` what tcpserver decides with either.  ``cidr``: rules
    text is compiled as ``compile --cidr`` compiles it.

    Rules text with a bad line raises :class:`cdbrules.RulesSyntaxError`, a damaged cdb
    :class:`cdbrules.CdbFormatError`, a file that cannot be read OSError."""
    with tempfile.TemporaryDirectory(dir=scratch_dir(), prefix="cdbrules-diff-") as work, \
            _as_cdb(old, work, "old", cidr) as a, _as_cdb(new, work, "new", cidr) as b:
        before, after = _first_records(a), _first_records(b)
        changes: List[KeyChange] = []
        for k, d in before.items():
            was = Decision.from_record(k, d)
            if k not in after:
                changes.append(KeyChange(k, was, None))
                continue
            now = Decision.from_record(k, after[k])
            if not same(was, now):
                changes.append(KeyChange(k, was, now))
        changes += [KeyChange(k, None, Decision.from_record(k, d)) for k, d in after.items() if k not in before]
        probes: List[IpChange] = []
        if ips:
            with Rules(a, reload_interval=None) as ra, Rules(b, reload_interval=None) as rb:
                probes = [IpChange(ip, ra.check(ip, exact=True), rb.check(ip, exact=True)) for ip in ips]
        return RulesDiff(changes, probes)


def variable_changes(old: Decision, new: Decision) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """(name, old value, new value) for every variable set differently (None: not set)."""
    a, b = dict(old.env), dict(new.env)
    names = list(a) + [n for n in b if n not in a]
    return [(n, a.get(n), b.get(n)) for n in names if a.get(n) != b.get(n)]
