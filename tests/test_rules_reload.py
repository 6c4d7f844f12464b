"""Hot reload of a long-lived ``Rules``: replaced, rewritten, vanished and corrupt files,
``missing_ok``, the rate limit, and lookups in many threads while the file is replaced.

The rate limit is tested with a fake clock (``cdbrules.rules._monotonic``), never by sleeping.
"""

from __future__ import annotations

import io
import logging
import os
import random
import struct
import threading
from pathlib import Path
from typing import Dict, List, Set

import pytest

import cdbrules.rules as rules_mod
from cdbrules import CdbFormatError, Decision, Rules, compile as compile_rules

A = b"1.2.3.4:allow,V=\"a\"\n1.2.3.:deny,V=\"a-net\"\n=mail.example.com:allow,RELAYCLIENT=\"\"\n:allow,V=\"a-default\"\n"
B = b"1.2.3.4:deny\n1.2.:allow,V=\"b-net\"\n5.6.7.8:allow,V=\"b\"\n:deny\n"


def put(path: Path, text: bytes) -> None:
    """Replace path as tcprules does: write a temporary file, rename it over path."""
    compile_rules(io.BytesIO(text), path, str(path) + ".tmp")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(rules_mod, "_monotonic", c)
    return c


def v(rules: Rules, ip: str = "1.2.3.4", host: "str | None" = None) -> "str | None":
    d = rules.check(ip, host)
    return d.env.get("V", "deny" if not d.allowed else None)


def test_replacement_seen_after_the_interval(tmp_path: Path, clock: FakeClock) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=5) as r:
        assert v(r) == "a"
        put(p, B)
        clock.now += 4.9
        assert v(r) == "a", "looked at the file before the interval was over"
        clock.now += 0.2
        assert v(r) == "deny" and r.check("1.2.9.9").env["V"] == "b-net"
        assert r.reload_error is None
        put(p, A)  # check_ip, the bytes path, waits for the interval and then sees it too
        clock.now += 4.9
        assert r.check_ip(b"1.2.3.4").allowed is False
        clock.now += 0.2
        assert r.check_ip(b"1.2.3.4").env["V"] == "a"


def test_reload_forces_a_check(tmp_path: Path, clock: FakeClock) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=None) as r:
        put(p, B)
        clock.now += 1e9
        assert v(r) == "a", "reload_interval=None must never check by itself"
        assert r.reload() is True
        assert v(r) == "deny"
        assert r.reload() is False  # nothing changed since


def test_interval_zero_checks_every_lookup(tmp_path: Path) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=0) as r:
        for i in range(6):
            put(p, A if i % 2 else B)
            assert v(r) == ("a" if i % 2 else "deny")
            put(p, B if i % 2 else A)
            assert r.check_ip(b"1.2.3.4").env.get("V") == (None if i % 2 else "a")
            put(p, A if i % 2 else B)
            assert r.check_many(["1.2.3.4", "5.6.7.8"])[1].env.get("V") == ("a-default" if i % 2 else "b")


def test_rewritten_in_place(tmp_path: Path) -> None:
    """tcprules with TMP == CDB truncates and rewrites the same inode: size/mtime change."""
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=0) as r:
        assert v(r) == "a"
        ino = p.stat().st_ino
        compile_rules(io.BytesIO(B + b"9.9.9.9:allow\n"), tmp_path / "other.cdb")
        with open(p, "r+b") as f:  # same inode, new content
            f.write((tmp_path / "other.cdb").read_bytes())
            f.truncate()
        assert p.stat().st_ino == ino
        assert v(r) == "deny"


def test_replaced_by_the_real_tcprules(refs, tmp_path: Path) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=0) as r:
        assert v(r) == "a"
        res = refs.run([refs.tcprules_v4, str(p), str(p) + ".tmp"], stdin=B)
        assert res.returncode == 0, res
        assert v(r) == "deny" and r.check("1.2.3.5").env["V"] == "b-net"


