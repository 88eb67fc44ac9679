"""The service's settings: one frozen object that ``serve`` builds from its options and every worker rebuilds from
the environment (uvicorn starts workers by import string, so the settings travel as JSON in one variable)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

#: The variable ``serve`` sets for its workers; :func:`ivig_safety.service.app_from_env` reads it.
SETTINGS_ENV = "IVIG_SAFETY_SERVICE_SETTINGS"

#: Request bodies above this are refused with 413 before they are parsed.
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Settings:
    """``base_url``: the public URL clients call; a token's ``aud`` must be this plus the path being called.
    ``trust``: issuer -> its JWK Set (a file path, or an https URL fetched and cached). ``fhir_servers``: the FHIR
    base URLs the service may fetch from when prefetch lacks something (nothing else is ever fetched).
    ``site_codes``: the site's mapping file for FHIR codes (as ``check --site-codes``). ``insecure_no_auth``: no
    token checks, for a laptop demo only."""

    base_url: str = "http://127.0.0.1:8080"
    trust: dict[str, str] = field(default_factory=dict)
    audit_url: str = "sqlite:///audit.db"
    policy: str | None = None
    site_codes: str | None = None
    insecure_no_auth: bool = False
    fhir_servers: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    clock_skew_s: int = 60
    max_token_lifetime_s: int = 3600
    fetch_timeout_s: float = 2.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        base = urlsplit(self.base_url)
        if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
            raise ValueError(f"--base-url must be an absolute http(s) URL, not {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        for issuer, source in self.trust.items():
            if not issuer:
                raise ValueError("--trust needs ISSUER=JWKS with a non-empty issuer")
            if "://" in source and not source.startswith("https://"):
                raise ValueError(f"the JWK Set of {issuer} must be a file or an https URL, not {source!r}")
        for server in self.fhir_servers:
            if not server.startswith("https://"):
                raise ValueError(f"an allowed FHIR server must be an https URL, not {server!r}")
        if not self.trust and not self.insecure_no_auth:
            raise ValueError("no trusted issuer: give --trust ISSUER=JWKS (or --insecure-no-auth for a demo)")

    def audience(self, path: str) -> str:
        """What ``aud`` must be for a call to ``path`` (``/cds-services/ivig-order-sign``)."""
        return self.base_url + path

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "Settings":
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start the service with `ivig-safety serve`")
        data = json.loads(raw)
        for name in ("fhir_servers", "cors_origins"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)
