"""cdbrules: tcpserver access rules (the tcprules format) compiled to cdb and checked from Python.

The C core (cffi) reads and writes cdb files, parses rules text and answers tcpserver's
per-connection lookup; this package is its typed Python face.
"""

from __future__ import annotations

from .compiler import CompileStats, compile
from .errors import CdbFormatError, RulesSyntaxError
from .iptext import tcpserver_ip
from .reader import Reader
from .rules import Decision, Rules
from .writer import Writer

__version__ = "0.1.0"

__all__ = [
    "CdbFormatError",
    "CompileStats",
    "Decision",
    "Reader",
    "Rules",
    "RulesSyntaxError",
    "Writer",
    "__version__",
    "compile",
    "tcpserver_ip",
]
