"""Reading cdb files: :class:`Reader`."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
import time
from collections import OrderedDict
from typing import Any, Iterator, List, Optional, Tuple, TypeVar, Union

from . import _bindings as C
from ._bindings import Failed, cdb_count, cdb_find_all, cdb_records, closed_cdb, exception, open_cdb
from .errors import CdbFormatError, PathLike, RulesTextError

__all__ = ["Reader", "Key"]

Key = Union[bytes, str]
# The bytes of a file read whole: bytes, or an anonymous mapping (sliced the same way).
Buffer = Union[bytes, mmap.mmap]
_MADV_HUGEPAGE: Optional[int] = getattr(mmap, "MADV_HUGEPAGE", None)
_T = TypeVar("_T")

_get = C.cdb_get
# A reader after close(): its map (the bytes) is NULL, which every C lookup refuses with EBADF.
_CLOSED = closed_cdb()


def _key(key: object) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a cdb key is bytes or str, not {type(key).__name__}")


# A file this large is read into memory of its own, backed by huge pages where the
# system has them (Linux's transparent huge pages, asked for with MADV_HUGEPAGE): a
# lookup in a file larger than the CPU caches costs memory latency, and with 4 KiB
# pages most probes also miss the TLB (a 200 MB file spans 51,200 pages; with 2 MiB
# pages it spans 100).  Smaller files stay in a bytes object.
HUGE_READ = 4 << 20


def _read_all(fd: int, size: int) -> Buffer:
    """The size bytes at fd's offset (fewer at an early end of file)."""
    if size >= HUGE_READ and _MADV_HUGEPAGE is not None:
        return _read_huge(fd, size)
    parts, got = [], 0
    while got < size:
        b = os.read(fd, size - got)  # one read up to 2 GiB on Linux: no join copy
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _read_huge(fd: int, size: int) -> Buffer:
    """_read_all into a private anonymous mapping asked to use huge pages (asked before
    any page is touched: pages already in place are not made huge).  The mapping holds
    a copy: nothing done to the file later reaches it."""
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(_MADV_HUGEPAGE)  # type: ignore[arg-type]
    except OSError:  # (a kernel without transparent huge pages): ordinary pages then
        pass
    got = 0
    with memoryview(m) as view:
        while got < size:
            n = os.readv(fd, [view[got:]])
            if not n:
                break
            got += n
    return m if got == size else m[:got]


def _rules_text(data: Buffer) -> bool:
    """Whether the file data is rules text rather than a cdb: no NUL byte where a cdb has
    its header (every table position below 16 MiB has one) and a rule in its first 64 KiB."""
    if b"\0" in data[:C.CDB_HEADER_SIZE]:
        return False
    head = data[:1 << 16]
    return b":allow" in head or b":deny" in head


# Files read lately (for Rules: read_cdb(keep=True)), by identity: a file that has not
# changed since (same device, inode, size, mtime and ctime) is not read again.  tcpserver's
# way in Python, a Rules() per connection, then costs an fstat instead of a read of the
# whole file.  Only a file whose last change was a second or more before the read began
# is kept: any later change gets a later mtime, whatever the granularity of the file
# system's clock.  The bytes are never written, so sharing them is safe.
SETTLE_NS = 1_000_000_000
_KEEP = 2
_Identity = Tuple[int, int, int, int, int]
_kept: "OrderedDict[_Identity, Tuple[Buffer, Any, object]]" = OrderedDict()
_kept_lock = threading.Lock()


