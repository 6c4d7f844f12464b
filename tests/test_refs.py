"""The reference programs are the versions the README names (tests/refs.py pins them):
another version is refused with what was expected and what was found, a failure under
CI and a skip elsewhere."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import refs as refs_mod

README = Path(__file__).resolve().parents[1] / "README.md"
COMPAT = README.parent / "docs" / "compatibility.md"


def test_readme_names_the_pinned_versions() -> None:
    text = " ".join(README.read_text().split())  # line breaks as spaces
    for pkg, version in refs_mod.VERSIONS.items():
        assert f"`{pkg}` {version}" in text, (pkg, version)
    assert set(refs_mod.VERSIONS) == set(refs_mod.PACKAGES)


def test_compatibility_page_names_the_pinned_versions() -> None:
    table = {m[0]: m[1] for m in re.findall(r"^\|[^|]*\| `([\w-]+)` \| ([^ |]+) \|$", COMPAT.read_text(), re.M)}
    assert table == refs_mod.VERSIONS


def test_version_mismatches() -> None:
    pinned = dict(refs_mod.VERSIONS)
    assert refs_mod.version_mismatches(pinned) == []
    rebuilt = {**pinned, "tinycdb": "0.78+b1", "libcdb1": "0.78+b12"}  # binary-only rebuilds: the same source
    assert refs_mod.version_mismatches(rebuilt) == []
    other = {**pinned, "freecdb": "0.77", "ucspi-tcp-ipv6": "1:0.88-7+deb13u1"}
    del other["libcdb1"]
    assert refs_mod.version_mismatches(other) == [
        "ucspi-tcp-ipv6 1:0.88-7 expected, 1:0.88-7+deb13u1 found",
        "freecdb 0.76 expected, 0.77 found",
        "libcdb1 0.78 expected, none found",
    ]


def _fake_tree(base: Path, versions: dict) -> None:  # type: ignore[type-arg]
    """A reference cache whose programs are there (as empty executables) but whose
    manifest names other versions."""
    tree = base / refs_mod._TREE_NAME
    for rel in refs_mod._BINARIES.values():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"")
        os.chmod(tree / rel, 0o755)
    libdir = tree / "libcdb1/usr/lib"
    libdir.mkdir(parents=True)
    (libdir / "libcdb.so.1").write_bytes(b"")
    manifest = {"packages": list(refs_mod.PACKAGES), "versions": versions, "libdir": "libcdb1/usr/lib"}
    (tree / refs_mod._MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_other_versions_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str,
                                    outcome: type) -> None:
    _fake_tree(tmp_path, {**refs_mod.VERSIONS, "freecdb": "0.77"})
    monkeypatch.setenv("CDBRULES_REFS_DIR", str(tmp_path))
    monkeypatch.delenv("CDBRULES_NO_REFS", raising=False)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(refs_mod, "_cached", None)  # this process's outcome is cached: start afresh
    with pytest.raises(RuntimeError) as e:
        refs_mod.get_refs()
    assert "freecdb 0.76 expected, 0.77 found" in str(e.value)
    assert str(tmp_path / refs_mod._TREE_NAME) in str(e.value)
    with pytest.raises(outcome, match=re.escape("freecdb 0.76 expected, 0.77 found")):  # type: ignore[call-overload]
        refs_mod.refs_or_skip()


def test_pinned_versions_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tree(tmp_path, {**refs_mod.VERSIONS, "tinycdb": "0.78+b1", "libcdb1": "0.78+b1"})
    monkeypatch.setenv("CDBRULES_REFS_DIR", str(tmp_path))
    monkeypatch.delenv("CDBRULES_NO_REFS", raising=False)
    monkeypatch.setattr(refs_mod, "_cached", None)
    got = refs_mod.get_refs()
    assert got.root == str(tmp_path / refs_mod._TREE_NAME) and got.versions["tinycdb"] == "0.78+b1"
