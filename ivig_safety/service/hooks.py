"""What a hook call and a feedback call do, without HTTP: validate the request, find the IVIG orders, build each
plan with the FHIR mapping from prefetch (fetching what is missing, see fetch.py), check it, answer cards and record
them; store feedback. app.py wraps these in FastAPI and auth. Nothing clinical is decided here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..check import Checker
from ..fhir import collect, suggested_dosage
from ..model.errors import EngineError, FieldError, InvalidPlanError, format_loc
from .cards import OVERRIDE_CODES, OVERRIDE_SYSTEM, Built, not_checked_card, report_cards
from .discovery import SERVICES
from .fetch import FHIR_ID, Fetcher
from .store import AuditStore, IssuedCard, Outcome

#: At most this many IVIG orders are checked in one call (a real order has one or two).
MAX_ORDERS = 10


class BadRequest(ValueError):
    """The request is malformed: 400 with this message (written by us; input values are not echoed)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class FhirAuthorization(_Lenient):
    access_token: str = Field(max_length=8192)
    token_type: str = Field(max_length=32)
    expires_in: int | None = None
    scope: str | None = Field(default=None, max_length=4096)
    subject: str | None = Field(default=None, max_length=256)


class HookRequest(_Lenient):
    hook: str = Field(max_length=64)
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: str | None = Field(default=None, max_length=2048)
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class Coding(_Lenient):
    system: str | None = Field(default=None, max_length=512)
    code: str | None = Field(default=None, max_length=256)
    display: str | None = None


class OverrideReason(_Lenient):
    reason: Coding | None = None
    userComment: str | None = None


class AcceptedSuggestion(_Lenient):
    id: str = Field(max_length=128)


class FeedbackItem(_Lenient):
    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden", "ignored"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: dt.datetime


class FeedbackRequest(_Lenient):
    feedback: list[FeedbackItem] = Field(max_length=1000)


def parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{format_loc(e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10])
        raise BadRequest(f"invalid request: {problems}") from None


@dataclass
class CallResult:
    """What one hook call answered, for the log (no patient data)."""

    cards: list[dict[str, Any]] = field(default_factory=list)
    issued: list[IssuedCard] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    not_checked: int = 0
    missing: list[str] = field(default_factory=list)


