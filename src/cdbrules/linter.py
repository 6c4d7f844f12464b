"""``lint``: every problem of a rules file, each with a stable code (``docs/lint.md``).

tcprules accepts much that never does what its author meant: a line without ':' is
skipped without a word, ``allow, RELAYCLIENT=""`` names a variable with a space, a host
key in upper case or a ``10.0.0.0/8`` key never matches, a repeated key hides the later
line.  :func:`lint` reads the text line by line with the compiler's own parser
(:mod:`cdbrules.syntax`) and reports all of it, never stopping at the first problem.

A finding ``E...`` is an error (``compile`` fails, or the rule does the opposite of what
it says); ``W...`` a warning.  A comment line ``# cdbrules: ignore W405 W407`` silences
those codes on the next line that is not a comment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import IO, Dict, List, NamedTuple, Optional, Set, Tuple, Union

from . import _bindings as C
from ._bindings import RULES_MAX_LINE
from .compiler import _reason, _show
from .iptext import tcpserver_ip
from .networks import check_network
from .syntax import BLANK, COMMENT, ERROR, RULE, SKIPPED, Line, parse_line

__all__ = ["CODES", "Finding", "Linter", "lint"]


class Code(NamedTuple):
    code: str
    title: str  # a few words, for the table in docs/lint.md
    compile_warns: bool  # compile prints it as a warning (it silently changes what a rule means)


def _codes(*rows: Tuple[str, str, bool]) -> Dict[str, Code]:
    return {c: Code(c, t, w) for c, t, w in rows}


#: Every finding code, in the order of docs/lint.md.
CODES: Dict[str, Code] = _codes(
    ("E101", "a ':' but no ':allow' or ':deny'", False),
    ("E102", "something other than ',' after allow/deny", False),
    ("E103", "an item without '='", False),
    ("E104", "a ',' ends the line", False),
    ("E105", "'NAME=' ends the line", False),
    ("E106", "a value that is never closed", False),
    ("E107", "something other than ',' after a value", False),
    ("E108", "a '-' in an address that is no range", False),
    ("E109", "a line longer than compile accepts", False),
    ("E110", "--cidr: a network compile --cidr cannot write", False),
    ("W201", "a line without ':' (skipped by tcprules, the IPv6 build hangs)", True),
    ("W202", "the IPv4 tcprules rejects the line (its first ':' is not the rule's)", False),
    ("W301", "a variable name no program can read", True),
    ("W302", "the same variable set twice in one rule", False),
    ("W401", "a network written as a key (CIDR)", True),
    ("W402", "a host key in upper case", True),
    ("W403", "a host key ending in '.'", True),
    ("W404", "a host key with characters tcpserver escapes", True),
    ("W405", "an ::ffff: key (IPv4 clients are looked up by their dotted quad)", True),
    ("W406", "an IPv6 key the printed form of addresses defeats", True),
    ("W407", "an IPv6 key ending in '::' is also a prefix", False),
    ("W408", "an IPv4 key not as tcpserver writes addresses", True),
    ("W409", "a key that is no address, prefix, =host or info@ form", True),
    ("W410", "an info@ key with a prefix (info@ keys match whole addresses only)", True),
    ("W411", "a range that writes no key", True),
    ("W412", "a range past 255", False),
    ("W501", "a repeated key, same rule: the later line is never used (--strict)", False),
    ("W502", "a repeated key with other variables: the later line is never used", True),
    ("E503", "a repeated key with the opposite action: the later line is never used", True),
    ("E601", "RELAYCLIENT on the default rule: an open relay", False),
    ("W602", "RELAYCLIENT for any host name, or a whole top-level domain", False),
    ("W603", "RELAYCLIENT for a network of /8 or wider", False),
    ("E701", "a line ending in CR (Windows line ends)", False),
    ("W702", "a byte-order mark at the start of the file", False),
    ("W703", "bytes that are not UTF-8", False),
    ("W704", "no newline at the end of the file", False),
)

_ERROR_CODES = {
    C.RULES_E_NOKEYWORD: "E101", C.RULES_E_AFTERKEYWORD: "E102", C.RULES_E_NOEQUALS: "E103",
    C.RULES_E_TRAILINGCOMMA: "E104", C.RULES_E_NOVALUE: "E105", C.RULES_E_UNTERMINATED: "E106",
    C.RULES_E_AFTERVALUE: "E107", C.RULES_E_RANGE: "E108", C.RULES_E_LONGLINE: "E109",
}


class Finding(NamedTuple):
    """One problem: where (``path``, ``line`` from 1, ``column`` from 1), the stable
    ``code`` (``E...`` error, ``W...`` warning), what is wrong and, when there is one
    obvious remedy, the ``fix``."""

    path: str
    line: int
    column: int
    code: str
    message: str
    fix: Optional[str] = None

    @property
    def severity(self) -> str:
        return "error" if self.code[0] == "E" else "warning"

    def __str__(self) -> str:
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}{fix}"

    def as_dict(self) -> Dict[str, object]:
        return {"path": self.path, "line": self.line, "column": self.column, "code": self.code,
                "severity": self.severity, "message": self.message, "fix": self.fix}


_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\Z")
_IGNORE = re.compile(rb"#[ \t]*cdbrules:[ \t]*ignore[ \t]+([A-Z0-9, ]+)\Z")
_V4 = re.compile(rb"[0-9.]+\Z")
_V6_CHARS = re.compile(rb"[0-9A-Fa-f:.]+\Z")
_NET = re.compile(rb"[0-9A-Fa-f:.]+/[0-9]*\Z")
_HOST_OK = re.compile(rb"(?:[a-z0-9._-]|\\[0-7]{3})*\Z")
_NOCOLON_RULE = re.compile(rb"\s*(\S+)\s+(allow|deny)\b(.*)\Z")
_BOM = b"\xef\xbb\xbf"
_COMMENT_KEEP = 256  # bytes of a comment line kept while it streams in


def _is_v6(b: bytes) -> bool:
    """Only what IPv6 text is made of (hex digits, ':' and '.'), with a ':'."""
    return b":" in b and _V6_CHARS.match(b) is not None


def _q(b: bytes) -> str:
    return _show(b, 60)


class Linter:
    """Findings for text fed in pieces: ``feed(bytes)``..., then ``finish()``."""

    def __init__(self, path: str = "-", *, strict: bool = False, cidr: bool = False,
                 keys: Optional[Dict[bytes, Tuple[str, int, bool, bytes]]] = None,
                 maxline: int = RULES_MAX_LINE) -> None:
        self.path = path
        self.strict = strict
        self.cidr = cidr
        self.findings: List[Finding] = []
        self.lineno = 0
        # key -> (path, line, deny, data) of its first record; shared by the linters of several
        # sources compiled as one text
        self.keys: Dict[bytes, Tuple[str, int, bool, bytes]] = {} if keys is None else keys
        self.records = 0
        self.skipped: List[int] = []
        self.duplicates: List[int] = []
        self._buf = bytearray()
        self._long = False  # inside a line over maxline (reported; its rest is dropped)
        self._maxline = maxline
        self._ignore: Set[str] = set()  # codes silenced on the line being read
        self._pending: Set[str] = set()  # codes a "# cdbrules: ignore" comment silences on the next line
        self._started = False
        self._partlen = 0  # the length of the line in _buf so far (a comment's is cut)

    # -- input ----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if not data:
            return
        if not self._started:
            self._started = True
            self._buf += data
            if len(self._buf) < 3 and _BOM.startswith(bytes(self._buf)):
                self._started = False  # too few bytes yet to tell a byte-order mark
                return
            data = bytes(self._buf)
            self._buf.clear()
            if data.startswith(_BOM):
                self._add(1, 1, "W702", "the file starts with a UTF-8 byte-order mark, which tcprules keeps as "
                          "part of the first line (its key never matches; a first '#' is no comment)",
                          "save the file without a byte-order mark (remove its first 3 bytes)")
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._partial(data[start:])
                return
            if self._buf or self._long:
                self._partial(data[start:nl])
                line = bytes(self._buf)
                self._buf.clear()
                self._partlen = 0
                start = nl + 1
                if self._long:
                    self._long = False
                    continue
                self._line(line)
                continue
            else:
                line = data[start:nl]
                if len(line) > self._maxline and line[:1] != b"#":
                    self._toolong(line)
                    start = nl + 1
                    continue
            self._line(line)
            start = nl + 1

    def _partial(self, piece: bytes) -> None:
        self._partlen += len(piece)
        if self._long:
            return
        comment = (self._buf or piece)[:1] == b"#"
        if comment:  # a comment: its start says all there is to say (an ignore directive)
            self._buf += piece[:max(0, _COMMENT_KEEP - len(self._buf))]
            return
        self._buf += piece
        if len(self._buf) > self._maxline:
            self._toolong(bytes(self._buf))
            self._buf.clear()
            self._long = True

    def _toolong(self, line: bytes) -> None:
        self.lineno += 1
        self._add(self.lineno, self._maxline + 1, "E109",
                  _reason(C.RULES_E_LONGLINE, line[:self._maxline], self._maxline, b""))

    def finish(self) -> List[Finding]:
        if not self._started and self._buf:  # one or two bytes in all
            self._started = True
            data = bytes(self._buf)
            self._buf.clear()
            self.feed(data)
        if self._buf or self._long:
            line = bytes(self._buf)
            self._buf.clear()
            if not self._long:
                self._line(line)
            self._long = False
            self._add(self.lineno, self._partlen + 1, "W704",
                      "no newline at the end of the file", "end the last line with a newline")
        self.findings.sort(key=lambda f: (f.line, f.column, f.code))
        return self.findings

    # -- one line -------------------------------------------------------------------
    def _add(self, line: int, column: int, code: str, message: str, fix: Optional[str] = None) -> None:
        if code in self._ignore and line == self.lineno:
            return
        self.findings.append(Finding(self.path, line, column, code, message, fix))

    def _line(self, text: bytes) -> None:
        self.lineno += 1
        p = parse_line(text)
        if p.kind == COMMENT:
            m = _IGNORE.match(text[:_COMMENT_KEEP].rstrip(b" \t\r"))
            if m:
                self._pending |= {c.decode() for c in re.split(rb"[ ,]+", m.group(1)) if c}
            return
        if p.kind == BLANK:
            return
        self._ignore, self._pending = self._pending, set()
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as e:
            self._add(self.lineno, e.start + 1, "W703",
                      f"the line has bytes that are not UTF-8 (the first: \\x{text[e.start]:02x})",
                      "save the file as UTF-8 (or ASCII)")
        if p.kind == SKIPPED:
            self._skipped(p)
        elif p.kind == ERROR:
            self._error(p)
        else:
            self._rule(p)
        self._ignore = set()

    def _skipped(self, p: Line) -> None:
        n = self.lineno
        self.skipped.append(n)
        t = p.text[:p.length]
        if not t.strip():
            if b"\r" in t:
                self._add(n, 1, "W201", "an empty line ending in a CR (Windows line ends): tcprules skips it, but "
                          "the IPv6 build of tcprules hangs on it",
                          "convert the file to Unix line ends (dos2unix, or sed -i 's/\\r$//')")
                return
            self._add(n, 1, "W201", "a line of only blanks: tcprules skips it, but the IPv6 build of tcprules "
                      "hangs on it", "delete the blanks (an empty line is fine)")
            return
        stripped = t.lstrip()
        if stripped[:1] == b"#":
            col = len(t) - len(stripped) + 1
            self._add(n, col, "W201", "a comment that does not start in the first column is no comment: "
                      "tcprules skips it only because it has no ':', and the IPv6 build hangs on it",
                      "start the line with '#'")
            return
        m = _NOCOLON_RULE.match(t)
        hint = None
        if m:
            hint = f"write {_q(m.group(1) + b':' + m.group(2) + m.group(3))}"
        self._add(n, 1, "W201", f"no ':' in {_q(t)}: tcprules skips the line without a word "
                  "(the IPv6 build hangs on it)", hint or "make it a rule (ADDRESS:allow) or a comment ('#' first)")

    def _error(self, p: Line) -> None:
        n = self.lineno
        t = p.text[:p.length]
        if t.endswith(b"\r"):
            q = parse_line(t[:-1])
            self._add(n, len(t), "E701", "the line ends in a CR: the file has Windows (CR LF) line ends, and "
                      "tcprules rejects the line", "convert the file to Unix line ends (dos2unix, or sed -i 's/\\r$//')")
            if q.kind == RULE:
                self._rule(q)
                return
            if q.kind == ERROR:
                p = q
            else:
                return
        self._add(n, p.column + 1, _ERROR_CODES[p.code], _reason(p.code, t, p.column, p.name))

    # -- a rule ---------------------------------------------------------------------
    def _rule(self, p: Line) -> None:
        n = self.lineno
        first = p.text.find(b":")
        address = (p.keys[0] if p.keys else p.key).rpartition(b"@")[2].split(b"/")[0]  # (a --cidr network too)
        if first != p.sep and not _is_v6(address):
            self._add(n, first + 1, "W202", f"the rule's ':' is the one at column {p.sep + 1}, but the IPv4 build of "
                      "tcprules splits the line at the first ':' and rejects it")
        self._items(p)
        self._key(p)
        self._duplicates(p)
        self._relay(p)

    def _items(self, p: Line) -> None:
        n = self.lineno
        seen: Dict[bytes, int] = {}
        for it in p.items:
            name = it.name
            if not _NAME.match(name):
                self._add(n, it.name_at + 1, "W301", *_bad_name(name))
            elif name in seen:
                self._add(n, it.name_at + 1, "W302", f"{_q(name)} is set twice in this rule; tcpserver keeps the "
                          f"last value, {_q(it.value)}")
            seen[name] = it.comma

    def _key(self, p: Line) -> None:
        n = self.lineno
        if self.cidr and p.network:
            net = check_network(p.key)
            if not net.ok:
                self._add(n, 1, "E110", net.reason)
            return
        if p.range is not None:
            lo, dash, hi, bot, top = p.range
            if not p.keys:
                self._add(n, lo + 1, "W411", f"the range {_q(p.key)} runs from {bot} down to {top}: it writes no key, "
                          "so the line does nothing")
                return
            raw_top = p.text[dash + 1:hi]
            if raw_top and raw_top.isdigit() and int(raw_top) > 255:
                self._add(n, dash + 2, "W412", f"the range {_q(p.key)} ends past 255: tcprules stops at 255")
            keys = [p.keys[0], p.keys[-1]]
        else:
            keys = [p.key]
        for k in keys:
            problem = key_problem(k)
            if problem:
                code, message, fix = problem
                self._add(n, 1, code, message, fix)
                return

    def _duplicates(self, p: Line) -> None:
        n = self.lineno
        first: Optional[Tuple[bytes, str, int, bool, bytes]] = None
        count = 0
        if self.cidr and p.network:
            return  # compile --cidr orders networks by length: no "first line wins"
        for k in p.keys:
            self.records += 1
            had = self.keys.get(k)
            if had is None:
                self.keys[k] = (self.path, n, p.deny, p.data)
            elif had[:2] != (self.path, n):
                count += 1
                if first is None:
                    first = (k, *had)
        if first is None:
            return
        self.duplicates.append(n)
        k, path, line, deny, data = first
        where = f"line {line}" if path == self.path else f"{path}:{line}"
        more = f" (and {count - 1} more of its keys)" if count > 1 else ""
        what = f"the key {_q(k)}{more} is already written by {where}, and tcpserver uses the first record: this line"
        if deny != p.deny:
            self._add(n, 1, "E503", f"{what} {'denies' if p.deny else 'allows'} but is never used; {where} "
                      f"{'denies' if deny else 'allows'}", "delete one of the two lines")
        elif data != p.data:
            self._add(n, 1, "W502", f"{what} sets other variables but is never used", "merge the two lines")
        elif self.strict:
            self._add(n, 1, "W501", f"{what} is the same rule and is never used", "delete this line")

    def _relay(self, p: Line) -> None:
        if p.deny:
            return
        item = next((it for it in p.items if it.name == b"RELAYCLIENT"), None)
        if item is None:
            return
        n, col = self.lineno, item.name_at + 1
        for k in p.keys:
            if k == b"":
                self._add(n, col, "E601", "RELAYCLIENT on the default rule makes this an open relay: every client "
                          "may send mail anywhere", "set RELAYCLIENT only for your own networks")
                return
            if k == b"=" or re.fullmatch(rb"=\.[^.]+", k):
                what = "every client with a reverse DNS name" if k == b"=" else f"every host in {_q(k[2:])}"
                self._add(n, col, "W602", f"RELAYCLIENT for {what}: anyone can get such a name",
                          "relay for addresses, not names")
                return
            if (re.fullmatch(rb"[0-9]{1,3}\.", k) and k != b"127.") or k in (b":", b"::") or \
                    re.fullmatch(rb"[0-9a-f]{1,4}:", k):
                self._add(n, col, "W603", f"RELAYCLIENT for the whole network {_q(k)} ({_width(k)})",
                          "relay only for the networks of your own clients")
                return


def _width(k: bytes) -> str:
    if k.endswith(b"."):
        return "a /8"
    return "a /16" if len(k) > 2 else "every address written starting with '::'"


def _bad_name(name: bytes) -> Tuple[str, Optional[str]]:
    """Why the variable name is unusable, and the fix."""
    if not name:
        return "an empty variable name (',=\"...\"'): tcpserver sets a variable no program can read", \
            "name the variable"
    if name.strip() != name and _NAME.match(name.strip()):
        return (f"the variable name is {_q(name)}, spaces included: programs looking for "
                f"{_q(name.strip())} never see it (tcprules keeps every byte between ',' and '=')",
                f"write ',{name.strip().decode()}=' with no spaces")
    if b"," in name:
        head = name.split(b",")[0]
        return (f"the variable name is {_q(name)}: an item lacks its '=' (is {_q(head)} missing "
                f"=\"\"?)", f"write ',{head.decode('latin-1')}=\"\",' for an empty value")
    return (f"the variable name {_q(name)} is not a name a shell or qmail reads "
            "(letters, digits and '_', not starting with a digit)", None)


def key_problem(key: bytes) -> Optional[Tuple[str, str, Optional[str]]]:
    """Why tcpserver can never (or only partly) match key: (code, message, fix), or None."""
    if key == b"":
        return None
    if key.startswith(b"="):
        return _host_problem(key)
    if b"@" in key:
        info, _, rest = key.rpartition(b"@")
        if rest.startswith(b"="):
            return _host_problem(rest, key)
        if rest.endswith((b".", b":")):
            return ("W410", f"{_q(key)} ends like a prefix, but tcpserver looks up INFO@ADDRESS keys only "
                    "with the whole address: it never matches", None)
        return _ip_problem(rest, key)
    return _ip_problem(key, key)


def _host_problem(hkey: bytes, key: Optional[bytes] = None) -> Optional[Tuple[str, str, Optional[str]]]:
    key = key or hkey
    host = hkey[1:]
    if host == b"" or host == b".":
        return None
    if host.lower() != host:
        return ("W402", f"{_q(key)} has upper case, but tcpserver writes host names in lower case: "
                "it never matches", f"write {_q(key.lower())}")
    if host.endswith(b"."):
        return ("W403", f"{_q(key)} ends in '.', but tcpserver writes host names without the final dot: "
                "it never matches", f"write {_q(key.rstrip(b'.'))}")
    if not _HOST_OK.match(host):
        return ("W404", f"{_q(key)} has characters tcpserver writes as \\ooo escapes in host names "
                "(only a-z, 0-9, '-', '_' and '.' stay as they are): it never matches", None)
    return None


def _ip_problem(ip: bytes, key: bytes) -> Optional[Tuple[str, str, Optional[str]]]:
    if _NET.match(ip):
        return ("W401", f"{_q(key)} is a network, but tcpserver looks up addresses and their prefixes as text: "
                "it never matches", _net_fix(ip))
    if _V4.match(ip):
        return _v4_problem(ip, key)
    if _is_v6(ip):
        return _v6_problem(ip, key)
    if re.fullmatch(rb"[A-Za-z0-9.-]+\.[A-Za-z]+", ip):
        return ("W409", f"{_q(key)} looks like a host name without '=' in front: tcpserver looks it up as an "
                "address, so it never matches", f"write ={ip.decode().lower()}")
    return ("W409", f"{_q(key)} is no address, prefix, =host or info@ key tcpserver looks up: it never matches",
            "write an address (1.2.3.4), a prefix ending in '.' (1.2.3.) or =host")


def _net_fix(ip: bytes) -> Optional[str]:
    try:
        net = ipaddress.ip_network(ip.decode(), strict=False)
    except ValueError:
        return None
    if net.version == 4 and net.prefixlen % 8 == 0 and net.prefixlen:
        octets = str(net.network_address).split(".")[:net.prefixlen // 8]
        return f"write {'.'.join(octets)}{'.' if net.prefixlen < 32 else ''}"
    return "write its addresses or prefixes ending in '.' (or ':' for IPv6), or compile with --cidr"


_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_GOOD = re.compile(rb"(?:%s\.){3}%s\Z|(?:%s\.){1,3}\Z" % (_OCTET, _OCTET, _OCTET))


def _v4_problem(ip: bytes, key: bytes) -> Optional[Tuple[str, str, Optional[str]]]:
    if _V4_GOOD.match(ip):  # an address or prefix as tcpserver writes them
        return None
    prefix = ip.endswith(b".")
    parts = (ip[:-1] if prefix else ip).split(b".")
    fix = None
    if all(p.isdigit() and int(p) <= 255 for p in parts) and len(parts) <= 4:
        fixed = b".".join(str(int(p)).encode() for p in parts) + (b"." if prefix else b"")
        fix = f"write {_q(fixed)}" if fixed != ip else None
    return ("W408", f"{_q(key)} is not an IPv4 address or prefix as tcpserver writes them (four numbers 0-255, "
            "no leading zeros; a prefix ends in '.' after 1 to 3 of them): it never matches", fix)


def _v6_problem(ip: bytes, key: bytes) -> Optional[Tuple[str, str, Optional[str]]]:
    t = ip.decode()
    if t.lower() != t:
        return ("W406", f"{_q(key)} has upper-case hex, but tcpserver writes IPv6 addresses in lower case: "
                "it never matches", f"write {_q(key.lower())}")
    if t.startswith("::ffff:") and "." in t or t == "::ffff:":
        return ("W405", f"{_q(key)} is an IPv4 client as ::ffff:a.b.c.d, but tcpserver looks IPv4 clients up "
                "by their dotted quad (unless it runs with -6): it never matches", "write the IPv4 address or prefix")
    if t.endswith("::") or t == ":":
        if t in ("::", ":"):
            return ("W407", f"{_q(key)} is a prefix of every address tcpserver writes starting with '::' "
                    "(::1, ::2, ...)", None)
        example = tcpserver_ip(t + "1")
        return ("W407", f"{_q(key)} is one address, but tcpserver also looks it up as a prefix: it matches "
                f"every address written starting with it, such as {example}", None)
    if t.endswith(":"):
        groups = t[:-1].split(":")
        if "" in groups:
            return ("W406", f"{_q(key)} has '::' inside a prefix, which stands for any number of zero groups: "
                    "it matches addresses outside the network it seems to name", None)
        if len(groups) > 7 or not all(re.fullmatch(r"[0-9a-f]{1,4}", g) and (g == "0" or g[0] != "0")
                                      for g in groups):
            return ("W406", f"{_q(key)} is not a prefix of any address as tcpserver writes it "
                    "(groups of 1-4 lower-case hex digits, no leading zeros): it never matches", None)
        if "0" in groups:
            example = ":".join(groups + ["1"] * (8 - len(groups)))
            printed = tcpserver_ip(example)
            if not printed.startswith(t):
                return ("W406", f"{_q(key)} has a zero group, which tcpserver may write as '::': it misses "
                        f"addresses such as {example}, written {printed}", None)
        return None
    try:
        addr = ipaddress.IPv6Address(t)
    except ValueError:
        return ("W406", f"{_q(key)} is not an IPv6 address (nor a prefix ending in ':'): it never matches", None)
    printed = tcpserver_ip(addr, forcev6=True)
    if printed != t:
        return ("W406", f"tcpserver writes this address as {printed}, so {_q(key)} never matches",
                f"write {_q(key[:len(key) - len(ip)] + printed.encode())}")
    return None


Source = Union[str, "os.PathLike[str]", bytes, IO[bytes]]


def lint(source: Source, *, path: Optional[str] = None, strict: bool = False, cidr: bool = False) -> List[Finding]:
    """Every finding for a rules text, in line order: ``source`` is a path, a binary file
    object, or the text itself as ``bytes``.  ``path`` names it in the findings (default:
    the path, or ``-``).  ``strict`` also reports lines that repeat an earlier rule word
    for word (W501), which block lists collect harmlessly.  ``cidr``: the text is meant for
    ``compile --cidr``, where a key ``NET/LEN`` is a network (E110 when it cannot be one)."""
    lt = Linter(path or (os.fsdecode(source) if isinstance(source, (str, os.PathLike)) else
                         "-" if isinstance(source, bytes) else str(getattr(source, "name", "-"))),
                strict=strict, cidr=cidr)
    if isinstance(source, bytes):
        lt.feed(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            _feed_file(lt, f)
    else:
        _feed_file(lt, source)
    return lt.finish()


def _feed_file(lt: Linter, f: IO[bytes]) -> None:
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return
        lt.feed(chunk)
