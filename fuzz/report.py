#!/usr/bin/env python3
"""The README's fuzzing figures, from what a reader can rerun.

    python fuzz/report.py                  # print the passage
    python fuzz/report.py --write-readme   # ... and put it into README.md
    python fuzz/report.py --summary FILE   # quote this fuzz/run summary instead

Two sources, nothing typed by hand:

* the last ``fuzz/run`` (its .cache/fuzz/summary.json: seconds, executions, exit status
  of each harness); without one the passage quotes no run;
* the committed corpora and what the test suite's replay of them compares with the
  reference programs (tests/helpers.py ``replay_counts``; test_fuzz_regressions asserts
  a floor on it, and tests/test_readme.py that the README says what it computes).

With --write-readme the text between ``<!-- fuzz:start -->`` and ``<!-- fuzz:end -->`` in
README.md is replaced (the markers must be there).  Run it with the package installed
(the counts use the tests' helpers, which import it): ``.venv/bin/python fuzz/report.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- fuzz:start -->", "<!-- fuzz:end -->"
HARNESSES = ("reader", "rules", "lookup")


def _fill(text: str, first: str = "", rest: str = "") -> str:
    """Wrap text at 90 columns, never inside a `code span` (a NUL holds its spaces)."""
    text = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    return textwrap.fill(text, 90, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False).replace("\0", " ")


def _count(n: float, unit: str) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M {unit}"
    return f"{n:,.0f} {unit}"


def run_text(summary: Optional[Dict[str, Any]]) -> List[str]:
    """The bullet on the last fuzz/run, or none."""
    if not summary:
        return []
    runs = [(n, summary["harnesses"][n]) for n in HARNESSES if n in summary.get("harnesses", {})]
    if not runs:
        return []
    parts = [f"{n} {r['seconds']:,} s, {_count(r['executions'], 'executions') if r.get('executions') else 'executions not reported'}"
             for n, r in runs]
    found = [n for n, r in runs if r.get("exit")]
    verdict = "found nothing" if not found else "found something in " + ", ".join(found)
    kind = "smoke run" if summary.get("smoke") else "run"
    return [_fill(f"The last {kind} recorded here ({summary.get('date', 'undated')}), under ASan and UBSan: "
                  + "; ".join(parts) + f": it {verdict}.", "- ", "  ")]


def replay_text(c: Any) -> str:
    """The paragraph on the replayed corpora, from helpers.replay_counts()."""
    full = c.reader_files - c.reader_short
    return _fill(
        f"**Replayed inputs.** The committed corpora (`fuzz/corpus/`: seeds, plus the units "
        f"libFuzzer's merge kept from earlier runs) hold {c.reader_files:,} cdb files, {c.rules_files:,} "
        f"rules files and {c.lookups:,} lookups. The test suite replays every one against the classic "
        f"programs: {c.reader_lookups:,} lookups in the {full:,} files that are at least a header long "
        f"against `cdbget` (damaged files included; the {c.reader_short:,} shorter ones must be refused), "
        f"{c.rules_files:,} rules files against `tcprules` ({c.rules_v6_whole:,} of them byte for byte "
        f"against the IPv6 build on the whole text, the rest against its run on the part before the "
        f"line it would hang on and against the IPv4 build), and {c.lookups:,} connections against "
        f"`tcprulescheck`. They agree except on two kinds of forged or truncated file, where "
        f"cdbrules reports a corrupt file instead of guessing. Both cases are pinned by tests.")


def render(counts: Any, summary: Optional[Dict[str, Any]]) -> str:
    lines = [
        "**Fuzzing.** The C core is fuzzed with libFuzzer under AddressSanitizer and UBSan.",
        "",
        "- Three harnesses cover it: the cdb reader gets any bytes as a file, the rules parser",
        "  gets any text, and the lookup gets any address, host and ident against any file.",
        "- Each harness checks its results against a plain model of the format, not only that",
        "  nothing crashes. The parser must also give the same answer when its text arrives in",
        "  pieces.",
        *run_text(summary),
        _fill("`fuzz/run [--smoke] [SECONDS] [reader|rules|lookup]` runs them, and CI runs "
              "`fuzz/run --smoke`. `python fuzz/report.py --write-readme` writes the figures of the "
              "last run here.", "- ", "  "),
        "",
        replay_text(counts),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", type=Path, default=ROOT / ".cache" / "fuzz" / "summary.json",
                   help="the fuzz/run summary to quote (default .cache/fuzz/summary.json, when there is one)")
    p.add_argument("--write-readme", nargs="?", const=ROOT / "README.md", type=Path, metavar="README",
                   help="replace the text between the fuzz markers in README.md (or the file given)")
    ns = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import helpers  # the replay's own counting (needs the package installed)

    summary = json.loads(ns.summary.read_text()) if ns.summary.is_file() else None
    text = render(helpers.replay_counts(), summary)
    print(text, end="")
    if ns.write_readme is not None:
        bench = helpers.load_script(ROOT / "bench" / "report.py")
        try:
            new = bench.replace_between(ns.write_readme.read_text(), START, END, text)
        except ValueError as e:
            sys.exit(f"fuzz/report.py: {ns.write_readme}: {e}; nothing written")
        ns.write_readme.write_text(new)
        print(f"fuzz/report.py: written to {ns.write_readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