class Hooks:
    def __init__(self, checker: Checker, store: AuditStore, fetcher: Fetcher, templates: dict[str, str], *,
                 version: str):
        self.checker, self.store, self.fetcher = checker, store, fetcher
        self.templates, self.version = templates, version

    def call(self, service_id: str, data: Any) -> CallResult:
        service = SERVICES[service_id]
        request: HookRequest = parse(HookRequest, data)
        if request.hook != service["hook"]:
            raise BadRequest(f"this service answers {service['hook']}, not the hook named in the request")
        prefetch = request.prefetch or {}
        _chart_resources(prefetch)  # malformed prefetch is a 400 whether or not there is an IVIG order
        orders = self._orders(request)
        result = CallResult()
        if orders:
            deadline = 1.0 if request.hook == "order-select" else None  # order-select must answer quickly
            prefetch, result.missing = self.fetcher.fetch_missing(
                self.templates, prefetch, request.context, request.fhirServer,
                request.fhirAuthorization.model_dump() if request.fhirAuthorization else None, deadline)
        chart = self._chart(_chart_resources(prefetch))
        for order in orders:
            built, verdict = self._check_order(order, chart, service_id, request.hook)
            result.cards += built.cards
            result.issued += built.issued
            if verdict is None:
                result.not_checked += 1
            else:
                result.verdicts.append(verdict)
        self.store.record_cards(result.issued)
        return result

    def _chart(self, resources: list[dict[str, Any]]) -> dict[str, Any]:
        """The prefetched chart as one Bundle, without IVIG MedicationRequests (earlier courses, which the mapping
        would take for a second order: the draft is the order checked)."""
        chart = collect(resources)
        if any(r.get("resourceType") == "MedicationRequest" for r in resources):
            try:
                earlier = self.checker.fhir.ivig_orders(chart)
            except InvalidPlanError:
                return chart  # malformed chart resources: the check itself names them
            if earlier:
                chart["entry"] = [e for e in chart["entry"] if e["resource"] not in earlier]
        return chart

    def _orders(self, request: HookRequest) -> list[dict[str, Any]]:
        drafts = request.context.get("draftOrders")
        if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
            raise BadRequest("context.draftOrders must be a FHIR Bundle of the draft orders")
        entries = drafts.get("entry", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BadRequest("context.draftOrders.entry must be a list of Bundle entries")
        try:
            orders = self.checker.fhir.ivig_orders(drafts)
        except InvalidPlanError as exc:
            raise BadRequest(f"context.draftOrders: {_first(exc.errors)}") from None
        selections = request.context.get("selections")
        if request.hook == "order-select" and isinstance(selections, list) and selections:
            chosen = {s for s in selections if isinstance(s, str)}
            orders = [o for o in orders if f"MedicationRequest/{o.get('id')}" in chosen]
        if len(orders) > MAX_ORDERS:
            raise BadRequest(f"more than {MAX_ORDERS} IVIG orders in one call")
        return orders

    def _check_order(self, order: dict[str, Any], chart: dict[str, Any], service_id: str,
                     hook: str) -> tuple[Built, str | None]:
        order_id = order.get("id")
        label = f"MedicationRequest/{order_id}" if isinstance(order_id, str) and FHIR_ID.fullmatch(order_id) \
            else "this IVIG order"
        ruleset = self.checker.ruleset
        try:
            report = self.checker.check(collect(order, chart))
        except (InvalidPlanError, EngineError) as exc:  # the prescriber is told it was not checked, never silence
            errors = exc.errors if isinstance(exc, InvalidPlanError) else [
                FieldError("", "the rule engine failed on this order (an internal error, logged)")]
            return not_checked_card(errors, version=self.version, ruleset_version=ruleset.version,
                                    sha256=ruleset.sha256, service=service_id, hook=hook, order_label=label), None
        updated = {**order, "dosageInstruction": suggested_dosage(order, report)}
        return report_cards(report, version=self.version, service=service_id, hook=hook, updated_order=updated,
                            order_label=label), report.verdict

    def feedback(self, data: Any) -> dict[str, int]:
        request: FeedbackRequest = parse(FeedbackRequest, data)
        known = self.store.known_cards(item.card for item in request.feedback)
        answers = []
        for item in request.feedback:
            if item.card not in known:
                continue
            reason = item.overrideReason.reason if item.overrideReason else None
            code = None
            if reason is not None and (reason.code or reason.system):
                ours = reason.system == OVERRIDE_SYSTEM and reason.code in OVERRIDE_CODES
                code = reason.code if ours else "(a reason coded by the client)"
            at = item.outcomeTimestamp
            answers.append(Outcome(item.card, item.outcome, at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc),
                                   OVERRIDE_SYSTEM if code in OVERRIDE_CODES else None, code,
                                   bool(item.overrideReason and item.overrideReason.userComment)))
        self.store.record_outcomes(answers)
        return {"stored": len(answers), "unknown_cards": len(request.feedback) - len(answers)}


def _first(errors: list[FieldError]) -> str:
    return str(errors[0]) if errors else "not readable"


def _chart_resources(prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources in prefetch: each value is a resource, a searchset Bundle of them, or null (no data).
    OperationOutcomes (the client could not get the data) are left out."""
    resources = []
    for key, value in prefetch.items():
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise BadRequest(f"prefetch.{key[:64]} must be a FHIR resource or null")
        if value["resourceType"] == "Bundle":
            entries = value.get("entry") or []
            if not isinstance(entries, list):
                raise BadRequest(f"prefetch.{key[:64]}.entry must be a list")
            for entry in entries:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") not in (None, "OperationOutcome"):
                    resources.append(resource)
        elif value["resourceType"] != "OperationOutcome":
            resources.append(value)
    return resources
