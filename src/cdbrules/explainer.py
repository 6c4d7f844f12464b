"""``explain``: which line of the rules text decides a connection, and why.

The text is compiled (by the compiler, into a temporary file), and the connection is
looked up in that file as tcpserver does: the keys come from the C probe sequence
(``rules_probe_*``), the decision from :meth:`cdbrules.Rules.check`.  So the decision is
the compiled file's by construction.  The compiler says which source and line wrote each
record (:func:`cdbrules.compiler.compile_origins`), also with ``--cidr`` and lists.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from ._bindings import Failed, exception, rules_probes
from .compiler import compile_origins
from .errors import PathLike
from .reader import Reader, read_cdb
from .source import scratch_dir
from .rules import Decision, Rules, _text

__all__ = ["Explanation", "Origin", "Probe", "explain"]


class Origin(NamedTuple):
    """A line of the rules: the file (``-`` for text given as bytes), its number from 1,
    and its text."""

    path: str
    line: int
    text: bytes

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class Probe(NamedTuple):
    """A key tcpserver tries, and the lines that wrote it (empty: no rule), first first."""

    key: bytes
    lines: Tuple[Origin, ...]


class Explanation(NamedTuple):
    """The decision for a connection, and where it comes from.

    * ``decision``: what tcpserver does (:class:`cdbrules.Decision`);
    * ``line``: the line that decided (the first line that wrote the matched key), or
      None when no key matched (tcpserver then allows);
    * ``probes``: every key tcpserver tries, in order, up to and including the match;
    * ``lost``: the lines that also match this connection but lose, with why: lines
      that wrote the matched key again (``"shadowed"``: the first record wins), and
      lines of keys tcpserver would try later (``"later"``: a shorter prefix, a host
      suffix, ``=``, the default rule).
    """

    decision: Decision
    line: Optional[Origin]
    probes: List[Probe]
    lost: List[Tuple[Origin, bytes, str]]


Sources = Union[PathLike, bytes, Sequence[Union[PathLike, bytes]]]


def _read(sources: Sources) -> List[Tuple[str, bytes]]:
    if isinstance(sources, (bytes, str, os.PathLike)):
        sources = [sources]
    out = []
    for s in sources:
        if isinstance(s, bytes):
            out.append(("-", s))
        else:
            with open(s, "rb") as f:
                out.append((os.fsdecode(s), f.read()))
    return out


def explain(rules: Sources, ip: Union[str, bytes], host: Union[str, bytes, None] = None,
            info: Union[str, bytes, None] = None, *, cidr: bool = False,
            lists: Sequence[Tuple[PathLike, Union[str, bytes]]] = ()) -> Explanation:
    """How tcpserver decides a connection from ``ip`` (TCPREMOTEIP), ``host`` and
    ``info`` (None: absent) with the rules text ``rules`` (a path, the text as bytes, or
    a sequence of them read as one text), traced to the lines of the text.  ``cidr`` and
    ``lists`` ((path, instruction) pairs) are those of :func:`cdbrules.compile`.

    Raises as :func:`cdbrules.compile` (:class:`cdbrules.RulesSyntaxError` for a bad line,
    naming it) and ValueError for a NUL in the connection's text."""
    texts = _read(rules) + _read([path for path, _ in lists])
    nrules = len(texts) - len(lists)
    ipb = _text(ip, "ip")
    hostb = None if host is None else _text(host, "host")
    infob = None if info is None else _text(info, "info")
    # what the compiler reads: the paths themselves (so that messages name them), bytes as they are
    srcs: List[Any] = [io.BytesIO(t) if name == "-" else name for name, t in texts[:nrules]]
    with tempfile.TemporaryDirectory(dir=scratch_dir(), prefix="cdbrules-explain-") as work:
        cdb = os.path.join(work, "rules.cdb")
        _, where = compile_origins(srcs, cdb, cdb + ".tmp", cidr=cidr, lists=list(lists))
        with Rules(cdb, reload_interval=None) as r:
            decision = r.check(ip, host, info, exact=True)  # the text as given, as the probes below
        with Reader(cdb) as rd:
            keys = list(rd.keys())
        _, c, _buf, _, _ = read_cdb(cdb)
        try:
            tried = [k for k, _ in rules_probes(c, ipb, hostb, infob)]
        except Failed as e:  # (the file was just written: cannot happen)
            raise exception(e.code, cdb) from None
    text_of = [t.split(b"\n") for _, t in texts]  # a line by its number (from 1)
    if len(where) != len(keys):
        raise AssertionError(f"explain: {len(where)} origins for {len(keys)} records")
    lines_of: Dict[bytes, List[Origin]] = {}
    for k, (src, n) in zip(keys, where):
        lines_of.setdefault(k, []).append(Origin(texts[src][0], n, text_of[src][n - 1]))
    probes: List[Probe] = []
    lost: List[Tuple[Origin, bytes, str]] = []
    line: Optional[Origin] = None
    for k in tried:
        found = tuple(lines_of.get(k, ()))
        if line is None:
            probes.append(Probe(k, found))
            if found:
                line = found[0]
                lost += [(o, k, "shadowed") for o in found[1:]]
        elif found:
            lost += [(o, k, "later") for o in found]
    matched = probes[-1].key if line is not None else None
    if matched != decision.key:
        raise AssertionError(f"explain: probes matched {matched!r}, the compiled file {decision.key!r}")
    return Explanation(decision, line, probes, lost)
