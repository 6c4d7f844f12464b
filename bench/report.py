#!/usr/bin/env python3
"""Run the benchmark suite (or read its JSON) and write the README's tables.

    python bench/report.py                       # run `pytest bench`, print the tables
    python bench/report.py --json run.json       # tables from an earlier run
    python bench/report.py --write-readme        # ... and put them into README.md, the chart into docs/
    python bench/report.py -- -k "get or rules"  # extra pytest arguments after --
    python bench/report.py --notes-from-readme   # only re-derive the prose from README's tables

The suite is run as ``pytest bench --benchmark-only --benchmark-disable-gc
--benchmark-json=FILE``; FILE defaults to .benchmarks/cdbrules-<date>.json.  With
--write-readme the text between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in
README.md is replaced (the markers must be there), and so is the prose about the targets
between ``<!-- bench-notes:start -->`` and ``<!-- bench-notes:end -->``: every figure in it
is read from those tables (``notes``), so it cannot drift from them; tests/test_readme.py
checks that it has not.  The scaling chart is drawn into docs/scaling.png (needs
matplotlib, in the bench extra).  Otherwise nothing is written, unless --chart names a file.

Numbers are medians.  Per-call rows (lookups) time a loop over many keys per round and
divide by their count, minus the group's empty-loop row; process rows are the wall time of
the whole process.  Ratios compare two rows of the same run (so the same machine and load);
absolute times depend on the machine, which the Machine line names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NOTES_START, NOTES_END = "<!-- bench-notes:start -->", "<!-- bench-notes:end -->"

# group prefix -> (order, title, what the rows mean)
GROUPS: Dict[str, Tuple[int, str, str]] = {
    "get-hit": (0, "Key lookup, hit", "ns per lookup of a present key (Reader.get vs cdbx, pure-cdb)"),
    "get-miss": (1, "Key lookup, miss", "ns per lookup of an absent key"),
    "rules-check": (2, "Rules lookup, open handle", "ns per connection: the rule that decides for an IPv4 address"),
    "rules-reopen": (3, "Rules lookup, file opened per connection (tcpserver's way)", "µs per connection"),
    "build": (4, "Building a cdb", "whole build, wall time"),
    "compile": (5, "Compiling rules text", "whole process, wall time"),
    "policyd": (6, "Postfix policy requests", "per request: cdbrules policyd beside the same server answering DUNNO with no lookup"),
    "smtp": (7, "SMTP connections over loopback", "per connection: connect, greeting, EHLO, QUIT (wall time)"),
    "compile-cidr": (8, "Compiling networks (compile --cidr)",
                     "whole process, wall time; tcprules compiles the `cdbrules expand` text of the same networks"),
    "rules-check-cidr": (9, "Rules lookup on the file compiled with --cidr",
                         "ns per connection, IPv4 clients, half inside a listed network"),
}
CHART = ROOT / "docs" / "scaling.png"


# -- reading a run --------------------------------------------------------------------------


class Row:
    def __init__(self, b: Dict[str, Any]) -> None:
        info = b.get("extra_info", {})
        self.info: Dict[str, Any] = info
        self.group: str = b.get("group") or "?"
        self.lib: str = info.get("lib", b["name"])
        self.what: str = info.get("what", "")
        self.per: int = int(info.get("per") or 1)
        self.floor: bool = bool(info.get("floor"))
        self.subtract: Optional[str] = info.get("subtract")
        self.baseline: bool = bool(info.get("baseline"))
        self.rss_kb: Optional[int] = info.get("peak_rss_kb")
        self.cpu_s: Optional[float] = info.get("cpu_s")
        self.cpu_paired: Optional[float] = info.get("cpu_paired")  # policyd over floor, rounds alternating
        self.wall_paired: Optional[float] = info.get("wall_paired")  # the same for the wall time
        self.wall_pairs: List[float] = list(info.get("wall_pair_ratios") or [])  # each round's, policyd over floor
        self.median: float = b["stats"]["median"]
        self.rounds: int = b["stats"]["rounds"]
        self.net: float = self.median / self.per  # per operation, floor subtracted (set later)

    @property
    def label(self) -> str:
        return f"{self.lib} {self.what}".strip()


def load(path: Path) -> Tuple[Dict[str, List[Row]], Dict[str, Any]]:
    data = json.loads(path.read_text())
    groups: Dict[str, List[Row]] = {}
    for b in data.get("benchmarks", []):
        r = Row(b)
        groups.setdefault(r.group, []).append(r)
    for rows in groups.values():
        by_label = {r.label: r for r in rows}
        for r in rows:
            fl = by_label.get(r.subtract) if r.subtract else None
            if fl is not None:
                r.net = (r.median - fl.median / fl.per * r.per) / r.per
    return groups, data.get("machine_info", {})


def _group_key(name: str) -> Tuple[int, float, str]:
    prefix, _, size = name.rpartition("-")
    order = GROUPS.get(prefix, (99, "", ""))[0]
    mult = {"k": 1e3, "M": 1e6}.get(size[-1:], 1)
    try:
        n = float(size[:-1]) * mult if size[-1:] in "kM" else float(size)
    except ValueError:
        n = 0.0
    return order, n, name


# -- formatting ------------------------------------------------------------------------------


def fmt_time(s: float) -> str:
    a = abs(s)
    if a < 1e-6:
        return f"{s * 1e9:,.0f} ns"
    if a < 1e-3:
        return f"{s * 1e6:,.1f} µs"
    if a < 1:
        return f"{s * 1e3:,.1f} ms" if a < 10e-3 else f"{s * 1e3:,.0f} ms"
    return f"{s:.2f} s"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int]) -> List[str]:
    out = ["| " + " | ".join(header) + " |"]
    out.append("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def group_table(name: str, rows: List[Row]) -> List[str]:
    prefix, _, size = name.rpartition("-")
    _, title, what = GROUPS.get(prefix, (99, name, ""))
    base = next((r for r in rows if r.baseline), None)
    per_call = any(r.per > 1 for r in rows)
    has_rss = any(r.rss_kb for r in rows)
    header = ["library", "operation", "median" + (" per call" if per_call else "")]
    if per_call:
        header.append("minus loop")
    header.append(f"vs {base.label}" if base else "ratio")
    if has_rss:
        header += ["peak RSS", "CPU"]
    body = []
    for r in sorted(rows, key=lambda r: (not r.floor, r.net)):
        cells = [r.lib if not r.floor else f"*{r.lib}*", r.what, fmt_time(r.median / r.per)]
        if per_call:
            cells.append(fmt_time(r.net) if r.subtract else "")
        if base is None or r.floor:
            cells.append("")
        elif r is base:
            cells.append("1.00× (baseline)")
        else:
            cells.append(fmt_ratio(r.net / base.net) if base.net > 0 else "")
        if has_rss:
            cells.append(f"{r.rss_kb / 1024:,.0f} MiB" if r.rss_kb else "")
            cells.append(f"{r.cpu_s:.2f} s" if r.cpu_s is not None else "")
        body.append(cells)
    right = list(range(2, len(header)))
    return [f"#### {title} ({size}): {what}", ""] + _table(header, body, right) + [""]


# -- targets (issue #6) ----------------------------------------------------------------------


def _find(groups: Dict[str, List[Row]], group: str, label: str) -> Optional[Row]:
    for r in groups.get(group, []):
        if r.label == label:
            return r
    return None


def targets(groups: Dict[str, List[Row]], big: str, huge: str) -> List[List[str]]:
    """[target, measured, met] for each target of issue #6."""
    out: List[List[str]] = []

    def ratio(target: str, a: Optional[Row], b: Optional[Row], limit: float, what: str, field: str = "net") -> None:
        if a is None or b is None:
            out.append([target, "not measured", "—"])
            return
        x = getattr(a, field) / getattr(b, field)
        notes = []
        pairs = a.wall_pairs + b.wall_pairs
        if pairs:  # rounds run side by side decide, not the two rows, which run one after the other
            notes.append(f"median of {len(pairs)} rounds, each beside the other server's, wall time; "
                         f"the two rows: {x:.2f}×")
            x = statistics.median(pairs)
        if a.cpu_s and b.cpu_s:  # processes: CPU time is steadier than wall on a busy machine
            notes.append(f"CPU time {a.cpu_s / b.cpu_s:.2f}×")
            paired = [f"{r.cpu_paired:.2f}×" for r in (a, b) if r.cpu_paired]
            if paired:
                notes.append(f"CPU time over rounds alternating with the other row's: {', '.join(paired)}")
            if not pairs:
                walls = [f"{r.wall_paired:.2f}×" for r in (a, b) if r.wall_paired]
                if walls:
                    notes.append(f"wall time, round by round: {', '.join(walls)}")
        text = f"{x:.2f}× {what}" + (f" ({'; '.join(notes)})" if notes else "")
        out.append([target, text, "yes" if x <= limit else "**no**"])

    def rss(target: str, a: Optional[Row], b: Optional[Row], limit: float) -> None:
        if a is None or b is None or not a.rss_kb or not b.rss_kb:
            out.append([target, "not measured", "—"])
            return
        x = a.rss_kb / b.rss_kb
        out.append([target, f"{x:.2f}× ({a.rss_kb / 1024:,.0f} vs {b.rss_kb / 1024:,.0f} MiB)",
                    "yes" if x <= limit else "**no**"])

    def absolute(target: str, a: Optional[Row], limit: float) -> None:
        if a is None:
            out.append([target, "not measured", "—"])
            return
        out.append([target, fmt_time(a.net), "yes" if a.net <= limit else "**no**"])

    cdbx_hit = _find(groups, "get-hit-10k", "cdbx get")
    ratio("Rules.check, IPv4, 1k-rule file ≤ 2.0× one cdbx get hit (10k file)",
          _find(groups, "rules-check-1k", "cdbrules Rules.check"), cdbx_hit, 2.0, "cdbx get")
    absolute(f"Rules.check on the {big}-prefix block list ≤ 600 ns",
             _find(groups, f"rules-check-{big}", "cdbrules Rules.check"), 600e-9)
    absolute("Rules.check_many ≤ 120 ns per lookup, 1k-rule file",
             _find(groups, "rules-check-1k", "cdbrules Rules.check_many"), 120e-9)
    for size in ("10k", big):
        ratio(f"Reader.get hit ≤ 1.5× cdbx get ({size} keys)",
              _find(groups, f"get-hit-{size}", "cdbrules Reader.get"),
              _find(groups, f"get-hit-{size}", "cdbx get"), 1.5, "cdbx get")
    c1 = _find(groups, f"compile-{big}", "cdbrules compile")
    t1 = _find(groups, f"compile-{big}", "tcprules v4")
    ratio(f"cdbrules compile ≤ 0.75× tcprules wall ({big} lines)", c1, t1, 0.75, "tcprules", "median")
    rss(f"cdbrules compile peak RSS ≤ 2× tcprules' ({big} lines)", c1, t1, 2.0)
    ratio(f"cdbrules compile, {huge} lines ≤ 10.5× its {big}-line time",
          _find(groups, f"compile-{huge}", "cdbrules compile"), c1, 10.5, f"the {big} time", "median")
    cc = _find(groups, f"compile-cidr-{big}", "cdbrules compile --cidr")
    ct = _find(groups, f"compile-cidr-{big}", "tcprules v6")
    ratio(f"compile --cidr ≤ 1.0× tcprules on the expand text ({big} networks)", cc, ct, 1.0, "tcprules", "median")
    rss(f"compile --cidr peak RSS ≤ 2× tcprules' ({big} networks)", cc, ct, 2.0)
    ratio(f"Rules.check on the --cidr file ≤ 1.0× the {big}-prefix row",
          _find(groups, f"rules-check-cidr-{big}", "cdbrules Rules.check"),
          _find(groups, f"rules-check-{big}", "cdbrules Rules.check"), 1.0, f"the {big}-prefix row")
    ratio("cdbrules policyd ≤ 1.2× the protocol floor's time per request (pipelined)",
          _find(groups, "policyd-pipelined", "cdbrules policyd 5000 requests written at once"),
          _find(groups, "policyd-pipelined", "floor: same server, DUNNO, no lookup 5000 requests written at once"),
          1.2, "the floor")
    ratio("cdbrules policyd ≤ 1.2× the protocol floor's time per request (round trips, as Postfix asks)",
          _find(groups, "policyd-roundtrip", "cdbrules policyd one request, one reply"),
          _find(groups, "policyd-roundtrip", "floor: same server, DUNNO, no lookup one request, one reply"),
          1.2, "the floor")
    ratio(f"cdbrules make ≤ 1.0× tinycdb cdb -c ({big} records)",
          _find(groups, f"build-{big}", "cdbrules make"), _find(groups, f"build-{big}", "tinycdb cdb -c"),
          1.0, "tinycdb", "median")
    paired = next(iter(groups.get("smtp-paired", [])), None)
    target = "RulesSMTP ≤ 1.03× plain aiosmtpd SMTP per connection (median of paired blocks, CPU time)"
    if paired is None or "paired_cpu_ratio" not in paired.info:
        out.append([target, "not measured", "—"])
    else:
        info = paired.info
        x = info["paired_cpu_ratio"]
        shown = f"{x:.3f}×"
        if "paired_cpu_ci" in info:  # runs before the confidence intervals have none
            lo, hi = info["paired_cpu_ci"]
            shown += f" (95% CI {lo:.3f}–{hi:.3f}×; wall time {info['paired_wall_ratio']:.3f}×"
            shown += (f"; server thread {info['server_cpu_ratio']:.3f}×, {info['server_extra_us']:+.1f} µs a "
                      f"connection: RulesSMTP's own work {info['own_server_extra_us']:+.1f} µs, less what its __dir__ "
                      f"saves aiosmtpd)")
        else:
            shown += f" (wall time {info['paired_wall_ratio']:.3f}×)"
        out.append([target, shown, "yes" if x <= 1.03 else "**no**"])
    return out


