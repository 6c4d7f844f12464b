"""cdbmake's input format (``+KLEN,DLEN:KEY->DATA`` lines, then an empty line) made into a
cdb file: :func:`make`, byte for byte the file cdbmake writes."""

from __future__ import annotations

from typing import BinaryIO, NoReturn, Optional

from . import _bindings as C
from ._bindings import Failed, MakeError, MakeParser
from ._output import optional_tmp
from .errors import MakeInputError, PathLike, SizeLimitError
from .source import Source, open_source, read_chunks
from .writer import CdbMake

__all__ = ["MakeInputError", "make"]


def _found(byte: int) -> str:
    if byte < 0:
        return "the end of the input"
    if byte == 10:
        return "a newline"
    if byte == 13:
        return "a carriage return"
    if 32 <= byte < 127 and byte != 0x27:
        return f"'{chr(byte)}'"
    return f"byte 0x{byte:02x}"


def _make_reason(code: int, start: int, offset: int, byte: int) -> str:
    """What is wrong, in cdbmake's words first, then what was found instead."""
    found = _found(byte)
    if code == C.CDBMAKE_E_END:
        if offset == 0:
            return "unexpected end of input: the input is empty (an empty cdb is made from one empty line)"
        if start == offset:
            return "unexpected end of input (the records must be followed by an empty line)"
        return f"unexpected end of input inside the record that starts at offset {start}"
    if code == C.CDBMAKE_E_PLUS:
        hint = " (DOS line ends? cdbmake's input ends lines with LF alone)" if byte == 13 else ""
        return f"entry must start with +, found {found}{hint}"
    if code == C.CDBMAKE_E_KLEN:
        return f"bad keylen format: expected digits then ',', found {found}"
    if code == C.CDBMAKE_E_DLEN:
        return f"bad datalen format: expected digits then ':', found {found}"
    if code == C.CDBMAKE_E_ARROW:
        return f"key must be followed by ->, found {found} (is the key length right?)"
    if code == C.CDBMAKE_E_NEWLINE:
        return f"newline expected after the data, found {found} (is the data length right?)"
    what = "key" if code == C.CDBMAKE_E_KHUGE else "data"
    return f"{what} length of 4294967210 or more: larger than a cdb file can hold"


def make(source: Source, cdb: PathLike, tmp: Optional[PathLike] = None, *, _limit: Optional[int] = None) -> int:
    """Build the cdb file at cdb from cdbmake's input format; return the number of records.

    source is a path, a binary file object or a file descriptor holding lines
    ``+KLEN,DLEN:KEY->DATA`` and a closing empty line (what ``cdbdump`` prints); reading
    stops at that empty line.  The file is written to tmp (``cdb + ".tmp"`` unless given),
    fsynced and renamed over cdb: byte for byte the file cdbmake writes.  Raises
    :class:`MakeInputError` for bad input and :class:`OSError` naming the file for a
    system error; cdb is untouched then and tmp removed.
    """
    f, name, owned = open_source(source)
    try:
        return _make(f, name, cdb, optional_tmp(cdb, tmp), _limit)
    finally:
        if owned:
            f.close()


def _make(f: BinaryIO, name: Optional[str], cdb: PathLike, tmp: PathLike, limit: Optional[int]) -> int:
    mk = CdbMake.open(cdb, tmp, limit)
    p = MakeParser(mk.maker)
    try:
        try:
            for chunk, n in read_chunks(f, name):
                if p.feed(chunk, n):  # the closing empty line: the rest of the input is not read
                    break
            p.finish()
        except MakeError as e:
            _bad_input(e, name)
        except Failed as e:
            _write_failed(e, mk)
        records = p.records
        mk.finish()
        return records
    except BaseException:
        mk.abort()
        raise


def _bad_input(e: MakeError, name: Optional[str]) -> NoReturn:
    reason = _make_reason(e.code, e.start, e.offset, e.byte)
    raise MakeInputError(e.entry, e.offset, None if e.byte < 0 else e.byte, reason, name) from None


def _write_failed(e: Failed, mk: CdbMake) -> NoReturn:
    err = mk.error(e.code)
    if isinstance(err, SizeLimitError):
        err.strerror = f"{err.strerror} (at entry {e.entry}, which starts at offset {e.start} of the input)"
    raise err from None
