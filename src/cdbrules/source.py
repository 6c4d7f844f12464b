"""Reading an input to its end in pieces for the C parsers: the compiler's rules text and
cdbmake's records come through here."""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterator, Optional, Tuple, Union

from ._bindings import ChunkBuffer, buffer_of
from .errors import PathLike

__all__ = ["INPUT", "Source", "open_source", "read_chunks"]

_CHUNK = 1 << 20
#: The filename of an OSError from reading an input that has no name (a descriptor).
INPUT = "<input>"
#: What the compiler and make() read: a path, a binary file object, or a file descriptor.
Source = Union[PathLike, BinaryIO, int]


def open_source(source: Source) -> Tuple[BinaryIO, Optional[str], bool]:
    """(file, name, owned): a path is opened, a descriptor wrapped (left open), a binary
    file object used as it is; name is None where the source has none.  Anything else is
    a TypeError."""
    if isinstance(source, bool):
        raise TypeError(f"the input must be a path, a binary file or a file descriptor, not {source!r}")
    if isinstance(source, int):
        try:
            return open(source, "rb", buffering=0, closefd=False), None, True  # noqa: SIM115
        except OSError as e:  # not open, or a directory
            e.filename = INPUT
            raise
    if isinstance(source, (str, bytes, os.PathLike)):
        return open(source, "rb", buffering=0), os.fsdecode(source), True  # noqa: SIM115
    if not callable(getattr(source, "read", None)):
        raise TypeError(
            f"the input must be a path, a binary file or a file descriptor, not {type(source).__name__}"
        )
    name = getattr(source, "name", None)
    return source, name if isinstance(name, str) else None, False


def read_chunks(f: BinaryIO, name: Optional[str]) -> Iterator[Tuple[Any, int]]:
    """The source in pieces of up to 1 MiB, as (buffer for the C core, length), to its end.

    A failed read raises OSError naming the source (INPUT without a name); a text stream
    raises TypeError.  Each piece is only valid until the next one is asked for."""
    chunks = ChunkBuffer(_CHUNK)
    buf = chunks.buf
    readinto = getattr(f, "readinto", None)
    while True:
        try:
            if readinto is not None:
                n = readinto(buf) or 0
                chunk = chunks.c
            else:
                data = f.read(_CHUNK)
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"the input must be a binary file, not {type(f).__name__}")
                n = len(data)
                chunk = buffer_of(data)
        except OSError as e:
            if e.filename is None:
                e.filename = name or INPUT
            raise
        if not n:
            return
        yield chunk, n


def scratch_dir() -> Optional[str]:
    """Where a compile that is thrown away afterwards (explain, diff of rules text) writes:
    memory (/dev/shm) where there is such a file system, so its fsync costs nothing; else
    the usual temporary directory (None)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
