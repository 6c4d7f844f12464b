"""The README's figures are what their generators say (nothing typed by hand drifts):

* the prose about the benchmark targets is what ``bench/report.py`` reads from the
  README's own tables (``--notes-from-readme`` rewrites it);
* the replay figures are what ``fuzz/report.py`` computes from the committed corpora, the
  counts test_fuzz_regressions compares (``--write-readme`` rewrites them).
"""

from __future__ import annotations

from helpers import ROOT, load_script, replay_counts

README = ROOT / "README.md"


def test_bench_prose_is_read_from_the_tables() -> None:
    bench = load_script(ROOT / "bench" / "report.py")
    text = README.read_text()
    tables = bench.parse_tables(bench.between(text, bench.START, bench.END))
    assert "Key lookup, hit (10k)" in tables and "cdbx get" in tables["Key lookup, hit (10k)"]
    prose = bench.between(text, bench.NOTES_START, bench.NOTES_END)
    assert prose == "\n" + bench.notes(tables), "run: python bench/report.py --notes-from-readme"


def test_bench_notes_follow_the_figures() -> None:
    """notes() really reads the tables: another figure in a table, another figure in the prose."""
    bench = load_script(ROOT / "bench" / "report.py")
    tables = bench.parse_tables(bench.between(README.read_text(), bench.START, bench.END))
    row = tables["Key lookup, hit (10k)"]["floor bare cffi call"]
    before = bench.notes(tables)
    assert f"takes {row['minus loop']}:" in before
    row["minus loop"] = "99 ns"
    assert "takes 99 ns:" in bench.notes(tables)


def test_replay_figures_are_the_corpus_counts() -> None:
    fuzz = load_script(ROOT / "fuzz" / "report.py")
    block = fuzz.render(replay_counts(), None)
    text = README.read_text()
    written = text[text.index(fuzz.START) + len(fuzz.START):text.index(fuzz.END)]
    para = fuzz.replay_text(replay_counts())
    assert para in written, "run: python fuzz/report.py --write-readme"
    assert para in block
