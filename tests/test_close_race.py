"""close() in one thread while other threads are inside a C call on the same object.

A call into the C core hands it pointers into Python objects: the ``struct cdb``, the file's
bytes, the key, a search state.  Each call must hold every one of them until C is done with
them, whatever another thread does to the object meanwhile.  ``Reader.get_all`` used to
pass the ``struct cdb`` to ``cdb_findstart`` and let ``close()`` free it while the
``cdb_findnext`` loop still read it: a silently short list (or, under AddressSanitizer, a
heap-use-after-free report; ``.ci/asan`` runs this file too).

Every answer must be whole (all 200,000 values of the key, in order) or the clean "closed"
ValueError; a short list, a wrong value or any other exception fails.

Size knob: ``CDBRULES_CLOSE_RACE_N`` trials per test (default 15; ``.ci/asan`` sets 6).
"""

from __future__ import annotations

import io
import os
import random
import struct
import threading
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from cdbrules import Reader, Rules, compile as compile_rules
from cdbrules._bindings import cdb_hash

TRIALS = int(os.environ.get("CDBRULES_CLOSE_RACE_N", "15"))
VALUES = 200_000
HEADER = 2048
THREADS = 4


@pytest.fixture(scope="module")
def zeros(many: Path) -> Path:
    """A file as long as ``many``, all zero bytes: every slot of it is empty, so a search
    that wrongly reads it ends early instead of failing."""
    p = many.with_name("zeros.cdb")
    p.write_bytes(bytes(many.stat().st_size))
    return p


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cdb with 200,000 values under the key ``k``, and the keys ``other`` and ``after``.

    Laid out here rather than by the writer, which (like djb's cdb_make) probes a slot
    chain as long as the key's records so far for each one: seconds for this file."""
    recs = [(b"other", b"x")] + [(b"k", b"%d" % i) for i in range(VALUES)] + [(b"after", b"y")]
    body, pos, where = [], HEADER, []
    for k, v in recs:
        where.append((cdb_hash(k), pos))
        body.append(struct.pack("<II", len(k), len(v)) + k + v)
        pos += 8 + len(k) + len(v)
    tables: Dict[int, List[Tuple[int, int]]] = {}
    for h, rp in where:
        tables.setdefault(h & 255, []).append((h, rp))
    head, tail = [], []
    for b in range(256):
        entries = tables.get(b, [])
        n = 2 * len(entries)
        slots = [(0, 0)] * n
        resume: Dict[int, int] = {}  # chain start -> where its probing left off (all taken before)
        for h, rp in entries:
            start = (h >> 8) % n
            i = resume.get(start, start)
            while slots[i][1]:
                i = (i + 1) % n
            slots[i] = (h, rp)
            resume[start] = i
        head.append(struct.pack("<II", pos, n))
        tail.append(b"".join(struct.pack("<II", h, rp) for h, rp in slots))
        pos += 8 * n
    p = tmp_path_factory.mktemp("close-race") / "many.cdb"
    p.write_bytes(b"".join(head + body + tail))
    with Reader(p) as r:  # the layout is the format's: the C reader finds everything
        assert r.get_all(b"k") == [v for k, v in recs if k == b"k"] and r[b"after"] == b"y" and len(r) == len(recs)
    return p


def _race(open_: Callable[[], object], call: Callable[[object], object], check: Callable[[object], None],
          close: Callable[[object], None], seed: int, reuse: Callable[[], object]) -> int:
    """TRIALS rounds of THREADS threads calling call(obj) while the main thread closes obj
    after a random delay, then at once opens more objects with reuse() (in a real program
    memory freed by close() is soon reused; here the new objects are likely to get it).
    Return how many calls gave a whole answer."""
    rng = random.Random(seed)
    whole = 0
    errors: List[BaseException] = []
    for _ in range(TRIALS):
        obj = open_()
        started = threading.Barrier(THREADS + 1)
        results: List[object] = []

        def worker() -> None:
            started.wait()
            try:
                while True:
                    results.append(call(obj))
            except ValueError as e:
                if "closed" not in str(e):
                    errors.append(e)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        started.wait()
        threading.Event().wait(rng.uniform(0.0, 0.03))
        close(obj)
        others = [reuse() for _ in range(8)]
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a call did not return after close()"
        assert not errors, repr(errors[0])
        for r in results:
            check(r)
        whole += len(results)
        for o in others:
            close(o)
    return whole


def test_get_all_survives_close(many: Path, zeros: Path) -> None:
    expected = [b"%d" % i for i in range(VALUES)]

    def check(r: object) -> None:
        assert isinstance(r, list)
        assert len(r) == VALUES, f"get_all gave {len(r)} of {VALUES} values"
        assert r == expected

    whole = _race(lambda: Reader(many), lambda r: r.get_all(b"k"), check,  # type: ignore[attr-defined]
                  lambda r: r.close(), 1, lambda: Reader(zeros))  # type: ignore[attr-defined]
    assert whole > 0, "no get_all finished before close(): the race was never run"


def test_walks_and_lookups_survive_close(many: Path, zeros: Path) -> None:
    """The other Reader calls that keep C pointers across Python steps: iteration (batches
    of records), len, the lookups."""
    def call(r: object) -> object:
        rd: Reader = r  # type: ignore[assignment]
        n = sum(1 for _ in rd.items())
        return (n, len(rd), rd.get(b"after"), rd[b"other"], b"k" in rd)

    def check(r: object) -> None:
        assert r == (VALUES + 2, VALUES + 2, b"y", b"x", True)

    _race(lambda: Reader(many), call, check, lambda r: r.close(), 2, lambda: Reader(zeros))  # type: ignore[attr-defined]


def test_rules_survive_close(tmp_path: Path) -> None:
    text = b"".join(b"10.%d.%d.:allow,N=\"%d\"\n" % (i >> 8, i & 255, i) for i in range(5000)) + b":deny\n"
    p = tmp_path / "r.cdb"
    compile_rules(io.BytesIO(text), p)
    ips = ["10.%d.%d.7" % (i >> 8, i & 255) for i in range(0, 5000, 7)]

    def call(r: object) -> object:
        rules: Rules = r  # type: ignore[assignment]
        many_ = rules.check_many(ips)
        one = rules.check("10.0.1.2", "h.example", "joe")
        probes = rules.explain("10.0.2.9", "a.b.example", "joe")
        return [d.env["N"] for d in many_], one.env["N"], probes[-1]

    want = [str(i) for i in range(0, 5000, 7)], "1", (b"10.0.2.", True)

    def check(r: object) -> None:
        assert r == want

    z = tmp_path / "zeros.cdb"
    z.write_bytes(bytes(p.stat().st_size))
    _race(lambda: Rules(p, reload_interval=None), call, check, lambda r: r.close(), 3,  # type: ignore[attr-defined]
          lambda: Rules(z, reload_interval=None))
