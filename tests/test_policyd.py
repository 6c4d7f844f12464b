"""``cdbrules policyd``: the action mapping over the requests Postfix really sends, the
protocol over TCP, UNIX sockets, systemd's sockets and standard input/output, malformed
requests, timeouts, reloads and signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdbrules import Rules
from cdbrules.policyd import MalformedRequest, PolicyServer, RulesPolicy, parse_listen, parse_request, postfix_reply
from cdbrules.qmailenv import REPLY_POLICY, REPLY_RCPTLIMIT
from policyd_helpers import REQUESTS, STATES, Policyd, ask, cli, compile_rules, encode, request

RULES = """\
10.0.0.1:deny
10.0.0.2:allow,RBLSMTPD="-Blocked, see http://example.test/?ip=10.0.0.2"
10.0.0.3:allow,RBLSMTPD="Greylisted: come back later"
10.0.0.4:allow,RBLSMTPD=""
10.0.0.5:allow,RELAYCLIENT=""
10.0.0.6:allow,RELAYCLIENT="@fixme"
10.0.0.7:allow,CHKUSER_RCPTLIMIT="3"
10.0.0.8:allow,CHKUSER_WRONGRCPTLIMIT="2",CHKUSER_RCPTLIMIT="100"
10.0.0.9:allow,DATABYTES="2000"
10.0.0.10:allow,DATABYTES="0"
10.0.0.11:allow,CHKUSER_RCPTLIMIT="1"
10.0.1.:allow,RBLSMTPD="-x\x01y"
2001:db8::7:allow,RELAYCLIENT=""
=mx.example.test:deny
:allow,QMAILQUEUE="/var/qmail/bin/simscan"
"""


@pytest.fixture
def cdb(tmp_path: Path) -> Path:
    p = tmp_path / "tcp.smtp.cdb"
    compile_rules(RULES, p)
    return p


@pytest.fixture
def policy(cdb: Path) -> Iterator[RulesPolicy]:
    with Rules(cdb) as rules:
        yield RulesPolicy(rules)


def answers(policy: RulesPolicy, client: str, **attrs: str) -> Dict[str, str]:
    """The action at every protocol state (and at RCPT and VRFY in the relay context)."""
    out = {}
    for r in REQUESTS:
        req = dict(r, client_address=client, **attrs)
        key = r["protocol_state"] + ("/" + r["policy_context"] if r["policy_context"] else "")
        out[key] = policy({k.encode(): v.encode() for k, v in req.items()})
    return out


def ask_policy(policy: RulesPolicy, req: Dict[str, str]) -> str:
    return policy({k.encode(): v.encode() for k, v in req.items()})


def test_captured_requests_cover_every_state() -> None:
    assert sorted({r["protocol_state"] for r in REQUESTS}) == sorted(STATES)
    assert all(r["request"] == "smtpd_access_policy" for r in REQUESTS)
    assert {r["policy_context"] for r in REQUESTS} == {"", "relay"}


# -- the mapping --------------------------------------------------------------------

def test_deny_rejects_at_every_state(policy: RulesPolicy) -> None:
    got = answers(policy, "10.0.0.1")
    assert len(got) == 11 and set(got.values()) == {"REJECT Access denied"}


def test_reject_text_is_configurable(cdb: Path) -> None:
    with Rules(cdb) as rules:
        p = RulesPolicy(rules, reject_text="Go away, says tcp.smtp")
        assert set(answers(p, "10.0.0.1").values()) == {"REJECT Go away, says tcp.smtp"}
        with pytest.raises(ValueError):
            RulesPolicy(rules, reject_text="two\nlines")


def test_rblsmtpd(policy: RulesPolicy) -> None:
    assert set(answers(policy, "10.0.0.2").values()) == {"REJECT Blocked, see http://example.test/?ip=10.0.0.2"}
    assert set(answers(policy, "10.0.0.3").values()) == {"DEFER Greylisted: come back later"}
    assert set(answers(policy, "10.0.0.4").values()) == {"DUNNO"}  # empty: exempt
    # rblsmtpd's text: a control character shown as '?'
    assert set(answers(policy, "10.0.1.9").values()) == {"REJECT x?y"}


def test_rblsmtpd_text_is_cut_as_rblsmtpd_cuts_it(tmp_path: Path) -> None:
    cdb = tmp_path / "r.cdb"
    compile_rules(f'10.9.9.9:allow,RBLSMTPD="{"a" * 300}"\n', cdb)
    with Rules(cdb) as rules:
        assert ask_policy(RulesPolicy(rules), request("RCPT", client_address="10.9.9.9")) == "DEFER " + "a" * 200


def test_relayclient_ok_only_in_the_relay_context(policy: RulesPolicy) -> None:
    for client in ("10.0.0.5", "10.0.0.6", "2001:db8::7"):
        got = answers(policy, client)
        assert got.pop("RCPT/relay") == "OK" and got.pop("VRFY/relay") == "OK", client
        assert set(got.values()) == {"DUNNO"}, client
    got = answers(policy, "10.0.0.99")  # no RELAYCLIENT: Postfix's own relay rules decide
    assert set(got.values()) == {"DUNNO"}


def test_relay_context_name_is_configurable(cdb: Path) -> None:
    with Rules(cdb) as rules:
        p = RulesPolicy(rules, relay_context="tcprules-relay")
        assert ask_policy(p, request("RCPT", "relay", client_address="10.0.0.5")) == "DUNNO"
        assert ask_policy(p, request("RCPT", "tcprules-relay", client_address="10.0.0.5")) == "OK"


def test_client_address_as_tcpserver_writes_it(policy: RulesPolicy) -> None:
    assert answers(policy, "::ffff:10.0.0.1")["RCPT"] == "REJECT Access denied"
    assert answers(policy, "2001:0db8:0:0:0:0:0:7")["RCPT/relay"] == "OK"
    assert answers(policy, "2001:db8::8")["RCPT/relay"] == "DUNNO"


def test_client_name_is_the_host_unless_unknown(policy: RulesPolicy) -> None:
    assert answers(policy, "10.7.7.7", client_name="mx.example.test")["RCPT"] == "REJECT Access denied"
    assert answers(policy, "10.7.7.7", client_name="unknown")["RCPT"] == "DUNNO"
    assert answers(policy, "10.7.7.7", client_name="", reverse_client_name="mx.example.test")["RCPT"] == "DUNNO"


def test_client_name_as_tcpserver_writes_it(policy: RulesPolicy) -> None:
    """Postfix keeps the case and may give odd bytes; tcpserver writes lower case, no
    trailing dot, other bytes as \\ooo: a name is never a reason to drop the request."""
    assert answers(policy, "10.7.7.7", client_name="MX.Example.TEST")["RCPT"] == "REJECT Access denied"
    assert answers(policy, "10.7.7.7", client_name="mx.example.test.")["RCPT"] == "REJECT Access denied"
    assert answers(policy, "10.7.7.7", client_name="mx.exa mple.test")["RCPT"] == "DUNNO"
    assert answers(policy, "10.7.7.7", client_name="a..b")["RCPT"] == "DUNNO"  # looked up without a host


def test_not_a_policy_request_or_no_client_is_dunno(policy: RulesPolicy) -> None:
    assert ask_policy(policy, request("RCPT", client_address="10.0.0.1", request="junk")) == "DUNNO"
    req = request("RCPT")
    del req["client_address"]
    assert ask_policy(policy, req) == "DUNNO"
    assert policy({}) == "DUNNO"


def _rcpt(port: str, client: str = "10.0.0.7", context: str = "", **kw: str) -> Dict[str, str]:
    return request("RCPT", context, client_address=client, client_port=port, **kw)


def test_rcptlimit_counts_per_connection_as_chkuser(policy: RulesPolicy) -> None:
    got = [ask_policy(policy, _rcpt("5000", recipient=f"u{i}@local.test")) for i in range(5)]
    assert got[:2] == ["DUNNO", "DUNNO"]
    assert got[2] == "550 5.5.3 sorry, reached maximum number of recipients allowed in one session (chkuser)"
    assert got[3:] == ["550 5.7.1 sorry, you are violating our security policies (chkuser)"] * 2
    # another connection of the same client has its own count; other states do not count
    assert ask_policy(policy, request("MAIL", client_address="10.0.0.7", client_port="5001")) == "DUNNO"
    assert [ask_policy(policy, _rcpt("5001")) for _ in range(2)] == ["DUNNO", "DUNNO"]
    # a limit of 1 refuses the first recipient
    assert ask_policy(policy, _rcpt("5003", "10.0.0.11")).startswith("550 5.5.3")
    assert ask_policy(policy, _rcpt("5003", "10.0.0.11")).startswith("550 5.7.1")
    # nor does the relay check (each recipient is asked about twice)
    assert ask_policy(policy, _rcpt("5002", context="relay")) == "DUNNO"
    assert [ask_policy(policy, _rcpt("5002")) for _ in range(2)] == ["DUNNO", "DUNNO"]


def test_sessions_are_bounded_least_recently_used_first(cdb: Path) -> None:
    with Rules(cdb) as rules:
        p = RulesPolicy(rules, sessions=2)
        for port in ("1", "2", "1", "3"):  # 2 is the least recently used when 3 comes
            assert ask_policy(p, _rcpt(port)) == "DUNNO"
        assert len(p.sessions) == 2
        assert ask_policy(p, _rcpt("1")).startswith("550 5.5.3")  # 1 is remembered: its 3rd is refused
        # 2 was forgotten: it starts again (remembered, its 2nd would be refused)
        assert [ask_policy(p, _rcpt("2")) for _ in range(2)] == ["DUNNO", "DUNNO"]
        assert len(p.sessions) == 2


def test_wrong_recipients_need_the_confirming_call(cdb: Path) -> None:
    with Rules(cdb) as rules:
        off = RulesPolicy(rules)
        assert [ask_policy(off, _rcpt("7", "10.0.0.8")) for _ in range(5)] == ["DUNNO"] * 5
        p = RulesPolicy(rules, valid_context="valid")
        good = [ask_policy(p, _rcpt("7", "10.0.0.8")), ask_policy(p, _rcpt("7", "10.0.0.8", "valid"))]
        assert good == ["DUNNO", "DUNNO"]
        # two recipients Postfix refused after the main call (never confirmed)...
        assert ask_policy(p, _rcpt("7", "10.0.0.8")) == "DUNNO"
        assert ask_policy(p, _rcpt("7", "10.0.0.8")) == "DUNNO"
        # ...the second is found refused when the next one comes: chkuser's limit of 2
        assert ask_policy(p, _rcpt("7", "10.0.0.8")) == "550 5.7.1 sorry, you are violating our security policies (chkuser)"
        # a client without the limit is never counted
        assert [ask_policy(p, _rcpt("8", "10.0.0.99")) for _ in range(4)] == ["DUNNO"] * 4


def test_counting_with_the_confirming_call_and_missing_attributes(cdb: Path) -> None:
    """A first recipient kept as a bare count meets the confirming call; a request without
    the connection's attributes is counted under the ones it has."""
    with Rules(cdb) as rules:
        p = RulesPolicy(rules, valid_context="valid")
        assert ask_policy(p, _rcpt("9", "10.0.0.7")) == "DUNNO"
        assert ask_policy(p, _rcpt("9", "10.0.0.7", "valid")) == "DUNNO"
        assert ask_policy(p, _rcpt("9", "10.0.0.7")) == "DUNNO"
        assert ask_policy(p, _rcpt("9", "10.0.0.7")).startswith("550 5.5.3")  # CHKUSER_RCPTLIMIT=3
        bare = _rcpt("x", "10.0.0.7")
        del bare["client_port"], bare["server_port"], bare["policy_context"]
        assert [ask_policy(p, bare) for _ in range(4)] == ["DUNNO", "DUNNO", REPLY_RCPTLIMIT, REPLY_POLICY]
        assert (b"10.0.0.7", b"", b"127.0.0.1", b"") in p.sessions


