"""ivig-safety: check IVIG infusion plans against the package insert before they reach a patient.

The public API is small: :func:`check` one plan, the models it takes and returns, and the exception it raises.
Everything else is private by convention.
"""

from .batch import check_many
from .check import Checker, check, get_checker, ivig_orders, plan_from_fhir
from .model.errors import EngineError, FieldError, InvalidPlanError, RuleFileError
from .model.plan import Plan
from .model.report import Finding, RateTriple, Report, ScheduleStep

__all__ = [
    "check", "check_many", "plan_from_fhir", "ivig_orders", "Checker", "get_checker", "Plan", "Report", "Finding", "RateTriple", "ScheduleStep",
    "InvalidPlanError", "RuleFileError", "EngineError", "FieldError", "compiled",
]
def _version() -> str:
    """The version is written once, in pyproject.toml; the installed metadata carries it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ivig-safety")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "0+unknown"


__version__ = _version()


def _compiled() -> bool:
    """Whether the pipeline runs compiled by mypyc (an installed wheel) or as Python source (a checkout, an editable
    install, a wheel built with IVIG_SAFETY_PURE_PYTHON=1): see setup.py. Told by ivig_safety.pipeline.facts."""
    from importlib.machinery import ExtensionFileLoader

    from .pipeline import facts

    spec = facts.__spec__
    return spec is not None and isinstance(spec.loader, ExtensionFileLoader)


compiled: bool = _compiled()
