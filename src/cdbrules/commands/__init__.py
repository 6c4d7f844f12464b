"""The subcommands of ``cdbrules``, one module each.

A module provides ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning the exit code) as a default.
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict

from . import cdbtools as _cdbtools
from . import check as _check
from . import compile as _compile

COMMANDS: Dict[str, ModuleType] = {
    "compile": _compile,
    "check": _check,
    "make": _cdbtools.make,
    "dump": _cdbtools.dump,
    "get": _cdbtools.get,
    "stats": _cdbtools.stats,
}
