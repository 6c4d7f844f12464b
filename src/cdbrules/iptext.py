"""``tcpserver_ip``: the TCPREMOTEIP text tcpserver gives a client's address
(docs/lookup.md, "How tcpserver writes the client's address")."""

from __future__ import annotations

import ipaddress
from typing import Any, Tuple, Union

from ._bindings import tcpserver_fmt

__all__ = ["tcpserver_ip"]

Address = Union[str, bytes, int, ipaddress.IPv4Address, ipaddress.IPv6Address, Tuple[Any, ...]]

_V4MAPPED = b"\0" * 10 + b"\xff\xff"


def tcpserver_ip(address: Address, *, forcev6: bool = False) -> str:
    """The text tcpserver puts in TCPREMOTEIP (and looks rules up with) for a client at ``address``.

    ``address``: an :mod:`ipaddress` object, anything :func:`ipaddress.ip_address` takes (text,
    packed bytes, an int), or a socket address tuple as ``accept()`` returns it.  An IPv4 or
    v4-mapped client gives its dotted quad, or ``::ffff:a.b.c.d`` with ``forcev6`` (``tcpserver
    -6``); IPv6 is written as the IPv6 patch of ucspi-tcp writes it: lower-case hex, the longest
    run of zero groups (the first of equal runs, even a single group) as ``::``, no zone.
    ``2001:db8:0:1:1:1:1:1`` gives ``2001:db8::1:1:1:1:1`` where :mod:`ipaddress` writes it in full.
    """
    a: Any = address
    if isinstance(a, tuple):
        if not a:
            raise ValueError("an empty socket address")
        a = a[0]
    ip = a if isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(a)
    packed = ip.packed if ip.version == 6 else _V4MAPPED + ip.packed
    return tcpserver_fmt(packed, forcev6)
