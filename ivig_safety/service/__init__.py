"""The CDS Hooks 2.0 service (https://cds-hooks.hl7.org/2.0/): IVIG orders checked as they are selected and signed.

A shell like cli: may import check, formats and everything below; nothing in ivig_safety imports it.
``create_app(settings)`` builds the ASGI app (deploy it behind any ASGI server); ``app_from_env`` is the factory
``ivig-safety serve`` hands to uvicorn (``uvicorn --factory ivig_safety.service:app_from_env``).
"""

from .app import app_from_env, create_app
from .settings import Settings

__all__ = ["create_app", "app_from_env", "Settings"]
