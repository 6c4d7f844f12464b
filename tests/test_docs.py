"""The documentation in the repository: docs/ and the README.

* The man page docs/cdbrules.1 is what docs/make_man.py makes from the command's parsers
  (a new subcommand or option makes this fail until the page is regenerated), names every
  subcommand and option, and renders without a groff warning.
* Links stay inside the repository and resolve, headings included; every ``docs/X.md`` that
  code, tests or benchmarks cite exists and has the heading they quote; nothing refers to
  material outside the repository.
* The sdist ships docs/, and the wheel built from that sdist installs the man page in
  share/man/man1.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from helpers import system_env, under_asan, under_ci

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

if not (ROOT / "pyproject.toml").exists() or not DOCS.is_dir():
    pytest.skip("not a source checkout (the wheel tests copy tests/ and what they read, not the project)",
                allow_module_level=True)

# Pages the index links that other branches add (CIDR, lint, SMTP integrations).  At merge
# time each one lands and leaves this set; a page still listed here but present is an error.
PENDING: Set[str] = set()


# -- the man page ----------------------------------------------------------------------------


def make_man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_man", DOCS / "make_man.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_man_page_is_current() -> None:
    page = make_man().render()
    committed = (DOCS / "cdbrules.1").read_text()
    assert committed == page, "docs/cdbrules.1 is stale: run python docs/make_man.py and commit it"


def test_man_page_has_every_command_and_option() -> None:
    from cdbrules.cli import build_parser
    from cdbrules.commands import COMMANDS

    page = make_man().render()
    for name in COMMANDS:
        assert f"\n.SS {name}\n" in page, name
        sub = next(a for a in build_parser([name])._actions if a.dest == "command")
        parser = sub.choices[name]  # type: ignore[index]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag.replace("-", "\\-") in page, (name, flag)
            if not action.option_strings:
                assert f"\\fB{action.metavar or action.dest}\\fR" in page, (name, action.dest)


def test_man_page_renders_without_warnings() -> None:
    groff = shutil.which("groff")
    if groff is None:
        if under_ci():
            pytest.fail("groff is missing: .ci/run installs groff-base")
        pytest.skip("groff is not installed here (Debian: groff-base)")
    r = subprocess.run([groff, "-man", "-Tutf8", "-ww", str(DOCS / "cdbrules.1")],
                       capture_output=True, timeout=60, env=system_env(LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    text = re.sub(r".\x08", "", r.stdout.decode())  # no overstrike bold
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "FILES", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    assert "cdbrules compile [-h]" in text


# -- links and references --------------------------------------------------------------------


def slug(heading: str) -> str:
    """The anchor of a markdown heading, as GitHub makes it."""
    text = re.sub(r"[`*_]|<[^>]*>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(md: Path) -> Tuple[List[str], Set[str]]:
    """The heading texts of a markdown file, and their anchors (duplicates numbered)."""
    texts: List[str] = []
    anchors: Set[str] = set()
    seen: Dict[str, int] = {}
    fence = False
    for line in md.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#{1,6} +(.*?) *#*$", line)
        if m:
            text = re.sub(r"`", "", m.group(1))
            texts.append(text)
            s = slug(m.group(1))
            anchors.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return texts, anchors


def markdown_files() -> List[Path]:
    return [f for f in source_files() if f.suffix == ".md"]


def links(md: Path) -> Iterator[Tuple[int, str]]:
    fence = False
    for n, line in enumerate(md.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            yield n, target
        for target in re.findall(r"<(https?://[^>]+)>|(?<![(\w])(https?://\S+)", line):
            yield n, next(t for t in target if t)


def test_links_stay_in_the_repository_and_resolve() -> None:
    problems = []
    for md in markdown_files():
        for n, target in links(md):
            where = f"{md.relative_to(ROOT)}:{n}: {target}"
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                problems.append(f"{where}: links outside the repository")
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if ROOT not in dest.parents and dest != ROOT:
                problems.append(f"{where}: points outside the repository")
            elif not dest.exists():
                if dest.parent == DOCS and dest.name in PENDING:
                    continue
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in headings(dest)[1]:
                problems.append(f"{where}: no heading with that anchor in {dest.name}")
    assert not problems, "\n".join(problems)


def test_pending_pages_are_really_pending() -> None:
    landed = sorted(p for p in PENDING if (DOCS / p).exists())
    assert not landed, f"{landed} exist now: take them out of PENDING in tests/test_docs.py"


def source_files() -> List[Path]:
    """The repository's text files: tracked and new ones, none that git ignores."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True, timeout=60, env=system_env()).stdout
        names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not {".git", ".venv", ".cache", "build"} & set(p.relative_to(ROOT).parts)]
    files = []
    for n in names:
        p = ROOT / n
        text = p.suffix in (".py", ".c", ".h", ".md", ".toml", ".in", ".pyi", ".yml", ".1")
        if (text or p.name in ("test", "run", "asan")) and p.is_file():
            files.append(p)
    return files


