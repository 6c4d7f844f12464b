"""What ``Rules.check``, ``check_many`` and ``explain`` accept: wrong input is an error,
never a silent default-rule answer.

* ``ip``: text exactly as tcpserver writes TCPREMOTEIP (a dotted quad; IPv6 in the IPv6
  patch's format; ``::ffff:a.b.c.d`` only with ``forcev6``, as with ``tcpserver -6``), or an
  :mod:`ipaddress` object or a socket address tuple, which are written that way first.
  Any other text is a ValueError.
* ``host``: a name as tcpserver writes TCPREMOTEHOST; upper case and one trailing dot are
  written as tcpserver would (lower case, no dot); anything tcpserver could never write is a
  ValueError.
* ``exact=True``: tcprulescheck's view, every text used byte for byte (the ``check``
  command); its differential tests are in test_check_diff.py.

The text checks are checked here against :func:`cdbrules.tcpserver_ip` (the C formatter
that the live-tcpserver test pins) over random addresses.
"""

from __future__ import annotations

import io
import ipaddress
import re
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdbrules import CdbFormatError, Reader, Rules, compile as compile_rules, tcpserver_ip
from helpers import run_cli

HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))

TEXT = (b"127.:allow,WHO=\"local\"\n"
        b"::ffff:127.0.0.:allow,WHO=\"mapped\"\n"
        b"192.0.2.1:deny,WHO=\"one\"\n"
        b"2001:db8::1:1:1:1:1:allow,WHO=\"six\"\n"
        b"=.example.com:allow,WHO=\"example\"\n"
        b"=.:allow,WHO=\"root\"\n"
        b":deny,WHO=\"default\"\n")


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("input") / "r.cdb"
    compile_rules(io.BytesIO(TEXT), p)
    return p


@pytest.fixture(scope="module")
def rules(path: Path):  # type: ignore[no-untyped-def]
    with Rules(path) as r:
        yield r


def who(d: object) -> str:
    return d.env["WHO"]  # type: ignore[attr-defined, no-any-return]


# -- addresses ----------------------------------------------------------------------------------

def test_the_issue_examples(rules: Rules) -> None:
    with pytest.raises(ValueError, match=r"dotted quad.*'127\.0\.0\.1'"):
        rules.check("::ffff:127.0.0.1")  # the raw peer of a dual-stack socket
    for bad in ["not an ip", "", "192.0.2.1\n", " 192.0.2.1", "192.0.2.01", "192.0.2", "192.0.2.1.",
                "2001:DB8::1", "2001:db8:0:1:1:1:1:1", "fe80::1%eth0", "::1.2.3.4", "1.2.3.256"]:
        with pytest.raises(ValueError, match="tcpserver"):
            rules.check(bad)
        with pytest.raises(ValueError, match="tcpserver"):
            rules.check(bad.encode())
        with pytest.raises(ValueError, match="tcpserver"):
            rules.check_many(["127.0.0.1", bad])
        with pytest.raises(ValueError, match="tcpserver"):
            rules.explain(bad)
    with pytest.raises(ValueError, match=r"'2001:db8::1:1:1:1:1'"):  # says what tcpserver writes
        rules.check("2001:db8:0:1:1:1:1:1")


def test_addresses_as_objects_and_socket_tuples(rules: Rules) -> None:
    for peer in [ipaddress.ip_address("::ffff:127.0.0.1"), ipaddress.ip_address("127.0.0.1"),
                 ("127.0.0.1", 25), ("::ffff:127.0.0.1", 25, 0, 0)]:
        assert who(rules.check(peer)) == "local", peer  # type: ignore[arg-type]
        assert who(rules.check_many([peer, "192.0.2.1"])[0]) == "local"  # type: ignore[list-item]
        assert rules.explain(peer)[-1] == (b"127.", True)  # type: ignore[arg-type]
    assert who(rules.check(("2001:db8:0:1:1:1:1:1", 25, 0, 0))) == "six"  # type: ignore[arg-type]
    assert who(rules.check(ipaddress.ip_address("2001:db8:0:1:1:1:1:1"))) == "six"
    with pytest.raises(TypeError, match="ip must be"):
        rules.check(1234)  # type: ignore[arg-type]


def test_forcev6_is_tcpserver_minus_6(path: Path) -> None:
    with Rules(path, forcev6=True) as r:
        assert who(r.check("::ffff:127.0.0.1")) == "mapped"
        assert who(r.check(("127.0.0.1", 25))) == "mapped"
        assert who(r.check(("::ffff:127.0.0.1", 25, 0, 0))) == "mapped"
        assert [who(d) for d in r.check_many(["::ffff:127.0.0.1", "::1"])] == ["mapped", "default"]
        with pytest.raises(ValueError, match="tcpserver -6"):
            r.check("127.0.0.1")  # with -6 every client is IPv6, a v4 one ::ffff:a.b.c.d


def test_exact_is_tcprulescheck(rules: Rules) -> None:
    assert who(rules.check("::ffff:127.0.0.1", exact=True)) == "mapped"
    assert who(rules.check("127.0.0.1\n", exact=True)) == "local"  # a prefix match, as tcprulescheck
    assert rules.check("not an ip", exact=True).rule == ""
    assert who(rules.check("1.1.1.1", "MX.Example.COM", exact=True)) == "default"  # case-sensitive
    assert [d.rule for d in rules.check_many(["", "x"], exact=True)] == ["", ""]
    assert rules.explain("::ffff:127.0.0.1", exact=True)[-1] == (b"::ffff:127.0.0.", True)


