"""Write the seed corpora fuzz/corpus/{reader,rules,lookup}/ (run once; the output is committed).

    python fuzz/make_corpus.py

The cdb seeds are written by the reference tcprules (tests/refs.py fetches it), so the
reader starts from files the classic tool made; the rules seeds are the tricky lines of
docs/format.md.  Seeds are small: libFuzzer grows the corpus itself.

The committed corpora also hold the units of the first long runs, chosen by libFuzzer's
merge (what adds coverage or features); to add those of a later run:

    .cache/fuzz/bin/fuzz_NAME -merge=1 fuzz/corpus/NAME .cache/fuzz/corpus/NAME
"""

from __future__ import annotations

import hashlib
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import refs as _refs  # noqa: E402

RULES = [
    b"",
    b"1.2.3.4:deny\n:allow\n",
    b"127.:allow,RELAYCLIENT=\"\"\n:allow\n",
    (ROOT / "examples" / "tcp.smtp").read_bytes(),
    b"# comment\n\n1.2.3.37-40:deny\n10.2-3.:allow,A=\"1\",B=/2/\n",
    b"1-3.:allow\n-:deny\n-5:allow\n1.2.3.9-5:allow\n1.2.3.250-300:deny\n",
    b"1.2.3.-5:allow\n1.2.3.5-:deny\n.-.:allow\n1.2-3.4-5:allow\n",
    b"1.2.3.18446744073709551617-3:allow\n1.2.3.1-18446744073709551618:deny\n",
    b"1.2.3.4\x00zz-5:allow\n",
    b"::1:allow\n2001:db8::1:deny\n2001:db8::allow\n2001:db8:::allow\n:::allow\n::allow\n",
    b"::ffff:1.2.3.4:deny\n::ffff:1.2.3.1-3:allow\na:b:allow\n",
    b"=a-b.example.com:deny\njoe@1.2.3.1-3:allow\nx@a-b:deny\n1-2=:allow\n",
    b"1.2.3.4:allow,A,B=\"x\",,C=\"y\",D B\"=\"z\",=\"e\"\n",
    b"5.6.7.8:allow,FOO==a=,BAR=,a,,C=\rx\r,D=\"a=b\",E=\"x:deny\"\n",
    b"1.2.3.4:deny,X=\"y\",A=\"x\x00y\"\n",
    b"1.2.3.4:allow,A=\"1\"\n1.2.3.4:deny\n1.2.3.1-2:deny\n1.2.3.2:allow\n",
    b"hello world\n1.2.3.4 allow\n   \n\t\n#x:allow\n",
    # errors: one bad line after good ones
    b"1.2.3.4:allow\n1.2.3.4:allow\r\n",
    b"1.2.3.4:allow\n1.2.3.4: allow\n",
    b"1.2.3.4:ALLOW\n",
    b"1.2.3.4:allow:deny\n",
    b"1.2.3.4 allow,A=\":allow\"\n",
    b"1.2.3.4:allowx\n",
    b"1.2.3.4:allow ,A=\"x\"\n",
    b"1.2.3.4:allow,A=\"x\"B=\"y\"\n",
    b"1.2.3.4:allow,\n",
    b"1.2.3.4:allow,FOO\n",
    b"1.2.3.4:allow,FOO=\n",
    b"1.2.3.4:allow,FOO=\"bar\n",
    b"1.2.3.4:allow,A= x \n",
    b"1.2.3.a-5:deny\n",
    b"1.2.3.4-5-6:deny\n",
    b"host1-3.example:deny\n",
    b"1.2.3.4:deny\n1.2.3.4:de",
    b"\xef\xbb\xbf1.2.3.4:allow\n10.0.0.0/8:deny\n[::1]:allow\n",
]

LOOKUPS = [
    # (flags: 1 host, 2 info, 4 raw cdb image; ip; host; info; rules)
    (3, b"1.2.3.4", b"a.b.example.com", b"joe",
     b"joe@1.2.3.4:allow\njoe@=a.b.example.com:deny\n1.2.3.:allow,A=\"1\"\n=.example.com:deny\n=:allow\n:deny\n"),
    (3, b"2001:db8:0:1::5", b"host.v6.example", b"joe",
     b"2001:db8:0:1:::deny\n2001:db8::allow,X=\"y\"\n=.v6.example:allow\n"),
    (0, b"::ffff:1.2.3.4", b"", b"", b"::ffff:1.2.3.:allow\n:::deny\n::allow\n"),
    (1, b"127.0.0.1", b"www.example.com.", b"", b"=.com.:deny\n=.:allow\n127.:allow,RELAYCLIENT=\"\"\n"),
    (1, b"10.1.2.3", b"a..c.d", b"", b"=.c.d:deny\n10.0.0.0/8:allow\n"),
    (2, b"", b"", b"", b":deny\n"),
]


def cdb_seeds(tcprules: str, run: object) -> list[bytes]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        for text in RULES:
            r = run([tcprules, f"{d}/x.cdb", f"{d}/x.tmp"], stdin=text, timeout=5)  # type: ignore[operator]
            if r.returncode == 0:
                out.append(Path(f"{d}/x.cdb").read_bytes())
    return out


def damaged(files: list[bytes]) -> list[bytes]:
    """A few hostile variants: truncated, a slot pointing past the end, a huge table."""
    base = max(files, key=len)
    out = [base[:2048], base[: len(base) - 5], b"\x00" * 2048]
    b = bytearray(base)
    struct.pack_into("<II", b, 0, 0xFFFFFFF0, 0xFFFFFFFF)  # table 0 outside the file, 2^32-1 slots
    out.append(bytes(b))
    b = bytearray(base)
    struct.pack_into("<I", b, len(b) - 4, len(b) + 100)  # last slot's record past the end
    out.append(bytes(b))
    b = bytearray(base)
    struct.pack_into("<I", b, 2048, 0x7FFFFFFF)  # first record: huge key length
    out.append(bytes(b))
    return out


def write(corpus: str, seeds: list[bytes]) -> None:
    d = ROOT / "fuzz" / "corpus" / corpus
    d.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (d / hashlib.sha1(s).hexdigest()).write_bytes(s)
    print(f"{corpus}: {len(seeds)} seeds, {sum(map(len, seeds))} bytes")


def main() -> None:
    refs = _refs.get_refs()
    files = cdb_seeds(str(refs.tcprules_v4), refs.run)
    records = [b"a\tb\na\tc\n\tempty key\nkey only\n\n", b"1.2.3.4\t\n1.2.3.4\tD\x00\n=\t+A=1\x00\n"]
    write("reader", files[:6] + damaged(files) + records)
    write("rules", RULES)
    lookups = [bytes([f]) + ip + b"\0" + h + b"\0" + i + b"\0" + t for f, ip, h, i, t in LOOKUPS]
    lookups += [bytes([f | 4]) + ip + b"\0" + h + b"\0" + i + b"\0" + img
                for (f, ip, h, i, _), img in zip(LOOKUPS, [files[1], files[3], files[9], files[2], files[-1], files[0]])]
    write("lookup", lookups)


if __name__ == "__main__":
    main()
