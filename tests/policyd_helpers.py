"""What the policyd tests share: a ``cdbrules policyd`` process, Postfix's requests.

``Policyd`` runs the command as a child process logging to a file, reads the addresses it
listens on from that log, and always stops it (SIGTERM, then SIGKILL).  ``REQUESTS`` are
the requests a real Postfix 3.7 sent in one SMTP session (tests/data), one per
protocol_state and policy_context; ``request()`` makes one of them for another client.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from helpers import PY

DATA = Path(__file__).resolve().parent / "data"


def _load_requests() -> List[Dict[str, str]]:
    out = []
    for block in (DATA / "postfix-3.7-requests.txt").read_text().split("\n\n"):
        if block.strip():
            out.append(dict(line.split("=", 1) for line in block.split("\n")))
    return out


#: What Postfix 3.7.11 sent with check_policy_service in every smtpd_*_restrictions,
#: smtpd_delay_reject=no and one relay check (policy_context=relay): EHLO, HELO, EHLO,
#: MAIL, RCPT, DATA, VRFY, ETRN from 127.0.0.2, in the order it sent them.
REQUESTS: List[Dict[str, str]] = _load_requests()
STATES = ["CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"]


def request(state: str, context: str = "", **attrs: str) -> Dict[str, str]:
    """Postfix's request for protocol_state ``state`` (and policy_context ``context``),
    with ``attrs`` replacing its values (client_address=..., client_port=...)."""
    for r in REQUESTS:
        if r["protocol_state"] == state and r.get("policy_context", "") == context:
            out = dict(r)
            out.update(attrs)
            return out
    if context:  # Postfix made the relay call at RCPT only; the same request elsewhere
        out = request(state, **attrs)
        out["policy_context"] = context
        return out
    raise KeyError(state)


def encode(req: Dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}\n".encode() for k, v in req.items()) + b"\n"


def cli(*args: str) -> List[str]:
    """The command line of ``cdbrules ARGS`` in a child process."""
    return [*PY, *args]


class Policyd:
    """``cdbrules policyd ARGS CDB`` as a child process; ``addresses`` it listens on."""

    def __init__(self, cdb: Union[str, Path], *args: str, log: Path, listen: Sequence[str] = ("inet:127.0.0.1:0",),
                 env: Optional[Dict[str, str]] = None, **popen: object) -> None:
        self.log = log
        argv = cli("policyd", "--log", str(log), *[f"--listen={s}" for s in listen], *args, str(cdb))
        self.proc = subprocess.Popen(argv, env=env, **popen)  # type: ignore[call-overload]
        self.addresses: List[str] = []
        deadline = time.monotonic() + 30
        while len(self.addresses) < max(len(listen), 1) and listen:
            if self.proc.poll() is not None:
                raise AssertionError(f"policyd exited {self.proc.returncode}: {self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"policyd did not start: {self.log_text()}")
            self.addresses = re.findall(r"listening on (\S+),", self.log_text())
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log.read_text()
        except FileNotFoundError:
            return ""

    @property
    def port(self) -> int:
        return int(next(a for a in self.addresses if a.startswith("inet:")).rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> Optional[int]:
        """SIGTERM and the exit status; SIGKILL if it does not stop within 10 s (None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        return self.proc.returncode

    def __enter__(self) -> "Policyd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ask(sock: socket.socket, req: Union[bytes, Dict[str, str]]) -> bytes:
    """Send one request, read one reply (up to its empty line); b"" if the server closed."""
    sock.sendall(req if isinstance(req, bytes) else encode(req))
    return read_reply(sock)


def read_reply(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    return buf


def compile_rules(text: str, cdb: Path) -> None:
    tmp = cdb.with_name(cdb.name + ".tmp")
    src = cdb.with_name(cdb.name + ".txt")
    src.write_text(text)
    subprocess.run(cli("compile", str(cdb), str(tmp), str(src)), check=True)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def env_with(**kv: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(kv)
    return env
