"""What qmail's programs make of a rule's variables, read in one place.

A tcp.smtp rule sets variables; qmail-smtpd, rblsmtpd, chkuser and the tcpserver limits
patch give them their meaning.  :mod:`cdbrules.aiosmtpd` and ``cdbrules policyd`` both act
on them, through the functions here, so the two servers can never read a variable two ways.

Every function takes the rule's variables (``Decision.env`` or any mapping of str to str)
and tells apart a variable that is unset (None) from one set to the empty string, as the
qmail programs do.  Numbers are read as djb's ``scan_ulong`` and C's ``atoi`` read them: the
leading decimal digits, none meaning 0.
"""

from __future__ import annotations

from typing import AbstractSet, Callable, Mapping, NamedTuple, Optional, Union

__all__ = [
    "Chkuser",
    "RblBlock",
    "REPLY_DATABYTES",
    "REPLY_RCPTHOSTS",
    "REPLY_RCPTLIMIT",
    "REPLY_POLICY",
    "REPLY_NOMAILBOX",
    "RBLSMTPD_TEXT_MAX",
    "chkuser_limit",
    "databytes",
    "leading_number",
    "maxconnip",
    "rblsmtpd",
    "rcpthosts_allows",
    "relayclient",
]

Env = Mapping[str, str]

#: qmail-smtpd's reply to a recipient outside rcpthosts from a client without RELAYCLIENT.
REPLY_RCPTHOSTS = "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
#: qmail-smtpd's reply to a message larger than DATABYTES.
REPLY_DATABYTES = "552 sorry, that message size exceeds my databytes limit (#5.3.4)"
#: chkuser's reply to the recipient that reaches CHKUSER_RCPTLIMIT.
REPLY_RCPTLIMIT = "550 5.5.3 sorry, reached maximum number of recipients allowed in one session (chkuser)"
#: chkuser's reply to every recipient after a limit was reached.
REPLY_POLICY = "550 5.7.1 sorry, you are violating our security policies (chkuser)"
#: chkuser's reply to a recipient with no mailbox.
REPLY_NOMAILBOX = "550 5.1.1 sorry, no mailbox here by that name. (chkuser)"

#: rblsmtpd cuts the text of its reply to this many characters.
RBLSMTPD_TEXT_MAX = 200


def leading_number(value: str) -> int:
    """The number in value's leading decimal digits (0 when there are none), as
    ``scan_ulong`` and ``atoi`` read a variable: ``"15"`` and ``"15 rcpts"`` are 15."""
    n = 0
    for ch in value:
        if not "0" <= ch <= "9":
            break
        n = n * 10 + ord(ch) - 48
    return n


def relayclient(env: Env) -> Optional[str]:
    """RELAYCLIENT: None when unset (no relaying); otherwise the suffix qmail-smtpd appends
    to every accepted recipient (usually ``""``: relay, append nothing)."""
    return env.get("RELAYCLIENT")


class RblBlock(NamedTuple):
    """A client that rblsmtpd blocks: ``permanent`` (553) or temporary (451), and the text."""

    permanent: bool
    text: str

    @property
    def code(self) -> int:
        return 553 if self.permanent else 451

    @property
    def shown_text(self) -> str:
        """The text as rblsmtpd shows it: cut to 200 characters, each character outside
        printable ASCII replaced by '?'."""
        return "".join(c if " " <= c <= "~" else "?" for c in self.text[:RBLSMTPD_TEXT_MAX])

    @property
    def reply(self) -> str:
        """The reply rblsmtpd gives to the envelope: the code, then :attr:`shown_text`."""
        return f"{self.code} {self.shown_text}"


def rblsmtpd(env: Env) -> Optional[RblBlock]:
    """RBLSMTPD as rblsmtpd reads it: a non-empty value blocks (a leading ``-`` makes the
    block permanent, the rest being the text); unset or empty does not.  (Whether it was
    unset, which lets a DNS list decide, or empty, which exempts the client, is
    ``"RBLSMTPD" in env``.)"""
    value = env.get("RBLSMTPD")
    if not value:
        return None
    if value[0] == "-":
        return RblBlock(True, value[1:])
    return RblBlock(False, value)


