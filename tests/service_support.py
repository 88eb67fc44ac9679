"""Helpers for tests/test_service_*.py: a client key pair and its JWK Set, tokens, a real uvicorn serving the app
on 127.0.0.1, and a throwaway PostgreSQL cluster.

PostgreSQL: the server binaries are found on PATH or under /usr/lib/postgresql/*/bin; a cluster is created in a
temporary folder (owned by the ``postgres`` user when the tests run as root, as initdb refuses root) and started on
a free port. Without binaries the PostgreSQL tests are skipped, unless IVIG_SAFETY_REQUIRE_POSTGRES is set (CI sets
it), when they fail.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://ehr.example.org/"
KID = "test-key-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClientKeys:
    """A CDS client's ES384 key pair; ``jwks`` is its public JWK Set."""

    def __init__(self, kid: str = KID):
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [{**public, "kid": kid, "use": "sig", "alg": "ES384"}]}

    def write_jwks(self, folder: Path) -> Path:
        path = folder / "jwks.json"
        path.write_text(json.dumps(self.jwks))
        return path

    def token(self, aud: str, *, iss: str = ISSUER, alg: str = "ES384", kid: str | None = None,
              lifetime: int = 300, iat_offset: int = 0, jti: str | None = None, **claims: Any) -> str:
        now = int(time.time()) + iat_offset
        payload = {"iss": iss, "aud": aud, "iat": now, "exp": now + lifetime, "jti": jti or str(uuid.uuid4()),
                   **claims}
        return jwt.encode(payload, self.private, algorithm=alg, headers={"kid": kid or self.kid, "typ": "JWT"})


class Server:
    """``ivig-safety serve`` in a subprocess on a free port, with its base URL, audit URL and log file."""

    def __init__(self, folder: Path, args: list[str], audit_url: str | None = None, workers: int = 1):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.audit_url = audit_url or f"sqlite:///{folder / 'audit.db'}"
        self.log_path = folder / f"server-{self.port}.log"
        command = [sys.executable, "-m", "ivig_safety.cli", "serve", "--port", str(self.port),
                   "--workers", str(workers), "--audit", self.audit_url, *args]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not answer /healthz in 60 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def keys() -> ClientKeys:
    """The module's CDS client key (import this fixture into a test module)."""
    return ClientKeys()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as session:
        yield session


def serving(tmp_path_factory: pytest.TempPathFactory, keys: ClientKeys, *args: str) -> Iterator[Server]:
    """``ivig-safety serve`` trusting ``keys``, with ``args``: for a test module's ``server`` fixture."""
    folder = tmp_path_factory.mktemp("serve")
    running = Server(folder, ["--trust", f"{ISSUER}={keys.write_jwks(folder)}", *args])
    yield running
    running.stop()


def auth(server: Server, keys: ClientKeys, path: str, **claims: Any) -> dict[str, str]:
    """The Authorization header for one call to ``path`` (a fresh token)."""
    return {"Authorization": f"Bearer {keys.token(server.base_url + path, **claims)}"}


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A PostgreSQL server of its own: yields a SQLAlchemy URL; stopped and removed afterwards."""
    bindir = _postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        if os.environ.get("IVIG_SAFETY_REQUIRE_POSTGRES"):
            pytest.fail("IVIG_SAFETY_REQUIRE_POSTGRES is set but no PostgreSQL server binaries were found "
                        "(apt-get install -y postgresql)")
        pytest.skip("no PostgreSQL server binaries (pg_ctl, initdb): apt-get install -y postgresql")
    folder = Path(tempfile.mkdtemp(prefix="ivig-pg-"))
    user = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = "postgres"
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            pytest.fail("running as root, and there is no postgres user to run the PostgreSQL server as")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    run = {"user": user, "check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "ivig", "--no-sync",
                        "-E", "UTF8"], **run)
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(folder / "log"), "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off", "start"], **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-2000:]}")
    try:
        yield f"postgresql+psycopg://ivig@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       user=user, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
