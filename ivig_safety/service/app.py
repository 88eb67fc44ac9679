"""The ASGI app: FastAPI routes over hooks.py, with auth, limits, CORS and JSON logs.

- ``GET /healthz`` (no auth, for load balancers); ``GET /cds-services`` (discovery); ``POST /cds-services/{id}``
  (a hook call); ``POST /cds-services/{id}/feedback``. Every route but /healthz needs a verified bearer token
  (auth.py), whose ``aud`` must be ``--base-url`` plus the path called; any failure is 401 with no detail.
- A body over 1 MiB is 413 (refused on its Content-Length, or as soon as more arrives); a body that is not
  ``application/json`` is 415; malformed JSON or FHIR is 400 with a message and no traceback; anything unexpected
  is 500 with no detail (logged by exception type only).
- CORS is closed unless origins are configured. ``--insecure-no-auth`` adds a ``Warning`` header to every response.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from typing import Any, AsyncIterator

import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..check import Checker, get_checker
from ..knowledge.codes import VocabularyCodes, load_site_codes
from .auth import AuthError, Verifier
from .discovery import SERVICES, discovery, prefetch_templates
from .fetch import Fetcher
from .hooks import BadRequest, Hooks
from .logs import get_logger, log
from .settings import MAX_BODY_BYTES, Settings
from .store import AuditStore

INSECURE_WARNING = '299 ivig-safety "authentication is OFF (--insecure-no-auth): for a demo only, never for patients"'
_JSON_TYPES = ("application/json", "application/fhir+json")


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_app(settings: Settings, *, checker: Checker | None = None, store: AuditStore | None = None,
               fetcher: Fetcher | None = None, verifier: Verifier | None = None) -> FastAPI:
    """The CDS Hooks app for ``settings``. The keyword arguments replace parts (for tests)."""
    logger = get_logger(settings.log_level)
    checker = checker or get_checker(None, settings.policy, settings.site_codes)
    store = store or AuditStore(settings.audit_url)
    fetcher = fetcher or Fetcher(settings.fhir_servers, timeout_s=settings.fetch_timeout_s)
    if settings.insecure_no_auth:
        verifier = None
    else:
        verifier = verifier or Verifier(settings.trust, store.remember_jti, clock_skew_s=settings.clock_skew_s,
                                        max_lifetime_s=settings.max_token_lifetime_s)
    templates = prefetch_templates(*_code_lists(checker))
    hooks = Hooks(checker, store, fetcher, templates, version=__version__)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(warm_up, checker)
        if settings.insecure_no_auth:
            log(logger, "AUTHENTICATION IS OFF (--insecure-no-auth): any caller is trusted; never use with patient "
                        "data", logging.WARNING)
        log(logger, "ready", base_url=settings.base_url, auth="off" if verifier is None else "jwt")
        yield
        store.close()

    app = FastAPI(title="ivig-safety CDS Hooks service", version=__version__, docs_url=None, redoc_url=None,
                  default_response_class=OrjsonResponse, lifespan=lifespan, redirect_slashes=False)
    app.state.settings, app.state.store, app.state.hooks = settings, store, hooks
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], allow_credentials=False, max_age=600)

    def authenticate(request: Request) -> None:
        if verifier is None:
            return
        try:
            verifier.verify(request.headers.get("authorization"), settings.audience(request.url.path))
        except AuthError as exc:
            request.state.log["reason"] = str(exc)[:200]
            raise _Refused(401, "unauthorized") from None

    async def body_bytes(request: Request) -> bytes:
        """The body, refused early: a token that is not even a Bearer (401), too large (413), not JSON (415).
        It is parsed only after the token is verified (:func:`parse_json`, in the worker thread)."""
        if verifier is not None and not request.headers.get("authorization", "").lower().startswith("bearer "):
            request.state.log["reason"] = "no Bearer token"
            raise _Refused(401, "unauthorized")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise _Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        if ctype not in _JSON_TYPES:
            raise _Refused(415, "the body must be application/json")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse_json(raw: bytes) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, "malformed JSON") from None

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return OrjsonResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return OrjsonResponse({"error": "not found" if exc.status_code == 404 else "refused"},
                              status_code=exc.status_code)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/cds-services")
    async def services(request: Request) -> dict[str, Any]:
        """Discovery: the services, their hooks and prefetch templates."""
        if verifier is not None:
            await run_in_threadpool(authenticate, request)
        return discovery(templates)

    def _service(request: Request, service_id: str) -> None:
        if service_id not in SERVICES:
            raise _Refused(404, "no such service")
        request.state.log["service"] = service_id

    @app.post("/cds-services/{service_id}")
    async def call(service_id: str, request: Request) -> dict[str, Any]:
        """A hook call: cards for the IVIG orders in context.draftOrders."""
        _service(request, service_id)
        raw = await body_bytes(request)

        def work() -> dict[str, Any]:  # one trip to a worker thread: verify, parse, check, record
            authenticate(request)
            try:
                result = hooks.call(service_id, parse_json(raw))
            except BadRequest as exc:
                raise _Refused(400, str(exc)) from None
            request.state.log.update(verdicts=result.verdicts, not_checked=result.not_checked,
                                     cards=len(result.cards), missing=result.missing,
                                     rules=sorted({r for c in result.issued for r, _ in c.rules}))
            return {"cards": result.cards}

        return await run_in_threadpool(work)

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> dict[str, int]:
        """Feedback: what the prescriber did with each card."""
        _service(request, service_id)
        raw = await body_bytes(request)

        def work() -> dict[str, int]:
            authenticate(request)
            try:
                stored = hooks.feedback(parse_json(raw))
            except BadRequest as exc:
                raise _Refused(400, str(exc)) from None
            request.state.log["feedback"] = stored
            return stored

        return await run_in_threadpool(work)

    app.add_middleware(Around, settings=settings, logger=logger)
    return app


_REQUEST_ID = re.compile(r"[A-Za-z0-9\-_.]{1,64}")


class Around:
    """Outermost of ours (pure ASGI, no per-request task): a request id, security headers, the insecure-mode
    warning, one JSON log line per request, and a 500 with no detail for anything that escaped the handlers (so no
    traceback, which may quote the input, reaches a log or a client)."""

    def __init__(self, app: Any, settings: Settings, logger: logging.Logger):
        self.app, self.settings, self.logger = app, settings, logger
        extra = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        if settings.insecure_no_auth:
            extra.append((b"warning", INSECURE_WARNING.encode()))
        self.extra = extra

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = fields
        status = 500
        sent = False

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode()),
                                      *self.extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - logged by type only; the client learns nothing
            fields["error"] = type(exc).__name__
            if not sent:
                await OrjsonResponse({"error": "internal error"}, status_code=500)(scope, receive, send_with_headers)
            status = 500
        if scope["path"] != "/healthz":
            log(self.logger, "request", logging.ERROR if status >= 500 else logging.INFO, request_id=request_id,
                method=scope["method"], path=_route(scope["path"]), status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 2), **fields)


#: A made-up order, checked once at start so that the first real call does not pay for loading the FHIR models and
#: the UCUM parser (about 150 ms). Its outcome is discarded.
_WARM_UP = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "w", "birthDate": "1970-01-01", "gender": "female"}},
    {"resource": {"resourceType": "Observation", "id": "w1", "status": "final", "subject": {"reference": "Patient/w"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                  "effectiveDateTime": "2026-01-01T00:00:00Z",
                  "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}},
    {"resource": {"resourceType": "MedicationRequest", "id": "w2", "status": "draft", "intent": "order",
                  "subject": {"reference": "Patient/w"}, "authoredOn": "2026-01-02T00:00:00Z",
                  "medicationCodeableConcept": {"text": "immune globulin"},
                  "dosageInstruction": [{"sequence": 1, "doseAndRate": [{
                      "doseQuantity": {"value": 0.4, "unit": "g/kg", "system": "http://unitsofmeasure.org",
                                       "code": "g/kg"},
                      "rateQuantity": {"value": 42, "unit": "mL/h", "system": "http://unitsofmeasure.org",
                                       "code": "mL/h"}}]}]}}]}


def _code_lists(checker: Checker) -> list[VocabularyCodes]:
    """The vocabulary's code lists, and the site's codes file's when one is loaded: what the prefetch asks for."""
    lists: list[VocabularyCodes] = [checker.vocabulary.codes]
    if checker.site_codes is not None:
        lists.append(load_site_codes(checker.site_codes, checker.vocabulary.indications,
                                     checker.vocabulary.risk_factors, checker.catalogue.products))
    return lists


def warm_up(checker: Checker) -> None:
    try:
        checker.fhir.ivig_orders(_WARM_UP)
        checker.check(_WARM_UP)
    except Exception:  # noqa: BLE001 - only a warm-up: whatever it says, the real calls say it again
        pass


def _route(path: str) -> str:
    """The path for the log: a service id is ours, anything else is cut short."""
    return path[:80]


def app_from_env() -> FastAPI:
    """The factory uvicorn loads in each worker (``uvicorn --factory ivig_safety.service:app_from_env``): the
    settings come from ``IVIG_SAFETY_SERVICE_SETTINGS``, which ``ivig-safety serve`` sets."""
    return create_app(Settings.from_env())
