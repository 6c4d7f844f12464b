"""What the subcommands share: the exit codes and the one-line message."""

from __future__ import annotations

import errno
import os
import sys
from typing import Optional

from ..errors import SizeLimitError, djb_strerror
from ..source import INPUT

#: djb's exit codes: success, a permanent error (bad usage, bad input), a temporary or
#: system error.
EXIT_OK = 0
EXIT_PERM = 100
EXIT_USAGE = EXIT_PERM
EXIT_TEMP = 111


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"cdbrules: {message}\n")


def errstr(e: OSError) -> str:
    """The text djb's tools print for e (the C writer's own 4 GiB sentence as it is)."""
    if isinstance(e, SizeLimitError) or e.errno is None:
        return e.strerror or str(e)
    return djb_strerror(e.errno)


def system_error(e: OSError, tmp: Optional[str] = None) -> str:
    """A failed system call in tcprules' and cdbmake's words: what could not be done, to
    which file, and djb's text for the errno.

    ``unable to move TMP to CDB`` (the rename), ``unable to create TMP`` (opening it),
    ``unable to write to TMP``, ``unable to read input`` (standard input or a descriptor),
    ``unable to read FILE``."""
    why = errstr(e)
    name = None if e.filename is None else os.fsdecode(e.filename)
    name2 = getattr(e, "filename2", None)
    if name2 is not None:
        hint = " (TMP must be in the same file system as CDB)" if e.errno == errno.EXDEV else ""
        return f"unable to move {name} to {os.fsdecode(name2)}: {why}{hint}"
    if name is not None and name == tmp:
        verb = "create" if getattr(e, "creating", False) else "write to"
        return f"unable to {verb} {name}: {why}"
    if name is None or name == INPUT or name.startswith("<"):
        return f"unable to read input: {why}"
    return f"unable to read {name}: {why}"
