"""``ivig-safety serve``: the CDS Hooks service on uvicorn. A thin shell: the app is ivig_safety.service's."""

from __future__ import annotations

import click

from .options import fail, load_checker, policy_option, site_codes_option


def _trust(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    trust = {}
    for value in values:
        issuer, sep, jwks = value.rpartition("=")
        if not sep or not issuer or not jwks:
            raise click.BadParameter(f"expected ISSUER=JWKS (a file or an https URL), not {value!r}")
        trust[issuer] = jwks
    return trust


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (share the audit database; use PostgreSQL across machines).")
@policy_option
@site_codes_option
@click.option("--base-url", help="The public URL clients call (a token's aud is this plus the path); "
                                 "default http://HOST:PORT.")
@click.option("--trust", "trust", multiple=True, callback=_trust, metavar="ISSUER=JWKS",
              help="A trusted CDS client: its iss and its JWK Set (a file, or an https URL fetched and cached). "
                   "Repeatable.")
@click.option("--audit", "audit_url", default="sqlite:///audit.db", show_default=True,
              help="Audit database URL (SQLAlchemy): sqlite:///FILE or postgresql+psycopg://USER@HOST/DB.")
@click.option("--fhir-server", "fhir_servers", multiple=True, metavar="URL",
              help="An https FHIR base URL the service may fetch missing prefetch data from. Repeatable; "
                   "none: never fetch.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="A browser origin allowed by CORS. Repeatable; none: CORS closed.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Accept calls without a token. For a laptop demo only: never with patient data.")
def serve(host: str, port: int, workers: int, policy: str | None, site_codes: str | None, base_url: str | None,
          trust: dict[str, str], audit_url: str, fhir_servers: tuple[str, ...], cors_origins: tuple[str, ...],
          insecure_no_auth: bool) -> None:
    """Serve the CDS Hooks 2.0 service: GET /cds-services, POST /cds-services/{id} and .../feedback, GET /healthz."""
    import os
    import socket
    import sys

    try:
        import uvicorn

        from ..service.settings import SETTINGS_ENV, Settings
        from ..service.store import AuditStore
    except ImportError as exc:
        fail(f"the service needs its extra: pip install 'ivig-safety[service]' ({exc.name} is missing)")
    try:
        settings = Settings(base_url=base_url or f"http://{host}:{port}", trust=trust, audit_url=audit_url,
                            policy=policy, site_codes=site_codes, insecure_no_auth=insecure_no_auth,
                            fhir_servers=fhir_servers, cors_origins=cors_origins)
    except ValueError as exc:
        fail(str(exc))
    if insecure_no_auth:
        click.secho("WARNING: --insecure-no-auth: authentication is OFF. Any caller is trusted. For a laptop demo "
                    "only, never with patient data.", fg="red", bold=True, err=True)
    load_checker(policy, site_codes)  # a broken rule or policy file fails here, with exit 2, not in every worker
    try:
        AuditStore(settings.audit_url).close()  # create the tables once, before the workers race to
    except Exception as exc:  # noqa: BLE001 - a wrong URL or an unreachable database: say so, no traceback
        fail(f"audit database {settings.audit_url.split('@')[-1]}: {type(exc).__name__}")
    os.environ[SETTINGS_ENV] = settings.to_env()
    config = uvicorn.Config("ivig_safety.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                            access_log=False, server_header=False, proxy_headers=False, log_level="warning",
                            timeout_graceful_shutdown=5)
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            sys.exit(3)
        return
    from uvicorn.supervisors import Multiprocess

    # uvicorn binds the shared socket with protocol 0, and asyncio switches Nagle's algorithm off (TCP_NODELAY) only
    # on connections whose socket says IPPROTO_TCP: without this, every keep-alive reply of a worker waited for the
    # client's delayed ACK (about 40 ms, measured by benchmarks/service_bench.py). The same socket, relabelled.
    bound = config.bind_socket()
    listening = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    Multiprocess(config, sockets=[listening]).run()
