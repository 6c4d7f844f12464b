"""Reading cdb files: :class:`Reader`."""

from __future__ import annotations

import errno
import mmap
import os
import stat
from typing import Any, Iterator, List, Optional, Tuple, TypeVar, Union

from . import _bindings as C
from ._bindings import Failed, cdb_count, cdb_find_all, cdb_records, closed_cdb, exception, open_cdb
from .errors import CdbFormatError, PathLike

__all__ = ["Reader", "Key"]

Key = Union[bytes, str]
_T = TypeVar("_T")

_get = C.cdb_get
# A reader after close(): its map is NULL, which every C lookup refuses with EBADF.
_CLOSED = closed_cdb()


def _key(key: object) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a cdb key is bytes or str, not {type(key).__name__}")


# CDBRULES_READ_NOT_MAP=1 (for the sanitizer run, .ci/asan): read files into heap memory
# instead of mapping them, so AddressSanitizer sees any read past the end of a file.
_READ_NOT_MAP = os.environ.get("CDBRULES_READ_NOT_MAP") == "1"
MapLike = Union["mmap.mmap", bytes]


def _read_all(fd: int, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        b = os.read(fd, size - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def open_map(path: PathLike) -> Tuple[MapLike, object, object]:
    """Map the cdb file at path: (mmap, the struct cdb for the C core, the buffer it reads).

    Raises :class:`OSError` naming the path, or :class:`CdbFormatError`.
    """
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        e.filename = os.fsdecode(path)
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fsdecode(path))
        if not stat.S_ISREG(st.st_mode):
            raise CdbFormatError(path, "not a regular file")
        if st.st_size < C.CDB_HEADER_SIZE:
            raise CdbFormatError(path, f"{st.st_size} bytes: too short for a cdb file (2048 at least)")
        if st.st_size > C.CDB_MAX_SIZE:
            raise CdbFormatError(path, "larger than 4 GiB: too large for a cdb file")
        try:
            mm: MapLike = _read_all(fd, st.st_size) if _READ_NOT_MAP else mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except OSError as e:
            e.filename = os.fsdecode(path)
            raise
    finally:
        os.close(fd)
    try:
        c, buf = open_cdb(mm)
    except CdbFormatError:  # (the size was checked above)
        raise CdbFormatError(path) from None
    return mm, c, buf


class Reader:
    """A cdb file, mapped read-only.  Keys are bytes (a str key is encoded as UTF-8).

    ``r[key]`` and :meth:`get` give the first value of a key, :meth:`get_all` every
    value; :meth:`keys`, :meth:`values` and :meth:`items` walk all records in file order,
    duplicates included, and ``len(r)`` counts them.  Values are ``bytes`` copies that stay
    valid after :meth:`close`.  One reader may serve many threads.
    """

    __slots__ = ("path", "_mm", "_c", "_buf", "_len")

    def __init__(self, path: PathLike) -> None:
        self.path = os.fsdecode(path)
        mm, c, buf = open_map(path)
        self._mm: Optional[MapLike] = mm  # None once closed
        self._c: Any = c
        self._buf: object = buf  # the buffer c points into: kept alive with the map
        self._len: Optional[int] = None

    # -- lookups ------------------------------------------------------------------
    # The three lookups below are the hot path: one cffi call, one slice of the map.
    # A non-bytes key makes the call raise TypeError before any C runs; only then is it
    # converted, so bytes keys pay for no type test.  The map is held in a local across the
    # call, so a close() in another thread cannot unmap it under the C code.
    def get(self, key: Key, default: Optional[_T] = None) -> Union[bytes, _T, None]:
        """The first value of key, or default."""
        mm = self._mm
        try:
            r = _get(self._c, key, len(key))
        except TypeError:
            key = _key(key)
            r = _get(self._c, key, len(key))
        if r > 1:
            return mm[r >> 32:r & 0xFFFFFFFF]  # type: ignore[index]
        if r == 0:
            return default
        raise self._error()

    def __getitem__(self, key: Key) -> bytes:
        mm = self._mm
        try:
            r = _get(self._c, key, len(key))
        except TypeError:
            key = _key(key)
            r = _get(self._c, key, len(key))
        if r > 1:
            return mm[r >> 32:r & 0xFFFFFFFF]  # type: ignore[index]
        if r == 0:
            raise KeyError(key)
        raise self._error()

    def __contains__(self, key: object) -> bool:
        try:
            r = _get(self._c, key, len(key))  # type: ignore[arg-type]
        except TypeError:
            k = _key(key)
            r = _get(self._c, k, len(k))
        if r == 1:
            raise self._error()
        return bool(r)

    def get_all(self, key: Key) -> List[bytes]:
        """Every value of key, in file order (empty when absent)."""
        k = _key(key)
        mm = self._mm
        try:
            return [mm[p:p + n] for p, n in cdb_find_all(self._c, k)]  # type: ignore[index]
        except Failed as f:
            raise self._error(f.code) from None

    # -- iteration ----------------------------------------------------------------
    def _records(self) -> Iterator[Tuple[int, int, int]]:
        mm, c = self._mm, self._c
        if mm is None:
            raise ValueError("I/O operation on a closed cdb Reader")
        try:
            yield from cdb_records(c)
        except Failed as f:
            raise self._error(f.code) from None

    def items(self) -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) for every record, in file order."""
        mm = self._mm
        for kp, kl, dl in self._records():
            yield mm[kp:kp + kl], mm[kp + kl:kp + kl + dl]  # type: ignore[index]

    def keys(self) -> Iterator[bytes]:
        """The key of every record, in file order (a key added twice comes twice)."""
        mm = self._mm
        for kp, kl, _ in self._records():
            yield mm[kp:kp + kl]  # type: ignore[index]

    def values(self) -> Iterator[bytes]:
        """The value of every record, in file order."""
        mm = self._mm
        for kp, kl, dl in self._records():
            yield mm[kp + kl:kp + kl + dl]  # type: ignore[index]

    __iter__ = keys

    def __len__(self) -> int:
        if self._len is None:
            if self._mm is None:
                raise ValueError("I/O operation on a closed cdb Reader")
            try:
                self._len = cdb_count(self._c)
            except Failed as f:
                raise self._error(f.code) from None
        return self._len

    # -- life cycle ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._mm is None

    def close(self) -> None:
        """Release the map.  A lookup still running in another thread finishes first."""
        self._c = _CLOSED
        self._buf = None
        self._mm = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else "open"
        return f"<cdbrules.Reader {self.path!r} {state}>"

    def _error(self, code: Optional[int] = None) -> Exception:
        """The exception for a failed C call (errno code, this thread's errno when None)."""
        return exception(code, self.path, closed=self._mm is None)
