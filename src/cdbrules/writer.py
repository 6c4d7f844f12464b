"""Writing cdb files: :class:`Writer`, byte for byte as cdbmake and tcprules write them."""

from __future__ import annotations

import errno
import os
import threading
from typing import Optional, Type

from types import TracebackType

from ._native import ffi, lib
from ._output import AtomicOutput, optional_tmp
from .errors import PathLike
from .reader import Key, _key

__all__ = ["Writer", "CdbMake"]


class CdbMake:
    """The C writer (djb's cdb_make) on an :class:`AtomicOutput`; used by Writer, make, compile.

    ``check(rc)`` turns a failed C call into the OSError that names TMP.
    """

    def __init__(self, out: AtomicOutput, limit: Optional[int] = None) -> None:
        self.out = out
        self.m = ffi.new("struct cdb_make *")
        if lib.cdb_make_start(self.m, out.fd) < 0:
            self.fail()
        self.started = True
        if limit is not None:  # tests lower the 4 GiB limit to reach it quickly
            self.m.limit = limit

    def fail(self) -> None:
        code = ffi.errno
        if code == errno.EFBIG and self.m.overlimit:  # not a write refused by the system
            raise OSError(code, "the cdb file would pass the format's 4 GiB limit", os.fsdecode(self.out.tmp))
        raise OSError(code, os.strerror(code), os.fsdecode(self.out.tmp))

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
        out = AtomicOutput(path, optional_tmp(path, tmp))
        try:
            self._make: Optional[CdbMake] = CdbMake(out, _limit)
        except BaseException:
            out.abort()
            raise

    def add(self, key: Key, value: Key) -> None:
        """Append a record (str keys and values are encoded as UTF-8)."""
        k = key if type(key) is bytes else _key(key)
        v = value if type(value) is bytes else _key(value)
        with self._lock:
            mk = self._make
            if mk is None:
                raise ValueError("add() on a closed cdb Writer")
            if lib.cdb_make_add(mk.m, k, len(k), v, len(v)) < 0:
                self._make = None
                mk.abort()
                mk.fail()

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