def test_databytes(policy: RulesPolicy) -> None:
    def at(state: str, size: str, client: str = "10.0.0.9") -> str:
        return ask_policy(policy, request(state, client_address=client, size=size))
    big = "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    assert at("END-OF-MESSAGE", "2001") == big
    assert at("END-OF-MESSAGE", "2000") == "DUNNO"
    assert at("MAIL", "5000") == big  # the SIZE the client announced
    assert at("MAIL", "0") == "DUNNO"  # none announced
    assert at("END-OF-MESSAGE", "999999", "10.0.0.10") == "DUNNO"  # DATABYTES=0: no limit
    assert at("END-OF-MESSAGE", "999999", "10.0.0.99") == "DUNNO"


def test_postfix_reply() -> None:
    assert postfix_reply("552 sorry, too big (#5.3.4)") == "552 5.3.4 sorry, too big (#5.3.4)"
    assert postfix_reply("550 5.1.1 sorry, no mailbox") == "550 5.1.1 sorry, no mailbox"
    assert postfix_reply("451 try later") == "451 try later"


# -- requests -----------------------------------------------------------------------

def test_parse_request() -> None:
    assert parse_request(b"a=1\nb=\nc=x=y") == {b"a": b"1", b"b": b"", b"c": b"x=y"}
    assert parse_request(b"") == {}
    assert parse_request(b"sender=\xc3\xa9t\xc3\xa9@example.test") == {b"sender": "été@example.test".encode()}


