"""Reading YAML and JSON safely: one place that turns a malformed file into a clear error.

Why not plain ``yaml.safe_load``: it silently keeps the last of two duplicate keys, so a plan with two ``rate:``
lines would be judged on one of them without a word. Duplicate keys are an error here.

Why rule files are read with libyaml when PyYAML has it: the pure-Python parser spent about 50 ms of every start-up
on the rule set. The C parser gives the same data for them (a test loads every rule file both ways); for a file
it refuses, the pure parser reads it again, so the error message is the same with or without libyaml. Plans keep
the pure parser: their text comes from outside, and the two parsers need not agree on every malformed input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..model.bounds import MAX_JSON_DEPTH


class YamlError(ValueError):
    """The text is not valid YAML/JSON, or repeats a key."""


class JsonSyntaxError(YamlError):
    """Not JSON at all (as opposed to JSON that repeats a key or nests too deep): it may still be YAML."""


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise YamlError(f"line {key_node.start_mark.line + 1}: a key must be a plain value") from None
        if key in mapping:
            raise YamlError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

if getattr(yaml, "__with_libyaml__", False):
    class _FastUniqueKeyLoader(yaml.CSafeLoader):  # libyaml's parser, the same constructors
        pass

    _FastUniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _FAST_LOADER: type | None = _FastUniqueKeyLoader
else:
    _FAST_LOADER = None


def parse_yaml(text: str) -> Any:
    """Parse YAML (JSON is YAML too) with duplicate keys refused."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        raise YamlError(" ".join(str(exc).split())) from None
    except (ValueError, RecursionError) as exc:
        raise YamlError(f"unreadable: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    return result


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def too_deep(text: str) -> bool:
    """Nested deeper than MAX_JSON_DEPTH. Checked before decoding so that the answer does not depend on the Python
    version (3.11's decoder hits the recursion limit where 3.13's does not); only a line with that many brackets at
    all is scanned, so a plan line costs two str.count calls."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def parse_json(text: str) -> Any:
    """Strict JSON (a batch line, or a plan or FHIR file that is JSON): duplicate keys refused, nesting bounded.
    The C decoder reads a 1 MiB FHIR Bundle in milliseconds, where the YAML parser takes seconds."""
    if too_deep(text):
        raise YamlError(f"nested more than {MAX_JSON_DEPTH} levels deep (no plan or FHIR resource is)")
    try:
        return _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise YamlError(str(exc)) from None


def parse_trusted_yaml(text: str, fast: bool = True) -> Any:
    """:func:`parse_yaml` for the rule set's own files: with libyaml when available; a file libyaml refuses is
    parsed again by the pure parser, whose error is the one raised."""
    if fast and _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a CSafeLoader subclass
        except Exception:  # noqa: BLE001 - any refusal: the pure parser below says what is wrong, as it always did
            pass
    return parse_yaml(text)


def load_yaml(path: Path) -> Any:
    """Load a rule-side file; errors name the file."""
    from ..model.errors import RuleFileError

    try:
        return parse_trusted_yaml(path.read_text(encoding="utf-8"))
    except (YamlError, UnicodeDecodeError, OSError) as exc:
        raise RuleFileError(str(path), None, str(exc)) from None
