"""The platform helpers of helpers.py, on this system and with sys.platform set to what
another one says (the suite also runs on macOS and musl Linux, where the wheels are
tested): what only Linux has skips elsewhere and says why, a missing tool fails under CI
on Linux and skips anywhere else, and ru_maxrss is read in the platform's own unit."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import char_device, lacking, linux_only, maxrss_kib, on_linux, tmpfs


@pytest.mark.parametrize("platform, linux", [("linux", True), ("darwin", False), ("freebsd14", False)])
def test_linux_only(monkeypatch: pytest.MonkeyPatch, platform: str, linux: bool) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert on_linux() is linux
    mark = linux_only("/proc/locks")
    assert mark.name == "skipif"
    assert mark.args == (not linux,)
    assert mark.kwargs["reason"] == "Linux only: needs /proc/locks"


@pytest.mark.parametrize("platform, ci, outcome", [
    ("linux", "true", pytest.fail.Exception),  # CI on Linux must have it
    ("linux", "", pytest.skip.Exception),  # a developer's machine
    ("linux", "0", pytest.skip.Exception),
    ("darwin", "true", pytest.skip.Exception),  # the macOS CI job: only Linux has it
])
def test_lacking(monkeypatch: pytest.MonkeyPatch, platform: str, ci: str, outcome: type) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome) as e:  # type: ignore[call-overload]
        lacking("setpriv")
    assert "setpriv" in str(e.value)
    if platform == "darwin":
        assert "Linux only" in str(e.value)


def test_tmpfs_skips_off_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception, match="Linux only: needs mount -t tmpfs \\(why\\)"):
        next(tmpfs(tmp_path / "fs", "1m", "why"))
    assert not (tmp_path / "fs").exists()


@pytest.mark.parametrize("platform, raw, kib", [("linux", 2048, 2048), ("darwin", 2048 * 1024, 2048),
                                                ("darwin", 1023, 0)])
def test_maxrss_units(monkeypatch: pytest.MonkeyPatch, platform: str, raw: int, kib: int) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert maxrss_kib(raw) == kib


def test_maxrss_measures_kib_here() -> None:
    """On this system: a process that has touched 64 MiB peaks at 64 MiB or more, and far
    below the 64 GiB that bytes taken for KiB would say (under the sanitizer run the
    preloaded ASan runtime adds about 1.4 GB of its own)."""
    script = ("import resource\n"
              "block = b'x' * (64 << 20)\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    peak = maxrss_kib(int(r.stdout))
    assert 64 * 1024 <= peak < 16 * 1024 * 1024, peak


def test_char_device() -> None:
    dev = char_device()
    assert stat.S_ISCHR(os.stat(dev).st_mode)
    assert dev == (Path("/dev/full") if os.path.exists("/dev/full") else Path("/dev/null"))
