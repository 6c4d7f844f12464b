"""The one door to the C core: every call into ``cdbrules._native`` is made here.

The public modules speak Python only.  They call the small wrappers below, which take and
return Python objects, or (on the lookup hot paths) bind the raw C functions this module
exports once, by name.  A failed C call leaves errno; :func:`exception` is the one place
that turns it into a Python exception.

The wrappers keep every buffer the C code points into alive for as long as the C code may
read it: a struct that holds pointers (a find, a probe, a parser) is returned inside an
object that holds those buffers too.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Iterator, List, NamedTuple, NoReturn, Optional, Tuple

from ._native import ffi, lib
from .errors import CdbFormatError, PathLike, SizeLimitError

# -- constants -------------------------------------------------------------------------

CDB_HEADER_SIZE: int = lib.CDB_HEADER_SIZE
CDB_MAX_SIZE: int = lib.CDB_MAX_SIZE
CDB_RECORD_HEAD: int = lib.CDB_RECORD_HEAD
RULES_MAX_LINE: int = lib.RULES_MAX_LINE

RULES_E_NOKEYWORD: int = lib.RULES_E_NOKEYWORD
RULES_E_AFTERKEYWORD: int = lib.RULES_E_AFTERKEYWORD
RULES_E_NOEQUALS: int = lib.RULES_E_NOEQUALS
RULES_E_TRAILINGCOMMA: int = lib.RULES_E_TRAILINGCOMMA
RULES_E_NOVALUE: int = lib.RULES_E_NOVALUE
RULES_E_UNTERMINATED: int = lib.RULES_E_UNTERMINATED
RULES_E_AFTERVALUE: int = lib.RULES_E_AFTERVALUE
RULES_E_RANGE: int = lib.RULES_E_RANGE
RULES_E_LONGLINE: int = lib.RULES_E_LONGLINE
RULES_E_NETWORK: int = lib.RULES_E_NETWORK

RULES_NET_OK: int = lib.RULES_NET_OK
RULES_NET_NOTNET: int = lib.RULES_NET_NOTNET
RULES_NET_E_SYNTAX: int = lib.RULES_NET_E_SYNTAX
RULES_NET_E_LENGTH: int = lib.RULES_NET_E_LENGTH
RULES_NET_E_ZERO: int = lib.RULES_NET_E_ZERO
RULES_NET_E_HOSTBITS: int = lib.RULES_NET_E_HOSTBITS
RULES_NET_E_INEXACT: int = lib.RULES_NET_E_INEXACT
RULES_NET_E_INEXACT_END: int = lib.RULES_NET_E_INEXACT_END
RULES_NOTE_NETKEY: int = lib.RULES_NOTE_NETKEY
RULES_NOTE_COSTLY: int = lib.RULES_NOTE_COSTLY
RULES_NOTES: int = lib.RULES_NOTES

CDBMAKE_OK: int = lib.CDBMAKE_OK
CDBMAKE_E_END: int = lib.CDBMAKE_E_END
CDBMAKE_E_PLUS: int = lib.CDBMAKE_E_PLUS
CDBMAKE_E_KLEN: int = lib.CDBMAKE_E_KLEN
CDBMAKE_E_DLEN: int = lib.CDBMAKE_E_DLEN
CDBMAKE_E_ARROW: int = lib.CDBMAKE_E_ARROW
CDBMAKE_E_NEWLINE: int = lib.CDBMAKE_E_NEWLINE
CDBMAKE_E_KHUGE: int = lib.CDBMAKE_E_KHUGE

#: cdb_recspan's answer for a record that does not fit in the file.
NO_SPAN = (1 << 64) - 1
NULL: Any = ffi.NULL

# -- the hot paths' raw functions, bound once ------------------------------------------
# Each takes a struct cdb (from open_cdb) first; strings are bytes, NUL-terminated by cffi.

#: cdb_get(c, key, klen) -> (dpos << 32 | dend), 0 absent, 1 error (errno set).
cdb_get: Any = lib.cdb_get
#: rules_check_ip(c, ip) -> record position, 0 no match, -1 error.
rules_check_ip: Any = lib.rules_check_ip
#: rules_check(c, ip, host or NULL, info or NULL) -> as rules_check_ip.
rules_check: Any = lib.rules_check
#: rules_check_many(c, ips, len, out int64_t[], max) -> n, or -1.
rules_check_many: Any = lib.rules_check_many
#: rules_check_tcp(c, ip, host or NULL, info or NULL, forcev6): rules_check for text as
#: tcpserver writes it; RULES_BAD_IP or RULES_BAD_HOST (nothing looked up) for other text.
rules_check_tcp: Any = lib.rules_check_tcp
#: rules_check_tcpip(c, ip) and rules_check_tcpip6(c, ip): rules_check_tcp(c, ip, NULL, NULL, 0 or 1).
rules_check_tcpip: Any = lib.rules_check_tcpip
rules_check_tcpip6: Any = lib.rules_check_tcpip6
#: rules_check_many_tcp(c, ips, len, out, max, forcev6): out[i] is RULES_BAD_IP for a refused address.
rules_check_many_tcp: Any = lib.rules_check_many_tcp
RULES_BAD_IP: int = lib.RULES_BAD_IP
RULES_BAD_HOST: int = lib.RULES_BAD_HOST
#: cdb_recspan(c, rpos) -> (key end << 32 | data end), NO_SPAN when the record does not fit.
cdb_recspan: Any = lib.cdb_recspan
from_buffer: Any = ffi.from_buffer


def errno() -> int:
    """The errno the last C call of this thread left."""
    return int(ffi.errno)


# -- errno to exceptions: the one translation ------------------------------------------


def exception(code: Optional[int] = None, path: Optional[PathLike] = None, *, what: str = "a closed cdb Reader",
              closed: bool = False, corrupt: str = "corrupt cdb file: an offset or length points outside it",
              writing: bool = False, overlimit: bool = False) -> Exception:
    """The exception for a failed C call that left errno ``code`` (this thread's errno
    when None) while working on the file at ``path``.

    * EBADF, or ``closed``: the object was closed: ValueError("I/O operation on " + what);
    * EPROTO (a file that is not a valid cdb): :class:`CdbFormatError` with ``corrupt``;
    * ENOMEM: MemoryError, naming the file written when ``writing``;
    * EFBIG when the writer passed the format's 4 GiB (``overlimit``): :class:`SizeLimitError`;
    * anything else: the OSError subclass for the code, naming the file.
    """
    if code is None:
        code = errno()
    if closed or code == _errno.EBADF:
        return ValueError(f"I/O operation on {what}")
    name = None if path is None else os.fsdecode(path)
    if code == _errno.ENOMEM:
        return MemoryError(f"out of memory while writing {name}" if writing and name else "out of memory")
    if code == _errno.EPROTO and not writing:
        return CdbFormatError(path, corrupt)
    if code == _errno.EFBIG and overlimit:
        return SizeLimitError(code, "the cdb file would pass the format's 4 GiB limit", name)
    return OSError(code, os.strerror(code), name)


# -- reading ---------------------------------------------------------------------------


def open_cdb(data: Any) -> Tuple[Any, Any]:
    """(struct cdb, what it reads) for the bytes of a cdb file in ``data`` (bytes, an mmap,
    any buffer); keep both alive while the struct is used.  What it reads is the buffer,
    and for a file past the CPU caches also the bitmap of its hashes (csrc/cdb_seen.c).  Raises
    :class:`CdbFormatError` (without a path) when data cannot be a cdb file."""
    buf = ffi.from_buffer(data)
    c = ffi.new("struct cdb *")
    if lib.cdb_init(c, buf, len(buf)) < 0:
        raise CdbFormatError(None)
    n = lib.cdb_seen_size(c)
    if n:  # a big file: the bitmap of its hashes, which spares most searches for absent keys
        seen = ffi.new("unsigned char[]", n)
        if lib.cdb_seen_build(c, seen, n) == 0:  # (it is n bytes: it cannot fail)
            return c, (buf, seen)
    return c, buf


def release_cdb(held: Any) -> None:
    """Free at once what :func:`open_cdb` returned beside the struct (the buffer, and a
    big file's bitmap); the struct must not be used after."""
    for b in held if isinstance(held, tuple) else (held,):
        ffi.release(b)


def closed_cdb() -> Any:
    """A struct cdb without a map: every lookup on it fails with EBADF."""
    return ffi.new("struct cdb *")


def cdb_find_all(c: Any, key: bytes) -> Iterator[Tuple[int, int]]:
    """(data position, data length) of every record with ``key``, in file order.

    The caller holds the map behind ``c`` for the whole walk; the key buffer and the find
    state live in this generator.  Raises via :func:`exception` (the caller's errno)."""
    kbuf = ffi.from_buffer(key)
    f = ffi.new("struct cdb_find *")
    if lib.cdb_findstart(f, c, kbuf, len(key)) < 0:
        raise Failed(errno())
    while True:
        r = lib.cdb_findnext(f)
        if r == 0:
            return
        if r < 0:
            raise Failed(errno())
        yield int(f.dpos), int(f.dlen)


class Failed(Exception):
    """A C call failed with errno ``code``; the caller turns it into its exception (with
    :func:`exception`).  The cdbmake parser also says in which ``entry`` it happened, and
    at which offset of the input that entry starts (``start``)."""

    def __init__(self, code: int, entry: int = 0, start: int = 0) -> None:
        super().__init__(code)
        self.code = code
        self.entry = entry
        self.start = start



_BATCH = 4096


def cdb_records(c: Any) -> Iterator[Tuple[int, int, int]]:
    """(key position, key length, data length) of every record in file order (the data
    follows the key).  Raises :class:`Failed` with the errno on a damaged file."""
    pos = ffi.new("uint32_t *", CDB_HEADER_SIZE)
    out = ffi.new("uint32_t[]", 3 * _BATCH)
    while True:
        n = lib.cdb_seqbatch(c, pos, out, _BATCH)
        if n < 0:
            raise Failed(errno())
        if n == 0:
            return
        vals = ffi.unpack(out, 3 * n)
        for i in range(0, 3 * n, 3):
            yield vals[i], vals[i + 1], vals[i + 2]


def cdb_count(c: Any) -> int:
    """The number of records; raises :class:`Failed` on a damaged file."""
    n = lib.cdb_count(c)
    if n < 0:
        raise Failed(errno())
    return int(n)


def cdb_hash(key: bytes) -> int:
    """djb's cdb hash of key."""
    return int(lib.cdb_hash(key, len(key)))


class DumpError(Exception):
    """cdb_dump stopped at a record that runs past the end of the file."""

    def __init__(self, records: int, pos: int) -> None:
        super().__init__(records, pos)
        self.records = records
        self.pos = pos


def cdb_dump(c: Any, size: int = 1 << 20) -> Iterator[memoryview]:
    """cdbdump's output for the file behind ``c``, in pieces of up to ``size`` bytes (each
    valid until the next is asked for).  Raises :class:`DumpError` on a damaged record."""
    d = ffi.new("struct cdb_dump *")
    lib.cdb_dump_start(d, c)
    out = bytearray(size)
    cout = ffi.from_buffer(out)
    view = memoryview(out)
    while True:
        n = lib.cdb_dump_next(d, cout, size)
        if n < 0:
            raise DumpError(int(d.records) + 1, int(d.pos))
        if n == 0:
            return
        yield view[:n]


class StatsError(Exception):
    """cdb_stats found a record that does not fit (``truncated``) or a bad table."""

    def __init__(self, truncated: bool, pos: int) -> None:
        super().__init__(truncated, pos)
        self.truncated = truncated
        self.pos = pos


def cdb_stats(c: Any) -> Tuple[int, List[int]]:
    """(records, distances d0..d9 and >9) as cdbstats counts them; raises :class:`StatsError`."""
    st = ffi.new("struct cdb_stats *")
    if lib.cdb_stats(c, st) < 0:
        raise StatsError(bool(st.truncated), int(st.pos))
    return int(st.records), [int(x) for x in st.dist]


def rules_verify(c: Any) -> bool:
    """True when every hash table and slot of the file is sound (no lookup can fail)."""
    return bool(lib.rules_verify(c) == 0)


def rules_probes(c: Any, ip: bytes, host: Optional[bytes], info: Optional[bytes]) -> Iterator[Tuple[bytes, int]]:
    """Every key tcpserver tries for a connection, in order, with the lookup result of each
    (a record position, 0 when absent); the caller stops when it has what it wants.
    Raises :class:`Failed` on a damaged file."""
    args = [ffi.from_buffer(x) if x is not None else ffi.NULL for x in (ip, host, info)]
    lens = [len(x or b"") for x in (ip, host, info)]
    buf = ffi.new("unsigned char[]", lib.rules_probe_bufsize(*lens))
    pr = ffi.new("struct rules_probe *")
    lib.rules_probe_start(pr, args[0], lens[0], args[1], lens[1], args[2], lens[2], buf)
    key = ffi.new("const unsigned char **")
    klen = ffi.new("size_t *")
    rpos = ffi.new("uint32_t *")
    while lib.rules_probe_next(pr, key, klen):
        k = ffi.buffer(key[0], klen[0])[:]
        r = lib.cdb_find(c, key[0], klen[0], rpos)
        if r < 0:
            raise Failed(errno())
        yield k, int(rpos[0]) if r else 0


def int64_array(values: Any) -> Any:
    """A C int64_t[] view of an array('q') (for rules_check_many)."""
    return ffi.from_buffer("int64_t[]", values)


# -- IP text ---------------------------------------------------------------------------


def ip_is_tcpserver_text(text: bytes, forcev6: bool) -> bool:
    """Whether text is an address as tcpserver writes it in TCPREMOTEIP (csrc/iptext.h)."""
    return bool(lib.ip_is_tcpserver_text(text, len(text), 1 if forcev6 else 0))


def host_is_tcpserver_text(text: bytes) -> bool:
    """Whether text is a name as tcpserver writes it in TCPREMOTEHOST (csrc/iptext.h)."""
    return bool(lib.host_is_tcpserver_text(text, len(text)))


def tcpserver_fmt(packed16: bytes, forcev6: bool) -> str:
    """tcpserver's text for the 16-byte (IPv4 v4-mapped) address."""
    out = ffi.new("char[]", lib.IP6_FMT)
    n = lib.ip_tcpserver_fmt(out, packed16, 1 if forcev6 else 0)
    return ffi.string(out, n).decode("ascii")  # type: ignore[no-any-return]


class Net(NamedTuple):
    """What rules_net_parse made of a network (struct rules_net): ``family`` 4 or 6 (0:
    unparsed), ``length``, ``address`` as text (host bits cleared for a hostbits error),
    ``keys`` it makes, ``zerogroup`` (the inexact case: the first zero group, from 0)."""

    family: int
    length: int
    address: str
    keys: int
    zerogroup: int


def _net(n: Any) -> Net:
    family = int(n.family)
    address = ""
    if family:
        out = ffi.new("char[]", lib.IP6_FMT)
        k = lib.ip4_fmt(out, n.addr) if family == 4 else lib.ip6_fmt(out, n.addr)
        address = ffi.string(out, k).decode("ascii")
    return Net(family, int(n.len), address, int(n.keys), int(n.zerogroup))


def net_parse(text: bytes, plain: bool = False) -> Tuple[int, Net]:
    """(enum rules_netcode, Net) for NET/LEN (with ``plain`` a bare address too)."""
    n = ffi.new("struct rules_net *")
    code = lib.rules_net_parse(text, len(text), lib.RULES_NET_PLAIN if plain else 0, n)
    return int(code), _net(n)


def net_looks(key: bytes) -> bool:
    """Does the key look like a network someone meant (an address, '/', digits)?"""
    return bool(lib.rules_net_looks(key, len(key)))


# -- writing ---------------------------------------------------------------------------


class Maker:
    """djb's cdb_make writing to the descriptor fd (records are written as they come; the
    tables at :meth:`finish`).  Failures raise :class:`Failed` with the errno."""

    __slots__ = ("m",)

    def __init__(self, fd: int, limit: Optional[int] = None) -> None:
        self.m = ffi.new("struct cdb_make *")
        if lib.cdb_make_start(self.m, fd) < 0:
            raise Failed(errno())
        if limit is not None:  # tests lower the 4 GiB limit to reach it quickly
            self.m.limit = limit

    @property
    def overlimit(self) -> bool:
        return bool(self.m.overlimit)

    @property
    def records(self) -> int:
        return int(self.m.records)

    def add(self, key: bytes, value: bytes) -> None:
        if lib.cdb_make_add(self.m, key, len(key), value, len(value)) < 0:
            raise Failed(errno())

    def finish(self) -> None:
        """Write the tables and the header (the memory is freed either way)."""
        try:
            if lib.cdb_make_finish(self.m) < 0:
                raise Failed(errno())
        finally:
            lib.cdb_make_free(self.m)

    def free(self) -> None:
        lib.cdb_make_free(self.m)


class ChunkBuffer:
    """A reusable 1 MiB read buffer the C parsers read from."""

    __slots__ = ("buf", "c")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.c = ffi.from_buffer(self.buf)


def buffer_of(data: Any) -> Any:
    """A C view of bytes-like data (keep data alive while it is used)."""
    return ffi.from_buffer(data)


class RulesError(Exception):
    """The rules parser stopped at a bad line: the fields of struct rules_error (``src``:
    the source it was reading; for RULES_E_NETWORK ``netcode`` and ``net``)."""

    def __init__(self, code: int, lineno: int, column: int, line: bytes, name: int, namelen: int,
                 src: int = 0, netcode: int = 0, net: Optional[Net] = None) -> None:
        super().__init__(code, lineno)
        self.code = code
        self.lineno = lineno
        self.column = column
        self.line = line
        self.name = name
        self.namelen = namelen
        self.src = src
        self.netcode = netcode
        self.net = net


class Note(NamedTuple):
    """Something worth a word that is no error (struct rules_note)."""

    kind: int  # RULES_NOTE_NETKEY or RULES_NOTE_COSTLY
    src: int
    line: int
    text: bytes  # the key (its first 64 bytes)
    keys: int


class RulesParser:
    """tcprules text streamed into a :class:`Maker`.  :meth:`feed` and :meth:`finish`
    raise :class:`RulesError` for a bad line and :class:`Failed` for the writer's error."""

    __slots__ = ("p", "_maker")

    def __init__(self, maker: Optional[Maker]) -> None:
        """maker None: no cdb (``expand``, which writes text)."""
        self._maker = maker  # the parser writes into maker.m: keep it
        self.p = ffi.new("struct rules_parser *")
        lib.rules_parser_init(self.p, maker.m if maker is not None else ffi.NULL)

    def cidr(self, expand: bool = False, origins: bool = False) -> None:
        """--cidr (networks; records written by :meth:`write`); ``expand``: as text;
        ``origins``: keep each record's (source, line)."""
        self.p.want_origin = 1 if origins else 0
        if lib.rules_parser_cidr(self.p, 1 if expand else 0) < 0:
            raise Failed(errno())

    def want_origins(self) -> None:
        self.p.want_origin = 1

    def source(self, index: int) -> None:
        """The next source (from 0) begins: its lines count from 1."""
        lib.rules_parser_source(self.p, index)

    def list_start(self, index: int, instruction: bytes) -> None:
        """The next source (from 0) is a list of networks getting instruction."""
        if lib.rules_list_start(self.p, index, instruction, len(instruction)) < 0:
            self._failed()

    def write(self, text_fd: int = -1) -> None:
        """With --cidr, write the records (into the cdb, or as text to text_fd)."""
        if lib.rules_write(self.p, text_fd) < 0:
            raise Failed(errno())

    @property
    def networks(self) -> int:
        return int(self.p.networks)

    def notes(self) -> Tuple[List[Note], List[int]]:
        """(the notes kept, how many of each kind there were)."""
        kept = [Note(int(n.kind), int(n.src), int(n.line), bytes(ffi.buffer(n.text, n.textlen)), int(n.keys))
                for n in self.p.notes[0:self.p.nkept]]
        return kept, [int(self.p.nnotes[RULES_NOTE_NETKEY]), int(self.p.nnotes[RULES_NOTE_COSTLY])]

    def origins(self) -> List[Tuple[int, int]]:
        """(source, line) of each record written, in file order."""
        n = int(self.p.norigin)
        if not n:
            return []
        size = ffi.sizeof("struct rules_origin")
        words = memoryview(ffi.buffer(self.p.origin, n * size)).cast("Q")
        step = size // 8  # {uint64 line; uint32 src; padding}: src is the low half of word 1
        return [(src & 0xFFFFFFFF, line) for line, src in zip(words[0::step], words[1::step])]

    @property
    def maxline(self) -> int:
        return int(self.p.maxline)

    @maxline.setter
    def maxline(self, n: int) -> None:
        self.p.maxline = n

    def counts(self) -> Tuple[int, int, int]:
        """(lines read, rules, keys written)."""
        return int(self.p.lineno), int(self.p.rules), int(self.p.keys)

    def _failed(self) -> NoReturn:
        e = self.p.err
        if e.code:
            raise RulesError(int(e.code), int(e.lineno), int(e.column), bytes(ffi.buffer(e.line, e.linelen)),
                             int(e.name), int(e.namelen), int(e.src), int(e.netcode),
                             _net(e.net) if e.code == RULES_E_NETWORK else None)
        raise Failed(errno())

    def feed(self, chunk: Any, n: int) -> None:
        if lib.rules_feed(self.p, chunk, n) < 0:
            self._failed()

    def finish(self) -> None:
        if lib.rules_finish(self.p) < 0:
            self._failed()

    def free(self) -> None:
        lib.rules_parser_free(self.p)


class MakeError(Exception):
    """The cdbmake input parser stopped at bad input: the fields of struct cdbmake_error."""

    def __init__(self, code: int, entry: int, start: int, offset: int, byte: int) -> None:
        super().__init__(code, entry)
        self.code = code
        self.entry = entry
        self.start = start
        self.offset = offset
        self.byte = byte


class MakeParser:
    """cdbmake's input format streamed into a :class:`Maker`.  :meth:`feed` returns True at
    the closing empty line; both methods raise :class:`MakeError` for bad input and
    :class:`Failed` (with ``entry`` and ``start`` set) for the writer's error."""

    __slots__ = ("p", "_maker", "_used")

    def __init__(self, maker: Maker) -> None:
        self._maker = maker
        self.p = ffi.new("struct cdbmake_parser *")
        self._used = ffi.new("size_t *")
        lib.cdbmake_parser_init(self.p, maker.m)

    @property
    def records(self) -> int:
        return int(self.p.records)

    def _failed(self) -> NoReturn:
        e = self.p.err
        if e.code == CDBMAKE_OK:  # the writer's error, not the input's
            raise Failed(errno(), int(e.entry), int(e.start))
        raise MakeError(int(e.code), int(e.entry), int(e.start), int(e.offset), int(e.byte))

    def feed(self, chunk: Any, n: int) -> bool:
        r = lib.cdbmake_feed(self.p, chunk, n, self._used)
        if r < 0:
            self._failed()
        return bool(r > 0)

    def finish(self) -> None:
        if lib.cdbmake_finish(self.p) < 0:
            self._failed()


# -- one rules line (the compiler's own line parser, for lint, explain and decompile) ------


class RulesLine(NamedTuple):
    """What ``rules_line_parse`` and its helpers say about one line (csrc/rules_parse.h)."""

    kind: int  # enum rules_kind, from 0: blank, comment, skipped, rule, error
    length: int
    sep: int
    deny: bool
    items: Tuple[Tuple[int, int, int, int, int, int], ...]  # comma, name, namelen, delim, value, valuelen
    keys: Tuple[bytes, ...]
    data: bytes
    range: Optional[Tuple[int, int, int, int, int]]  # lo, dash, hi, bot, top
    network: bool  # compile --cidr reads the address as a network
    code: int
    column: int
    name: int
    namelen: int


RULES_LINE_RULE: int = lib.RULES_LINE_RULE


def rules_line(text: bytes) -> RulesLine:
    """Parse one line (without its newline) as the compiler does: rules_line_parse, then
    its items (rules_item_next), keys (rules_line_key) and value (rules_line_data)."""
    s = ffi.from_buffer(text)
    ln = ffi.new("struct rules_line *")
    kind = lib.rules_line_parse(s, len(text), ln)
    if kind != RULES_LINE_RULE:
        return RulesLine(kind, ln.len, 0, False, (), (), b"", None, False, ln.code, ln.column, ln.name, ln.namelen)
    items = []
    it = ffi.new("struct rules_item *")
    pos = ffi.new("size_t *", ln.items)
    code = ffi.new("int *")
    column = ffi.new("size_t *")
    while lib.rules_item_next(s, ln.len, pos, it, code, column) > 0:
        items.append((it.comma, it.name, it.namelen, it.delim, it.value, it.valuelen))
    data = ffi.new("unsigned char[]", ln.datalen + 1)
    dlen = lib.rules_line_data(s, ln, data)
    rng = None
    if ln.range:
        key = ffi.new("unsigned char[]", ln.sep + 3)
        rng = (ln.rlo, ln.rdash, ln.rhi, ln.bot, ln.top)
        keys = tuple(ffi.buffer(key, lib.rules_line_key(s, ln, v, key))[:] for v in range(ln.bot, ln.top + 1))
    else:
        keys = (text[:ln.sep],)
    return RulesLine(kind, ln.len, ln.sep, bool(ln.deny), tuple(items), keys, ffi.buffer(data, dlen)[:], rng,
                     bool(lib.rules_line_network(s, ln)), 0, 0, 0, 0)
