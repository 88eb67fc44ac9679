"""Fill in what prefetch lacks from the client's FHIR server (https://cds-hooks.hl7.org/2.0/#fhir-resource-access),
without letting a request make this service fetch anything else (no server-side request forgery):

- only when the request carries both ``fhirServer`` and ``fhirAuthorization`` (a Bearer access token);
- only from a ``fhirServer`` on the configured allowlist (``--fhir-server``): https, the same host and port, and a
  path under the allowed base; user info, query and fragment refused;
- a template's tokens are replaced only by context values that are FHIR ids (``[A-Za-z0-9-.]{1,64}``), so a crafted
  patientId cannot add a path or a query;
- no redirects followed, short timeouts and one overall deadline, each response read up to ``MAX_RESPONSE_BYTES``;
- what comes back must be a JSON FHIR resource; anything else counts as not obtained.

What could not be obtained is simply absent: the mapping then says what is missing (a warning card).
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

import httpx
import orjson

MAX_RESPONSE_BYTES = 2 << 20
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


class FetchRefused(ValueError):
    """The request's FHIR server may not be called (not on the allowlist, not https, ...)."""


def allowed_base(fhir_server: str, allowlist: Iterable[str]) -> str:
    """``fhir_server`` if it is under one of the allowed bases, else :class:`FetchRefused`."""
    given = urlsplit(fhir_server)
    if given.scheme != "https" or not given.hostname or given.username or given.password or given.query \
            or given.fragment:
        raise FetchRefused("fhirServer must be a plain https URL")
    for allowed in allowlist:
        base = urlsplit(allowed)
        if (given.hostname.lower(), given.port or 443) != (base.hostname.lower() if base.hostname else "",
                                                          base.port or 443):
            continue
        if (given.path.rstrip("/") + "/").startswith(base.path.rstrip("/") + "/"):
            return fhir_server.rstrip("/")
    raise FetchRefused("fhirServer is not on the allowlist")


def fill_template(template: str, context: dict[str, Any]) -> str | None:
    """The relative FHIR query, or None when a token has no value that is a FHIR id."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        value = context.get(name.removeprefix("context.")) if name.startswith("context.") else None
        if not isinstance(value, str) or not FHIR_ID.fullmatch(value):
            missing = True
            return ""
        return value

    query = _TOKEN.sub(replace, template)
    return None if missing else query


class Fetcher:
    """Fetches missing prefetch keys. ``transport`` is for tests (httpx.MockTransport)."""

    def __init__(self, allowlist: Iterable[str], *, timeout_s: float = 2.0,
                 transport: httpx.BaseTransport | None = None):
        self.allowlist = tuple(allowlist)
        self.timeout_s = timeout_s
        self.transport = transport

    def fetch_missing(self, templates: dict[str, str], prefetch: dict[str, Any], context: dict[str, Any],
                      fhir_server: str | None, authorization: dict[str, Any] | None,
                      deadline_s: float | None = None) -> tuple[dict[str, Any], list[str]]:
        """``prefetch`` completed where it can be; and the keys that could not be obtained."""
        result = dict(prefetch)
        wanted = [key for key in templates if key not in prefetch or _is_outcome(prefetch[key])]
        if not wanted:
            return result, []
        token = authorization.get("access_token") if isinstance(authorization, dict) else None
        if not fhir_server or not isinstance(token, str) or not token or not self.allowlist:
            return result, wanted
        try:
            base = allowed_base(fhir_server, self.allowlist)
        except FetchRefused:
            return result, wanted
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.timeout_s * 2)
        failed = []
        with httpx.Client(transport=self.transport, follow_redirects=False, trust_env=False,
                          timeout=httpx.Timeout(self.timeout_s, connect=min(1.0, self.timeout_s)),
                          headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}) as client:
            for key in wanted:
                query = fill_template(templates[key], context)
                remaining = deadline - time.monotonic()
                if query is None or remaining <= 0:
                    failed.append(key)
                    continue
                resource = self._get(client, f"{base}/{query}", remaining)
                if resource is None:
                    failed.append(key)
                else:
                    result[key] = resource
        return result, failed

    def _get(self, client: httpx.Client, url: str, remaining: float) -> dict[str, Any] | None:
        try:
            with client.stream("GET", url, timeout=min(self.timeout_s, remaining)) as response:
                if response.status_code != 200:
                    return None  # a redirect included: never followed
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_RESPONSE_BYTES:
                        return None
        except httpx.HTTPError:
            return None
        try:
            resource = orjson.loads(bytes(data))
        except orjson.JSONDecodeError:
            return None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str) \
                or resource["resourceType"] == "OperationOutcome":
            return None
        return resource


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"
