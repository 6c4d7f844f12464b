"""One line of rules text as the compiler reads it: the C parser's answer, in Python.

``parse_line`` hands a line to ``rules_line_parse``, the function the streaming compiler
runs on every line, so the linter, ``explain`` and ``decompile`` see exactly the grammar
``compile`` uses (there is no second parser).  It says what the line is (blank, comment,
skipped, rule or error), where its parts are, the keys it writes (a range expanded) and
the value stored under them.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from ._bindings import rules_line

__all__ = ["BLANK", "COMMENT", "SKIPPED", "RULE", "ERROR", "Item", "Line", "parse_line"]

BLANK, COMMENT, SKIPPED, RULE, ERROR = "blank", "comment", "skipped", "rule", "error"
_KINDS = (BLANK, COMMENT, SKIPPED, RULE, ERROR)


class Item(NamedTuple):
    """``,NAME=dVALUEd``: the columns of the ',', the name, the delimiter and the value."""

    comma: int
    name: bytes
    name_at: int
    delim_at: int
    value: bytes
    value_at: int


class Line(NamedTuple):
    """A parsed line.  Columns count from 0 in ``text`` (the line without its newline).

    * ``kind``: BLANK (empty), COMMENT ('#' first), SKIPPED (no ':' at all: tcprules
      ignores it), RULE or ERROR;
    * ``length``: the line with trailing spaces and tabs removed (what the parser reads);
    * RULE: ``sep`` (the separator ':'; the key is ``text[:sep]``), ``deny``, ``items``,
      ``keys`` (the records' keys, a range expanded; none for an empty range), ``data``
      (the records' value), ``range`` ((lo, dash, hi, bot, top) or None), ``network``
      (compile --cidr reads the address as a network ``NET/LEN``);
    * ERROR: ``code`` (the C ``RULES_E_*``), ``column`` and ``name`` (what the error is about).
    """

    kind: str
    text: bytes
    length: int
    sep: int = 0
    deny: bool = False
    items: Tuple[Item, ...] = ()
    keys: Tuple[bytes, ...] = ()
    data: bytes = b""
    range: Optional[Tuple[int, int, int, int, int]] = None
    network: bool = False
    code: int = 0
    column: int = 0
    name: bytes = b""

    @property
    def key(self) -> bytes:
        """The address as written, before a range is expanded."""
        return self.text[:self.sep]


def parse_line(text: bytes) -> Line:
    """The line ``text`` (without its newline) as ``compile`` reads it."""
    r = rules_line(text)
    kind = _KINDS[r.kind]
    if kind == RULE:
        items = tuple(Item(c, text[n:n + nl], n, d, text[v:v + vl], v) for c, n, nl, d, v, vl in r.items)
        return Line(kind, text, r.length, r.sep, r.deny, items, r.keys, r.data, r.range, r.network)
    if kind == ERROR:
        return Line(kind, text, r.length, code=r.code, column=r.column, name=text[r.name:r.name + r.namelen])
    return Line(kind, text, r.length)