# -- the machine -------------------------------------------------------------------------------


def _cpu_now() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(mi: Dict[str, Any], when: str) -> str:
    info = mi.get("cdbrules") or {}
    cpu = info.get("cpu_model") or _cpu_now()
    cores = info.get("cores") or os.cpu_count()
    py = info.get("python") or mi.get("python_version") or platform.python_version()
    impl = info.get("implementation") or mi.get("python_implementation") or platform.python_implementation()
    kernel = info.get("kernel") or mi.get("release") or platform.release()
    date = info.get("date") or when
    parts = [f"{cpu}, {cores} cores", f"Linux {kernel}", f"{impl} {py}", date]
    load = info.get("loadavg_at_start")
    if load:
        parts.append(f"load average {load[0]:.1f} at start")
    if info.get("data_dir"):
        parts.append(f"data in {info['data_dir']}")
    vers = info.get("versions") or {}
    refs = info.get("refs") if isinstance(info.get("refs"), dict) else {}
    peers = [f"{k} {v}" for k, v in vers.items() if k in ("cdbrules", "cdbx", "pure-cdb", "pytricia")]
    peers += [f"{k} {v}" for k, v in refs.items() if k in ("tinycdb", "freecdb", "ucspi-tcp")]
    line = "**Machine:** " + "; ".join(parts) + "."
    if peers:
        line += " Versions: " + ", ".join(peers) + "."
    return line


