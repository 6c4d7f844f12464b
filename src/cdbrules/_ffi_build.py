"""Build the cffi extension ``cdbrules._native`` from ``csrc/`` (API mode, out of line).

The declarations come from ``csrc/cdbrules_cdef.h``; cffi checks them against the
real headers while compiling.  Environment switches:

* ``CDBRULES_WERROR=1``: ``-Werror`` (CI and wheel builds);
* ``CDBRULES_SANITIZE=1``: AddressSanitizer + UndefinedBehaviorSanitizer, no optimisation
  beyond ``-O1``, frame pointers kept (run the tests with the runtime preloaded:
  see ``.ci/asan``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
# setuptools wants paths relative to the project root, where every build runs.
SOURCES = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.c"))
if not SOURCES:
    raise SystemExit(f"cdbrules: no C sources in {CSRC}: build from a source tree or an sdist")

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "cdbrules_cdef.h").read_text())

flags = ["-std=c99", "-D_POSIX_C_SOURCE=200809L"]
link: list[str] = []
if sys.platform != "win32":
    flags += ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    if os.environ.get("CDBRULES_WERROR") == "1":
        flags.append("-Werror")
    if os.environ.get("CDBRULES_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
        flags += san + ["-O1", "-g"]
        link += san
    else:
        flags.append("-O2")

ffibuilder.set_source(
    "cdbrules._native",
    '#include "cdb.h"\n#include "cdb_make.h"\n#include "rules_parse.h"\n'
    '#include "rules_lookup.h"\n#include "iptext.h"\n'
    '#include "cdbmake_parse.h"\n#include "cdb_dump.h"\n#include "cdb_stats.h"\n',
    sources=SOURCES,
    include_dirs=["csrc"],
    extra_compile_args=flags,
    extra_link_args=link,
)

