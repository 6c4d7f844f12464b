"""``cdbrules policyd`` behind a real Postfix (Debian's postfix package).

One Postfix instance runs from a temporary directory (its own config, queue and data
directories, ``maillog_file`` instead of syslog, listening on 127.0.0.1 only) with three
SMTP services: one asks a running policyd over TCP, one over a UNIX socket in Postfix's
queue directory, and one through spawn(8), which runs ``cdbrules policyd`` as user nobody
with the socket on its standard input and output (skipped, saying why, when user nobody
cannot run a Python that imports cdbrules).  smtplib clients connect from 127.0.0.2, 127.0.0.3, ... and must get exactly
what the rules say: REJECT, DEFER, relaying or not, chkuser's recipient limit, DATABYTES at
the end of the message; the rules file is recompiled while everything runs and the next
client sees the new rule.

Postfix, and root to start it, are required under CI on Linux (.ci/run installs Postfix
and runs as root); elsewhere the tests skip, saying what is missing.
``CDBRULES_NO_POSTFIX=1`` turns them off where Postfix cannot run (the wheel tests, a CI
job that is not root and runs this file again under sudo).  Every process started here is stopped at the end (``postfix stop``,
then SIGKILL to the master's process group, and SIGTERM/SIGKILL to policyd).
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from policyd_helpers import Policyd, compile_rules
from helpers import lacking, system_env  # system_env: Postfix runs without .ci/asan's runtime
from refs import truthy

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None)

RULES = """\
127.0.0.2:deny
127.0.0.3:allow,RBLSMTPD="-blocked by the test list"
127.0.0.4:allow,RBLSMTPD="try again later"
127.0.0.5:allow,RELAYCLIENT=""
127.0.0.6:allow,CHKUSER_RCPTLIMIT="3"
127.0.0.7:allow,DATABYTES="1000"
127.0.0.8:allow,RBLSMTPD="",RELAYCLIENT=""
127.0.0.12:allow,CHKUSER_WRONGRCPTLIMIT="2"
:allow,CHKUSER_RCPTLIMIT="50"
"""

LOCAL = "user@local.test"
REMOTE = "someone@remote.example"


def _need_postfix() -> str:
    if truthy(os.environ.get("CDBRULES_NO_POSTFIX")):
        pytest.skip("the Postfix tests are turned off here (CDBRULES_NO_POSTFIX)")
    if POSTFIX is None:
        lacking("postfix (Debian's postfix package, which .ci/run installs)")
    if os.geteuid() != 0:
        lacking("root, to start Postfix's master (or CDBRULES_NO_POSTFIX=1)")
    assert POSTFIX is not None
    return POSTFIX


def _spawn_argv(cdb: Path, log: Path) -> Tuple[Optional[List[str]], str]:
    """The command spawn(8) runs as user nobody: this interpreter if nobody can import
    cdbrules with it, else Debian's python3 with cdbrules' directory on PYTHONPATH; or
    None and the reason when nobody can run either."""
    import cdbrules

    where = str(Path(cdbrules.__file__).resolve().parents[1])
    tail = ["-m", "cdbrules", "policyd", "--reload-interval", "0", "--log", str(log), str(cdb)]
    # spawn passes no environment on: the sanitizer run's runtime is named on the command
    keep = [f"{k}={os.environ[k]}" for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")
            if k in os.environ]
    tries = [["/usr/bin/env", *keep, sys.executable],
             ["/usr/bin/env", *keep, f"PYTHONPATH={where}", "/usr/bin/python3"]]
    for head in tries:
        if not os.access(head[-1], os.X_OK):
            continue
        r = subprocess.run(["runuser", "-u", "nobody", "--", *head, "-c", "import cdbrules.policyd, cdbrules.rules"],
                           capture_output=True, timeout=60, env=system_env())
        if r.returncode == 0 and not any(" " in a for a in head + tail):
            return head + tail, ""
    return None, f"user nobody cannot run {sys.executable} with cdbrules (spawn(8) refuses root)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postfix:
    """A Postfix instance in directory d, with its master in the foreground as our child."""

    def __init__(self, postfix: str, d: Path, policy_inet: str, policy_unix: str,
                 spawn_argv: Optional[List[str]]) -> None:
        self.postfix = postfix
        self.conf = d / "conf"
        self.queue = d / "queue"
        self.maillog = d / "maillog"
        self.ports: Tuple[int, ...] = (_free_port(), _free_port()) + ((_free_port(),) if spawn_argv else ())
        self.proc: "subprocess.Popen[bytes] | None" = None
        relay_inet = f"check_policy_service {{ {policy_inet}, policy_context=relay }}, reject_unauth_destination"
        relay_unix = f"check_policy_service {{ {policy_unix}, policy_context=relay }}, reject_unauth_destination"
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {d / 'data'}
maillog_file = {self.maillog}
maillog_file_prefixes = {d}
myhostname = policyd-test.localdomain
mydomain = localdomain
mydestination = local.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_peername_lookup = no
local_recipient_maps = regexp:{d / 'conf' / 'recipients'}
relay_domains =
alias_maps =
alias_database =
default_transport = discard
local_transport = discard
relay_transport = discard
smtpd_policy_service_timeout = 20s
relay_inet = {relay_inet}
relay_unix = {relay_unix}
check_inet = check_policy_service {policy_inet}, reject_unlisted_recipient,
    check_policy_service {{ {policy_inet}, policy_context=valid }}
check_unix = check_policy_service {policy_unix}, reject_unlisted_recipient,
    check_policy_service {{ {policy_unix}, policy_context=valid }}
smtpd_relay_restrictions = $relay_inet
smtpd_recipient_restrictions = $check_inet
smtpd_end_of_data_restrictions = $check_inet
relay_spawn = check_policy_service {{ unix:private/cdbrules-spawn, policy_context=relay }}, reject_unauth_destination
check_spawn = check_policy_service unix:private/cdbrules-spawn, reject_unlisted_recipient
cdbrules-spawn_time_limit = 3600s
""")
        # every local user exists but the bad ones
        (self.conf / "recipients").write_text("!/^bad/ exists\n")
        a, b = self.ports[:2]
        spawn = ""
        if spawn_argv:
            spawn = f"""\
127.0.0.1:{self.ports[2]} inet n - n - - smtpd
  -o smtpd_relay_restrictions=$relay_spawn
  -o smtpd_recipient_restrictions=$check_spawn
  -o smtpd_end_of_data_restrictions=$check_spawn
cdbrules-spawn unix - n n - 0 spawn
  user=nobody argv={' '.join(spawn_argv)}
"""
        (self.conf / "master.cf").write_text(f"""\
127.0.0.1:{a} inet n - n - - smtpd
127.0.0.1:{b} inet n - n - - smtpd
  -o smtpd_relay_restrictions=$relay_unix
  -o smtpd_recipient_restrictions=$check_unix
  -o smtpd_end_of_data_restrictions=$check_unix
{spawn}cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
proxymap unix - - n - - proxymap
anvil unix - - n - 1 anvil
discard unix - - n - - discard
postlog unix-dgram n - n - 1 postlogd
""")

    def cmd(self, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([self.postfix, "-c", str(self.conf), *args], capture_output=True, text=True,
                              timeout=timeout, env=system_env())

    def start(self) -> None:
        self.proc = subprocess.Popen([self.postfix, "-c", str(self.conf), "start-fg"], env=system_env(),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        for port in self.ports:
            while True:
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                        s.noop()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"postfix did not start:\n{self.log()}")
                    time.sleep(0.1)

    def master_pid(self) -> int:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def stop(self) -> None:
        pid = self.master_pid()
        try:
            self.cmd("stop", timeout=30)
            if self.proc is not None:
                self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for group in (pid, self.proc.pid if self.proc is not None else 0):
                if group > 0:
                    try:
                        os.killpg(group, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="module")
def mail() -> Iterator[Tuple[Postfix, Policyd, Path]]:
    postfix = _need_postfix()
    # not under pytest's 0700 temporary root: Postfix's daemons run as user postfix
    d = Path(tempfile.mkdtemp(prefix="cdbrules-postfix-"))
    os.chmod(d, 0o755)
    pf = pd = None
    try:
        for sub in ("conf", "queue", "data"):
            (d / sub).mkdir()
        shutil.chown(d / "data", "postfix")
        cdb = d / "tcp.smtp.cdb"
        compile_rules(RULES, cdb)
        # the configuration first (postfix check makes the queue's private/ directory),
        # then policyd with its socket there, then Postfix
        spawn_log = d / "spawnlog" / "policyd.log"  # written by user nobody
        spawn_log.parent.mkdir(mode=0o1777)
        spawn_log.parent.chmod(0o1777)
        cdb.chmod(0o644)
        spawn_argv, _ = _spawn_argv(cdb, spawn_log)
        pf = Postfix(postfix, d, "inet:127.0.0.1:1", "unix:private/cdbrules-policyd", spawn_argv)
        r = pf.cmd("check")
        assert r.returncode == 0, r.stderr + pf.log()
        pd = Policyd(cdb, "--reload-interval", "0", "--valid-context", "valid", log=d / "policyd.log",
                     listen=["inet:127.0.0.1:0", f"unix:{pf.queue}/private/cdbrules-policyd"])
        main_cf = pf.conf / "main.cf"
        main_cf.write_text(main_cf.read_text().replace("inet:127.0.0.1:1", f"inet:127.0.0.1:{pd.port}"))
        pf.start()
        yield pf, pd, cdb
        assert "problem talking to" not in pf.log(), pf.log()
        assert "warning" not in pd.log_text(), pd.log_text()
        if spawn_argv:
            assert "warning" not in spawn_log.read_text(errors="replace")
    finally:
        if pf is not None:
            pf.stop()
            master = pf.master_pid()
            if master:
                assert not os.path.exists(f"/proc/{master}") or _zombie(master), "the Postfix master is still running"
        if pd is not None:
            assert pd.stop() == 0, pd.log_text()
        left = _processes_naming(str(d))  # spawned policyds end when Postfix closes their socket
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)
        assert not left, f"processes left running: {left}"


