"""Writing cdb files: :class:`Writer`, byte for byte as cdbmake and tcprules write them."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, BinaryIO, Iterator, NoReturn, Optional, Tuple, Type, Union

from types import TracebackType

from ._native import ffi, lib
from ._output import AtomicOutput, optional_tmp
from .errors import PathLike
from .reader import Key, _key

__all__ = ["Writer", "CdbMake", "MakeInputError", "SizeLimitError", "make", "open_source", "read_chunks"]


class SizeLimitError(OSError):
    """The cdb file would pass the format's 4 GiB limit (errno EFBIG; filename: TMP)."""


class CdbMake:
    """The C writer (djb's cdb_make) on an :class:`AtomicOutput`; used by Writer, make, compile.

    :meth:`error` turns a failed C call into the OSError that names TMP.
    """

    def __init__(self, out: AtomicOutput, limit: Optional[int] = None) -> None:
        self.out = out
        self.m = ffi.new("struct cdb_make *")
        if lib.cdb_make_start(self.m, out.fd) < 0:
            self.fail()
        if limit is not None:  # tests lower the 4 GiB limit to reach it quickly
            self.m.limit = limit

    @classmethod
    def open(cls, cdb: PathLike, tmp: PathLike, limit: Optional[int] = None) -> "CdbMake":
        """TMP opened (locked, emptied) and a writer started on it; TMP dropped if that fails."""
        out = AtomicOutput(cdb, tmp)
        try:
            return cls(out, limit)
        except BaseException:
            out.abort()
            raise

    def error(self, code: Optional[int] = None) -> Exception:
        """The OSError naming TMP for a failed C call (errno, unless code is given); a
        MemoryError when the C code ran out of memory."""
        if code is None:
            code = ffi.errno
        if code == errno.ENOMEM:
            return MemoryError(f"out of memory while writing {os.fsdecode(self.out.tmp)}")
        if code == errno.EFBIG and self.m.overlimit:  # not a write refused by the system
            return SizeLimitError(code, "the cdb file would pass the format's 4 GiB limit", os.fsdecode(self.out.tmp))
        return OSError(code, os.strerror(code), os.fsdecode(self.out.tmp))

    def fail(self) -> NoReturn:
        raise self.error()

    def finish(self) -> None:
        """Write the tables and header, free the memory, install TMP as CDB."""
        try:
            if lib.cdb_make_finish(self.m) < 0:
                self.fail()
        finally:
            lib.cdb_make_free(self.m)
        self.out.commit()

    def abort(self) -> None:
        lib.cdb_make_free(self.m)
        self.out.abort()


class Writer:
    """Write a new cdb file at path.

    Records go to TMP (``path + ".tmp"`` unless given) in the order they are added,
    duplicates kept.  On a clean exit from ``with`` (or :meth:`close`) TMP is fsynced and
    renamed over path, and the directory fsynced; on an exception (or :meth:`abort`) path is
    untouched and TMP removed.  ``add`` may be called from several threads.
    """

    def __init__(self, path: PathLike, tmp: Optional[PathLike] = None, *, _limit: Optional[int] = None) -> None:
        self.path = os.fsdecode(path)
        self.tmp = os.fsdecode(optional_tmp(path, tmp))
        self._lock = threading.Lock()
        self._make: Optional[CdbMake] = CdbMake.open(path, optional_tmp(path, tmp), _limit)

    def add(self, key: Key, value: Key) -> None:
        """Append a record (str keys and values are encoded as UTF-8)."""
        k = key if type(key) is bytes else _key(key)
        v = value if type(value) is bytes else _key(value)
        with self._lock:
            mk = self._make
            if mk is None:
                raise ValueError("add() on a closed cdb Writer")
            if lib.cdb_make_add(mk.m, k, len(k), v, len(v)) < 0:
                err = mk.error()  # before abort(), whose system calls may change errno
                self._make = None
                mk.abort()
                raise err

    @property
    def closed(self) -> bool:
        return self._make is None

    def close(self) -> None:
        """Finish the file and install it at path."""
        with self._lock:
            mk, self._make = self._make, None
            if mk is None:
                return
            try:
                mk.finish()
            except BaseException:
                mk.out.abort()
                raise

    def abort(self) -> None:
        """Drop what was written: remove TMP, leave path as it was."""
        with self._lock:
            mk, self._make = self._make, None
            if mk is not None:
                mk.abort()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # Never install a file nobody closed: an abandoned Writer leaves path alone.
        if getattr(self, "_make", None) is not None:
            try:
                self.abort()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<cdbrules.Writer {self.path!r} {'closed' if self.closed else 'open'}>"


# -- reading a source: shared by make() and compile() -------------------------------------

