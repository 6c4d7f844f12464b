"""Reference programs for differential tests, fetched by the test setup itself.

The oracle binaries (ucspi-tcp v4 and v6 ``tcprules``/``tcprulescheck``, freecdb's
``cdbmake``/``cdbdump``/``cdbget``/``cdbstats`` and tinycdb's ``cdb``) are taken
from Debian packages with ``apt-get download`` and unpacked with ``dpkg -x``.
Nothing is installed system-wide (the two ucspi packages conflict).

Cache location: ``$CDBRULES_REFS_DIR`` if set, else ``<repo>/.cache/refs``.
The unpacked tree is built in a staging directory under a ``flock`` and then
renamed into place, so concurrent test sessions never see a half-built tree.

The versions are pinned: ``VERSIONS`` holds the Debian versions the README names, and
a tree of other versions is refused (a failure under CI, a skip elsewhere) with what was
expected and what was found.

``CDBRULES_NO_REFS=1`` turns the references off where they cannot exist (macOS, wheel
tests in manylinux containers): the tests that need them then skip, saying so, even
when CI is set.

Usage::

    from refs import get_refs, refs_or_skip   # or: from tests.refs import ...

    refs = refs_or_skip()                      # in a fixture
    r = refs.run([refs.cdbmake, "x.cdb", "x.tmp"], stdin=b"+1,1:a->b\\n\\n")
    assert not r.timed_out and r.returncode == 0

``python tests/refs.py`` fetches the references and prints their paths.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Union

__all__ = [
    "PACKAGES",
    "VERSIONS",
    "RefResult",
    "Refs",
    "get_refs",
    "refs_dir",
    "refs_or_skip",
    "truthy",
    "version_mismatches",
]

#: Debian packages that are downloaded and unpacked.
PACKAGES: tuple[str, ...] = ("ucspi-tcp", "ucspi-tcp-ipv6", "freecdb", "tinycdb", "libcdb1")

#: The Debian versions the README names, which the differential tests were written and
#: checked against.  A binary-only rebuild (a ``+bN`` suffix, e.g. tinycdb 0.78+b1) is the
#: same source and passes.
VERSIONS: dict[str, str] = {
    "ucspi-tcp": "1:0.88-7",
    "ucspi-tcp-ipv6": "1:0.88-7",
    "freecdb": "0.76",
    "tinycdb": "0.78",
    "libcdb1": "0.78",
}

# Bump when the layout of the unpacked tree changes; old trees are then ignored.
_TREE_NAME = "debian-v1"
_MANIFEST = "manifest.json"
_APT_TIMEOUT = 600  # seconds, per apt-get invocation

# attribute name -> path relative to the tree root
_BINARIES: dict[str, str] = {
    "tcprules_v4": "ucspi-tcp/usr/bin/tcprules",
    "tcprulescheck_v4": "ucspi-tcp/usr/bin/tcprulescheck",
    "tcprules_v6": "ucspi-tcp-ipv6/usr/bin/tcprules",
    "tcprulescheck_v6": "ucspi-tcp-ipv6/usr/bin/tcprulescheck",
    "cdbmake": "freecdb/usr/bin/cdbmake",
    "cdbdump": "freecdb/usr/bin/cdbdump",
    "cdbget": "freecdb/usr/bin/cdbget",
    "cdbstats": "freecdb/usr/bin/cdbstats",
    "tinycdb": "tinycdb/usr/bin/cdb",
}

StdinArg = Union[bytes, None, int, IO[bytes]]


class RefResult(subprocess.CompletedProcess[bytes]):
    """A finished (or timed-out) run of a reference program.

    ``returncode`` is ``None`` and ``timed_out`` is True when the timeout hit;
    ``stdout``/``stderr`` then hold whatever was written before the kill.
    A negative returncode means the program died from that signal (e.g. -11).
    """

    returncode: int | None  # type: ignore[assignment]
    stdout: bytes
    stderr: bytes

    def __init__(
        self,
        args: Sequence[str],
        returncode: int | None,
        stdout: bytes,
        stderr: bytes,
        timed_out: bool,
    ) -> None:
        super().__init__(list(args), returncode, stdout, stderr)  # type: ignore[arg-type]
        self.timed_out = timed_out

    def __repr__(self) -> str:
        return (
            f"RefResult(args={self.args!r}, returncode={self.returncode!r}, "
            f"timed_out={self.timed_out!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"
        )


@dataclass(frozen=True)
class Refs:
    """Absolute paths of the unpacked reference binaries."""

    root: str
    tcprules_v4: str
    tcprulescheck_v4: str
    tcprules_v6: str
    tcprulescheck_v6: str
    cdbmake: str
    cdbdump: str
    cdbget: str
    cdbstats: str
    tinycdb: str
    #: A complete, minimal environment for subprocesses: PATH and the
    #: LD_LIBRARY_PATH that tinycdb's ``cdb`` needs to find libcdb.so.1.
    env: dict[str, str]
    #: Debian package name -> version that was unpacked.
    versions: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        stdin: StdinArg = b"",
        env: Mapping[str, str | None] | None = None,
        timeout: float = 10,
        cwd: str | os.PathLike[str] | None = None,
    ) -> RefResult:
        """Run ``argv`` with a timeout; never raises on timeout or non-zero exit.

        ``stdin``: bytes are fed through a pipe (default: empty input); an fd,
        a file object or None (inherit) is passed to the child as is.
        ``env``: merged over :attr:`env` (the minimal base); a value of None
        removes that variable. Without ``env`` the base is used as is.
        """
        full_env = dict(self.env)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        args = [os.fspath(a) for a in argv]
        if isinstance(stdin, bytes):
            feed: bytes | None = stdin
            child_stdin: int | IO[bytes] | None = subprocess.PIPE
        else:
            feed, child_stdin = None, stdin
        proc = subprocess.Popen(
            args,
            stdin=child_stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(feed, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            return RefResult(args, None, out, err, timed_out=True)
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        return RefResult(args, proc.returncode, out, err, timed_out=False)


def version_mismatches(versions: Mapping[str, str]) -> list[str]:
    """How unpacked package versions differ from VERSIONS, one phrase a package."""
    out = []
    for pkg, want in VERSIONS.items():
        have = versions.get(pkg)
        if have is None or re.sub(r"\+b[0-9]+$", "", have) != want:
            out.append(f"{pkg} {want} expected, {have or 'none'} found")
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def refs_dir() -> Path:
    """The cache folder: ``$CDBRULES_REFS_DIR`` or ``<repo>/.cache/refs``."""
    override = os.environ.get("CDBRULES_REFS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".cache" / "refs"


# --------------------------------------------------------------------------
# building the cache


def _cmd(argv: list[str], cwd: Path | None = None, timeout: float = _APT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
        )
    except FileNotFoundError as e:
        raise RuntimeError(f"cannot run {argv[0]!r}: {e} (not a Debian-based system?)") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout}s") from e


def _describe(r: subprocess.CompletedProcess[str]) -> str:
    text = (r.stderr.strip() or r.stdout.strip())[-1500:]
    return f"`{' '.join(r.args)}` exited {r.returncode}: {text}"


def _download(dest: Path) -> None:
    argv = ["apt-get", "download", *PACKAGES]
    if os.geteuid() == 0:
        # let root download into a private temp dir without the _apt sandbox warning
        argv[1:1] = ["-o", "APT::Sandbox::User=root"]
    first = _cmd(argv, cwd=dest)
    if first.returncode == 0:
        return
    upd = _cmd(["apt-get", "update"])
    if upd.returncode != 0:
        raise RuntimeError(
            f"apt-get download failed ({_describe(first)}); apt-get update failed too ({_describe(upd)})"
        )
    for f in dest.glob("*.deb"):
        f.unlink()
    second = _cmd(argv, cwd=dest)
    if second.returncode != 0:
        raise RuntimeError(f"apt-get download failed even after apt-get update: {_describe(second)}")


def _find_deb(debs: Path, pkg: str) -> Path:
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if len(found) != 1:
        raise RuntimeError(f"expected one {pkg}_*.deb in {debs}, found {[f.name for f in found]}")
    return found[0]


def _build(tree: Path) -> None:
    debs = tree / "_debs"
    debs.mkdir(parents=True)
    _download(debs)
    versions: dict[str, str] = {}
    for pkg in PACKAGES:
        deb = _find_deb(debs, pkg)
        r = _cmd(["dpkg", "-x", str(deb), str(tree / pkg)])
        if r.returncode != 0:
            raise RuntimeError(f"unpacking {deb.name} failed: {_describe(r)}")
        v = _cmd(["dpkg-deb", "-f", str(deb), "Version"])
        versions[pkg] = v.stdout.strip() if v.returncode == 0 else "?"
    libs = sorted(tree.glob("libcdb1/usr/lib/**/libcdb.so.1"))
    if not libs:
        raise RuntimeError("libcdb1 package has no libcdb.so.1")
    missing = [rel for rel in _BINARIES.values() if not (tree / rel).is_file()]
    if missing:
        raise RuntimeError(f"unpacked packages lack {missing}")
    manifest = {
        "packages": PACKAGES,
        "versions": versions,
        "libdir": str(libs[0].parent.relative_to(tree)),
    }
    (tree / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _load(tree: Path) -> Refs | None:
    """The Refs for a complete tree, or None if the tree is absent or incomplete."""
    try:
        manifest = json.loads((tree / _MANIFEST).read_text())
        if tuple(manifest["packages"]) != PACKAGES:
            return None
        libdir = tree / manifest["libdir"]
        versions = dict(manifest["versions"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paths = {name: tree / rel for name, rel in _BINARIES.items()}
    if not all(os.access(p, os.X_OK) for p in paths.values()) or not (libdir / "libcdb.so.1").is_file():
        return None
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(libdir)}
    return Refs(root=str(tree), env=env, versions=versions, **{k: str(p) for k, p in paths.items()})


def _ensure(base: Path) -> Refs:
    tree = base / _TREE_NAME
    refs = _load(tree)
    if refs is not None:
        return refs
    try:
        base.mkdir(parents=True, exist_ok=True)
        lockf = open(base / ".lock", "a+b")
    except OSError as e:
        raise RuntimeError(f"cannot create the reference cache {base}: {e}") from e
    with lockf:
        fcntl.flock(lockf.fileno(), fcntl.LOCK_EX)
        refs = _load(tree)  # another process may have finished meanwhile
        if refs is not None:
            return refs
        # We hold the lock: leftovers of killed runs and incomplete trees can go.
        for stale in base.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if tree.exists():
            shutil.rmtree(tree)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
        try:
            _build(staging / "tree")
            os.rename(staging / "tree", tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    refs = _load(tree)
    if refs is None:
        raise RuntimeError(f"reference tree {tree} is incomplete right after building it")
    return refs


_lock = threading.Lock()
_cached: Refs | RuntimeError | None = None


def get_refs() -> Refs:
    """Fetch (once per cache folder) and return the reference programs.

    The outcome, success or failure, is cached for the life of the process.
    Raises RuntimeError saying what failed if they cannot be obtained.
    """
    global _cached
    if truthy(os.environ.get("CDBRULES_NO_REFS")):
        raise RuntimeError("reference programs turned off by CDBRULES_NO_REFS (no Debian packages here)")
    with _lock:
        if _cached is None:
            base = refs_dir()
            try:
                _cached = _pinned(_ensure(base))
            except RuntimeError as e:
                _cached = RuntimeError(f"reference programs unavailable (cache {base}): {e}")
            except OSError as e:
                _cached = RuntimeError(f"reference programs unavailable (cache {base}): {e!r}")
        if isinstance(_cached, RuntimeError):
            raise _cached
        return _cached


def _pinned(refs: Refs) -> Refs:
    wrong = version_mismatches(refs.versions)
    if wrong:
        raise RuntimeError(
            f"{refs.root} holds other versions than the README names and tests/refs.py pins: "
            + "; ".join(wrong) + " (remove the cache to fetch again, from a Debian release that has them)"
        )
    return refs


def truthy(value: str | None) -> bool:
    """An environment switch is on: set, and not empty, 0, false or no."""
    return (value or "").strip().lower() not in ("", "0", "false", "no")


def refs_or_skip() -> Refs:
    """get_refs() for pytest: a hard failure when env CI is set, a skip otherwise.

    With CDBRULES_NO_REFS set the tests skip (and say why) even under CI.
    """
    import pytest

    try:
        return get_refs()
    except RuntimeError as e:
        if truthy(os.environ.get("CI")) and not truthy(os.environ.get("CDBRULES_NO_REFS")):
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))


if __name__ == "__main__":
    try:
        r = get_refs()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    for k, v in vars(r).items():
        print(f"{k}: {v}")
