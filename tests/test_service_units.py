"""Service parts without a server: fetching missing prefetch only from allowlisted FHIR servers (no SSRF), JWK Sets
from an https URL, and cards from a report (summary length, escaping, orders that cannot be checked)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from ivig_safety import check, get_checker
from ivig_safety.model.errors import FieldError
from ivig_safety.service.auth import AuthError, Verifier
from ivig_safety.service.cards import md, not_checked_card, report_cards
from ivig_safety.service.discovery import prefetch_templates
from ivig_safety.service.fetch import MAX_RESPONSE_BYTES, FetchRefused, Fetcher, allowed_base, fill_template

from .conftest import plan
from .service_support import ISSUER, ClientKeys

ROOT = Path(__file__).resolve().parent.parent
FHIR = "https://fhir.example.org/r4"
TOKEN = {"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read",
         "subject": "ivig-safety"}
CONTEXT = {"patientId": "p-1", "userId": "Practitioner/9"}
PREFETCH = prefetch_templates(get_checker().vocabulary.codes)


class Recorder:
    """A MockTransport handler that records the URLs asked for and answers with ``answer(request)``."""

    def __init__(self, answer: Any = None):
        self.urls: list[str] = []
        self.answer = answer or (lambda request: httpx.Response(200, json={"resourceType": "Bundle", "entry": []}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        assert request.headers["authorization"] == "Bearer opaque"
        return self.answer(request)


def fetcher(recorder: Recorder, allow: tuple[str, ...] = (FHIR,)) -> Fetcher:
    return Fetcher(allow, timeout_s=1.0, transport=httpx.MockTransport(recorder))


def test_missing_keys_are_fetched_from_an_allowed_server() -> None:
    recorder = Recorder()
    filled, missing = fetcher(recorder).fetch_missing(PREFETCH, {"patient": {"resourceType": "Patient"}}, CONTEXT,
                                                      FHIR, TOKEN)
    assert missing == [] and set(filled) == set(PREFETCH)
    assert len(recorder.urls) == len(PREFETCH) - 1  # the patient was prefetched
    assert all(url.startswith(FHIR + "/") and "p-1" in url for url in recorder.urls)


def test_a_null_prefetch_value_means_no_data_and_is_not_fetched() -> None:
    recorder = Recorder()
    given = {key: None for key in PREFETCH}
    filled, missing = fetcher(recorder).fetch_missing(PREFETCH, given, CONTEXT, FHIR, TOKEN)
    assert recorder.urls == [] and missing == [] and filled == given


@pytest.mark.parametrize("server", [
    "http://fhir.example.org/r4",  # not https
    "https://evil.example/r4",  # not on the allowlist
    "https://fhir.example.org.evil.example/r4",  # a suffix trick
    "https://fhir.example.org:8443/r4",  # another port
    "https://fhir.example.org/other",  # outside the allowed path
    "https://user:pw@fhir.example.org/r4",  # credentials in the URL
    "https://fhir.example.org/r4?x=1",
    "https://169.254.169.254/latest",
    "file:///etc/passwd",
])
def test_a_server_off_the_allowlist_is_never_called(server: str) -> None:
    recorder = Recorder()
    with pytest.raises(FetchRefused):
        allowed_base(server, (FHIR,))
    _, missing = fetcher(recorder).fetch_missing(PREFETCH, {}, CONTEXT, server, TOKEN)
    assert recorder.urls == [] and set(missing) == set(PREFETCH)


def test_no_token_or_no_allowlist_means_no_fetch() -> None:
    recorder = Recorder()
    assert fetcher(recorder).fetch_missing(PREFETCH, {}, CONTEXT, FHIR, None)[1] == list(PREFETCH)
    assert fetcher(recorder, allow=()).fetch_missing(PREFETCH, {}, CONTEXT, FHIR, TOKEN)[1] == list(PREFETCH)
    assert recorder.urls == []


@pytest.mark.parametrize("patient_id", ["../Patient/1", "1/_history", "1?_format=xml", "1&code=x", "", "a" * 65,
                                        "1#x", "%2e%2e"])
def test_a_context_value_that_is_not_a_fhir_id_builds_no_query(patient_id: str) -> None:
    assert fill_template("Patient/{{context.patientId}}", {"patientId": patient_id}) is None
    recorder = Recorder()
    fetcher(recorder).fetch_missing(PREFETCH, {}, {"patientId": patient_id}, FHIR, TOKEN)
    assert recorder.urls == []


@pytest.mark.parametrize("answer", [
    lambda r: httpx.Response(302, headers={"Location": "https://evil.example/"}),  # redirects are not followed
    lambda r: httpx.Response(401),
    lambda r: httpx.Response(200, content=b"<html>"),
    lambda r: httpx.Response(200, json={"resourceType": "OperationOutcome", "issue": []}),
    lambda r: httpx.Response(200, json=[1, 2]),
    lambda r: httpx.Response(200, content=b"{\"resourceType\": \"Bundle\", \"x\": \"" + b"a" * MAX_RESPONSE_BYTES
                             + b"\"}"),
])
def test_a_bad_answer_counts_as_not_obtained(answer: Any) -> None:
    recorder = Recorder(answer)
    filled, missing = fetcher(recorder).fetch_missing({"patient": PREFETCH["patient"]}, {}, CONTEXT, FHIR, TOKEN)
    assert missing == ["patient"] and "patient" not in filled
    assert all("evil" not in url for url in recorder.urls)


def test_a_slow_server_is_cut_off_by_the_deadline() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(200, json={"resourceType": "Bundle"})

    recorder = Recorder(slow)
    started = time.monotonic()
    _, missing = fetcher(recorder).fetch_missing(PREFETCH, {}, CONTEXT, FHIR, TOKEN, deadline_s=0.5)
    assert time.monotonic() - started < 1.2
    assert len(recorder.urls) < len(PREFETCH) and missing


# -- JWK Sets from an https URL ------------------------------------------------------------------------------------

def test_a_jwks_url_is_fetched_once_and_cached() -> None:
    keys = ClientKeys()
    calls = []

    def serve_jwks(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json=keys.jwks)

    seen: set[str] = set()
    url = "https://ehr.example.org/jwks.json"
    verifier = Verifier({ISSUER: url}, lambda key, exp: key not in seen and not seen.add(key),
                        transport=httpx.MockTransport(serve_jwks))
    aud = "https://cds.example.org/cds-services"
    for _ in range(3):
        assert verifier.verify(f"Bearer {keys.token(aud)}", aud)["iss"] == ISSUER
    assert calls == [url]
    with pytest.raises(AuthError):  # a jku that is not the configured URL
        header_jku = jwt.encode(
            {"iss": ISSUER, "aud": aud, "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "j"},
            keys.private, algorithm="ES384", headers={"kid": keys.kid, "jku": "https://evil.example/jwks"})
        verifier.verify(f"Bearer {header_jku}", aud)


def test_a_jwks_with_only_symmetric_or_private_keys_verifies_nothing() -> None:
    keys = ClientKeys()
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys.private))
    bad = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": keys.kid}, {**private, "kid": keys.kid}]}
    verifier = Verifier({ISSUER: "https://ehr.example.org/jwks"}, lambda *_: True,
                        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=bad)))
    aud = "https://cds.example.org/cds-services"
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {keys.token(aud)}", aud)


def test_a_token_living_longer_than_allowed_is_refused(tmp_path: Any) -> None:
    keys = ClientKeys()
    verifier = Verifier({ISSUER: str(keys.write_jwks(tmp_path))}, lambda *_: True, max_lifetime_s=600)
    aud = "https://cds.example.org/cds-services"
    assert verifier.verify(f"Bearer {keys.token(aud, lifetime=300)}", aud)
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {keys.token(aud, lifetime=86400)}", aud)


# -- cards ---------------------------------------------------------------------------------------------------------

def _report(**changes: Any) -> Any:
    data = yaml.safe_load((ROOT / "examples" / "dermatomyositis.yaml").read_text())
    data.update(changes)
    return check(data)


def test_every_card_has_a_short_summary_and_its_own_uuid() -> None:
    reports = [_report(), check(plan(**{"steps.2.rate": "0.09 mL/kg/min"}))]
    for report in reports:
        built = report_cards(report, version="9", service="s", hook="order-sign", updated_order={"id": "x"},
                             order_label="MedicationRequest/x")
        assert len(built.cards) == len({f.kind for f in report.findings})
        assert len({c["uuid"] for c in built.cards}) == len(built.cards)
        for card in built.cards:
            assert len(card["summary"]) < 140 and "mL/h" in card["summary"]
            assert ("overrideReasons" in card) == (card["indicator"] != "info")
        issued_rules = {r for c in built.issued for r, _ in c.rules}
        assert issued_rules == {r for f in report.findings for r in f.rules}
    critical = report_cards(reports[1], version="9", service="s", hook="h", updated_order={"id": "x"},
                            order_label="x").cards[0]
    assert critical["indicator"] == "critical" and critical["suggestions"][0]["label"] == "Use the suggested schedule"


def test_no_suggestion_without_an_order_to_update() -> None:
    built = report_cards(_report(), version="9", service="s", hook="h", updated_order=None, order_label="x")
    assert not any("suggestions" in c for c in built.cards)


def test_input_text_in_a_card_is_inert_markdown() -> None:
    hostile = "![x](https://evil.example/p.png) <script>alert(1)</script> | a | \x1b[2J"
    built = not_checked_card([FieldError("MedicationRequest.note", hostile)], version="9", ruleset_version="r",
                             sha256="0" * 64, service="s", hook="h", order_label=hostile)
    detail = built.cards[0]["detail"]
    assert "<script>" not in detail and "![x]" not in detail and "\x1b" not in detail
    assert md("a|b") == "a\\|b"
    assert len(built.cards[0]["summary"]) < 140


def test_a_card_for_an_unreadable_order_says_what_is_missing() -> None:
    built = not_checked_card([FieldError("Observation", "no body weight")], version="9", ruleset_version="r",
                             sha256="0" * 64, service="s", hook="h", order_label="MedicationRequest/a")
    [card] = built.cards
    assert card["indicator"] == "warning" and "body weight" in card["detail"].lower()
    assert card["summary"].startswith("IVIG order not checked")
    assert built.issued[0].rules == (("(order not checked)", "not-checked"),)


def test_the_readme_dev_keys_make_tokens_the_service_accepts_once(tmp_path: Path) -> None:
    from ivig_safety.service import devkeys

    devkeys.keygen(tmp_path)
    assert (tmp_path / "client-key.pem").stat().st_mode & 0o077 == 0  # the private key is the owner's only
    seen: set[str] = set()
    verifier = Verifier({devkeys.DEFAULT_ISSUER: str(tmp_path / "jwks.json")},
                        lambda key, exp: key not in seen and not seen.add(key))
    aud = "http://127.0.0.1:8080/cds-services/ivig-order-sign"
    token = devkeys.token(tmp_path, aud, devkeys.DEFAULT_ISSUER, 300)
    assert verifier.verify(f"Bearer {token}", aud)["aud"] == aud
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {token}", aud)


def test_an_engine_failure_is_a_not_checked_warning_not_silence(tmp_path: Path) -> None:
    from ivig_safety import EngineError
    from ivig_safety.service.hooks import Hooks
    from ivig_safety.service.store import AuditStore

    from .test_service_orders import dm_chart, dm_request

    class Failing:
        def __init__(self) -> None:
            self.real = get_checker()
            self.fhir, self.ruleset = self.real.fhir, self.real.ruleset

        def check(self, _plan: Any) -> Any:
            raise EngineError("boom")

    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}")
    result = Hooks(Failing(), store, Fetcher(()), PREFETCH, version="9").call("ivig-order-sign", dm_request(*dm_chart()))
    [card] = result.cards
    assert card["indicator"] == "warning" and "rule engine failed" in card["detail"]
    assert result.not_checked == 1 and result.verdicts == []
    store.close()


def test_cors_opens_only_to_the_configured_origins(tmp_path: Path) -> None:
    import asyncio

    from ivig_safety.service import Settings, create_app

    settings = Settings(insecure_no_auth=True, audit_url=f"sqlite:///{tmp_path / 'a.db'}",
                        cors_origins=("https://ehr.example.org",))
    app = create_app(settings)

    async def preflight(origin: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as local:
            return await local.options("/cds-services/ivig-order-sign", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})

    allowed = asyncio.run(preflight("https://ehr.example.org"))
    assert allowed.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-credentials" not in allowed.headers
    assert "authentication is OFF" in allowed.headers["warning"]
    assert "access-control-allow-origin" not in asyncio.run(preflight("https://evil.example")).headers
    app.state.store.close()