@pytest.mark.parametrize("bad", [b"no equals sign", b"a=1\nnoequals", b"=value", b"a=\x00", b"a=\x1b[0m",
                                 b"a=b\rc", b"x=" + b"y" * 9000, b"\n".join([b"a=1"] * 200)])
def test_parse_request_refuses(bad: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_request(bad)


HYPOTHESIS_N = int(os.environ.get("CDBRULES_HYPOTHESIS_N", "300"))
_name = st.binary(min_size=1, max_size=20).filter(lambda b: b"=" not in b and b"\n" not in b)
_value = st.binary(max_size=40).filter(lambda b: b"\n" not in b)


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_parse_request_any_bytes(req: bytes) -> None:
    """Any bytes: attributes, or MalformedRequest; never another exception."""
    try:
        attrs = parse_request(req)
    except MalformedRequest:
        return
    assert all(b"\n" not in k + v and k and b"=" not in k for k, v in attrs.items())


@settings(max_examples=HYPOTHESIS_N, deadline=None, derandomize=True)
@given(st.dictionaries(_name, _value, max_size=20))
def test_parse_request_reads_what_was_written(attrs: Dict[bytes, bytes]) -> None:
    req = b"\n".join(k + b"=" + v for k, v in attrs.items())
    clean = not any(c < 32 and c != 10 or c == 127 for c in req)
    if clean:
        assert parse_request(req) == attrs
    else:
        with pytest.raises(MalformedRequest):
            parse_request(req)


def test_parse_listen() -> None:
    assert parse_listen("inet:127.0.0.1:10040") == ("inet", "127.0.0.1", 10040, "")
    assert parse_listen("inet:[::1]:10040")[1:3] == ("::1", 10040)
    assert parse_listen("unix:/run/p.sock").path == "/run/p.sock"
    assert parse_listen("systemd").kind == "systemd"
    for bad in ("127.0.0.1:10040", "inet:127.0.0.1", "inet:h:99999", "unix:", "tcp:x:1"):
        with pytest.raises(ValueError):
            parse_listen(bad)


# -- the server ---------------------------------------------------------------------

@pytest.fixture
def server(cdb: Path, tmp_path: Path) -> Iterator[Policyd]:
    with Policyd(cdb, "--timeout", "1", "--reload-interval", "0", log=tmp_path / "log") as pd:
        yield pd


def expected_rcpt(client: str) -> bytes:
    return {"10.0.0.1": b"action=REJECT Access denied\n\n",
            "10.0.0.3": b"action=DEFER Greylisted: come back later\n\n"}.get(client, b"action=DUNNO\n\n")


def test_one_connection_many_requests(server: Policyd) -> None:
    with server.connect() as s:
        for r in REQUESTS:  # Postfix's session as it came, for a denied client
            assert ask(s, dict(r, client_address="10.0.0.1")) == b"action=REJECT Access denied\n\n"
        for r in REQUESTS:
            want = b"action=OK\n\n" if r["policy_context"] == "relay" else b"action=DUNNO\n\n"
            assert ask(s, dict(r, client_address="10.0.0.5")) == want


def test_requests_in_pieces_and_back_to_back(server: Policyd) -> None:
    clients = ["10.0.0.1", "10.0.0.3", "10.0.0.99"] * 5
    data = b"".join(encode(request("RCPT", client_address=c)) for c in clients)
    want = b"".join(expected_rcpt(c) for c in clients)
    with server.connect() as s:
        for i in range(0, len(data), 7):  # 7 bytes at a time, requests run together
            s.sendall(data[i:i + 7])
        got = b""
        while len(got) < len(want):
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        assert got == want
    with server.connect() as s:  # everything in one write
        s.sendall(data)
        got = b""
        while len(got) < len(want):
            got += s.recv(65536)
        assert got == want


MALFORMED = {
    "no equals sign": b"request=smtpd_access_policy\nthis line has no equals sign\n\n",
    "over-long line": b"request=smtpd_access_policy\nhelo_name=" + b"h" * 10000 + b"\n\n",
    "over-long line, unfinished": b"helo_name=" + b"h" * 10000,
    "binary": b"request=smtpd_access_policy\nsender=\x00\x01\x02\xff\n\n",
    "too many attributes": b"".join(b"x%d=1\n" % i for i in range(500)) + b"\n",
    "over-long request": b"".join(b"x=" + b"y" * 8000 + b"\n" for _ in range(10)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_request_closes_only_that_connection(server: Policyd, name: str) -> None:
    with server.connect() as other, server.connect() as bad:
        good = encode(request("RCPT", client_address="10.0.0.1"))
        assert ask(bad, good) == expected_rcpt("10.0.0.1")  # answered before the bad one
        try:
            bad.sendall(MALFORMED[name])
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while it was still writing
        try:
            rest = bad.recv(4096)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # closed, with no reply
        assert ask(other, good) == expected_rcpt("10.0.0.1")
    with server.connect() as s:
        assert ask(s, request("RCPT", client_address="10.0.0.3")) == expected_rcpt("10.0.0.3")
    assert "malformed request" in server.log_text()


def test_a_client_that_does_not_read_its_replies(cdb: Path) -> None:
    """Requests keep coming, replies are not read: once the replies back up, the server
    stops reading (and the client's writes block) instead of keeping replies in memory;
    when the client reads again, every reply comes, in order."""
    one = encode(request("RCPT", client_address="10.0.0.2"))
    reply = b"action=REJECT Blocked, see http://example.test/?ip=10.0.0.2\n\n"
    n = 4000

    async def main() -> None:
        with Rules(cdb) as rules:
            server = PolicyServer(RulesPolicy(rules))
            ours, theirs = socket.socketpair()
            for x in (ours, theirs):
                x.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
                x.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                lambda: server.protocol(), theirs)
            ours.setblocking(False)
            data, sent = one * n, 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while transport.is_reading() and sent < len(data) and loop.time() < deadline:
                try:  # write what the kernel takes; the server runs meanwhile
                    sent += ours.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.002)
            assert not transport.is_reading()  # the server stopped reading...
            for _ in range(50):
                try:
                    sent += ours.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.002)
            assert sent < len(data)  # ...so the client is held back
            assert transport.get_write_buffer_size() < 256 * 1024
            got = bytearray()
            while len(got) < len(reply) * n:
                try:
                    got += ours.recv(1 << 16)
                except BlockingIOError:
                    pass
                if sent < len(data):
                    try:
                        sent += ours.send(data[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                await asyncio.sleep(0)
            assert bytes(got) == reply * n
            ours.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_closed_mid_request_and_request_timeout(server: Policyd) -> None:
    with server.connect() as s:
        s.sendall(b"request=smtpd_access_policy\nclient_addr")
    t = time.monotonic()
    with server.connect() as s:
        s.sendall(b"request=smtpd_access_policy\n")
        assert s.recv(100) == b""  # --timeout 1: the unfinished request is dropped
        assert 0.5 < time.monotonic() - t < 8
    with server.connect() as s:
        assert ask(s, request("RCPT", client_address="10.0.0.1")) == expected_rcpt("10.0.0.1")
    log = server.log_text()
    assert "in the middle of a request" in log and "request not complete after 1s" in log


def test_idle_timeout(cdb: Path, tmp_path: Path) -> None:
    with Policyd(cdb, "--idle-timeout", "0.5", log=tmp_path / "log") as pd, pd.connect() as s:
        assert ask(s, request("RCPT", client_address="10.0.0.1")) == expected_rcpt("10.0.0.1")
        t = time.monotonic()
        assert s.recv(100) == b""
        assert 0.3 < time.monotonic() - t < 8


def test_broken_rules_file_means_no_answer(tmp_path: Path) -> None:
    """A lookup that meets damage in the rules file the server started with (taken as
    tcpserver takes it): that request gets no reply and its connection is closed (Postfix
    then applies its default action), the server lives.  Damage done in place to the file
    while the server runs never reaches it: it read the file whole."""
    cdb = tmp_path / "r.cdb"
    compile_rules("10.0.0.1:deny\n", cdb)
    size = cdb.stat().st_size
    with Policyd(cdb, "--reload-interval", "3600", log=tmp_path / "log") as pd:
        with pd.connect() as s:
            assert ask(s, request("RCPT", client_address="10.0.0.1")) == expected_rcpt("10.0.0.1")
        with open(cdb, "r+b") as f:  # the same file, rewritten in place: offsets past its end
            f.seek(0)
            f.write(b"\xff\xff\xff\x7f" * 512)
        with pd.connect() as s:
            assert ask(s, request("RCPT", client_address="10.0.0.2")) == expected_rcpt("10.0.0.2")
        assert "cannot answer" not in pd.log_text()
    with Policyd(cdb, "--reload-interval", "3600", log=tmp_path / "log2") as pd:
        with pd.connect() as s:
            got = ask(s, request("RCPT", client_address="10.0.0.2"))
        assert got == b""
        assert "cannot answer" in pd.log_text()
        assert cdb.stat().st_size == size and pd.proc.poll() is None


def test_unix_socket_sighup_and_sigterm(cdb: Path, tmp_path: Path) -> None:
    sock = tmp_path / "policy.sock"
    with Policyd(cdb, "--reload-interval", "3600", "--socket-mode", "600", log=tmp_path / "log",
                 listen=[f"unix:{sock}"]) as pd:
        assert pd.addresses == [f"unix:{sock}"]
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        with s:
            assert ask(s, request("RCPT", client_address="10.0.0.99")) == b"action=DUNNO\n\n"
            compile_rules("10.0.0.99:deny\n", cdb)
            # the interval is an hour: still the old rules, until SIGHUP
            assert ask(s, request("RCPT", client_address="10.0.0.99")) == b"action=DUNNO\n\n"
            pd.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "new rules loaded" not in pd.log_text():
                assert time.monotonic() < deadline, pd.log_text()
                time.sleep(0.05)
            assert ask(s, request("RCPT", client_address="10.0.0.99")) == b"action=REJECT Access denied\n\n"
            assert pd.stop() == 0  # SIGTERM: open connections closed, socket removed
            assert s.recv(100) == b""
        assert not sock.exists()


def test_file_replacement_reloads_without_a_signal(server: Policyd, cdb: Path) -> None:
    with server.connect() as s:
        assert ask(s, request("RCPT", client_address="10.0.0.99")) == b"action=DUNNO\n\n"
        compile_rules("10.0.0.99:deny\n", cdb)
        assert ask(s, request("RCPT", client_address="10.0.0.99")) == b"action=REJECT Access denied\n\n"


@contextlib.contextmanager
def spawned(cdb: Path, log: Path) -> Iterator[Tuple["subprocess.Popen[bytes]", socket.socket]]:
    """``cdbrules policyd CDB`` as spawn(8) runs it: one socket on its standard input,
    output and error; the other end is ours.  Killed at the end if still running."""
    ours, theirs = socket.socketpair()
    with ours:
        proc = subprocess.Popen(cli("policyd", "--log", str(log), str(cdb)), stdin=theirs, stdout=theirs,
                                stderr=theirs)
        theirs.close()
        ours.settimeout(20)
        try:
            yield proc, ours
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_stdio_like_spawn(cdb: Path, tmp_path: Path) -> None:
    """The replies must be the only bytes on the socket (spawn connects standard error to
    it too), and the end of the connection ends the process."""
    log = tmp_path / "log"
    with spawned(cdb, log) as (proc, s):
        for r in REQUESTS:
            assert ask(s, dict(r, client_address="10.0.0.3")) == b"action=DEFER Greylisted: come back later\n\n"
        s.sendall(b"noise\n\n")  # malformed: logged to the file, not written to the socket
        assert s.recv(100) == b""
        assert proc.wait(20) == 0
    assert "malformed request" in log.read_text()


def test_stdio_sigterm(cdb: Path, tmp_path: Path) -> None:
    """SIGTERM ends a spawned policyd cleanly, its client still connected."""
    with spawned(cdb, tmp_path / "log") as (proc, s):
        assert ask(s, request("RCPT", client_address="10.0.0.1")) == expected_rcpt("10.0.0.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert s.recv(100) == b""


def test_stdio_from_a_file(cdb: Path, tmp_path: Path) -> None:
    reqs = tmp_path / "requests"
    reqs.write_bytes(b"".join(encode(dict(r, client_address="10.0.0.1")) for r in REQUESTS))
    with open(reqs, "rb") as f:
        r = subprocess.run(cli("policyd", "--log", str(tmp_path / "log"), str(cdb)), stdin=f,
                           capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"action=REJECT Access denied\n\n" * len(REQUESTS)


def test_systemd_socket_activation(cdb: Path, tmp_path: Path) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]

    fd = lsock.fileno()
    env = dict(os.environ, LISTEN_FDS="1")
    log = tmp_path / "log"
    # systemd's way: the socket at fd 3, LISTEN_PID the pid of the server itself (exec keeps it)
    exec_at_fd3 = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
                   "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])")
    proc = subprocess.Popen([sys.executable, "-c", exec_at_fd3, str(fd),
                             *cli("policyd", "--listen", "systemd", "--log", str(log), str(cdb))],
                            env=env, pass_fds=(fd,))
    lsock.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            assert ask(s, request("RCPT", client_address="10.0.0.1")) == expected_rcpt("10.0.0.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"listening on inet:127.0.0.1:{port}" in log.read_text()


@pytest.mark.parametrize("args,code,message", [
    (["--listen", "inet:nowhere"], 100, "not inet:HOST:PORT"),
    (["--listen", "systemd"], 111, "LISTEN_PID"),
    (["--timeout", "soon"], 100, "not a number of seconds"),
    (["--reject-text", "a\tb"], 100, "control characters"),
])
def test_cli_errors(cdb: Path, args: List[str], code: int, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    r = subprocess.run(cli("policyd", *args, str(cdb)), capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_cli_missing_rules_file(tmp_path: Path) -> None:
    r = subprocess.run(cli("policyd", "--log", "stderr", str(tmp_path / "none.cdb")), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 111 and "none.cdb" in r.stderr and "Traceback" not in r.stderr
    # -X: no file, no rules, everyone DUNNO
    r = subprocess.run(cli("policyd", "-X", "--log", str(tmp_path / "log"), str(tmp_path / "none.cdb")),
                       input=encode(request("RCPT", client_address="10.0.0.1")), capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b"action=DUNNO\n\n"


def test_cli_port_in_use(cdb: Path, server: Policyd) -> None:
    r = subprocess.run(cli("policyd", "--listen", f"inet:127.0.0.1:{server.port}", "--log", "stderr", str(cdb)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 111 and "unable to listen" in r.stderr and "Traceback" not in r.stderr, r.stderr
