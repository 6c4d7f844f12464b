#!/usr/bin/env python3
"""A small SMTP server that obeys a qmail tcp.smtp and delivers into a Maildir.

    python examples/smtpd.py examples/tcp.smtp /tmp/Maildir --rcpthosts example.org

It compiles RULES (tcprules text) into RULES.cdb (or --cdb), as ``qmailctl cdb`` does, and
listens on 127.0.0.1:2525 (--listen).  Clients get what the rules say: denied clients a 554,
RBLSMTPD clients rblsmtpd's answers, RELAYCLIENT clients may relay, the others may only
send to the --rcpthosts domains (qmail's 553 otherwise), chkuser's limits and DATABYTES
apply.  Each accepted message goes into MAILDIR/new with a Received line naming the
client.  Recompile the rules while it runs (``cdbrules compile RULES.cdb RULES.tmp RULES``)
and the next connection obeys the new file.  The log lines (``ok``/``deny``, as
``tcpserver -v``) go to stderr.  Stop it with Ctrl-C.

Needs ``pip install 'cdbrules[aiosmtpd]'``.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import mailbox
import signal
import sys
import threading
from typing import Any, List

import cdbrules
from cdbrules.aiosmtpd import RulesController


class MaildirHandler:
    """Deliver every accepted message into one Maildir."""

    def __init__(self, path: str) -> None:
        self.maildir = mailbox.Maildir(path, create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        env = session.tcp_env  # the rule's variables over tcpserver's (TCPREMOTEIP, ...)
        received = (f"Received: from {session.host_name or 'unknown'} ([{env['TCPREMOTEIP']}])\r\n"
                    f"\tby {server.hostname} with {'ESMTP' if session.extended_smtp else 'SMTP'}; "
                    f"{email.utils.formatdate()}\r\n")
        head = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {', '.join(envelope.rcpt_tos)}\r\n"
        # A qmail-style server would hand the message to qmail-queue here, with the rule's
        # variables in its environment: env={**os.environ, **env} (QMAILQUEUE, DKSIGN, ...).
        key = self.maildir.add((head + received).encode() + envelope.original_content)
        logging.getLogger("smtpd").info("delivered %s from %s for %s", key, env["TCPREMOTEIP"], envelope.rcpt_tos)
        return "250 ok"


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description="An SMTP server obeying a tcp.smtp, delivering into a Maildir.")
    p.add_argument("rules", help="the rules in tcprules text (tcp.smtp)")
    p.add_argument("maildir", help="where messages go (created if missing)")
    p.add_argument("--cdb", help="the compiled rules (default: RULES.cdb)")
    p.add_argument("--listen", default="127.0.0.1:2525", help="address:port (default 127.0.0.1:2525)")
    p.add_argument("--rcpthosts", action="append", default=[], metavar="DOMAIN",
                   help="a domain clients without RELAYCLIENT may send to (repeatable; .example.org for subdomains)")
    p.add_argument("--hostname", default="localhost", help="the name in the greeting and TCPLOCALHOST")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own line per command
    cdb = args.cdb or args.rules + ".cdb"
    try:
        cdbrules.compile(args.rules, cdb)
    except (ValueError, OSError) as e:
        print(f"smtpd: {e}", file=sys.stderr)
        return 100 if isinstance(e, ValueError) else 111
    host, _, port = args.listen.rpartition(":")
    ctrl = RulesController(MaildirHandler(args.maildir), rules=cdb, hostname=host.strip("[]"), port=int(port),
                           rcpthosts=set(args.rcpthosts or ["localhost"]), server_hostname=args.hostname,
                           local_name=args.hostname)
    ctrl.start()
    print(f"smtpd: listening on {args.listen}, rules {cdb}, delivering into {args.maildir}", file=sys.stderr)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    ctrl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
