"""Rule files read with libyaml load exactly what the pure-Python parser loads, and a bad file still gets the pure
parser's clear error naming the file (knowledge/yamlio.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivig_safety import Checker, RuleFileError
from ivig_safety.knowledge import yamlio

RULES = Path(__file__).resolve().parent.parent / "rules"
RULE_FILES = sorted(RULES.rglob("*.yaml"))

needs_libyaml = pytest.mark.skipif(yamlio._FAST_LOADER is None, reason="PyYAML built without libyaml")


@needs_libyaml
@pytest.mark.parametrize("path", RULE_FILES, ids=[str(p.relative_to(RULES)) for p in RULE_FILES])
def test_libyaml_loads_every_rule_file_as_the_pure_parser_does(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast, pure = yamlio.parse_trusted_yaml(text), yamlio.parse_trusted_yaml(text, fast=False)
    assert repr(fast) == repr(pure)  # repr: the same keys in the same order, and 1 stays an int, 1.0 a float


@needs_libyaml
def test_a_checker_loaded_with_libyaml_is_the_one_loaded_without(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = Checker()
    monkeypatch.setattr(yamlio, "_FAST_LOADER", None)
    pure = Checker()
    assert repr(fast.ruleset) == repr(pure.ruleset)
    assert repr(fast.catalogue.products) == repr(pure.catalogue.products)
    assert repr(fast.policy.identity) == repr(pure.policy.identity)
    assert repr(fast.vocabulary) == repr(pure.vocabulary)


BAD_FILES = {
    "unclosed": "rules:\n  - id: [unclosed\n",
    "duplicate key": "rules:\n  - id: max-rate\n    id: other\n",
    "tab indent": "rules:\n\t- id: max-rate\n",
    "control character": "rules:\n  - id: max\x07rate\n",
    "unhashable key": "rules:\n  ? [a, b]\n  : 1\n",
    "not UTF-8 escape": 'rules: "\\xZZ"\n',
}


@needs_libyaml
@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_rule_file_gets_the_pure_parsers_error(name: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "safety" / "rates.yaml").write_text(BAD_FILES[name], encoding="utf-8")
    with pytest.raises(RuleFileError) as fast:
        Checker(rules)
    monkeypatch.setattr(yamlio, "_FAST_LOADER", None)
    with pytest.raises(RuleFileError) as pure:
        Checker(rules)
    assert str(fast.value) == str(pure.value)
    assert "rates.yaml" in str(fast.value)


def test_a_duplicate_key_in_a_rule_file_is_named_with_its_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    path = rules / "safety" / "rates.yaml"
    path.write_text(BAD_FILES["duplicate key"], encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        Checker(rules)
    assert str(info.value) == f"{path}: line 3: duplicate key 'id'"
