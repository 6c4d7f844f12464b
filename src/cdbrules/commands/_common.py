"""What the subcommands share: the exit codes and the one-line message."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, BinaryIO, Optional

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


def write_out(data: Any) -> Optional[int]:
    """Write bytes to standard output (descriptor 1), unbuffered; the exit code on
    failure, else None.  A reader that went away (EPIPE) is left to the dispatcher, as
    for every command."""
    view = memoryview(data)
    try:
        while view:
            n = os.write(1, view)
            view = view[n:]
    except BrokenPipeError:
        raise
    except OSError as e:
        say(f"fatal: unable to write output: {errstr(e)}")
        return EXIT_TEMP
    return None


def open_stdin() -> BinaryIO:
    """Standard input (descriptor 0) as a binary file, left open when closed; OSError
    when there is none."""
    return open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115


def failed(e: Exception, command: str) -> int:
    """Report what stopped a command that reads rules text and cdb files; the exit code.

    A bad rules line (its message names file and line) or another bad value: 100; a damaged
    cdb file or a failed system call: 111."""
    from ..errors import CdbFormatError, RulesSyntaxError

    if isinstance(e, RulesSyntaxError):
        say(str(e))
        return EXIT_PERM
    if isinstance(e, CdbFormatError):
        say(f"fatal: {e}")
        return EXIT_TEMP
    if isinstance(e, OSError):
        say(f"fatal: {system_error(e)}")
        return EXIT_TEMP
    say(f"{command}: {e}")
    return EXIT_PERM


def print_text(text: str, rc: int = EXIT_OK) -> int:
    """Write text to standard output; rc, or the exit code of a failed write."""
    failed_write = write_out(text.encode("utf-8", "surrogateescape"))
    return rc if failed_write is None else failed_write
