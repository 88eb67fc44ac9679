"""Build steps pyproject.toml cannot declare: the vendored durable_rules C core, and the rule files in the wheel.

* ``ivig_safety._durable_rules_engine`` is durable_rules 2.0.28's C core and Python binding, compiled from the
  unmodified sources in third_party/durable_rules/ (see its README.md). Nothing in those files is edited; what
  they need for a current CPython and compiler is passed on the command line:

  - ``PyEval_CallObject=PyObject_CallObject``: Python 3.13 removed ``PyEval_CallObject`` (3.11 and 3.12 still
    define it as a macro, so the define is only given where the headers lack it);
  - ``PyInit_durable_rules_engine=PyInit__durable_rules_engine``: the binding's init function, renamed to the
    name the import system looks for in a module called ``_durable_rules_engine``;
  - ``-O2``: upstream's setup.py replaced CFLAGS with ``-std=c99 -D_GNU_SOURCE``, which built the core at -O0;
  - ``-std=c99 -D_GNU_SOURCE`` as upstream; and the diagnostics newer compilers turn into errors by default
    (GCC 14, Clang 16) kept as warnings, so a future compiler cannot fail the build on 2020 code.

* The rule files live in rules/ at the top of the repository, where pharmacists find them; a wheel carries them
  inside the package as ``ivig_safety/_rules`` (what ``check.bundled_rules_dir()`` looks for first). An editable
  install gets no copy: ``bundled_rules_dir()`` then falls back to the repository's rules/.

* A build also leaves a copy of the compiled engine beside the package's sources (as an editable install does),
  because ``python -m pytest`` run from the repository imports the checkout's ivig_safety ahead of the installed
  one, and that must find its engine too. One file per interpreter (``..._durable_rules_engine.cpython-313-...so``),
  ignored by git, never put into an sdist or a wheel by build_py (MANIFEST.in excludes it).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

CORE = "third_party/durable_rules/src"  # relative: setuptools refuses absolute source paths

define_macros = [
    ("_GNU_SOURCE", None),
    ("PyInit_durable_rules_engine", "PyInit__durable_rules_engine"),
]
if sys.version_info >= (3, 13):
    define_macros.append(("PyEval_CallObject", "PyObject_CallObject"))

durable_rules_engine = Extension(
    "ivig_safety._durable_rules_engine",
    sources=[f"{CORE}/rules/{name}.c" for name in ("json", "rete", "state", "events", "regex")]
    + [f"{CORE}/rulespy/rules.c"],
    depends=[f"{CORE}/rules/{name}.h" for name in ("json", "regex", "rete", "rules", "state")],
    include_dirs=[f"{CORE}/rules"],
    define_macros=define_macros,
    # after Python's own CFLAGS (and any in the environment), so these win
    extra_compile_args=[
        "-std=c99",
        "-O2",
        "-Wno-error=implicit-function-declaration",
        "-Wno-error=incompatible-pointer-types",
        "-Wno-error=int-conversion",
        "-Wno-deprecated-declarations",
    ],
)


class build_py_with_rules(build_py):
    """build_py, plus rules/ copied into the built package as ivig_safety/_rules."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib, "ivig_safety", "_rules")
        if target.exists():
            shutil.rmtree(target)  # a rule file deleted from rules/ must not survive in an old build/
        shutil.copytree("rules", target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", ".*"))


class build_ext_also_in_tree(build_ext):
    """build_ext, plus the built extension copied next to the package's sources."""

    def run(self) -> None:
        super().run()
        if not self.inplace and not self.editable_mode:  # those two already build it in the tree
            self.copy_extensions_to_source()


setup(ext_modules=[durable_rules_engine],
      cmdclass={"build_py": build_py_with_rules, "build_ext": build_ext_also_in_tree})