ADDRS = st.one_of(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
                  st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
                  st.integers(0, 2**32 - 1).map(lambda n: ipaddress.IPv6Address((0xFFFF << 32) | n)),
                  st.builds(lambda hi, lo: ipaddress.IPv6Address(hi << 64 | lo),
                            st.sampled_from([0, 0x20010DB800000000, 0xFE80000000000000, 0x2001000000010000]),
                            st.sampled_from([0, 1, 0x10001, 0x100000000, 0xFFFF00000000, 0x1000100010001])))


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True)
@given(addr=ADDRS, forcev6=st.booleans())
def test_text_is_accepted_exactly_as_tcpserver_writes_it(path: Path, addr: "ipaddress._BaseAddress",
                                                         forcev6: bool) -> None:
    text = tcpserver_ip(addr, forcev6=forcev6)
    with Rules(path, forcev6=forcev6, reload_interval=None) as r:
        want = r.check(text, exact=True)
        assert r.check(text) is want and r.check(addr) is want  # type: ignore[arg-type]
        assert r.check_ip(text.encode()) is want and r.check_ip(addr) is want
        assert r.check_many([text, addr]) == [want, want]  # type: ignore[list-item]
        # every other spelling of the same address is refused, by check_ip as by check
        others = {str(addr), addr.exploded, text.upper(), tcpserver_ip(addr, forcev6=not forcev6)}
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None:
            others.add(addr.exploded.replace(":0000", ":0"))
        for other in others - {text}:
            with pytest.raises(ValueError) as e:
                r.check(other)
            with pytest.raises(ValueError, match=re.escape(str(e.value))):
                r.check_ip(other.encode())


# -- check_many's sequences ------------------------------------------------------------------------

def test_check_many_refuses_a_str_for_the_sequence(rules: Rules) -> None:
    for one in ["127.0.0.1", b"127.0.0.1", bytearray(b"127.0.0.1")]:
        with pytest.raises(TypeError, match="sequence"):
            rules.check_many(one)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hosts"):
        rules.check_many(["127.0.0.1"], hosts="a.example.com")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="infos"):
        rules.check_many(["127.0.0.1"], infos="joe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"item 2: .*'1\.2\.3'"):
        rules.check_many(["127.0.0.1", "192.0.2.1", "1.2.3"])


# -- hosts ---------------------------------------------------------------------------------------

def test_hosts_as_tcpserver_writes_them(rules: Rules) -> None:
    assert who(rules.check("1.1.1.1", "mx.example.com")) == "example"
    # as tcpserver would have written them: lower case, no trailing dot
    assert who(rules.check("1.1.1.1", "MX.Example.COM")) == "example"
    assert who(rules.check("1.1.1.1", "mx.example.com.")) == "example"
    assert who(rules.check("1.1.1.1", b"MX.EXAMPLE.COM.")) == "example"
    assert who(rules.check("1.1.1.1", ".")) == "root"  # a PTR to the root name
    assert who(rules.check_many(["1.1.1.1"], hosts=["Mx.Example.Com"])[0]) == "example"
    assert rules.explain("1.1.1.1", "MX.Example.COM")[-1] == (b"=.example.com", True)
    assert who(rules.check("1.1.1.1", "weird\\040name.example.com")) == "example"  # djb's escapes
    for bad in ["", "a..example.com", "bad host.example.com", "x\\9.example.com", "..", "mx.example.com..",
                "\xfc.example.com", "mx.example.com\n"]:
        with pytest.raises(ValueError, match="tcpserver"):
            rules.check("1.1.1.1", bad)
        with pytest.raises(ValueError, match="tcpserver"):
            rules.check_many(["1.1.1.1"], hosts=[bad])
        with pytest.raises(ValueError, match="tcpserver"):
            rules.explain("1.1.1.1", bad)


def test_info_is_any_text(rules: Rules) -> None:
    """The ident reply is whatever the client's ident server said: no check but NUL."""
    assert who(rules.check("1.1.1.1", None, "Joe Bloggs!")) == "default"
    with pytest.raises(ValueError, match="NUL"):
        rules.check("1.1.1.1", None, "a\0b")


def test_a_real_socket_peer(rules: Rules) -> None:
    """accept()'s peer on a dual-stack IPv6 socket is ::ffff:127.0.0.1: passed as the tuple
    it is looked up as tcpserver looks it up, by its dotted quad."""
    try:
        srv = socket.socket(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 in this kernel")
    with srv:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.bind(("::", 0))
        srv.listen(1)
        with socket.create_connection(("127.0.0.1", srv.getsockname()[1]), timeout=10):
            conn, peer = srv.accept()
            conn.close()
    assert peer[0] == "::ffff:127.0.0.1"
    assert who(rules.check(peer)) == "local"
    with pytest.raises(ValueError, match="dotted quad"):
        rules.check(peer[0])


# -- a rules text file where a compiled one belongs ---------------------------------------------

@pytest.mark.parametrize("size", ["short", "long"])
def test_rules_text_is_named_at_open(tmp_path: Path, size: str) -> None:
    text = TEXT if size == "short" else b"# comment\n" * 300 + TEXT
    p = tmp_path / "rules.txt"
    p.write_bytes(text)
    for open_ in (Rules, Reader):
        with pytest.raises(CdbFormatError, match=r"this is rules text.*compile it first with cdbrules compile CDB TMP"):
            open_(p)
    code, out, err = run_cli(["check", str(p), "127.0.0.1"])
    assert (code, out) == (111, b"")
    assert err == (f"cdbrules: fatal: unable to read {p}: this is rules text, not a compiled rules file; "
                   f"compile it first with cdbrules compile CDB TMP {p}\n")
