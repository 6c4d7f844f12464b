"""Shared fixtures.

``refs``: the real programs (tcprules, tcprulescheck of both Debian builds, freecdb's
cdbmake/cdbdump/cdbget/cdbstats, tinycdb's cdb), fetched and unpacked by tests/refs.py.
Tests that need them fail when CI is set and they cannot be had; elsewhere they skip with
the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import refs as _refs  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def refs() -> "_refs.Refs":
    return _refs.refs_or_skip()


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


def pytest_report_header(config: pytest.Config) -> str:
    return f"cdbrules differential tests: CI={os.environ.get('CI', '')!r} (references are required when CI is set)"
