"""An installed wheel runs the pipeline compiled by mypyc; a checkout runs its .py files (setup.py says why).

The modules are the ones pyproject.toml lists ([tool.ivig-safety] mypyc-modules). .ci/run sets
IVIG_SAFETY_EXPECT_COMPILED=1 for its runs against the installed package.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

import pytest

import ivig_safety

ROOT = Path(__file__).resolve().parent.parent
MODULES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ivig-safety"][
    "mypyc-modules"]


def compiled(name: str) -> bool:
    spec = importlib.import_module(name).__spec__
    return spec is not None and isinstance(spec.loader, ExtensionFileLoader)


@pytest.mark.skipif(os.environ.get("IVIG_SAFETY_EXPECT_COMPILED") != "1",
                    reason="IVIG_SAFETY_EXPECT_COMPILED=1 is not set (.ci/run sets it for the installed wheel's runs)")
def test_every_listed_module_is_compiled() -> None:
    assert MODULES and [name for name in MODULES if not compiled(name)] == []
    assert ivig_safety.compiled


def test_a_checkout_runs_its_sources() -> None:
    """A compiled module beside its .py (an old build's, or one copied by hand) would run instead of the source."""
    if not (Path(ivig_safety.__file__).resolve().parent.parent / "setup.py").is_file():
        pytest.skip("ivig_safety is imported from an installed package, not from a checkout")
    assert [name for name in MODULES if compiled(name)] == []
    assert not ivig_safety.compiled


def test_no_listed_module_imports_a_runtime_dependency() -> None:
    """mypyc type-checks the listed modules in the build's own environment, where a fresh venv has not installed
    pydantic, orjson and the rest yet: a listed module that imports one fails the build there (import-not-found) while
    building fine where they are installed. Each may import the standard library and ivig_safety only."""
    import ast
    import sys

    offending = []
    for name in MODULES:
        # the package's own sources: the checkout's, or the .py files an installed wheel carries beside its modules
        source = Path(ivig_safety.__file__).resolve().parent.parent / (name.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.partition(".")[0]]
            else:
                continue
            offending += [f"{name}: {top}" for top in tops
                          if top not in sys.stdlib_module_names and top not in ("ivig_safety", "__future__")]
    assert offending == []