def chkuser_limit(env: Env, name: str) -> Optional[int]:
    """CHKUSER_RCPTLIMIT or CHKUSER_WRONGRCPTLIMIT as chkuser reads it: None when the
    variable is unset, below 1 or not a number (no limit); otherwise the limit.  chkuser
    trips when its count *reaches* the limit: a limit of 15 accepts 14 recipients."""
    value = env.get(name)
    if value is None:
        return None
    n = leading_number(value.lstrip(" \t"))
    return n if n >= 1 else None


def databytes(env: Env) -> Optional[int]:
    """DATABYTES: None when unset (the server's own limit holds); otherwise the largest
    message in bytes, 0 meaning no limit, as qmail-smtpd reads it."""
    value = env.get("DATABYTES")
    return None if value is None else leading_number(value)


def maxconnip(env: Env) -> Optional[int]:
    """MAXCONNIP (the tcpserver limits patch): None when unset; otherwise how many
    connections one client address may hold at once (0: every connection is refused)."""
    value = env.get("MAXCONNIP")
    return None if value is None else leading_number(value)


#: What :func:`rcpthosts_allows` takes: a set of host names, or a function of the host name.
RcptHosts = Union[AbstractSet[str], Callable[[str], bool]]


def rcpthosts_allows(rcpthosts: RcptHosts, address: str) -> bool:
    """qmail-smtpd's rcpthosts test for a recipient of a client without RELAYCLIENT.

    The host is what follows the last ``@``, in lower case; an address without ``@`` is
    accepted (qmail then adds its own host).  A set allows the host when it holds the
    host itself or one of its dotted tails (``.example.com`` allows every host under
    example.com), entries written in lower case as in ``control/rcpthosts``; a function is
    called with the host and decides alone."""
    at = address.rfind("@")
    if at < 0:
        return True
    host = address[at + 1:].lower()
    if callable(rcpthosts):
        return bool(rcpthosts(host))
    if host in rcpthosts:
        return True
    dot = host.find(".")
    while dot >= 0:
        if host[dot:] in rcpthosts:
            return True
        dot = host.find(".", dot + 1)
    return False


class Chkuser:
    """chkuser's recipient counters for one SMTP connection, kept as chkuser keeps them:
    neither RSET nor a new MAIL resets them, and once a limit is reached every later
    recipient is refused.  The limits are given with each count (as :func:`chkuser_limit`
    reads them, None: no limit).

    Call :meth:`recipient` for each RCPT that reaches the recipient check, and :meth:`wrong`
    when a recipient turned out not to exist."""

    __slots__ = ("recipients", "wrong_recipients", "tripped")

    def __init__(self, recipients: int = 0) -> None:
        self.recipients = recipients
        self.wrong_recipients = 0
        #: True once a limit was reached (chkuser's intrusion threshold).
        self.tripped = False

    def recipient(self, limit: Optional[int]) -> Optional[str]:
        """Count one recipient against CHKUSER_RCPTLIMIT ``limit``; return chkuser's reply
        when it must be refused (:data:`REPLY_POLICY` after a limit was reached,
        :data:`REPLY_RCPTLIMIT` for the recipient that reaches the limit), None when the
        check goes on."""
        if self.tripped:
            return REPLY_POLICY
        self.recipients += 1
        if limit is not None and self.recipients >= limit:
            self.tripped = True
            return REPLY_RCPTLIMIT
        return None

    def wrong(self, limit: Optional[int]) -> None:
        """A recipient does not exist: count it against CHKUSER_WRONGRCPTLIMIT ``limit``
        (its own reply stands; once the limit is reached the next ones are refused)."""
        self.wrong_recipients += 1
        if limit is not None and self.wrong_recipients >= limit:
            self.tripped = True
