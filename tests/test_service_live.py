"""The CDS Hooks service end to end: ``ivig-safety serve`` on a real uvicorn on 127.0.0.1, auth on, called over
HTTP. Discovery, the JWT attack matrix, body limits, feedback, and a property-based fuzz that finds no 500."""

from __future__ import annotations

import base64
import hmac
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivig_safety.cli import main
from ivig_safety.service.store import AuditStore, IssuedCard

from .service_support import ISSUER, ClientKeys, Server, auth, client, keys, serving  # noqa: F401 (fixtures)

SIGN = "/cds-services/ivig-order-sign"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: ClientKeys) -> Iterator[Server]:
    yield from serving(tmp_path_factory, keys)


def hook_body(**changes: Any) -> dict[str, Any]:
    body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {
        "userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": []}}}
    return {**body, **changes}


def test_healthz_needs_no_token(server: Server, client: httpx.Client) -> None:
    response = client.get(f"{server.base_url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "warning" not in response.headers  # auth is on: no insecure-mode warning


def test_discovery(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    response = client.get(f"{server.base_url}/cds-services", headers=auth(server, keys, "/cds-services"))
    assert response.status_code == 200
    services = {s["hook"]: s for s in response.json()["services"]}
    assert set(services) == {"order-select", "order-sign"}
    for service in services.values():
        assert service["id"] and service["description"]
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        assert "http://loinc.org|29463-7" in prefetch["weight"] and "http://loinc.org|3141-9" in prefetch["weight"]
        assert "http://loinc.org|8302-2" in prefetch["height"] and "_count=1" in prefetch["height"]
        assert "clinical-status=active" in prefetch["conditions"]
        assert "combo-code=" in prefetch["renal"] and "http://loinc.org|98979-8" in prefetch["renal"]
        assert "MedicationRequest?" in prefetch["medicationRequests"]
        assert "MedicationStatement?" in prefetch["medicationStatements"]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _attacks(server: Server, keys: ClientKeys, aud: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    public_pem = keys.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    hs_head = _b64({"alg": "HS256", "typ": "JWT", "kid": keys.kid})
    hs_mac = hmac.new(public_pem, f"{hs_head}.{_b64(claims)}".encode(), "sha256").digest()
    good = keys.token(aud)
    head, body, signature = good.split(".")
    tampered_claims = {**jwt.decode(good, options={"verify_signature": False}), "iss": ISSUER, "sub": "admin"}
    other = ClientKeys(kid=keys.kid)  # the right kid, the wrong key
    return {
        "none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': keys.kid})}.{_b64(claims)}.",
        "HS256 signed with the public key": f"{hs_head}.{_b64(claims)}."
        + base64.urlsafe_b64encode(hs_mac).rstrip(b"=").decode(),
        "expired": keys.token(aud, iat_offset=-4000, lifetime=600),
        "future iat": keys.token(aud, iat_offset=3600),
        "wrong aud": keys.token(server.base_url + "/cds-services/other"),
        "aud of another host": keys.token("https://evil.example" + SIGN),
        "unknown iss": keys.token(aud, iss="https://evil.example/"),
        "unknown kid": keys.token(aud, kid="no-such-kid"),
        "signed by another key": other.token(aud),
        "tampered payload": f"{head}.{_b64(tampered_claims)}.{signature}",
        "no jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, keys.private, algorithm="ES384",
                             headers={"kid": keys.kid}),
        "ES256 (too weak)": jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                                       headers={"kid": keys.kid}),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("path", ["/cds-services", SIGN, SIGN + "/feedback"])
def test_jwt_attack_matrix_is_401_without_detail(server: Server, keys: ClientKeys, client: httpx.Client,
                                                  path: str) -> None:
    aud = server.base_url + path
    for name, token in _attacks(server, keys, aud).items():
        if path == "/cds-services":
            response = client.get(aud, headers={"Authorization": f"Bearer {token}"})
        else:
            response = client.post(aud, headers={"Authorization": f"Bearer {token}"}, json=hook_body())
        assert response.status_code == 401, (name, response.text)
        assert response.json() == {"error": "unauthorized"}, name
        assert response.headers["www-authenticate"] == "Bearer"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        assert client.get(f"{server.base_url}/cds-services", headers=headers).status_code == 401


def test_a_replayed_token_is_refused(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    headers = auth(server, keys, "/cds-services")
    assert client.get(f"{server.base_url}/cds-services", headers=headers).status_code == 200
    assert client.get(f"{server.base_url}/cds-services", headers=headers).status_code == 401


def test_the_log_says_why_a_token_failed(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    token = keys.token(server.base_url + "/cds-services/other")
    request_id = uuid.uuid4().hex
    response = client.get(f"{server.base_url}/cds-services",
                          headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id})
    assert response.status_code == 401 and "InvalidAudience" not in response.text
    deadline = time.monotonic() + 10  # the line is written once the answer has gone out
    while not (mine := [line for line in server.log().splitlines() if request_id in line]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)
    entry = json.loads(mine[0])
    assert entry["status"] == 401 and "InvalidAudience" in entry["reason"] and entry["latency_ms"] >= 0


@pytest.mark.parametrize("content, ctype, status, words", [
    (b"{" + b" " * (1 << 20) + b"}", "application/json", 413, "larger"),
    (b"hook=order-sign", "application/x-www-form-urlencoded", 415, "application/json"),
    (b"{}", "text/plain", 415, "application/json"),
    (b'{"hook": "order-sign",', "application/json", 400, "malformed JSON"),
    (b"\xff\xfe", "application/json", 400, "malformed JSON"),
    (b"[]", "application/json", 400, "invalid request"),
    (json.dumps({"hook": "order-sign", "hookInstance": "x", "context": {}}).encode(), "application/json", 400,
     "draftOrders"),
    (json.dumps(hook_body(hook="patient-view")).encode(), "application/json", 400, "order-sign"),
    (json.dumps(hook_body(prefetch={"patient": "Patient/1"})).encode(), "application/json", 400, "prefetch"),
])
def test_bad_bodies_are_refused_with_a_message(server: Server, keys: ClientKeys, client: httpx.Client,
                                               content: bytes, ctype: str, status: int, words: str) -> None:
    response = client.post(server.base_url + SIGN, content=content,
                           headers={**auth(server, keys, SIGN), "Content-Type": ctype})
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert words in message and "Traceback" not in message


def test_a_streamed_body_over_the_limit_is_413(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b"{\"x\": \""
        for _ in range(40):
            yield b"a" * 65536
        yield b"\"}"

    response = client.post(server.base_url + SIGN, content=chunks(),
                           headers={**auth(server, keys, SIGN), "Content-Type": "application/json"})
    assert response.status_code == 413


def test_cors_is_closed_by_default(server: Server, client: httpx.Client) -> None:
    response = client.options(server.base_url + SIGN, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers


def test_an_unknown_service_is_404(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    path = "/cds-services/no-such-service"
    response = client.post(server.base_url + path, json=hook_body(), headers=auth(server, keys, path))
    assert response.status_code == 404


def test_feedback_is_stored_and_reported(server: Server, keys: ClientKeys, client: httpx.Client) -> None:
    store = AuditStore(server.audit_url)
    shown = [IssuedCard(str(uuid.uuid4()), "ivig-order-sign", "order-sign", "warning", "b" * 64,
                        (("renal-risk", "renal-risk"),)) for _ in range(3)]
    store.record_cards(shown)
    store.close()
    path = SIGN + "/feedback"
    body = {"feedback": [
        {"card": shown[0].uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
         "outcomeTimestamp": "2026-11-25T10:05:31Z"},
        {"card": shown[1].uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:06:00Z",
         "overrideReason": {"reason": {"system": "urn:ivig-safety:cds-hooks:override-reason",
                                       "code": "tolerated-faster-rate"}, "userComment": "Pt J. Smith said so"}},
        {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-11-25T10:07:00Z"},
    ]}
    response = client.post(server.base_url + path, content=json.dumps(body), headers={
        **auth(server, keys, path), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 2, "unknown_cards": 1}
    report = CliRunner().invoke(main, ["feedback-report", "--audit", server.audit_url, "--format", "json"])
    renal = next(r for r in json.loads(report.output)["rules"] if r["rule"] == "renal-risk")
    assert renal["shown"] == 3 and renal["accepted"] == 1 and renal["overridden"] == 1 and renal["unanswered"] == 1
    assert renal["overridden_by_reason"] == {"tolerated-faster-rate": 1}
    with open(server.audit_url.removeprefix("sqlite:///"), "rb") as db:
        assert b"Smith" not in db.read(), "a free-text comment may name the patient: it is not stored"
    bad = client.post(server.base_url + path, json={"feedback": [{"card": "x", "outcome": "liked"}]},
                      headers=auth(server, keys, path))
    assert bad.status_code == 400 and "outcome" in bad.json()["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)
resources = st.fixed_dictionaries({"resourceType": st.sampled_from(
    ["MedicationRequest", "Patient", "Observation", "Bundle", "OperationOutcome", "Condition"])},
    optional={"id": st.text(max_size=8), "entry": json_values, "dosageInstruction": json_values,
              "medicationCodeableConcept": json_values, "code": json_values, "valueQuantity": json_values})
hook_bodies = st.fixed_dictionaries(
    {"hook": st.sampled_from(["order-sign", "order-select"]) | st.text(max_size=10),
     "hookInstance": st.text(max_size=40), "context": st.dictionaries(
         st.sampled_from(["patientId", "userId", "draftOrders", "selections"]),
         json_values | st.fixed_dictionaries({"resourceType": st.just("Bundle"),
                                              "entry": st.lists(st.fixed_dictionaries({"resource": resources}),
                                                                max_size=3)}))},
    optional={"prefetch": st.dictionaries(st.sampled_from(["patient", "weight", "conditions"]),
                                          st.none() | resources | json_values, max_size=3),
              "fhirServer": st.text(max_size=30), "fhirAuthorization": json_values})
feedback_bodies = st.fixed_dictionaries({"feedback": st.lists(st.fixed_dictionaries(
    {"card": st.text(max_size=40), "outcome": st.sampled_from(["accepted", "overridden", "ignored", "x"]),
     "outcomeTimestamp": st.text(max_size=30) | st.just("2026-11-25T10:00:00Z")},
    optional={"overrideReason": json_values}), max_size=3)}) | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(hook_bodies, json_values), feedback=feedback_bodies,
       service=st.sampled_from(["ivig-order-sign", "ivig-order-select"]))
def test_fuzz_finds_no_server_error(server: Server, keys: ClientKeys, client: httpx.Client, body: Any,
                                    feedback: Any, service: str) -> None:
    path = f"/cds-services/{service}"
    response = client.post(server.base_url + path, content=json.dumps(body), headers={
        **auth(server, keys, path), "Content-Type": "application/json"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert isinstance(response.json()["cards"], list)
    response = client.post(server.base_url + path + "/feedback", content=json.dumps(feedback), headers={
        **auth(server, keys, path + "/feedback"), "Content-Type": "application/json"})
    assert response.status_code in (200, 400), response.text


def test_insecure_mode_warns_at_start_and_on_every_response(tmp_path: Path) -> None:
    demo = Server(tmp_path, ["--insecure-no-auth"])
    try:
        for response in (httpx.get(f"{demo.base_url}/cds-services"), httpx.get(f"{demo.base_url}/healthz")):
            assert response.status_code == 200
            assert "authentication is OFF" in response.headers["warning"]
        assert "WARNING: --insecure-no-auth" in demo.log()
    finally:
        demo.stop()


def test_serve_refuses_to_start_without_a_trusted_issuer(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ivig_safety.cli", "serve", "--audit",
                           f"sqlite:///{tmp_path / 'a.db'}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no trusted issuer" in done.stderr and "Traceback" not in done.stderr
