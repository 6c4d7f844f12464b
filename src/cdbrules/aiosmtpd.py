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
from typing import (Any, Awaitable, Callable, Coroutine, Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional,
                    Tuple, Union)

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

# What the connection was found to be (_Conn.state).
_NEW, _PENDING, _OK, _DENY, _DROP, _BUSY = range(6)


class _Facts(NamedTuple):
    """What qmail's programs make of one rule's variables (see :mod:`cdbrules.qmailenv`)."""

    relayclient: Optional[str]
    maxconnip: Optional[int]
    rbl: Optional[RblBlock]
    rblsmtpd_set: bool
    databytes: Optional[int]
    rcpt_limit: Optional[int]
    wrong_limit: Optional[int]


# Rules whose readings are kept (a bound for a hostile file; past it they are read again).
_FACTS_MAX = 4096


class _Conn:
    """The state of one connection of a RulesSMTP, shared by its Sessions (STARTTLS makes a
    new one).  The environment is made when first asked for.  (No __slots__: a new
    connection sets only its listener, everything else starts as the class's default.)"""

    state = _NEW
    ip = ""
    peer: Any = None
    sock: Any = None
    decision: Optional[Decision] = None
    facts: Optional[_Facts] = None
    env: Optional[Mapping[str, str]] = None
    rbl: Optional[RblBlock] = None
    chkuser: Optional[qmailenv.Chkuser] = None
    counted = False
    counted_ip: Optional[str] = None

    def __init__(self, listener: "_Listener") -> None:
        self.listener = listener

    def tcp_env(self) -> Mapping[str, str]:
        env = self.env
        if env is None:
            d = self.decision
            if d is None:
                return _NO_ENV
            local_ip, local_port = _ip_port(self.sock)
            e = {"PROTO": "TCP6" if ":" in self.ip else "TCP", "TCPLOCALIP": local_ip, "TCPLOCALPORT": local_port}
            if self.listener.local_name is not None:
                e["TCPLOCALHOST"] = self.listener.local_name
            e["TCPREMOTEIP"] = self.ip
            e["TCPREMOTEPORT"] = str(self.peer[1])
            e.update(d.env)
            env = self.env = MappingProxyType(e)
        return env

    def relayclient(self) -> Optional[str]:
        f = self.facts
        return None if f is None else f.relayclient

    def where(self) -> str:
        """The connection as ``tcpserver -v`` names it: local host, IP and port, then remote
        host (none: no DNS), IP, info (none: no ident) and port."""
        try:
            local_ip, local_port = _ip_port(self.sock)
        except (ValueError, TypeError, IndexError):
            local_ip, local_port = repr(self.sock), ""
        return f"{self.listener.local_name or ''}:{local_ip}:{local_port} :{self.ip}::{self.peer[1]}"


#: The state of no connection (a RulesSMTP's until its __init__ ends): no decision.
_NO_CONN = _Conn.__new__(_Conn)


class RulesSession(Session):
    """aiosmtpd's Session with the connection's rule applied (the same values on the new
    Session aiosmtpd makes after STARTTLS):

    * ``tcp_env``: read-only mapping, tcpserver's own variables (PROTO, TCPLOCALIP,
      TCPLOCALPORT, TCPLOCALHOST when known, TCPREMOTEIP, TCPREMOTEPORT) overlaid with the
      rule's, a variable set to ``""`` present and distinct from an unset one;
    * ``relayclient``: None (no relaying) or RELAYCLIENT's value;
    * ``decision``: the :class:`cdbrules.Decision` of the rules lookup.
    """

    _conn: Optional[_Conn] = None

    @property
    def tcp_env(self) -> Mapping[str, str]:
        return _NO_ENV if self._conn is None else self._conn.tcp_env()

    @property
    def relayclient(self) -> Optional[str]:
        return None if self._conn is None else self._conn.relayclient()

    @property
    def decision(self) -> Optional[Decision]:
        return None if self._conn is None else self._conn.decision


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
        # a path: reloaded as Rules reloads (its file checked at most once a second)
        self.rules = rules if isinstance(rules, Rules) else Rules(rules)
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
        self._facts: Dict[bytes, _Facts] = {}

    def facts(self, d: Decision) -> "_Facts":
        """What the variables of d's rule mean (qmailenv's readings), read once per rule:
        Decision objects, and their data, are shared by every client of the rule."""
        f = self._facts.get(d.data)
        if f is None:
            env = d.env
            f = _Facts(qmailenv.relayclient(env), qmailenv.maxconnip(env), qmailenv.rblsmtpd(env),
                       "RBLSMTPD" in env, qmailenv.databytes(env), qmailenv.chkuser_limit(env, "CHKUSER_RCPTLIMIT"),
                       qmailenv.chkuser_limit(env, "CHKUSER_WRONGRCPTLIMIT"))
            if len(self._facts) < _FACTS_MAX:
                self._facts[d.data] = f
        return f

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


