"""``compile``: tcprules text to a cdb file, byte for byte as tcprules writes it.

The C parser streams the text line by line into the C writer; Python only moves bytes
from the source to the parser and turns a rules error into a sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

from ._native import ffi, lib
from ._output import AtomicOutput, optional_tmp
from .errors import PathLike, RulesSyntaxError
from .writer import CdbMake

__all__ = ["compile", "CompileStats"]

_CHUNK = 1 << 20
Source = Union[PathLike, BinaryIO]


@dataclass(frozen=True)
class CompileStats:
    """What a compile did: ``lines`` read, ``rules`` (lines that were rules), ``keys`` written."""

    lines: int
    rules: int
    keys: int


def _show(b: bytes, limit: int = 40) -> str:
    """Bytes of a rules line for a message: printable ASCII as is, the rest escaped."""
    cut = b[:limit]
    text = "".join(chr(c) if 32 <= c < 127 and c != 0x27 else ("\\'" if c == 0x27 else f"\\x{c:02x}") for c in cut)
    return f"'{text}{'...' if len(b) > limit else ''}'"


def _found(line: bytes, col: int) -> str:
    rest = line[col:]
    return f"found {_show(rest)}" if rest else "found the end of the line"


def _reason(code: int, line: bytes, col: int, name: bytes) -> str:
    """What is wrong, in words an admin can act on."""
    nm = _show(name)
    if code == lib.RULES_E_NOKEYWORD:
        low = line.lower()
        if b":allow" in low or b":deny" in low:
            hint = " (they are lower case)"
        elif b": allow" in line or b": deny" in line:
            hint = " (no space may follow the ':')"
        else:
            hint = ""
        return f"no ':allow' or ':deny' on this line{hint}"
    if code == lib.RULES_E_AFTERKEYWORD:
        kw = "deny" if line[col - 4:col] == b"deny" else "allow"
        hint = " (no space may come before or after ',')" if line[col:col + 1] in (b" ", b"\t") else ""
        return f"expected ',' or the end of the line after '{kw}', {_found(line, col)}{hint}"
    if code == lib.RULES_E_NOEQUALS:
        return f"expected NAME=\"value\" after ',', found {_show(line[col + 1:])} with no '='"
    if code == lib.RULES_E_TRAILINGCOMMA:
        return "nothing follows the last ','"
    if code == lib.RULES_E_NOVALUE:
        return f"no value after {nm[:-1]}='"
    if code == lib.RULES_E_UNTERMINATED:
        d = line[col:col + 1]
        return f"the value of {nm} is not closed: no second {_show(d)} after the first"
    if code == lib.RULES_E_AFTERVALUE:
        hint = " (no space may come before or after ',')" if line[col:col + 1] in (b" ", b"\t") else ""
        return f"expected ',' or the end of the line after the value of {nm}, {_found(line, col)}{hint}"
    if code == lib.RULES_E_RANGE:
        addr = line.split(b":", 1)[0] if b":" in line else line
        hint = ""
        if any(65 <= c <= 90 or 97 <= c <= 122 for c in addr):
            hint = " (a host name needs '=' in front, as in =mail-1.example.com)"
        return f"{_show(addr)} has a '-' but is not a range like 1.2.3.10-20{hint}"
    return "this line cannot be parsed"


def _syntax_error(p: object, source: Optional[str]) -> RulesSyntaxError:
    e = p.err  # type: ignore[attr-defined]
    line = bytes(ffi.buffer(e.line, e.linelen))
    name = line[e.name:e.name + e.namelen]
    return RulesSyntaxError(int(e.lineno), line, int(e.column), _reason(e.code, line, e.column, name), source)


def compile(source: Source, cdb: PathLike, tmp: Optional[PathLike] = None) -> CompileStats:  # noqa: A001
    """Compile rules from source (a path, or a binary file object) into the cdb file at cdb.

    The file is written to tmp (``cdb + ".tmp"`` unless given), fsynced and renamed over
    cdb.  Raises :class:`RulesSyntaxError` for a bad line, :class:`OSError` naming the file
    for a system error; cdb is untouched then and tmp removed.
    """
    if isinstance(source, (str, bytes, os.PathLike)):
        name: Optional[str] = os.fsdecode(source)
        f: BinaryIO = open(source, "rb", buffering=0)  # noqa: SIM115
        owned = True
    else:
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else None
        f, owned = source, False
    try:
        return _compile(f, name, cdb, optional_tmp(cdb, tmp))
    finally:
        if owned:
            f.close()


def _compile(f: BinaryIO, name: Optional[str], cdb: PathLike, tmp: PathLike) -> CompileStats:
    mk = CdbMake(AtomicOutput(cdb, tmp))
    p = ffi.new("struct rules_parser *")
    lib.rules_parser_init(p, mk.m)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    readinto = getattr(f, "readinto", None)
    try:
        while True:
            try:
                if readinto is not None:
                    n = readinto(view)
                    chunk: object = buf
                else:
                    data = f.read(_CHUNK)
                    n, chunk = len(data), data
            except OSError as e:
                if e.filename is None:
                    e.filename = name or "<input>"
                raise
            if not n:
                break
            if lib.rules_feed(p, ffi.from_buffer(chunk), n) < 0:
                _fail(p, mk, name)
        if lib.rules_finish(p) < 0:
            _fail(p, mk, name)
        stats = CompileStats(int(p.lineno), int(p.rules), int(p.keys))
        mk.finish()
        return stats
    except BaseException:
        mk.abort()
        raise
    finally:
        lib.rules_parser_free(p)


def _fail(p: object, mk: CdbMake, name: Optional[str]) -> None:
    if p.err.code:  # type: ignore[attr-defined]  # a rules error, not the writer's
        raise _syntax_error(p, name)
    mk.fail()

