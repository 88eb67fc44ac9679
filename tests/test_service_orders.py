"""The dermatomyositis order end to end, as an EHR sends it: examples/fhir/dermatomyositis-bundle.json split into
the draft order and the prefetch of the discovery templates, signed against ``ivig-safety serve`` on a real uvicorn;
the warning card's suggestion applied and signed again; feedback reported; orders that cannot be checked."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from click.testing import CliRunner

from ivig_safety.cli import main

from .service_support import ClientKeys, Server, auth, client, keys, serving  # noqa: F401 (fixtures)

SIGN = "/cds-services/ivig-order-sign"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: ClientKeys) -> Iterator[Server]:
    yield from serving(tmp_path_factory, keys)


ROOT = Path(__file__).resolve().parent.parent
DM_BUNDLE = ROOT / "examples" / "fhir" / "dermatomyositis-bundle.json"
SELECT = "/cds-services/ivig-order-select"
#: A draft order that is not IVIG, sent alongside: it must be ignored.
PARACETAMOL = {"resourceType": "MedicationRequest", "id": "paracetamol-1", "status": "draft", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                         "code": "313782", "display": "Acetaminophen 325 MG"}]},
               "subject": {"reference": "Patient/dm-patient"}}


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def dm_chart() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example's IVIG order, and the prefetch a CDS client would send for the discovery templates."""
    resources = [e["resource"] for e in json.loads(DM_BUNDLE.read_text())["entry"]]
    of = lambda kind: [r for r in resources if r["resourceType"] == kind]  # noqa: E731
    codes = lambda r: {c["code"] for c in r["code"]["coding"]}  # noqa: E731
    order = of("MedicationRequest")[0]
    prefetch = {"patient": of("Patient")[0],
                "weight": _searchset([o for o in of("Observation") if codes(o) & {"29463-7", "3141-9"}]),
                "height": _searchset([o for o in of("Observation") if "8302-2" in codes(o)]),
                "conditions": _searchset(of("Condition")), "renal": None, "medicationRequests": None,
                "medicationStatements": None}
    return order, prefetch


def dm_request(order: dict[str, Any], prefetch: dict[str, Any], hook: str = "order-sign") -> dict[str, Any]:
    context = {"userId": "Practitioner/1", "patientId": "dm-patient",
               "draftOrders": _searchset([PARACETAMOL, order]) | {"type": "collection"}}
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{order['id']}"]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}


def call(server: Server, keys: ClientKeys, client: httpx.Client, body: dict[str, Any],
         path: str = SIGN) -> list[dict[str, Any]]:
    response = client.post(server.base_url + path, json=body, headers=auth(server, keys, path))
    assert response.status_code == 200, response.text
    return response.json()["cards"]


