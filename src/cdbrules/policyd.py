"""A Postfix SMTPD policy delegation server answering from a compiled rules file.

Postfix's ``check_policy_service`` sends a request of ``name=value`` lines ended by an
empty line and reads back ``action=...`` and an empty line; one connection carries many
requests.  :class:`RulesPolicy` turns a request into an action (what the tcp.smtp rule
for ``client_address`` means to qmail, read through :mod:`cdbrules.qmailenv`);
:class:`PolicyServer` speaks the protocol over TCP, UNIX-domain sockets, sockets handed
over by systemd, or standard input/output (Postfix's ``spawn(8)``).

The mapping (docs/policyd.md, "What Postfix is told", "Postfix configuration"):

* a denying rule: ``REJECT text`` whatever the protocol state;
* ``RBLSMTPD="-text"``: ``REJECT text``; ``RBLSMTPD="text"``: ``DEFER text``;
* ``RELAYCLIENT`` set: ``OK`` in the relay check (``policy_context=relay``) only;
* ``CHKUSER_RCPTLIMIT``, ``CHKUSER_WRONGRCPTLIMIT``: chkuser's replies, counted per SMTP
  connection over the RCPT requests;
* ``DATABYTES``: ``552`` when the ``size`` attribute is over the limit (the size the
  client announced at MAIL, the real size at END-OF-MESSAGE);
* everything else, and every request that is not ``request=smtpd_access_policy``:
  ``DUNNO``.

A request that breaks the protocol (a line without ``=``, a control character, a line
or request over the bounds, too many attributes) is logged and its connection closed with
no reply, as the protocol asks of a server in trouble; Postfix then retries or applies
``smtpd_policy_service_default_action``.  Nothing one connection does stops the server.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import operator
import os
import re
import signal
import socket
import stat
import types
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from . import qmailenv
from .iptext import tcpserver_host, tcpserver_ip
from .rules import Decision, Rules

__all__ = [
    "ListenSpec",
    "MalformedRequest",
    "PolicyServer",
    "RulesPolicy",
    "parse_listen",
    "parse_request",
]

log = logging.getLogger("cdbrules.policyd")

Request = Dict[bytes, bytes]
Policy = Callable[[Request], str]

#: The bounds on one request; Postfix's requests are about 40 short lines.
MAX_LINE = 8192
MAX_ATTRIBUTES = 128
MAX_REQUEST = 65536

# Any byte below space except the line feed, and DEL: never in a request Postfix sends.
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")
_CONTROL_BYTES = bytes(range(0, 10)) + bytes(range(11, 32)) + b"\x7f"


class MalformedRequest(ValueError):
    """A request that breaks the protocol; the connection that sent it is closed."""


def parse_request(req: bytes, max_line: int = MAX_LINE, max_attributes: int = MAX_ATTRIBUTES) -> Request:
    """The attributes of one request (its lines without the empty line that ends it).

    The last value of a repeated name wins.  Raises :class:`MalformedRequest` for a
    control character, a line over ``max_line`` bytes, more than ``max_attributes``
    lines, or a line that is not ``name=value`` with a non-empty name."""
    if not req:
        return {}
    if len(req.translate(None, _CONTROL_BYTES)) != len(req):
        at = _CONTROL.search(req).start()  # type: ignore[union-attr]
        raise MalformedRequest(f"control character 0x{req[at]:02x} at byte {at}")
    lines = req.split(b"\n")
    if len(lines) > max_attributes:
        raise MalformedRequest(f"more than {max_attributes} attributes")
    if len(req) > max_line and max(map(len, lines)) > max_line:
        raise MalformedRequest(f"a line longer than {max_line} bytes")
    try:
        attrs = dict([line.split(b"=", 1) for line in lines])
    except ValueError:
        bad = next(line for line in lines if b"=" not in line)
        raise MalformedRequest(f"a line without '=': {bad[:60]!r}") from None
    if b"" in attrs:
        raise MalformedRequest("an attribute without a name")
    return attrs


# -- the decision ------------------------------------------------------------------

class _Plan:
    """What one rule's variables ask of the policy server, read once per rule: the answers
    that depend on nothing else made in advance."""

    __slots__ = ("fixed", "in_relay", "always", "rcptlimit", "wronglimit", "counts", "free_below", "databytes")

    def __init__(self, fixed: Optional[str], relay: bool, rcptlimit: Optional[int],
                 wronglimit: Optional[int], databytes: int) -> None:
        self.fixed = fixed  # the answer at every state (deny, RBLSMTPD), or None
        # the answer in the relay check (RELAYCLIENT)
        self.in_relay = fixed if fixed is not None else "OK" if relay else "DUNNO"
        self.rcptlimit = rcptlimit
        self.wronglimit = wronglimit
        self.counts = rcptlimit is not None or wronglimit is not None
        # while no recipient can be found wrong, a connection's recipients up to this many
        # cannot reach the limit: counting them needs no more than their number
        self.free_below = 0 if wronglimit is not None else rcptlimit if rcptlimit is not None else 1 << 62
        self.databytes = databytes  # 0: no limit
        # the answer outside the relay and confirming checks when it depends on nothing
        # else (no counting, no size limit), or None
        self.always = fixed if fixed is not None else None if self.counts or databytes else "DUNNO"


class _Session(qmailenv.Chkuser):
    """chkuser's counters for one SMTP connection, and whether its last recipient is still
    to be confirmed."""

    __slots__ = ("pending",)

    def __init__(self, rcpts: int) -> None:
        super().__init__(rcpts)
        self.pending = False  # a recipient went on to Postfix's checks and was not confirmed


def postfix_reply(reply: str) -> str:
    """A qmail SMTP reply as a Postfix access action: ``NNN D.D.D text``.

    qmail writes the enhanced status code at the end, ``(#5.3.4)``; Postfix wants it after
    the number, or it puts a generic one there.  A reply that has one already is kept."""
    code, _, text = reply.partition(" ")
    if re.match(r"[245]\.\d{1,3}\.\d{1,3} ", text):
        return reply
    m = re.search(r"\(#([245]\.\d{1,3}\.\d{1,3})\)$", text)
    return f"{code} {m.group(1)} {text}" if m else reply


_REPLY_DATABYTES = postfix_reply(qmailenv.REPLY_DATABYTES)


@functools.lru_cache(maxsize=4096)
def _client_ip6(address: bytes) -> bytes:
    """An IPv6 client_address as tcpserver writes TCPREMOTEIP (:func:`cdbrules.tcpserver_ip`:
    v4-mapped to the dotted quad, zeros compressed as tcpserver compresses them).  Postfix
    writes an IPv4 client as tcpserver does, a dotted quad, which needs no such step."""
    try:
        return tcpserver_ip(address.decode("utf-8", "surrogateescape")).encode()
    except ValueError:  # no address: looked up as it is
        return address


@functools.lru_cache(maxsize=4096)
def _client_host(name: bytes) -> Optional[str]:
    """client_name as tcpserver writes TCPREMOTEHOST (:func:`cdbrules.tcpserver_host`: lower
    case, no trailing dot, odd bytes as \\ooo); None for a name no PTR answer gives, which
    is then looked up as a client without a host name."""
    try:
        return tcpserver_host(name)
    except ValueError:
        return None


class RulesPolicy:
    """The action for a policy request, from the rule for its ``client_address``.

    * ``reject_text``: the text of the ``REJECT`` for a client the rules deny;
    * ``relay_context``: the ``policy_context`` of the relay check, where a client with
      ``RELAYCLIENT`` gets ``OK`` (and no counting is done);
    * ``valid_context``: the ``policy_context`` of a second call placed after Postfix's
      own recipient checks (``reject_unlisted_recipient``...).  A recipient seen in the
      main call and not confirmed there before the connection's next recipient was
      refused by Postfix: it counts for ``CHKUSER_WRONGRCPTLIMIT``.  None: wrong
      recipients are not counted.  Both calls must reach this object (a listener, not
      one process per Postfix connection as spawn(8) runs it);
    * ``sessions``: how many SMTP connections' counters are kept (least recently used
      forgotten first).

    A connection is ``client_address``, ``client_port``, ``server_address`` and
    ``server_port`` (Postfix 3.2 sends them all; with fewer, connections that share what
    is sent share their counters).
    """

    def __init__(self, rules: Rules, *, reject_text: str = "Access denied",
                 relay_context: str = "relay", valid_context: Optional[str] = None,
                 sessions: int = 10000) -> None:
        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, not {sessions}")
        for what, text in (("reject_text", reject_text), ("relay_context", relay_context),
                           ("valid_context", valid_context or "")):
            if _CONTROL.search(text.encode("utf-8", "surrogateescape")) or "\n" in text:
                raise ValueError(f"{what} must not contain control characters: {text!r}")
        self.rules = rules
        self.reject = f"REJECT {reject_text}" if reject_text else "REJECT"
        self.relay_context = relay_context.encode()
        self.valid_context = None if valid_context is None else valid_context.encode()
        self._valid: object = self.valid_context or _NEVER  # an empty name is no context
        self.max_sessions = sessions
        # a connection's counters, or 1 for a connection with one recipient so far (_count)
        self.sessions: "collections.OrderedDict[Tuple[bytes, ...], Union[_Session, int]]" = \
            collections.OrderedDict()
        self._plans: Dict[bytes, _Plan] = {}  # a rule record's data -> its plan
        self._plan_of = self._plans.get  # bound once: the path of every request
        self._check = rules.check
        self._check_ip = rules.check_ip

    def plan(self, d: Decision) -> _Plan:
        """What decision d asks for, computed once per rule record (its data decides)."""
        p = self._plans.get(d.data)
        if p is not None:
            return p
        env = d.env
        fixed: Optional[str] = None
        if not d.allowed:
            fixed = self.reject
        else:
            rbl = qmailenv.rblsmtpd(env)
            if rbl is not None:
                word = "REJECT" if rbl.permanent else "DEFER"
                fixed = f"{word} {rbl.shown_text}" if rbl.shown_text else word
        p = _Plan(fixed, qmailenv.relayclient(env) is not None,
                  qmailenv.chkuser_limit(env, "CHKUSER_RCPTLIMIT"),
                  qmailenv.chkuser_limit(env, "CHKUSER_WRONGRCPTLIMIT") if self.valid_context else None,
                  qmailenv.databytes(env) or 0)
        if len(self._plans) >= 4096:
            self._plans.clear()
        self._plans[d.data] = p
        return p

    def __call__(self, attrs: Request) -> str:
        try:
            request, addr, name, context, state = _FIELDS(attrs)
        except KeyError:  # not all sent (an older Postfix, a test): the absent ones are None
            request, addr, name, context, state = map(attrs.get, _FIELD_NAMES)
        if request != b"smtpd_access_policy" or not addr:
            return "DUNNO"
        # the rule: client_address as tcpserver writes it, client_name as the host; the
        # bytes as they came (Rules.check_ip takes them as they are, without a copy)
        if b":" in addr:
            addr = _client_ip6(addr)
        if name == b"unknown" or not name:
            d = self._check_ip(addr)
        else:
            host = _client_host(name)
            d = self._check_ip(addr) if host is None else self._check(addr, host)
        p = self._plan_of(d.data) or self.plan(d)
        if context == self.relay_context:
            return p.in_relay
        if context == self._valid:
            if p.fixed is not None:
                return p.fixed
            if state == b"RCPT":
                s = self.sessions.get(_session_key(attrs))
                if isinstance(s, _Session):
                    s.pending = False
            return "DUNNO"
        reply = p.always
        if reply is not None:
            return reply
        if state == b"RCPT" and p.counts:
            reply = self._count(attrs, p)
            if reply is not None:
                return reply
        if p.databytes:
            size = attrs.get(b"size")
            if size and qmailenv.leading_number(size.decode("ascii", "replace")) > p.databytes:
                return _REPLY_DATABYTES
        return "DUNNO"

    def _count(self, attrs: Request, p: _Plan) -> Optional[str]:
        """chkuser's recipient counting for one RCPT request: its reply, or None.

        While a connection's recipients cannot reach the limit and none can be found
        wrong (fewer than ``p.free_below`` with this one), they are remembered as their
        number alone; the counters (a :class:`_Session`) are made when one could reach it.
        Most connections never need them, and a number is no object for the garbage
        collector to walk."""
        key = _session_key(attrs)
        sessions = self.sessions
        got = sessions.get(key)
        if got is None:
            got = 0
            if len(sessions) >= self.max_sessions:
                sessions.popitem(False)  # the least recently used
        else:
            sessions.move_to_end(key)
        if isinstance(got, int):
            if got + 1 < p.free_below:
                sessions[key] = got + 1
                return None
            s = sessions[key] = _Session(got)
        else:
            s = got
        wronglimit = p.wronglimit
        if s.pending:  # the previous recipient never reached the confirming call
            s.pending = False
            s.wrong(wronglimit)
        reply = s.recipient(p.rcptlimit)
        s.pending = reply is None and wronglimit is not None
        return reply


#: What every request is read for, fetched at once (Postfix 3.1 and later send them all).
_FIELD_NAMES = (b"request", b"client_address", b"client_name", b"policy_context", b"protocol_state")
_FIELDS = operator.itemgetter(*_FIELD_NAMES)
_CONNECTION_NAMES = (b"client_address", b"client_port", b"server_address", b"server_port")
_CONNECTION = operator.itemgetter(*_CONNECTION_NAMES)

#: valid_context when there is none: equal to no policy_context.
_NEVER = object()


def _session_key(attrs: Request) -> Tuple[bytes, ...]:
    """The SMTP connection a request belongs to (see :class:`RulesPolicy`); what is not
    sent counts as empty."""
    try:
        return _CONNECTION(attrs)  # type: ignore[no-any-return]
    except KeyError:
        return tuple([attrs.get(name, b"") for name in _CONNECTION_NAMES])


def dunno(attrs: Request) -> str:
    """The protocol floor: DUNNO to everything, no lookup."""
    return "DUNNO"


# -- the protocol ------------------------------------------------------------------

class _Conn(asyncio.Protocol):
    """One policy client: requests in, one reply each, in order."""

    def __init__(self, server: "PolicyServer", writer: Optional[Any] = None) -> None:
        self.server = server
        self.buf = bytearray()
        self.scan = 0  # where the search for the end of the pending request resumes
        self.transport: Any = None
        self.writer: Any = writer  # where replies go (the transport itself for sockets)
        self.timer: Optional[asyncio.TimerHandle] = None
        self.in_request = False
        self.closing = False
        self.peer = "stdin"
        self.done: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    # asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.writer is None:
            self.writer = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = peer if isinstance(peer, str) else f"{peer[0]}:{peer[1]}"
        elif transport.get_extra_info("socket") is not None:
            self.peer = "unix socket"
        self.server.conns.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self.buf
        buf += data
        srv = self.server
        out: List[bytes] = []
        start = 0
        n = len(buf)
        while start < n:
            if buf[start] == 10:  # an empty line alone: a request without attributes
                req = b""
                end = start + 1
            else:
                i = buf.find(b"\n\n", max(start, self.scan))
                if i < 0:
                    break
                req = bytes(buf[start:i])
                end = i + 2
            start = end
            self.scan = 0
            try:
                if len(req) > srv.max_request:
                    raise MalformedRequest(f"a request longer than {srv.max_request} bytes")
                attrs = parse_request(req, srv.max_line, srv.max_attributes)
            except MalformedRequest as e:
                self._fail(f"malformed request: {e}", out)
                return
            try:
                action = srv._answer(attrs)
            except Exception as e:  # the rules file broke under us: no answer, as the protocol says
                log.error("policyd: %s: cannot answer: %s: %s", self.peer, type(e).__name__, e)
                self._fail("", out)
                return
            if srv.verbose:
                log.info("policyd: %s: %s -> %s", self.peer,
                         attrs.get(b"client_address", b"-").decode("utf-8", "replace"), action)
            out.append(b"action=%s\n\n" % action.encode("utf-8", "surrogateescape"))
        if start:
            del buf[:start]
            self.in_request = False  # what is left is a new request: its own time
        if buf:
            tail = len(buf) - buf.rfind(b"\n") - 1
            if len(buf) > srv.max_request:
                self._fail(f"malformed request: longer than {srv.max_request} bytes", out)
                return
            if tail > srv.max_line:
                self._fail(f"malformed request: a line longer than {srv.max_line} bytes", out)
                return
            self.scan = max(len(buf) - 1, 0)
        if out:
            self.writer.write(b"".join(out))
        self._arm()

    def eof_received(self) -> Optional[bool]:
        if self.buf and not self.closing:
            log.warning("policyd: %s: connection closed in the middle of a request", self.peer)
        self.closing = True
        self._close()
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.buf and not self.closing:
            log.warning("policyd: %s: connection lost in the middle of a request", self.peer)
        self.closing = True
        self._cancel()
        self.server.conns.discard(self)
        if self.writer is not None and self.writer is not self.transport:
            self.writer.close()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:  # the client does not read its replies: stop reading
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.closing:
            self.transport.resume_reading()

    # helpers
    def _fail(self, why: str, out: List[bytes]) -> None:
        """Close this connection after the replies already made, without one for the bad request."""
        if why:
            log.warning("policyd: %s: %s; closing the connection", self.peer, why)
        if out:
            self.writer.write(b"".join(out))
        self.closing = True
        self.buf.clear()
        self._close()

    def _close(self) -> None:
        self._cancel()
        if self.writer is not self.transport:
            self.writer.close()
        self.transport.close()

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        """The idle timer between requests, the request timer while one is coming in."""
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        if self.buf:
            if not self.in_request:
                self.in_request = True
                self._cancel()
                if self.server.timeout is not None:
                    self.timer = loop.call_later(self.server.timeout, self._expired, "request")
        else:
            self.in_request = False
            self._cancel()
            if self.server.idle_timeout is not None:
                self.timer = loop.call_later(self.server.idle_timeout, self._expired, "idle")

    def _expired(self, which: str) -> None:
        self.timer = None
        if which == "request":
            log.warning("policyd: %s: request not complete after %gs; closing the connection",
                        self.peer, self.server.timeout)
        else:
            log.info("policyd: %s: idle for %gs; closing the connection", self.peer, self.server.idle_timeout)
        self.closing = True
        self.buf.clear()
        self._close()


class _PipeWriter(asyncio.Protocol):
    """The write side of standard output: passes flow control on to the reading side."""

    def __init__(self) -> None:
        self.conn: Optional[_Conn] = None

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume_writing()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.conn is not None and not self.conn.closing:
            self.conn.closing = True
            self.conn.transport.close()


class _FileIO:
    """Just enough of a transport for a regular file on standard input or output."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _pollable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class ListenSpec(NamedTuple):
    kind: str  # "inet", "unix" or "systemd"
    host: str = ""
    port: int = 0
    path: str = ""


