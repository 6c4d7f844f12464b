"""Answering tcpserver's per-connection question from Python: :class:`Rules`, :class:`Decision`.

``Rules(path).check(ip, host, info)`` gives the :class:`Decision` tcpserver would make for a
connection, from a rules file compiled by ``cdbrules compile`` or the real ``tcprules``.
Every key of the lookup order (docs/lookup.md, "The lookup order"; IPv6 boundaries
included) is tried in one C call; the matched record is decoded once per loaded file and its
:class:`Decision` reused.

tcpserver reopens the rules file for every connection, so a recompiled file takes effect at
once.  A long-lived :class:`Rules` does the same cheaply: at most every ``reload_interval``
seconds it compares the path's device, inode, size and modification time with those of the
file it has loaded, and swaps in the new file when they differ.

The file is read into memory, never mapped: a file truncated or rewritten in place can only
be refused (the last good rules stay in force), never kill the process (README, "Files
changed in place").  The last two files read are kept once they have settled (their last
change a second old), so opening an unchanged file again, tcpserver's way of one open per
connection, costs an fstat and no read.
"""

from __future__ import annotations

import array
import ipaddress
import logging
import math
import os
import stat
import struct
import threading
import time
import weakref
from types import MappingProxyType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _bindings as C
from ._bindings import (Failed, closed_cdb, exception, host_is_tcpserver_text, ip_is_tcpserver_text, open_cdb,
                        rules_probes, rules_verify)
from .errors import CdbFormatError, PathLike
from .iptext import fold_host, tcpserver_ip
from .reader import SETTLE_NS, read_cdb, same_bytes

__all__ = ["Decision", "Rules"]

log = logging.getLogger("cdbrules")

Text = Union[str, bytes]
#: A client address: text as tcpserver writes TCPREMOTEIP, an ipaddress object, or a socket
#: address tuple as accept() and getpeername() give it.
Address = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address, Tuple[Any, ...]]

# The C functions and the clock, bound once: the hot path reads no attribute chains.
_check_ip = C.rules_check_ip
_check = C.rules_check
_check_many = C.rules_check_many
_check_tcp = C.rules_check_tcp
_check_tcpip = C.rules_check_tcpip
_check_tcpip6 = C.rules_check_tcpip6
_check_many_tcp = C.rules_check_many_tcp
_BAD_IP = C.RULES_BAD_IP
_BAD_HOST = C.RULES_BAD_HOST
_TEXT_TYPES = (str, bytes, bytearray, memoryview)
_monotonic = time.monotonic
_NULL = C.NULL
_int64s = C.int64_array
_ZEROS = array.array("q", [0])  # check_many's results, int64 each

# Decisions kept per loaded file: one per KiB of the file, and at least 65,536 (every
# record of any hand-written rules file).  A decision kept costs about 250 bytes, so the
# decisions of a big block list take at most about a quarter of the memory its bytes take;
# a hostile or huge file cannot make them grow past that (a decision is still made past
# the bound, just not kept).
_CACHE_MIN = 1 << 16
_CACHE_PER = 10  # one decision per 2**10 bytes of file
# Addresses check_ip remembers per loaded file (then it starts again): the clients of the
# last few thousand lookups, for a server asked about one client again and again (Postfix
# asks a policy server about one SMTP session several times).
_BY_IP_MAX = 4096
_recspan = C.cdb_recspan
_HEAD = C.CDB_RECORD_HEAD
_NO_SPAN = C.NO_SPAN
_new_object = object.__new__

# An empty cdb (every hash table empty): the rules of a missing file under missing_ok.
_EMPTY_CDB = struct.pack("<II", 2048, 0) * 256


def _text(value: object, what: str) -> bytes:
    """A lookup argument as the bytes the C core compares (str: UTF-8, surrogateescape)."""
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if 0 in b:
        raise ValueError(f"{what} contains a NUL character, which tcpserver never passes: {value!r}")
    return b


def _opt(value: object, what: str) -> Any:
    """An optional lookup argument: NULL when absent (None), present even when empty."""
    return _NULL if value is None else _text(value, what)


