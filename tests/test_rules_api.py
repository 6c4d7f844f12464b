"""``Rules`` and ``Decision``: tcpserver's semantics, the API's contracts, and a live tcpserver.

The live test runs the real tcpserver (v4 build) on 127.0.0.1 with a rules file written by
freecdb's cdbmake (odd data included: ``D`` after env entries, ``+NAME`` without '=', repeated
names, unknown entries, an empty name, overrides of tcpserver's own variables) and connects
from many 127.x.y.z source addresses; the program it runs prints its environment.  Each
``Decision`` must say what tcpserver did: deny (connection closed, program not run) or allow
with exactly these variables set.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, TypeVar, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdbrules import Decision, Rules, compile as compile_rules

_T = TypeVar("_T")
HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))  # examples per property

TEXT = (b"1.2.3.4:allow,A=\"1\",A=\"2\",B=\"\"\n"
        b"1.2.3.:deny,X=\"y\"\n"
        b"joe@1.2.3.5:allow,WHO=\"joe\"\n"
        b"joe@=h.example.com:allow,WHO=\"joe-host\"\n"
        b"=h.example.com:allow,H=\"exact\"\n"
        b"=.example.com:allow,H=\"suffix\"\n"
        b"2001:db8::allow,NET=\"v6\"\n"
        b"=\xc3\xbc.example:allow,U=\"\xc3\xbc\xff\"\n"
        b"=:allow,H=\"any\"\n"
        b":allow,D=\"default\"\n")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory):
    p = tmp_path_factory.mktemp("api") / "r.cdb"
    compile_rules(io.BytesIO(TEXT), p)
    with Rules(p) as r:
        yield r


def test_lookup_order_examples(rules: Rules) -> None:
    d = rules.check("1.2.3.4")
    assert (d.allowed, d.rule, list(d.env.items())) == (True, "1.2.3.4", [("A", "2"), ("B", "")])
    assert rules.check("1.2.3.9").allowed is False and rules.check("1.2.3.9").env["X"] == "y"
    assert rules.check("1.2.3.5", None, "joe").env["WHO"] == "joe"
    assert rules.check("9.9.9.9", "h.example.com", "joe").env["WHO"] == "joe-host"
    assert rules.check("9.9.9.9", "h.example.com").env["H"] == "exact"
    assert rules.check("9.9.9.9", "a.h.example.com").env["H"] == "suffix"
    # tcprulescheck's view (exact): a present but empty host makes '=' apply
    assert rules.check("9.9.9.9", "", exact=True).rule == "="
    assert rules.check("9.9.9.9").rule == ""
    assert rules.check("2001:db8::1").env["NET"] == "v6"
    assert rules.check("2001:db8:1::1").env["NET"] == "v6"
    # textual prefixes: no normalisation (docs/lookup.md)
    assert rules.check("2001:0db8::1", exact=True).rule == ""
    d = rules.check("9.9.9.9", "\xfc.example", exact=True)
    assert d.env["U"] == "\xfc\udcff" and os.fsencode(d.env["U"]) == b"\xc3\xbc\xff"


def test_bytes_and_str_agree(rules: Rules) -> None:
    assert rules.check(b"1.2.3.4") is rules.check("1.2.3.4")
    assert rules.check(b"9.9.9.9", b"\xc3\xbc.example", exact=True) is rules.check("9.9.9.9", "\xfc.example",
                                                                                  exact=True)
    assert rules.check(bytearray(b"1.2.3.4")) is rules.check("1.2.3.4")
    # a str carrying undecodable bytes (os.environ, surrogateescape) means those bytes
    assert rules.check("1.2.3.4", "\udcff.x", exact=True) is rules.check(b"1.2.3.4", b"\xff.x", exact=True)


def test_decisions_are_cached_per_record(rules: Rules) -> None:
    a = rules.check("1.2.3.4")
    assert rules.check("1.2.3.4") is a and rules.check_many(["1.2.3.4"])[0] is a
    assert rules.check_ip(b"1.2.3.4") is a and rules.check_ip("1.2.3.4") is a
    assert rules.check("7.7.7.7") is rules.check("8.8.8.8")  # both the default rule


def test_check_ip_remembers_addresses_without_changing_an_answer(rules: Rules) -> None:
    """check_ip keeps the last few thousand addresses it answered (then starts again): the
    same decisions as check, for more distinct addresses than it keeps, asked twice."""
    rng = random.Random(5)
    ips = [f"1.2.3.{rng.randrange(12)}" if i % 3 == 0 else f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.{i % 256}"
           for i in range(9000)]
    assert len(set(ips)) > 5000
    for ip in ips + ips:
        assert rules.check_ip(ip.encode()) is rules.check(ip), ip
    with pytest.raises(ValueError, match="NUL"):
        rules.check_ip(b"1.2.3.4\0")  # the bytes before the NUL were remembered: still refused


@pytest.mark.parametrize("bad", ["1.2.3.4\0", b"1.2\x00", "\0"])
def test_nul_is_refused(rules: Rules, bad: object) -> None:
    with pytest.raises(ValueError, match="NUL"):
        rules.check(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        rules.check_ip(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        rules.check("1.2.3.4", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        rules.check("1.2.3.4", None, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        rules.check_many(["1.2.3.4", bad])  # type: ignore[list-item]


@pytest.mark.parametrize("bad", [None, 1234, ["1.2.3.4"], 1.5])
def test_wrong_types(rules: Rules, bad: object) -> None:
    with pytest.raises(TypeError, match="ip must be str, bytes"):
        rules.check(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ip must be str, bytes"):
        rules.check_ip(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rules.check_many([bad])  # type: ignore[list-item]


def test_check_many_lengths(rules: Rules) -> None:
    assert rules.check_many([]) == []
    assert rules.check_many(iter(["1.2.3.4", "1.2.3.4"])) == [rules.check("1.2.3.4")] * 2
    with pytest.raises(ValueError, match="hosts"):
        rules.check_many(["1.2.3.4"], hosts=["a", "b"])


def test_decision_value_object() -> None:
    d = Decision.from_record(b"1.2.3.", b"+A=1\0")
    with pytest.raises(AttributeError):
        d.allowed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.env["A"] = "2"  # type: ignore[index]
    assert d == Decision(True, "1.2.3.", {"A": "1"}, b"1.2.3.", b"+A=1\0") and hash(d) == hash(
        Decision(True, "1.2.3.", {"A": "1"}, b"1.2.3.", b"+A=1\0"))
    assert d != Decision.from_record(b"1.2.3.", b"+A=2\0") and d != "x"
    assert pickle.loads(pickle.dumps(d)) == d
    assert repr(d) == "Decision(allowed=True, rule='1.2.3.', env={'A': '1'})"
    none = Decision.from_record(None, b"")
    assert none.allowed and none.rule is None and none.key is None


# -- properties (hypothesis) ----------------------------------------------------------------
IPS = st.sampled_from(["1.2.3.4", "1.2.3.5", "1.2.3.", "1.2.", "", "2001:db8::1", "2001:db8:", "::1", "9.9.9.9",
                       "::ffff:1.2.3.4"]) | st.text(alphabet="0123456789abcdef.:", max_size=20)
HOSTS = st.none() | st.sampled_from(["h.example.com", "a.h.example.com", "", ".", "example.com", "ü.example"]) | \
    st.text(alphabet="abh.xü", max_size=12)
INFOS = st.none() | st.sampled_from(["joe", "", "root"])


def _or_refused(f: Callable[[], _T]) -> Union[_T, str]:
    try:
        return f()
    except ValueError as e:
        assert "tcpserver" in str(e), e
        return "refused"


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ip=IPS, host=HOSTS, info=INFOS, exact=st.booleans())
def test_explain_agrees_with_check(rules: Rules, ip: str, host: Optional[str], info: Optional[str],
                                   exact: bool) -> None:
    """The same probes and the same answer (exact: any text; else both refuse the same text)."""
    probes = _or_refused(lambda: rules.explain(ip, host, info, exact=exact))
    d = _or_refused(lambda: rules.check(ip, host, info, exact=exact))
    if host is None and info is None and not exact:  # check_ip: the same answer, or the same refusal
        assert _or_refused(lambda: rules.check_ip(ip.encode())) == d
    assert (probes == "refused") == (d == "refused") and (d != "refused" or not exact)
    if isinstance(d, str) or isinstance(probes, str):
        return
    assert all(not hit for _, hit in probes[:-1])
    if d.rule is None:
        assert not probes[-1][1]
    else:
        assert probes[-1] == (os.fsencode(d.rule), True)
    keys = [k for k, _ in probes]
    if info is not None:
        assert keys[0] == os.fsencode(info) + b"@" + (os.fsencode(ip) if exact else keys[0].split(b"@")[1])


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(IPS, HOSTS, INFOS), max_size=30), exact=st.booleans())
def test_check_many_is_check_in_a_loop(rules: Rules, batch: List[Tuple[str, Optional[str], Optional[str]]],
                                       exact: bool) -> None:
    """check_many answers as check in a loop, or refuses when check refuses any item."""
    def loop(items: List[Tuple[str, Optional[str], Optional[str]]]) -> object:
        out = [_or_refused(lambda b=b: rules.check(*b, exact=exact)) for b in items]  # type: ignore[misc]
        return "refused" if "refused" in out else out

    ips = [b[0] for b in batch]
    assert _or_refused(lambda: rules.check_many(ips, exact=exact)) == loop([(ip, None, None) for ip in ips])
    assert _or_refused(lambda: rules.check_many(ips, [b[1] for b in batch], [b[2] for b in batch],
                                                exact=exact)) == loop(batch)
    assert _or_refused(lambda: rules.check_many(ips, infos=[b[2] for b in batch], exact=exact)) == \
        loop([(b[0], None, b[2]) for b in batch])


def test_explain_lists_the_lookup_order(tmp_path: Path) -> None:
    """The two worked examples of docs/lookup.md, "The lookup order", on a file where no key
    matches (every probe listed)."""
    p = tmp_path / "none.cdb"
    compile_rules(io.BytesIO(b"nothing.matches.this:deny\n"), p)
    with Rules(p) as r:
        keys = [k for k, hit in r.explain("1.2.3.4", "a.b.example.com", "joe")]
        assert keys == [b"joe@1.2.3.4", b"joe@=a.b.example.com", b"1.2.3.4", b"=a.b.example.com", b"1.2.3.", b"1.2.",
                        b"1.", b"=.b.example.com", b"=.example.com", b"=.com", b"=", b""]
        keys = [k for k, hit in r.explain("2001:db8:0:1::5", "host.v6.example", "joe")]
        assert keys == [b"joe@2001:db8:0:1::5", b"joe@=host.v6.example", b"2001:db8:0:1::5", b"=host.v6.example",
                        b"2001:db8:0:1::", b"2001:db8:0:1:", b"2001:db8:0:", b"2001:db8:", b"2001:", b"=.v6.example",
                        b"=.example", b"=", b""]
        assert [k for k, _ in r.explain("::1")] == [b"::1", b"::", b":", b""]


# -- the live oracle: tcpserver itself ---------------------------------------------------------
TCPSERVER_VARS = {"PROTO", "TCPLOCALIP", "TCPLOCALPORT", "TCPLOCALHOST", "TCPREMOTEIP", "TCPREMOTEPORT",
                  "TCPREMOTEHOST", "TCPREMOTEINFO"}
ENTRIES = [b"D", b"Dx", b"+A=1", b"+A=2", b"+B=", b"+FOO", b"+=noname", b"+C=x=y", b"-X=", b"X", b"",
           b"+EXISTING=overridden", b"+TCPREMOTEIP=6.6.6.6", b"+PROTO=FAKE", b"+V=\xc3\xbc"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(port: int, source: str) -> Optional[bytes]:
    """What the program sent back, or None when the connection closed without data."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks) or None


