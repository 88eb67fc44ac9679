"""The package's layers (issue #11) hold: model <- knowledge <- pipeline <- check <- formats <- batch <- service <- cli.

The contracts live in pyproject.toml ([tool.importlinter]) and are run here with import-linter, on the package as
imported (the checkout, or site-packages in CI's wheel run). A second test proves they bite: a copy of the package
with a lower layer importing a higher one, or two sibling modules importing each other, must break them. That only
pipeline/engine.py imports the compiled C core is checked directly: grimp sees no .py file for an extension module.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ivig_safety

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(ivig_safety.__file__).resolve().parent
LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command(sys.argv[1:])"


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        import importlinter  # noqa: F401
    except ImportError:
        pytest.fail("import-linter is not installed, so the layer contracts cannot be checked: "
                    "pip install -e '.[test]' (it is in the test extra)", pytrace=False)
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    return subprocess.run([sys.executable, "-c", LINT, "--config", str(cwd / "pyproject.toml"), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, f"import-linter found a broken layer contract:\n{done.stdout}\n{done.stderr}"
    assert "broken" in done.stdout and "0 broken" in done.stdout, done.stdout


def _copy_package(tmp_path: Path) -> Path:
    target = tmp_path / "ivig_safety"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "_rules"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return target


@pytest.mark.parametrize("module, line, contract", [
    ("model/bounds.py", "from ..check import Checker", "Layers"),  # a lower layer importing a higher one
    ("knowledge/fields.py", "from ..pipeline import facts", "Layers"),
    ("pipeline/dosing.py", "from . import findings", "No import cycles"),  # findings -> facts -> dosing -> findings
    ("cli/options.py", "from . import batch", "No import cycles"),  # cli/batch.py imports options
    ("pipeline/suggest.py", "import click", "imports no terminal"),
])
def test_a_broken_layer_fails_the_contracts(tmp_path: Path, module: str, line: str, contract: str) -> None:
    copy = _copy_package(tmp_path)
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # injected by test_layers\n")
    done = lint_imports(tmp_path, pythonpath=tmp_path)
    assert done.returncode != 0, done.stdout
    broken = [text for text in done.stdout.split("\n\n") if "BROKEN" in text]
    assert any(contract in text for text in broken), done.stdout


def test_only_pipeline_engine_imports_the_c_core() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any("_durable_rules_engine" in name for name in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {"pipeline/engine.py"}