def test_dermatomyositis_order_gets_a_warning_whose_suggestion_checks_clean(
        server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    from ivig_safety import __version__, get_checker
    from ivig_safety.fhir import collect

    order, prefetch = dm_chart()
    cards = call(server, keys, client, dm_request(order, prefetch))
    assert len({c["uuid"] for c in cards}) == len(cards) > 0
    warning = next(c for c in cards if c["indicator"] == "warning")
    assert warning["source"]["topic"]["code"] == "thrombosis-risk"
    assert len(warning["summary"]) < 140 and "126 mL/h" in warning["summary"]
    detail = warning["detail"]
    assert "| Step |" in detail and "| 126 mL/h |" in detail and "Boxed Warning" in detail
    ruleset = get_checker().ruleset
    assert warning["source"]["label"].startswith(f"ivig-safety {__version__}")
    assert ruleset.sha256[:12] in warning["source"]["label"] and ruleset.sha256 in detail
    assert {r["code"] for r in warning["overrideReasons"]} == {
        "tolerated-faster-rate", "benefit-outweighs-risk", "rate-confirmed-with-prescriber", "other"}
    assert all(r["display"] for r in warning["overrideReasons"])
    assert warning["selectionBehavior"] == "at-most-one"
    [suggestion] = warning["suggestions"]
    assert suggestion["label"] == "Use the suggested schedule" and suggestion["uuid"]
    [action] = suggestion["actions"]
    assert action["type"] == "update" and action["description"]
    updated = action["resource"]
    assert updated["id"] == order["id"] and updated["resourceType"] == "MedicationRequest"
    assert updated["medicationCodeableConcept"] == order["medicationCodeableConcept"]
    rates = [d["doseAndRate"][0]["rateQuantity"] for d in updated["dosageInstruction"]]
    assert [r["value"] for r in rates] == [42, 84, 126]
    assert all(r["code"] == "mL/h" and r["system"] == "http://unitsofmeasure.org" for r in rates)
    assert [d.get("timing", {}).get("repeat", {}).get("duration") for d in updated["dosageInstruction"]] == [
        30, 30, None]
    assert all(c["indicator"] == "info" for c in cards if c is not warning)
    assert not any("suggestions" in c for c in cards if c["indicator"] == "info")

    # the suggestion applied to the draft: signed again, it checks clean (no rate finding, no warning)
    again = call(server, keys, client, dm_request(updated, prefetch))
    assert again and all(c["indicator"] == "info" and "suggestions" not in c for c in again)
    checker = get_checker()
    report = checker.check(collect(updated, *[v for v in prefetch.values() if v]))
    assert report.verdict == "ok"
    assert not [f for f in report.findings if f.step is not None or f.kind.endswith("rate-exceeded")]

    # the prescriber accepts it; feedback is stored and reported
    path = SIGN + "/feedback"
    answer = {"feedback": [{"card": warning["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-25T10:00:00Z",
                            "acceptedSuggestions": [{"id": suggestion["uuid"]}]}]}
    response = client.post(server.base_url + path, json=answer, headers=auth(server, keys, path))
    assert response.json() == {"stored": 1, "unknown_cards": 0}
    report_out = CliRunner().invoke(main, ["feedback-report", "--audit", server.audit_url, "--format", "json"])
    thrombosis = next(r for r in json.loads(report_out.output)["rules"] if r["rule"] == "thrombosis-risk")
    assert thrombosis["accepted"] >= 1


def test_order_select_answers_with_the_same_check(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    order, prefetch = dm_chart()
    sign = call(server, keys, client, dm_request(order, prefetch))
    select = call(server, keys, client, dm_request(order, prefetch, "order-select"), SELECT)
    shape = lambda cards: sorted((c["indicator"], c["source"]["topic"]["code"], c["summary"]) for c in cards)  # noqa
    assert shape(select) == shape(sign)
    unselected = dm_request(order, prefetch, "order-select")
    unselected["context"]["selections"] = ["MedicationRequest/paracetamol-1"]
    assert call(server, keys, client, unselected, SELECT) == []  # only the selected order is checked


def _without_weight(prefetch: dict[str, Any]) -> dict[str, Any]:
    return {**prefetch, "weight": None}


def _with_unknown_product(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "medicationCodeableConcept": {
        "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "00000-000-00"}], "text": "immune globulin"}}


def _with_volume_as_rate(order: dict[str, Any]) -> dict[str, Any]:
    changed = json.loads(json.dumps(order))
    changed["dosageInstruction"][1]["doseAndRate"][0]["rateQuantity"] = {
        "value": 100, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}
    return changed


@pytest.mark.parametrize("change, words", [
    (lambda order, prefetch: (order, _without_weight(prefetch)), "weight"),
    (lambda order, prefetch: (_with_unknown_product(order), prefetch), "product"),
    (lambda order, prefetch: (_with_volume_as_rate(order), prefetch), "rate"),
])
def test_an_order_that_cannot_be_checked_gets_a_warning_saying_why(
        server: Server, keys: ClientKeys, client: httpx.Client, change: Any, words: str) -> None:
    order, prefetch = change(*dm_chart())
    cards = call(server, keys, client, dm_request(order, prefetch))
    assert len(cards) == 1, cards
    [card] = cards
    assert card["indicator"] == "warning" and card["uuid"] and len(card["summary"]) < 140
    assert card["summary"].startswith("IVIG order not checked")
    assert "not an \"ok\"" in card["detail"] and "Why it matters" in card["detail"]
    assert words in card["detail"].lower()
    assert card["overrideReasons"] and "suggestions" not in card


def test_logs_name_no_patient(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    order, prefetch = dm_chart()
    request_id = uuid.uuid4().hex
    response = client.post(server.base_url + SIGN, json=dm_request(order, prefetch),
                           headers={**auth(server, keys, SIGN), "X-Request-Id": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 10  # the line is written once the answer has gone out
    while not (mine := [e for e in _log_entries(server) if e.get("request_id") == request_id]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)
    [entry] = mine
    assert entry["service"] == "ivig-order-sign" and entry["status"] == 200 and entry["latency_ms"] > 0
    assert "thrombosis-risk" in entry["rules"] and entry["verdicts"] == ["warn"] and entry["cards"] == 3
    log = server.log()
    for identifier in ("dm-patient", "1968-05-14", "ivig-dm-1", "dm-weight", "Practitioner/1"):
        assert identifier not in log


def _log_entries(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_the_readme_example_call_is_the_example_bundle() -> None:
    """examples/cds-hooks/order-sign-dermatomyositis.json (the README's walk-through) is the FHIR example split into
    the draft order and the prefetch: it cannot drift from the bundle the mapping is tested with."""
    shipped = json.loads((ROOT / "examples" / "cds-hooks" / "order-sign-dermatomyositis.json").read_text())
    expected = dm_request(*dm_chart())
    for body in (shipped, expected):
        body.pop("hookInstance")
    assert shipped == expected
