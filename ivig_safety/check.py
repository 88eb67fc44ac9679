"""The one core every shell calls: ``check(plan) -> Report``.

Parse and validate (model/plan.py) -> normalise to facts (pipeline/facts.py) -> evaluate rules (pipeline/engine.py)
-> combine caps into suggestions (pipeline/suggest.py) -> the Report (model/report.py), built in
pipeline/assemble.py. The shells above it (formats, batch, cli, service) add nothing clinical. May import pipeline,
knowledge and model.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping  # not typing.Mapping: its isinstance costs a microsecond per plan
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .fhir import FhirMapper, FhirPlan, is_fhir
from .knowledge.codes import CodeIndex, build_index, load_site_codes
from .knowledge.catalogue import Catalogue, load_catalogue, load_class_knowledge, load_guidelines, load_vocabulary
from .knowledge.policy import Policy, load_policy
from .knowledge.rules import Rule, RuleSet, load_rules
from .model.errors import FieldError, InvalidPlanError, format_loc
from .model.plan import Plan
from .model.report import PolicyIdentity, Report, RuleSetIdentity
from .pipeline.assemble import build_report
from .pipeline.engine import Engine
from .pipeline.facts import Facts, build_facts
from .pipeline.findings import FindingData, explain_rule, plan_findings
from .pipeline.label import Knowledge


def bundled_rules_dir() -> Path:
    """The rule set shipped with this version: the copy inside an installed wheel, or the repository's rules/."""
    packaged = Path(__file__).parent / "_rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules"


def default_rules_dir() -> Path:
    """Where the rule files are: $IVIG_SAFETY_RULES, else the bundled rule set."""
    if env := os.environ.get("IVIG_SAFETY_RULES"):
        return Path(env)
    return bundled_rules_dir()


