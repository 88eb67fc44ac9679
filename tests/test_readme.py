"""The README is part of the product: its worked example is what `check` prints today, its commands exist and its
options are documented. Regenerate the example with ``UPDATE_README=1 python -m pytest tests/test_readme.py``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
from click.testing import CliRunner

from ivig_safety.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE = "examples/dermatomyositis.yaml"
START, END = "<!-- worked-example:start -->", "<!-- worked-example:end -->"
_DIGEST = re.compile(r"sha256:[0-9a-f]{12}")


def _printed() -> str:
    result = CliRunner().invoke(main, ["check", str(ROOT / EXAMPLE)], env={"COLUMNS": "100"})
    assert result.exit_code == 1, result.stdout  # the example gets a warning
    return _DIGEST.sub("sha256:…", "\n".join(line.rstrip() for line in result.stdout.splitlines()))


def test_the_worked_example_is_what_check_prints() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, "README lost its worked-example markers"
    head, rest = text.split(START)
    shown, tail = rest.split(END)
    expected = f"\n```\n{_printed()}\n```\n"
    if os.environ.get("UPDATE_README") == "1":
        README.write_text(head + START + expected + END + tail, encoding="utf-8")
        shown = expected
    assert shown == expected, "README's worked example drifted: UPDATE_README=1 python -m pytest tests/test_readme.py"


def test_every_option_of_every_command_has_help_text() -> None:
    def walk(command: click.Command, path: str) -> list[str]:
        missing = [f"{path} {p.name}" for p in command.params if isinstance(p, click.Option) and not p.help]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(main, "ivig-safety") == []


def test_check_help_lists_the_exit_codes() -> None:
    text = CliRunner().invoke(main, ["check", "--help"]).stdout
    for code in ("0  ok", "1  warn", "3  block", "2  invalid input", "4  internal error"):
        assert code in text


def test_version_names_package_rule_set_engine_and_python() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ivig-safety ")
    assert re.match(r"rule set \S+ sha256:[0-9a-f]{64} \(bundled\)", lines[1])
    assert lines[2].startswith("engine durable_rules 2.0.28")
    assert lines[3].startswith("Python 3.")


def test_the_readme_quick_start_names_the_bundled_example_and_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert f"ivig-safety check {EXAMPLE}" in text
    assert "pip install '.[test]' && python -m pytest" in text
    assert (ROOT / EXAMPLE).is_file()
    assert "pip install '.[test]' && python -m pytest" in (ROOT / ".ci" / "run").read_text()
