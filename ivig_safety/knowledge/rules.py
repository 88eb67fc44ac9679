"""Safety rules as data: load rules/safety/*.yaml, validate every rule, compile its condition for the engine.

A rule reads like the label it comes from::

    - id: max-rate
      kind: max-rate-exceeded
      severity: critical
      when: peak_rate > max_rate
      cap: max_rate
      message: Step {step} runs at {peak_rate}, above the {indication} maximum of {max_rate}.
      citation: "{cite.max_rate}"

A condition is a clause ``FIELD OP OPERAND`` (OP one of > >= < <= == !=; OPERAND a field, a quantity with its unit
such as "3.3 mg/kg/min", a number, true/false, a word, or ``policy.KEY``), a flag test (``risk_factor: [..]``,
``excipient: maltose``, ``contraindicated: [..]``, ``avoided: [..]``), or ``all:``/``any:`` lists of those. Every name,
unit and placeholder is checked at load; a bad rule is an error naming the file and the rule, never a rule that
silently does not fire. This module knows nothing of durable_rules beyond the JSON shape of a condition.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from ..model.errors import RuleFileError
from ..model.units import RATE_SHAPES, Quantity, Shape, UnitError, parse_quantity
from .fields import DIFFERENCE, FIELDS, FLAG_PREFIXES, SCALE, FieldSpec, flag_key
from .policy import Policy
from .yamlio import load_yaml

#: The stable public vocabulary of finding kinds.
KINDS = (
    "max-rate-exceeded", "initial-rate-exceeded", "thrombosis-risk", "renal-risk", "high-dose", "dose-out-of-range",
    "contraindication", "excipient-risk", "glucose-monitoring-interference", "unlabeled-indication",
    "hemolysis-risk", "aseptic-meningitis-risk", "volume-overload-risk", "hydration", "hypersensitivity-risk",
    "indication-undetermined", "weight-stale",
)
SEVERITIES = ("info", "warning", "critical")
_RULE_KEYS = {"id", "kind", "severity", "when", "cap", "step", "message", "citation", "description", "group"}
_OPS = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "==": "$eq", "!=": "$neq"}
_CLAUSE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_CITE_FIXED = {"max_rate", "initial_rate", "initial_hold", "at_risk_rate", "dose", "titration", "concentration",
               "sucrose", "population", "label"}
_CITE_KEYED = ("excipient:", "contraindication:", "avoid:", "policy:", "warning:", "minimum_rate_also_for:")
#: Reasons a product file may give for the minimum practicable rate beyond renal and thrombosis risk.
_MINIMUM_RATE_REASONS = {"volume-overload"}
_EXTRA_PLACEHOLDERS = {"blood_group", "step", "step_rate", "over_cap_steps", "risk_factors", "product_name", "cap"}

Cap = str | Quantity  # a field name (a rate field of the facts) or a fixed quantity


@dataclass(frozen=True)
class Rule:
    """A validated rule, with its condition compiled to the engine's JSON form."""

    id: str
    kind: str
    severity: Literal["info", "warning", "critical"]
    condition: dict[str, Any]
    message: str
    citation: str
    source: str
    when: Any
    cap: Cap | None = None
    step: Literal["first", "over-cap"] | None = None
    risk_factors: tuple[str, ...] = ()
    keys: frozenset[str] = field(default_factory=frozenset)
    description: str | None = None
    group: str | None = None  # findings of one group (and severity) are merged into one

    @cached_property
    def static(self) -> bool:
        """True when the finding's text depends only on the product, the indication and the policy (no cap, no
        plan values): it can be rendered once per product and indication and reused."""
        names = self.message_parts[1::2] + self.citation_parts[1::2]
        return self.cap is None and self.step is None and all(
            n in ("product_name", "indication") or n.startswith("cite.") for n in names)

    @cached_property
    def message_parts(self) -> tuple[str, ...]:
        return split_template(self.message)

    @cached_property
    def citation_parts(self) -> tuple[str, ...]:
        return split_template(self.citation)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    version: str
    sha256: str

    @property
    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    @property
    def keys(self) -> frozenset[str]:
        """Every fact key some rule reads: the fact encoder emits only these."""
        return frozenset().union(*(r.keys for r in self.rules))

    @property
    def identity(self) -> dict[str, str]:
        return {"version": self.version, "sha256": self.sha256}


