"""Shared fixtures (shared functions and classes are in helpers.py).

``refs``: the real programs (tcprules, tcprulescheck of both Debian builds, freecdb's
cdbmake/cdbdump/cdbget/cdbstats, tinycdb's cdb), fetched and unpacked by tests/refs.py.
Tests that need them fail when CI is set and they cannot be had; elsewhere they skip with
the reason.  ``checker``: helpers.Checker in a scratch folder, for the differential
compile tests.  ``other_fs``: a directory on another file system than tmp_path.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import refs as _refs  # noqa: E402
from helpers import EXAMPLES, Checker, other_file_system, scratch_dir  # noqa: E402


@pytest.fixture(scope="session")
def refs() -> "_refs.Refs":
    return _refs.refs_or_skip()


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def checker(refs: "_refs.Refs") -> Iterator[Checker]:
    work = scratch_dir()
    try:
        yield Checker(refs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on another file system than tmp_path (helpers.other_file_system)."""
    yield from other_file_system(tmp_path)


def pytest_report_header(config: pytest.Config) -> str:
    return f"cdbrules differential tests: CI={os.environ.get('CI', '')!r} (references are required when CI is set)"