def flatten(text: str) -> str:
    """Text with line breaks and comment leaders (#, *, //) turned into single spaces, so a
    reference wrapped over two comment lines reads as one."""
    return re.sub(r"[ \t]*\n[ \t]*(?:#+|\*|//)?[ \t]*", " ", text)


def test_docs_references_exist() -> None:
    """Every docs/X.md named in the repository exists, and every heading quoted with it
    (docs/lookup.md, "The lookup order") is a heading of that page."""
    problems = []
    cache: Dict[str, List[str]] = {}
    cited = 0
    me = Path(__file__).resolve()
    for f in source_files():
        if f.resolve() == me:
            continue
        text = flatten(f.read_text(errors="replace"))
        for m in re.finditer(r"docs/([\w.-]+\.md)\)?[,;:]?[ ]?\(?((?:\"[^\"]+\"[,;]? ?)*)", text):
            page = DOCS / m.group(1)
            if not page.exists():
                if m.group(1) not in PENDING:
                    problems.append(f"{f.relative_to(ROOT)}: docs/{m.group(1)} does not exist")
                continue
            known = cache.setdefault(page.name, headings(page)[0])
            for quoted in re.findall(r"\"([^\"]+)\"", m.group(2)):
                cited += 1
                if quoted not in known:
                    problems.append(f"{f.relative_to(ROOT)}: docs/{page.name} has no heading {quoted!r}")
    assert not problems, "\n".join(problems)
    assert cited >= 20  # the code and the tests do quote the headings they rely on


def test_nothing_refers_outside_the_repository() -> None:
    """The spec and notes the project was planned from are not in the repository: nothing
    may cite them (their facts live in docs/)."""
    me = Path(__file__).resolve()
    bad = re.compile("|".join([
        r"\.\./shared/", r"\bshared/(?:spec|notes)\b", r"\bspec(?:'s)? (?:section|\u00a7|\d)",
        r"\bsections? \d+(?:\.\d+)? of the spec", "\u00a7",
    ]), re.I)
    problems = []
    for f in source_files():
        if f.resolve() == me:
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if bad.search(line):
                problems.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not problems, "\n".join(problems)


# -- what the packages ship ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """The sdist, and the wheel built from that sdist, as `python -m build` makes them."""
    if under_asan():
        pytest.skip("packaging builds no C worth sanitizing; the ordinary run checks it")
    if importlib.util.find_spec("build") is None:
        if under_ci():
            pytest.fail("the 'build' package is missing: it is in the test extras")
        pytest.skip("the 'build' package is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       capture_output=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_sdist_ships_docs(dists: Tuple[Path, Path]) -> None:
    sdist, _ = dists
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    wanted = {str(p.relative_to(ROOT)) for p in DOCS.iterdir() if p.is_file() and p.suffix in (".md", ".1", ".py")}
    assert {"docs/format.md", "docs/lookup.md", "docs/compatibility.md", "docs/cdbrules.1",
            "docs/make_man.py"} <= wanted
    assert wanted <= names, sorted(wanted - names)


def test_wheel_installs_the_man_page(dists: Tuple[Path, Path]) -> None:
    _, wheel = dists
    with zipfile.ZipFile(wheel) as z:
        pages = [n for n in z.namelist() if n.endswith(".data/data/share/man/man1/cdbrules.1")]
        assert len(pages) == 1, z.namelist()
        assert z.read(pages[0]) == (DOCS / "cdbrules.1").read_bytes()