def _bad_ip(b: bytes, forcev6: int, where: str = "") -> ValueError:
    """The error for ip text tcpserver never passes, saying what it would have passed."""
    text = b.decode("utf-8", "surrogateescape")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return ValueError(f"{where}ip {text!r} is not an address as tcpserver writes it in TCPREMOTEIP "
                          "(pass the text it writes, an ipaddress object or a socket address)")
    want = tcpserver_ip(addr, forcev6=bool(forcev6))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None and not forcev6:
        return ValueError(f"{where}ip {text!r}: tcpserver looks an IPv4 client up by its dotted quad, {want!r} "
                          "(pass the socket address or an ipaddress object, or use Rules(..., forcev6=True) "
                          "for tcpserver -6)")
    if forcev6 and addr.version == 4:
        return ValueError(f"{where}ip {text!r}: under tcpserver -6 (forcev6) an IPv4 client is {want!r}")
    return ValueError(f"{where}ip {text!r} is not written as tcpserver writes it: {want!r}")


def _tcpserver_host(h: bytes) -> bytes:
    """host as tcpserver would have written it in TCPREMOTEHOST: ASCII letters in lower case,
    no trailing dot (but the root's "."); ValueError for a name it never writes."""
    if host_is_tcpserver_text(h):
        return h
    low = fold_host(h)
    if host_is_tcpserver_text(low):
        return low
    raise ValueError(f"host {h.decode('utf-8', 'surrogateescape')!r} is not a name tcpserver writes in "
                     "TCPREMOTEHOST (labels of letters, digits, - and _, other bytes as \\ooo, one dot between "
                     "labels)")


def data_entries(data: bytes) -> List[bytes]:
    """A record's data as tcpserver and tcprulescheck walk it: its NUL-terminated entries
    (``D``, ``+NAME=VALUE``, ...); bytes after the last NUL are not an entry."""
    entries = data.split(b"\0")
    del entries[-1]
    return entries


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class Decision:
    """What tcpserver does with a connection.

    * ``allowed``: False when the matched rule denies (any ``D`` entry in its data);
    * ``rule``: the matched key (``"1.2.3."``, ``"=.example.com"``, ``""`` for the default
      rule ``:allow``), or None when no key matched (tcpserver then allows);
    * ``env``: a read-only mapping of the variables the rule sets, in the order it sets
      them, the last setting of a name winning: ``+NAME=VALUE`` entries split at the
      first ``=``, entries without ``=`` ignored, as tcpserver applies them.  A denying
      rule keeps its variables here too (tcpserver sets them, then never runs the program);
    * ``key`` and ``data``: the raw bytes of the matched record (None and ``b""`` without one).

    Text is UTF-8 decoded with ``surrogateescape``, so ``os.fsencode`` gives the bytes back.
    Decisions are immutable and shared: the same rule gives the same object.
    """

    __slots__ = ("allowed", "rule", "env", "key", "data")

    allowed: bool
    rule: Optional[str]
    env: Mapping[str, str]
    key: Optional[bytes]
    data: bytes

    def __init__(self, allowed: bool, rule: Optional[str], env: Mapping[str, str],
                 key: Optional[bytes] = None, data: bytes = b"") -> None:
        for name, value in (("allowed", bool(allowed)), ("rule", rule),
                            ("env", MappingProxyType(dict(env))), ("key", key), ("data", bytes(data))):
            object.__setattr__(self, name, value)

    @classmethod
    def from_record(cls, key: Optional[bytes], data: bytes) -> "Decision":
        """The decision for a matched record (key None: nothing matched), as tcpserver reads it."""
        allowed, env = cls._parse(data)
        return cls._of(allowed, None if key is None else _decode(key), env, key, data)

    @staticmethod
    def _parse(data: bytes) -> "Tuple[bool, Mapping[str, str]]":
        """(allowed, env) for a record's data: the part of a decision that records with the
        same data share (every ``deny`` of a block list has ``D\\0``)."""
        allowed = True
        env: Dict[str, str] = {}
        for e in data_entries(data):
            first = e[:1]
            if first == b"D":
                allowed = False
            elif first == b"+":
                name, eq, value = e[1:].partition(b"=")
                if eq:
                    env[_decode(name)] = _decode(value)
        return allowed, MappingProxyType(env)

    @classmethod
    def _of(cls, allowed: bool, rule: Optional[str], env: Mapping[str, str], key: Optional[bytes],
            data: bytes) -> "Decision":
        """A decision from parts already checked (env read-only): no copies, for the lookup path."""
        d = _new_object(cls)
        _set_allowed(d, allowed)
        _set_rule(d, rule)
        _set_env(d, env)
        _set_key(d, key)
        _set_data(d, data)
        return d

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Decision is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a Decision is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.allowed == other.allowed and self.rule == other.rule and dict(self.env) == dict(other.env)
                and self.key == other.key and self.data == other.data)

    def __hash__(self) -> int:
        return hash((self.allowed, self.rule, self.data))

    def __reduce__(self) -> Tuple[Any, ...]:
        return (Decision, (self.allowed, self.rule, dict(self.env), self.key, self.data))

    def __repr__(self) -> str:
        return f"Decision(allowed={self.allowed!r}, rule={self.rule!r}, env={dict(self.env)!r})"


