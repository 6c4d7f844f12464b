"""The subcommands of ``cdbrules``.

Each is registered by a module here: ``register(subparsers)`` adds its parser and sets
``run`` (a function of the parsed arguments returning the exit code) as a default.  The
command line imports only the module of the command it runs (the others get a
placeholder parser with their one-line help), so ``cdbrules compile`` starts without
loading the lookup code, and a server importing nothing of this pays nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Dict, NamedTuple, Optional


class Command(NamedTuple):
    module: str  # the module below cdbrules.commands that registers it
    attr: Optional[str]  # the object in that module with register(), or None: the module itself
    help: str  # its line in ``cdbrules --help``


COMMANDS: Dict[str, Command] = {
    "compile": Command("compile", None, "compile tcprules text into a cdb file (drop-in for tcprules)"),
    "expand": Command("compile", "ExpandCommand", "print rules with networks as classic tcprules text (for stock tcprules)"),
    "check": Command("check", None, "show which rule tcpserver applies to a connection (drop-in for tcprulescheck)"),
    "decompile": Command("decompile", None, "print rules text that compiles back into the same cdb file"),
    "diff": Command("diff", None, "show the keys and clients whose rule changes between two rule sets"),
    "explain": Command("explain", None, "show which line of the rules text decides a connection, and why"),
    "lint": Command("lint", None, "report every problem of a rules file (skipped lines, keys that never match, ...)"),
    "make": Command("cdbtools", "make", "build a cdb file from cdbmake input (drop-in for cdbmake)"),
    "dump": Command("cdbtools", "dump", "print every record of a cdb file (drop-in for cdbdump)"),
    "get": Command("cdbtools", "get", "print the value of a key (drop-in for cdbget)"),
    "stats": Command("cdbtools", "stats", "count records and hash-table distances (drop-in for cdbstats)"),
    "policyd": Command("policyd", None, "answer Postfix policy requests (check_policy_service) from a rules file"),
}


def register(name: str, sub: Any) -> None:
    """Add the full parser of command ``name`` to ``sub``, importing the module that has it."""
    cmd = COMMANDS[name]
    mod: Any = import_module(f".{cmd.module}", __name__)
    (getattr(mod, cmd.attr) if cmd.attr else mod).register(sub)
