"""What the subcommands share: messages for system errors."""

from __future__ import annotations

import os
import sys

EXIT_OK = 0
EXIT_PERM = 100
EXIT_TEMP = 111


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"cdbrules: {message}\n")


def os_failure(e: OSError) -> int:
    """Report a failed system call, naming the file(s); exit 111."""
    text = e.strerror or str(e)
    if e.filename is not None and getattr(e, "filename2", None) is not None:
        say(f"fatal: unable to move {os.fsdecode(e.filename)} to {os.fsdecode(e.filename2)}: {text}")
    elif e.filename is not None:
        say(f"fatal: {os.fsdecode(e.filename)}: {text}")
    else:
        say(f"fatal: {text}")
    return EXIT_TEMP
