"""``compile``: tcprules text to a cdb file, byte for byte as tcprules writes it.

The C parser streams the text line by line into the C writer; Python only moves bytes
from the source to the parser and turns a rules error into a sentence.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, NamedTuple, Optional

from . import _bindings as C
from ._bindings import Failed, RulesError, RulesParser
from ._output import optional_tmp, same_file
from .errors import PathLike, RulesSyntaxError, SameFileError, UnsafeTmpError
from .source import Source, open_source, read_chunks
from .writer import CdbMake

__all__ = ["compile", "CompileStats"]


class CompileStats(NamedTuple):
    """What a compile did: ``lines`` read, ``rules`` (lines that were rules), ``keys`` written.

    (A NamedTuple rather than a dataclass: importing dataclasses costs the CLI ~10 ms.)"""

    lines: int
    rules: int
    keys: int


def _show(b: bytes, limit: int = 48) -> str:
    """Bytes of a rules line for a message, quoted: printable ASCII as is, the rest escaped
    (so a NUL, a CR or a very long line prints as one short line)."""
    cut = b[:limit]
    text = "".join(
        "\\'" if c == 0x27 else "\\\\" if c == 0x5C else chr(c) if 32 <= c < 127 else f"\\x{c:02x}" for c in cut
    )
    return f"'{text}{'...' if len(b) > limit else ''}'"


def _found(line: bytes, col: int) -> str:
    rest = line[col:]
    return f"found {_show(rest)}" if rest else "found the end of the line"


def _blank_hint(line: bytes, col: int) -> str:
    if line[col:col + 1] in (b" ", b"\t"):
        return " (items are separated by ',' alone, with no spaces)"
    if line[col:col + 1] == b"\r":
        return " (a CR: the file has DOS line ends)"
    return ""


def _bound(addr: bytes, col: int) -> bytes:
    """The range bound that starts at col: up to the '-' (bottom) or the next '.' (top)."""
    dash = addr.find(b"-")
    if col <= dash:
        return addr[col:dash]
    dot = addr.find(b".", col)
    return addr[col:dot if dot >= 0 else len(addr)]


def _reason(code: int, line: bytes, col: int, name: bytes) -> str:
    """What is wrong with the line, with the text it is about, in words an admin can act on."""
    nm = _show(name)
    if code == C.RULES_E_NOKEYWORD:
        low = line.lower()
        if b":allow" in low or b":deny" in low:
            hint = " (they are lower case)"
        elif b": allow" in line or b": deny" in line:
            hint = " (no space may follow the ':')"
        elif line.endswith(b"\r"):
            hint = " (a CR ends the line: the file has DOS line ends)"
        else:
            hint = ""
        return f"no ':allow' or ':deny' in {_show(line)}{hint}"
    if code == C.RULES_E_AFTERKEYWORD:
        kw = "deny" if line[col - 4:col] == b"deny" else "allow"
        return f"expected ',' or the end of the line after '{kw}', {_found(line, col)}{_blank_hint(line, col)}"
    if code == C.RULES_E_NOEQUALS:
        return f"expected NAME=\"value\" after ',', found {_show(line[col + 1:])} with no '='"
    if code == C.RULES_E_TRAILINGCOMMA:
        return f"nothing follows the last ',' in {_show(line[max(0, col - 40):])}"
    if code == C.RULES_E_NOVALUE:
        return f"no value after {nm[:-1]}=' (an empty value is written {nm[1:-1]}=\"\")"
    if code == C.RULES_E_UNTERMINATED:
        return f"the value of {nm} is not closed: no second {_show(line[col:col + 1])} in {_show(line[col:])}"
    if code == C.RULES_E_AFTERVALUE:
        return (
            f"expected ',' or the end of the line after the value of {nm}, {_found(line, col)}"
            f"{_blank_hint(line, col)}"
        )
    if code == C.RULES_E_RANGE:
        addr = name  # the address, before the separator
        if b":" in addr:
            hint = " (an IPv6 address cannot be a range)"
        elif any(sum(c.isalpha() for c in label.decode("latin-1")) > 1 for label in addr.split(b".")):
            hint = " (a host name needs '=' in front, as in =mail-1.example.com)"
        else:
            hint = ""
        return (
            f"{_show(addr)} has a '-' but {_show(_bound(addr, col))} is not a number: "
            f"a range is written like 1.2.3.10-20{hint}"
        )
    if code == C.RULES_E_LONGLINE:
        return (
            f"the line is longer than {_size(col)}, starting {_show(line, 16)}: rules lines are short "
            "(tcpserver could not even pass such a rule to a program); is this the rules text?"
        )
    return "this line cannot be parsed"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _syntax_error(e: RulesError, source: Optional[str]) -> RulesSyntaxError:
    line = e.line
    name = line[e.name:e.name + e.namelen]
    return RulesSyntaxError(e.lineno, line, e.column, _reason(e.code, line, e.column, name), source)


def compile(source: Source, cdb: PathLike, tmp: Optional[PathLike] = None) -> CompileStats:  # noqa: A001
    """Compile tcprules text from source (a path, a binary file object read to its end, or
    a file descriptor)
    into the cdb file at cdb, byte for byte the file tcprules writes; return what was done.

    The file is written to tmp (``cdb + ".tmp"`` unless given), fsynced and renamed over
    cdb, and cdb's directory fsynced.  On any error cdb is untouched and tmp removed (or,
    if it was there before, emptied).  Raises:

    * :class:`RulesSyntaxError` (a ValueError) for a line tcprules rejects, with
      ``lineno``, ``line`` (bytes), ``column`` and ``reason``;
    * ``UnsafeTmpError`` (a ValueError; ``SameFileError`` when tmp is cdb) when writing tmp
      would destroy cdb, the rules themselves or a text file;
    * :class:`OSError` naming the file (``filename``; ``filename2`` for the rename) for a
      system error.
    """
    f, name, owned = open_source(source)
    try:
        return _compile(f, name, cdb, optional_tmp(cdb, tmp))
    finally:
        if owned:
            f.close()


def _compile(f: BinaryIO, name: Optional[str], cdb: PathLike, tmp: PathLike) -> CompileStats:
    # Messages name the rules file; not a stream's pseudo-name such as "<stdin>".
    where = None if name is None or name.startswith("<") else name
    _check_tmp(f, cdb, tmp)
    mk = CdbMake.open(cdb, tmp)
    p = RulesParser(mk.maker)
    try:
        try:
            for chunk, n in read_chunks(f, name):
                p.feed(chunk, n)
            p.finish()
        except RulesError as e:
            raise _syntax_error(e, where) from None
        except Failed as e:
            mk.fail(e)
        stats = CompileStats(*p.counts())
        mk.finish()
        return stats
    except BaseException:
        mk.abort()
        raise
    finally:
        p.free()


def _check_tmp(f: BinaryIO, cdb: PathLike, tmp: PathLike) -> None:
    """Refuse a TMP whose truncation would destroy something worth keeping.

    TMP is normally absent, empty, or left over from a failed run (which starts with a
    cdb header or its 2048-byte hole, so has a NUL in its first bytes).  A TMP that is the
    rules being read, or a non-empty file with no NUL in its first 2048 bytes (a text file:
    ``cdbrules compile x.cdb tcp.smtp`` names the rules as TMP), is refused."""
    try:
        other = os.stat(tmp)
    except OSError:
        return
    if not stat.S_ISREG(other.st_mode):
        return
    try:
        mine = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    else:
        if stat.S_ISREG(mine.st_mode) and os.path.samestat(mine, other):
            raise SameFileError(f"the rules are read from {os.fsdecode(tmp)}, which is TMP: writing TMP would destroy them")
    if other.st_size == 0 or same_file(cdb, tmp):  # (AtomicOutput refuses the latter)
        return
    try:
        with open(tmp, "rb") as t:
            head = t.read(2048)
    except OSError:
        return  # opening it for writing will say what is wrong
    if head and b"\0" not in head:
        raise UnsafeTmpError(
            f"{os.fsdecode(tmp)} exists and holds text, not a cdb file being made: "
            "refusing to overwrite it (is it the rules? the arguments are CDB TMP [RULES])"
        )