def validation_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as FieldErrors that name the path (``steps[1].rate``) and the problem."""
    errors = []
    # Only type, loc and msg are read: leaving out the URL, context and input halves the cost of errors().
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        errors.append(FieldError(format_loc(error["loc"]), message))
    return errors


class Checker:
    """A loaded rule set, catalogue and policy, and the engine compiled from them. Thread-safe; load once, reuse."""

    def __init__(self, rules_dir: Path | str | None = None, policy_file: Path | str | None = None,
                 site_codes: Path | str | None = None):
        root = Path(rules_dir) if rules_dir is not None else default_rules_dir()
        self.rules_dir = root
        self.vocabulary = load_vocabulary(root / "vocabulary.yaml")
        self.catalogue: Catalogue = load_catalogue(root / "products", self.vocabulary)
        self.policy: Policy = load_policy(root / "policy.yaml", Path(policy_file) if policy_file else None)
        self.knowledge = Knowledge(self.vocabulary, load_class_knowledge(root / "class.yaml", self.vocabulary),
                                   load_guidelines(root / "guidelines.yaml", self.vocabulary))
        identity_files = [root / "vocabulary.yaml", root / "class.yaml", root / "guidelines.yaml",
                          *sorted((root / "products").glob("*.yaml"))]
        self.ruleset: RuleSet = load_rules(root, self.policy, self.vocabulary, set(self.vocabulary.excipients),
                                           identity_files)
        self.engine = Engine(self.ruleset)
        self._rules = self.ruleset.by_id
        self._context = {"vocabulary": self.vocabulary, "catalogue": self.catalogue}
        bundled = root.resolve() == bundled_rules_dir().resolve()
        self._ruleset_identity = RuleSetIdentity(**self.ruleset.identity, bundled=bundled,
                                                 path=None if bundled else str(root.resolve()))
        self._policy_identity = PolicyIdentity(**self.policy.identity)
        self.site_codes = Path(site_codes) if site_codes is not None else None
        self.codes: CodeIndex = self._code_index()
        self._fhir: FhirMapper | None = None

    def _code_index(self) -> CodeIndex:
        """The code look-ups for FHIR input: product files' codes, the vocabulary's lists and the site's file."""
        products = {pid: list(p.codes) if isinstance(p.codes, list) else [] for pid, p in self.catalogue.products.items()}
        site = None
        if self.site_codes is not None:
            site = load_site_codes(self.site_codes, self.vocabulary.indications, self.vocabulary.risk_factors,
                                   self.catalogue.products)
        return build_index(products, self.vocabulary.codes, site, str(self.site_codes) if site else None)

    @property
    def fhir(self) -> FhirMapper:
        """The FHIR mapper for this rule set, policy and site codes (built on first FHIR input)."""
        if self._fhir is None:
            self._fhir = FhirMapper(self.catalogue, self.policy, self.codes)
        return self._fhir

    def renew_engine(self) -> None:
        """Give this Checker a new engine (fresh durable_rules handles and locks): for a process forked from one
        that may have been evaluating. The loaded rule set, catalogue and policy are kept."""
        self.engine = Engine(self.ruleset)

    def parse(self, data: Any) -> Plan:
        """Validate a plan given as a dict (or a Plan), or a FHIR R4 MedicationRequest or Bundle; raise
        InvalidPlanError naming every field (or FHIR element) at fault."""
        return self._parse(data)[0]

    def _parse(self, data: Any) -> tuple[Plan, dict[str, str] | None]:
        """The Plan, and for FHIR input where each value came from."""
        if is_fhir(data):
            mapped = self.map_fhir(data)
            assert mapped.parsed is not None
            return mapped.parsed, mapped.sources
        return self._validate(data), None

    def map_fhir(self, resource: Any) -> FhirPlan:
        """A FHIR order read and validated: the plan (dict and Plan) and where each value came from. A plan field's
        error is named by the FHIR element it was read from."""
        mapped = self.fhir.map(resource)
        try:
            return dataclasses.replace(mapped, parsed=self._validate(mapped.plan))
        except InvalidPlanError as exc:
            raise InvalidPlanError([_in_fhir(error, mapped.sources) for error in exc.errors]) from None

    def _validate(self, data: Any) -> Plan:
        # A dict (JSON, batch rows) is told apart by its type first: the Mapping ABC check costs 0.1 us.
        if type(data) is not dict and not isinstance(data, (Mapping, Plan)):
            raise InvalidPlanError.single("", f"a plan is a mapping of fields, not {type(data).__name__}")
        try:
            # Plan.model_validate(data, context=...) less its Python wrapper (about 0.4 us a plan): the same
            # validator with the same context, so every check, error and value is the same.
            return Plan.__pydantic_validator__.validate_python(data, context=self._context)
        except ValidationError as exc:
            errors = validation_errors(exc)
        # Raised outside the except block, not "from None" inside it: that still sets __context__ to the
        # ValidationError, whose traceback holds this frame and, through f_back, the caller's (a batch chunk's
        # outcome list in evaluate_many): a reference cycle per invalid plan, holding the whole chunk until a
        # garbage collection (measured: ~45 objects per batch row left to the cyclic GC, the gen-2 passes ~10% of
        # a row). Nothing in that context is shown: the FieldErrors carry every location and message.
        raise InvalidPlanError(errors)

    def check(self, plan: Any) -> Report:
        """Check one plan. Invalid input raises InvalidPlanError; it never comes back as a verdict."""
        return self._run(plan)[0]

    def explain(self, plan: Any) -> tuple[Report, dict[str, list[str]]]:
        """The report, and per fired rule the facts that made it fire (for ``check --explain``)."""
        report, facts, fired = self._run(plan)
        return report, {rule.id: explain_rule(rule, facts) for rule in fired}

    def evaluate(self, plan: Any) -> tuple[Facts, list[Rule], list[FindingData]]:
        """The facts, the rules that fired and the findings (as data, see findings.FindingData), without the
        suggested schedule and the report: all a batch row needs (batch/rows.py). Invalid input raises
        InvalidPlanError, as in :meth:`check`."""
        return self._findings(self._fire(self._facts(self.parse(plan))))

    def evaluate_many(self, plans: list[Any]) -> list[tuple[Facts, list[Rule], list[FindingData]] | Exception]:
        """:meth:`evaluate` for each plan, one stage at a time over all of them: each stage's code and data then
        stay in the processor's caches (measured: about 8% less CPU per plan in a batch chunk). A plan that fails
        gets the exception :meth:`evaluate` would raise in its place, without its traceback (which would hold this
        frame, and so the list, in a reference cycle: see :func:`_detached`); the others go on."""
        outcomes: list[Any] = []
        for plan in plans:
            try:
                outcomes.append(self.parse(plan))
            except Exception as exc:  # noqa: BLE001 - this plan's outcome; the caller reports it
                outcomes.append(_detached(exc))
        for stage in (self._facts, self._fire, self._findings):
            for index, item in enumerate(outcomes):
                if not isinstance(item, Exception):
                    try:
                        outcomes[index] = stage(item)
                    except Exception as exc:  # noqa: BLE001
                        outcomes[index] = _detached(exc)
        return outcomes

    # The stages of evaluate, after parse (a Plan instance too: it may have been built or copied without validation).

    def _facts(self, parsed: Plan) -> Facts:
        return build_facts(parsed, self.catalogue.products[parsed.product], self.policy, self.knowledge)

    def _fire(self, facts: Facts) -> tuple[Facts, list[Rule]]:
        return facts, [self._rules[rule_id] for rule_id in self.engine.evaluate(facts.encode(self.engine.encoding))]

    def _findings(self, item: tuple[Facts, list[Rule]]) -> tuple[Facts, list[Rule], list[FindingData]]:
        facts, fired = item
        return facts, fired, plan_findings(fired, facts, self.policy)

    def _run(self, plan: Any) -> tuple[Report, Facts, list[Rule]]:
        parsed, sources = self._parse(plan)  # a Plan instance too: it may have been built or copied without validation
        facts, fired, findings = self._findings(self._fire(self._facts(parsed)))
        return self._report(parsed, sources, facts, fired, findings), facts, fired

    def _report(self, parsed: Plan, sources: dict[str, str] | None, facts: Facts, fired: list[Rule],
                findings: list[FindingData]) -> Report:
        """The report of a checked plan (pipeline/assemble.py)."""
        return build_report(parsed, sources, facts, fired, findings, self.policy, self._ruleset_identity,
                            self._policy_identity)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the block, and on again after it, however it ends; a collector that
    is off already (a nested pause, or whoever runs this process switched it off) is left off.

    For work that makes no reference cycles and keeps many objects alive meanwhile: a batch chunk (batch/workers.py)
    and the ``check`` command (cli/check.py). The collector's passes there free nothing and only walk live objects
    again; when it runs again, whatever cyclic garbage the block did leave is still collected."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _detached(exc: Exception) -> Exception:
    """The exception without its traceback, cause or context, to be kept as a plan's outcome.

    Why: a traceback holds the frames it passed through, and a frame its caller (``f_back``), whose locals hold the
    list the exception is kept in: a reference cycle that only the cyclic garbage collector frees, and with it every
    other plan's facts and findings in that list. The caller reports the exception by its type and message."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


def _in_fhir(error: FieldError, sources: dict[str, str]) -> FieldError:
    """A plan field's error named by the FHIR element it was read from (``steps[1].rate`` ->
    ``MedicationRequest.dosageInstruction[1]... (steps[1].rate)``)."""
    for key in sorted(sources, key=len, reverse=True):
        if error.loc == key or error.loc.startswith(key + ".") or error.loc.startswith(key + "["):
            return FieldError(f"{sources[key]} ({error.loc})", error.msg)
    return error


#: Checkers kept loaded: a service or batch run uses one or a few policies; more are rebuilt on demand.
CHECKER_CACHE_SIZE = 8
_CHECKERS: "OrderedDict[tuple[str | None, str | None, str | None], Checker]" = OrderedDict()
_CHECKERS_LOCK = threading.Lock()


def get_checker(rules_dir: str | Path | None = None, policy_file: str | Path | None = None,
                site_codes: str | Path | None = None) -> Checker:
    """The shared Checker for a rules folder, a policy file's and a site codes file's content, loaded once per
    process.

    The cache is keyed by the policy file's content (two paths to the same file share one Checker; an edited file
    gets a new one) and bounded: the least recently used Checker is dropped, and its engine's C memory is freed
    when nobody holds it any more."""
    key = (str(Path(rules_dir).resolve()) if rules_dir else None, _content_key(policy_file) if policy_file else None,
           _content_key(site_codes) if site_codes else None)
    with _CHECKERS_LOCK:
        checker = _CHECKERS.get(key)
        if checker is not None:
            _CHECKERS.move_to_end(key)
            return checker
    checker = Checker(rules_dir, policy_file, site_codes)
    with _CHECKERS_LOCK:
        checker = _CHECKERS.setdefault(key, checker)
        _CHECKERS.move_to_end(key)
        while len(_CHECKERS) > CHECKER_CACHE_SIZE:
            _CHECKERS.popitem(last=False)
    return checker


#: sha256 of a policy file per (path, modification time, size): check(plan, policy=...) in a loop reads the file once,
#: not on every call; an edited file has a new time or size and is hashed again.
_CONTENT_KEYS: dict[tuple[str, int, int], str] = {}


def _content_key(path: str | Path) -> str:
    resolved = Path(path).resolve()
    info = resolved.stat()
    stamp = (str(resolved), info.st_mtime_ns, info.st_size)
    digest = _CONTENT_KEYS.get(stamp)
    if digest is None:
        digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
        if len(_CONTENT_KEYS) >= 4 * CHECKER_CACHE_SIZE:
            _CONTENT_KEYS.clear()
        _CONTENT_KEYS[stamp] = digest
    return digest


def _clear_checkers() -> None:
    with _CHECKERS_LOCK:
        _CHECKERS.clear()
        _CONTENT_KEYS.clear()


def check(plan: Any, *, policy: str | Path | None = None, rules_dir: str | Path | None = None,
          site_codes: str | Path | None = None) -> Report:
    """Check one IVIG infusion plan (a dict, a :class:`Plan`, or a FHIR R4 MedicationRequest or Bundle) and return
    the :class:`Report`. ``site_codes`` is a site's mapping file for FHIR input (local medication codes).

    Raises :class:`InvalidPlanError` (with ``.errors``, one per field at fault) when the plan cannot be checked.
    """
    return get_checker(rules_dir, policy, site_codes).check(plan)


def plan_from_fhir(resource: Mapping[str, Any], *, policy: str | Path | None = None,
                   rules_dir: str | Path | None = None, site_codes: str | Path | None = None) -> FhirPlan:
    """The plan a FHIR R4 order describes: ``.parsed`` the validated :class:`Plan`, ``.plan`` the same as a dict
    :func:`check` takes, and ``.sources`` where each value came from. Raises InvalidPlanError naming the FHIR
    element at fault."""
    return get_checker(rules_dir, policy, site_codes).map_fhir(resource)


def ivig_orders(resource: Mapping[str, Any], *, policy: str | Path | None = None,
                rules_dir: str | Path | None = None, site_codes: str | Path | None = None) -> list[dict[str, Any]]:
    """The IVIG MedicationRequests of a FHIR resource or Bundle (e.g. CDS Hooks ``draftOrders``); others left out."""
    return get_checker(rules_dir, policy, site_codes).fhir.ivig_orders(resource)


get_checker.cache_clear = _clear_checkers  # type: ignore[attr-defined]  # e.g. after fork (batch/workers.py)
