"""Networks (``compile --cidr``, list files): what the C core makes of ``NET/LEN``, in words.

:func:`check_network` says whether a text is a network ``compile --cidr`` can write as
keys the real tcpserver looks up, how many keys it costs, and if not, why not and what
to write instead.  The compiler's messages for a bad network come from the same place.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from . import _bindings as C
from ._bindings import Net

__all__ = ["NetworkCheck", "check_network"]

_CODES = {
    C.RULES_NET_OK: "ok",
    C.RULES_NET_NOTNET: "notnet",
    C.RULES_NET_E_SYNTAX: "syntax",
    C.RULES_NET_E_LENGTH: "length",
    C.RULES_NET_E_ZERO: "zero",
    C.RULES_NET_E_HOSTBITS: "hostbits",
    C.RULES_NET_E_INEXACT: "inexact",
    C.RULES_NET_E_INEXACT_END: "inexact-end",
}


class NetworkCheck(NamedTuple):
    """What ``compile --cidr`` makes of a network.

    ``ok``: it can be written exactly; ``code``: ``"ok"``, ``"notnet"`` (no ``/``),
    ``"syntax"``, ``"length"``, ``"zero"`` (``/0``), ``"hostbits"``, ``"inexact"`` (an IPv6
    zero group before the last group of the prefix) or ``"inexact-end"`` (an IPv6 address
    printed with a trailing ``::``); ``family`` 4 or 6 (0 if unparsed; a ``::ffff:`` network
    is 4), ``length`` in that family's bits; ``network``: the network as ``ADDR/LEN`` (for
    ``hostbits`` the one meant: host bits cleared); ``keys``: the keys it makes (when ok);
    ``reason``: a sentence for an admin (empty when ok)."""

    ok: bool
    code: str
    family: int
    length: int
    network: str
    keys: int
    reason: str


def _show(text: bytes) -> str:
    return repr(text.decode("latin-1"))


def network_reason(code: int, text: bytes, net: Net, plain: bool = False) -> str:
    """Why the network ``text`` cannot be used, and the fix (code: an enum rules_netcode)."""
    t = _show(text)
    if code in (C.RULES_NET_E_SYNTAX, C.RULES_NET_NOTNET):
        what = "an address or a network" if plain else "a network ADDRESS/LENGTH"
        return f"{t} is not {what} (such as 192.0.2.0/24 or 2001:db8::/32)"
    if code == C.RULES_NET_E_LENGTH:
        bits = 32 if net.family == 4 else 128
        return f"{t}: the length /{net.length} is past {bits}, the bits of an IPv{net.family} address"
    if code == C.RULES_NET_E_ZERO:
        return f"{t} is every address: write the default rule (':allow' or ':deny') instead"
    if code == C.RULES_NET_E_HOSTBITS:
        fixed = f"{net.address}/{net.length}"
        return f"{t} has bits set past /{net.length}: the network is {fixed} (write that, or /32 or /128 for one address)"
    if code == C.RULES_NET_E_INEXACT:
        return (
            f"{t} cannot be written as keys tcpserver matches exactly: its group {net.zerogroup + 1} is 0, "
            "and tcpserver prints zero groups as '::', so any key for it also matches addresses outside "
            "the network (on a RELAYCLIENT line, an open relay); use networks whose groups before the "
            "last one are not 0"
        )
    if code == C.RULES_NET_E_INEXACT_END:
        return (
            f"{t} cannot be written as a key tcpserver matches exactly: an address in it prints with a "
            "trailing '::', and tcpserver also takes such a key as a prefix of other addresses (on a "
            "RELAYCLIENT line, an open relay)"
        )
    return f"{t} cannot be used as a network"


def check_network(text: Union[str, bytes], *, plain: bool = False) -> NetworkCheck:
    """What ``compile --cidr`` makes of ``text`` (``NET/LEN``; with ``plain`` also a bare
    address, as in a list file).  Never raises for a bad network: see ``ok`` and ``reason``."""
    b = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    code, net = C.net_parse(b, plain)
    shown = (C.RULES_NET_OK, C.RULES_NET_E_HOSTBITS, C.RULES_NET_E_INEXACT, C.RULES_NET_E_INEXACT_END)
    network = f"{net.address}/{net.length}" if net.family and code in shown else ""
    ok = code == C.RULES_NET_OK
    return NetworkCheck(ok, _CODES.get(code, "syntax"), net.family, net.length, network,
                        net.keys if ok else 0, "" if ok else network_reason(code, b, net, plain))


def looks_like_network(key: bytes) -> bool:
    """Would an admin mean ``key`` (a rule's address) as a network?  (The warning for a
    network key compiled without ``--cidr``.)"""
    return C.net_looks(key)
