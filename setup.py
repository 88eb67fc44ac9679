"""Build steps pyproject.toml cannot declare: the vendored durable_rules C core, the pipeline compiled with mypyc, and
the rule files in the wheel.

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

* The hot path of every check, the modules listed in pyproject.toml (``[tool.ivig-safety] mypyc-modules``, with what a
  module must satisfy to be there), is compiled with mypyc (``mypyc.build.mypycify``, opt level 3; mypy is a build
  requirement) when a wheel is built: ``pip install .``, ``pip install '.[test]'``, ``python -m build``. Each listed
  module becomes a small extension that loads its code from ``ivig_safety__mypyc``, one shared library at the top of
  site-packages; the wheel still carries the .py files, but an extension module imports ahead of a .py of the same
  name. mypyc first type-checks the listed modules as ``mypy --follow-imports=silent`` does (the rest of the package
  is read for its types, not checked; the C it writes is the same whether or not the runtime dependencies are in the
  build environment), and any error fails the build: there is no silent fallback to pure Python.
  ``ivig_safety.compiled`` (and ``ivig-safety --version``) tells which one is running.

  - ``IVIG_SAFETY_PURE_PYTHON=1`` in the build's environment (``IVIG_SAFETY_PURE_PYTHON=1 pip install .``) builds
    without mypyc: the wheel runs the .py sources, as a checkout does. For a platform or Python mypyc cannot build
    for, or to compare the two. Empty or ``0`` compiles; any other value is refused.
  - Only a wheel is compiled. An editable install (``pip install -e .``) and ``build_ext --inplace`` build the
    durable_rules core alone, and no build copies a mypyc module next to the sources (as it does the core, below): a
    ``facts...so`` beside an edited ``facts.py`` would import ahead of it and silently run the old code. So a checkout
    runs its .py files and an installed wheel runs compiled code. Every build also deletes a compiled copy of a listed
    module found among the sources (left there by an older build or by hand), saying so.

* A build also leaves a copy of the compiled engine beside the package's sources (as an editable install does),
  because ``python -m pytest`` run from the repository imports the checkout's ivig_safety ahead of the installed
  one, and that must find its engine too. One file per interpreter (``..._durable_rules_engine.cpython-313-...so``),
  ignored by git, never put into an sdist or a wheel by build_py (MANIFEST.in excludes it). The engine is built from
  C that is not edited in a checkout, so that copy cannot go stale the way a compiled pipeline module would.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
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
    """build_py, plus rules/ copied into the built package as ivig_safety/_rules, and no Python file in the built
    package that the sources no longer have."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        self.remove_stale_modules()
        target = Path(self.build_lib, "ivig_safety", "_rules")
        if target.exists():
            shutil.rmtree(target)  # a rule file deleted from rules/ must not survive in an old build/
        shutil.copytree("rules", target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", ".*"))

    def remove_stale_modules(self) -> None:
        """build/lib is kept between builds and goes whole into a wheel: a module since moved or deleted from
        ivig_safety/ (the old flat layout's ivig_safety/facts.py, say) would ride along in every later wheel."""
        built = Path(self.build_lib, "ivig_safety")
        for path in sorted(built.rglob("*.py")):
            relative = path.relative_to(self.build_lib)
            if "_rules" not in relative.parts and not relative.exists():
                print(f"removing {path}: the sources no longer have {relative}", file=sys.stderr)
                path.unlink()


# The modules compiled by mypyc: listed once, in pyproject.toml, which says why these and what each must satisfy.
MYPYC_MODULES: list[str] = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["tool"]["ivig-safety"][
    "mypyc-modules"]
MYPYC_GROUP = "ivig_safety"  # the shared library: ivig_safety__mypyc.<suffix>, at the top of site-packages


def pure_python() -> bool:
    """IVIG_SAFETY_PURE_PYTHON: ``1`` builds without mypyc; unset, empty or ``0`` compiles; anything else is refused."""
    value = os.environ.get("IVIG_SAFETY_PURE_PYTHON", "").strip()
    if value not in ("", "0", "1"):
        sys.exit(f"IVIG_SAFETY_PURE_PYTHON={value!r}: set it to 1 to build without mypyc, or to 0 (or leave it unset) "
                 "to compile the pipeline")
    return value == "1"


PURE_PYTHON = pure_python()


def mypyc_extensions(target_dir: str) -> list[Extension]:
    """The listed modules, type-checked and translated to C by mypyc; its C sources written under ``target_dir``."""
    paths = [name.replace(".", "/") + ".py" for name in MYPYC_MODULES]
    hint = "(IVIG_SAFETY_PURE_PYTHON=1 builds without mypyc: see setup.py)"
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        sys.exit(f"error: mypyc cannot be imported ({exc}); it comes with mypy[mypyc], a build requirement in "
                 f"pyproject.toml {hint}")
    print(f"compiling with mypyc: {', '.join(MYPYC_MODULES)}", file=sys.stderr)
    try:
        # no .mypy_cache left in the checkout: mypyc does not build incrementally here, so it would never be read
        return mypycify(["--follow-imports=silent", f"--cache-dir={os.devnull}", *paths], opt_level="3",
                        target_dir=target_dir, group_name=MYPYC_GROUP)
    except SystemExit as exc:  # mypyc's way of failing, after printing the type errors
        print(f"error: mypyc could not compile the pipeline; the build stops here {hint}", file=sys.stderr)
        raise SystemExit(exc.code or 1) from None


def remove_stale_compiled_modules() -> None:
    """A compiled copy of a listed module among the sources would import ahead of its .py: delete it, saying so."""
    candidates = [Path(name.replace(".", "/")) for name in MYPYC_MODULES] + [Path(f"{MYPYC_GROUP}__mypyc")]
    for stem in candidates:
        for path in stem.parent.glob(f"{stem.name}.*"):
            if path.suffix in (".so", ".pyd"):
                print(f"removing {path}: a compiled module beside the sources would run instead of its .py",
                      file=sys.stderr)
                path.unlink()


class build_ext_also_in_tree(build_ext):
    """build_ext, plus the pipeline compiled by mypyc when a wheel is built, and the durable_rules core (alone) copied
    next to the package's sources.

    The mypyc extensions are named when the command is finalized and given their sources (the C that mypyc writes)
    only when it runs: egg_info and sdist finalize build_ext too, to list its sources, and must neither run mypyc
    nor list generated C. The distribution's own ext_modules is never changed, because editable_wheel finalizes a
    fresh build_ext (in editable mode) after egg_info has finalized one that was not.
    """

    mypyc_pending: list[Extension]

    def finalize_options(self) -> None:
        # inplace (--inplace, develop) and editable_mode (editable_wheel) are set by now
        self.mypyc_pending = []
        if not (self.inplace or self.editable_mode or PURE_PYTHON):
            self.mypyc_pending = [Extension(name, sources=[]) for name in [f"{MYPYC_GROUP}__mypyc", *MYPYC_MODULES]]
        ext_modules = self.distribution.ext_modules
        self.distribution.ext_modules = [*(ext_modules or []), *self.mypyc_pending]
        try:
            super().finalize_options()
        finally:
            self.distribution.ext_modules = ext_modules

    def get_source_files(self) -> list[str]:
        """What an sdist needs: never the C that mypyc generates."""
        everything = self.extensions
        self.extensions = [ext for ext in everything if ext not in self.mypyc_pending]
        try:
            return super().get_source_files()
        finally:
            self.extensions = everything

    def remove_stale_build_outputs(self) -> None:
        """build/lib is kept between builds and goes whole into a wheel: an extension this build does not make (a
        mypyc module before IVIG_SAFETY_PURE_PYTHON=1, or one taken off the list) must not ride along."""
        wanted = {os.path.abspath(path) for path in self.get_outputs()}
        for path in Path(self.build_lib).rglob("*"):
            if path.suffix in (".so", ".pyd") and os.path.abspath(path) not in wanted:
                print(f"removing {path}: an older build's, not made by this one", file=sys.stderr)
                path.unlink()

    def run(self) -> None:
        remove_stale_compiled_modules()
        if not self.inplace:
            self.remove_stale_build_outputs()
        if self.mypyc_pending:
            built = {ext.name: ext for ext in mypyc_extensions(os.path.join(self.build_temp, "mypyc"))}
            if sorted(built) != sorted(ext.name for ext in self.mypyc_pending):
                sys.exit(f"error: mypyc built {sorted(built)}, not the expected {[e.name for e in self.mypyc_pending]}")
            for ext in self.mypyc_pending:  # what mypyc set (sources, flags), not setuptools' own bookkeeping
                vars(ext).update({key: val for key, val in vars(built[ext.name]).items() if not key.startswith("_")})
        super().run()
        if not self.inplace and not self.editable_mode:  # those two already build it in the tree
            everything = self.extensions
            self.extensions = [durable_rules_engine]  # never a mypyc module: see the docstring
            try:
                self.copy_extensions_to_source()
            finally:
                self.extensions = everything


setup(ext_modules=[durable_rules_engine],
      cmdclass={"build_py": build_py_with_rules, "build_ext": build_ext_also_in_tree})