# The setters of Decision's slots, bound once: a decision is built on every lookup that
# finds a record not seen before, and a slot's own setter is the cheapest way past the
# __setattr__ that keeps decisions immutable (object.__setattr__ looks the name up first).
_set_allowed, _set_rule, _set_env, _set_key, _set_data = (
    Decision.__dict__[name].__set__ for name in ("allowed", "rule", "env", "key", "data"))
_NO_MATCH = Decision(True, None, {})


class _State:
    """One loaded rules file, never changed after it is made: its bytes, the struct cdb the C
    core reads and the decisions found so far.  A lookup holds its state for the whole call,
    so a reload in another thread cannot free what it reads; the bytes go with the last
    reference."""

    __slots__ = ("c", "mm", "buf", "cache", "envs", "keep", "by_ip", "sig", "path", "loaded", "settled")

    def __init__(self, c: Any, mm: Any, buf: Any, sig: Optional[Tuple[int, int, int, int]],
                 path: str, loaded: bool, settled: bool = True) -> None:
        self.c = c
        # False when the file had changed less than a second before it was read: a later
        # rewrite within the same tick of the file system's clock would keep sig, so the
        # file is read again once it has settled (see Rules._refresh)
        self.settled = settled
        self.mm = mm
        self.buf = buf
        self.sig = sig
        self.path = path
        self.loaded = loaded
        self.cache: Dict[int, Decision] = {0: _NO_MATCH}
        self.keep = max(_CACHE_MIN, len(mm) >> _CACHE_PER) if mm is not None else _CACHE_MIN
        self.envs: Dict[bytes, Tuple[bool, Mapping[str, str], bytes]] = {}  # data -> (allowed, env, data)
        self.by_ip: Dict[bytes, Decision] = {}  # check_ip's recent addresses -> their decisions

    @classmethod
    def load(cls, path: PathLike, verify: bool) -> "_State":
        """The file at path, read whole (see read_cdb); verify: refuse it unless it is a
        whole cdb as a writer leaves it (rules_verify), not one cut short, grown or half
        rewritten in place."""
        mm, c, buf, st, settled = read_cdb(path, keep=True)
        if not stat.S_ISREG(st.st_mode):
            raise CdbFormatError(path, "not a regular file")
        if verify and not rules_verify(c):
            raise CdbFormatError(path, "not a whole cdb file: cut short, grown, or a hash table or record "
                                       "points outside it")
        return cls(c, mm, buf, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), os.fsdecode(path), True,
                   settled)

    @classmethod
    def empty(cls, path: str) -> "_State":
        """No rules: every lookup finds nothing (tcpserver -X without the file)."""
        c, buf = open_cdb(_EMPTY_CDB)
        return cls(c, _EMPTY_CDB, buf, None, path, False)

    @classmethod
    def closed(cls, path: str) -> "_State":
        """After close(): a struct cdb without a map, which every lookup refuses (EBADF)."""
        return cls(closed_cdb(), None, None, None, path, False)

    def decide(self, r: int) -> Decision:
        """The decision for lookup result r (a record position; -1: the C error)."""
        if r < 0:
            raise self.error()
        span = _recspan(self.c, r)
        if span == _NO_SPAN:
            raise self.error()
        mm = self.mm
        kend = span >> 32
        key = mm[r + _HEAD:kend]
        data = mm[kend:span & 0xFFFFFFFF]
        parsed = self.envs.get(data)
        if parsed is None:
            allowed, env = Decision._parse(data)
            parsed = (allowed, env, data)
            if len(self.envs) < self.keep:
                self.envs[data] = parsed
        # (parsed[2]: one bytes object for every record with the same data)
        d = Decision._of(parsed[0], _decode(key), parsed[1], key, parsed[2])
        if len(self.cache) < self.keep:
            self.cache[r] = d
        return d

    def error(self, code: Optional[int] = None) -> Exception:
        """The exception for a failed C lookup, from the errno it left (or code)."""
        return exception(code, self.path, what="closed Rules", closed=self.mm is None)