_CHUNK = 1 << 20
#: The filename of an OSError from reading an input that has no name (a descriptor).
INPUT = "<input>"
Source = Union[PathLike, BinaryIO, int]


def open_source(source: Source) -> Tuple[BinaryIO, Optional[str], bool]:
    """(file, name, owned): a path is opened, a descriptor wrapped (left open), a binary
    file object used as it is; name is None where the source has none."""
    if isinstance(source, int):
        try:
            return open(source, "rb", buffering=0, closefd=False), None, True  # noqa: SIM115
        except OSError as e:  # not open, or a directory
            e.filename = INPUT
            raise
    if isinstance(source, (str, bytes, os.PathLike)):
        return open(source, "rb", buffering=0), os.fsdecode(source), True  # noqa: SIM115
    name = getattr(source, "name", None)
    return source, name if isinstance(name, str) else None, False


def read_chunks(f: BinaryIO, name: Optional[str]) -> Iterator[Tuple[Any, int]]:
    """The source in pieces of up to 1 MiB, as (buffer for the C core, length), to its end.

    A failed read raises OSError naming the source (INPUT without a name); a text stream
    raises TypeError.  Each piece is only valid until the next one is asked for."""
    buf = bytearray(_CHUNK)
    cbuf = ffi.from_buffer(buf)
    readinto = getattr(f, "readinto", None)
    while True:
        try:
            if readinto is not None:
                n = readinto(buf) or 0
                chunk = cbuf
            else:
                data = f.read(_CHUNK)
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"the input must be a binary file, not {type(f).__name__}")
                n = len(data)
                chunk = ffi.from_buffer(data)
        except OSError as e:
            if e.filename is None:
                e.filename = name or INPUT
            raise
        if not n:
            return
        yield chunk, n


# -- cdbmake's input format -------------------------------------------------------------


class MakeInputError(ValueError):
    """Input that cdbmake rejects.

    ``entry`` is the record it happened in, counted from 1; ``offset`` the 0-based
    position in the input of the offending byte (or of the end of the input), ``byte`` that
    byte (None at the end); ``reason`` says what is wrong; ``source`` names the input.
    """

    def __init__(self, entry: int, offset: int, byte: Optional[int], reason: str, source: Optional[str] = None):
        self.entry = entry
        self.offset = offset
        self.byte = byte
        self.reason = reason
        self.source = source
        super().__init__(f"{source or 'input'}: entry {entry} at offset {offset}: {reason}")


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
    if code == lib.CDBMAKE_E_END:
        if offset == 0:
            return "unexpected end of input: the input is empty (an empty cdb is made from one empty line)"
        if start == offset:
            return "unexpected end of input (the records must be followed by an empty line)"
        return f"unexpected end of input inside the record that starts at offset {start}"
    if code == lib.CDBMAKE_E_PLUS:
        hint = " (DOS line ends? cdbmake's input ends lines with LF alone)" if byte == 13 else ""
        return f"entry must start with +, found {found}{hint}"
    if code == lib.CDBMAKE_E_KLEN:
        return f"bad keylen format: expected digits then ',', found {found}"
    if code == lib.CDBMAKE_E_DLEN:
        return f"bad datalen format: expected digits then ':', found {found}"
    if code == lib.CDBMAKE_E_ARROW:
        return f"key must be followed by ->, found {found} (is the key length right?)"
    if code == lib.CDBMAKE_E_NEWLINE:
        return f"newline expected after the data, found {found} (is the data length right?)"
    what = "key" if code == lib.CDBMAKE_E_KHUGE else "data"
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
    p = ffi.new("struct cdbmake_parser *")
    used = ffi.new("size_t *")
    lib.cdbmake_parser_init(p, mk.m)
    try:
        for chunk, n in read_chunks(f, name):
            r = lib.cdbmake_feed(p, chunk, n, used)
            if r < 0:
                _make_fail(p, mk, name)
            if r > 0:  # the closing empty line: the rest of the input is not read
                break
        if lib.cdbmake_finish(p) < 0:
            _make_fail(p, mk, name)
        records = int(p.records)
        mk.finish()
        return records
    except BaseException:
        mk.abort()
        raise


def _make_fail(p: Any, mk: CdbMake, name: Optional[str]) -> NoReturn:
    e = p.err
    if e.code == lib.CDBMAKE_OK:  # the writer's error, not the input's
        err = mk.error()
        if isinstance(err, SizeLimitError):
            err.strerror = f"{err.strerror} (at entry {e.entry}, which starts at offset {e.start} of the input)"
        raise err
    reason = _make_reason(e.code, int(e.start), int(e.offset), int(e.byte))
    raise MakeInputError(int(e.entry), int(e.offset), None if e.byte < 0 else int(e.byte), reason, name)