def test_vanished_file_keeps_the_last_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    caplog.set_level(logging.WARNING, logger="cdbrules")
    with Rules(p, reload_interval=0) as r:
        p.unlink()
        for _ in range(5):
            assert v(r) == "a"
        assert isinstance(r.reload_error, FileNotFoundError)
        assert len([m for m in caplog.records if "vanished" in m.getMessage()]) == 1, "warn once, not per lookup"
        put(p, B)
        assert v(r) == "deny" and r.reload_error is None


def _bad_files(tmp_path: Path) -> Dict[str, Path]:
    out = {}
    junk = random.Random(7).randbytes(5000) if hasattr(random.Random, "randbytes") else os.urandom(5000)
    for name, data in {
        "empty": b"",
        "short": b"not a cdb\n",
        "text": b"1.2.3.4:allow\n" * 300,
        "junk": junk,
        # a valid header shape whose table 7 points past the end: cdb_init accepts it,
        # the structural check must not
        "table-outside": b"".join(struct.pack("<II", 2048, 0) for _ in range(7))
        + struct.pack("<II", 2048, 1000) + struct.pack("<II", 2048, 0) * 248,
        # a slot naming a record that does not fit
        "record-outside": b"".join(struct.pack("<II", 2048, 2 if i == 5 else 0) for i in range(256))
        + struct.pack("<II", 5381, 0x7FFFFFF0) * 2,
    }.items():
        f = tmp_path / f"bad-{name}"
        f.write_bytes(data)
        out[name] = f
    d = tmp_path / "bad-dir"
    d.mkdir()
    out["directory"] = d
    return out


def test_corrupt_replacement_keeps_the_last_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    caplog.set_level(logging.WARNING, logger="cdbrules")
    with Rules(p, reload_interval=0) as r:
        for name, bad in _bad_files(tmp_path).items():
            caplog.clear()
            if bad.is_dir():
                p.unlink()  # a directory cannot be renamed over a file
            os.rename(bad, p)
            for _ in range(3):
                assert v(r) == "a", name
            assert isinstance(r.reload_error, (CdbFormatError, IsADirectoryError)), (name, r.reload_error)
            assert len([m for m in caplog.records if "cannot be used" in m.getMessage()]) == 1, name
            assert r.reload() is False and v(r) == "a"
        p.rmdir()  # the directory came last
        put(p, B)
        assert v(r) == "deny" and r.reload_error is None


def test_first_open_is_as_lenient_as_tcpserver(tmp_path: Path) -> None:
    """A damaged part of the file first opened only matters when a lookup reaches it."""
    p = tmp_path / "r.cdb"
    put(p, b"9.9.9.9:allow,X=\"1\"\n")
    raw = bytearray(p.read_bytes())
    # bucket 5 (the empty key's) gets a table of two slots naming a record past the end
    raw[5 * 8:6 * 8] = struct.pack("<II", len(raw), 2)
    raw += struct.pack("<II", 5381, 0x7FFFFFF0) * 2
    p.write_bytes(bytes(raw))
    with Rules(p) as r:
        assert r.check("9.9.9.9").env["X"] == "1"  # matched before the empty key is tried
        with pytest.raises(CdbFormatError):
            r.check("1.1.1.1")  # falls through to the empty key


def test_missing_ok(tmp_path: Path) -> None:
    p = tmp_path / "r.cdb"
    with pytest.raises(FileNotFoundError):
        Rules(p)
    with Rules(p, missing_ok=True, reload_interval=0) as r:
        d = r.check("1.2.3.4", "mail.example.com", "joe")
        assert d.allowed and d.rule is None and dict(d.env) == {} and r.reload_error is None
        assert r.check_many(["1.2.3.4", "9.9.9.9"]) == [d, d] and r.explain("1.2.3.4") != []
        put(p, A)  # the file appears: its rules apply from now on
        assert v(r) == "a" and v(r, "9.9.9.9", "mail.example.com") is None
        p.unlink()  # and vanishes again: the last rules stay (see Rules' documentation)
        assert v(r) == "a" and isinstance(r.reload_error, FileNotFoundError)


