"""Install a new cdb file the way tcprules does, and safer.

TMP is opened (created 0644 & ~umask, or reused with its mode, owner and inode, as
tcprules does), written, fsynced and renamed over CDB; then CDB's directory is fsynced.
On any failure CDB is untouched; a TMP this run created is removed, and a TMP that was
already there (an admin may make one to choose CDB's mode and owner) is emptied and kept.
TMP and CDB naming the same file (by any spelling, link or symlink) is refused before a
byte of it is changed: tcprules would truncate the live file.

Two runs sharing TMP (two ``qmailctl cdb`` at once) are serialised with an exclusive
``flock`` on TMP, taken *before* TMP is truncated: the second run waits, then finds that
the file it locked was renamed away by the first, and opens TMP afresh.  So TMP is never
written by two runs at once, each run installs exactly the file it wrote, and CDB ends as
one whole result.  (A unique temporary name would also be atomic, but it would change
what TMP means to the admins and scripts that name it.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import Optional

from .errors import PathLike, SameFileError

__all__ = ["AtomicOutput", "optional_tmp", "same_file"]


def _same_message(cdb: PathLike, tmp: PathLike) -> str:
    return (
        f"{os.fsdecode(tmp)} and {os.fsdecode(cdb)} are the same file: TMP must be another "
        "name, in the same file system as CDB"
    )


def same_file(a: PathLike, b: PathLike) -> bool:
    if os.path.abspath(os.fsdecode(a)) == os.path.abspath(os.fsdecode(b)):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return os.path.samestat(sa, sb)


class AtomicOutput:
    """TMP opened, locked and emptied; :meth:`commit` installs it as CDB, :meth:`abort` drops it.

    Every :class:`OSError` names the file it concerns (``filename``; for the rename also
    ``filename2``).
    """

    def __init__(self, cdb: PathLike, tmp: PathLike) -> None:
        if same_file(cdb, tmp):
            raise SameFileError(_same_message(cdb, tmp))
        self.cdb = cdb
        self.tmp = tmp
        self.created = False  # this run made TMP (else it was there and is reused)
        self.fd = self._open_locked()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.tmp, flags | os.O_EXCL, 0o644)
            self.created = True
            return fd
        except FileExistsError:
            pass
        self.created = False
        return os.open(self.tmp, flags, 0o644)  # (also follows a dangling symlink, as tcprules)

    def _open_locked(self) -> int:
        while True:
            try:
                fd = self._open()
            except OSError as e:
                setattr(e, "creating", True)  # tcprules' "unable to create TMP"
                raise
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                try:
                    now = os.stat(self.tmp)
                except FileNotFoundError:
                    now = None
                if now is not None and os.path.samestat(now, mine):
                    if not stat.S_ISREG(mine.st_mode):
                        raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(self.tmp))
                    if self._is_cdb(mine):
                        raise SameFileError(_same_message(self.cdb, self.tmp))
                    os.ftruncate(fd, 0)
                    return fd
            except OSError as e:
                self._drop(fd)
                if e.filename is None:
                    e.filename = os.fsdecode(self.tmp)
                setattr(e, "creating", True)
                raise
            except BaseException:
                self._drop(fd)
                raise
            os.close(fd)  # another run renamed that file to its CDB: start again

    def _is_cdb(self, mine: os.stat_result) -> bool:
        try:
            c = os.stat(self.cdb)
        except OSError:
            return False
        return os.path.samestat(c, mine)

    def _drop(self, fd: int) -> None:
        """Give up TMP before it was truncated: remove it if this run made it."""
        if self.created:
            self._unlink_if_mine(fd)
        os.close(fd)

    def commit(self) -> None:
        """fsync TMP, rename it over CDB, fsync CDB's directory."""
        try:
            try:
                os.fsync(self.fd)
            except OSError as e:
                e.filename = os.fsdecode(self.tmp)
                raise
            try:
                os.rename(self.tmp, self.cdb)
            except OSError as e:
                e.filename, e.filename2 = os.fsdecode(self.tmp), os.fsdecode(self.cdb)
                raise
        except BaseException:
            self.abort()
            raise
        _fsync_dir(self.cdb)
        os.close(self.fd)  # releases the lock
        self.fd = -1

    def abort(self) -> None:
        """Drop what was written and release TMP: remove it if this run created it, else
        empty it (keeping the mode, owner and inode someone chose for it)."""
        if self.fd < 0:
            return
        if self.created:
            self._unlink_if_mine(self.fd)
        else:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = -1

    def _unlink_if_mine(self, fd: int) -> None:
        # Only while TMP still names the file this run opened (never another run's file).
        try:
            mine = os.fstat(fd)
            now = os.lstat(self.tmp)
            if os.path.samestat(now, mine):
                os.unlink(self.tmp)
        except OSError:
            pass


def _fsync_dir(path: PathLike) -> None:
    # The rename is done: CDB is installed.  Making the directory entry durable is best
    # effort, as some file systems cannot fsync a directory (EINVAL).
    d = os.path.dirname(os.fsdecode(path)) or "."
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def optional_tmp(cdb: PathLike, tmp: Optional[PathLike]) -> PathLike:
    """TMP as given, or CDB + ".tmp"."""
    if tmp is not None:
        return tmp
    if isinstance(cdb, bytes):
        return cdb + b".tmp"
    return os.fspath(cdb) + ".tmp"  # type: ignore[operator]
