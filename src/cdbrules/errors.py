"""The exceptions cdbrules raises, and djb's wording of system errors.

* :class:`CdbFormatError`: a file that is not a valid cdb (truncated, corrupt, hostile);
  :class:`RulesTextError` when that file is rules text that was never compiled.
* :class:`RulesSyntaxError`: a line of rules text that tcprules would reject.
* :class:`MakeInputError`: cdbmake input that cdbmake would reject.
* :class:`UnsafeTmpError` (and :class:`SameFileError`): a TMP whose truncation would destroy
  a file worth keeping.

All four are :class:`ValueError` subclasses.  Failed system calls raise :class:`OSError`
(with ``filename`` set) as Python does; :class:`SizeLimitError` is the OSError of a cdb
file that would pass the format's 4 GiB.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Optional, Union

__all__ = [
    "CdbFormatError",
    "MakeInputError",
    "RulesSyntaxError",
    "RulesTextError",
    "SameFileError",
    "SizeLimitError",
    "UnsafeTmpError",
    "djb_strerror",
]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class CdbFormatError(ValueError):
    """The file is not a valid cdb: too short, or an offset or length points outside it."""

    def __init__(self, path: Optional[PathLike], detail: str = "not a valid cdb file") -> None:
        self.path = os.fsdecode(path) if path is not None else None
        self.detail = detail
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{detail}")


class RulesTextError(CdbFormatError):
    """The file given as a compiled rules file (or any cdb) is rules text: it must be
    compiled first (``cdbrules compile CDB TMP RULES``)."""

    def __init__(self, path: PathLike) -> None:
        super().__init__(path, "this is rules text, not a compiled rules file; compile it first with "
                               f"cdbrules compile CDB TMP {os.fsdecode(path)}")


class RulesSyntaxError(ValueError):
    """A rules line that tcprules rejects.

    ``lineno`` counts from 1, ``line`` is the line as tcprules prints it (trailing spaces
    and tabs removed, bytes), ``column`` the 0-based byte offset of the problem, ``reason``
    a sentence saying what is wrong and ``source`` the name of the rules file (or None).
    """

    def __init__(self, lineno: int, line: bytes, column: int, reason: str, source: Optional[str] = None) -> None:
        self.lineno = lineno
        self.line = line
        self.column = column
        self.reason = reason
        self.source = source
        super().__init__(f"{source or 'line'}{':' if source else ' '}{lineno}: {reason}")


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


class UnsafeTmpError(ValueError):
    """TMP cannot be used: truncating it would destroy a file that must be kept (the live
    CDB, the rules being read, or a text file named as TMP by mistake)."""


class SameFileError(UnsafeTmpError):
    """TMP and CDB name the same file: writing TMP would destroy the live CDB first."""


class SizeLimitError(OSError):
    """The cdb file would pass the format's 4 GiB limit (errno EFBIG; filename: TMP)."""


# djb's error_str() texts (ucspi-tcp, cdb), which the classic tools print instead of strerror().
_DJB = {
    0: "no error",
    _errno.EINTR: "interrupted system call",
    _errno.ENOMEM: "out of memory",
    _errno.ENOENT: "file does not exist",
    _errno.ETXTBSY: "text busy",
    _errno.EIO: "input/output error",
    _errno.EEXIST: "file already exists",
    _errno.ETIMEDOUT: "timed out",
    _errno.EINPROGRESS: "operation in progress",
    _errno.EAGAIN: "temporary failure",
    _errno.EPIPE: "broken pipe",
    _errno.EPERM: "permission denied",
    _errno.EACCES: "access denied",
    _errno.ENXIO: "device not configured",
    _errno.EPROTO: "protocol error",
    _errno.EISDIR: "is a directory",
    _errno.ESPIPE: "unseekable descriptor",
    _errno.ENOTDIR: "not a directory",
    _errno.ELOOP: "symbolic link loop",
    _errno.ENAMETOOLONG: "file name too long",
    _errno.ENOSPC: "out of disk space",
    _errno.EDQUOT: "disk quota exceeded",
    _errno.EROFS: "read-only file system",
    _errno.EXDEV: "cross-device link",
    _errno.EINVAL: "invalid argument",
    _errno.EBADF: "file descriptor not open",
    _errno.EMFILE: "process cannot open more files",
    _errno.ENFILE: "system cannot open more files",
    _errno.EFBIG: "file too big",
}


def djb_strerror(code: Optional[int]) -> str:
    """The text djb's tools print for errno ``code``."""
    return _DJB.get(code or 0, "unknown error")