def _ip_port(addr: Any) -> Tuple[str, str]:
    """tcpserver's text for a socket address (ValueError/TypeError when it has no IP).  An
    AF_INET address is already written as tcpserver writes it (a dotted quad)."""
    return _ip(addr), str(addr[1])


def _ip(addr: Any) -> str:
    if type(addr) is tuple and len(addr) == 2 and type(addr[0]) is str and ":" not in addr[0]:
        ip: str = addr[0]
        return ip
    return tcpserver_ip(addr)


@functools.lru_cache(maxsize=64)
def _class_names(cls: type, sizes: Tuple[int, ...]) -> FrozenSet[str]:
    """The attribute names dir() finds on cls and its bases (sizes: how many each has, so
    that a class changed since is listed again)."""
    return frozenset().union(*(vars(k) for k in cls.__mro__))


class RulesSMTP(SMTP):
    """An aiosmtpd ``SMTP`` server obeying a tcpserver rules file.

    * ``rules``: the compiled rules, a path or a :class:`cdbrules.Rules`.  A path is
      reloaded as ``Rules(path)`` reloads: when the file was replaced, at most a second
      later; pass ``Rules(path, reload_interval=0)`` to check it at every connection, as
      tcpserver does, or ``Rules(path, missing_ok=True)`` for ``tcpserver -X``;
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

    # aiosmtpd's SMTP() looks at every attribute of each new server, and a connection does
    # much besides: the state is one object (_Conn), the work is done by functions, and
    # nothing is made before it is needed.  The state is set after aiosmtpd's __init__,
    # one attribute less for it to look at; until then the properties read _NO_CONN's.

    _c: _Conn

    def __init__(self, handler: Any, *, rules: Union[PathLike, Rules, _Listener], deny: str = "554",
                 rcpthosts: Optional[RcptHosts] = None, **kwargs: Any) -> None:
        if isinstance(rules, _Listener):  # from factory(): the options are in it
            listener = rules
        else:
            kwargs.update(deny=deny, rcpthosts=rcpthosts)
            listener = _Listener.split(rules, kwargs)
        super().__init__(handler, **kwargs)
        self._c = _Conn(listener)

    def __dir__(self) -> Iterable[str]:
        # aiosmtpd's SMTP() lists every attribute of each new server (dir(), then again in
        # inspect.getmembers) to find its smtp_ and auth_ methods, and merging the seven
        # classes' dictionaries is most of dir()'s time.  Their names are the same for
        # every connection: they are gathered once per class (and again when a class of
        # the MRO gains or loses a name); only the instance's own are listed each time.
        # dir() gives the same list as without this method.
        cls: type = type(self)
        return _class_names(cls, tuple(map(len, map(vars, cls.__mro__)))) | self.__dict__.keys()

    @classmethod
    def factory(cls, handler: Any, *, rules: Union[PathLike, Rules], **kwargs: Any) -> Callable[[], "RulesSMTP"]:
        """A protocol factory for ``loop.create_server``: every connection gets a RulesSMTP
        made with these arguments (RulesSMTP's), all sharing one set of connection counts."""
        listener = _Listener.split(rules, kwargs)
        return lambda: cls(handler, rules=listener, **kwargs)

    @property
    def tcp_env(self) -> Mapping[str, str]:
        """The environment of this connection (see :class:`RulesSession`)."""
        return getattr(self, "_c", _NO_CONN).tcp_env()

    @property
    def relayclient(self) -> Optional[str]:
        """RELAYCLIENT's value, or None."""
        return getattr(self, "_c", _NO_CONN).relayclient()

    @property
    def decision(self) -> Optional[Decision]:
        """The rules' Decision for this client (None until it is made)."""
        return getattr(self, "_c", _NO_CONN).decision

    def _create_session(self) -> Session:
        s = RulesSession(self.loop)
        s._conn = self._c
        return s

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the decision first: aiosmtpd's connection_made starts _handle_client, which reads it
        c = self._c
        if c.state == _NEW:  # (not the TLS transport after STARTTLS: a new Session, same client)
            _connect(self, transport)
        super().connection_made(transport)
        if c.state == _DROP:
            transport.close()

    def connection_lost(self, error: Optional[Exception]) -> None:
        # aiosmtpd may call this twice (a failed TLS handshake): count each connection once
        c = self._c
        if c.counted:
            c.counted = False
            c.listener.leave()
        if c.counted_ip is not None:
            c.listener.leave_ip(c.counted_ip)
            c.counted_ip = None
        super().connection_lost(error)

    def _handle_client(self) -> Coroutine[Any, Any, None]:
        # aiosmtpd's own coroutine, with no frame of ours around it, for a client let in
        if self._proxy_timeout is not None or _let_in(self._c):
            return super()._handle_client()
        return _admit_then_serve(self)

    def _call_handler_hook(self, command: str, *args: Any) -> Coroutine[Any, Any, Any]:
        # (the coroutine to await, without a frame of ours around aiosmtpd's)
        if command == "RCPT":
            return _rcpt(self, args[0], args[1])
        if command == "PROXY":
            return _proxy(self, args[0])
        return super()._call_handler_hook(command, *args)


# -- the decision -------------------------------------------------------------------------


def _connect(srv: RulesSMTP, transport: asyncio.BaseTransport) -> None:
    """A new connection: count it, then (without PROXY) decide from its addresses."""
    c = srv._c
    c.state = _PENDING
    listener = c.listener
    if listener.max_connections is not None:
        if not listener.enter():
            c.state = _BUSY
            log.info("busy %r: max_connections %d are open", transport.get_extra_info("peername"),
                     listener.max_connections)
            return
        c.counted = True
    if srv._proxy_timeout is None:  # with PROXY, the address in its header decides
        _decide(srv, transport.get_extra_info("peername"), transport.get_extra_info("sockname"))


def _decide(srv: RulesSMTP, peer: Any, sock: Any) -> None:
    """Look the client up and set what the connection gets."""
    c = srv._c
    listener = c.listener
    c.peer, c.sock = peer, sock
    try:
        ip = c.ip = _ip(peer)
    except (ValueError, TypeError, IndexError):
        c.state = _DROP
        log.warning("drop %r: not a TCP/IP client, the rules cannot be applied", peer)
        return
    try:
        d = listener.rules.check(ip)
    except (OSError, ValueError, MemoryError) as e:  # tcpserver drops when it cannot read
        c.state = _DROP
        log.warning("drop %s: unable to read %s: %s", c.where(), listener.rules.path, e)
        return
    c.decision = d
    f = c.facts = listener.facts(d)
    if not d.allowed:
        c.state = _DENY if listener.deny == "554" else _DROP
        if log.isEnabledFor(logging.INFO):
            log.info("deny %s", c.where())
        return
    if f.maxconnip is not None:
        if not listener.enter_ip(ip, f.maxconnip):
            c.state = _BUSY
            log.info("busy %s: MAXCONNIP=%d", c.where(), f.maxconnip)
            return
        c.counted_ip = ip
    c.rbl = f.rbl
    if f.databytes is not None:
        srv.data_size_limit = f.databytes or None
        # a limit DATABYTES set is refused in qmail-smtpd's words (an instance attribute:
        # aiosmtpd calls self.push for every reply; only these connections pay for it)
        srv.__dict__["push"] = functools.partial(_push_databytes, srv.push)
    c.state = _OK
    if log.isEnabledFor(logging.INFO):
        log.info("ok %s", c.where())


async def _push_databytes(push: Callable[[Any], Awaitable[None]], status: Any) -> None:
    if isinstance(status, str) and status.startswith("552 Error:"):
        status = qmailenv.REPLY_DATABYTES
    await push(status)


# -- what the client gets before the SMTP session -------------------------------------------


def _let_in(c: _Conn) -> bool:
    """Whether the client goes on to its SMTP session with nothing more to ask: allowed,
    not blocked, and no DNS list to ask (or RBLSMTPD set, empty, exempting it)."""
    if c.state != _OK or c.rbl is not None:
        return False
    return c.listener.rbl_check is None or (c.facts is not None and c.facts.rblsmtpd_set)


async def _admit_then_serve(srv: RulesSMTP) -> None:
    """_handle_client for a client that _let_in does not let in at once: answered by
    _admit, then served if it lets the client in."""
    if await _admit(srv):
        await SMTP._handle_client(srv)
    elif srv.transport is not None:
        srv.transport.close()


async def _admit(srv: RulesSMTP) -> bool:
    """Answer a client that gets no SMTP session (denied, blocked, over a limit) and return
    False; True for a client whose session goes on."""
    c = srv._c
    if _let_in(c):
        return True
    state = c.state
    if state == _OK:
        if c.rbl is None:
            assert c.listener.rbl_check is not None  # (else _let_in)
            c.rbl = await _ask_rbl(srv, c.listener.rbl_check)
            if c.rbl is None:
                return True
        log.info("rbl %s: %s", c.where(), c.rbl.reply)
        await _rblsmtpd(srv, c.rbl.reply)
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
    c = srv._c
    f = c.facts
    assert f is not None  # no command is read before the decision
    chk = c.chkuser
    if chk is None:  # the first recipient
        chk = c.chkuser = qmailenv.Chkuser()
    reply = chk.recipient(f.rcpt_limit)
    if reply is not None:
        return reply
    relay = c.relayclient()
    hosts = c.listener.rcpthosts
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
        chk.wrong(f.wrong_limit)
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