def test_missing_ok_still_fails_on_other_errors(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        Rules(tmp_path / "d", missing_ok=True)
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(CdbFormatError):
        Rules(tmp_path / "e", missing_ok=True)


def test_close(tmp_path: Path) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with Rules(p, reload_interval=0) as r:
        assert not r.closed and "loaded" in repr(r)
    assert r.closed and "closed" in repr(r)
    for call in (lambda: r.check("1.2.3.4"), lambda: r.check("1.2.3.4", "h", "i"), lambda: r.check_ip(b"1.2.3.4"),
                 lambda: r.check_many(["x"]),
                 lambda: r.check_many([]), lambda: r.explain("1.2.3.4"), r.reload):
        with pytest.raises(ValueError, match="closed"):
            call()
    r.close()  # twice is fine


@pytest.mark.parametrize("bad", [-1, float("nan"), "1"])
def test_bad_interval(tmp_path: Path, bad: object) -> None:
    p = tmp_path / "r.cdb"
    put(p, A)
    with pytest.raises(ValueError):
        Rules(p, reload_interval=bad)  # type: ignore[arg-type]


def test_threads_see_old_or_new_never_torn(tmp_path: Path) -> None:
    """Lookups in several threads while another thread replaces the file again and again:
    no error, and every answer (a whole check_many batch included) is one the old or the new
    file gives."""
    rng = random.Random(11)
    texts = []
    for gen in range(2):
        lines = [f"10.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(8)}:{rng.choice(['allow', 'deny'])},"
                 f"G=\"{gen}\",K=\"{i}\"\n" for i in range(300)]
        lines += [f"10.{i}.:allow,G=\"{gen}\",NET=\"{i}\"\n" for i in range(4)] + [f":deny,G=\"{gen}\"\n"]
        texts.append("".join(lines).encode())
    queries = [f"10.{rng.randrange(5)}.{rng.randrange(4)}.{rng.randrange(8)}" for _ in range(200)]
    expected: List[List[Decision]] = []
    for gen, text in enumerate(texts):
        f = tmp_path / f"gen{gen}.cdb"
        put(f, text)
        with Rules(f) as r:
            expected.append([r.check(q) for q in queries])
    differ = sum(a != b for a, b in zip(*expected))
    assert differ > len(queries) // 2  # the two files really disagree
    allowed: List[Set[Decision]] = [{a, b} for a, b in zip(*expected)]

    p = tmp_path / "live.cdb"
    put(p, texts[0])
    stop = threading.Event()
    errors: List[BaseException] = []
    seen = [0, 0]
    rules = Rules(p, reload_interval=0)

    def checker(k: int) -> None:
        local = random.Random(k)
        try:
            while not stop.is_set():
                if local.random() < 0.3:
                    batch = rules.check_many(queries)
                    gens = {d.env["G"] for d in batch}
                    assert len(gens) == 1, f"a check_many batch mixed files: {gens}"
                    assert batch == expected[int(gens.pop())], "a batch differs from its file's answers"
                else:
                    i = local.randrange(len(queries))
                    d = rules.check(queries[i])
                    assert d in allowed[i], f"{queries[i]}: {d} is neither file's answer"
                    seen[int(d.env["G"])] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=checker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 81):
            if stop.is_set():
                break
            put(p, texts[i % 2])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[0]
    assert seen[0] and seen[1], f"both files must have been in force: {seen}"
    rules.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_can_reload(tmp_path: Path) -> None:
    """A fork while another thread holds the reload lock must not leave the child unable to reload."""
    p = tmp_path / "r.cdb"
    put(p, A)
    r = Rules(p, reload_interval=0)
    r._lock.acquire()  # as if another thread were reloading at fork() time
    try:
        put(p, B)
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 when it sees the new file
            try:
                os._exit(0 if v(r) == "deny" and r.reload() is False else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        r._lock.release()
        r.close()