def _processes_naming(text: str, wait: float = 10) -> List[int]:
    """Live processes whose command line contains text, after up to wait seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or _zombie(int(entry)):
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(params=["inet", "unix", "spawn"])
def port(request: pytest.FixtureRequest, mail: Tuple[Postfix, Policyd, Path]) -> int:
    """The SMTP port whose smtpd asks policyd over TCP, over a UNIX socket, or through
    spawn(8) (cdbrules policyd on standard input/output, run as nobody)."""
    i = ["inet", "unix", "spawn"].index(request.param)
    if i >= len(mail[0].ports):
        pytest.skip(_spawn_argv(mail[2], Path("/dev/null"))[1])
    return mail[0].ports[i]


def smtp(port: int, client: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, source_address=(client, 0), timeout=30)
    s.ehlo("client.test")
    code, _ = s.mail("sender@client.test")
    assert code == 250
    return s


def rcpts(port: int, client: str, *addresses: str) -> List[Tuple[int, bytes]]:
    with smtp(port, client) as s:
        return [s.rcpt(a) for a in addresses]


def test_deny_is_reject(port: int) -> None:
    got = rcpts(port, "127.0.0.2", LOCAL, REMOTE)
    assert [c for c, _ in got] == [554, 554]
    assert all(b"Access denied" in t for _, t in got)


def test_rblsmtpd_dash_is_reject(port: int) -> None:
    (code, text), = rcpts(port, "127.0.0.3", LOCAL)
    assert code == 554 and text.endswith(b"blocked by the test list")


def test_rblsmtpd_text_is_defer(port: int) -> None:
    (code, text), = rcpts(port, "127.0.0.4", LOCAL)
    assert code == 450 and text.startswith(b"4.7.1") and text.endswith(b"try again later")


def test_relayclient_relays(port: int) -> None:
    with smtp(port, "127.0.0.5") as s:
        assert s.rcpt(REMOTE)[0] == 250
        assert s.rcpt(LOCAL)[0] == 250
        code, text = s.data(b"Subject: relayed\r\n\r\nthrough the rules\r\n")
        assert code == 250, text
    with smtp(port, "127.0.0.8") as s:  # RBLSMTPD="" blocks nothing
        assert s.rcpt(REMOTE)[0] == 250


def test_no_relayclient_no_relay(port: int) -> None:
    with smtp(port, "127.0.0.9") as s:
        code, text = s.rcpt(REMOTE)
        assert code == 554 and b"Relay access denied" in text
        assert s.rcpt(LOCAL)[0] == 250
        code, text = s.data(b"Subject: local\r\n\r\nfor a local user\r\n")
        assert code == 250, text


def test_rcptlimit_per_connection(port: int) -> None:
    with smtp(port, "127.0.0.6") as s:
        assert s.rcpt("a@local.test")[0] == 250
        s.rset()  # a new transaction, the same connection: the count goes on
        assert s.mail("other@client.test")[0] == 250
        assert s.rcpt("b@local.test")[0] == 250
        code, text = s.rcpt("c@local.test")  # chkuser: the 3rd of a limit of 3 is refused
        assert code == 550 and text.startswith(b"5.5.3") and b"maximum number of recipients" in text
        code, text = s.rcpt("d@local.test")
        assert code == 550 and b"violating our security policies" in text
    # a new connection starts from zero
    assert [c for c, _ in rcpts(port, "127.0.0.6", "e@local.test", "f@local.test")] == [250, 250]


def test_wrong_recipients_per_connection(port: int, mail: Tuple[Postfix, Policyd, Path]) -> None:
    """CHKUSER_WRONGRCPTLIMIT=2: recipients Postfix refuses (no such user) are counted
    through the confirming call (policy_context=valid) after reject_unlisted_recipient."""
    if mail[0].ports.index(port) == 2:
        # smtpd opens one connection per check_policy_service (the valid call is another),
        # and spawn runs a policyd per connection: the two calls never meet, so wrong
        # recipients are not counted there (docs/policyd.md, "What Postfix is told")
        with smtp(port, "127.0.0.12") as s:
            got = [s.rcpt(a)[0] for a in ("bad1@local.test", "good1@local.test", "bad2@local.test",
                                           "good2@local.test", "bad3@local.test", "good3@local.test")]
        assert got == [550, 250, 550, 250, 550, 250]
        return
    with smtp(port, "127.0.0.12") as s:
        code, text = s.rcpt("bad1@local.test")
        assert code == 550 and b"User unknown" in text
        assert s.rcpt("good1@local.test")[0] == 250
        assert s.rcpt("bad2@local.test")[0] == 550  # the 2nd wrong one...
        code, text = s.rcpt("good2@local.test")  # ...makes chkuser refuse everything after it
        assert code == 550 and b"violating our security policies" in text
    assert [c for c, _ in rcpts(port, "127.0.0.12", "good3@local.test", "bad3@local.test", "good4@local.test")] == \
        [250, 550, 250]  # a new connection starts from zero


def test_databytes_at_end_of_message(port: int) -> None:
    with smtp(port, "127.0.0.7") as s:
        assert s.rcpt(LOCAL)[0] == 250
        code, text = s.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 20)
        assert code == 552 and text.startswith(b"5.3.4") and b"databytes" in text, text
        s.rset()
        assert s.mail("sender@client.test")[0] == 250
        assert s.rcpt(LOCAL)[0] == 250
        code, text = s.data(b"Subject: small\r\n\r\nshort\r\n")
        assert code == 250, text


def test_recompiled_rules_apply_to_the_next_client(mail: Tuple[Postfix, Policyd, Path]) -> None:
    pf, pd, cdb = mail
    for port in pf.ports:
        assert rcpts(port, "127.0.0.10", LOCAL)[0][0] == 250
    compile_rules(RULES.replace(":allow,", "127.0.0.10:deny\n127.0.0.11:allow,RELAYCLIENT=\"\"\n:allow,", 1), cdb)
    for port in pf.ports:
        assert rcpts(port, "127.0.0.10", LOCAL)[0][0] == 554
        assert rcpts(port, "127.0.0.11", REMOTE)[0][0] == 250
    compile_rules(RULES, cdb)
    for port in pf.ports:
        assert rcpts(port, "127.0.0.10", LOCAL)[0][0] == 250
        assert rcpts(port, "127.0.0.11", REMOTE)[0][0] == 554


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "postfix"


def test_example_configuration_is_what_postfix_reads(tmp_path: Path) -> None:
    """examples/postfix/main.cf and master.cf, both ways, as postconf reads them."""
    _need_postfix()
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    main = (EXAMPLES / "main.cf").read_text()
    shutil.copy(EXAMPLES / "master.cf", tmp_path / "master.cf")
    relay = "check_policy_service { inet:127.0.0.1:10040, policy_context=relay }, reject_unauth_destination"
    for way, text in (("inet", main), ("spawn", main.replace("inet:127.0.0.1:10040", "unix:private/cdbrules-policyd")
                                       .replace("#cdbrules-policyd_time_limit", "cdbrules-policyd_time_limit"))):
        (tmp_path / "main.cf").write_text(text)
        r = subprocess.run([postconf, "-c", str(tmp_path), "-n"], capture_output=True, text=True, timeout=60,
                           env=system_env())
        assert r.returncode == 0 and r.stderr == "", (way, r.stderr)
        target = "inet:127.0.0.1:10040" if way == "inet" else "unix:private/cdbrules-policyd"
        assert f"smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, " \
               f"{relay.replace('inet:127.0.0.1:10040', target)}" in r.stdout
        assert f"smtpd_recipient_restrictions = check_policy_service {target}\n" in r.stdout
        assert f"smtpd_end_of_data_restrictions = check_policy_service {target}\n" in r.stdout
        assert ("cdbrules-policyd_time_limit = 3600s" in r.stdout) == (way == "spawn")
    r = subprocess.run([postconf, "-c", str(tmp_path), "-M", "cdbrules-policyd/unix"], capture_output=True, text=True,
                       timeout=60, env=system_env())
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.split() == ["cdbrules-policyd", "unix", "-", "n", "n", "-", "0", "spawn", "user=nobody",
                                "argv=/usr/local/bin/cdbrules", "policyd", "/etc/tcprules.d/tcp.smtp.cdb"]
