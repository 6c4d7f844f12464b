"""The one C boundary: only cdbrules._bindings reaches into the C extension, and the
public API refuses wrong argument types with TypeError, not a stray AttributeError."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pytest

import cdbrules
from cdbrules import _bindings

SRC = Path(cdbrules.__file__).resolve().parent


def _modules() -> list:
    return sorted(p for p in SRC.rglob("*.py") if p.name not in ("_bindings.py", "_ffi_build.py"))


def test_only_the_bindings_import_the_extension() -> None:
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_native"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name.endswith("_native") for a in node.names):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id in ("ffi", "lib"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} uses {node.id}")
    assert len(_modules()) > 10
    assert offenders == []


def test_exception_is_the_one_translation() -> None:
    import errno

    assert type(_bindings.exception(errno.EBADF, "x")) is ValueError
    e = _bindings.exception(errno.EPROTO, "x.cdb")
    assert isinstance(e, cdbrules.CdbFormatError) and e.path == "x.cdb"
    e = _bindings.exception(errno.ENOMEM, "x.tmp", writing=True)
    assert type(e) is MemoryError and "x.tmp" in str(e)
    e = _bindings.exception(errno.EFBIG, "x.tmp", writing=True, overlimit=True)
    assert isinstance(e, cdbrules.SizeLimitError) and e.filename == "x.tmp"
    e = _bindings.exception(errno.EFBIG, "x.tmp", writing=True)
    assert type(e) is OSError and e.errno == errno.EFBIG
    e = _bindings.exception(errno.ENOENT, "gone")
    assert isinstance(e, FileNotFoundError) and e.filename == "gone"


@pytest.mark.parametrize("bad", [None, 1.5, True, object(), ["rules"]])
def test_compile_refuses_what_is_not_a_source(bad: object, tmp_path: Path) -> None:
    if not isinstance(bad, list):  # compile takes a list of sources (issue #9); make does not
        with pytest.raises(TypeError, match="path, a binary file or a file descriptor"):
            cdbrules.compile(bad, tmp_path / "x.cdb")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="path, a binary file or a file descriptor"):
            cdbrules.compile([io.BytesIO(b":allow\n"), bad], tmp_path / "x.cdb")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="path, a binary file or a file descriptor"):
        cdbrules.make(bad, tmp_path / "x.cdb")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_unsafe_tmp_errors_are_public(tmp_path: Path) -> None:
    assert issubclass(cdbrules.SameFileError, cdbrules.UnsafeTmpError)
    assert issubclass(cdbrules.UnsafeTmpError, ValueError)
    (tmp_path / "r").write_bytes(b":allow\n")
    with pytest.raises(cdbrules.SameFileError):
        cdbrules.compile(tmp_path / "r", tmp_path / "x.cdb", tmp_path / "x.cdb")


def test_bare_command_lists_the_commands() -> None:
    r = subprocess.run([sys.executable, "-m", "cdbrules"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 100 and r.stdout == ""
    for name in ("compile", "check", "make", "dump", "get", "stats"):
        assert f"\n    {name} " in r.stderr, r.stderr
