"""``compile``: tcprules text to a cdb file, byte for byte as tcprules writes it.

The C parser streams the text line by line into the C writer; Python only moves bytes
from the source to the parser and turns a rules error into a sentence.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from contextlib import ExitStack
from typing import BinaryIO, List, NamedTuple, NoReturn, Optional, Sequence, Tuple, Union

from . import _bindings as C
from ._bindings import Failed, RulesError, RulesParser
from ._output import optional_tmp, same_file
from .errors import PathLike, RulesSyntaxError, SameFileError, UnsafeTmpError
from .networks import network_reason
from .source import Source, open_source, read_chunks
from .writer import CdbMake

__all__ = ["compile", "compile_origins", "expand", "CompileStats"]


class CompileStats(NamedTuple):
    """What a compile did: ``lines`` read, ``rules`` (lines that were rules, and list
    entries), ``keys`` written, ``networks`` read (with ``cidr``); ``warnings``: lines that
    are probably not what was meant (a network key without ``cidr``), one sentence each
    naming file:line; ``notes``: with ``cidr``, IPv6 networks that cost many keys.

    (A NamedTuple rather than a dataclass: importing dataclasses costs the CLI ~10 ms.)"""

    lines: int
    rules: int
    keys: int
    networks: int = 0
    warnings: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()


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


def _syntax_error(e: RulesError, names: Sequence[Optional[str]], nrules: int) -> RulesSyntaxError:
    line = e.line
    name = line[e.name:e.name + e.namelen]
    if e.code == C.RULES_E_NETWORK and e.net is not None:
        reason = network_reason(e.netcode, name, e.net, plain=e.src >= nrules)
    else:
        reason = _reason(e.code, line, e.column, name)
    return RulesSyntaxError(e.lineno, line, e.column, reason, names[e.src] if e.src < len(names) else None)


Sources = Union[Source, Sequence[Source]]
#: A list file and the instruction each of its entries gets (``deny``, ``allow,RBLSMTPD="-..."``).
ListSpec = Tuple[Source, Union[str, bytes]]


def _as_sources(sources: Sources) -> List[Source]:
    """A list or tuple of sources, or one source (open_source says what is not one)."""
    if isinstance(sources, (list, tuple)):
        return list(sources)
    return [sources]  # type: ignore[list-item]


def compile(  # noqa: A001
    sources: Sources, cdb: PathLike, tmp: Optional[PathLike] = None, *, cidr: bool = False,
    lists: Sequence[ListSpec] = (),
) -> CompileStats:
    """Compile tcprules text from sources into the cdb file at cdb; return what was done.

    ``sources``: a path, a binary file object (read to its end) or a file descriptor, or a
    sequence of them, read in order as one text (messages name each one's own lines).
    Without ``cidr`` the file is byte for byte the one tcprules writes; a key that looks
    like a network (``10.0.0.0/8``) is kept as tcprules keeps it and named in
    ``warnings``.  With ``cidr`` a key ``NET/LEN`` means that network, written as the
    keys the real tcpserver looks up; the longest network holding an address wins, then
    the first line (docs/networks.md).  ``lists``: ``(path, instruction)`` pairs of
    address/network lists (implies ``cidr``); for the same network the rules come first,
    then the lists in order.

    The file is written to tmp (``cdb + ".tmp"`` unless given), fsynced and renamed over
    cdb, and cdb's directory fsynced.  On any error cdb is untouched and tmp removed (or,
    if it was there before, emptied).  Raises:

    * :class:`RulesSyntaxError` (a ValueError) for a line tcprules rejects, or with
      ``cidr`` a network that cannot be written exactly, with ``lineno``, ``line``
      (bytes), ``column``, ``reason`` and ``source``;
    * ``UnsafeTmpError`` (a ValueError; ``SameFileError`` when tmp is cdb) when writing tmp
      would destroy cdb, the rules themselves or a text file;
    * :class:`OSError` naming the file (``filename``; ``filename2`` for the rename) for a
      system error.
    """
    return _compile(sources, cdb, tmp, cidr, lists, False)[0]


def compile_origins(
    sources: Sources, cdb: PathLike, tmp: Optional[PathLike] = None, *, cidr: bool = False,
    lists: Sequence[ListSpec] = (),
) -> Tuple[CompileStats, List[Tuple[int, int]]]:
    """:func:`compile`, and where each record written came from: a list, in file order,
    of ``(source, line)``: the index of its source (the rules sources from 0, then the
    lists) and its line there (from 1).  For ``explain`` and ``lint``."""
    return _compile(sources, cdb, tmp, cidr, lists, True)


def expand(sources: Sources, out: Union[BinaryIO, int], *, lists: Sequence[ListSpec] = ()) -> CompileStats:
    """Write the rules as classic tcprules text, networks turned into the keys
    ``compile(cidr=True)`` writes, one ``KEY:INSTRUCTION`` line a record in its order:
    tcprules compiles that text into the same bytes.  ``out``: a binary file or a file
    descriptor.  Raises as :func:`compile`; ``ValueError`` for a key tcprules text cannot
    carry (a range left in a key, such as ``1.2-3.4-5``)."""
    srcs = _as_sources(sources)
    p = RulesParser(None)
    try:
        p.cidr(expand=True)
        with ExitStack() as opened:
            inputs = _open_all(opened, srcs, lists)
            lines, names = _feed_all(p, inputs, len(srcs), None)
        fd = out if isinstance(out, int) else None
        spool: Optional[BinaryIO] = None
        if fd is None:
            flush = getattr(out, "flush", None)
            if flush is not None:
                flush()
            try:
                fd = out.fileno()  # type: ignore[union-attr]
            except (AttributeError, OSError, ValueError):  # BytesIO and the like
                spool = tempfile.TemporaryFile()
                fd = spool.fileno()
        try:
            try:
                p.write(fd)
            except Failed as e:
                if e.code == errno.EDOM:
                    raise ValueError("a key holds a range tcprules would expand again (such as 1.2-3.4-5): "
                                     "it cannot be written as tcprules text") from None
                raise C.exception(e.code, None if isinstance(out, int) else getattr(out, "name", None)) from None
            if spool is not None:
                spool.seek(0)
                shutil.copyfileobj(spool, out)  # type: ignore[arg-type]
        finally:
            if spool is not None:
                spool.close()
        return _stats(p, lines, names)
    finally:
        p.free()


def _compile(sources: Sources, cdb: PathLike, tmp: Optional[PathLike], cidr: bool, lists: Sequence[ListSpec],
             origins: bool) -> Tuple[CompileStats, List[Tuple[int, int]]]:
    srcs = _as_sources(sources)
    tmp = optional_tmp(cdb, tmp)
    with ExitStack() as opened:
        inputs = _open_all(opened, srcs, lists)
        for f, _, _ in inputs:
            _check_tmp(f, cdb, tmp)
        mk = CdbMake.open(cdb, tmp)
        p = RulesParser(mk.maker)
        try:
            try:
                if cidr or lists:
                    p.cidr(origins=origins)
                elif origins:
                    p.want_origins()
                lines, names = _feed_all(p, inputs, len(srcs), mk)
                p.write()
            except Failed as e:
                mk.fail(e)
            stats = _stats(p, lines, names)
            where = p.origins() if origins else []
            mk.finish()
            return stats, where
        except BaseException:
            mk.abort()
            raise
        finally:
            p.free()


_Input = Tuple[BinaryIO, Optional[str], Optional[bytes]]  # file, name, a list's instruction


def _open_all(stack: ExitStack, srcs: Sequence[Source], lists: Sequence[ListSpec]) -> List[_Input]:
    """Every source, then every list, opened (closed with stack where they were opened here)."""
    todo: List[Tuple[Source, Optional[bytes]]] = [(s, None) for s in srcs]
    todo += [(path, ins.encode("utf-8", "surrogateescape") if isinstance(ins, str) else bytes(ins))
             for path, ins in lists]
    out: List[_Input] = []
    for src, instruction in todo:
        f, name, owned = open_source(src)
        if owned:
            stack.callback(f.close)
        out.append((f, name, instruction))
    return out


def _feed_all(p: RulesParser, inputs: Sequence[_Input], nrules: int, mk: Optional[CdbMake]
              ) -> Tuple[int, List[Optional[str]]]:
    """Feed every input (the rules, then the lists) to the parser; return (lines, names)."""
    # Messages name the file; not a stream's pseudo-name such as "<stdin>".
    names = [None if name is None or name.startswith("<") else name for _, name, _ in inputs]
    lines = 0
    for i, (f, name, instruction) in enumerate(inputs):
        try:
            if instruction is None:
                p.source(i)
            else:
                try:
                    p.list_start(i, instruction)
                except RulesError as e:
                    err = _syntax_error(e, names, nrules)
                    err.args = (f"--list {names[i] or '-'}: the instruction "
                                f"{instruction.decode('latin-1')!r}: {err.reason}",)
                    raise err from None
            for chunk, n in read_chunks(f, name):
                p.feed(chunk, n)
            p.finish()
        except RulesError as e:
            raise _syntax_error(e, names, nrules) from None
        except Failed as e:
            _writer_failed(e, mk)
        lines += p.counts()[0]
    return lines, names


def _writer_failed(e: Failed, mk: Optional[CdbMake]) -> NoReturn:
    if mk is None:
        raise C.exception(e.code)
    mk.fail(e)


def _stats(p: RulesParser, lines: int, names: Sequence[Optional[str]]) -> CompileStats:
    warnings: List[str] = []
    notes: List[str] = []
    kept, counts = p.notes()
    for n in kept:
        key = n.text.decode("latin-1")
        name = names[n.src] if n.src < len(names) else None
        where = f"{name}:{n.line}" if name else f"line {n.line}"
        if n.kind == C.RULES_NOTE_NETKEY:
            warnings.append(f"{where}: warning: {key!r} looks like a network, but it is compiled as a key tcpserver "
                            "never looks up (the rule does nothing); compile --cidr makes it the network")
        else:
            notes.append(f"{where}: {key} makes {n.keys:,} keys (a length that is not a multiple of 16 "
                         "costs 2^(16 - LEN mod 16) keys)")
    if counts[0] > C.RULES_NOTES:
        warnings.append(f"warning: {counts[0] - C.RULES_NOTES:,} more keys look like networks "
                        "(compile --cidr makes them networks)")
    if counts[1] > C.RULES_NOTES:
        notes.append(f"{counts[1] - C.RULES_NOTES:,} more IPv6 networks with a partial last group")
    _, rules, keys = p.counts()
    return CompileStats(lines, rules, keys, p.networks, tuple(warnings), tuple(notes))


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

