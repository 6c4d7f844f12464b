"""``tcpserver_ip`` and ``tcpserver_host``: the TCPREMOTEIP and TCPREMOTEHOST texts tcpserver
gives a client (docs/lookup.md, "How tcpserver writes the client's address")."""

from __future__ import annotations

import ipaddress
from typing import Any, Tuple, Union

from ._bindings import tcpserver_fmt

__all__ = ["tcpserver_host", "tcpserver_ip"]

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


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


def fold_host(raw: bytes) -> bytes:
    """What tcpserver does to every name before anything else: ASCII letters in lower case,
    one trailing dot after a label dropped (``"."``, the root, stays as it is)."""
    low = raw.lower()
    return low[:-1] if low.endswith(b".") and not low.endswith(b"..") and len(low) > 1 else low


def tcpserver_host(name: Union[str, bytes]) -> str:
    """The text tcpserver puts in TCPREMOTEHOST for a client whose PTR record names ``name``
    (a host name as a resolver or Postfix's ``client_name`` gives it).

    djb's DNS library writes ASCII letters in lower case, no trailing dot, and every byte
    other than ``a-z 0-9 - _`` inside a label as a backslash and three octal digits; the
    root is ``"."``.  ``Mail.Example.COM.`` gives ``mail.example.com``.  A str is taken as
    UTF-8.  An empty name or an empty label (``a..b``) is a ValueError: no PTR answer is
    written so."""
    raw = fold_host(name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name))
    if raw == b".":
        return "."
    labels = raw.split(b".")
    if not all(labels):
        raise ValueError(f"host {raw.decode('utf-8', 'surrogateescape')!r} has an empty label"
                         if raw else "an empty host name")
    return ".".join("".join(chr(c) if c in _PLAIN else f"\\{c:03o}" for c in label) for label in labels)
