"""tcpserver_host: a host name as tcpserver writes it in TCPREMOTEHOST (docs/lookup.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdbrules import Rules, compile, tcpserver_host


@pytest.mark.parametrize("name,want", [
    ("mail.example.com", "mail.example.com"),
    ("Mixed.Case.Example.COM", "mixed.case.example.com"),  # tcpserver lowercases
    ("mail.example.com.", "mail.example.com"),  # no trailing dot
    (".", "."),  # the root
    ("weird name!.example.com", "weird\\040name\\041.example.com"),  # octal escapes
    ("under_score-1.example", "under_score-1.example"),
    (b"caf\xc3\xa9.example", "caf\\303\\251.example"),
    ("café.example", "caf\\303\\251.example"),
    ("A\\B.example", "a\\134b.example"),
])
def test_written_as_tcpserver_writes_it(name: object, want: str) -> None:
    assert tcpserver_host(name) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a..b", "..", ".a"])
def test_names_no_ptr_answer_gives(bad: str) -> None:
    with pytest.raises(ValueError):
        tcpserver_host(bad)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    d = tmp_path_factory.mktemp("host")
    text = b"=mail.example.com:deny\n=weird\\040name.example:allow,X=\"w\"\n=.example:allow,X=\"suffix\"\n:allow\n"
    (d / "r").write_bytes(text)
    compile(d / "r", d / "r.cdb")
    return Rules(d / "r.cdb")


def test_the_lookup_takes_what_it_gives(rules: Rules) -> None:
    assert not rules.check("192.0.2.1", tcpserver_host("MAIL.Example.Com.")).allowed
    assert rules.check("192.0.2.1", tcpserver_host("Weird Name.example")).env["X"] == "w"
    assert rules.check("192.0.2.1", tcpserver_host("other.EXAMPLE")).env["X"] == "suffix"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=12).filter(lambda b: b"." not in b), min_size=1, max_size=4))
def test_any_labels_give_a_name_the_lookup_accepts(rules: Rules, labels: list) -> None:
    host = tcpserver_host(b".".join(labels))
    assert host.isascii() and host == host.lower() and not host.endswith(".")
    rules.check("192.0.2.1", host)  # never a ValueError: the text is what tcpserver writes