def render(groups: Dict[str, List[Row]], mi: Dict[str, Any], when: str) -> str:
    info = mi.get("cdbrules") or {}
    big = _label(info.get("big") or 1_000_000)
    huge = _label(info.get("huge") or 10_000_000)
    lines = [machine_line(mi, when), ""]
    lines += [
        "Medians from one run of `python bench/report.py` (`pytest bench`); every ratio compares two rows of "
        "that same run. Per-call rows time a loop over many distinct keys per round and divide by their count; "
        "\"minus loop\" subtracts the bare Python loop (the *floor empty loop* row) and the ratios use that "
        "figure. Process rows are the wall time of the whole process. Rows in *italics* are floors, for scale.",
        "",
        "#### Targets",
        "",
    ]
    lines += _table(["target", "measured", "met"], targets(groups, big, huge), [1]) + [""]
    for name in sorted(groups, key=_group_key):
        # smtp-paired is a target line, the scale-* groups the chart's points: not tables
        if name != "smtp-paired" and not name.startswith("scale-"):
            lines += group_table(name, groups[name])
    return "\n".join(lines).rstrip() + "\n"


def _size(label: str) -> float:
    mult = {"k": 1e3, "M": 1e6}.get(label[-1:], 1.0)
    return float(label[:-1] if label[-1:] in "kM" else label) * mult


