"""Who may call: every request carries ``Authorization: Bearer <JWT>`` signed by a trusted CDS client (CDS Hooks 2.0,
"Trusting CDS Clients": https://cds-hooks.hl7.org/2.0/#trusting-cds-clients).

The token is verified by PyJWT, never by hand. What is required, in order:
- the header's ``alg`` is an asymmetric algorithm of at least 384 bits of hash (``ES384``, ``RS384`` and stronger):
  ``none`` and every HMAC are refused before any key is looked at, so a token "signed" with the public key as an
  HMAC secret is refused too; ``typ`` is ``JWT``; ``kid`` is given;
- ``iss`` names an issuer given with ``--trust``; the key is the ``kid`` of that issuer's JWK Set (a file, or an
  https URL fetched, size-limited and cached); a ``jku`` header must be that same configured URL;
- the signature verifies with that key and that algorithm; ``aud`` is the URL being called; ``exp``, ``iat`` and
  ``jti`` are present, ``exp`` not passed and ``iat`` not in the future (each with a small clock skew), and the token
  lives no longer than ``max_token_lifetime_s``;
- ``jti`` has not been seen before (the audit database remembers it until the token expires, so several workers and
  replicas sharing one database refuse a replay alike).

Every failure is one :class:`AuthError`; the caller answers 401 with no detail. The reason is logged, for operators.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import jwt

#: Asymmetric algorithms of SHA-384 or stronger (CDS Hooks recommends ES384 and RS384).
ALLOWED_ALGORITHMS = frozenset({"ES384", "ES512", "RS384", "RS512", "PS384", "PS512"})
#: Key types that can verify those: no "oct" (a shared secret) ever enters the key store.
_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC"})
#: A JWK Set larger than this is refused (a handful of keys is a few kB).
MAX_JWKS_BYTES = 256 * 1024
JWKS_URL_TTL_S = 600
#: An unknown kid refetches a URL-served JWK Set at most this often (key rotation, without letting tokens with
#: made-up kids make us hammer the issuer).
JWKS_REFRESH_MIN_S = 30


class AuthError(Exception):
    """The request is not authenticated. The message is for the log, never for the caller."""


@dataclass
class _KeySet:
    keys: dict[str, dict[str, Any]]
    loaded_at: float


class JwksSource:
    """One issuer's JWK Set: from a file (re-read when it changes) or an https URL (cached, refreshed when stale or
    when a kid is unknown, at most every ``JWKS_REFRESH_MIN_S``)."""

    def __init__(self, issuer: str, location: str, *, transport: httpx.BaseTransport | None = None):
        self.issuer, self.location = issuer, location
        self.is_url = location.startswith("https://")
        self._transport = transport
        self._cached: _KeySet | None = None
        self._stamp: tuple[int, int] | None = None
        self._bound: dict[tuple[str, str], tuple[dict[str, Any], jwt.PyJWK]] = {}
        self._lock = threading.Lock()

    def key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The key ``kid``, bound to ``alg`` (refused if the JWK names another algorithm)."""
        entry = self._entry(kid)
        if entry.get("alg", alg) != alg:
            raise AuthError(f"kid {kid!r} is for {entry.get('alg')!r}, the token says {alg!r}")
        bound = self._bound.get((kid, alg))
        if bound is not None and bound[0] is entry:  # the same JWK as last time: its parsed key is reused
            return bound[1]
        try:
            key = jwt.PyJWK(entry, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise AuthError(f"kid {kid!r} cannot verify {alg}: {exc}") from None
        self._bound[(kid, alg)] = (entry, key)
        return key

    def _entry(self, kid: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            keys = self._current(now)
            if kid not in keys.keys and self._may_refresh(now):
                keys = self._reload(now)
            try:
                return keys.keys[kid]
            except KeyError:
                raise AuthError(f"kid {kid!r} not in the JWK Set of {self.issuer}") from None

    def _current(self, now: float) -> _KeySet:
        if self._cached is None:
            return self._reload(now)
        if self.is_url and now - self._cached.loaded_at > JWKS_URL_TTL_S:
            return self._reload(now)
        if not self.is_url and self._file_stamp() != self._stamp:
            return self._reload(now)
        return self._cached

    def _may_refresh(self, now: float) -> bool:
        return self._cached is None or now - self._cached.loaded_at > JWKS_REFRESH_MIN_S

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            info = Path(self.location).stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _reload(self, now: float) -> _KeySet:
        try:
            raw = self._fetch() if self.is_url else self._read()
            keys = parse_jwks(raw)
        except AuthError:
            if self._cached is not None:  # a failed refresh keeps the last good set
                return self._cached
            raise
        self._cached = _KeySet(keys, now)
        return self._cached

    def _read(self) -> bytes:
        self._stamp = self._file_stamp()
        try:
            with open(self.location, "rb") as stream:
                data = stream.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise AuthError(f"cannot read the JWK Set of {self.issuer}: {exc}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise AuthError(f"the JWK Set of {self.issuer} is larger than {MAX_JWKS_BYTES} bytes")
        return data

    def _fetch(self) -> bytes:
        try:
            with httpx.Client(transport=self._transport, timeout=httpx.Timeout(2.0, connect=1.0),
                              follow_redirects=False) as client:
                with client.stream("GET", self.location, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise AuthError(f"JWK Set of {self.issuer}: HTTP {response.status_code}")
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) > MAX_JWKS_BYTES:
                            raise AuthError(f"the JWK Set of {self.issuer} is larger than {MAX_JWKS_BYTES} bytes")
                    return bytes(data)
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot fetch the JWK Set of {self.issuer}: {type(exc).__name__}") from None


def parse_jwks(raw: bytes) -> dict[str, dict[str, Any]]:
    """The asymmetric public signing keys of a JWK Set, by kid. Keys without a kid, symmetric keys, private keys,
    keys marked for encryption and keys PyJWT cannot load are left out."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise AuthError("a JWK Set is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise AuthError("a JWK Set has no keys array")
    keys: dict[str, dict[str, Any]] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in _ASYMMETRIC_KEY_TYPES:
            continue
        if not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig" or "d" in entry:
            continue
        try:
            jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[entry["kid"]] = entry
    return keys


class Verifier:
    """Verifies bearer tokens against the trusted issuers. ``remember_jti(key, expires_at) -> bool`` records a token
    id and says whether it was new (the audit store's, shared between workers)."""

    def __init__(self, trust: dict[str, str], remember_jti: Callable[[str, float], bool], *,
                 clock_skew_s: int = 60, max_lifetime_s: int = 3600,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.time):
        self.sources = {issuer: JwksSource(issuer, location, transport=transport)
                        for issuer, location in trust.items()}
        self.remember_jti = remember_jti
        self.skew, self.max_lifetime = clock_skew_s, max_lifetime_s
        self.clock = clock

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or :class:`AuthError`."""
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 16384:
            raise AuthError("not a Bearer token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {type(exc).__name__}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthError(f"algorithm {alg!r} refused")
        if header.get("typ", "JWT") != "JWT" or not isinstance(kid, str) or not kid:
            raise AuthError("typ is not JWT, or no kid")
        issuer = unverified.get("iss")
        source = self.sources.get(issuer) if isinstance(issuer, str) else None
        if source is None:
            raise AuthError(f"issuer {issuer!r} is not trusted")
        if "jku" in header and header["jku"] != source.location:
            raise AuthError(f"jku {header['jku']!r} is not the JWK Set configured for {issuer}")
        key = source.key(kid, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=audience, issuer=issuer, leeway=self.skew,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"],
                                         "enforce_minimum_key_length": True})
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {type(exc).__name__}: {exc}") from None
        now = self.clock()
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not isinstance(iat, (int, float)) or iat > now + self.skew:
            raise AuthError("iat is in the future")
        if exp - iat > self.max_lifetime:
            raise AuthError(f"token lifetime {exp - iat}s is longer than {self.max_lifetime}s")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthError("jti missing or too long")
        replay_key = hashlib.sha256(json.dumps([issuer, jti]).encode()).hexdigest()
        if not self.remember_jti(replay_key, float(exp) + self.skew):
            raise AuthError("jti replayed")
        return claims
