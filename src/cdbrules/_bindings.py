"""The one boundary to the C core (placeholder until the lead's module lands; merge then)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from ._native import ffi, lib


class RulesLine(NamedTuple):
    """What ``rules_line_parse`` and its helpers say about one line (see csrc/rules_parse.h)."""

    kind: int  # enum rules_kind, from 0
    length: int
    sep: int
    deny: bool
    items: Tuple[Tuple[int, int, int, int, int, int], ...]  # comma, name, namelen, delim, value, valuelen
    keys: Tuple[bytes, ...]
    data: bytes
    range: Optional[Tuple[int, int, int, int, int]]  # lo, dash, hi, bot, top
    code: int
    column: int
    name: int
    namelen: int


def rules_line(text: bytes) -> RulesLine:
    """Parse one line (without its newline) with the compiler's own line parser."""
    s = ffi.from_buffer(text)
    n = len(text)
    ln = ffi.new("struct rules_line *")
    kind = lib.rules_line_parse(s, n, ln)
    if kind != lib.RULES_LINE_RULE:
        return RulesLine(kind, ln.len, 0, False, (), (), b"", None, ln.code, ln.column, ln.name, ln.namelen)
    items = []
    it = ffi.new("struct rules_item *")
    pos = ffi.new("size_t *", ln.items)
    code = ffi.new("int *")
    column = ffi.new("size_t *")
    while lib.rules_item_next(s, ln.len, pos, it, code, column) > 0:
        items.append((it.comma, it.name, it.namelen, it.delim, it.value, it.valuelen))
    data = ffi.new("unsigned char[]", ln.datalen + 1)
    dlen = lib.rules_line_data(s, ln, data)
    key = ffi.new("unsigned char[]", ln.sep + 3)
    rng = None
    if ln.range:
        rng = (ln.rlo, ln.rdash, ln.rhi, ln.bot, ln.top)
        keys = tuple(ffi.buffer(key, lib.rules_line_key(s, ln, v, key))[:] for v in range(ln.bot, ln.top + 1))
    else:
        keys = (text[:ln.sep],)
    return RulesLine(kind, ln.len, ln.sep, bool(ln.deny), tuple(items), keys, ffi.buffer(data, dlen)[:], rng,
                     0, 0, 0, 0)


#: The longest rules line compile accepts (csrc/rules_parse.h).
RULES_MAX_LINE: int = lib.RULES_MAX_LINE
