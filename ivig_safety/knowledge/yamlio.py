"""Reading YAML and JSON safely: one place that turns a malformed file into a clear error.

Why not plain ``yaml.safe_load``: it silently keeps the last of two duplicate keys, so a plan with two ``rate:``
lines would be judged on one of them without a word. Duplicate keys are an error here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(ValueError):
    """The text is not valid YAML/JSON, or repeats a key."""


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


def load_yaml(path: Path) -> Any:
    """Load a rule-side file; errors name the file."""
    from ..model.errors import RuleFileError

    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except (YamlError, UnicodeDecodeError, OSError) as exc:
        raise RuleFileError(str(path), None, str(exc)) from None
