"""The warnings ``cdbrules compile`` prints: the lint findings that silently change what a
rule means (``docs/lint.md``, the codes marked for compile), read from the text as the
compiler reads it, without slowing the compile of a large block list.

:class:`Watch` wraps the rules input: every byte the compiler reads also goes to a
:class:`~cdbrules.linter.Linter`, up to ``LIMIT`` bytes (the whole text with ``-v``).
"""

from __future__ import annotations

import io
import os
import stat
from contextlib import ExitStack
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, cast

from ..linter import CODES, Linter

#: Texts longer than this are not checked unless -v asks (cdbrules lint checks any size):
#: a hand-kept tcp.smtp is far shorter, and a block list of a million lines compiles at
#: tcprules' speed.
LIMIT = 1 << 20


class Watch(io.RawIOBase):
    """The rules input, read by the compiler through this, seen by a linter on the way."""

    def __init__(self, f: BinaryIO, name: str, verbose: bool, cidr: bool = False,
                 keys: Optional[Dict[bytes, Tuple[str, int, bool, bytes]]] = None) -> None:
        super().__init__()
        self.f = f
        self.name = name
        self.verbose = verbose
        self.seen = 0
        self.linter: Optional[Linter] = Linter(name, strict=verbose, cidr=cidr, keys=keys)
        try:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > LIMIT and not verbose:
                self._give_up()
        except (OSError, ValueError, AttributeError):
            pass

    def _give_up(self) -> None:
        self.linter = None

    def source(self) -> BinaryIO:
        """This reader, as the compiler takes it (a binary file)."""
        return cast(BinaryIO, self)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.f.fileno()

    def readinto(self, b: Any) -> int:
        readinto = getattr(self.f, "readinto", None)
        if readinto is not None:
            n: int = readinto(b) or 0
        else:
            data = self.f.read(len(b))
            n = len(data)
            b[:n] = data
        if n and self.linter is not None:
            self.seen += n
            if self.seen > LIMIT and not self.verbose:
                self._give_up()
            else:
                self.linter.feed(bytes(memoryview(b)[:n]))
        return n

    def report(self) -> List[str]:
        """The warning lines (without the program name) once the compile succeeded.  W401 (a
        network key) is the compiler's own warning."""
        lt = self.linter
        if lt is None:  # a text over LIMIT without -v: compile says nothing, as tcprules
            return []
        out = []
        for f in lt.finish():
            wanted = CODES[f.code].compile_warns or self.verbose and f.code in ("W501", "W201")
            if wanted and f.code != "W401":
                where = f"line {f.line}" if self.name.startswith("<") else f"{self.name}:{f.line}"
                out.append(f"{where}: warning: {f.code} {f.message}")
        return out

    def summary(self) -> Optional[str]:
        """-v: lines, skipped lines, records, distinct keys and repeated keys apart."""
        lt = self.linter
        if lt is None:
            return None
        name = "standard input" if self.name.startswith("<") else self.name
        return (f"{name}: {lt.lineno} lines ({len(lt.skipped)} skipped), {lt.records} records, "
                f"{len(lt.keys)} distinct keys ({len(lt.duplicates)} lines repeat an earlier key)")


def watch_all(opened: ExitStack, sources: Sequence[Any], verbose: bool, cidr: bool) -> List[Watch]:
    """A :class:`Watch` on each rules source (a path, opened here, or standard input), their
    linters sharing what keys were written, as the compiler reads them as one text."""
    keys: Dict[bytes, Tuple[str, int, bool, bytes]] = {}
    out = []
    for s in sources:
        if isinstance(s, (str, bytes, os.PathLike)):
            f = opened.enter_context(open(s, "rb", buffering=0))
            out.append(Watch(f, os.fsdecode(s), verbose, cidr, keys))
        else:
            out.append(Watch(s, "<stdin>", verbose, cidr, keys))
    return out
