"""Writing cdb files: :class:`Writer`, byte for byte as cdbmake and tcprules write them,
and :class:`CdbMake`, the C writer on an atomically installed output that the compiler and
``make`` share."""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import NoReturn, Optional, Type

from ._bindings import Failed, Maker, exception
from ._output import AtomicOutput, optional_tmp
from .errors import PathLike
from .reader import Key, _key

__all__ = ["CdbMake", "Writer"]


class CdbMake:
    """The C writer (djb's cdb_make) on an :class:`AtomicOutput`; used by Writer, make, compile.

    :meth:`error` turns a failed C call into the exception that names TMP.
    """

    def __init__(self, out: AtomicOutput, limit: Optional[int] = None) -> None:
        self.out = out
        try:
            self.maker = Maker(out.fd, limit)
        except Failed as f:
            raise exception(f.code, out.tmp, writing=True) from None

    @classmethod
    def open(cls, cdb: PathLike, tmp: PathLike, limit: Optional[int] = None) -> "CdbMake":
        """TMP opened (locked, emptied) and a writer started on it; TMP dropped if that fails."""
        out = AtomicOutput(cdb, tmp)
        try:
            return cls(out, limit)
        except BaseException:
            out.abort()
            raise

    def error(self, code: int) -> Exception:
        """The OSError naming TMP for a C call that failed with errno code (SizeLimitError
        past the format's 4 GiB; a MemoryError when the C code ran out of memory)."""
        # (an EFBIG without overlimit is a write the system refused)
        return exception(code, self.out.tmp, writing=True, overlimit=self.maker.overlimit)

    def fail(self, f: Failed) -> NoReturn:
        raise self.error(f.code) from None

    def add(self, key: bytes, value: bytes) -> None:
        try:
            self.maker.add(key, value)
        except Failed as f:
            self.fail(f)

    def finish(self) -> None:
        """Write the tables and header, free the memory, install TMP as CDB."""
        try:
            self.maker.finish()
        except Failed as f:
            self.fail(f)
        self.out.commit()

    def abort(self) -> None:
        self.maker.free()
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
            try:
                mk.maker.add(k, v)
            except Failed as f:
                self._make = None
                mk.abort()
                raise mk.error(f.code) from None

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