# Every Rules object, so that a forked child gets fresh reload locks: a lock another thread
# held at fork() time would stay held in the child, which would then never reload.
_LIVE: "weakref.WeakSet[Rules]" = weakref.WeakSet()


def _after_fork() -> None:
    for r in list(_LIVE):
        r._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Rules:
    """A compiled rules file (``tcprules``/``cdbrules compile`` output), answering tcpserver's lookup.

    ``Rules(path)`` reads the file into memory; :meth:`check` and :meth:`check_many`
    return :class:`Decision` objects.  One object may serve many threads.

    What a lookup takes (wrong input is an error, never a silent default-rule answer):

    * ``ip``: the text tcpserver writes in TCPREMOTEIP: a dotted quad, or IPv6 as the IPv6
      patch writes it (:func:`cdbrules.tcpserver_ip`); or an :mod:`ipaddress` object or a
      socket address tuple (``accept()``'s peer), which are written that way first (so the
      peer ``::ffff:192.0.2.7`` of a dual-stack socket is ``192.0.2.7``).  Any other text
      (``"::ffff:192.0.2.7"``, ``"2001:DB8::1"``, ``"192.0.2.7\\n"``, ``""``) is a
      ValueError that says what tcpserver would have written.
    * ``host``: TCPREMOTEHOST as tcpserver writes it: lower case, no trailing dot, bytes
      other than letters, digits, ``-`` and ``_`` as ``\\ooo`` escapes.  Upper case and
      one trailing dot are written that way before the lookup (``MX.Example.COM.`` matches
      ``=.example.com``); a name tcpserver never writes is a ValueError.
    * ``info``: TCPREMOTEINFO, the ident reply: any text without NUL.
    * ``exact=True``: tcprulescheck's view instead: text used byte for byte, nothing
      checked or rewritten (``cdbrules check`` uses it to print what tcprulescheck prints).

    * ``forcev6=True`` looks clients up as ``tcpserver -6`` does: an IPv4 client as
      ``::ffff:a.b.c.d``, and a dotted quad is then refused.

    * ``missing_ok=True`` behaves like ``tcpserver -X``: while there is no file at ``path``
      there are no rules (every connection allowed, no environment).  Without it a missing
      file raises :class:`FileNotFoundError`.
    * ``reload_interval``: at most this often (seconds) a lookup first compares the file at
      ``path`` with the one loaded (device, inode, size, mtime) and loads a replacement;
      ``0`` checks before every lookup, ``None`` never (call :meth:`reload`).  The new file
      is swapped in whole: a lookup in another thread sees the old rules or the new ones.
    * A file that vanishes keeps the last rules loaded.  A replacement that cannot be read
      or fails the structural check keeps them too: :attr:`reload_error` then holds the
      reason (None while the file at ``path`` is the one in force) and a warning goes to
      the ``cdbrules`` logger, once per bad file.

    The file first opened is accepted the way tcpserver accepts it: damage surfaces only if
    a lookup reaches it, as :class:`CdbFormatError`.  Rules text that was never compiled is
    refused at once (:class:`cdbrules.RulesTextError`).  A replacement must first pass a
    check of the whole file (every hash table in place, up to the end of the file), after
    which no lookup can fail; a file cut short, grown or half rewritten in place fails it.
    """

    __slots__ = ("path", "_path", "_state", "_deadline", "_interval", "_lock",
                 "_bad", "reload_error", "_v6", "__weakref__")

    reload_error: Optional[BaseException]

    def __init__(self, path: PathLike, *, missing_ok: bool = False,
                 reload_interval: Optional[float] = 1.0, forcev6: bool = False) -> None:
        if reload_interval is not None and (not isinstance(reload_interval, (int, float))
                                            or math.isnan(reload_interval) or reload_interval < 0):
            raise ValueError(f"reload_interval must be a number of seconds >= 0 or None, not {reload_interval!r}")
        self._path = path
        self.path = os.fsdecode(path)
        self._interval = math.inf if reload_interval is None else float(reload_interval)
        self._v6 = 1 if forcev6 else 0
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._bad: object = None  # the signature of the file last found unusable
        self.reload_error = None
        try:
            self._state = _State.load(path, verify=False)
        except FileNotFoundError:
            if not missing_ok:
                raise
            self._state = _State.empty(self.path)
        self._deadline = _monotonic() + self._interval

    # -- lookups ------------------------------------------------------------------
    # exact is an ordinary parameter, not keyword-only: CPython 3.11 does not specialise
    # calls of a function with keyword-only parameters, which costs each check tens of ns
    def check(self, ip: Address, host: Optional[Text] = None, info: Optional[Text] = None,
              exact: bool = False) -> Decision:
        """The decision for a connection from ``ip`` with TCPREMOTEHOST ``host`` and
        TCPREMOTEINFO ``info`` (None: absent; ``""`` is present and empty).  What each may
        be, and ``exact`` (pass it by name): see the class."""
        if _monotonic() >= self._deadline:
            self._poll()
        st = self._state
        if type(ip) is bytes and 0 not in ip:  # as it comes off the wire (policyd): no copy
            b = ip
        else:
            try:
                if "\0" in ip:  # type: ignore[operator]
                    raise ValueError
                b = ip.encode()  # type: ignore[union-attr]
            except (TypeError, ValueError, AttributeError):
                b = self._ip(ip)
        if host is None and info is None:
            # (module globals, not a function kept on self: a call through an instance slot
            # costs tens of ns more in CPython 3.11, which cannot specialise it)
            if exact:
                r = _check_ip(st.c, b)
            elif self._v6:
                r = _check_tcpip6(st.c, b)
            else:
                r = _check_tcpip(st.c, b)
        else:
            return self._lookup(st, b, host, info, exact)
        try:
            return st.cache[r]
        except KeyError:
            pass
        return self._first(st, r, b)

    def _first(self, st: _State, r: int, b: bytes) -> Decision:
        """The decision for IP lookup result r of ip text b that none kept yet: a record
        not seen before, an ip refused, or the C error."""
        if r == _BAD_IP:
            raise _bad_ip(b, self._v6)
        return st.decide(r)

    def check_ip(self, ip: Address) -> Decision:
        """``check(ip)``: the decision for a client known by its address alone (no host
        name, no ident reply), in the fewest steps when ip is bytes, as a server reads it
        off the wire (``cdbrules policyd`` asks this for most requests).  The last few
        thousand such addresses are remembered with their decisions, until the file is
        replaced: a client asked about again is answered without a lookup.  Its answers and
        errors are :meth:`check`'s, which takes whatever is not bytes without a NUL."""
        if type(ip) is bytes:
            if _monotonic() >= self._deadline:
                self._poll()
            st = self._state
            by_ip = st.by_ip
            d = by_ip.get(ip)
            if d is not None:
                return d
            if 0 not in ip:
                r = _check_tcpip6(st.c, ip) if self._v6 else _check_tcpip(st.c, ip)
                d = st.cache.get(r)
                if d is None:  # (one lookup: a record not seen yet is decided from it)
                    d = self._first(st, r, ip)
                if len(by_ip) >= _BY_IP_MAX:
                    by_ip.clear()
                by_ip[ip] = d
                return d
        return self.check(ip)

    def _ip(self, ip: object) -> bytes:
        """ip as the text to look up: objects and socket addresses written as tcpserver does."""
        if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address, tuple)):
            return tcpserver_ip(ip, forcev6=bool(self._v6)).encode()
        if isinstance(ip, _TEXT_TYPES):
            return _text(ip, "ip")
        raise TypeError(f"ip must be str, bytes, an ipaddress address or a socket address tuple, "
                        f"not {type(ip).__name__}")

    def _lookup(self, st: _State, b: bytes, host: Optional[Text], info: Optional[Text], exact: bool) -> Decision:
        """A lookup with a host or an info (b: the ip text, not checked yet)."""
        hb, ib = _opt(host, "host"), _opt(info, "info")
        if exact:
            r = _check(st.c, b, hb, ib)
        else:
            r = _check_tcp(st.c, b, hb, ib, self._v6)
            if r == _BAD_HOST:  # write it as tcpserver would have, or refuse it
                r = _check_tcp(st.c, b, _tcpserver_host(hb), ib, self._v6)
            if r == _BAD_IP:
                raise _bad_ip(b, self._v6)
        d = st.cache.get(r)
        return d if d is not None else st.decide(r)

    def check_many(self, ips: Iterable[Address], hosts: Optional[Iterable[Optional[Text]]] = None,
                   infos: Optional[Iterable[Optional[Text]]] = None, *, exact: bool = False) -> List[Decision]:
        """:meth:`check` for many connections, all against the same loaded file.

        ``ips`` is a sequence (or iterable) of addresses; a single str or bytes is a
        TypeError.  ``hosts`` and ``infos``, when given, pair up with ``ips`` (same length;
        None items are absent).  With neither, the whole list is answered in one C call."""
        for name, seq in (("ips", ips), ("hosts", hosts), ("infos", infos)):
            if isinstance(seq, _TEXT_TYPES):
                raise TypeError(f"check_many: {name} must be a sequence with one item per connection, "
                                f"not one {type(seq).__name__} (for one connection: check_many([ip]))")
        if _monotonic() >= self._deadline:
            self._poll()
        st = self._state
        if not isinstance(ips, (list, tuple)):
            ips = list(ips)
        n = len(ips)
        if hosts is None and infos is None:
            if n == 0:
                if st.mm is None:
                    raise ValueError("I/O operation on closed Rules")
                return []
            try:
                joined = "\0".join(ips)  # type: ignore[arg-type]
                if joined.count("\0") != n - 1:
                    raise ValueError
                b = joined.encode()
            except (TypeError, ValueError):
                b = b"\0".join([self._ip(ip) for ip in ips])
            out = _ZEROS * n
            if exact:
                rc = _check_many(st.c, b, len(b), _int64s(out), n)
            else:
                rc = _check_many_tcp(st.c, b, len(b), _int64s(out), n, self._v6)
            if rc < 0:
                raise st.error()
            try:
                return list(map(st.cache.__getitem__, out))
            except KeyError:  # a rule not decoded yet, or an address refused
                if _BAD_IP in out:
                    i = out.index(_BAD_IP)
                    raise _bad_ip(self._ip(ips[i]), self._v6, f"check_many: item {i}: ") from None
                get = st.cache.get
                decide = st.decide
                return [get(r) or decide(r) for r in out]
        hs: Sequence[Optional[Text]] = [None] * n if hosts is None else list(hosts)
        fs: Sequence[Optional[Text]] = [None] * n if infos is None else list(infos)
        if len(hs) != n or len(fs) != n:
            raise ValueError(f"check_many: {n} ips but {len(hs)} hosts and {len(fs)} infos")
        return [self._lookup(st, self._ip(ip), host, info, exact) for ip, host, info in zip(ips, hs, fs)]

    def explain(self, ip: Address, host: Optional[Text] = None, info: Optional[Text] = None, *,
                exact: bool = False) -> List[Tuple[bytes, bool]]:
        """Every key :meth:`check` tries for this connection, in order, up to the one that
        matched: ``(key, matched)`` pairs, the last one matched unless nothing did."""
        if _monotonic() >= self._deadline:
            self._poll()
        st = self._state
        b = self._ip(ip)
        hb = None if host is None else _text(host, "host")
        ib = None if info is None else _text(info, "info")
        if not exact:
            if not ip_is_tcpserver_text(b, bool(self._v6)):
                raise _bad_ip(b, self._v6)
            if hb is not None:
                hb = _tcpserver_host(hb)
        out: List[Tuple[bytes, bool]] = []
        try:
            for k, r in rules_probes(st.c, b, hb, ib):
                out.append((k, r > 0))
                if r:
                    break
        except Failed as f:
            raise st.error(f.code) from None
        return out

    # -- reloading ----------------------------------------------------------------
    def reload(self) -> bool:
        """Check the file now (whatever the interval) and load it if it was replaced.

        Return True when new rules were loaded.  A missing or unusable replacement keeps
        the rules in force and sets :attr:`reload_error`; nothing is raised."""
        with self._lock:
            if self.closed:
                raise ValueError("I/O operation on closed Rules")
            self._deadline = _monotonic() + self._interval
            return self._refresh(force=True)

    def _poll(self) -> None:
        """The interval is over: check the file unless another thread is doing it."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if _monotonic() < self._deadline:  # another thread just checked
                return
            self._deadline = _monotonic() + self._interval
            self._refresh(force=False)
        finally:
            self._lock.release()

    def _refresh(self, force: bool) -> bool:
        cur = self._state
        try:
            st = os.stat(self._path)
        except FileNotFoundError as e:
            if cur.loaded:
                self._unusable("missing", e, force, "vanished")
            else:
                self.reload_error = None  # missing_ok and still no file: no rules, as before
            return False
        except OSError as e:
            self._unusable(("stat", e.errno), e, force, "cannot be checked")
            return False
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == cur.sig:
            if cur.settled or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLE_NS:
                self.reload_error = None
                self._bad = None
                return False
            # read too soon after a change: read it again now that it has settled, in case it
            # changed again within the same tick of the file system's clock (the same sig)
        if sig == self._bad and not force:
            return False
        try:
            new = _State.load(self._path, verify=True)
        except FileNotFoundError as e:
            if cur.loaded:
                self._unusable("missing", e, force, "vanished")
            return False
        except (OSError, CdbFormatError) as e:
            self._unusable(sig, e, force, "was replaced by a file that cannot be used")
            return False
        if sig == cur.sig and cur.mm is not None and new.mm is not None and same_bytes(new.mm, cur.mm):
            cur.settled = True  # the same bytes: keep the decisions already made
            return False
        self._state = new
        self.reload_error = None
        self._bad = None
        log.info("cdbrules: loaded new rules from %s", self.path)
        return True

    def _unusable(self, sig: object, e: BaseException, force: bool, what: str) -> None:
        self.reload_error = e
        if sig != self._bad or force:
            self._bad = sig
            log.warning("cdbrules: %s %s (%s); keeping the rules loaded before", self.path, what, e)

    # -- life cycle ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._state.mm is None

    def close(self) -> None:
        """Release the file.  A lookup still running in another thread finishes first."""
        self._deadline = math.inf
        self._state = _State.closed(self.path)

    def __enter__(self) -> "Rules":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        st = self._state
        what = "closed" if st.mm is None else ("loaded" if st.loaded else "no file")
        return f"<cdbrules.Rules {self.path!r} {what}>"
