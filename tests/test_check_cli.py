"""``cdbrules check`` as a program: the same stdout and exit code as tcprulescheck, and its own extras.

Each case runs the real tcprulescheck (both builds) and ``python -m cdbrules check`` with the
same environment; stderr must be the same message apart from the program's name.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from cdbrules import Rules

RULES = (b"1.2.3.4:allow,A=\"1\",A=\"2\"\n"
         b"1.2.3.:deny,X=\"y\"\n"
         b"joe@1.2.3.5:allow,WHO=\"joe\"\n"
         b"joe@=h.example.com:allow,WHO=\"joe-host\"\n"
         b"@0.0.0.0:allow,EMPTYINFO=\"1\"\n"
         b"0.0.0.0:allow,ZERO=\"1\"\n"
         b"=h.example.com:allow,H=\"exact\"\n"
         b"=.example.com:deny\n"
         b"=\xff.bad:allow,RAW=\"\xfe\"\n"
         b"=:allow,H=\"any\"\n")
ENV_VARS = (b"TCPREMOTEIP", b"TCPREMOTEHOST", b"TCPREMOTEINFO")


@pytest.fixture(scope="module")
def cdb(refs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cli") / "rules.cdb"
    r = refs.run([refs.tcprules_v4, str(p), str(p) + ".tmp"], stdin=RULES)
    assert r.returncode == 0, r
    return p


def ours(args: List[str], env: Optional[Dict[bytes, bytes]] = None) -> Tuple[bytes, bytes, int]:
    base = {k: v for k, v in os.environb.items() if k not in ENV_VARS}
    r = subprocess.run([sys.executable, "-m", "cdbrules", "check", *args], env={**base, **(env or {})},
                       capture_output=True, timeout=60)
    return r.stdout, r.stderr, r.returncode


def theirs(refs, prog: str, cdb: str, env: Dict[bytes, bytes]) -> Tuple[bytes, bytes, int]:
    r = refs.run([prog, cdb], env={os.fsdecode(k): os.fsdecode(v) for k, v in env.items()})
    assert not r.timed_out and r.returncode is not None
    return r.stdout, r.stderr, r.returncode


def same(ref: Tuple[bytes, bytes, int], got: Tuple[bytes, bytes, int], prog: str) -> None:
    assert got[0] == ref[0], (prog, ref, got)
    assert got[2] == ref[2], (prog, ref, got)
    name = os.path.basename(prog).encode()
    assert got[1].replace(b"cdbrules:", name + b":", 1) == ref[1], (prog, ref, got)


IPS = [None, b"", b"1.2.3.4", b"1.2.3.5", b"1.2.3.9", b"9.9.9.9"]
HOSTS = [None, b"", b"h.example.com", b"a.example.com", b"\xff.bad"]
INFOS = [None, b"", b"joe"]


def test_environment_like_tcprulescheck(refs, cdb: Path) -> None:
    """Every combination of unset / set-but-empty / set for the three variables."""
    n = 0
    for ip, host, info in itertools.product(IPS, HOSTS, INFOS):
        if ip not in (None, b"", b"1.2.3.5") and (host, info) not in ((None, None), (b"h.example.com", b"joe")):
            continue  # keep the matrix small: every variable's three states still meet each other
        env = {k: v for k, v in zip(ENV_VARS, (ip, host, info)) if v is not None}
        got = ours([str(cdb)], env)
        for prog in (refs.tcprulescheck_v4, refs.tcprulescheck_v6):
            same(theirs(refs, prog, str(cdb), env), got, prog)
        n += 1
    assert n > 40


@pytest.mark.parametrize("argv", [["1.2.3.4"], ["1.2.3.5", "", "joe"], ["9.9.9.9", "h.example.com"],
                                  ["1.2.3.5", "h.example.com", "joe"], [""], ["0.0.0.0", "x", ""],
                                  ["9.9.9.9", os.fsdecode(b"\xff.bad")]])
def test_arguments_instead_of_environment(refs, cdb: Path, argv: List[str]) -> None:
    env = {k: os.fsencode(v) for k, v in zip(ENV_VARS, argv)}
    # the environment must be ignored when IP is given
    got = ours([str(cdb), *argv], {b"TCPREMOTEHOST": b"h.example.com", b"TCPREMOTEINFO": b"joe"})
    same(theirs(refs, refs.tcprulescheck_v6, str(cdb), env), got, refs.tcprulescheck_v6)


def test_unreadable_files(refs, tmp_path: Path, cdb: Path) -> None:
    missing = str(tmp_path / "missing.cdb")
    got = ours([missing, "1.2.3.4"])
    same(theirs(refs, refs.tcprulescheck_v4, missing, {b"TCPREMOTEIP": b"1.2.3.4"}), got, refs.tcprulescheck_v4)
    assert got[1] == f"cdbrules: fatal: unable to read {missing}: file does not exist\n".encode()

    cut = tmp_path / "cut.cdb"
    cut.write_bytes(cdb.read_bytes()[:2100])
    got = ours([str(cut), "9.9.9.9"])
    same(theirs(refs, refs.tcprulescheck_v4, str(cut), {b"TCPREMOTEIP": b"9.9.9.9"}), got, refs.tcprulescheck_v4)
    assert got[2] == 111 and got[1].endswith(b": protocol error\n")
    # rules text that was never compiled: tcprulescheck's output and exit code, and instead
    # of its "protocol error" what to do
    text = tmp_path / "text.cdb"
    text.write_bytes(RULES * 30)
    out, err, rc = ours([str(text), "9.9.9.9"])
    t_out, _, t_rc = theirs(refs, refs.tcprulescheck_v4, str(text), {b"TCPREMOTEIP": b"9.9.9.9"})
    assert (out, rc) == (t_out, t_rc) == (b"", 111)
    assert err == (f"cdbrules: fatal: unable to read {text}: this is rules text, not a compiled rules file; "
                   f"compile it first with cdbrules compile CDB TMP {text}\n").encode()


def test_directory_and_empty_file_are_a_clean_protocol_error(tmp_path: Path) -> None:
    """tcprulescheck crashes on a directory and says 'invalid argument' for an empty file
    (Debian build quirks); cdbrules says protocol error for both (docs/compatibility.md,
    "Checking and lookups")."""
    empty = tmp_path / "empty.cdb"
    empty.write_bytes(b"")
    for f in (tmp_path, empty):
        out, err, rc = ours([str(f), "1.2.3.4"])
        assert (out, err, rc) == (b"", f"cdbrules: fatal: unable to read {f}: protocol error\n".encode(), 111)


def test_usage(tmp_path: Path) -> None:
    out, err, rc = ours([])
    assert rc == 100 and out == b"" and b"usage: cdbrules check" in err and b"Traceback" not in err
    out, err, rc = ours(["--help"])
    assert rc == 0 and b"TCPREMOTEIP" in out and b"--explain" in out
    out, err, rc = ours(["--bogus", "x.cdb"])
    assert rc == 100 and b"Traceback" not in err
    # too many arguments: the usage line is check's, not the top command's
    out, err, rc = ours(["x.cdb", "1.2.3.4", "h", "i", "extra"])
    assert (out, rc) == (b"", 100)
    assert err.splitlines() == [b"cdbrules check: usage: cdbrules check [-h] [--json] [--explain] CDB [IP] [HOST] [INFO]",
                                b"cdbrules check: unrecognized arguments: extra"]


def test_json(cdb: Path) -> None:
    with Rules(cdb) as r:
        for argv in (["1.2.3.4"], ["1.2.3.9", "h.example.com"], ["9.9.9.9", os.fsdecode(b"\xff.bad"), "joe"],
                     ["7.7.7.7", "nohost"]):
            out, err, rc = ours(["--json", str(cdb), *argv])
            assert rc == 0 and err == b""
            obj = json.loads(out)
            d = r.check(*argv, exact=True)  # the command uses the text as given
            assert (obj["rule"], obj["allowed"], obj["env"]) == (d.rule, d.allowed, dict(d.env))
            assert (obj["ip"], obj["host"], obj["info"]) == tuple(argv + [None] * (3 - len(argv)))
            assert "probes" not in obj
        # the decision is tcpserver's: a denying rule still lists its variables
        obj = json.loads(ours([str(cdb), "1.2.3.9", "--json"])[0])  # options after the arguments too
        assert obj["allowed"] is False and obj["env"] == {"X": "y"}
        # and between them
        for argv in ([str(cdb), "--json", "1.2.3.9", "h.example.com"], [str(cdb), "1.2.3.9", "--json", "h.example.com"]):
            obj = json.loads(ours(argv)[0])
            d = r.check("1.2.3.9", "h.example.com")
            assert (obj["host"], obj["rule"], obj["allowed"]) == ("h.example.com", d.rule, d.allowed)


def test_explain(refs, cdb: Path) -> None:
    with Rules(cdb) as r:
        for argv in (["1.2.3.4"], ["1.2.3.9", "a.example.com", "joe"], ["7.7.7.7", "nohost"], ["7.7.7.7"]):
            out, err, rc = ours(["--explain", str(cdb), *argv])
            assert rc == 0
            probes = r.explain(*argv, exact=True)
            lines = out.split(b"\n")
            assert lines[:len(probes)] == [b"probe " + (k or b'"" (the default rule)') + (b": match" if hit else b": no rule")
                                                for k, hit in probes]
            env = {k: os.fsencode(v) for k, v in zip(ENV_VARS, argv)}
            plain = theirs(refs, refs.tcprulescheck_v6, str(cdb), env)[0]
            assert out.endswith(plain)
            if not probes[-1][1]:
                assert b"no key matched" in out
            obj = json.loads(ours(["--json", "--explain", str(cdb), *argv])[0])
            assert [(p["key"], p["matched"]) for p in obj["probes"]] == [(os.fsdecode(k), h) for k, h in probes]
