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
import ipaddress
import logging
import threading
from types import MappingProxyType
from typing import Any, AnyStr, Awaitable, Callable, Dict, Mapping, Optional, Tuple, Union

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

    tcp_env: Mapping[str, str]
    relayclient: Optional[str]
    decision: Optional[Decision]


class _Listener:
    """What every connection of one server shares: the rules, the options and the counts
    of open connections (all of them, and per client address) that the limits read."""

    __slots__ = ("rules", "deny", "rcpthosts", "rbl_check", "max_connections", "local_name",
                 "_lock", "open", "per_ip")

    def __init__(self, rules: Union[PathLike, Rules], deny: str, rcpthosts: Optional[RcptHosts],
                 rbl_check: Optional[RblCheck], max_connections: Optional[int],
                 local_name: Optional[str]) -> None:
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
        self._lock = threading.Lock()
        self.open = 0
        self.per_ip: Dict[str, int] = {}

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
    """tcpserver's text for a socket address (ValueError/TypeError when it has no IP)."""
    return tcpserver_ip(addr), str(addr[1])


class RulesSMTP(SMTP):
    """An aiosmtpd ``SMTP`` server obeying a tcpserver rules file.

    * ``rules``: the compiled rules, a path (read again whenever it changes, as tcpserver
      does) or a :class:`cdbrules.Rules` (which reloads as it was told to);
    * ``deny``: what a client that the rules deny gets: ``"554"`` (a 554 greeting, then 503
      to everything but QUIT, closed after :attr:`deny_commands` commands or
      :attr:`deny_seconds` seconds) or ``"drop"`` (closed without a byte, as tcpserver does);
    * ``rcpthosts``: the hosts a client without RELAYCLIENT may send to (qmail's
      ``control/rcpthosts``: a set of names, ``.example.org`` for every host under it, or
      a function of the host); None leaves relaying to the handler;
    * ``rbl_check``: an ``async`` function of the client's address, asked when the rule
      leaves RBLSMTPD unset; a text it returns blocks the client as RBLSMTPD would;
    * ``max_connections``: how many connections may be open at once (``tcpserver -c``);
      past it a client gets 421;
    * ``local_name``: TCPLOCALHOST (``tcpserver -l``); unset when None;
    * every other keyword goes to aiosmtpd's ``SMTP``.

    The limits count the connections of one server: make the instances with
    :meth:`factory` or :class:`RulesController`, which share one count.  An instance made
    alone counts only itself (MAXCONNIP=0 still refuses).
    """

    #: A denied client (deny="554") is closed after this many commands...
    deny_commands = 10
    #: ... or this many seconds, whichever comes first.
    deny_seconds = 30.0
    #: A client that RBLSMTPD blocks is dropped this many seconds after it connected
    #: (rblsmtpd's ``-t``, 60 by default)...
    rbl_timeout = 60.0
    #: ... or after this many commands (rblsmtpd has no such bound).
    rbl_commands = 100

    def __init__(self, handler: Any, *, rules: Union[PathLike, Rules, _Listener], deny: str = "554",
                 rcpthosts: Optional[RcptHosts] = None, rbl_check: Optional[RblCheck] = None,
                 max_connections: Optional[int] = None, local_name: Optional[str] = None,
                 **smtp_kwargs: Any) -> None:
        self._listener = (rules if isinstance(rules, _Listener) else
                          _Listener(rules, deny, rcpthosts, rbl_check, max_connections, local_name))
        #: The environment of this connection (see :class:`RulesSession`).
        self.tcp_env: Mapping[str, str] = _NO_ENV
        #: RELAYCLIENT's value, or None.
        self.relayclient: Optional[str] = None
        #: The rules' Decision for this client (None until it is made).
        self.decision: Optional[Decision] = None
        self._state = _NEW
        self._ip = ""
        self._where = ""  # the connection as tcpserver -v writes it, for the log
        self._rbl: Optional[RblBlock] = None
        self._chkuser: Optional[qmailenv.Chkuser] = None
        self._counted = False
        self._counted_ip: Optional[str] = None
        self._databytes = False
        super().__init__(handler, **smtp_kwargs)

    @classmethod
    def factory(cls, handler: Any, *, rules: Union[PathLike, Rules], deny: str = "554",
                rcpthosts: Optional[RcptHosts] = None, rbl_check: Optional[RblCheck] = None,
                max_connections: Optional[int] = None, local_name: Optional[str] = None,
                **smtp_kwargs: Any) -> Callable[[], "RulesSMTP"]:
        """A protocol factory for ``loop.create_server``: every connection gets a RulesSMTP
        made with these arguments, all sharing one set of connection counts."""
        listener = _Listener(rules, deny, rcpthosts, rbl_check, max_connections, local_name)
        return lambda: cls(handler, rules=listener, **smtp_kwargs)

    # -- the decision -------------------------------------------------------------
    def _create_session(self) -> Session:
        s = RulesSession(self.loop)
        self._attach(s)
        return s

    def _attach(self, s: Session) -> None:
        s.tcp_env = self.tcp_env  # type: ignore[attr-defined]
        s.relayclient = self.relayclient  # type: ignore[attr-defined]
        s.decision = self.decision  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._state != _NEW:  # the TLS transport after STARTTLS: a new Session, same client
            return
        self._state = _PENDING
        if not self._listener.enter():
            self._state = _BUSY
            self._where = f"{transport.get_extra_info('peername')!r}"
            log.info("busy %s: max_connections %d are open", self._where, self._listener.max_connections)
            return
        self._counted = True
        if self._proxy_timeout is None:  # with PROXY, the address in its header decides
            self._decide(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
            if self._state == _DROP:
                transport.close()

    def _decide(self, peer: Any, sock: Any) -> None:
        """Look the client up; set the environment and what the connection gets."""
        listener = self._listener
        try:
            ip, port = _ip_port(peer)
            local_ip, local_port = _ip_port(sock)
        except (ValueError, TypeError, IndexError):
            self._state = _DROP
            log.warning("drop %r: not a TCP/IP client, the rules cannot be applied", peer)
            return
        self._ip = ip
        local = listener.local_name or ""
        self._where = f"{local}:{local_ip}:{local_port} :{ip}::{port}"
        try:
            d = listener.rules.check(ip)
        except (OSError, ValueError, MemoryError) as e:  # tcpserver drops when it cannot read
            self._state = _DROP
            log.warning("drop %s: unable to read %s: %s", self._where, listener.rules.path, e)
            return
        env = {"PROTO": "TCP6" if ":" in ip else "TCP", "TCPLOCALIP": local_ip, "TCPLOCALPORT": local_port}
        if listener.local_name is not None:
            env["TCPLOCALHOST"] = listener.local_name
        env["TCPREMOTEIP"] = ip
        env["TCPREMOTEPORT"] = port
        env.update(d.env)
        self.tcp_env = MappingProxyType(env)
        self.decision = d
        self.relayclient = qmailenv.relayclient(env)
        if self.session is not None:
            self._attach(self.session)
        if not d.allowed:
            self._state = _DENY if listener.deny == "554" else _DROP
            log.info("deny %s", self._where)
            return
        limit = qmailenv.maxconnip(env)
        if limit is not None:
            if not listener.enter_ip(ip, limit):
                self._state = _BUSY
                log.info("busy %s: MAXCONNIP=%d", self._where, limit)
                return
            self._counted_ip = ip
        self._rbl = qmailenv.rblsmtpd(env)
        self._chkuser = qmailenv.Chkuser(env)
        size = qmailenv.databytes(env)
        if size is not None:
            self.data_size_limit = size or None
            self._databytes = True
        self._state = _OK
        log.info("ok %s", self._where)

    def connection_lost(self, error: Optional[Exception]) -> None:
        # aiosmtpd may call this twice (a failed TLS handshake): count each connection once
        if self._counted:
            self._counted = False
            self._listener.leave()
        if self._counted_ip is not None:
            self._listener.leave_ip(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    # -- what the client gets before the SMTP session -------------------------------
    async def _handle_client(self) -> None:
        if self._proxy_timeout is None and not await self._admit():
            self._close()
            return
        await super()._handle_client()

    async def _admit(self) -> bool:
        """Answer a client that gets no SMTP session (denied, blocked, over a limit) and
        return False; True for a client whose session goes on."""
        state = self._state
        if state == _OK:
            if self._rbl is None and "RBLSMTPD" not in self.tcp_env and self._listener.rbl_check is not None:
                self._rbl = await self._ask_rbl()
            if self._rbl is None:
                return True
            log.info("rbl %s: %s", self._where, self._rbl.reply)
            await self._rblsmtpd(self._rbl.reply)
        elif state == _DENY:
            await self._refuse()
        elif state == _BUSY:
            await self.push(f"421 {self.hostname} too many connections, try again later (#4.3.2)")
        return False

    async def _ask_rbl(self) -> Optional[RblBlock]:
        check = self._listener.rbl_check
        assert check is not None
        try:
            r = await check(self._ip)
        except Exception:  # a failing list must not take the server down: fail open, as rblsmtpd
            log.exception("rbl_check(%r) failed; the client is not blocked", self._ip)
            return None
        if r is None or isinstance(r, RblBlock):
            return r
        return qmailenv.rblsmtpd({"RBLSMTPD": str(r)})

    async def _refuse(self) -> None:
        """RFC 5321 section 3.1: 554 instead of the greeting, then 503 to all but QUIT."""
        host = self.hostname
        await self.push(f"554 {host} 5.7.1 no SMTP service here for your address")

        def answer(verb: bytes) -> str:
            if verb == b"QUIT":
                return f"221 {host} 2.0.0 closing connection"
            return "503 5.5.1 no SMTP service here, only QUIT"

        await self._dialogue(answer, self.deny_commands, self.deny_seconds)

    async def _rblsmtpd(self, block: str) -> None:
        """rblsmtpd's session for a blocked client: 250 to HELO, EHLO, MAIL, RSET and NOOP,
        221 to QUIT, the block to everything else; dropped after rbl_timeout."""
        host = self.hostname
        await self.push(f"220 {host}")

        def answer(verb: bytes) -> str:
            if verb in (b"HELO", b"EHLO", b"MAIL", b"RSET", b"NOOP"):
                return f"250 {host}"
            if verb == b"QUIT":
                return f"221 {host}"
            return block

        await self._dialogue(answer, self.rbl_commands, self.rbl_timeout)

    async def _dialogue(self, answer: Callable[[bytes], str], commands: int, seconds: float) -> None:
        """Answer each command line with answer(VERB) until QUIT, the end of the input, a
        line longer than aiosmtpd's limit, ``commands`` lines or ``seconds`` seconds."""
        loop = self.loop
        end = loop.time() + seconds
        for _ in range(commands):
            left = end - loop.time()
            if left <= 0:
                return
            try:
                line = await asyncio.wait_for(self._reader.readuntil(b"\n"), left)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            words = line.split(None, 1)
            verb = words[0].upper() if words else b""
            await self.push(answer(verb))
            if verb == b"QUIT":
                return

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- the SMTP session -----------------------------------------------------------
    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "RCPT":
            return await self._rcpt(args[0], args[1])
        if command == "PROXY":
            return await self._proxy(args[0])
        return await super()._call_handler_hook(command, *args)

    async def _proxy(self, data: Any) -> Any:
        """The PROXY header's source decides (a LOCAL or UNKNOWN header: the connection's own)."""
        if self._state == _PENDING:
            transport = self.transport
            assert transport is not None
            peer, sock = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
            if isinstance(data.src_addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                peer, sock = (data.src_addr, data.src_port), (data.dst_addr, data.dst_port)
            self._decide(peer, sock)
        if not await self._admit():
            return False
        status = await super()._call_handler_hook("PROXY", data)
        return True if status is MISSING else status

    async def _rcpt(self, address: str, options: Any) -> Any:
        """chkuser's limits, then qmail's rcpthosts, then the handler with RELAYCLIENT's suffix."""
        chk = self._chkuser
        assert chk is not None  # no command is read before the decision
        reply = chk.recipient()
        if reply is not None:
            return reply
        relay = self.relayclient
        hosts = self._listener.rcpthosts
        if (relay is None and hosts is not None and not (self.session is not None and self.session.authenticated)
                and not qmailenv.rcpthosts_allows(hosts, address)):
            return qmailenv.REPLY_RCPTHOSTS
        if relay:
            address += relay
        status = await super()._call_handler_hook("RCPT", address, options)
        if status is MISSING:
            if not relay:
                return MISSING
            assert self.envelope is not None
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(options)
            return "250 OK"
        if isinstance(status, str) and status[:1] == "5":
            chk.wrong()
        return status

    async def push(self, status: AnyStr) -> None:
        # a size limit that DATABYTES set is refused with qmail-smtpd's words
        if self._databytes and isinstance(status, str) and status.startswith("552 Error:"):
            await super().push(qmailenv.REPLY_DATABYTES)
            return
        await super().push(status)


class RulesController(Controller):
    """aiosmtpd's threaded ``Controller`` serving :class:`RulesSMTP`: ``start()`` and the
    server obeys the rules.  Takes RulesSMTP's keywords (``rules``, ``deny``, ``rcpthosts``,
    ``rbl_check``, ``max_connections``, ``local_name``), Controller's (``hostname`` and
    ``port`` to listen on, ``loop``, ``ready_timeout``, ``ssl_context``,
    ``server_hostname``) and passes the rest to every RulesSMTP."""

    def __init__(self, handler: Any, *, rules: Union[PathLike, Rules], hostname: Optional[str] = None,
                 port: int = 8025, deny: str = "554", rcpthosts: Optional[RcptHosts] = None,
                 rbl_check: Optional[RblCheck] = None, max_connections: Optional[int] = None,
                 local_name: Optional[str] = None, **kwargs: Any) -> None:
        self._listener = _Listener(rules, deny, rcpthosts, rbl_check, max_connections, local_name)
        super().__init__(handler, hostname=hostname, port=port, **kwargs)

    @property
    def rules(self) -> Rules:
        """The rules in force (a :class:`cdbrules.Rules`)."""
        return self._listener.rules

    def factory(self) -> RulesSMTP:
        return RulesSMTP(self.handler, rules=self._listener, **self.SMTP_kwargs)
