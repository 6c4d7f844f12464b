"""Write the manual page cdbrules(1) from the command's own argparse parsers.

    python docs/make_man.py            # rewrite docs/cdbrules.1
    python docs/make_man.py --check    # exit 1 when docs/cdbrules.1 is not what this gives

Every subcommand in ``cdbrules.commands.COMMANDS`` is loaded in full (the command line
itself loads only the one it runs) and rendered with its usage line, description, epilog,
arguments and options, so a new subcommand or option changes the page;
``tests/test_docs.py`` fails until the page is regenerated.  The sections argparse does not
hold (exit status, environment, files, examples) are written here.  The page depends on
nothing but the parsers and the package version: no date, so the output is reproducible.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

PAGE = Path(__file__).resolve().parent / "cdbrules.1"


# -- roff text ------------------------------------------------------------------------------


def esc(text: str) -> str:
    """Plain text as roff: backslashes escaped, and no line may start with '.' or "'"."""
    text = text.replace("\\", "\\e")
    return re.sub(r"(?m)^([.'])", r"\\&\1", text)


def opt(text: str) -> str:
    """Command-line text (options, usage): every '-' is a real hyphen-minus, as in a shell."""
    return esc(text).replace("-", "\\-")


def para(text: str) -> List[str]:
    """A paragraph of help text: one roff line per sentence (roff fills and spaces them)."""
    text = " ".join(text.split())
    return [esc(s) for s in re.split(r"(?<=[.:;!?])\s+(?=[A-Z(`'\"])", text) if s]


# -- the parsers ---------------------------------------------------------------------------


def subparsers(top: argparse.ArgumentParser) -> "argparse._SubParsersAction[argparse.ArgumentParser]":
    for a in top._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a
    raise SystemExit("make_man: the cdbrules parser has no subcommands")


def command_parsers() -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, full parser) of every subcommand, in ``cdbrules --help`` order."""
    from cdbrules.cli import build_parser
    from cdbrules.commands import COMMANDS

    for name, cmd in COMMANDS.items():
        full = subparsers(build_parser([name])).choices[name]
        yield name, cmd.help, full


def usage(p: argparse.ArgumentParser) -> str:
    text = p.format_usage().strip()
    return " ".join(text.removeprefix("usage:").split())


