"""cdbrules: tcpserver access rules (the tcprules format) compiled to cdb and checked from Python.

The C core (cffi) reads and writes cdb files, parses rules text and answers tcpserver's
per-connection lookup; this package is its typed Python face.

The names below are imported on first use (PEP 562), so ``cdbrules compile`` does not pay
for the lookup machinery at start-up, nor a server for the compiler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from .cdbmake import make
    from .compiler import CompileStats, compile
    from .decompiler import DecompileError, decompile
    from .explainer import Explanation, explain
    from .errors import (CdbFormatError, MakeInputError, RulesSyntaxError, RulesTextError, SameFileError,
                         SizeLimitError, UnsafeTmpError)
    from .iptext import tcpserver_host, tcpserver_ip
    from .linter import Finding, lint
    from .reader import Reader
    from .rules import Decision, Rules
    from .rulesdiff import RulesDiff, diff
    from .writer import Writer

__version__ = "0.1.0"

__all__ = [
    "CdbFormatError",
    "CompileStats",
    "Decision",
    "DecompileError",
    "Explanation",
    "Finding",
    "MakeInputError",
    "Reader",
    "Rules",
    "RulesDiff",
    "RulesSyntaxError",
    "RulesTextError",
    "SameFileError",
    "SizeLimitError",
    "UnsafeTmpError",
    "Writer",
    "__version__",
    "compile",
    "decompile",
    "diff",
    "explain",
    "lint",
    "make",
    "tcpserver_host",
    "tcpserver_ip",
]

_WHERE: Dict[str, str] = {
    "CdbFormatError": "errors",
    "CompileStats": "compiler",
    "Decision": "rules",
    "DecompileError": "decompiler",
    "Explanation": "explainer",
    "Finding": "linter",
    "MakeInputError": "errors",
    "Reader": "reader",
    "Rules": "rules",
    "RulesDiff": "rulesdiff",
    "RulesSyntaxError": "errors",
    "RulesTextError": "errors",
    "SameFileError": "errors",
    "SizeLimitError": "errors",
    "UnsafeTmpError": "errors",
    "Writer": "writer",
    "compile": "compiler",
    "decompile": "decompiler",
    "diff": "rulesdiff",
    "explain": "explainer",
    "lint": "linter",
    "make": "cdbmake",
    "tcpserver_host": "iptext",
    "tcpserver_ip": "iptext",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'cdbrules' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
