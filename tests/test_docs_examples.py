"""The example tables of docs/format.md and docs/lookup.md are what the programs do.

Each table is read from the page itself, so an edit of the page that no longer matches the
behaviour fails here: the separator, range, record and hash tables of format.md against
``cdbrules.compile`` (and the separator table against both tcprules builds), and the address
table of lookup.md against ``tcpserver_ip`` and :mod:`ipaddress`.

Cells are read this way: the code spans of a cell are its values, except those inside
parentheses (remarks); a cell starting with "error" is a rules error, "nothing" no record,
"empty" or "the empty key" the empty string, "the same" the value of the cell before it.
``\\0`` in a code span is a NUL byte.
"""

from __future__ import annotations

import io
import ipaddress
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

import pytest

import cdbrules
from cdbrules import Reader, RulesSyntaxError
from cdbrules._bindings import cdb_hash

DOCS = Path(__file__).resolve().parent.parent / "docs"
if not DOCS.is_dir():
    pytest.skip("not a source checkout: docs/ is not here", allow_module_level=True)

ERROR = "error"
Cell = Union[str, List[bytes]]  # ERROR or the values


def table(page: str, heading: str) -> List[List[str]]:
    """The rows (cells, as markdown text) of the first table under that heading."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(heading)}", line))
    rows: List[List[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    assert len(rows) > 2, f"no table under {heading!r} in {page}"
    return rows[2:]  # not the header nor the |---| line


def spans(cell: str) -> List[str]:
    """The code spans of a cell outside parentheses."""
    out, depth = [], 0
    for m in re.finditer(r"`([^`]*)`|\(|\)|[^`()]+", cell):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif m.group(1) is not None and depth == 0:
            out.append(m.group(1))
    return out


def raw(text: str) -> bytes:
    return text.replace("\\0", "\0").encode()


def cell(text: str, before: Optional[Cell] = None) -> Cell:
    if text.startswith("error"):
        return ERROR
    if text.startswith("the same"):
        assert before is not None
        return before
    if text.startswith("nothing"):
        return []
    if text.startswith(("empty", "the empty key")):
        return [b""]
    values = [raw(s) for s in spans(text)]
    assert values, f"cannot read the cell {text!r}"
    return values


def values(text: str) -> List[bytes]:
    """A cell that must hold values, not an error."""
    c = cell(text)
    assert not isinstance(c, str), text
    return c


def compiled(text: bytes, tmp_path: Path) -> Union[str, List[Tuple[bytes, bytes]]]:
    out = tmp_path / "x.cdb"
    try:
        cdbrules.compile(io.BytesIO(text), out)
    except RulesSyntaxError:
        return ERROR
    with Reader(out) as r:
        return list(r.items())


def keys(result: Union[str, List[Tuple[bytes, bytes]]]) -> Cell:
    return result if isinstance(result, str) else [k for k, _ in result]


SEPARATOR = table("format.md", "The separator")
RANGES = table("format.md", "Ranges")
ITEMS = table("format.md", "Environment items")
RECORDS = table("format.md", "What a rule stores")
HASHES = table("format.md", "Hash")
ADDRESSES = table("lookup.md", "IPv6 clients: the patch's own format")


@pytest.mark.parametrize("row", SEPARATOR, ids=lambda r: r[0])
def test_separator_table(row: List[str], tmp_path: Path, refs: object) -> None:
    (line,) = spans(row[0])
    v6 = cell(row[1])
    v4 = cell(row[2], v6)
    text = raw(line) + b"\n"
    assert keys(compiled(text, tmp_path)) == v6
    for prog, want in (("tcprules_v6", v6), ("tcprules_v4", v4)):
        cdb, tmp = tmp_path / f"{prog}.cdb", tmp_path / f"{prog}.tmp"
        r = refs.run([getattr(refs, prog), str(cdb), str(tmp)], stdin=text, timeout=10)  # type: ignore[attr-defined]
        assert not r.timed_out, prog
        if want == ERROR:
            assert r.returncode == 100, (prog, r)
        else:
            assert r.returncode == 0, (prog, r)
            with Reader(cdb) as got:
                assert [k for k, _ in got.items()] == want, prog


@pytest.mark.parametrize("row", RANGES, ids=lambda r: r[0])
def test_range_table(row: List[str], tmp_path: Path) -> None:
    (key,) = spans(row[0])
    assert keys(compiled(raw(key) + b":allow\n", tmp_path)) == cell(row[1])


@pytest.mark.parametrize("row", ITEMS, ids=lambda r: r[0])
def test_item_table(row: List[str], tmp_path: Path) -> None:
    """An item after ``1.2.3.4:allow``; "then blanks" in the cell adds trailing blanks."""
    item = raw("".join(spans(row[0]))) + (b" \t " if "then blanks" in row[0] else b"")
    want: object = ERROR
    if not row[1].startswith("error"):
        want = [(b"1.2.3.4", b"".join(e + b"\0" for e in values(row[1])))]
    assert compiled(b"1.2.3.4:allow" + item + b"\n", tmp_path) == want


@pytest.mark.parametrize("row", RECORDS, ids=lambda r: r[0])
def test_record_table(row: List[str], tmp_path: Path) -> None:
    (rule,) = spans(row[0])
    (key,) = values(row[1])
    (data,) = values(row[2])
    assert compiled(raw(rule) + b"\n", tmp_path) == [(key, data)]


@pytest.mark.parametrize("row", HASHES, ids=lambda r: r[0])
def test_hash_table(row: List[str]) -> None:
    (key,) = values(row[0])
    (value,) = spans(row[1])
    assert cdb_hash(key) == int(value, 16)


@pytest.mark.parametrize("row", ADDRESSES, ids=lambda r: r[0])
def test_address_table(row: List[str]) -> None:
    addresses = spans(row[0])
    assert addresses
    for a in addresses:
        text = a if row[1].startswith("the same") else spans(row[1])[0]
        rfc = text if row[2].startswith("the same") else spans(row[2])[0]
        assert cdbrules.tcpserver_ip(a) == text, a
        assert ipaddress.ip_address(a).compressed == rfc, a


def test_the_tables_are_read() -> None:
    """The parser of this module finds what the pages hold (a change of layout that left a
    table empty or unreadable would otherwise pass)."""
    assert len(SEPARATOR) >= 8 and len(RANGES) >= 10 and len(RECORDS) >= 5 and len(ITEMS) >= 8
    assert len(HASHES) >= 4 and len(ADDRESSES) >= 4
    assert cell("`1.2.3.0`, `1.2.3.1` (an empty `x` is 0)") == [b"1.2.3.0", b"1.2.3.1"]