def parse_listen(spec: str) -> ListenSpec:
    """``inet:HOST:PORT`` (``inet:[::1]:PORT`` for IPv6), ``unix:PATH`` or ``systemd``."""
    if spec == "systemd":
        return ListenSpec("systemd")
    kind, colon, rest = spec.partition(":")
    if kind == "unix" and colon and rest:
        return ListenSpec("unix", path=rest)
    if kind == "inet" and colon:
        host, colon, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if colon and host and port.isdigit() and 0 <= int(port) <= 65535:
            return ListenSpec("inet", host=host, port=int(port))
    raise ValueError(f"not inet:HOST:PORT, unix:PATH or systemd: {spec!r}")


def _systemd_sockets() -> List[socket.socket]:
    """The listening sockets systemd passed (LISTEN_FDS, from fd 3), for this process."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        n = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        pid, n = -1, 0
    if pid != os.getpid() or n < 1:
        raise OSError("no listening socket passed by systemd (LISTEN_PID/LISTEN_FDS)")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket.socket(fileno=3 + i) for i in range(n)]


class PolicyServer:
    """The policy protocol around ``policy`` (a request's attributes to an action).

    ``timeout``: seconds a request may take from its first byte to its empty line;
    ``idle_timeout``: seconds a connection may wait between requests (Postfix itself
    closes idle connections after ``smtpd_policy_service_max_idle``, 300 s); None: no
    limit.  ``max_line``, ``max_attributes`` and ``max_request`` bound a request.
    """

    def __init__(self, policy: Policy, *, timeout: Optional[float] = 10.0,
                 idle_timeout: Optional[float] = 1000.0, max_line: int = MAX_LINE,
                 max_attributes: int = MAX_ATTRIBUTES, max_request: int = MAX_REQUEST,
                 verbose: bool = False) -> None:
        self.policy = policy
        # what each request calls: a policy object's __call__ bound once, since CPython
        # calls an instance of a Python class by a slower way than a bound method
        call = getattr(type(policy), "__call__", None)
        self._answer: Policy = getattr(policy, "__call__") if isinstance(call, types.FunctionType) else policy
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_line = max_line
        self.max_attributes = max_attributes
        self.max_request = max_request
        self.verbose = verbose
        self.conns: "set[_Conn]" = set()
        self.servers: List[asyncio.AbstractServer] = []
        self._unlink: List[str] = []

    def protocol(self) -> asyncio.Protocol:
        """The protocol for one accepted connection (for ``loop.connect_accepted_socket``
        and the like)."""
        return _Conn(self)

    async def listen(self, spec: ListenSpec, socket_mode: int = 0o666) -> List[str]:
        """Start accepting on spec; the addresses listened on, as text."""
        loop = asyncio.get_running_loop()
        if spec.kind == "inet":
            srv = await loop.create_server(self.protocol, spec.host, spec.port, reuse_address=True,
                                          backlog=1024)
        elif spec.kind == "unix":
            try:
                if stat.S_ISSOCK(os.lstat(spec.path).st_mode):
                    os.unlink(spec.path)  # a stale socket of an earlier run
            except FileNotFoundError:
                pass
            srv = await loop.create_unix_server(self.protocol, spec.path, backlog=1024)
            os.chmod(spec.path, socket_mode)
            self._unlink.append(spec.path)
        else:
            socks = _systemd_sockets()
            names = []
            for s in socks:
                s.setblocking(False)
                if s.family == socket.AF_UNIX:
                    srv = await loop.create_unix_server(self.protocol, sock=s)
                else:
                    srv = await loop.create_server(self.protocol, sock=s)
                self.servers.append(srv)
                names.append(_sockname(s))
            return names
        self.servers.append(srv)
        return [_sockname(s) for s in srv.sockets]

    async def serve_stdio(self, rfd: int = 0, wfd: int = 1) -> None:
        """Serve the one client on standard input/output (spawn(8)) until it closes.

        Pipes, sockets and terminals are served by the event loop; a regular file (a
        request file given with ``<``, output to a file) is read and written directly."""
        loop = asyncio.get_running_loop()
        rst, wst = os.fstat(rfd), os.fstat(wfd)
        if stat.S_ISSOCK(rst.st_mode) and (rst.st_dev, rst.st_ino) == (wst.st_dev, wst.st_ino):
            # one socket on both (spawn): one transport, since a pipe transport writing to
            # a socket takes anything arriving on it for the peer closing
            conn = _Conn(self)
            await loop.connect_accepted_socket(lambda: conn, socket.socket(fileno=os.dup(rfd)))
            conn.peer = "stdin"
            await conn.done
            return
        wpipe = _PipeWriter()
        writer: Any
        if _pollable(wfd):
            writer, _ = await loop.connect_write_pipe(lambda: wpipe, os.fdopen(wfd, "wb", 0, closefd=False))
        else:
            writer = _FileIO(wfd)
        conn = _Conn(self, writer=writer)
        wpipe.conn = conn
        if _pollable(rfd):
            await loop.connect_read_pipe(lambda: conn, os.fdopen(rfd, "rb", 0, closefd=False))
        else:
            reader = _FileIO(rfd)
            conn.connection_made(reader)
            while not conn.closing:
                data = os.read(rfd, 65536)
                if not data:
                    conn.eof_received()
                    break
                conn.data_received(data)
            conn.connection_lost(None)
        await conn.done

    async def close(self) -> None:
        """Stop accepting, close every connection, remove the UNIX sockets made."""
        for srv in self.servers:
            srv.close()
        for c in list(self.conns):
            c.closing = True
            c._close()
        for srv in self.servers:
            await srv.wait_closed()
        self.servers.clear()
        for path in self._unlink:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._unlink.clear()


def _sockname(s: socket.socket) -> str:
    name = s.getsockname()
    if isinstance(name, tuple):
        host = f"[{name[0]}]" if ":" in name[0] else name[0]
        return f"inet:{host}:{name[1]}"
    return f"unix:{os.fsdecode(name)}"


async def run(server: PolicyServer, rules: Optional[Rules], listens: List[ListenSpec],
              socket_mode: int = 0o666, ready: Optional[Callable[[List[str]], None]] = None) -> None:
    """Serve until SIGTERM or SIGINT (or, on standard input, until the client closes).

    SIGHUP makes ``rules`` check its file now and load it if it was replaced."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def hup() -> None:
        if rules is not None:
            if rules.reload():
                log.info("policyd: SIGHUP: new rules loaded from %s", rules.path)
            elif rules.reload_error is not None:
                log.warning("policyd: SIGHUP: %s: %s; the rules in force stay", rules.path, rules.reload_error)
            else:
                log.info("policyd: SIGHUP: %s unchanged", rules.path)

    loop.add_signal_handler(signal.SIGHUP, hup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if listens:
            names: List[str] = []
            for spec in listens:
                names += await server.listen(spec, socket_mode)
            if ready is not None:
                ready(names)
            await stop.wait()
        else:
            if ready is not None:
                ready([])
            client = asyncio.ensure_future(server.serve_stdio())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([client, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if client.done():
                client.result()  # its error, if any
            else:
                client.cancel()
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()
