"""An aiosmtpd SMTP server that obeys a tcpserver rules file (qmail's ``tcp.smtp``).

:class:`RulesSMTP` is an :class:`aiosmtpd.smtp.SMTP` that decides, when a client connects and
before it sends a byte, what tcpserver would do with it, then gives the rule's variables
the meaning qmail-smtpd, rblsmtpd, chkuser and the tcpserver limits patch give them (read
in :mod:`cdbrules.qmailenv`).  :class:`RulesController` is aiosmtpd's ``Controller`` making
such servers: one call starts a server that honours ``/etc/tcprules.d/tcp.smtp.cdb``::

    from cdbrules.aiosmtpd import RulesController
    ctrl = RulesController(handler, rules="/etc/tcprules.d/tcp.smtp.cdb",
                           rcpthosts={"example.org"}, hostname="0.0.0.0", port=25)
    ctrl.start()

Handlers find the connection's environment in ``session.tcp_env`` (see docs/aiosmtpd.md).
Install with ``pip install 'cdbrules[aiosmtpd]'``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import threading
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Tuple, Union, cast

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import MISSING, SMTP, Session
except ImportError as _e:  # pragma: no cover - the message is the point
    raise ImportError("cdbrules.aiosmtpd needs aiosmtpd, which the 'aiosmtpd' extra installs: "
                      "pip install 'cdbrules[aiosmtpd]'", name=_e.name) from _e

from . import qmailenv
from .errors import PathLike
from .iptext import tcpserver_ip
from .qmailenv import RblBlock, RcptHosts
from .rules import Decision, Rules

__all__ = ["RulesController", "RulesSMTP", "RulesSession"]

log = logging.getLogger("cdbrules.aiosmtpd")

#: The optional DNS-list hook: ``await rbl_check(ip)`` for a client whose rule leaves
#: RBLSMTPD unset; None lets it in, a text blocks it as that RBLSMTPD value would
#: (``"-text"``: 553, else 451), and so does an :class:`~cdbrules.qmailenv.RblBlock`.
RblCheck = Callable[[str], Awaitable[Union[None, str, RblBlock]]]

_NO_ENV: Mapping[str, str] = MappingProxyType({})

# What the connection was found to be (RulesSMTP._state).
_NEW, _PENDING, _OK, _DENY, _DROP, _BUSY = range(6)


class RulesSession(Session):
    """aiosmtpd's Session with the connection's rule applied (the same values on the new
    Session aiosmtpd makes after STARTTLS):

    * ``tcp_env``: read-only mapping, tcpserver's own variables (PROTO, TCPLOCALIP,
      TCPLOCALPORT, TCPLOCALHOST when known, TCPREMOTEIP, TCPREMOTEPORT) overlaid with the
      rule's, a variable set to ``""`` present and distinct from an unset one;
    * ``relayclient``: None (no relaying) or RELAYCLIENT's value;
    * ``decision``: the :class:`cdbrules.Decision` of the rules lookup.
    """

    tcp_env: Mapping[str, str] = _NO_ENV
    relayclient: Optional[str] = None
    decision: Optional[Decision] = None


class _Listener:
    """What every connection of one server shares: the rules, the options and the counts
    of open connections (all of them, and per client address) that the limits read."""

    #: The keywords taken here; RulesSMTP and RulesController pass the others to aiosmtpd.
    OPTIONS = ("deny", "rcpthosts", "rbl_check", "max_connections", "local_name",
               "deny_commands", "deny_seconds", "rbl_timeout", "rbl_commands")

    def __init__(self, rules: Union[PathLike, Rules], *, deny: str = "554", rcpthosts: Optional[RcptHosts] = None,
                 rbl_check: Optional[RblCheck] = None, max_connections: Optional[int] = None,
                 local_name: Optional[str] = None, deny_commands: int = 10, deny_seconds: float = 30.0,
                 rbl_timeout: float = 60.0, rbl_commands: int = 100) -> None:
        if deny not in ("554", "drop"):
            raise ValueError(f"deny must be '554' or 'drop', not {deny!r}")
        if max_connections is not None and (not isinstance(max_connections, int) or max_connections < 1):
            raise ValueError(f"max_connections must be a number >= 1 or None, not {max_connections!r}")
        if rcpthosts is not None and not callable(rcpthosts):
            if isinstance(rcpthosts, (str, bytes)):
                raise TypeError("rcpthosts must be a set of host names or a function, not one string")
            rcpthosts = frozenset(h.lower() for h in rcpthosts)
        # tcpserver reads the file again for every connection: a path is checked each time
        self.rules = rules if isinstance(rules, Rules) else Rules(rules, reload_interval=0)
        self.deny = deny
        self.rcpthosts = rcpthosts
        self.rbl_check = rbl_check
        self.max_connections = max_connections
        self.local_name = local_name
        self.deny_commands = deny_commands
        self.deny_seconds = deny_seconds
        self.rbl_timeout = rbl_timeout
        self.rbl_commands = rbl_commands
        self._lock = threading.Lock()
        self.open = 0
        self.per_ip: Dict[str, int] = {}

    @classmethod
    def split(cls, rules: Union[PathLike, Rules, "_Listener"], kwargs: Dict[str, Any]) -> "_Listener":
        """The listener for these arguments; its keywords are taken out of kwargs."""
        options = {k: kwargs.pop(k) for k in cls.OPTIONS if k in kwargs}
        if isinstance(rules, _Listener):
            if options:
                raise TypeError(f"options for a shared listener: {sorted(options)}")
            return rules
        return cls(rules, **options)

    def enter(self) -> bool:
        """Count a new connection; False (not counted) when max_connections are open."""
        with self._lock:
            if self.max_connections is not None and self.open >= self.max_connections:
                return False
            self.open += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.open -= 1

    def enter_ip(self, ip: str, limit: int) -> bool:
        """Count a connection from ip; False (not counted) when it holds limit already."""
        with self._lock:
            n = self.per_ip.get(ip, 0)
            if n >= limit:
                return False
            self.per_ip[ip] = n + 1
            return True

    def leave_ip(self, ip: str) -> None:
        with self._lock:
            n = self.per_ip[ip] - 1
            if n:
                self.per_ip[ip] = n
            else:
                del self.per_ip[ip]


class _Conn:
    """The state of one connection of a RulesSMTP, kept across STARTTLS."""

    __slots__ = ("listener", "state", "ip", "where", "rbl", "chkuser", "counted", "counted_ip")

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.state = _NEW
        self.ip = ""
        self.where: Tuple[Any, ...] = ()  # the connection as tcpserver -v writes it, for the log
        self.rbl: Optional[RblBlock] = None
        self.chkuser: Optional[qmailenv.Chkuser] = None
        self.counted = False
        self.counted_ip: Optional[str] = None


def _ip_port(addr: Any) -> Tuple[str, str]:
    """tcpserver's text for a socket address (ValueError/TypeError when it has no IP).  An
    AF_INET address is already written as tcpserver writes it (a dotted quad)."""
    if isinstance(addr, tuple) and len(addr) == 2 and isinstance(addr[0], str) and ":" not in addr[0]:
        return addr[0], str(addr[1])
    return tcpserver_ip(addr), str(addr[1])


class RulesSMTP(SMTP):
    """An aiosmtpd ``SMTP`` server obeying a tcpserver rules file.

    * ``rules``: the compiled rules, a path (read again whenever it changes, as tcpserver
      does) or a :class:`cdbrules.Rules` (which reloads as it was told to);
    * ``deny``: what a client that the rules deny gets: ``"554"`` (a 554 greeting, then 503
      to everything but QUIT, closed after ``deny_commands`` commands (10) or
      ``deny_seconds`` seconds (30)) or ``"drop"`` (closed without a byte, as tcpserver does);
    * ``rcpthosts``: the hosts a client without RELAYCLIENT may send to (qmail's
      ``control/rcpthosts``: a set of names, ``.example.org`` for every host under it, or
      a function of the host); None leaves relaying to the handler;
    * ``rbl_check``: an ``async`` function of the client's address, asked when the rule
      leaves RBLSMTPD unset; a text it returns blocks the client as RBLSMTPD would;
    * ``rbl_timeout`` (60) and ``rbl_commands`` (100): a client that RBLSMTPD blocks is
      dropped after this many seconds (rblsmtpd's ``-t``) or commands;
    * ``max_connections``: how many connections may be open at once (``tcpserver -c``);
      past it a client gets 421;
    * ``local_name``: TCPLOCALHOST (``tcpserver -l``); unset when None;
    * every other keyword goes to aiosmtpd's ``SMTP``.

    Handlers see ``session.tcp_env``, ``session.relayclient`` and ``session.decision``
    (:class:`RulesSession`); the server itself has the same three attributes.

    The limits count the connections of one server: make the instances with
    :meth:`factory` or :class:`RulesController`, which share one count.  An instance made
    alone counts only itself (MAXCONNIP=0 still refuses).
    """

    # aiosmtpd's SMTP() looks at every attribute of the new object, for each connection:
    # the state of the connection is one object (_Conn), the work is done by functions.

    #: The environment of this connection (see :class:`RulesSession`).
    tcp_env: Mapping[str, str] = _NO_ENV
    #: RELAYCLIENT's value, or None.
    relayclient: Optional[str] = None
    #: The rules' Decision for this client (None until it is made).
    decision: Optional[Decision] = None

    def __init__(self, handler: Any, *, rules: Union[PathLike, Rules, _Listener], deny: str = "554",
                 rcpthosts: Optional[RcptHosts] = None, **kwargs: Any) -> None:
        if isinstance(rules, _Listener):  # from factory(): the options are in it
            listener = rules
        else:
            kwargs.update(deny=deny, rcpthosts=rcpthosts)
            listener = _Listener.split(rules, kwargs)
        super().__init__(handler, **kwargs)
        self._c = _Conn(listener)

    @classmethod
    def factory(cls, handler: Any, *, rules: Union[PathLike, Rules], **kwargs: Any) -> Callable[[], "RulesSMTP"]:
        """A protocol factory for ``loop.create_server``: every connection gets a RulesSMTP
        made with these arguments (RulesSMTP's), all sharing one set of connection counts."""
        listener = _Listener.split(rules, kwargs)
        return lambda: cls(handler, rules=listener, **kwargs)

    def _create_session(self) -> Session:
        return RulesSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        session = self.session
        if self._c.state != _NEW:  # the TLS transport after STARTTLS: a new Session, same client
            _attach(self, session)
            return
        self._c.state = _PENDING
        if not self._c.listener.enter():
            self._c.state = _BUSY
            log.info("busy %r: max_connections %d are open", transport.get_extra_info("peername"),
                     self._c.listener.max_connections)
            return
        self._c.counted = True
        if self._proxy_timeout is None:  # with PROXY, the address in its header decides
            _decide(self, transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
            if self._c.state == _DROP:
                transport.close()
        else:
            _attach(self, session)

    def connection_lost(self, error: Optional[Exception]) -> None:
        # aiosmtpd may call this twice (a failed TLS handshake): count each connection once
        if self._c.counted:
            self._c.counted = False
            self._c.listener.leave()
        if self._c.counted_ip is not None:
            self._c.listener.leave_ip(self._c.counted_ip)
            self._c.counted_ip = None
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._proxy_timeout is None and not await _admit(self):
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "RCPT":
            return await _rcpt(self, args[0], args[1])
        if command == "PROXY":
            return await _proxy(self, args[0])
        return await super()._call_handler_hook(command, *args)


# -- the decision -------------------------------------------------------------------------


def _attach(srv: RulesSMTP, s: Optional[Session]) -> None:
    if s is None:
        return
    rs = cast(RulesSession, s)
    rs.tcp_env = srv.tcp_env
    rs.relayclient = srv.relayclient
    rs.decision = srv.decision


def _decide(srv: RulesSMTP, peer: Any, sock: Any) -> None:
    """Look the client up; set the environment and what the connection gets."""
    listener = srv._c.listener
    try:
        ip, port = _ip_port(peer)
        local_ip, local_port = _ip_port(sock)
    except (ValueError, TypeError, IndexError):
        srv._c.state = _DROP
        log.warning("drop %r: not a TCP/IP client, the rules cannot be applied", peer)
        return
    srv._c.ip = ip
    local = listener.local_name
    srv._c.where = (local or "", local_ip, local_port, ip, port)
    try:
        d = listener.rules.check(ip)
    except (OSError, ValueError, MemoryError) as e:  # tcpserver drops when it cannot read
        srv._c.state = _DROP
        log.warning("drop %s: unable to read %s: %s", _where(srv), listener.rules.path, e)
        return
    env = {"PROTO": "TCP6" if ":" in ip else "TCP", "TCPLOCALIP": local_ip, "TCPLOCALPORT": local_port}
    if local is not None:
        env["TCPLOCALHOST"] = local
    env["TCPREMOTEIP"] = ip
    env["TCPREMOTEPORT"] = port
    if d.env:
        env.update(d.env)
    srv.tcp_env = MappingProxyType(env)
    srv.decision = d
    srv.relayclient = qmailenv.relayclient(env)
    _attach(srv, srv.session)
    if not d.allowed:
        srv._c.state = _DENY if listener.deny == "554" else _DROP
        if log.isEnabledFor(logging.INFO):
            log.info("deny %s", _where(srv))
        return
    limit = qmailenv.maxconnip(env)
    if limit is not None:
        if not listener.enter_ip(ip, limit):
            srv._c.state = _BUSY
            log.info("busy %s: MAXCONNIP=%d", _where(srv), limit)
            return
        srv._c.counted_ip = ip
    srv._c.rbl = qmailenv.rblsmtpd(env)
    size = qmailenv.databytes(env)
    if size is not None:
        srv.data_size_limit = size or None
        # a limit DATABYTES set is refused in qmail-smtpd's words (an instance attribute:
        # aiosmtpd calls self.push for every reply; only these connections pay for it)
        srv.__dict__["push"] = functools.partial(_push_databytes, srv, srv.push)
    srv._c.state = _OK
    if log.isEnabledFor(logging.INFO):
        log.info("ok %s", _where(srv))


def _where(srv: RulesSMTP) -> str:
    """The connection as ``tcpserver -v`` names it: local host, IP and port, then remote
    host (none: no DNS), IP, info (none: no ident) and port."""
    return "%s:%s:%s :%s::%s" % srv._c.where


async def _push_databytes(srv: RulesSMTP, push: Callable[[Any], Awaitable[None]], status: Any) -> None:
    if isinstance(status, str) and status.startswith("552 Error:"):
        status = qmailenv.REPLY_DATABYTES
    await push(status)


# -- what the client gets before the SMTP session -------------------------------------------


async def _admit(srv: RulesSMTP) -> bool:
    """Answer a client that gets no SMTP session (denied, blocked, over a limit) and return
    False; True for a client whose session goes on."""
    state = srv._c.state
    if state == _OK:
        if srv._c.rbl is None and "RBLSMTPD" not in srv.tcp_env and srv._c.listener.rbl_check is not None:
            srv._c.rbl = await _ask_rbl(srv, srv._c.listener.rbl_check)
        if srv._c.rbl is None:
            return True
        log.info("rbl %s: %s", _where(srv), srv._c.rbl.reply)
        await _rblsmtpd(srv, srv._c.rbl.reply)
    elif state == _DENY:
        await _refuse(srv)
    elif state == _BUSY:
        await srv.push(f"421 {srv.hostname} too many connections, try again later (#4.3.2)")
    return False


async def _ask_rbl(srv: RulesSMTP, check: RblCheck) -> Optional[RblBlock]:
    try:
        r = await check(srv._c.ip)
    except Exception:  # a failing list must not take the server down: fail open, as rblsmtpd
        log.exception("rbl_check(%r) failed; the client is not blocked", srv._c.ip)
        return None
    if r is None or isinstance(r, RblBlock):
        return r
    return qmailenv.rblsmtpd({"RBLSMTPD": str(r)})


async def _refuse(srv: RulesSMTP) -> None:
    """RFC 5321 section 3.1: 554 instead of the greeting, then 503 to all but QUIT."""
    host = srv.hostname
    await srv.push(f"554 {host} 5.7.1 no SMTP service here for your address")

    def answer(verb: bytes) -> str:
        if verb == b"QUIT":
            return f"221 {host} 2.0.0 closing connection"
        return "503 5.5.1 no SMTP service here, only QUIT"

    await _dialogue(srv, answer, srv._c.listener.deny_commands, srv._c.listener.deny_seconds)


async def _rblsmtpd(srv: RulesSMTP, block: str) -> None:
    """rblsmtpd's session for a blocked client: 250 to HELO, EHLO, MAIL, RSET and NOOP, 221
    to QUIT, the block to everything else; dropped after rbl_timeout."""
    host = srv.hostname
    await srv.push(f"220 {host}")

    def answer(verb: bytes) -> str:
        if verb in (b"HELO", b"EHLO", b"MAIL", b"RSET", b"NOOP"):
            return f"250 {host}"
        if verb == b"QUIT":
            return f"221 {host}"
        return block

    await _dialogue(srv, answer, srv._c.listener.rbl_commands, srv._c.listener.rbl_timeout)


async def _dialogue(srv: RulesSMTP, answer: Callable[[bytes], str], commands: int, seconds: float) -> None:
    """Answer each command line with answer(VERB) until QUIT, the end of the input, a line
    longer than aiosmtpd's limit, ``commands`` lines or ``seconds`` seconds."""
    loop = srv.loop
    end = loop.time() + seconds
    for _ in range(commands):
        left = end - loop.time()
        if left <= 0:
            return
        try:
            line = await asyncio.wait_for(srv._reader.readuntil(b"\n"), left)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        words = line.split(None, 1)
        verb = words[0].upper() if words else b""
        await srv.push(answer(verb))
        if verb == b"QUIT":
            return


# -- the SMTP session -------------------------------------------------------------------------


async def _proxy(srv: RulesSMTP, data: Any) -> Any:
    """The PROXY header's source decides (a LOCAL or UNKNOWN header: the connection's own)."""
    if srv._c.state == _PENDING:
        transport = srv.transport
        assert transport is not None
        peer, sock = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        if isinstance(data.src_addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            peer, sock = (data.src_addr, data.src_port), (data.dst_addr, data.dst_port)
        _decide(srv, peer, sock)
    if not await _admit(srv):
        return False
    status = await SMTP._call_handler_hook(srv, "PROXY", data)
    return True if status is MISSING else status


async def _rcpt(srv: RulesSMTP, address: str, options: Any) -> Any:
    """chkuser's limits, then qmail's rcpthosts, then the handler with RELAYCLIENT's suffix."""
    chk = srv._c.chkuser
    if chk is None:  # the first recipient (no command is read before the decision)
        chk = srv._c.chkuser = qmailenv.Chkuser(srv.tcp_env)
    reply = chk.recipient()
    if reply is not None:
        return reply
    relay = srv.relayclient
    hosts = srv._c.listener.rcpthosts
    if (relay is None and hosts is not None and not (srv.session is not None and srv.session.authenticated)
            and not qmailenv.rcpthosts_allows(hosts, address)):
        return qmailenv.REPLY_RCPTHOSTS
    if relay:
        address += relay
    status = await SMTP._call_handler_hook(srv, "RCPT", address, options)
    if status is MISSING:
        if not relay:
            return MISSING
        assert srv.envelope is not None
        srv.envelope.rcpt_tos.append(address)
        srv.envelope.rcpt_options.extend(options)
        return "250 OK"
    if isinstance(status, str) and status[:1] == "5":
        chk.wrong()
    return status


class RulesController(Controller):
    """aiosmtpd's threaded ``Controller`` serving :class:`RulesSMTP`: ``start()`` and the
    server obeys the rules.  Takes RulesSMTP's keywords (``rules``, ``deny``, ``rcpthosts``,
    ``rbl_check``, ``max_connections``, ``local_name``, ...), Controller's (``hostname``
    and ``port`` to listen on, ``loop``, ``ready_timeout``, ``ssl_context``,
    ``server_hostname``) and passes the rest to every RulesSMTP.  ``smtp_class`` makes
    the servers (a subclass of RulesSMTP)."""

    smtp_class = RulesSMTP

    def __init__(self, handler: Any, *, rules: Union[PathLike, Rules], hostname: Optional[str] = None,
                 port: int = 8025, deny: str = "554", rcpthosts: Optional[RcptHosts] = None,
                 **kwargs: Any) -> None:
        kwargs.update(deny=deny, rcpthosts=rcpthosts)
        self._listener = _Listener.split(rules, kwargs)
        super().__init__(handler, hostname=hostname, port=port, **kwargs)

    @property
    def rules(self) -> Rules:
        """The rules in force (a :class:`cdbrules.Rules`)."""
        return self._listener.rules

    def factory(self) -> RulesSMTP:
        return self.smtp_class(self.handler, rules=self._listener, **self.SMTP_kwargs)