def test_decisions_match_a_live_tcpserver(refs, tmp_path: Path) -> None:
    rng = random.Random(5)
    records = []
    for i in range(60):
        key = rng.choice([f"127.0.{i // 10}.{i % 10 + 1}", f"127.0.{i // 10}.", f"127.{i % 3 + 1}."])
        data = b"".join(rng.choice(ENTRIES) + b"\0" for _ in range(rng.randrange(0, 6)))
        records.append((key.encode(), data))
    records.append((b"", b"+DEFAULT=yes\0"))
    cdb = tmp_path / "live.cdb"
    text = b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records) + b"\n"
    res = refs.run([refs.cdbmake, str(cdb), str(cdb) + ".tmp"], stdin=text)
    assert res.returncode == 0, res

    tcpserver = str(Path(refs.tcprules_v4).parent / "tcpserver")
    port = _free_port()
    inherited = {"PATH": "/usr/bin:/bin", "EXISTING": "original"}
    server = subprocess.Popen([tcpserver, "-H", "-R", "-l0", "-x", str(cdb), "127.0.0.1", str(port),
                               "/usr/bin/env", "-0"], env=inherited, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(100):  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1, source_address=("127.255.255.254", 0)).close()
                break
            except OSError:
                time.sleep(0.05)
        sources = [f"127.0.{a}.{b}" for a in range(7) for b in range(1, 12)] + ["127.1.0.9", "127.2.5.5", "127.3.3.3",
                                                                                 "127.9.9.9"]
        outcomes = {"denied": 0, "allowed": 0}
        with Rules(cdb) as rules:
            for src in sources:
                got = _connect(port, src)
                d = rules.check(src)
                if got is None:
                    assert not d.allowed, f"{src}: tcpserver denied, Decision {d}"
                    outcomes["denied"] += 1
                    continue
                assert d.allowed, f"{src}: tcpserver allowed, Decision {d}"
                outcomes["allowed"] += 1
                env: Dict[str, str] = {}
                for item in got.split(b"\0")[:-1]:
                    name, _, value = item.partition(b"=")
                    env[os.fsdecode(name)] = os.fsdecode(value)
                ours = {k: v for k, v in d.env.items()}
                assert {k: v for k, v in env.items() if k not in TCPSERVER_VARS} == \
                    {**inherited, **{k: v for k, v in ours.items() if k not in TCPSERVER_VARS}}, src
                for k in TCPSERVER_VARS & set(ours):
                    assert env[k] == ours[k], (src, k)
                if "TCPREMOTEIP" not in ours:
                    assert env["TCPREMOTEIP"] == src
        assert outcomes["denied"] > 5 and outcomes["allowed"] > 5, outcomes
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True)
@given(ip=st.text(alphabet="0123456789abcdef.:", max_size=150) | IPS, host=HOSTS, info=INFOS)
def test_probe_hashes(ip: str, host: Optional[str], info: Optional[str]) -> None:
    """The C probe iterator hands each key's hash to the lookup (IP prefixes come from one
    pass over the IP, up to RULES_PROBE_MEMO bytes): it must be the key's own hash."""
    from cdbrules._native import ffi, lib

    parts = [os.fsencode(x) if x is not None else None for x in (ip, host, info)]
    bufs = [ffi.from_buffer(x) if x is not None else ffi.NULL for x in parts]
    lens = [len(x) if x is not None else 0 for x in parts]
    buf = ffi.new("unsigned char[]", lib.rules_probe_bufsize(*lens))
    pr = ffi.new("struct rules_probe *")
    lib.rules_probe_start(pr, bufs[0], lens[0], bufs[1], lens[1], bufs[2], lens[2], buf)
    key, klen = ffi.new("const unsigned char **"), ffi.new("size_t *")
    n = 0
    while lib.rules_probe_next(pr, key, klen):
        k = ffi.buffer(key[0], klen[0])[:]
        assert pr.hash == lib.cdb_hash(k, len(k)), k
        n += 1
    assert n >= 2  # at least the IP and the empty key