def _series(groups: Dict[str, List[Row]], prefixes: Sequence[str], label: str, field: str) -> List[Tuple[float, float]]:
    """(size, value) points of the row called label in the groups named PREFIX-<size>; for a
    size in groups of several prefixes, the first prefix's (rules-check-1k is the tcp.smtp-like
    file, scale-check-1k the block list the chart means)."""
    pts: Dict[float, Tuple[int, float]] = {}
    for name, rows in groups.items():
        prefix, _, size = name.rpartition("-")
        if prefix not in prefixes:
            continue
        try:
            n = _size(size)
        except ValueError:
            continue
        rank = list(prefixes).index(prefix)
        for r in rows:
            if r.label == label and (n not in pts or rank < pts[n][0]):
                pts[n] = (rank, getattr(r, field))
    return sorted((n, v) for n, (_, v) in pts.items())


def draw_chart(groups: Dict[str, List[Row]], path: Path, machine: str) -> bool:
    """Compile time against lines, and Rules.check cost against prefixes, on log axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: no matplotlib (pip install -e '.[bench]'): no chart drawn", file=sys.stderr)
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, name, style in (("cdbrules compile", "cdbrules compile", "o-"), ("tcprules v4", "tcprules", "s--")):
        pts = _series(groups, ("scale-compile", "compile"), label, "median")
        if pts:
            left.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
    left.set(xscale="log", yscale="log", xlabel="rules lines", ylabel="wall time, whole process (s)",
             title="Compiling rules text")
    for label, name, style in (("cdbrules Rules.check", "cdbrules Rules.check", "o-"),
                               ("python+cdbx probes", "the same probes over cdbx", "s--"),
                               ("pytricia get", "pytricia get", "^:")):
        pts = _series(groups, ("scale-check", "rules-check"), label, "net")
        if pts:
            right.plot([p[0] for p in pts], [p[1] * 1e9 for p in pts], style, label=name)
    right.set(xscale="log", xlabel="/24 prefixes in the block list", ylabel="ns per connection",
              title="Rules lookup, open handle")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    import textwrap

    fig.suptitle(textwrap.fill(machine, 180), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"report: chart written to {path}", file=sys.stderr)
    return True


def _label(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


# -- the prose about the targets, from the tables ------------------------------------------------

Tables = Dict[str, Dict[str, Dict[str, str]]]


def parse_tables(text: str) -> Tables:
    """The tables of a rendered report: "Title (size)" -> row label -> column -> cell.
    Row labels are "library operation", with floor rows' italics dropped."""
    tables: Tables = {}
    rows: Dict[str, Dict[str, str]] = {}
    header: List[str] = []
    for line in text.splitlines():
        if line.startswith("#### "):
            rows, header = {}, []
            tables[line[5:].split(":", 1)[0]] = rows
        elif line.startswith("| ") and not header:
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            row = dict(zip(header, cells))
            rows[f"{cells[0].strip('*')} {cells[1]}".strip()] = row
    return tables


