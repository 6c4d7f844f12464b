"""The C core really is compiled into the installed package.

setuptools only warns ("Unknown distribution option: 'cffi_modules'") when cffi is
missing from the build requirements, and then installs a package without its
extension.  These tests turn such a build into a loud failure, and check that what was
built is the whole cdef, callable, and tagged for the stable ABI where cffi allows it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import re
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

CDEF = Path(__file__).resolve().parents[1] / "csrc" / "cdbrules_cdef.h"


def _native() -> ModuleType:
    try:
        return importlib.import_module("cdbrules._native")
    except ImportError as e:
        pytest.fail(
            f"the C extension cdbrules._native is not installed ({e}); the package was built "
            "without compiling csrc/ (is cffi in [build-system].requires?)",
            pytrace=False,
        )


def _declared_functions() -> list[str]:
    """Function names declared in the cdef header the build reads."""
    text = re.sub(r"/\*.*?\*/", " ", CDEF.read_text(), flags=re.S)
    names = []
    for decl in text.split(";"):
        m = re.search(r"(\w+)\s*\(", decl)
        if m:
            names.append(m.group(1))
    return names


def test_extension_is_a_compiled_module() -> None:
    native = _native()
    import cdbrules

    path = Path(native.__file__ or "")
    assert path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
    # the extension that runs is the one installed beside the package, not a stray copy
    assert path.parent == Path(cdbrules.__file__).parent


def test_every_declared_function_is_compiled() -> None:
    native = _native()
    names = _declared_functions()
    # the header parse itself must have found the core, or this test would prove nothing
    assert {"cdb_init", "cdb_find", "cdb_make_add", "rules_feed", "rules_check"} <= set(names)
    missing = [n for n in names if not hasattr(native.lib, n)]
    assert not missing, f"declared in {CDEF.name} but absent from the extension: {missing}"
    kinds = {n: native.ffi.typeof(getattr(native.lib, n)).kind for n in names}
    assert set(kinds.values()) == {"function"}, kinds


def test_calls_reach_c() -> None:
    """cdb_hash against the hash as djb defines it (h = 5381; h = (h * 33) ^ c)."""
    native = _native()
    for key in (b"", b"a", b"127.0.0.1", bytes(range(256)) * 3):
        h = 5381
        for c in key:
            h = ((h * 33) & 0xFFFFFFFF) ^ c
        assert native.lib.cdb_hash(key, len(key)) == h, key


@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")) or hasattr(sys, "gettotalrefcount"),
    reason="cffi builds for the full C API on free-threaded and debug Pythons",
)
def test_stable_abi() -> None:
    """On a regular CPython the extension targets the stable ABI (one wheel for 3.9+)."""
    path = Path(_native().__file__ or "")
    assert ".abi3." in path.name, path.name
