"""``decompile``: a compiled rules file back into rules text.

Every record becomes a line, in file order, so that ``cdbrules compile`` (and tcprules,
where its build can read the keys) writes the very same file again: the same records in
the same order, duplicates included.  Consecutive records that a range line would write
(``1.2.3.10`` ... ``1.2.3.20`` with one value) become that range.

Each line is checked by handing it to the compiler's own line parser (:mod:`cdbrules.syntax`),
which must give back exactly the record's key and value.  A record that no rules line can
produce (a key containing ``:allow`` or a newline, a key starting with ``#``, a value that
is not a sequence of ``+NAME=VALUE`` entries) is an error naming it.
"""

from __future__ import annotations

import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

from .errors import PathLike
from .reader import Reader
from .syntax import RULE, parse_line

__all__ = ["DecompileError", "decompile", "rule_text"]


class Unwritable(NamedTuple):
    """A record no rules line can produce: its place (from 0) in the file, key and why."""

    record: int
    key: bytes
    reason: str


class DecompileError(ValueError):
    """Records of the file that no rules line can produce (``problems``: every one)."""

    def __init__(self, path: Optional[str], problems: List[Unwritable]) -> None:
        self.path = path
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{path + ': ' if path else ''}record {first.record + 1}, key {first.key!r}: "
                         f"{first.reason}{more}")


# Delimiters for values, in order of preference; never a blank (trailing blanks are trimmed).
_DELIMS = b"\"'/|%#!^~@;+*&$?:.-_=<>()[]{}0123456789" + bytes(c for c in range(0x21, 0x7F)) + \
    bytes(c for c in range(0x80, 0x100)) + bytes(c for c in range(1, 0x20) if c not in (9, 10))
_NUMBER = re.compile(rb"(?:0|[1-9][0-9]{0,2})\Z")


def _instruction(data: bytes) -> bytes:
    """The text after a rule's ':' that gives data ('deny', 'allow,A="1"', ...)."""
    deny = data.startswith(b"D\0")
    rest = data[2:] if deny else data
    if rest and not rest.endswith(b"\0"):
        raise ValueError("the value does not end in a NUL, as every value tcprules writes does")
    out = [b"deny" if deny else b"allow"]
    entries: List[List[bytes]] = []
    for piece in rest.split(b"\0")[:-1] if rest else []:
        if piece.startswith(b"+") and b"=" in piece or not entries:
            entries.append([piece])
        else:  # a NUL inside a value
            entries[-1].append(piece)
    for parts in entries:
        entry = b"\0".join(parts)
        if not entry.startswith(b"+") or b"=" not in entry:
            raise ValueError(f"the value has the entry {entry!r}, which is not +NAME=VALUE")
        name, _, value = entry[1:].partition(b"=")
        delim = next((bytes([d]) for d in _DELIMS if d not in value), None)
        if delim is None:
            raise ValueError("a value holds every byte that could delimit it")
        out.append(b"," + name + b"=" + delim + value + delim)
    return b"".join(out)


def _key_text(key: bytes) -> bytes:
    """The address text that writes key: the key itself, or, when tcprules would read a
    '-' in it as a range, the one-number range A+N-N+B that gives exactly key."""
    if b"-" not in key or b"=" in key or b"@" in key:
        return key
    head = key[:key.index(b"-")]
    labels = head.split(b".")
    start = 0
    # a label of digits before the first '-', followed by a '.', can carry the range
    best = None
    for label in labels[:-1]:
        if _NUMBER.match(label):
            best = (start + len(label), label)  # the last such label reads best
        start += len(label) + 1
    if best is not None:
        at, label = best
        return key[:at] + b"-" + label + key[at:]
    raise ValueError("the key has a '-', so tcprules would read it as a range, and no range writes it")


def rule_text(key: bytes, data: bytes) -> bytes:
    """One rules line (no newline) that writes exactly the record (key, data); ValueError
    saying why when there is none."""
    if b"\n" in key or b"\n" in data:
        raise ValueError("a newline in the record: a rules line cannot hold it")
    line = _key_text(key) + b":" + _instruction(data)
    p = parse_line(line)
    if p.kind != RULE or p.keys != (key,) or p.data != data:
        if b":allow" in key or b":deny" in key:
            why = "the key contains ':allow' or ':deny', where a rules line would end its key"
        elif key.startswith(b"#"):
            why = "the key starts with '#', which makes a rules line a comment"
        else:
            why = "no rules line writes this record"
        raise ValueError(why)
    return line


def _range(keys: List[bytes], prefix: bytes, lo: int, hi: int, data: bytes) -> Optional[bytes]:
    """The range line prefix+LO-HI for the consecutive keys, if the parser agrees."""
    line = prefix + b"%d-%d:" % (lo, hi) + _instruction(data)
    p = parse_line(line)
    return line if p.kind == RULE and p.keys == tuple(keys) and p.data == data else None


_RANGED = re.compile(rb"((?:[^-=@.\n]*\.)+)(0|[1-9][0-9]{0,2})\Z")


def _lines(records: Iterable[Tuple[bytes, bytes]]) -> Tuple[List[bytes], List[Unwritable]]:
    lines: List[bytes] = []
    bad: List[Unwritable] = []
    run: List[Tuple[int, bytes, int]] = []  # (index, key, number): consecutive keys PREFIX+N, one value
    prefix = data = b""

    def one(i: int, key: bytes, value: bytes) -> None:
        try:
            lines.append(rule_text(key, value))
        except ValueError as e:
            bad.append(Unwritable(i, key, str(e)))

    def flush() -> None:
        line = None
        if len(run) > 2:
            try:
                line = _range([k for _, k, _ in run], prefix, run[0][2], run[-1][2], data)
            except ValueError:
                line = None
        if line is not None:
            lines.append(line)
        else:
            for i, k, _ in run:
                one(i, k, data)
        run.clear()

    for i, (key, value) in enumerate(records):
        m = _RANGED.match(key)
        if m and int(m.group(2)) <= 255:
            n = int(m.group(2))
            if run and m.group(1) == prefix and value == data and n == run[-1][2] + 1:
                run.append((i, key, n))
                continue
            flush()
            run.append((i, key, n))
            prefix, data = m.group(1), value
            continue
        flush()
        one(i, key, value)
    flush()
    return lines, bad


def decompile(cdb: PathLike, *, header: bool = True) -> bytes:
    """Rules text for the compiled rules file ``cdb``: compiling it gives the same file,
    byte for byte.  Raises :class:`DecompileError` naming every record no rules line can
    produce, :class:`cdbrules.CdbFormatError` for a damaged file, OSError naming the file."""
    with Reader(cdb) as r:
        lines, bad = _lines(r.items())
    if bad:
        raise DecompileError(str(cdb), bad)
    head = [b"# decompiled by cdbrules: the records in file order, one a line (a range for consecutive"
            b" addresses)"] if header else []
    return b"".join(line + b"\n" for line in head + lines)