def same_bytes(a: Buffer, b: Buffer) -> bool:
    """Whether two files read whole hold the same bytes (a mapping compares by identity
    under ==)."""
    if len(a) != len(b):
        return False
    with memoryview(a) as x, memoryview(b) as y:
        return x == y


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_cdb(path: PathLike, keep: bool = False) -> Tuple[Buffer, Any, object, os.stat_result, bool]:
    """Read the cdb file at path into memory: (its bytes, the struct cdb the C core reads
    them through, the buffer that points into, the file's status when it was opened, and
    whether the file had settled: its last change a second or more before the read).

    The file is read, not mapped: nothing done to the file later (truncated, rewritten or
    grown in place) reaches these bytes, where a mapped file cut short kills the process
    that touches the lost pages (SIGBUS).  A file that changes while it is read is refused.
    keep: reuse (and keep) the bytes of a settled file read before and not changed since.

    Raises :class:`OSError` naming the path, or :class:`CdbFormatError`
    (:class:`RulesTextError` for rules text that was never compiled).
    """
    started = time.time_ns()
    name = os.fsdecode(path)
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        e.filename = name
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(st.st_mode):
            raise CdbFormatError(path, "not a regular file")
        if st.st_size > C.CDB_MAX_SIZE:
            raise CdbFormatError(path, "larger than 4 GiB: too large for a cdb file")
        if keep:
            with _kept_lock:
                hit = _kept.get(_identity(st))
                if hit is not None:
                    _kept.move_to_end(_identity(st))
                    return hit[0], hit[1], hit[2], st, True
        try:
            data = _read_all(fd, st.st_size)
            after = os.fstat(fd)
        except OSError as e:
            e.filename = name
            raise
    finally:
        os.close(fd)
    if len(data) != st.st_size or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise CdbFormatError(path, "the file changed while it was read (install a new cdb file by renaming it "
                                   "over the old one, never by writing into it)")
    if _rules_text(data):
        raise RulesTextError(path)
    if len(data) < C.CDB_HEADER_SIZE:
        raise CdbFormatError(path, f"{len(data)} bytes: too short for a cdb file (2048 at least)")
    try:
        c, buf = open_cdb(data)
    except CdbFormatError:  # (the size was checked above)
        raise CdbFormatError(path) from None
    settled = started - max(st.st_mtime_ns, st.st_ctime_ns) >= SETTLE_NS
    if keep and settled:
        with _kept_lock:
            _kept[_identity(st)] = (data, c, buf)
            while len(_kept) > _KEEP:
                _kept.popitem(last=False)
    return data, c, buf, st, settled


class Reader:
    """A cdb file, read into memory when opened.  Keys are bytes (a str key is encoded as UTF-8).

    ``r[key]`` and :meth:`get` give the first value of a key, :meth:`get_all` every
    value; :meth:`keys`, :meth:`values` and :meth:`items` walk all records in file order,
    duplicates included, and ``len(r)`` counts them.  Values are ``bytes`` copies that stay
    valid after :meth:`close`.  One reader may serve many threads.

    The reader answers from the file as it was when opened: a later change to the file
    (even truncated or rewritten in place) does not reach it.  A damaged file gives
    :class:`CdbFormatError` when a lookup reaches the damage, never a crash.
    """

    __slots__ = ("path", "_mm", "_c", "_buf", "_len")

    def __init__(self, path: PathLike) -> None:
        self.path = os.fsdecode(path)
        mm, c, buf, _, _ = read_cdb(path)
        self._mm: Optional[Buffer] = mm  # None once closed
        self._c: Any = c
        self._buf: object = buf  # the buffer c points into: kept alive with the bytes
        self._len: Optional[int] = None

    # -- lookups ------------------------------------------------------------------
    # The three lookups below are the hot path: one cffi call, one slice of the bytes.
    # A non-bytes key makes the call raise TypeError before any C runs; only then is it
    # converted, so bytes keys pay for no type test.  The bytes are held in a local across
    # the call (read before _c: close() clears _c first), so a close() in another thread
    # cannot free them under the C code.
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
        mm = self._mm  # noqa: F841 - held for the call, as in get
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
        mm = self._mm  # held for the whole walk; the generator holds the struct cdb and the key
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
            mm = self._mm  # held for the call, as in get
            if mm is None:
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
        """Release the file's bytes.  A lookup still running in another thread finishes first."""
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