class _Compiler:
    """Compiles one rule's ``when`` into a durable_rules condition, collecting the keys and risk factors it reads."""

    def __init__(self, policy: Policy, vocabulary: Any, excipients: set[str]):
        self.policy, self.vocabulary, self.excipients = policy, vocabulary, excipients
        self.keys: set[str] = set()
        self.risk_factors: list[str] = []

    def compile(self, node: Any) -> dict[str, Any]:
        if isinstance(node, str):
            return self._clause(node)
        if isinstance(node, dict) and len(node) == 1:
            (key, value), = node.items()
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise ValueError(f"'{key}' takes a non-empty list of conditions")
                parts = [self.compile(v) for v in value]
                return parts[0] if len(parts) == 1 else {"$and" if key == "all" else "$or": parts}
            if key in FLAG_PREFIXES:
                return self._flags(key, value)
        raise ValueError(f"cannot read condition {node!r}: use 'FIELD OP VALUE', all:, any:, or one of "
                         f"{', '.join(FLAG_PREFIXES)}")

    def _flags(self, prefix: str, value: Any) -> dict[str, Any]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"'{prefix}' takes a name or a list of names")
        known = {"excipient": self.excipients, "label_minimum_rate_for": _MINIMUM_RATE_REASONS}.get(
            prefix, self.vocabulary.risk_factors)
        for name in names:
            if name not in known:
                raise ValueError(f"unknown {prefix.replace('_', ' ')} {name!r}; known: {', '.join(sorted(known))}")
        if prefix in ("risk_factor", "contraindicated", "avoided"):
            self.risk_factors.extend(n for n in names if n not in self.risk_factors)
        parts = []
        for name in names:
            key = flag_key(prefix, name)
            self.keys.add(key)
            parts.append({key: 1})
        return parts[0] if len(parts) == 1 else {"$or": parts}

    def _clause(self, text: str) -> dict[str, Any]:
        match = _CLAUSE.match(text)
        if not match:
            raise ValueError(f"cannot read clause {text!r}; write FIELD OP VALUE, e.g. 'peak_rate > max_rate'")
        name, op, operand = match.groups()
        spec = _field(name)
        if operand in FIELDS:
            other = FIELDS[operand]
            if (spec.kind, spec.variants and frozenset(spec.variants)) != \
                    (other.kind, other.variants and frozenset(other.variants)):
                raise ValueError(f"cannot compare {name} ({_describe(spec)}) with {operand} ({_describe(other)})")
            if op in ("==", "!=") and spec.kind == "quantity":
                raise ValueError("compare quantities with < <= > >=, not == or !=")
            # durable_rules' field references ($m) match stale values when a field is absent from the fact
            # (measured: 'days > label_days_max' fired for a fact without label_days_max). So the comparison is
            # compiled as a difference field the fact encoder computes, compared with zero.
            key = difference_key(name, operand)
            self.keys.add(key)
            return {key: 0} if op == "==" else {_OPS[op]: {key: 0}}
        try:
            value = self._operand(operand)
        except UnitError as exc:
            raise ValueError(f"cannot read the value {operand!r} in {text!r}: {exc}") from None
        key, encoded = self._encode(spec, value, text)
        self.keys.add(key)
        if op == "==":
            return {key: encoded}
        return {_OPS[op]: {key: encoded}}

    def _operand(self, text: str) -> Any:
        if text.startswith("policy."):
            key = text.removeprefix("policy.")
            if key not in self.policy.values:
                raise ValueError(f"unknown policy key {key!r}; known: {', '.join(self.policy.values)}")
            return self.policy[key]
        if text in ("true", "false"):
            return text == "true"
        try:
            return parse_quantity(text)
        except UnitError:
            if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", text):
                return text
            raise

    def _encode(self, spec: FieldSpec, value: Any, text: str) -> tuple[str, Any]:
        if spec.kind == "text":
            if not isinstance(value, str):
                raise ValueError(f"{spec.name} is text; compare it with a word, e.g. {spec.name} == dermatomyositis")
            if spec.name == "indication" and value not in self.vocabulary.indications:
                raise ValueError(f"unknown indication {value!r}")
            return spec.name, value
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{spec.name} is true or false")
            return spec.name, int(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = Quantity(float(value), parse_quantity("1").unit)
        if not isinstance(value, Quantity):
            raise ValueError(f"{spec.name} is {_describe(spec)}; {text!r} compares it with a word")
        if spec.kind == "number":
            if value.shape is not Shape.DIMENSIONLESS:
                raise ValueError(f"{spec.name} is a plain number; {value} has a unit")
            return spec.name, round(value.canonical * SCALE)
        assert spec.variants is not None
        if value.shape not in spec.variants:
            raise ValueError(f"{spec.name} is {_describe(spec)}; {value} is {value.shape.value}"
                             + (" (write the unit)" if value.shape is Shape.DIMENSIONLESS else ""))
        return spec.key(value.shape), round(value.canonical * SCALE)


@lru_cache(maxsize=1024)
def split_template(template: str) -> tuple[str, ...]:
    """'a {x} b' -> ('a ', 'x', ' b'): literal text and placeholder names alternate (split once, cached)."""
    return tuple(_PLACEHOLDER.split(template))


def difference_key(left: str, right: str) -> str:
    """The fact key holding ``left - right`` (integer millionths), present only when both fields are."""
    return f"{left}{DIFFERENCE}{right}"


def _field(name: str) -> FieldSpec:
    if name not in FIELDS:
        raise ValueError(f"unknown field {name!r}; known: {', '.join(FIELDS)}")
    return FIELDS[name]


def _base(spec: FieldSpec) -> Shape | None:
    return next(iter(spec.variants)) if spec.variants else None


def _describe(spec: FieldSpec) -> str:
    if spec.variants:
        return "a quantity in " + " or ".join(s.value for s in spec.variants)
    return {"number": "a plain number", "bool": "true or false", "text": "text"}[spec.kind]


def _check_template(template: str, where: str, policy: Policy) -> None:
    for name in _PLACEHOLDER.findall(template):
        if name in FIELDS or name in _EXTRA_PLACEHOLDERS:
            continue
        if name.startswith("policy."):
            if name.removeprefix("policy.") in policy.values:
                continue
            raise ValueError(f"unknown policy key in placeholder {{{name}}} in {where}")
        if name.startswith("cite."):
            key = name.removeprefix("cite.")
            if key in _CITE_FIXED or (key.startswith(_CITE_KEYED) and key.split(":", 1)[1]):
                continue
        raise ValueError(f"unknown placeholder {{{name}}} in {where}")


def _compile_cap(value: Any, policy: Policy) -> Cap:
    if isinstance(value, str) and value in FIELDS:
        if FIELDS[value].variants is not FIELDS["max_rate"].variants:
            raise ValueError(f"cap field {value!r} is not a rate")
        return value
    if isinstance(value, str) and value.startswith("policy."):
        key = value.removeprefix("policy.")
        if key not in policy.values:
            raise ValueError(f"unknown policy key {key!r}")
        value = policy[key]
    quantity = value if isinstance(value, Quantity) else parse_quantity(value)
    if quantity.shape not in RATE_SHAPES or quantity.magnitude <= 0:
        raise ValueError(f"cap must be a positive rate with its unit, e.g. '3.3 mg/kg/min', not {value!r}")
    return quantity


def _build_rule(raw: Any, source: str, policy: Policy, vocabulary: Any, excipients: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise RuleFileError(source, None, "each rule is a mapping")
    rule_id = str(raw.get("id", "?"))
    try:
        if unknown := set(raw) - _RULE_KEYS:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
        for required in ("id", "kind", "severity", "when", "message", "citation"):
            if required not in raw:
                raise ValueError(f"missing '{required}'")
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule_id):
            raise ValueError("id must be kebab-case")
        if raw["kind"] not in KINDS:
            raise ValueError(f"unknown kind {raw['kind']!r}; kinds: {', '.join(KINDS)}")
        if raw["severity"] not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        for text_key in ("message", "citation"):
            if not isinstance(raw[text_key], str) or not raw[text_key].strip():
                raise ValueError(f"'{text_key}' must be non-empty text")
            _check_template(raw[text_key], text_key, policy)
        compiler = _Compiler(policy, vocabulary, excipients)
        condition = compiler.compile(raw["when"])
        cap = _compile_cap(raw["cap"], policy) if raw.get("cap") is not None else None
        step = raw.get("step", "over-cap" if cap is not None else None)
        if step not in ("first", "over-cap", None):
            raise ValueError("step must be 'first' or 'over-cap'")
        if step == "over-cap" and cap is None:
            raise ValueError("step: over-cap needs a cap")
        group = raw.get("group")
        if group is not None and not (isinstance(group, str) and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", group)):
            raise ValueError("group must be a kebab-case name")
    except (ValueError, UnitError) as exc:
        raise RuleFileError(source, rule_id, str(exc)) from None
    return Rule(id=rule_id, kind=raw["kind"], severity=raw["severity"], condition=condition,
                message=" ".join(raw["message"].split()), citation=" ".join(raw["citation"].split()),
                source=source, when=raw["when"], cap=cap, step=step, risk_factors=tuple(compiler.risk_factors),
                keys=frozenset(compiler.keys), description=raw.get("description"), group=raw.get("group"))


def load_rules(root: Path, policy: Policy, vocabulary: Any, excipients: set[str],
               identity_files: list[Path]) -> RuleSet:
    """Load rules/safety/*.yaml; ``identity_files`` (products, vocabulary...) join the rule set's sha256."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    files = sorted((root / "safety").glob("*.yaml"))
    if not files:
        raise RuleFileError(str(root / "safety"), None, "no rule files (*.yaml) found")
    for path in files:
        data = load_yaml(path)
        if not isinstance(data, dict) or set(data) != {"rules"} or not isinstance(data["rules"], list):
            raise RuleFileError(str(path), None, "a rule file holds one key, 'rules', with a list of rules")
        for raw in data["rules"]:
            rule = _build_rule(raw, str(path), policy, vocabulary, excipients)
            if rule.id in seen:
                raise RuleFileError(str(path), rule.id, f"duplicate rule id (also in {seen[rule.id]})")
            seen[rule.id] = str(path)
            rules.append(rule)
    version_data = load_yaml(root / "ruleset.yaml")
    if not isinstance(version_data, dict) or not version_data.get("version"):
        raise RuleFileError(str(root / "ruleset.yaml"), None, "needs a 'version'")
    digest = hashlib.sha256()
    all_files = sorted({*files, *identity_files, root / "ruleset.yaml"})
    for path in all_files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return RuleSet(tuple(rules), str(version_data["version"]), digest.hexdigest())