def cell_seconds(cell: str) -> float:
    """A time cell of the tables ("132 ns", "1.3 µs", "146 ms", "1.17 s") in seconds."""
    m = re.fullmatch(r"([0-9.,]+) (ns|µs|ms|s)", cell)
    if not m:
        raise ValueError(f"not a time: {cell!r}")
    return float(m.group(1).replace(",", "")) * {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def cell_number(cell: str) -> float:
    """The number a ratio, memory or CPU cell starts with ("2.79×", "22 MiB", "0.15 s")."""
    m = re.match(r"[0-9.,]+", cell)
    if not m:
        raise ValueError(f"not a number: {cell!r}")
    return float(m.group(0).replace(",", ""))


def notes(tables: Tables) -> str:
    """Where the targets are missed, and why: every figure is read from the tables."""
    sizes = sorted({k.rsplit("(", 1)[1].rstrip(")") for k in tables if k.startswith("Compiling rules text")},
                   key=lambda s: float(s[:-1]) * {"k": 1e3, "M": 1e6}.get(s[-1], 1) if s[-1] in "kM" else float(s))
    big = sizes[0] if sizes else "1M"

    def net(group: str, label: str) -> float:
        row = tables[group][label]
        return cell_seconds(row.get("minus loop") or row["median per call"])

    def ns(seconds: float) -> str:
        return f"{seconds * 1e9:,.0f}\0ns"  # (a NUL keeps the figure and its unit on one line)

    hit, hit_big = tables["Key lookup, hit (10k)"], tables[f"Key lookup, hit ({big})"]
    bare, cdbx = net("Key lookup, hit (10k)", "floor bare cffi call"), net("Key lookup, hit (10k)", "cdbx get")
    probe, get = net("Key lookup, hit (10k)", "cffi cdb_get probe only"), net("Key lookup, hit (10k)", "cdbrules Reader.get")
    ratio_10k = hit["cdbrules Reader.get"]["vs cdbx get"]
    ratio_big = hit_big["cdbrules Reader.get"]["vs cdbx get"]
    met_big = "meets" if cell_number(ratio_big) <= 1.5 else "misses"
    check = net("Rules lookup, open handle (1k)", "cdbrules Rules.check")
    probes = net("Rules lookup, open handle (1k)", "python+cdbx probes")
    c_big = net(f"Rules lookup, open handle ({big})", "cffi rules_check_ip")
    bullets = [  # (depth, text)
        (0, "**Single-key lookups from Python pay cffi's fixed cost for every call.** The bare cffi "
            f"call, which does no work, takes {ns(bare)}: cffi packs the arguments into a tuple, converts "
            "each one, and releases and retakes the GIL. A whole cdbx `get`, a CPython C-API extension, "
            f"takes {ns(cdbx)}."),
        (1, f"`Reader.get` on the 10k file breaks down into the call ({ns(bare)}), the C probe "
            f"({ns(probe - bare)}), and the Python method and building the bytes ({ns(get - probe)}), "
            f"{ratio_10k} cdbx in all. On the {big} file, where memory latency dominates, it {met_big} "
            f"the 1.5× target ({ratio_big})."),
        (1, "`Rules.check` runs every probe in the one call and reuses decoded decisions, so it is "
            f"{probes / check:.1f}× faster than the same probes over cdbx. It is still {check / cdbx:.1f}× a "
            "single cdbx `get`."),
        (1, "Only a CPython C-API entry point would close the rest. That would be a second binding "
            "layer, which this package does not have."),
        (0, f"**The {big}-prefix block list is bound by memory latency.** The C lookup alone takes "
            f"{ns(c_big)}, with every probe's hash slot prefetched and most absent keys ruled out by "
            "the bitmap of the file's hashes: half the checks end at a record, two reads from main "
            "memory one after the other. Many of those records were not seen before, and each one's "
            "decision must be decoded once."),
    ]
    said = []
    for size in sizes:
        ours, ref = (tables[f"Compiling rules text ({size})"][k] for k in ("cdbrules compile", "tcprules v4"))
        said.append(f"on {size} lines cdbrules takes {ours['vs tcprules v4']} of tcprules' wall time, with "
                    f"{cell_number(ours['peak RSS']) / cell_number(ref['peak RSS']):.2f}× its peak memory")
    if said:
        bullets.append((0, "**Compiling rules text:** " + "; ".join(said) + "."))
    out = ["**Where targets are missed, and why** (every figure is read from the tables below):", ""]
    for depth, text in bullets:
        pad = "  " * depth
        out.append(textwrap.fill(text, 90, initial_indent=pad + "- ", subsequent_indent=pad + "  ",
                                 break_on_hyphens=False).replace("\0", " "))
    return "\n".join(out) + "\n"


# -- running and writing -----------------------------------------------------------------------


def run_suite(out: Path, extra: Sequence[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pytest", "bench", "-q", "--benchmark-only", "--benchmark-disable-gc",
            f"--benchmark-json={out}", *extra]
    print("running:", " ".join(argv), file=sys.stderr)
    rc = subprocess.call(argv, cwd=ROOT, stdout=sys.stderr)  # stdout: the tables only
    if rc != 0 or not out.exists():
        sys.exit(f"report: the benchmark run failed (pytest exited {rc})")


def between(text: str, start: str, end: str) -> str:
    """What stands between two markers of text (ValueError when they are missing)."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {start} ... {end} markers")
    return text[i + len(start):j]


def replace_between(text: str, start: str, end: str, new: str) -> str:
    between(text, start, end)
    i, j = text.find(start), text.find(end)
    return text[:i + len(start)] + "\n" + new + text[j:]


def write_readme(readme: Path, text: Optional[str]) -> None:
    """Put the tables (unless text is None: those already there) and the prose read from
    them into README."""
    old = readme.read_text()
    try:
        new = old if text is None else replace_between(old, START, END, text)
        new = replace_between(new, NOTES_START, NOTES_END, notes(parse_tables(between(new, START, END))))
    except ValueError as e:
        sys.exit(f"report: {readme}: {e}; nothing written")
    except KeyError as e:
        sys.exit(f"report: the tables lack {e}, which the prose reads (a partial run?); nothing written")
    readme.write_text(new)
    print(f"report: {'prose' if text is None else 'tables and prose'} written to {readme}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in args:
        k = args.index("--")
        args, extra = args[:k], args[k + 1:]
    p = argparse.ArgumentParser(prog="bench/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="read this pytest-benchmark JSON instead of running the suite")
    p.add_argument("--out", type=Path, help="where the run writes its JSON (default .benchmarks/cdbrules-<date>.json)")
    p.add_argument("--write-readme", nargs="?", const=ROOT / "README.md", type=Path, metavar="README",
                   help="replace the text between the bench markers in README.md (or the file given), "
                        f"and draw the scaling chart into {CHART.relative_to(ROOT)}")
    p.add_argument("--chart", type=Path, help="draw the scaling chart into this file")
    p.add_argument("--notes-from-readme", action="store_true",
                   help="run nothing: re-derive the prose between the bench-notes markers from README's tables")
    ns = p.parse_args(args)
    if ns.notes_from_readme:
        write_readme(ns.write_readme or ROOT / "README.md", None)
        return 0
    if ns.json is not None:
        path = ns.json
    else:
        path = ns.out or ROOT / ".benchmarks" / f"cdbrules-{time.strftime('%Y%m%d-%H%M%S')}.json"
        run_suite(path, extra)
    groups, mi = load(path)
    if not groups:
        sys.exit(f"report: {path} holds no benchmarks")
    when = time.strftime("%Y-%m-%d", time.localtime(path.stat().st_mtime))
    text = render(groups, mi, when)
    print(text)
    try:
        print(notes(parse_tables(text)))
    except KeyError as e:
        print(f"report: no prose on the targets: the tables lack {e} (a partial run?)", file=sys.stderr)
    if ns.write_readme is not None:
        write_readme(ns.write_readme, text)
    chart = ns.chart or (CHART if ns.write_readme is not None else None)
    if chart is not None:
        draw_chart(groups, chart, machine_line(mi, when).replace("**", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