def invocation(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    return p._get_formatter()._format_action_invocation(a)


def help_text(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    text = a.help or ""
    if "%" in text:
        params = dict(vars(a), prog=p.prog)
        if isinstance(params.get("choices"), (list, tuple, set, dict)):
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    return text


def actions(p: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """(invocation, help) of each argument and option, positionals first, --help last."""
    shown = [a for a in p._actions if a.help != argparse.SUPPRESS]
    positionals = [a for a in shown if not a.option_strings]
    options = [a for a in shown if a.option_strings and not isinstance(a, argparse._HelpAction)]
    helps = [a for a in shown if isinstance(a, argparse._HelpAction)]
    for a in positionals + options + helps:
        yield invocation(p, a), help_text(p, a)


# -- the page ------------------------------------------------------------------------------

EXIT_STATUS = [
    ("0", "Success. For check, whether the connection is allowed or denied: the answer is on "
          "standard output."),
    ("1", "Only for the commands whose description says so (a finding or a difference was "
          "reported)."),
    ("100", "A permanent error: bad usage (with a usage line), a bad rules line (naming the "
            "file and the line), a refused TMP, or for get, no such record."),
    ("111", "A temporary or system error: a file that cannot be read or written, a damaged "
            "cdb file, out of memory. The message names the file."),
]

ENVIRONMENT = [
    ("TCPREMOTEIP", "check without IP: the client's address (0.0.0.0 when unset), as "
                    "tcprulescheck reads it."),
    ("TCPREMOTEHOST", "check without IP: the client's host name; absent when unset."),
    ("TCPREMOTEINFO", "check without IP: the client's ident answer; absent when unset."),
]

FILES = [
    ("/etc/tcprules.d/tcp.smtp", "rules text, as qmail installations keep it (compile reads it)."),
    ("/etc/tcp.smtp.cdb", "the compiled rules that tcpserver -x reads for each connection."),
    ("/etc/tcp.smtp.tmp", "the temporary file compile writes and renames over the cdb file; it "
                          "must be in the same file system."),
]

EXAMPLES = [
    ("Compile qmail's SMTP rules, as qmailctl cdb does with tcprules:",
     "cdbrules compile /etc/tcp.smtp.cdb /etc/tcp.smtp.tmp < /etc/tcprules.d/tcp.smtp"),
    ("Show which rule a client gets, and every key tried:",
     "cdbrules check \\-\\-explain /etc/tcp.smtp.cdb 192.0.2.7 mail.example.com"),
    ("The default rule of a compiled file:", "cdbrules get /etc/tcp.smtp.cdb \\(aq\\(aq"),
    ("Copy a cdb file record by record:", "cdbrules dump old.cdb | cdbrules make new.cdb new.tmp"),
]

SEE_ALSO = ["tcprules(1)", "tcprulescheck(1)", "tcpserver(1)", "cdbmake(1)", "cdbdump(1)",
            "cdbget(1)", "cdbstats(1)", "cdb(1)"]


def render() -> str:
    import cdbrules
    from cdbrules.cli import build_parser

    top = build_parser([])
    cmds = list(command_parsers())
    out: List[str] = [
        '.\\" Generated by docs/make_man.py from the cdbrules parsers: do not edit.',
        f'.TH CDBRULES 1 "" "cdbrules {esc(cdbrules.__version__)}" "User Commands"',
        ".SH NAME",
        "cdbrules \\- " + esc("compile and check tcpserver access rules (the tcprules format) "
                              "and cdb files"),
        ".SH SYNOPSIS",
    ]
    for _, _, p in cmds:
        out += [".PP", "\\fB" + opt(usage(p)) + "\\fR"]
    out += [
        ".SH DESCRIPTION",
        *para(top.description or ""),
        ".PP",
        *para("compile, check, make, dump, get and stats are drop-ins for tcprules, "
              "tcprulescheck, cdbmake, cdbdump, cdbget and cdbstats: the same output files "
              "byte for byte, the same standard output, the same exit codes, with messages "
              "that name the file and the line. The documentation in the source "
              "tree (docs/format.md, docs/lookup.md, docs/compatibility.md) describes the "
              "rules format, the lookup order and every difference from the classic programs."),
        ".SH COMMANDS",
    ]
    for name, oneline, p in cmds:
        summary = oneline[:1].upper() + oneline[1:] + "."
        out += [f".SS {name}", "\\fB" + opt(usage(p)) + "\\fR", ".PP", *para(summary)]
        if p.description:
            out += [".PP", *para(p.description)]
        for inv, text in actions(p):
            out += [".TP", "\\fB" + opt(inv) + "\\fR", *para(text)]
        if p.epilog:
            out += [".PP", *para(p.epilog)]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", *para(text)]
    out.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        out += [".TP", f"\\fB{var}\\fR", *para(text)]
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", f"\\fI{opt(path)}\\fR", *para(text)]
    out.append(".SH EXAMPLES")
    for text, command in EXAMPLES:
        out += [".PP", *para(text), ".PP", ".RS", ".nf", command, ".fi", ".RE"]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{s.split('(')[0]}\\fR({s.split('(')[1]}" for s in SEE_ALSO)]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/cdbrules.1 from the cdbrules parsers.")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the page is stale")
    ap.add_argument("-o", "--output", type=Path, default=PAGE, help="where to write (default: %(default)s)")
    ns = ap.parse_args(argv)
    page = render()
    if ns.check:
        current = ns.output.read_text() if ns.output.exists() else None
        if current != page:
            sys.stderr.write(f"{ns.output} is stale: run python docs/make_man.py\n")
            return 1
        return 0
    ns.output.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
